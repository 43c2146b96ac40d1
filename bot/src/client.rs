//! A meeting participant on webrtc-rs: joins through the controller, speaks the media
//! node's signaling protocol (docs/signaling.md), publishes a [`Clip`] and counts what it
//! receives from everyone else.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters,
};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpHeaderExtensionCapability, RtpCodecKind};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, Registry, SettingEngineBuilder,
    register_default_interceptors,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpSender};

use crate::media::{Clip, Frame};

const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// How to join.
#[derive(Clone, Debug)]
pub struct BotConfig {
    /// The controller's base URL, e.g. `http://127.0.0.1:8080`.
    pub controller: String,
    pub meeting: String,
    pub name: String,
    pub password: Option<String>,
    /// The meeting's host key: join as its host.
    pub host_key: Option<String>,
    /// A webinar's panelist key: join as a panelist.
    pub panelist_key: Option<String>,
    /// A registrant's personal join key (meetings that require registration).
    pub registrant_key: Option<String>,
    pub region: Option<String>,
    /// What to publish; `None` joins as a listener only.
    pub publish: Option<Arc<Clip>>,
    /// CA certificates (PEM) trusted for `wss://` signaling besides the system's.
    pub signal_ca: Option<Arc<Vec<u8>>>,
}

/// What arrived of one remote track.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackCounts {
    pub packets: u64,
    pub bytes: u64,
    /// Video: packets that end a frame (RTP marker). Audio: packets.
    pub frames: u64,
    /// Video: frames that begin with a VP8 keyframe.
    pub keyframes: u64,
    /// Packets missing from the received sequence-number range.
    pub lost: u64,
    /// Packets received per RTP timestamp (one timestamp is one frame).
    pub by_timestamp: BTreeMap<u32, u32>,
    /// Audio: the payloads (Opus frames) of the first [`AUDIO_KEPT`] packets, to decode.
    pub audio: Vec<Vec<u8>>,
    /// Video: the payloads of the first [`VIDEO_KEPT`] packets from the first keyframe
    /// on, with their marker bits, to decode.
    pub video: Vec<(Vec<u8>, bool)>,
    /// The largest difference, in milliseconds, between how far the RTP timestamp moved
    /// from one packet to the next in sequence and how much time passed between their
    /// arrivals: a stream whose timestamps jump (at a badly rewritten layer switch) shows
    /// it here.
    pub max_timestamp_jump_ms: f64,
    /// The longest time, in milliseconds, between two packets' arrivals.
    pub max_gap_ms: f64,
    last_arrival: Option<Instant>,
    /// The last packet in sequence: (extended sequence number, timestamp, arrival).
    last_in_sequence: Option<(u64, u32, Instant)>,
    first_seq: Option<u64>,
    highest_seq: u64,
    /// Which of the last [`SEQ_WINDOW`] sequence numbers arrived: a packet that came
    /// twice (first time and as a retransmission) counts once.
    seen: SeqWindow,
    /// After [`Bot::clear_received`]: the highest sequence number before it. A packet at
    /// or below it is a resend (a NACK's answer, or a sender's padding made of resent
    /// packets) of what arrived before, not new media, and does not count.
    floor: Option<u16>,
    floor_ext: Option<u64>,
}

/// How many recent sequence numbers a track remembers, for duplicates.
const SEQ_WINDOW: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
struct SeqWindow([u64; (SEQ_WINDOW / 64) as usize]);

impl Default for SeqWindow {
    fn default() -> Self {
        Self([0; (SEQ_WINDOW / 64) as usize])
    }
}

impl SeqWindow {
    fn slot(ext: u64) -> (usize, u64) {
        ((ext % SEQ_WINDOW / 64) as usize, 1 << (ext % 64))
    }

    fn contains(&self, ext: u64) -> bool {
        let (w, bit) = Self::slot(ext);
        self.0[w] & bit != 0
    }

    fn set(&mut self, ext: u64) {
        let (w, bit) = Self::slot(ext);
        self.0[w] |= bit;
    }

    /// Forgets `from..=to` (the slots the window moves onto).
    fn clear(&mut self, from: u64, to: u64) {
        for ext in from.max(to.saturating_sub(SEQ_WINDOW - 1))..=to {
            let (w, bit) = Self::slot(ext);
            self.0[w] &= !bit;
        }
    }
}

