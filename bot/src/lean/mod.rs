//! The lean load generator: many str0m peers in one process, in RTP mode, so that one
//! media node can be driven to a full core on a 2-core machine. Publishers send a clip
//! encoded once and packetised once up front (Opus one packet per frame, VP8 split at
//! 1,100 bytes behind a one-byte payload descriptor); subscribers count packets, bytes
//! and frames (a video frame ends on a marker bit) without decrypting more than SRTP
//! needs or decoding anything. The webrtc-rs bots (`client`) stay the interop reference;
//! this is for measuring cost.
//!
//! The same peers load Janus's VideoRoom ([`Server::Janus`]), so that the two servers
//! are measured under one load generator: there a publisher publishes on one
//! PeerConnection and receives the other publishers on a second one, so that everyone
//! receives every other peer's tracks, as in a Fjord meeting.
//!
//! `meeting` is one large meeting on receive slots, joined at a steady rate (the
//! `fjord-bench-meeting` load).
//!
//! By concern: `join` (joining a Fjord meeting or Janus's VideoRoom), `runner` (a peer
//! driven one input at a time, counting what it receives), `publish` (the clip as RTP
//! payloads, sent as frames fall due) and `report` (what a window measured). Here: the
//! load itself, [`LeanLoad`].
mod join;
mod meeting;
mod publish;
mod report;
mod runner;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use self::join::{JanusRoom, JoinAs, janus_publish, janus_subscribe, join_fjord};
pub use self::meeting::{MeetingLoad, MeetingReport, MeetingSpec};
use self::publish::{Media, Packets};
pub use self::report::{LeanReport, summary};
use crate::janus;
use crate::media::ClipSpec;

/// The server the peers load.
#[derive(Clone, Debug)]
pub enum Server {
    /// A Fjord meeting: each peer joins through the controller and negotiates with its
    /// media node.
    Fjord {
        controller: String,
        meeting: String,
        region: Option<String>,
    },
    /// A room of Janus's VideoRoom plugin, whose HTTP API is at `api`
    /// (`http://…/janus`). Janus gathers no candidates on loopback, so the peers' media
    /// go from `peers_at`, an address of the interface Janus gathers on.
    Janus {
        api: String,
        room: u64,
        peers_at: IpAddr,
    },
}

#[derive(Clone, Debug)]
pub struct LeanSpec {
    pub server: Server,
    pub publishers: usize,
    pub subscribers: usize,
    pub clip: ClipSpec,
    /// How many joins run at once.
    pub join_concurrency: usize,
}

/// What a peer counted; read while it runs.
#[derive(Default)]
pub struct Counters {
    /// RTP packets received (retransmissions included), and their payload bytes.
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Video frames received (packets with the marker bit) and audio packets received.
    pub video_frames: AtomicU64,
    pub audio_frames: AtomicU64,
    /// Packets missing from the received sequence (per SSRC, not yet repaired).
    pub seq_lost: AtomicU64,
    /// Milliseconds from the start of the join to the first media packet received
    /// (0: none yet).
    pub first_media_ms: AtomicU64,
    /// Frames this peer sent, if it publishes.
    pub sent_video_frames: AtomicU64,
    pub sent_audio_frames: AtomicU64,
    /// Signaling messages it got, and of them the node's offers.
    pub signals: AtomicU64,
    pub offers: AtomicU64,
    /// Packets received per incoming stream (SSRC): whether audio, and how many.
    pub streams: std::sync::Mutex<std::collections::HashMap<u32, (bool, u64)>>,
}

/// A connected peer, as the load measures it.
struct Peer {
    publishing: bool,
    join_time: Duration,
    counters: Arc<Counters>,
}

/// The view of a lean peer in a Fjord meeting of `publishers`: a tile for each, and as
/// many audio slots as there are voices, up to the protocol's limit (8).
fn everyone(publishers: usize) -> signaling::View {
    let n = |max: u32| u32::try_from(publishers).unwrap_or(max).clamp(1, max);
    signaling::View {
        video_slots: n(signaling::view::MAX_VIDEO_SLOTS),
        audio_slots: n(signaling::view::MAX_AUDIO_SLOTS),
        ..signaling::View::default_for_client()
    }
}

/// Lean peers in a meeting.
pub struct LeanLoad {
    peers: Vec<Peer>,
    pub failures: Vec<String>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The Janus session the peers' handles belong to.
    janus: Option<janus::Session>,
}

