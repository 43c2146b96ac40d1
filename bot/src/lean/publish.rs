//! What lean publishers send: the clip packetised once up front ([`Packets`], shared by
//! every publisher), and each publisher's place in it, written to its streams as frames
//! fall due ([`Publish`]).
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};

use super::Counters;
use crate::media::Clip;

/// Largest VP8 payload per packet (descriptor included), as browsers packetise.
const VP8_MTU: usize = 1_100;

/// The clip as RTP payloads, made once and shared by every publisher.
pub(super) struct Packets {
    /// One payload per 20 ms Opus frame.
    audio: Vec<Arc<[u8]>>,
    /// Per video frame: its payloads (the last one carries the marker bit).
    video: Vec<Vec<Arc<[u8]>>>,
    /// RTP time per video frame (90 kHz).
    video_ticks: u32,
    video_period: Duration,
    audio_level: u8,
}

impl Packets {
    pub(super) fn of(clip: &Clip, fps: u32) -> Self {
        let audio = clip.audio.iter().map(|f| Arc::from(&f.data[..])).collect();
        let video = clip
            .video
            .iter()
            .map(|f| {
                f.data
                    .chunks(VP8_MTU - 1)
                    .enumerate()
                    .map(|(i, chunk)| {
                        // RFC 7741 §4.2: S (start of partition) on the first packet only.
                        let mut p = Vec::with_capacity(chunk.len() + 1);
                        p.push(if i == 0 { 0x10 } else { 0x00 });
                        p.extend_from_slice(chunk);
                        Arc::from(p)
                    })
                    .collect()
            })
            .collect();
        Self {
            audio,
            video,
            video_ticks: 90_000 / fps.max(1),
            video_period: Duration::from_secs(1) / fps.max(1),
            audio_level: clip.audio_level,
        }
    }
}

/// What a lean participant sends: a microphone, and a camera (one stream, or three
/// simulcast layers).
#[derive(Clone)]
pub struct Media {
    /// The clip (its audio, and the camera's video when not in layers).
    pub(super) packets: Arc<Packets>,
    /// Simulcast: the camera's layers (`l`, `m`, `h`), each its own clip size.
    pub(super) layers: Vec<(Rid, Arc<Packets>)>,
    pub(super) camera: bool,
    /// The microphone's level (RFC 6464: 0 loudest, 127 silence).
    pub(super) level: u8,
}

impl Media {
    /// A camera and a microphone at the clip's level, in one stream.
    pub(super) fn camera(packets: Arc<Packets>) -> Self {
        let level = packets.audio_level;
        Media {
            packets,
            layers: Vec::new(),
            camera: true,
            level,
        }
    }
}

/// One of our outgoing streams.
#[derive(Clone)]
struct Stream {
    kind: MediaKind,
    rid: Option<Rid>,
    ssrc: Ssrc,
    pt: Pt,
    seq: u64,
}

/// A publisher's place in the clip and its outgoing streams.
pub(super) struct Publish {
    media: Media,
    /// (kind, mid) of our send-only m-lines; their streams once negotiation made them.
    mids: Vec<(MediaKind, Mid)>,
    streams: Vec<Stream>,
    /// Dynacast: the layers the node says someone needs (None: all).
    wanted: Option<Vec<Rid>>,
    audio_at: usize,
    video_at: usize,
    audio_time: u32,
    video_time: u32,
    next_audio: tokio::time::Instant,
    next_video: tokio::time::Instant,
}