impl TrackCounts {
    /// Empty counts that go on from these: a packet at or below the highest sequence
    /// number counted so far is not counted again.
    fn cleared(&self) -> Self {
        Self {
            floor: (self.packets > 0).then_some(self.highest_seq as u16),
            ..Self::default()
        }
    }

    /// When its last packet arrived.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        seq: u16,
        timestamp: u32,
        clock_rate: u32,
        at: Instant,
        bytes: usize,
        end_of_frame: bool,
        keyframe: bool,
    ) {
        if self.packets == 0
            && let Some(floor) = self.floor
            && seq.wrapping_sub(floor) as i16 <= 0
        {
            return;
        }
        let ext = match self.first_seq {
            None => {
                self.first_seq = Some(u64::from(seq) + (1 << 16));
                u64::from(seq) + (1 << 16)
            }
            Some(_) => unwrap_seq(self.highest_seq, seq),
        };
        if self.packets == 0 {
            self.seen.clear(ext, ext);
            self.highest_seq = ext;
            if let Some(floor) = self.floor {
                // From here on the floor is an extended sequence number.
                self.floor_ext = Some(ext - u64::from(seq.wrapping_sub(floor)));
            }
        } else if self.floor_ext.is_some_and(|f| ext <= f) {
            return;
        } else if ext > self.highest_seq {
            self.seen.clear(self.highest_seq + 1, ext);
            self.highest_seq = ext;
        } else if ext + SEQ_WINDOW <= self.highest_seq || self.seen.contains(ext) {
            // Seen already, or too old to tell.
            return;
        }
        self.seen.set(ext);
        if let Some(last) = self.last_arrival {
            let gap = at.saturating_duration_since(last).as_secs_f64() * 1000.0;
            self.max_gap_ms = self.max_gap_ms.max(gap);
        }
        self.last_arrival = Some(at);
        *self.by_timestamp.entry(timestamp).or_default() += 1;
        if let Some((last, last_ts, last_at)) = self.last_in_sequence
            && ext == last + 1
        {
            let moved = f64::from(timestamp.wrapping_sub(last_ts) as i32) * 1000.0
                / f64::from(clock_rate.max(1));
            let passed = at.saturating_duration_since(last_at).as_secs_f64() * 1000.0;
            self.max_timestamp_jump_ms = self.max_timestamp_jump_ms.max((moved - passed).abs());
        }
        if self.last_in_sequence.is_none_or(|(last, _, _)| ext > last) {
            self.last_in_sequence = Some((ext, timestamp, at));
        }
        self.packets += 1;
        self.bytes += bytes as u64;
        self.frames += u64::from(end_of_frame);
        self.keyframes += u64::from(keyframe);
        let span = self.highest_seq - self.first_seq.unwrap_or(ext) + 1;
        self.lost = span.saturating_sub(self.packets);
    }
}

/// Extends a 16-bit sequence number to 64 bits next to the highest one seen.
fn unwrap_seq(highest: u64, seq: u16) -> u64 {
    let base = highest & !0xffff;
    let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
    candidates
        .into_iter()
        .map(|b| b + u64::from(seq))
        .min_by_key(|c| c.abs_diff(highest))
        .expect("three candidates")
}

/// One frame a publishing bot sent: its RTP timestamp, how many packets it took, and
/// when (Unix milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentFrame {
    pub kind: &'static str,
    pub timestamp: u32,
    pub packets: u32,
    pub unix_ms: u64,
}

/// Audio frames a bot keeps of each publisher: 5 s.
pub const AUDIO_KEPT: usize = 250;
pub const VIDEO_KEPT: usize = 600;

