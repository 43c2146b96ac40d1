//! `Sfu`: peers, meetings and track routing. See the module docs for the contract.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ids::{MeetingId, ParticipantId};

use super::sink::{self, SinkTrack};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{
    Direction, KeyframeRequest, KeyframeRequestKind, MediaData, MediaKind, Mid, Rid,
};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};

/// Identifies a peer inside the SFU: unique for the process lifetime, never reused, so a
/// stale reference to a replaced session can never reach its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

/// What a relay sink receives from the SFU.
#[derive(Debug)]
pub enum SinkEvent {
    /// A new track (sent before its first packet).
    Announce {
        track_id: u32,
        participant: ParticipantId,
        name: String,
        kind: MediaKind,
        codec: &'static str,
        clock_rate: u32,
    },
    /// The track ended (its publisher left).
    Remove { track_id: u32 },
    /// One RTP packet of a track.
    Media { track_id: u32, packet: Vec<u8> },
}

/// A relay sink (a recording node's subscription to a meeting), chosen by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SinkKey(pub u64);

#[derive(Debug)]
pub enum SfuCommand {
    /// A participant's first offer: create its peer connection.
    Join {
        key: PeerKey,
        meeting: MeetingId,
        participant: ParticipantId,
        /// The participant's display name (relay sinks name files by it).
        name: String,
        offer: String,
    },
    /// A later offer from the peer (e.g. it added a screen share).
    Offer {
        key: PeerKey,
        sdp: String,
    },
    /// The peer's answer to our offer.
    Answer {
        key: PeerKey,
        sdp: String,
    },
    /// The subscriber wants the layer `rid` of what its m-line `mid` carries.
    Layer {
        key: PeerKey,
        mid: String,
        rid: Rid,
    },
    Leave {
        key: PeerKey,
    },
    /// A relay sink subscribes to everything published in `meeting`.
    SinkAttach {
        key: SinkKey,
        meeting: MeetingId,
    },
    SinkDetach {
        key: SinkKey,
    },
    /// The sink needs a keyframe of its track `track_id`.
    SinkKeyframe {
        key: SinkKey,
        track_id: u32,
    },
}

/// Signaling messages the SFU sends to a peer.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalOut {
    Answer(String),
    Offer(String),
    /// An m-line of ours now carries `participant`'s `kind` track.
    Track {
        mid: String,
        participant: ParticipantId,
        kind: &'static str,
    },
    /// The m-line no longer carries anything (its publisher left); it goes inactive.
    TrackRemoved {
        mid: String,
    },
    Error(String),
    /// The peer connection failed or closed.
    Closed(String),
}

#[derive(Debug)]
pub enum SfuOutput {
    Transmit {
        destination: SocketAddr,
        source: SocketAddr,
        contents: Vec<u8>,
    },
    Signal {
        key: PeerKey,
        msg: SignalOut,
    },
    /// The loudest participant of a meeting changed.
    ActiveSpeaker {
        meeting: MeetingId,
        participant: ParticipantId,
    },
    /// Something for relay sink `key`.
    Sink {
        key: SinkKey,
        event: SinkEvent,
    },
    Timeout(Instant),
}

/// Totals and current values over all peers, for metrics and the load report.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SfuStats {
    pub peers: u32,
    pub tracks_in: u32,
    pub tracks_out: u32,
    /// NACKs subscribers sent us (we retransmit).
    pub nacks_received: u64,
    /// NACKs we sent publishers.
    pub nacks_sent: u64,
    pub plis_received: u64,
    pub firs_received: u64,
    pub bitrate_in_bps: u64,
    pub bitrate_out_bps: u64,
    /// Mean round-trip time over peers that reported one.
    pub rtt_seconds: f64,
    /// Mean fraction of our packets that peers report lost.
    pub egress_loss: f64,
    /// Sum of the peers' egress bandwidth estimates (TWCC).
    pub estimate_bps: u64,
}

impl SfuStats {
    /// Totals over shards: counts add up, RTT and loss are averaged over shards with peers.
    pub fn merge(all: &[SfuStats]) -> SfuStats {
        let mut t = SfuStats::default();
        let mut with_peers = 0.0;
        for s in all {
            t.peers += s.peers;
            t.tracks_in += s.tracks_in;
            t.tracks_out += s.tracks_out;
            t.nacks_received += s.nacks_received;
            t.nacks_sent += s.nacks_sent;
            t.plis_received += s.plis_received;
            t.firs_received += s.firs_received;
            t.bitrate_in_bps += s.bitrate_in_bps;
            t.bitrate_out_bps += s.bitrate_out_bps;
            t.estimate_bps += s.estimate_bps;
            if s.peers > 0 {
                with_peers += 1.0;
                t.rtt_seconds += s.rtt_seconds;
                t.egress_loss += s.egress_loss;
            }
        }
        if with_peers > 0.0 {
            t.rtt_seconds /= with_peers;
            t.egress_loss /= with_peers;
        }
        t
    }
}

/// A subscriber's simulcast layer that has sent nothing for this long may be replaced by
/// any layer that has a keyframe.
const LAYER_STALE: Duration = Duration::from_millis(500);
/// How often the loudest participant of each meeting is worked out.
const SPEAKER_CHECK: Duration = Duration::from_millis(500);
/// Loudness (an average of 127 + dBov audio level) below which nobody is speaking.
const SPEAKER_THRESHOLD: f32 = 8.0;

