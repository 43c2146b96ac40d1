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
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::SinkExt;
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::janus;
use crate::media::{Clip, ClipSpec};

/// Largest VP8 payload per packet (descriptor included), as browsers packetise.
const VP8_MTU: usize = 1_100;

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

/// The clip as RTP payloads, made once and shared by every publisher.
struct Packets {
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
    fn of(clip: &Clip, fps: u32) -> Self {
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
}

struct Peer {
    publishing: bool,
    join_time: Duration,
    counters: Arc<Counters>,
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

/// What happened during [`LeanLoad::measure`].
#[derive(Clone, Debug, Default)]
pub struct LeanReport {
    pub window: Duration,
    pub peers: usize,
    pub join_failures: usize,
    /// Join times (controller call to ICE and DTLS connected), sorted.
    pub join_times: Vec<Duration>,
    /// Time from the start of the join to the first media packet received, of the peers
    /// that received any, sorted.
    pub first_media: Vec<Duration>,
    pub packets: u64,
    pub bytes: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    /// What the publishers sent times the peers that receive each of them.
    pub video_expected: u64,
    pub audio_expected: u64,
    pub seq_lost: u64,
}

impl LeanReport {
    pub fn join_percentile(&self, p: f64) -> Duration {
        percentile(&self.join_times, p)
    }

    pub fn first_media_percentile(&self, p: f64) -> Duration {
        percentile(&self.first_media, p)
    }

    /// The share of expected video frames that did not arrive (0..1).
    pub fn video_loss(&self) -> f64 {
        loss(self.video_frames, self.video_expected)
    }

    pub fn audio_loss(&self) -> f64 {
        loss(self.audio_frames, self.audio_expected)
    }

    /// Reports of loads that ran at once, as one (their windows overlap: the longest
    /// counts).
    pub fn merge(reports: impl IntoIterator<Item = LeanReport>) -> LeanReport {
        let mut all = LeanReport::default();
        for r in reports {
            all.window = all.window.max(r.window);
            all.peers += r.peers;
            all.join_failures += r.join_failures;
            all.join_times.extend(r.join_times);
            all.first_media.extend(r.first_media);
            all.packets += r.packets;
            all.bytes += r.bytes;
            all.video_frames += r.video_frames;
            all.audio_frames += r.audio_frames;
            all.video_expected += r.video_expected;
            all.audio_expected += r.audio_expected;
            all.seq_lost += r.seq_lost;
        }
        all.join_times.sort();
        all.first_media.sort();
        all
    }
}

/// The `p` quantile of `sorted` (zero when empty).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn loss(got: u64, expected: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        1.0 - got.min(expected) as f64 / expected as f64
    }
}