/// Remote tracks by (publisher participant id, kind).
pub type Received = BTreeMap<(String, &'static str), TrackCounts>;

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    received: Arc<Mutex<Received>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // The media node names the stream after the participant who publishes it.
        let publisher = track.stream_id().await.to_string();
        let kind = match track.kind().await {
            RtpCodecKind::Audio => "audio",
            _ => "video",
        };
        let received = self.received.clone();
        let main = track.ssrcs().await;
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(p) = ev else {
                    continue;
                };
                // A retransmission (RTX, RFC 4588) comes on its own SSRC with the
                // original sequence number first: it counts as that packet.
                let (seq, payload) = if main.contains(&p.header.ssrc) {
                    (p.header.sequence_number, &p.payload[..])
                } else if p.payload.len() > 2 {
                    (
                        u16::from_be_bytes([p.payload[0], p.payload[1]]),
                        &p.payload[2..],
                    )
                } else {
                    continue; // padding
                };
                let video = kind == "video";
                let keyframe = video && common::vp8::keyframe_start(payload);
                let end = !video || p.header.marker;
                let clock_rate = if video { 90_000 } else { 48_000 };
                let at = Instant::now();
                let mut received = received.lock().expect("counters");
                let counts = received.entry((publisher.clone(), kind)).or_default();
                if !video && counts.audio.len() < AUDIO_KEPT {
                    counts.audio.push(payload.to_vec());
                }
                if video
                    && (keyframe || !counts.video.is_empty())
                    && counts.video.len() < VIDEO_KEPT
                {
                    counts.video.push((payload.to_vec(), p.header.marker));
                }
                counts.add(
                    seq,
                    p.header.timestamp,
                    clock_rate,
                    at,
                    payload.len(),
                    end,
                    keyframe,
                );
            }
        });
    }
}

/// A joined participant. Drop or [`Bot::leave`] ends it.
pub struct Bot {
    pub participant_id: String,
    pub node_id: String,
    /// From asking the controller to join until the media connection was up.
    pub join_time: Duration,
    publishing: bool,
    pc: Arc<dyn PeerConnection>,
    received: Arc<Mutex<Received>>,
    sent_audio: Arc<AtomicU64>,
    sent_video: Arc<AtomicU64>,
    sent_frames: Arc<Mutex<Vec<SentFrame>>>,
    /// Our m-line for each (publisher, kind), from the node's `track` messages.
    mids: Arc<Mutex<BTreeMap<(String, String), String>>>,
    /// Every other message the node sent after `welcome` (participants, chat, mute,
    /// active speaker), in order.
    events: Arc<Mutex<Vec<Value>>>,
    /// The `welcome` message.
    pub welcome: Value,
    /// The `waiting` message, when we waited in the waiting room first (else null).
    pub waited: Value,
    /// The signaling URL and join token the controller gave us.
    pub signal_url: String,
    pub token: String,
    to_node: mpsc::UnboundedSender<Value>,
    /// Why the session ended (signaling closed, media failed), once it has.
    ended: watch::Receiver<Option<String>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Bot {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Error for a refused call: the controller's `{error, message}`.
async fn refused(what: &str, resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    anyhow::anyhow!(
        "{what} refused ({status}): {}",
        body["message"].as_str().unwrap_or("no message")
    )
}

/// Creates a meeting (an operator call: `POST /v1/meetings` with `body`); returns its id.
/// Without a waiting room unless `body` asks for one: bots have no host to admit them.
pub async fn create_meeting(
    http: &reqwest::Client,
    controller: &str,
    operator_key: &str,
    body: &Value,
) -> anyhow::Result<String> {
    let created = create_meeting_answer(http, controller, operator_key, body).await?;
    created["id"]
        .as_str()
        .map(str::to_owned)
        .context("create response without id")
}

/// [`create_meeting`], returning the controller's whole answer (with the host key).
pub async fn create_meeting_answer(
    http: &reqwest::Client,
    controller: &str,
    operator_key: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let mut body = body.clone();
    if body.get("waiting_room").is_none() {
        body["waiting_room"] = false.into();
    }
    let resp = http
        .post(format!("{}/v1/meetings", controller.trim_end_matches('/')))
        .bearer_auth(operator_key)
        .json(&body)
        .send()
        .await
        .context("reach the controller")?;
    if !resp.status().is_success() {
        return Err(refused("creating the meeting", resp).await);
    }
    resp.json().await.context("create response")
}

impl Bot {
    /// Joins the meeting and waits until media can flow (at most `timeout`).
    pub async fn join(cfg: BotConfig, timeout: Duration) -> anyhow::Result<Bot> {
        Self::rejoin(cfg, None, timeout).await
    }

    /// Joins again after losing media node `lost_node` (the join names it, so that the
    /// controller checks that node before placing anyone there again).
    pub async fn rejoin(
        cfg: BotConfig,
        lost_node: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<Bot> {
        tokio::time::timeout(timeout, Self::join_inner(cfg, lost_node))
            .await
            .context("timed out joining")?
    }

    async fn join_inner(cfg: BotConfig, lost_node: Option<&str>) -> anyhow::Result<Bot> {
        let started = Instant::now();
        let (joined, ws) = open_signaling(&cfg, lost_node).await?;
        let field = |k: &str| -> anyhow::Result<String> {
            joined[k]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("join response without {k}"))
        };
        let (mut ws_tx, mut ws_rx) = ws.split();
        let welcome = joined["welcome"].clone();
        let waited = joined["waited"].clone();

        let received = Arc::new(Mutex::new(Received::new()));
        let (gathered_tx, mut gathered) = watch::channel(false);
        let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
        let handler = Arc::new(Handler {
            gathered: gathered_tx,
            state: state_tx,
            received: received.clone(),
        });
        let mut engine = MediaEngine::default();
        engine.register_default_codecs()?;
        engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: AUDIO_LEVEL_URI.into(),
            },
            RtpCodecKind::Audio,
            None,
        )?;
        let registry = register_default_interceptors(Registry::new(), &mut engine)?;
        let settings = SettingEngineBuilder::new()
            .with_include_loopback_candidate(true)
            .build();
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_media_engine(engine)
                .with_setting_engine(settings)
                .with_interceptor_registry(registry)
                .with_handler(handler)
                .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
                .build()
                .await
                .context("create the peer connection")?,
        );

