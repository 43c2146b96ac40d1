//! One large meeting of lean peers, as a lecture fills: participants join at a steady
//! rate, some with cameras (simulcast), all with microphones (a few speaking, the rest
//! silent), every one receiving on slots (its view said before its offer). Measured per
//! participant: time to first media, the node's offers, signaling messages during the
//! ramp and after it, and what arrived of audio and video, stream by stream.
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use signaling::View;
use str0m::media::Rid;
use tokio_util::sync::CancellationToken;

use super::join::{JoinAs, join_fjord};
use super::publish::{Media, Packets};
use super::{Counters, Server};
use crate::media::ClipSpec;

/// The microphone level of a speaker (RFC 6464, -dBov) and of a silent participant.
const SPEAKING: u8 = 20;
const SILENT: u8 = 127;

#[derive(Clone, Debug)]
pub struct MeetingSpec {
    pub server: Server,
    pub participants: usize,
    /// Joins a second.
    pub rate: f64,
    /// The first `cameras` participants send video (three simulcast layers).
    pub cameras: usize,
    /// The first `speakers` participants speak; the other microphones are silent.
    pub speakers: usize,
    /// What every participant shows.
    pub view: View,
    /// The camera's full-size clip (the `m` and `l` layers are a half and a quarter).
    pub clip: ClipSpec,
    /// A webinar: the first `panelists` join with this key and send camera and
    /// microphone; everyone else attends and sends nothing.
    pub panelist_key: Option<String>,
    pub panelists: usize,
}

struct Joined {
    camera: bool,
    speaking: bool,
    counters: Arc<Counters>,
}

/// The participants, joined and running.
pub struct MeetingLoad {
    peers: Vec<Joined>,
    pub failures: Vec<String>,
    /// From the first join's start to the last join's end.
    pub ramp: Duration,
    /// Signaling messages all had got when the ramp ended.
    signals_at_ramp: u64,
    spec: MeetingSpec,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What [`MeetingLoad::measure`] saw.
#[derive(Clone, Debug, Default)]
pub struct MeetingReport {
    pub participants: usize,
    pub failures: usize,
    pub ramp: Duration,
    pub window: Duration,
    /// Join start to first media packet, sorted.
    pub first_media: Vec<Duration>,
    /// Offers the node sent each participant.
    pub offers: Vec<u64>,
    /// Signaling messages per participant per second, during the ramp and in the window.
    pub signals_ramp: f64,
    pub signals_after: f64,
    /// Per receiver per second in the window: audio and video packets.
    pub audio_pps: f64,
    pub video_pps: f64,
    /// Per receiver: the video and audio streams that carried packets in the window.
    pub video_streams: Vec<usize>,
    pub audio_streams: Vec<usize>,
    /// Frames received, and expected from what the view and the speakers ask.
    pub video_frames: u64,
    pub video_expected: u64,
    pub audio_frames: u64,
    pub audio_expected: u64,
    pub seq_lost: u64,
}

fn layer_clip(full: &ClipSpec, div: u32) -> ClipSpec {
    ClipSpec {
        // VP8 wants even sizes; the smallest layer is at least 32 px wide.
        width: (full.width / div).max(32) & !1,
        height: (full.height / div).max(18) & !1,
        video_kbps: (full.video_kbps / (div * div)).max(60),
        ..full.clone()
    }
}

impl MeetingLoad {
    /// Encodes the clips once and joins everyone at `rate` a second (each join starts
    /// on time, whatever the others take); a participant that fails to join is counted.
    pub async fn start(spec: MeetingSpec) -> anyhow::Result<MeetingLoad> {
        let fps = spec.clip.fps;
        let full = Arc::new(Packets::of(&crate::media::encode(&spec.clip)?, fps));
        let mut layers = Vec::new();
        for (rid, div) in [("l", 4), ("m", 2)] {
            let clip = crate::media::encode(&layer_clip(&spec.clip, div))?;
            layers.push((Rid::from(rid), Arc::new(Packets::of(&clip, fps))));
        }
        layers.push((Rid::from("h"), full.clone()));
        let stop = CancellationToken::new();
        let started = Instant::now();
        let period = Duration::from_secs_f64(1.0 / spec.rate.max(0.001));
        let webinar = spec.panelist_key.is_some();
        let joins = (0..spec.participants).map(|i| {
            let counters = Arc::new(Counters::default());
            let (camera, speaking, sends) = if webinar {
                let panel = i < spec.panelists;
                (panel, panel, panel)
            } else {
                (i < spec.cameras, i < spec.speakers, true)
            };
            let media = sends.then(|| Media {
                packets: full.clone(),
                layers: layers.clone(),
                camera,
                level: if speaking { SPEAKING } else { SILENT },
            });
            let how = JoinAs {
                name: format!("p{i}"),
                media,
                view: Some(spec.view.clone()),
                panelist_key: spec.panelist_key.clone().filter(|_| camera),
                counters: counters.clone(),
            };
            let (server, stop) = (spec.server.clone(), stop.clone());
            async move {
                tokio::time::sleep_until((started + period * i as u32).into()).await;
                let joined = join_fjord(&server, how, stop).await;
                (joined, camera, speaking, counters)
            }
        });
        let results = futures::future::join_all(joins).await;
        let mut load = MeetingLoad {
            peers: Vec::new(),
            failures: Vec::new(),
            ramp: Duration::ZERO,
            signals_at_ramp: 0,
            spec: spec.clone(),
            stop,
            tasks: Vec::new(),
        };
        for (joined, camera, speaking, counters) in results {
            match joined {
                Ok((_, task)) => {
                    load.tasks.push(task);
                    load.peers.push(Joined {
                        camera,
                        speaking,
                        counters,
                    });
                }
                Err(e) => load.failures.push(format!("{e:#}")),
            }
        }
        load.ramp = started.elapsed();
        load.signals_at_ramp = load
            .peers
            .iter()
            .map(|p| p.counters.signals.load(Ordering::Relaxed))
            .sum();
        Ok(load)
    }