impl LeanLoad {
    /// Encodes the clip once and joins every peer, `join_concurrency` at a time,
    /// publishers first. A peer that fails to join is counted, not fatal.
    pub async fn start(spec: LeanSpec) -> anyhow::Result<LeanLoad> {
        let clip = crate::media::encode(&spec.clip)?;
        let packets = Arc::new(Packets::of(&clip, spec.clip.fps));
        let stop = CancellationToken::new();
        let gate = Arc::new(Semaphore::new(spec.join_concurrency.max(1)));
        let mut load = LeanLoad {
            peers: Vec::new(),
            failures: Vec::new(),
            stop: stop.clone(),
            tasks: Vec::new(),
            janus: None,
        };
        let janus = match &spec.server {
            Server::Janus {
                api,
                room,
                peers_at,
            } => Some(JanusRoom {
                session: janus::Session::create(api).await?,
                room: *room,
                peers_at: *peers_at,
            }),
            Server::Fjord { .. } => None,
        };
        // Publishers first, so that everyone who joins later is offered their tracks.
        let mut feeds = Vec::new();
        for (range, publishing) in [
            (0..spec.publishers, true),
            (spec.publishers..spec.publishers + spec.subscribers, false),
        ] {
            let joins = range.map(|i| {
                let (spec, gate, stop) = (&spec, gate.clone(), stop.clone());
                let packets = publishing.then(|| packets.clone());
                let (feeds, janus) = (&feeds, janus.as_ref());
                async move {
                    let _turn = gate.acquire_owned().await.expect("join gate");
                    let role = if publishing { "pub" } else { "sub" };
                    let name = format!("lean-{role}-{i}");
                    let media = packets.map(Media::camera);
                    match (janus, media) {
                        (None, media) => {
                            let how = JoinAs {
                                name,
                                media,
                                view: Some(everyone(spec.publishers)),
                                ..JoinAs::default()
                            };
                            join_fjord(&spec.server, how, stop).await.map(|j| (j, None))
                        }
                        (Some(room), Some(media)) => janus_publish(room, &name, media, stop)
                            .await
                            .map(|(j, feed)| (j, Some(feed))),
                        (Some(room), None) => janus_subscribe(room, feeds, Arc::default(), stop)
                            .await
                            .map(|j| (j, None)),
                    }
                }
            });
            for r in futures::future::join_all(joins).await {
                match r {
                    Ok(((peer, task), feed)) => {
                        load.peers.push(peer);
                        load.tasks.push(task);
                        feeds.extend(feed);
                    }
                    Err(e) => load.failures.push(format!("{e:#}")),
                }
            }
            // In Janus, publishers receive each other on a second PeerConnection.
            if let (Some(room), true) = (&janus, publishing) {
                let subs = load.peers.iter().zip(&feeds).map(|(p, feed)| {
                    let others: Vec<u64> = feeds.iter().copied().filter(|f| f != feed).collect();
                    let (counters, stop) = (p.counters.clone(), stop.clone());
                    async move {
                        if others.is_empty() {
                            return Ok(None);
                        }
                        janus_subscribe(room, &others, counters, stop)
                            .await
                            .map(|(_, task)| Some(task))
                    }
                });
                for r in futures::future::join_all(subs).await {
                    match r {
                        Ok(task) => load.tasks.extend(task),
                        Err(e) => load.failures.push(format!("{e:#}")),
                    }
                }
            }
        }
        load.janus = janus.map(|r| r.session);
        Ok(load)
    }

    /// Counts over `window` from now.
    pub async fn measure(&self, window: Duration) -> LeanReport {
        let snap = |p: &Peer| {
            let c = &p.counters;
            [
                &c.packets,
                &c.bytes,
                &c.video_frames,
                &c.audio_frames,
                &c.seq_lost,
                &c.sent_video_frames,
                &c.sent_audio_frames,
            ]
            .map(|a| a.load(Ordering::Relaxed))
        };
        let before: Vec<_> = self.peers.iter().map(snap).collect();
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let after: Vec<_> = self.peers.iter().map(snap).collect();
        let window = started.elapsed();
        let d = |i: usize, k: usize| after[i][k] - before[i][k];
        let mut r = LeanReport {
            window,
            peers: self.peers.len(),
            join_failures: self.failures.len(),
            ..Default::default()
        };
        // Every peer receives every other peer's video; and audio, but in Fjord from at
        // most as many as its audio slots (the node's pick), when there are more.
        let receivers = self.peers.len().saturating_sub(1) as u64;
        let publishers = self.peers.iter().filter(|p| p.publishing).count() as u64;
        let voices = match self.janus {
            Some(_) => publishers,
            None => publishers.min(u64::from(signaling::view::MAX_AUDIO_SLOTS)),
        };
        // Voices heard, summed over the receivers (a publisher does not hear itself).
        let heard: u64 = self
            .peers
            .iter()
            .map(|p| (publishers - u64::from(p.publishing)).min(voices))
            .sum();
        let mut audio_sent = 0;
        for (i, p) in self.peers.iter().enumerate() {
            r.packets += d(i, 0);
            r.bytes += d(i, 1);
            r.video_frames += d(i, 2);
            r.audio_frames += d(i, 3);
            r.seq_lost += d(i, 4);
            if p.publishing {
                r.video_expected += d(i, 5) * receivers;
                audio_sent += d(i, 6);
            }
        }
        // What a publisher sent on average, times the voices heard.
        r.audio_expected = audio_sent * heard / publishers.max(1);
        r.join_times = self.peers.iter().map(|p| p.join_time).collect();
        r.join_times.sort();
        r.first_media = self
            .peers
            .iter()
            .map(|p| p.counters.first_media_ms.load(Ordering::Relaxed))
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .collect();
        r.first_media.sort();
        r
    }

    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        if let Some(session) = self.janus {
            session.destroy().await;
        }
    }
}