struct TrackIn {
    mid: Mid,
    kind: MediaKind,
    /// When we last asked for a keyframe, per simulcast layer (None: no simulcast).
    last_keyframe_request: Vec<(Option<Rid>, Instant)>,
    /// Smoothed mean loudness of recent check windows (127 + dBov; 0 is silence).
    loudness: f32,
    /// Sum and count of loudness samples in the current window.
    window: (f32, u32),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
}

struct TrackOut {
    origin: PeerKey,
    origin_mid: Mid,
    kind: MediaKind,
    state: OutState,
    /// The simulcast layer forwarded to this subscriber now (None: not chosen yet).
    rid: Option<Rid>,
    /// The layer this subscriber should get: what it asked for, capped by its bandwidth
    /// estimate. We switch to it on its next keyframe.
    want: Rid,
    /// The layer the subscriber asked for by tile size.
    asked: Rid,
    /// Layers have their own RTP time bases: forwarded time is source time + `offset`,
    /// re-chosen at each switch so that the subscriber's stream runs on smoothly.
    offset: i64,
    /// The last forwarded (time in clock ticks, arrival) for picking the next offset.
    last_out: Option<(u64, Instant)>,
}

/// The simulcast layer that suits a tile of `width` x `height` pixels. Our client
/// publishes `l` (1/4 size), `m` (1/2) and `h` (full).
/// Bitrates our client's simulcast layers need (960×540 capture): what a subscriber's
/// estimate must cover per video track to get the layer, and what we ask the bandwidth
/// estimator to probe for.
const LAYER_BPS: [(&str, u64); 3] = [("l", 150_000), ("m", 350_000), ("h", 700_000)];
/// What an audio track takes out of a subscriber's estimate.
const AUDIO_BPS: u64 = 40_000;
/// The estimate a subscriber starts with, before any feedback.
const INITIAL_ESTIMATE_KBPS: u64 = 1_000;

fn layer_rank(r: Rid) -> usize {
    LAYER_BPS
        .iter()
        .position(|(name, _)| Rid::from(*name) == r)
        .unwrap_or(LAYER_BPS.len() - 1)
}

/// `asked`, or the highest lower layer that fits a per-video-track budget.
fn capped(asked: Rid, budget_bps: Option<u64>) -> Rid {
    let Some(budget) = budget_bps else {
        return asked;
    };
    let fits = LAYER_BPS
        .iter()
        .rposition(|(_, bps)| *bps <= budget)
        .unwrap_or(0);
    Rid::from(LAYER_BPS[layer_rank(asked).min(fits)].0)
}

/// The video codecs we forward. Payloads pass through untouched, so a subscriber gets a
/// publisher's video only if it decodes that codec: we keep to the two every browser has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VideoCodec {
    Vp8,
    H264,
}

/// The first video codec we forward among those `sdp` offers, in the offer's order:
/// the peer's preference for what it sends us.
fn preferred_video_codec(sdp: &str) -> Option<VideoCodec> {
    let mut lines = sdp.lines().map(str::trim);
    // "m=video 9 UDP/TLS/RTP/SAVPF 96 97 ..." : payload types in preference order.
    let m = lines.find(|l| l.starts_with("m=video "))?;
    let rtpmaps: Vec<(&str, &str)> = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=rtpmap:"))
        .filter_map(|r| {
            let (pt, rest) = r.split_once(' ')?;
            Some((pt, rest.split('/').next()?))
        })
        .collect();
    m.split_whitespace().skip(3).find_map(|pt| {
        let (_, name) = rtpmaps.iter().find(|(p, _)| *p == pt)?;
        match name.to_ascii_uppercase().as_str() {
            "VP8" => Some(VideoCodec::Vp8),
            "H264" => Some(VideoCodec::H264),
            _ => None,
        }
    })
}

/// Opus, VP8 and H.264, with the video codec the peer's offer prefers first: our
/// answer's order is the order the peer sends in.
fn with_video_codecs(config: RtcConfig, offer_sdp: &str) -> RtcConfig {
    let config = config.clear_codecs().enable_opus(true, false);
    match preferred_video_codec(offer_sdp) {
        Some(VideoCodec::H264) => config.enable_h264(true).enable_vp8(true),
        _ => config.enable_vp8(true).enable_h264(true),
    }
}

pub fn layer_for_size(width: u32, height: u32) -> Rid {
    let px = width.max(height * 16 / 9);
    if px <= 320 {
        Rid::from("l")
    } else if px <= 640 {
        Rid::from("m")
    } else {
        Rid::from("h")
    }
}

struct Peer {
    key: PeerKey,
    meeting: MeetingId,
    participant: ParticipantId,
    name: String,
    rtc: Rtc,
    tracks_in: Vec<TrackIn>,
    tracks_out: Vec<TrackOut>,
    pending: Option<SdpPendingOffer>,
    rtt: Option<Duration>,
    egress_loss: Option<f32>,
    /// Last (bytes received, bytes sent, when) and the rates derived from them.
    bytes: Option<(u64, u64, Instant)>,
    bitrate_in_bps: u64,
    bitrate_out_bps: u64,
    /// Last cumulative per-stream counters str0m reported: (mid, rid, egress?) -> (nacks, plis, firs).
    stream_counters: Vec<(StreamKey, Counters)>,
    /// Our m-lines whose publisher left: made inactive in the next offer.
    to_deactivate: Vec<Mid>,
    /// The latest egress bandwidth estimate for this peer (TWCC), bit/s.
    estimate_bps: Option<u64>,
}