impl Publish {
    pub(super) fn new(media: Media, mids: Vec<(MediaKind, Mid)>) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            media,
            mids,
            streams: Vec::new(),
            wanted: None,
            audio_at: 0,
            video_at: 0,
            audio_time: rand::random(),
            video_time: rand::random(),
            next_audio: now,
            next_video: now,
        }
    }

    pub(super) fn due(&self) -> tokio::time::Instant {
        self.next_audio.min(self.next_video)
    }

    /// Dynacast: from now on, only these layers of the camera.
    pub(super) fn set_layers(&mut self, layers: &[String]) {
        self.wanted = Some(layers.iter().map(|l| Rid::from(l.as_str())).collect());
    }

    /// Looks up our streams (once negotiation made them).
    fn streams(&mut self, rtc: &mut Rtc) -> bool {
        let rids: Vec<Option<Rid>> = if self.media.layers.is_empty() {
            vec![None]
        } else {
            self.media.layers.iter().map(|(r, _)| Some(*r)).collect()
        };
        let want = self
            .mids
            .iter()
            .map(|(k, _)| {
                if *k == MediaKind::Video {
                    rids.len()
                } else {
                    1
                }
            })
            .sum::<usize>();
        if self.streams.len() == want {
            return true;
        }
        self.streams.clear();
        for (kind, mid) in &self.mids {
            let codec = if *kind == MediaKind::Audio {
                Codec::Opus
            } else {
                Codec::Vp8
            };
            let Some(pt) = rtc
                .codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                return false;
            };
            let layers = if *kind == MediaKind::Video {
                &rids[..]
            } else {
                &[None]
            };
            for rid in layers {
                let Some(ssrc) = rtc
                    .direct_api()
                    .stream_tx_by_mid(*mid, *rid)
                    .map(|s| s.ssrc())
                else {
                    return false;
                };
                self.streams.push(Stream {
                    kind: *kind,
                    rid: *rid,
                    ssrc,
                    pt,
                    seq: u64::from(rand::random::<u16>()),
                });
            }
        }
        true
    }

    /// Writes the frames that are due.
    pub(super) fn write_due(&mut self, rtc: &mut Rtc, counters: &Counters) {
        let now = tokio::time::Instant::now();
        let period = self.media.packets.video_period;
        if !self.streams(rtc) {
            self.next_audio = now + Duration::from_millis(20);
            self.next_video = now + period;
            return;
        }
        let wall = Instant::now();
        let level = self.media.level;
        while self.next_audio <= now {
            let packets = &self.media.packets;
            let p = &packets.audio[self.audio_at % packets.audio.len()];
            for s in self
                .streams
                .iter_mut()
                .filter(|s| s.kind == MediaKind::Audio)
            {
                let mut direct = rtc.direct_api();
                let Some(tx) = direct.stream_tx(&s.ssrc) else {
                    continue;
                };
                let ext = ExtensionValues {
                    audio_level: Some(-(level as i8)),
                    voice_activity: Some(level < 127),
                    ..Default::default()
                };
                let w = RtpWrite::new(s.pt, s.seq.into(), self.audio_time, wall, p.clone())
                    .marker(true)
                    .ext_vals(ext);
                tx.write_rtp(w);
                s.seq += 1;
            }
            self.audio_time = self.audio_time.wrapping_add(960);
            self.audio_at += 1;
            self.next_audio += Duration::from_millis(20);
            counters.sent_audio_frames.fetch_add(1, Ordering::Relaxed);
        }
        while self.next_video <= now {
            for s in self
                .streams
                .iter_mut()
                .filter(|s| s.kind == MediaKind::Video)
            {
                if let (Some(rid), Some(wanted)) = (s.rid, &self.wanted)
                    && !wanted.contains(&rid)
                {
                    continue;
                }
                let packets = match s.rid {
                    Some(rid) => match self.media.layers.iter().find(|(r, _)| *r == rid) {
                        Some((_, p)) => p,
                        None => continue,
                    },
                    None => &self.media.packets,
                };
                let mut direct = rtc.direct_api();
                let Some(tx) = direct.stream_tx(&s.ssrc) else {
                    continue;
                };
                let frame = &packets.video[self.video_at % packets.video.len()];
                for (i, p) in frame.iter().enumerate() {
                    let w = RtpWrite::new(s.pt, s.seq.into(), self.video_time, wall, p.clone())
                        .marker(i + 1 == frame.len())
                        .nackable(true);
                    tx.write_rtp(w);
                    s.seq += 1;
                }
            }
            self.video_time = self.video_time.wrapping_add(self.media.packets.video_ticks);
            self.video_at += 1;
            self.next_video += period;
            counters.sent_video_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}