/// The report's lines, as the benches print them.
pub fn summary(r: &LeanReport) -> String {
    let secs = r.window.as_secs_f64().max(1e-9);
    format!(
        "peers: {} ({} failed to join)\n\
         join time: p50 {} ms, p99 {} ms\n\
         time to first media: p50 {} ms, p99 {} ms\n\
         received: {:.0} packets/s, {:.1} Mbit/s of payload\n\
         video frames: {} of {} expected (loss {:.2} %)\n\
         audio frames: {} of {} expected (loss {:.2} %)\n\
         rtp sequence gaps: {}\n",
        r.peers,
        r.join_failures,
        r.join_percentile(0.5).as_millis(),
        r.join_percentile(0.99).as_millis(),
        r.first_media_percentile(0.5).as_millis(),
        r.first_media_percentile(0.99).as_millis(),
        r.packets as f64 / secs,
        r.bytes as f64 * 8.0 / secs / 1e6,
        r.video_frames,
        r.video_expected,
        r.video_loss() * 100.0,
        r.audio_frames,
        r.audio_expected,
        r.audio_loss() * 100.0,
        r.seq_lost,
    )
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
                    match (janus, packets) {
                        (None, packets) => join_fjord(&spec.server, &name, packets, stop)
                            .await
                            .map(|j| (j, None)),
                        (Some(room), Some(packets)) => janus_publish(room, &name, packets, stop)
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
        // Every peer receives every other peer's tracks.
        let receivers = self.peers.len().saturating_sub(1) as u64;
        for (i, p) in self.peers.iter().enumerate() {
            r.packets += d(i, 0);
            r.bytes += d(i, 1);
            r.video_frames += d(i, 2);
            r.audio_frames += d(i, 3);
            r.seq_lost += d(i, 4);
            if p.publishing {
                r.video_expected += d(i, 5) * receivers;
                r.audio_expected += d(i, 6) * receivers;
            }
        }
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

/// The signaling WebSocket.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A peer's socket on `ip` and its `Rtc`, in RTP mode, with Opus and VP8 only.
async fn lean_rtc(ip: IpAddr) -> anyhow::Result<(UdpSocket, SocketAddr, Rtc)> {
    let socket = UdpSocket::bind((ip, 0)).await?;
    let local = socket.local_addr()?;
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    Ok((socket, local, rtc))
}

/// An offer, its pending change and the m-lines it adds to send on.
type Offer = (SdpOffer, SdpPendingOffer, Vec<(MediaKind, Mid)>);

/// A publisher's offer: a send-only audio and a send-only video m-line.
fn publish_offer(rtc: &mut Rtc) -> anyhow::Result<Offer> {
    let mut change = rtc.sdp_api();
    let mut sending = Vec::new();
    for kind in [MediaKind::Audio, MediaKind::Video] {
        let mid = change.add_media(kind, Direction::SendOnly, None, None, None);
        sending.push((kind, mid));
    }
    let (offer, pending) = change.apply().context("an offer")?;
    Ok((offer, pending, sending))
}

impl Runner {
    fn new(
        started: Instant,
        (socket, local, rtc): (UdpSocket, SocketAddr, Rtc),
        ws: Option<Ws>,
        counters: Arc<Counters>,
        publish: Option<Publish>,
    ) -> Self {
        Runner {
            started,
            rtc,
            socket,
            local,
            ws,
            counters,
            highest: HashMap::new(),
            connected: false,
            publish,
        }
    }

    /// Drives the peer here until the connection is up (ICE and DTLS), then leaves it
    /// running in a task of its own; returns the peer (its join time is from `started`
    /// to connected) and its task.
    async fn connect(
        mut self,
        stop: CancellationToken,
    ) -> anyhow::Result<(Peer, tokio::task::JoinHandle<()>)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !self.connected {
            if tokio::time::Instant::now() > deadline {
                bail!("no ICE and DTLS connection within 15 s");
            }
            self.step(&stop).await?;
        }
        let peer = Peer {
            publishing: self.publish.is_some(),
            join_time: self.started.elapsed(),
            counters: self.counters.clone(),
        };
        let task = tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Err(e) = self.step(&stop).await {
                    tracing::debug!(error = %e, "lean peer ended");
                    break;
                }
            }
        });
        Ok((peer, task))
    }
}