impl Peer {
    /// What each video track we send this peer may use: its estimate minus audio,
    /// shared by its video tracks. None while there is no estimate or no video.
    fn video_budget_bps(&self) -> Option<u64> {
        let estimate = self.estimate_bps?;
        let open = |k: MediaKind| {
            self.tracks_out
                .iter()
                .filter(|t| t.kind == k && matches!(t.state, OutState::Open(_)))
                .count() as u64
        };
        let video = open(MediaKind::Video);
        (video > 0).then(|| estimate.saturating_sub(open(MediaKind::Audio) * AUDIO_BPS) / video)
    }
}

pub struct Sfu {
    local: SocketAddr,
    /// Whether a subscriber's bandwidth estimate caps its simulcast layer.
    bandwidth_cap: bool,
    /// Which shard of the node this is: the first two hex digits of every local ICE ufrag.
    shard: u8,
    peers: Vec<Peer>,
    out: VecDeque<SfuOutput>,
    /// Frames to fan out: (origin, data). Drained within the same poll.
    fanout: VecDeque<(PeerKey, MediaData)>,
    keyframe_every: Duration,
    stats: SfuStats,
    next_speaker_check: Option<Instant>,
    speakers: Vec<(MeetingId, ParticipantId)>,
    sinks: Vec<Sink>,
    /// Packets of one frame for a sink, reused.
    sink_packets: Vec<Vec<u8>>,
}

struct Sink {
    key: SinkKey,
    meeting: MeetingId,
    tracks: Vec<SinkTrack>,
    next_track_id: u32,
}