        let mut senders = Vec::new();
        if cfg.publish.is_some() {
            senders = add_tracks(&*pc, &cfg.name, false).await?;
        } else {
            // Something to negotiate, so that the connection comes up before anyone
            // else's tracks are offered to us.
            pc.add_transceiver_from_kind(
                RtpCodecKind::Audio,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await?;
        }

        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        gathered.wait_for(|g| *g).await.context("ICE gathering")?;
        let local = pc
            .local_description()
            .await
            .context("no local description")?;
        ws_tx
            .send(Message::Text(
                json!({ "type": "offer", "sdp": local.sdp })
                    .to_string()
                    .into(),
            ))
            .await?;

        let (to_node, mut outbox) = mpsc::unbounded_channel::<Value>();
        let mids = Arc::new(Mutex::new(BTreeMap::new()));
        let events = Arc::new(Mutex::new(Vec::new()));
        let (end, ended) = watch::channel(None::<String>);
        let end = Arc::new(end);
        let signaling = {
            let pc = pc.clone();
            let mids = mids.clone();
            let events = events.clone();
            let end = end.clone();
            tokio::spawn(async move {
                let _ended = Ended(end, "signaling closed");
                loop {
                    tokio::select! {
                        out = outbox.recv() => {
                            let Some(out) = out else { break };
                            if ws_tx.send(Message::Text(out.to_string().into())).await.is_err() {
                                break;
                            }
                        }
                        msg = next_json(&mut ws_rx) => {
                            let Ok(msg) = msg else { break };
                            match negotiate(&*pc, &msg).await {
                                Ok(Negotiation::Reply(answer)) => {
                                    if ws_tx.send(Message::Text(answer.to_string().into())).await.is_err() {
                                        break;
                                    }
                                }
                                Ok(Negotiation::Other) if msg["type"] == "track" => {
                                    let field = |k: &str| msg[k].as_str().unwrap_or_default().to_owned();
                                    mids.lock().expect("mids").insert((field("participant_id"), field("kind")), field("mid"));
                                }
                                Ok(Negotiation::Other) => events.lock().expect("events").push(msg),
                                Ok(Negotiation::Applied) => {}
                                Err(e) => tracing::warn!(error = %e, "renegotiation failed"),
                            }
                        }
                    }
                }
            })
        };

        let connected = state
            .wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            })
            .await
            .map(|s| *s)
            .context("peer connection state")?;
        if connected != RTCPeerConnectionState::Connected {
            signaling.abort();
            bail!("media connection {connected}");
        }
        let join_time = started.elapsed();
        // The media connection failing ends the session too.
        let media_watch = {
            let end = end.clone();
            tokio::spawn(async move {
                let failed = state
                    .wait_for(|s| {
                        matches!(
                            s,
                            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                        )
                    })
                    .await
                    .map(|s| *s);
                let why = match failed {
                    Ok(s) => format!("media connection {s}"),
                    Err(_) => "media connection gone".to_owned(),
                };
                mark_ended(&end, why);
            })
        };

        let (sent_audio, sent_video) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let sent_frames = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = vec![signaling, media_watch];
        if let Some(clip) = &cfg.publish {
            let sent = [sent_audio.clone(), sent_video.clone()];
            tasks.extend(start_sending(clip, senders, sent, &sent_frames).await?);
        }
        Ok(Bot {
            participant_id: field("participant_id")?,
            node_id: field("node_id")?,
            join_time,
            publishing: cfg.publish.is_some(),
            pc,
            received,
            sent_audio,
            sent_video,
            sent_frames,
            mids,
            events,
            welcome,
            waited,
            signal_url: field("signal_url")?,
            token: field("token")?,
            to_node,
            ended,
            tasks,
        })
    }

    /// A receiver that sees the session end, and why (signaling closed, media failed).
    pub fn ended_watch(&self) -> watch::Receiver<Option<String>> {
        self.ended.clone()
    }

    pub fn is_publisher(&self) -> bool {
        self.publishing
    }

    /// Starts publishing `clip` in a session that joined without (renegotiating: our
    /// offer adds an audio and a video track). Fails with the node's refusal when it
    /// refuses the offer, or when no answer comes within `timeout`.
    pub async fn publish(&mut self, clip: Arc<Clip>, timeout: Duration) -> anyhow::Result<()> {
        anyhow::ensure!(!self.publishing, "already publishing");
        let refusals = self.events("error").len();
        let senders = add_tracks(&*self.pc, &self.participant_id, true).await?;
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        let local = self
            .pc
            .local_description()
            .await
            .context("no local description")?;
        self.send(json!({ "type": "offer", "sdp": local.sdp }))?;
        let until = Instant::now() + timeout;
        let failed = loop {
            if let Some(e) = self
                .events("error")
                .into_iter()
                .skip(refusals)
                .find(|e| e["in_reply_to"] == "offer")
            {
                break anyhow::anyhow!(
                    "offer refused: {}",
                    e["message"].as_str().unwrap_or_default()
                );
            }
            // The answer applied: no offer of ours pending any more.
            if self.pc.pending_local_description().await.is_none() {
                let sent = [self.sent_audio.clone(), self.sent_video.clone()];
                let tasks = start_sending(&clip, senders, sent, &self.sent_frames).await?;
                self.tasks.extend(tasks);
                self.publishing = true;
                return Ok(());
            }
            if Instant::now() >= until {
                break anyhow::anyhow!("no answer to our offer in {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Back to where we were, so that the node's later offers still apply.
        self.pc
            .set_local_description(RTCSessionDescription::rollback(None)?)
            .await?;
        for (_, sender) in &senders {
            self.pc.remove_track(sender).await?;
        }
        Err(failed)
    }

    /// What has arrived so far from each remote participant.
    pub fn received(&self) -> Received {
        self.received.lock().expect("counters").clone()
    }

    /// Forgets what arrived so far: counting starts again from the next new packet (a
    /// resend of one that arrived before does not count).
    pub fn clear_received(&self) {
        for counts in self.received.lock().expect("counters").values_mut() {
            *counts = counts.cleared();
        }
    }

    /// Audio and video frames sent so far.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.sent_audio.load(Ordering::Relaxed),
            self.sent_video.load(Ordering::Relaxed),
        )
    }

    /// Every frame sent so far, with its RTP timestamp and packet count.
    pub fn sent_frames(&self) -> Vec<SentFrame> {
        self.sent_frames.lock().expect("sent log").clone()
    }

    /// The m-line on which we receive `publisher`'s `kind` track, once announced.
    pub fn mid_of(&self, publisher: &str, kind: &str) -> Option<String> {
        self.mids
            .lock()
            .expect("mids")
            .get(&(publisher.to_owned(), kind.to_owned()))
            .cloned()
    }

    /// The messages of `type` the node sent since the media connection came up.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|m| m["type"] == kind)
            .cloned()
            .collect()
    }

    /// Sends a signaling message (e.g. `{"type":"chat","text":"hi"}`).
    pub fn send(&self, msg: Value) -> anyhow::Result<()> {
        self.to_node
            .send(msg)
            .map_err(|_| anyhow::anyhow!("signaling connection closed"))
    }

    /// Leaves the meeting and closes the connection.
    pub async fn leave(self) {
        let _ = self.send(json!({ "type": "leave" }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = self.pc.close().await;
    }
}

type Sender = (Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>);

/// Adds an audio (Opus) and a video (VP8) track to `pc`, to publish. `fresh`: each on
/// a new send-only transceiver (a session under way has receiving ones, which
/// `add_track` would take over instead of adding m-lines).
async fn add_tracks(
    pc: &dyn PeerConnection,
    name: &str,
    fresh: bool,
) -> anyhow::Result<Vec<Sender>> {
    let mut senders = Vec::new();
    for (kind, codec) in [(RtpCodecKind::Audio, opus()), (RtpCodecKind::Video, vp8())] {
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("fjord-bot-{name}"),
            format!("{kind}"),
            format!("{name} {kind}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(rand::random::<u32>()),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        let sender = if fresh {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                ..Default::default()
            };
            pc.add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, Some(init))
                .await
                .context("add a transceiver")?
                .sender()
                .await?
                .context("a new transceiver without a sender")?
        } else {
            pc.add_track(track.clone() as Arc<dyn TrackLocal>)
                .await
                .context("add a track")?
        };
        senders.push((track, sender));
    }
    Ok(senders)
}