/// Joins a Fjord meeting through the controller, opens signaling with the media node,
/// negotiates and waits for ICE; then leaves the peer running in a task of its own.
async fn join_fjord(
    server: &Server,
    name: &str,
    packets: Option<Arc<Packets>>,
    stop: CancellationToken,
) -> anyhow::Result<(Peer, tokio::task::JoinHandle<()>)> {
    let Server::Fjord {
        controller,
        meeting,
        region,
    } = server
    else {
        bail!("not a Fjord meeting");
    };
    let started = Instant::now();
    let cfg = crate::BotConfig {
        controller: controller.clone(),
        meeting: meeting.clone(),
        name: name.to_owned(),
        password: None,
        host_key: None,
        panelist_key: None,
        registrant_key: None,
        region: region.clone(),
        publish: None,
        signal_ca: None,
    };
    let (_joined, mut ws) = crate::client::open_signaling(&cfg, None).await?;
    let (socket, local, mut rtc) = lean_rtc(Ipv4Addr::LOCALHOST.into()).await?;
    let (offer, pending, sending) = if packets.is_some() {
        publish_offer(&mut rtc)?
    } else {
        // Something to negotiate, so that the connection comes up before anyone else's
        // tracks are offered.
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change.apply().context("an offer")?;
        (offer, pending, Vec::new())
    };
    send(
        &mut ws,
        json!({ "type": "offer", "sdp": offer.to_sdp_string() }),
    )
    .await?;
    let answer = loop {
        let msg = crate::client::next_json(&mut ws).await?;
        if msg["type"] == "answer" {
            break msg;
        }
    };
    let answer = SdpAnswer::from_sdp_string(answer["sdp"].as_str().unwrap_or_default())
        .context("the node's answer")?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .context("accepting the answer")?;
    Runner::new(
        started,
        (socket, local, rtc),
        Some(ws),
        Arc::default(),
        packets.map(|p| Publish::new(p, sending)),
    )
    .connect(stop)
    .await
}

/// Where the peers of a Janus load join, and from which address.
struct JanusRoom {
    session: janus::Session,
    room: u64,
    peers_at: IpAddr,
}

/// Joins Janus's VideoRoom as a publisher (join, then publish with an offer) and waits
/// for ICE; returns the peer, its task and its feed id.
async fn janus_publish(
    janus: &JanusRoom,
    name: &str,
    packets: Arc<Packets>,
    stop: CancellationToken,
) -> anyhow::Result<((Peer, tokio::task::JoinHandle<()>), u64)> {
    let started = Instant::now();
    let mut handle = janus.session.attach().await?;
    let joined = handle
        .request(
            json!({ "request": "join", "ptype": "publisher", "room": janus.room, "display": name }),
            None,
            |d| d["videoroom"] == "joined",
        )
        .await?;
    let feed = joined["plugindata"]["data"]["id"]
        .as_u64()
        .context("no publisher id in Janus's joined event")?;
    let (socket, local, mut rtc) = lean_rtc(janus.peers_at).await?;
    let (offer, pending, sending) = publish_offer(&mut rtc)?;
    let configured = handle
        .request(
            json!({ "request": "publish" }),
            Some(json!({ "type": "offer", "sdp": offer.to_sdp_string() })),
            |d| d["configured"] == "ok",
        )
        .await?;
    let answer = SdpAnswer::from_sdp_string(
        configured["jsep"]["sdp"]
            .as_str()
            .context("no SDP answer in Janus's configured event")?,
    )
    .context("Janus's answer")?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .context("accepting Janus's answer")?;
    let joined = Runner::new(
        started,
        (socket, local, rtc),
        None,
        Arc::default(),
        Some(Publish::new(packets, sending)),
    )
    .connect(stop)
    .await?;
    Ok((joined, feed))
}

/// Subscribes to `feeds` in Janus's VideoRoom on one PeerConnection (Janus offers, we
/// answer), counting into `counters`, and waits for ICE.
async fn janus_subscribe(
    janus: &JanusRoom,
    feeds: &[u64],
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> anyhow::Result<(Peer, tokio::task::JoinHandle<()>)> {
    let started = Instant::now();
    let mut handle = janus.session.attach().await?;
    let streams: Vec<Value> = feeds.iter().map(|f| json!({ "feed": f })).collect();
    let attached = handle
        .request(
            json!({ "request": "join", "ptype": "subscriber", "room": janus.room, "streams": streams }),
            None,
            |d| d["videoroom"] == "attached",
        )
        .await?;
    let offer = SdpOffer::from_sdp_string(
        attached["jsep"]["sdp"]
            .as_str()
            .context("no SDP offer in Janus's attached event")?,
    )
    .context("Janus's offer")?;
    let (socket, local, mut rtc) = lean_rtc(janus.peers_at).await?;
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .context("accepting Janus's offer")?;
    handle
        .request(
            json!({ "request": "start" }),
            Some(json!({ "type": "answer", "sdp": answer.to_sdp_string() })),
            |d| d["started"] == "ok",
        )
        .await?;
    Runner::new(started, (socket, local, rtc), None, counters, None)
        .connect(stop)
        .await
}

/// The next signaling message, if the peer has signaling; never, if not.
async fn next_signal(ws: &mut Option<Ws>) -> anyhow::Result<Value> {
    match ws {
        Some(ws) => crate::client::next_json(ws).await,
        None => std::future::pending().await,
    }
}

async fn send(ws: &mut Ws, msg: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(msg.to_string().into())).await?;
    Ok(())
}