fn kind_name(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

impl Sfu {
    /// `local` is the UDP socket address peers send to (the host candidate we advertise);
    /// `shard` is written into every local ICE ufrag so that the node's demux can tell
    /// from a STUN request which shard the peer belongs to.
    /// Off: subscribers get the layer their tile asks for, whatever their estimate.
    pub fn set_bandwidth_cap(&mut self, on: bool) {
        self.bandwidth_cap = on;
    }

    pub fn new(local: SocketAddr, shard: u8) -> Self {
        Self {
            local,
            shard,
            bandwidth_cap: true,
            peers: Vec::new(),
            out: VecDeque::new(),
            fanout: VecDeque::new(),
            keyframe_every: Duration::from_millis(500),
            stats: SfuStats::default(),
            next_speaker_check: None,
            speakers: Vec::new(),
            sinks: Vec::new(),
            sink_packets: Vec::new(),
        }
    }

    /// Current totals; cheap enough to call once a second.
    pub fn stats(&self) -> SfuStats {
        let mut s = self.stats;
        s.peers = self.peers.len() as u32;
        s.tracks_in = self.peers.iter().map(|p| p.tracks_in.len() as u32).sum();
        s.tracks_out = self.peers.iter().map(|p| p.tracks_out.len() as u32).sum();
        s.bitrate_in_bps = self.peers.iter().map(|p| p.bitrate_in_bps).sum();
        s.bitrate_out_bps = self.peers.iter().map(|p| p.bitrate_out_bps).sum();
        s.estimate_bps = self.peers.iter().filter_map(|p| p.estimate_bps).sum();
        let rtts: Vec<f64> = self
            .peers
            .iter()
            .filter_map(|p| p.rtt)
            .map(|d| d.as_secs_f64())
            .collect();
        s.rtt_seconds = if rtts.is_empty() {
            0.0
        } else {
            rtts.iter().sum::<f64>() / rtts.len() as f64
        };
        let losses: Vec<f64> = self
            .peers
            .iter()
            .filter_map(|p| p.egress_loss)
            .map(f64::from)
            .collect();
        s.egress_loss = if losses.is_empty() {
            0.0
        } else {
            losses.iter().sum::<f64>() / losses.len() as f64
        };
        s
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    fn peer_mut(&mut self, key: PeerKey) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.key == key)
    }

    fn signal(&mut self, key: PeerKey, msg: SignalOut) {
        self.out.push_back(SfuOutput::Signal { key, msg });
    }

    pub fn handle_command(&mut self, now: Instant, cmd: SfuCommand) {
        match cmd {
            SfuCommand::Join {
                key,
                meeting,
                participant,
                name,
                offer,
            } => {
                let offer_sdp = offer;
                let offer = match SdpOffer::from_sdp_string(&offer_sdp) {
                    Ok(o) => o,
                    Err(e) => {
                        return self
                            .signal(key, SignalOut::Error(format!("invalid offer SDP: {e}")));
                    }
                };
                let mut creds = IceCreds::new();
                creds.ufrag = format!("{:02x}{}", self.shard, creds.ufrag);
                let mut rtc = with_video_codecs(Rtc::builder(), &offer_sdp)
                    .set_local_ice_credentials(creds)
                    .set_ice_lite(true)
                    .enable_bwe(Some(Bitrate::kbps(INITIAL_ESTIMATE_KBPS)))
                    .set_stats_interval(Some(Duration::from_secs(1)))
                    .build(now);
                match Candidate::host(self.local, "udp") {
                    Ok(c) => {
                        rtc.add_local_candidate(c);
                    }
                    Err(e) => {
                        return self
                            .signal(key, SignalOut::Error(format!("no host candidate: {e}")));
                    }
                }
                let answer = match rtc.sdp_api().accept_offer(offer) {
                    Ok(a) => a,
                    Err(e) => {
                        return self
                            .signal(key, SignalOut::Error(format!("offer not accepted: {e}")));
                    }
                };
                let mut peer = Peer {
                    key,
                    meeting,
                    participant,
                    name,
                    rtc,
                    tracks_in: Vec::new(),
                    tracks_out: Vec::new(),
                    pending: None,
                    rtt: None,
                    egress_loss: None,
                    bytes: None,
                    bitrate_in_bps: 0,
                    bitrate_out_bps: 0,
                    stream_counters: Vec::new(),
                    to_deactivate: Vec::new(),
                    estimate_bps: None,
                };
                // Everything already published in the meeting is offered to the newcomer.
                for other in self.peers.iter().filter(|o| o.meeting == peer.meeting) {
                    for t in &other.tracks_in {
                        peer.tracks_out.push(TrackOut {
                            origin: other.key,
                            origin_mid: t.mid,
                            kind: t.kind,
                            state: OutState::ToOpen,
                            rid: None,
                            want: Rid::from("h"),
                            asked: Rid::from("h"),
                            offset: 0,
                            last_out: None,
                        });
                    }
                }
                self.peers.push(peer);
                self.signal(key, SignalOut::Answer(answer.to_sdp_string()));
            }
            SfuCommand::Offer { key, sdp } => {
                let offer = match SdpOffer::from_sdp_string(&sdp) {
                    Ok(o) => o,
                    Err(e) => {
                        return self
                            .signal(key, SignalOut::Error(format!("invalid offer SDP: {e}")));
                    }
                };
                let Some(peer) = self.peer_mut(key) else {
                    return;
                };
                // The peer's offer wins over ours (we are the impolite side only towards
                // nobody): drop our pending offer and redo it after this one.
                if peer.pending.take().is_some() {
                    for t in &mut peer.tracks_out {
                        if let OutState::Negotiating(_) = t.state {
                            t.state = OutState::ToOpen;
                        }
                    }
                }
                match peer.rtc.sdp_api().accept_offer(offer) {
                    Ok(a) => self.signal(key, SignalOut::Answer(a.to_sdp_string())),
                    Err(e) => {
                        self.signal(key, SignalOut::Error(format!("offer not accepted: {e}")))
                    }
                }
            }
            SfuCommand::Answer { key, sdp } => {
                let answer = match SdpAnswer::from_sdp_string(&sdp) {
                    Ok(a) => a,
                    Err(e) => {
                        return self
                            .signal(key, SignalOut::Error(format!("invalid answer SDP: {e}")));
                    }
                };
                let Some(peer) = self.peer_mut(key) else {
                    return;
                };
                let Some(pending) = peer.pending.take() else {
                    return self.signal(key, SignalOut::Error("answer without an offer".into()));
                };
                match peer.rtc.sdp_api().accept_answer(pending, answer) {
                    Ok(()) => {
                        let mut opened = Vec::new();
                        for t in &mut peer.tracks_out {
                            if let OutState::Negotiating(m) = t.state {
                                t.state = OutState::Open(m);
                                opened.push((t.origin, t.origin_mid));
                            }
                        }
                        // A new subscriber needs a keyframe to start decoding.
                        for (origin, mid) in opened {
                            self.request_keyframe(now, origin, mid, None, KeyframeRequestKind::Pli);
                        }
                    }
                    Err(e) => {
                        self.signal(key, SignalOut::Error(format!("answer not accepted: {e}")))
                    }
                }
            }
            SfuCommand::Layer { key, mid, rid } => {
                let mid = Mid::from(mid.as_str());
                let cap = self.bandwidth_cap;
                let Some(p) = self.peer_mut(key) else { return };
                let budget = p.video_budget_bps().filter(|_| cap);
                let Some(t) = p
                    .tracks_out
                    .iter_mut()
                    .find(|t| t.state == OutState::Open(mid) && t.kind == MediaKind::Video)
                else {
                    return self.signal(key, SignalOut::Error(format!("no video on m-line {mid}")));
                };
                t.asked = rid;
                let rid = capped(rid, budget);
                if t.want == rid {
                    return;
                }
                t.want = rid;
                let (origin, origin_mid) = (t.origin, t.origin_mid);
                // Switching needs a keyframe of the new layer.
                self.request_keyframe(now, origin, origin_mid, Some(rid), KeyframeRequestKind::Pli);
            }
            SfuCommand::Leave { key } => self.remove_peer(key),
            SfuCommand::SinkAttach { key, meeting } => {
                if !self.sinks.iter().any(|s| s.key == key) {
                    self.sinks.push(Sink {
                        key,
                        meeting,
                        tracks: Vec::new(),
                        next_track_id: 1,
                    });
                }
            }
            SfuCommand::SinkDetach { key } => self.sinks.retain(|s| s.key != key),
            SfuCommand::SinkKeyframe { key, track_id } => {
                let Some(t) = self
                    .sinks
                    .iter()
                    .find(|s| s.key == key)
                    .and_then(|s| s.tracks.iter().find(|t| t.track_id == track_id))
                else {
                    return;
                };
                let (origin, mid) = (t.origin, t.mid);
                self.request_keyframe(now, origin, mid, None, KeyframeRequestKind::Pli);
            }
        }
    }

    fn remove_peer(&mut self, key: PeerKey) {
        let Some(i) = self.peers.iter().position(|p| p.key == key) else {
            return;
        };
        let mut peer = self.peers.swap_remove(i);
        peer.rtc.disconnect();
        for sink in self.sinks.iter_mut().filter(|s| s.meeting == peer.meeting) {
            let out = &mut self.out;
            sink.tracks.retain(|t| {
                let keep = t.origin != key;
                if !keep {
                    out.push_back(SfuOutput::Sink {
                        key: sink.key,
                        event: SinkEvent::Remove {
                            track_id: t.track_id,
                        },
                    });
                }
                keep
            });
        }
        for p in &mut self.peers {
            let mut removed = Vec::new();
            p.tracks_out.retain(|t| match t.state {
                _ if t.origin != key => true,
                OutState::ToOpen => false,
                OutState::Negotiating(mid) | OutState::Open(mid) => {
                    removed.push(mid);
                    false
                }
            });
            for mid in removed {
                p.to_deactivate.push(mid);
                self.out.push_back(SfuOutput::Signal {
                    key: p.key,
                    msg: SignalOut::TrackRemoved {
                        mid: mid.to_string(),
                    },
                });
            }
        }
    }

    /// Whether a datagram from `source` belongs to one of our peers.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) -> bool {
        let Ok(contents) = data.try_into() else {
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        let Some(peer) = self.peers.iter_mut().find(|p| p.rtc.accepts(&input)) else {
            return false;
        };
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(error = %e, "peer input failed; disconnecting");
            peer.rtc.disconnect();
        }
        true
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for p in &mut self.peers {
            if p.rtc.is_alive() && p.rtc.handle_input(Input::Timeout(now)).is_err() {
                p.rtc.disconnect();
            }
        }
    }

    /// Runs every peer until it has nothing more to say, routes media between them, and
    /// returns the next output; `Timeout` means "call again at that time or on input".
    pub fn poll_output(&mut self, now: Instant) -> SfuOutput {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let mut next = now + Duration::from_millis(100);
        let mut i = 0;
        while i < self.peers.len() {
            if !self.peers[i].rtc.is_alive() {
                let key = self.peers[i].key;
                self.remove_peer(key);
                self.signal(key, SignalOut::Closed("connection closed".into()));
                continue;
            }
            self.negotiate(i);
            loop {
                let out = match self.peers[i].rtc.poll_output() {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::debug!(error = %e, "poll_output failed; disconnecting");
                        self.peers[i].rtc.disconnect();
                        break;
                    }
                };
                match out {
                    Output::Timeout(t) => {
                        next = next.min(t);
                        break;
                    }
                    Output::Transmit(t) => self.out.push_back(SfuOutput::Transmit {
                        destination: t.destination,
                        source: t.source,
                        contents: t.contents.into(),
                    }),
                    Output::Event(e) => self.handle_event(now, i, e),
                }
            }
            i += 1;
        }
        while let Some((origin, data)) = self.fanout.pop_front() {
            self.forward(now, origin, data);
        }
        // Forwarding wrote into subscribers' Rtc: their output is due now.
        if !self.out.is_empty() {
            return self.out.pop_front().expect("not empty");
        }
        if self
            .peers
            .iter_mut()
            .any(|p| p.rtc.is_alive() && p.pending.is_none() && has_to_open(p))
        {
            return SfuOutput::Timeout(now);
        }
        let check = *self.next_speaker_check.get_or_insert(now + SPEAKER_CHECK);
        if now >= check {
            self.next_speaker_check = Some(now + SPEAKER_CHECK);
            self.detect_speakers();
            self.adapt_layers(now);
            if let Some(o) = self.out.pop_front() {
                return o;
            }
        }
        SfuOutput::Timeout(next.min(check.max(now)))
    }

    fn handle_event(&mut self, now: Instant, i: usize, e: Event) {
        let key = self.peers[i].key;
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.peers[i].rtc.disconnect()
            }
            Event::MediaAdded(m)
                if matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) =>
            {
                let meeting = self.peers[i].meeting.clone();
                self.peers[i].tracks_in.push(TrackIn {
                    mid: m.mid,
                    kind: m.kind,
                    last_keyframe_request: Vec::new(),
                    loudness: 0.0,
                    window: (0.0, 0),
                });
                for p in self
                    .peers
                    .iter_mut()
                    .filter(|p| p.key != key && p.meeting == meeting)
                {
                    p.tracks_out.push(TrackOut {
                        origin: key,
                        origin_mid: m.mid,
                        kind: m.kind,
                        state: OutState::ToOpen,
                        rid: None,
                        want: Rid::from("h"),
                        asked: Rid::from("h"),
                        offset: 0,
                        last_out: None,
                    });
                }
            }
            Event::MediaData(data) => {
                // RFC 6464: 0 is the loudest (0 dBov), -127 silence; loudness is 127 + level.
                if let Some(level) = data.ext_vals.audio_level
                    && let Some(t) = self.peers[i]
                        .tracks_in
                        .iter_mut()
                        .find(|t| t.mid == data.mid)
                {
                    let loudness = f32::from(127 - level.clamp(-127, 0).unsigned_abs() as i8);
                    t.window.0 += loudness;
                    t.window.1 += 1;
                }
                if !data.contiguous {
                    self.request_keyframe(now, key, data.mid, data.rid, KeyframeRequestKind::Fir);
                }
                self.fanout.push_back((key, data));
            }
            Event::KeyframeRequest(req) => self.keyframe_from_subscriber(now, i, req),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.peers[i].estimate_bps = Some(estimate.as_u64());
            }
            Event::MediaEgressStats(st) => {
                let p = &mut self.peers[i];
                if st.rtt.is_some() {
                    p.rtt = st.rtt;
                }
                if st.loss.is_some() {
                    p.egress_loss = st.loss;
                }
                let (n, pl, f) = counter_delta(
                    &mut p.stream_counters,
                    (st.mid, st.rid, true),
                    (st.nacks, st.plis, st.firs),
                );
                self.stats.nacks_received += n;
                self.stats.plis_received += pl;
                self.stats.firs_received += f;
            }
            Event::MediaIngressStats(st) => {
                let p = &mut self.peers[i];
                let (n, _, _) = counter_delta(
                    &mut p.stream_counters,
                    (st.mid, st.rid, false),
                    (st.nacks, st.plis, st.firs),
                );
                self.stats.nacks_sent += n;
            }
            Event::PeerStats(st) => {
                let p = &mut self.peers[i];
                if let Some((rx, tx, at)) = p.bytes {
                    let secs = st.timestamp.saturating_duration_since(at).as_secs_f64();
                    if secs > 0.0 {
                        p.bitrate_in_bps =
                            ((st.peer_bytes_rx.saturating_sub(rx)) as f64 * 8.0 / secs) as u64;
                        p.bitrate_out_bps =
                            ((st.peer_bytes_tx.saturating_sub(tx)) as f64 * 8.0 / secs) as u64;
                    }
                }
                p.bytes = Some((st.peer_bytes_rx, st.peer_bytes_tx, st.timestamp));
                if st.rtt.is_some() {
                    p.rtt = st.rtt;
                }
            }
            _ => {}
        }
    }

    /// Offers this peer the tracks it does not have yet, once no other offer is pending.
    fn negotiate(&mut self, i: usize) {
        let (left, right) = self.peers.split_at_mut(i);
        let (peer, rest) = right.split_first_mut().expect("index in range");
        if peer.pending.is_some() || !has_to_open(peer) {
            return;
        }
        let mut change = peer.rtc.sdp_api();
        for mid in peer.to_deactivate.drain(..) {
            change.set_direction(mid, Direction::Inactive);
        }
        let mut announced = Vec::new();
        for t in &mut peer.tracks_out {
            if t.state == OutState::ToOpen {
                let Some(origin) = left.iter().chain(rest.iter()).find(|p| p.key == t.origin)
                else {
                    continue;
                };
                let stream = origin.participant.to_string();
                let mid = change.add_media(t.kind, Direction::SendOnly, Some(stream), None, None);
                t.state = OutState::Negotiating(mid);
                announced.push((mid, origin.participant.clone(), t.kind));
            }
        }
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        peer.pending = Some(pending);
        let key = peer.key;
        for (mid, participant, kind) in announced {
            self.out.push_back(SfuOutput::Signal {
                key,
                msg: SignalOut::Track {
                    mid: mid.to_string(),
                    participant,
                    kind: kind_name(kind),
                },
            });
        }
        self.out.push_back(SfuOutput::Signal {
            key,
            msg: SignalOut::Offer(offer.to_sdp_string()),
        });
    }

    /// Writes one frame of `origin` into every subscriber's `Rtc`. Per subscriber this
    /// neither allocates nor locks: the payload is shared (`Arc`) by all of them.
    fn forward(&mut self, now: Instant, origin: PeerKey, data: MediaData) {
        // Subscribers waiting to switch to this frame's layer ask for its keyframe.
        let mut want_keyframe = false;
        let Some(oi) = self.peers.iter().position(|p| p.key == origin) else {
            return;
        };
        // str0m hands us the payload as an `Arc<[u8]>`: every subscriber shares it.
        let payload = &data.data;
        let (before, rest) = self.peers.split_at_mut(oi);
        let (publisher, after) = rest.split_first_mut().expect("index in range");
        let meeting = &publisher.meeting;
        for p in before
            .iter_mut()
            .chain(after.iter_mut())
            .filter(|p| p.meeting == *meeting)
        {
            let Some(t) = p
                .tracks_out
                .iter_mut()
                .find(|t| t.origin == origin && t.origin_mid == data.mid)
            else {
                continue;
            };
            let OutState::Open(mid) = t.state else {
                continue;
            };
            // Simulcast: forward one layer per subscriber. Start on the first keyframe of
            // any layer; move to the wanted layer on its next keyframe.
            if let Some(rid) = data.rid
                && t.rid != Some(rid)
            {
                // Switch to the wanted layer, or to any layer if ours went quiet
                // (the publisher may have turned it off), at a keyframe.
                let stale = t.last_out.is_none_or(|(_, at)| {
                    data.network_time.saturating_duration_since(at) > LAYER_STALE
                });
                let may_switch = t.rid.is_none() || rid == t.want || stale;
                if !(may_switch && data.is_keyframe()) {
                    want_keyframe |= rid == t.want || stale;
                    continue;
                }
                t.rid = Some(rid);
                // Continue from the last forwarded frame, advanced by the wall-clock gap.
                if let Some((last, at)) = t.last_out {
                    let hz = u64::from(data.time.denom());
                    let gap = data.network_time.saturating_duration_since(at);
                    let ticks = (gap.as_micros() as u64 * hz / 1_000_000).max(1);
                    t.offset = (last + ticks) as i64 - data.time.numer() as i64;
                }
            }
            let out_ticks = (data.time.numer() as i64 + t.offset).max(0) as u64;
            t.last_out = Some((out_ticks, data.network_time));
            let time = str0m::media::MediaTime::new(out_ticks, data.time.frequency());
            let Some(writer) = p.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer.match_params(data.params) else {
                continue;
            };
            if let Err(e) = writer.write(pt, data.network_time, time, payload.clone()) {
                tracing::debug!(error = %e, "write to subscriber failed; disconnecting it");
                p.rtc.disconnect();
            }
        }
        want_keyframe |= self.feed_sinks(origin, oi, &data);
        if want_keyframe {
            self.request_keyframe(now, origin, data.mid, data.rid, KeyframeRequestKind::Pli);
        }
    }

    /// Hands a frame of `origin` (peer index `oi`) to the meeting's relay sinks as RTP.
    /// True when a sink waits for a keyframe of it.
    fn feed_sinks(&mut self, origin: PeerKey, oi: usize, data: &MediaData) -> bool {
        let publisher = &self.peers[oi];
        let mut want_keyframe = false;
        for sink in self
            .sinks
            .iter_mut()
            .filter(|s| s.meeting == publisher.meeting)
        {
            let i = match sink
                .tracks
                .iter()
                .position(|t| t.origin == origin && t.mid == data.mid)
            {
                Some(i) => i,
                None => {
                    let Some(codec) = sink::codec_name(data.params.spec().codec) else {
                        continue;
                    };
                    let kind = if codec == "opus" {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    let track_id = sink.next_track_id;
                    sink.next_track_id += 1;
                    self.out.push_back(SfuOutput::Sink {
                        key: sink.key,
                        event: SinkEvent::Announce {
                            track_id,
                            participant: publisher.participant.clone(),
                            name: publisher.name.clone(),
                            kind,
                            codec,
                            clock_rate: data.time.frequency().get(),
                        },
                    });
                    sink.tracks
                        .push(SinkTrack::new(track_id, origin, data.mid, kind, codec));
                    sink.tracks.len() - 1
                }
            };
            let t = &mut sink.tracks[i];
            self.sink_packets.clear();
            want_keyframe |= t.packetize(data, &mut self.sink_packets);
            for packet in self.sink_packets.drain(..) {
                self.out.push_back(SfuOutput::Sink {
                    key: sink.key,
                    event: SinkEvent::Media {
                        track_id: t.track_id,
                        packet,
                    },
                });
            }
        }
        want_keyframe
    }

    fn keyframe_from_subscriber(&mut self, now: Instant, i: usize, req: KeyframeRequest) {
        let Some(t) = self.peers[i]
            .tracks_out
            .iter()
            .find(|t| t.state == OutState::Open(req.mid))
        else {
            return;
        };
        let (origin, mid, rid) = (t.origin, t.origin_mid, t.rid);
        self.request_keyframe(now, origin, mid, rid, req.kind);
    }

    fn request_keyframe(
        &mut self,
        now: Instant,
        origin: PeerKey,
        mid: Mid,
        rid: Option<Rid>,
        kind: KeyframeRequestKind,
    ) {
        let every = self.keyframe_every;
        let Some(p) = self.peer_mut(origin) else {
            return;
        };
        let Some(t) = p.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        match t.last_keyframe_request.iter_mut().find(|(r, _)| *r == rid) {
            Some((_, at)) if now.duration_since(*at) < every => return,
            Some((_, at)) => *at = now,
            None => t.last_keyframe_request.push((rid, now)),
        }
        if let Some(mut w) = p.rtc.writer(mid) {
            let _ = w.request_keyframe(rid, kind);
        }
    }
}