/// Sends `clip` on the negotiated tracks of [`add_tracks`], counting audio and video
/// frames in `sent` and logging each in `log`: one task per track.
async fn start_sending(
    clip: &Clip,
    senders: Vec<Sender>,
    sent: [Arc<AtomicU64>; 2],
    log: &Arc<Mutex<Vec<SentFrame>>>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let [sent_audio, sent_video] = sent;
    let mut tasks = Vec::new();
    for ((track, sender), (frames, count, level, codec)) in senders.into_iter().zip([
        (
            clip.audio.clone(),
            sent_audio,
            Some(clip.audio_level),
            opus(),
        ),
        (clip.video.clone(), sent_video, None, vp8()),
    ]) {
        let pt = payload_type(&sender).await?;
        let ssrc = *track.ssrcs().await.first().context("track without SSRC")?;
        let packetizer = rtc::rtp::packetizer::new_packetizer(
            Instant::now(),
            RTP_MTU,
            pt,
            ssrc,
            codec.payloader()?,
            Box::new(rtc::rtp::sequence::new_random_sequencer()),
            codec.clock_rate,
        );
        tasks.push(tokio::spawn(send_loop(
            track,
            Box::new(packetizer),
            codec.clock_rate,
            frames,
            Sent {
                frames: count,
                log: log.clone(),
                kind: if level.is_some() { "audio" } else { "video" },
            },
            level,
        )));
    }
    Ok(tasks)
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// The payload type negotiated for the sender's codec.
async fn payload_type(sender: &Arc<dyn RtpSender>) -> anyhow::Result<u8> {
    let params = sender.get_parameters().await?;
    let mime = sender
        .track()
        .codings()
        .await
        .first()
        .map(|c| c.codec.mime_type.to_lowercase())
        .unwrap_or_default();
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.to_lowercase() == mime)
        .map(|c| c.payload_type)
        .with_context(|| format!("{mime} was not negotiated"))
}