/// A publisher's place in the clip and its outgoing streams.
struct Publish {
    packets: Arc<Packets>,
    /// (kind, mid) of our send-only m-lines; their SSRCs and payload types once known.
    mids: Vec<(MediaKind, Mid)>,
    streams: Vec<(MediaKind, Ssrc, Pt)>,
    audio_at: usize,
    video_at: usize,
    audio_seq: u64,
    video_seq: u64,
    audio_time: u32,
    video_time: u32,
    next_audio: tokio::time::Instant,
    next_video: tokio::time::Instant,
}

impl Publish {
    fn new(packets: Arc<Packets>, mids: Vec<(MediaKind, Mid)>) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            packets,
            mids,
            streams: Vec::new(),
            audio_at: 0,
            video_at: 0,
            audio_seq: u64::from(rand::random::<u16>()),
            video_seq: u64::from(rand::random::<u16>()),
            audio_time: rand::random(),
            video_time: rand::random(),
            next_audio: now,
            next_video: now,
        }
    }

    fn due(&self) -> tokio::time::Instant {
        self.next_audio.min(self.next_video)
    }

    /// Looks up our streams (once negotiation made them).
    fn streams(&mut self, rtc: &mut Rtc) -> bool {
        if self.streams.len() == self.mids.len() {
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
            let Some(ssrc) = rtc
                .direct_api()
                .stream_tx_by_mid(*mid, None)
                .map(|s| s.ssrc())
            else {
                return false;
            };
            self.streams.push((*kind, ssrc, pt));
        }
        true
    }

    /// Writes the frames that are due.
    fn write_due(&mut self, rtc: &mut Rtc, counters: &Counters) {
        let now = tokio::time::Instant::now();
        if !self.streams(rtc) {
            self.next_audio = now + Duration::from_millis(20);
            self.next_video = now + self.packets.video_period;
            return;
        }
        let wall = Instant::now();
        let streams = self.streams.clone();
        for (kind, ssrc, pt) in streams {
            let mut direct = rtc.direct_api();
            let Some(tx) = direct.stream_tx(&ssrc) else {
                continue;
            };
            if kind == MediaKind::Audio {
                while self.next_audio <= now {
                    let p = &self.packets.audio[self.audio_at % self.packets.audio.len()];
                    let ext = ExtensionValues {
                        audio_level: Some(-(self.packets.audio_level as i8)),
                        voice_activity: Some(true),
                        ..Default::default()
                    };
                    let w =
                        RtpWrite::new(pt, self.audio_seq.into(), self.audio_time, wall, p.clone())
                            .marker(true)
                            .ext_vals(ext);
                    tx.write_rtp(w);
                    self.audio_seq += 1;
                    self.audio_time = self.audio_time.wrapping_add(960);
                    self.audio_at += 1;
                    self.next_audio += Duration::from_millis(20);
                    counters.sent_audio_frames.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                while self.next_video <= now {
                    let frame = &self.packets.video[self.video_at % self.packets.video.len()];
                    for (i, p) in frame.iter().enumerate() {
                        let w = RtpWrite::new(
                            pt,
                            self.video_seq.into(),
                            self.video_time,
                            wall,
                            p.clone(),
                        )
                        .marker(i + 1 == frame.len())
                        .nackable(true);
                        tx.write_rtp(w);
                        self.video_seq += 1;
                    }
                    self.video_time = self.video_time.wrapping_add(self.packets.video_ticks);
                    self.video_at += 1;
                    self.next_video += self.packets.video_period;
                    counters.sent_video_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// One lean peer: its `Rtc`, socket and signaling, driven one input at a time.
struct Runner {
    /// When the join began.
    started: Instant,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    /// Fjord's signaling, on which the node offers new tracks (Janus's subscriptions are
    /// negotiated once, at the join).
    ws: Option<Ws>,
    counters: Arc<Counters>,
    /// Per incoming SSRC: the highest extended sequence number seen, and whether it is
    /// audio.
    highest: HashMap<Ssrc, (u64, bool)>,
    connected: bool,
    publish: Option<Publish>,
}

impl Runner {
    /// Sends what the `Rtc` has to send, then waits for one input (a datagram, a
    /// signaling message, a timeout, a frame due) and feeds it.
    async fn step(&mut self, stop: &CancellationToken) -> anyhow::Result<()> {
        let timeout = loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(e) => self.event(e),
            }
        };
        let mut due = tokio::time::Instant::from_std(timeout);
        if let Some(p) = &self.publish
            && self.connected
        {
            due = due.min(p.due());
        }
        let mut buf = [0u8; 2048];
        tokio::select! {
            _ = stop.cancelled() => {}
            r = self.socket.recv_from(&mut buf) => {
                let (n, source) = r?;
                if let Ok(rx) = Receive::new(Protocol::Udp, source, self.local, &buf[..n]) {
                    self.rtc.handle_input(Input::Receive(Instant::now(), rx))?;
                }
            }
            msg = next_signal(&mut self.ws) => {
                let msg = msg?;
                if msg["type"] == "offer" && let Some(ws) = &mut self.ws {
                    let offer = SdpOffer::from_sdp_string(msg["sdp"].as_str().unwrap_or_default())?;
                    let answer = self.rtc.sdp_api().accept_offer(offer)?;
                    send(ws, json!({ "type": "answer", "sdp": answer.to_sdp_string() })).await?;
                }
            }
            _ = tokio::time::sleep_until(due) => {
                if let Some(p) = &mut self.publish && self.connected {
                    p.write_due(&mut self.rtc, &self.counters);
                }
                self.rtc.handle_input(Input::Timeout(Instant::now()))?;
            }
        }
        Ok(())
    }

    fn event(&mut self, e: Event) {
        match e {
            // DTLS is up: media can flow (ICE says `Completed` on our, controlling, side).
            Event::Connected => self.connected = true,
            Event::RtpPacket(p) => {
                let c = &self.counters;
                if c.first_media_ms.load(Ordering::Relaxed) == 0 {
                    let ms = self.started.elapsed().as_millis().max(1) as u64;
                    c.first_media_ms.store(ms, Ordering::Relaxed);
                }
                c.packets.fetch_add(1, Ordering::Relaxed);
                c.bytes.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                let seq = *p.seq_no;
                let ssrc = p.header.ssrc;
                let (highest, audio) = match self.highest.get_mut(&ssrc) {
                    Some(h) => h,
                    None => {
                        let audio = self
                            .rtc
                            .direct_api()
                            .stream_rx(&ssrc)
                            .map(|s| s.mid())
                            .and_then(|mid| self.rtc.media(mid).map(|m| m.kind()))
                            == Some(MediaKind::Audio);
                        self.highest
                            .entry(ssrc)
                            .or_insert((seq.saturating_sub(1), audio))
                    }
                };
                if seq > *highest {
                    c.seq_lost.fetch_add(seq - *highest - 1, Ordering::Relaxed);
                    *highest = seq;
                }
                // Audio packets are whole frames; a video frame ends on the marker bit.
                if *audio {
                    c.audio_frames.fetch_add(1, Ordering::Relaxed);
                } else if p.header.marker {
                    c.video_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
}