impl Sfu {
    /// Caps each subscriber's layers by its bandwidth estimate (moving down, or back up
    /// to what it asked for, on the layer's next keyframe), and tells its estimator how
    /// much it would like to send so that it probes up to that.
    fn adapt_layers(&mut self, now: Instant) {
        let cap = self.bandwidth_cap;
        let mut keyframes = Vec::new();
        for p in &mut self.peers {
            let budget = p.video_budget_bps().filter(|_| cap);
            let mut desired = 0;
            for t in &mut p.tracks_out {
                if !matches!(t.state, OutState::Open(_)) {
                    continue;
                }
                if t.kind == MediaKind::Audio {
                    desired += AUDIO_BPS;
                    continue;
                }
                desired += LAYER_BPS[layer_rank(t.asked)].1;
                let want = capped(t.asked, budget);
                if want != t.want {
                    t.want = want;
                    keyframes.push((t.origin, t.origin_mid, want));
                }
            }
            if desired > 0 {
                p.rtc
                    .bwe()
                    .set_bitrate(Bitrate::kbps(100), Bitrate::from(desired));
            }
        }
        for (origin, mid, rid) in keyframes {
            self.request_keyframe(now, origin, mid, Some(rid), KeyframeRequestKind::Pli);
        }
    }

    /// Per meeting, the participant whose audio has been loudest lately, if loud enough;
    /// announced when it changes.
    fn detect_speakers(&mut self) {
        // Close the window: its mean loudness, smoothed with the windows before.
        for p in &mut self.peers {
            for t in p
                .tracks_in
                .iter_mut()
                .filter(|t| t.kind == MediaKind::Audio)
            {
                let (sum, n) = std::mem::take(&mut t.window);
                let mean = if n == 0 { 0.0 } else { sum / n as f32 };
                t.loudness = 0.5 * t.loudness + 0.5 * mean;
            }
        }
        let mut loudest: Vec<(MeetingId, ParticipantId, f32)> = Vec::new();
        for p in &self.peers {
            let l = p
                .tracks_in
                .iter()
                .filter(|t| t.kind == MediaKind::Audio)
                .map(|t| t.loudness)
                .fold(0.0, f32::max);
            if l < SPEAKER_THRESHOLD {
                continue;
            }
            match loudest.iter_mut().find(|(m, _, _)| *m == p.meeting) {
                Some(e) if e.2 >= l => {}
                Some(e) => *e = (p.meeting.clone(), p.participant.clone(), l),
                None => loudest.push((p.meeting.clone(), p.participant.clone(), l)),
            }
        }
        for (meeting, participant, _) in loudest {
            match self.speakers.iter_mut().find(|(m, _)| *m == meeting) {
                Some((_, cur)) if *cur == participant => continue,
                Some((_, cur)) => *cur = participant.clone(),
                None => self.speakers.push((meeting.clone(), participant.clone())),
            }
            self.out.push_back(SfuOutput::ActiveSpeaker {
                meeting,
                participant,
            });
        }
        self.speakers
            .retain(|(m, _)| self.peers.iter().any(|p| &p.meeting == m));
    }
}