    /// Counts over `window` from now.
    pub async fn measure(&self, window: Duration) -> MeetingReport {
        let snap = |c: &Counters| {
            let streams = c.streams.lock().expect("stream counts").clone();
            (
                c.video_frames.load(Ordering::Relaxed),
                c.audio_frames.load(Ordering::Relaxed),
                c.signals.load(Ordering::Relaxed),
                c.seq_lost.load(Ordering::Relaxed),
                streams,
            )
        };
        let before: Vec<_> = self.peers.iter().map(|p| snap(&p.counters)).collect();
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let after: Vec<_> = self.peers.iter().map(|p| snap(&p.counters)).collect();
        let secs = started.elapsed().as_secs_f64();
        let s = &self.spec;
        let n = self.peers.len().max(1) as f64;
        let webinar = s.panelist_key.is_some();
        let (cameras, speakers) = if webinar {
            (s.panelists, s.panelists)
        } else {
            (s.cameras, s.speakers)
        };
        let mut r = MeetingReport {
            participants: self.peers.len(),
            failures: self.failures.len(),
            ramp: self.ramp,
            window: started.elapsed(),
            signals_ramp: self.signals_at_ramp as f64 / n / self.ramp.as_secs_f64().max(1e-3),
            ..MeetingReport::default()
        };
        let (mut audio_packets, mut video_packets) = (0u64, 0u64);
        for (i, p) in self.peers.iter().enumerate() {
            let (b, a) = (&before[i], &after[i]);
            r.video_frames += a.0 - b.0;
            r.audio_frames += a.1 - b.1;
            r.signals_after += (a.2 - b.2) as f64;
            r.seq_lost += a.3 - b.3;
            let (mut vs, mut aus) = (0, 0);
            for (ssrc, (audio, count)) in &a.4 {
                let was = b.4.get(ssrc).map_or(0, |x| x.1);
                if *count > was {
                    if *audio {
                        aus += 1;
                        audio_packets += count - was;
                    } else {
                        vs += 1;
                        video_packets += count - was;
                    }
                }
            }
            r.video_streams.push(vs);
            r.audio_streams.push(aus);
            let videos = (cameras - usize::from(p.camera)).min(s.view.video_slots as usize);
            let voices = (speakers - usize::from(p.speaking)).min(s.view.audio_slots as usize);
            r.video_expected += (videos as f64 * f64::from(s.clip.fps) * secs) as u64;
            r.audio_expected += (voices as f64 * 50.0 * secs) as u64;
            r.offers.push(p.counters.offers.load(Ordering::Relaxed));
            let ms = p.counters.first_media_ms.load(Ordering::Relaxed);
            if ms > 0 {
                r.first_media.push(Duration::from_millis(ms));
            }
        }
        r.first_media.sort();
        r.signals_after /= n * secs;
        r.audio_pps = audio_packets as f64 / n / secs;
        r.video_pps = video_packets as f64 / n / secs;
        r
    }

    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

impl MeetingReport {
    /// The report's lines, as the bench prints them.
    pub fn summary(&self) -> String {
        let pct = |sorted: &[Duration], p: f64| {
            sorted
                .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
                .map_or(0, |d| d.as_millis())
        };
        let share = |got: u64, want: u64| {
            if want == 0 {
                100.0
            } else {
                got.min(want) as f64 * 100.0 / want as f64
            }
        };
        let one_offer = self.offers.iter().filter(|o| **o == 1).count();
        let range = |v: &[usize]| {
            (
                v.iter().min().copied().unwrap_or(0),
                v.iter().max().copied().unwrap_or(0),
            )
        };
        let (vmin, vmax) = range(&self.video_streams);
        let (amin, amax) = range(&self.audio_streams);
        format!(
            "participants: {} joined, {} failed; ramp {:.1} s\n\
             join to first media: p50 {} ms, p99 {} ms ({} of {} got media)\n\
             offers from the node: {} of {} participants got exactly 1, most {}\n\
             signaling messages per participant per second: {:.2} during the ramp, {:.2} after\n\
             per receiver per second: {:.0} audio packets, {:.0} video packets\n\
             video streams per receiver: {vmin}..{vmax}; audio streams per receiver: {amin}..{amax}\n\
             video frames: {} of {} expected ({:.2} %)\n\
             audio frames: {} of {} expected ({:.2} %)\n\
             rtp sequence gaps: {}\n",
            self.participants,
            self.failures,
            self.ramp.as_secs_f64(),
            pct(&self.first_media, 0.5),
            pct(&self.first_media, 0.99),
            self.first_media.len(),
            self.participants,
            one_offer,
            self.offers.len(),
            self.offers.iter().max().copied().unwrap_or(0),
            self.signals_ramp,
            self.signals_after,
            self.audio_pps,
            self.video_pps,
            self.video_frames,
            self.video_expected,
            share(self.video_frames, self.video_expected),
            self.audio_frames,
            self.audio_expected,
            share(self.audio_frames, self.audio_expected),
            self.seq_lost,
        )
    }
}