/// The largest RTP packet the bot sends (as webrtc-rs's sample writer does).
const RTP_MTU: usize = 1200;

/// Where a send loop counts what it sent.
struct Sent {
    frames: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<SentFrame>>>,
    kind: &'static str,
}

/// Sends `frames` in a loop at their own pace until the task is aborted, packetized
/// here so that every packet and timestamp sent is counted.
async fn send_loop(
    track: Arc<TrackLocalStaticRTP>,
    mut packetizer: Box<dyn rtc::rtp::packetizer::Packetizer + Send>,
    clock_rate: u32,
    frames: Vec<Frame>,
    sent: Sent,
    audio_level: Option<u8>,
) {
    let Some(period) = frames.first().map(|f| f.duration) else {
        return;
    };
    let extensions: Vec<_> = audio_level
        .map(|level| HeaderExtension::AudioLevel(AudioLevelExtension { level, voice: true }))
        .into_iter()
        .collect();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for f in frames.iter().cycle() {
        tick.tick().await;
        let samples = (f.duration.as_secs_f64() * f64::from(clock_rate)) as u32;
        let Ok(packets) = packetizer.packetize(Instant::now(), &f.data, samples) else {
            return;
        };
        let Some(timestamp) = packets.first().map(|p| p.header.timestamp) else {
            continue;
        };
        let n = packets.len() as u32;
        for p in packets {
            if track
                .write_rtp_with_extensions(p, &extensions)
                .await
                .is_err()
            {
                return;
            }
        }
        sent.frames.fetch_add(1, Ordering::Relaxed);
        sent.log.lock().expect("sent log").push(SentFrame {
            kind: sent.kind,
            timestamp,
            packets: n,
            unix_ms: unix_ms(),
        });
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

enum Negotiation {
    /// Send this back.
    Reply(Value),
    /// An answer, applied.
    Applied,
    /// Not an offer or answer.
    Other,
}

/// Answers the node's offers and applies its answers.
async fn negotiate(pc: &dyn PeerConnection, msg: &Value) -> anyhow::Result<Negotiation> {
    let sdp = || msg["sdp"].as_str().unwrap_or_default().to_owned();
    match msg["type"].as_str() {
        Some("answer") => {
            pc.set_remote_description(RTCSessionDescription::answer(sdp())?)
                .await?;
            Ok(Negotiation::Applied)
        }
        Some("offer") => {
            pc.set_remote_description(RTCSessionDescription::offer(sdp())?)
                .await?;
            let answer = pc.create_answer(None).await?;
            pc.set_local_description(answer.clone()).await?;
            Ok(Negotiation::Reply(
                json!({ "type": "answer", "sdp": answer.sdp }),
            ))
        }
        _ => Ok(Negotiation::Other),
    }
}

/// Joins `meeting` through the controller and opens the signaling WebSocket the answer
/// names; returns the join response, with the node's `welcome` under `"welcome"`, and
/// the socket.
pub(crate) async fn open_signaling(
    cfg: &BotConfig,
    lost_node: Option<&str>,
) -> anyhow::Result<(
    Value,
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
)> {
    let http = reqwest::Client::new();
    let resp = http
        .post(format!(
            "{}/v1/meetings/{}/join",
            cfg.controller.trim_end_matches('/'),
            cfg.meeting,
        ))
        .json(&json!({
            "name": cfg.name,
            "password": cfg.password,
            "host_key": cfg.host_key,
            "panelist_key": cfg.panelist_key,
            "registrant_key": cfg.registrant_key,
            "region": cfg.region,
            "lost_node": lost_node,
        }))
        .send()
        .await
        .context("reach the controller")?;
    if !resp.status().is_success() {
        return Err(refused("join", resp).await);
    }
    let mut joined: Value = resp.json().await.context("join response")?;
    let field = |k: &str| -> anyhow::Result<String> {
        joined[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("join response without {k}"))
    };
    let url = format!("{}?token={}", field("signal_url")?, field("token")?);
    let connector = if url.starts_with("wss://") {
        Some(tls_connector(cfg.signal_ca.as_deref().map(Vec::as_slice))?)
    } else {
        None
    };
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(&url, None, false, connector)
            .await
            .context("open the signaling WebSocket")?;
    let mut welcome = next_json(&mut ws).await?;
    // In a meeting with a waiting room, the node says so and the welcome comes once a
    // host lets us in (or `closed`, if one turns us away).
    if welcome["type"] == "waiting" {
        joined["waited"] = welcome;
        welcome = next_json(&mut ws).await?;
    }
    if welcome["type"] != "welcome" {
        bail!("expected welcome, got {welcome}");
    }
    joined["welcome"] = welcome;
    Ok((joined, ws))
}

/// TLS for `wss://` signaling: the system's roots (Debian's ca-certificates) and
/// `extra_ca`, for a cluster whose certificates a private CA signs.
fn tls_connector(extra_ca: Option<&[u8]>) -> anyhow::Result<tokio_tungstenite::Connector> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // A system store that cannot be read leaves only `extra_ca`; a missing root then
    // shows as the handshake's "unknown issuer".
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(pem) = extra_ca {
        for c in CertificateDer::pem_slice_iter(pem) {
            roots
                .add(c.context("the signaling CA file")?)
                .context("the signaling CA certificate")?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

/// Marks a session ended with its reason when dropped (its signaling task ended or was
/// aborted), unless something else ended it first.
struct Ended(Arc<watch::Sender<Option<String>>>, &'static str);

impl Drop for Ended {
    fn drop(&mut self) {
        mark_ended(&self.0, self.1.to_owned());
    }
}

/// The first reason a session ended is the one kept.
fn mark_ended(end: &watch::Sender<Option<String>>, why: String) {
    end.send_if_modified(|e| {
        if e.is_some() {
            return false;
        }
        *e = Some(why);
        true
    });
}

/// The next text message of a signaling WebSocket, as JSON.
pub async fn next_json<S>(rx: &mut S) -> anyhow::Result<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(_))) | None => bail!("signaling closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_unwrap_across_the_16_bit_boundary() {
        let mut c = TrackCounts::default();
        for seq in [65534u16, 65535, 0, 2] {
            c.add(
                seq,
                u32::from(seq / 2),
                90_000,
                Instant::now(),
                10,
                true,
                false,
            );
        }
        assert_eq!(c.packets, 4);
        assert_eq!(c.lost, 1, "seq 1 is missing");
        // A late, reordered packet fills the hole.
        c.add(1, 0, 90_000, Instant::now(), 10, true, false);
        assert_eq!(c.lost, 0);
        // A packet that comes again (a retransmission) counts once.
        c.add(1, 0, 90_000, Instant::now(), 10, true, false);
        assert_eq!(c.packets, 5);
        // Packets per timestamp: 0 (seq 0 and 1) and 1 (seq 2) among them.
        assert_eq!(c.by_timestamp.get(&0), Some(&2));
        assert_eq!(c.by_timestamp.get(&1), Some(&1));
    }

    #[test]
    fn after_a_clear_resends_of_earlier_packets_do_not_count() {
        let add = |c: &mut TrackCounts, seq: u16| {
            c.add(seq, 0, 48_000, Instant::now(), 10, true, false);
        };
        let mut c = TrackCounts::default();
        for seq in [65530u16, 65531, 65532] {
            add(&mut c, seq);
        }
        let mut c = c.cleared();
        // A resend of 65531 (padding or a NACK's answer) before anything new.
        add(&mut c, 65531);
        assert_eq!(c.packets, 0);
        // New packets across the wrap count; a late resend of 65532 still does not.
        for seq in [65533u16, 65535, 0] {
            add(&mut c, seq);
        }
        add(&mut c, 65532);
        assert_eq!(c.packets, 3);
        assert_eq!(c.lost, 1, "65534 is missing");
        add(&mut c, 65534);
        assert_eq!((c.packets, c.lost), (4, 0));
    }

    #[test]
    fn a_timestamp_that_jumps_against_arrival_time_is_measured() {
        let t0 = Instant::now();
        let mut c = TrackCounts::default();
        // 30 fps: 3000 ticks and 33 ms apart.
        for i in 0..10u16 {
            let at = t0 + Duration::from_millis(33 * u64::from(i));
            c.add(i, 3000 * u32::from(i), 90_000, at, 10, true, false);
        }
        assert!(c.max_timestamp_jump_ms < 1.0, "{}", c.max_timestamp_jump_ms);
        // Then a packet whose timestamp leaps a second ahead.
        c.add(
            10,
            30_000 + 90_000,
            90_000,
            t0 + Duration::from_millis(363),
            10,
            true,
            false,
        );
        assert!(
            c.max_timestamp_jump_ms > 900.0,
            "{}",
            c.max_timestamp_jump_ms
        );
    }
}