/// A media stream of a peer: (mid, simulcast layer, egress?).
type StreamKey = (Mid, Option<Rid>, bool);
/// (NACKs, PLIs, FIRs) as str0m counts them, cumulatively.
type Counters = (u64, u64, u64);

/// Turns str0m's cumulative per-stream counters into increments since the last report.
fn counter_delta(
    seen: &mut Vec<(StreamKey, Counters)>,
    key: (Mid, Option<Rid>, bool),
    now: (u64, u64, u64),
) -> (u64, u64, u64) {
    let prev = match seen.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => std::mem::replace(v, now),
        None => {
            seen.push((key, now));
            (0, 0, 0)
        }
    };
    (
        now.0.saturating_sub(prev.0),
        now.1.saturating_sub(prev.1),
        now.2.saturating_sub(prev.2),
    )
}

/// Whether the peer needs an offer from us: tracks to add or m-lines to retire.
fn has_to_open(p: &Peer) -> bool {
    !p.to_deactivate.is_empty() || p.tracks_out.iter().any(|t| t.state == OutState::ToOpen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_capped_by_the_budget_but_never_above_what_was_asked() {
        let (l, m, h) = (Rid::from("l"), Rid::from("m"), Rid::from("h"));
        assert_eq!(capped(h, None), h, "no estimate yet: no cap");
        assert_eq!(capped(h, Some(2_000_000)), h);
        assert_eq!(capped(h, Some(400_000)), m);
        assert_eq!(capped(h, Some(100_000)), l, "the low layer always goes");
        assert_eq!(capped(m, Some(2_000_000)), m, "a small tile stays small");
        assert_eq!(capped(l, Some(2_000_000)), l);
    }

    #[test]
    fn the_offers_first_forwardable_video_codec_is_preferred() {
        let sdp = |pts: &str| {
            format!(
                "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                 m=video 9 UDP/TLS/RTP/SAVPF {pts}\r\na=rtpmap:96 VP8/90000\r\n\
                 a=rtpmap:97 rtx/90000\r\na=rtpmap:98 VP9/90000\r\na=rtpmap:102 H264/90000\r\n"
            )
        };
        assert_eq!(
            preferred_video_codec(&sdp("96 97 102")),
            Some(VideoCodec::Vp8)
        );
        assert_eq!(
            preferred_video_codec(&sdp("102 96 97")),
            Some(VideoCodec::H264)
        );
        assert_eq!(
            preferred_video_codec(&sdp("98 102 96")),
            Some(VideoCodec::H264),
            "VP9 is not forwarded, so the next one counts"
        );
        assert_eq!(preferred_video_codec(&sdp("98")), None);
        assert_eq!(
            preferred_video_codec("v=0\r\nm=audio 9 RTP/AVP 0\r\n"),
            None
        );
        assert_eq!(preferred_video_codec("garbage \u{0} m=video"), None);
    }

    #[test]
    fn tile_sizes_map_to_layers() {
        assert_eq!(layer_for_size(320, 180), Rid::from("l"));
        assert_eq!(layer_for_size(640, 360), Rid::from("m"));
        assert_eq!(layer_for_size(1280, 720), Rid::from("h"));
    }
}
