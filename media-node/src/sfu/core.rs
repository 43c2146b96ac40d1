//! `Sfu`: peers, meetings and track routing. See the module docs for the contract.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ids::{MeetingId, ParticipantId};

use super::rtp::{self, PacketIn, Verdict};
use super::sink::{self, SinkTrack};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, PayloadParams};
use str0m::media::{Direction, KeyframeRequest, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc, Vp8Descriptor};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};

/// Identifies a peer inside the SFU: unique for the process lifetime, never reused, so a
/// stale reference to a replaced session can never reach its successor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

/// What a relay peer receives from the SFU: a sink (a recording node) or a link to
/// another media node of the meeting.
#[derive(Debug)]
pub enum RelayEvent {
    /// A new track (sent before its first packet). `layers` is 3 for a simulcast track a
    /// link carries layer by layer, else 1.
    Announce {
        track_id: u32,
        participant: ParticipantId,
        name: String,
        kind: MediaKind,
        codec: &'static str,
        clock_rate: u32,
        layers: u8,
    },
    /// The track ended (its publisher left).
    Remove { track_id: u32 },
    /// One RTP packet of a track (of simulcast layer `layer`, 0 without simulcast).
    Media {
        track_id: u32,
        layer: u8,
        packet: Vec<u8>,
    },
    /// Links only: local subscribers need a keyframe of the far node's track (of layer
    /// `layer`). Throttled here, and again at the publisher's node.
    Keyframe { track_id: u32, layer: u8 },
    /// Links only: the layers of the far node's track that local subscribers need now,
    /// as a bit set (bit 0 = `l`, or the only layer); 0 when nobody here subscribes.
    Layers { track_id: u32, mask: u8 },
}

/// A relay sink (a recording node's subscription to a meeting), chosen by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SinkKey(pub u64);

/// A relay link to another media node carrying one meeting's tracks, chosen by the
/// driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkKey(pub u64);

/// Where a track comes from: an m-line of a local peer, or a track another media node
/// announced over a relay link (a participant who lives there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Peer(PeerKey, Mid),
    Remote(LinkKey, u32),
}

#[derive(Debug)]
pub enum SfuCommand {
    /// A participant's signaling session opened: its first offer will create its peer
    /// connection.
    Join {
        key: PeerKey,
        meeting: MeetingId,
        participant: ParticipantId,
        /// The participant's display name (relay sinks name files by it).
        name: String,
    },
    /// An offer from the peer: the first creates its peer connection (a refused one
    /// leaves the session waiting for a better one), later ones renegotiate (e.g. it
    /// added a screen share).
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
    /// A relay link to another media node of `meeting` opened: it is announced the
    /// meeting's local tracks (never the ones that came over a link: the mesh is full, so
    /// that would echo) and gets the layers it subscribes to.
    LinkAttach {
        link: LinkKey,
        meeting: MeetingId,
    },
    /// The far node wants the layers `mask` of our track `track_id` (0: unsubscribe).
    LinkSubscribe {
        link: LinkKey,
        track_id: u32,
        mask: u8,
    },
    /// The far node needs a keyframe of our track `track_id`, layer `layer`.
    LinkKeyframe {
        link: LinkKey,
        track_id: u32,
        layer: u8,
    },
    /// Another media node announced a track of one of its participants in `meeting`:
    /// local peers of the meeting are offered it like a local one.
    RemoteTrack {
        link: LinkKey,
        meeting: MeetingId,
        track_id: u32,
        participant: ParticipantId,
        name: String,
        kind: MediaKind,
        codec: Codec,
        clock_rate: u32,
        /// 3 when the link carries the track's simulcast layers, else 1.
        layers: u8,
    },
    /// A remote track ended.
    RemoteTrackEnded {
        link: LinkKey,
        track_id: u32,
    },
    /// One RTP packet of a remote track (of layer `layer`), as the relay carried it.
    RemotePacket {
        link: LinkKey,
        track_id: u32,
        layer: u8,
        rtp: bytes::Bytes,
    },
    /// The link is gone: its tracks end, and it is announced nothing more.
    LinkDown {
        link: LinkKey,
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
    /// The client message of type `answers` (`offer`, `answer`, `layer`) was refused.
    Error {
        answers: &'static str,
        message: String,
    },
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
        event: RelayEvent,
    },
    /// Something for relay link `link`.
    Link {
        link: LinkKey,
        event: RelayEvent,
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

/// How often the loudest participant of each meeting is worked out.
const SPEAKER_CHECK: Duration = Duration::from_millis(500);
/// Loudness (an average of 127 + dBov audio level) below which nobody is speaking.
const SPEAKER_THRESHOLD: f32 = 8.0;
/// How often one peer's `Rtc` may ask for its timeout to be handled at once within one
/// drive before we let the driver's timer do it (a guard against a busy loop).
const IMMEDIATE_TIMEOUTS: u32 = 4;

struct TrackIn {
    mid: Mid,
    kind: MediaKind,
    /// The incoming SSRCs of this track and the simulcast layer each carries.
    streams: Vec<(Ssrc, Option<Rid>)>,
    /// The payload type last seen on this track and what it stands for.
    codec: Option<PayloadParams>,
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
    source: Source,
    kind: MediaKind,
    state: OutState,
    /// Whether the subscriber receives on this m-line: the negotiated direction of our
    /// m-line sends. Nothing is written to an m-line it answered `inactive`.
    receiving: bool,
    /// Our SSRC on this m-line, once open.
    ssrc: Option<Ssrc>,
    /// The publisher's payload type and the subscriber's for the same codec.
    pt: Option<(Pt, Pt)>,
    /// Renumbers the publisher's packets into this subscriber's stream.
    forwarder: rtp::Forwarder,
    /// The layer this subscriber should get: what it asked for, capped by its bandwidth
    /// estimate. We switch to it on its next keyframe.
    want: Rid,
    /// The layer the subscriber asked for by tile size.
    asked: Rid,
}

impl TrackOut {
    fn new(source: Source, kind: MediaKind) -> Self {
        Self {
            source,
            kind,
            state: OutState::ToOpen,
            receiving: false,
            ssrc: None,
            pt: None,
            forwarder: rtp::Forwarder::default(),
            want: Rid::from("h"),
            asked: Rid::from("h"),
        }
    }
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
    /// Tracks to offer or m-lines to retire: an offer is due once none is pending.
    needs_offer: bool,
    /// Got input, was written to, or must be looked at: drive it before the next
    /// `Timeout` leaves the SFU.
    dirty: bool,
    /// When its `Rtc` wants its timeout handled.
    due: Instant,
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

    fn want_offer(&mut self) {
        self.needs_offer = true;
        self.dirty = true;
    }

    /// After a negotiation: which of our open m-lines the peer receives on, and our
    /// SSRC on each. Returns the tracks that started receiving (they need a keyframe).
    fn refresh_directions(&mut self) -> Vec<Source> {
        let mut started = Vec::new();
        for t in &mut self.tracks_out {
            let OutState::Open(mid) = t.state else {
                continue;
            };
            let receiving = self
                .rtc
                .media(mid)
                .is_some_and(|m| m.direction().is_sending());
            if receiving && !t.receiving {
                started.push(t.source);
            }
            t.receiving = receiving;
            if t.ssrc.is_none() {
                t.ssrc = self
                    .rtc
                    .direct_api()
                    .stream_tx_by_mid(mid, None)
                    .map(|s| s.ssrc());
            }
        }
        started
    }
}

/// A track of a participant on another media node, fed in over a relay link.
struct RemoteTrack {
    link: LinkKey,
    track_id: u32,
    meeting: MeetingId,
    participant: ParticipantId,
    name: String,
    kind: MediaKind,
    codec: Codec,
    clock_rate: u32,
    /// 3 for simulcast (layer by layer), else 1.
    layers: u8,
    /// The highest extended sequence number so far, per layer.
    highest_seq: [Option<u64>; 3],
    /// When we last asked the far node for a keyframe, per layer.
    last_keyframe_request: [Option<Instant>; 3],
    /// The layers we asked the far node for (bit set; 0: not subscribed).
    mask: u8,
    /// Smoothed loudness and the current window, as for a local track.
    loudness: f32,
    window: (f32, u32),
}

/// A relay link to another media node, as the sender of our local tracks.
struct Link {
    key: LinkKey,
    meeting: MeetingId,
    tracks: Vec<LinkTrack>,
    next_track_id: u32,
}

/// One of our local tracks on a link: announced at its first packet, sent while the far
/// node subscribes, layer by layer, as the publisher sent it.
struct LinkTrack {
    track_id: u32,
    source: Source,
    codec: &'static str,
    simulcast: bool,
    /// The layers the far node subscribed to (bit set).
    mask: u8,
}

/// The bit of simulcast layer `rid` in a layer set (the only layer: bit 0).
fn layer_bit(rid: Option<Rid>) -> u8 {
    1 << layer_index(rid)
}

/// The index of a layer on relay links: 0 = `l` (or no simulcast), 1 = `m`, 2 = `h`.
fn layer_index(rid: Option<Rid>) -> u8 {
    rid.map_or(0, |r| layer_rank(r) as u8)
}

/// The layer of index `i` of a simulcast track.
fn layer_rid(i: u8) -> Rid {
    Rid::from(LAYER_BPS[usize::from(i).min(LAYER_BPS.len() - 1)].0)
}

/// Every layer of a track: for a new subscriber that has not started yet, so that it
/// starts on whichever comes first, as a local one would.
const ALL_LAYERS: u8 = 0b111;

/// A signaling session whose first offer has not been accepted yet.
struct Waiting {
    key: PeerKey,
    meeting: MeetingId,
    participant: ParticipantId,
    name: String,
}

pub struct Sfu {
    local: SocketAddr,
    /// Whether a subscriber's bandwidth estimate caps its simulcast layer.
    bandwidth_cap: bool,
    /// Which shard of the node this is: the first two hex digits of every local ICE ufrag.
    shard: u8,
    waiting: Vec<Waiting>,
    peers: Vec<Peer>,
    out: VecDeque<SfuOutput>,
    keyframe_every: Duration,
    stats: SfuStats,
    next_speaker_check: Option<Instant>,
    speakers: Vec<(MeetingId, ParticipantId)>,
    sinks: Vec<Sink>,
    remotes: Vec<RemoteTrack>,
    links: Vec<Link>,
    /// Something changed what local subscribers need of remote tracks.
    wants_changed: bool,
    /// Where the time a remote packet took from its publisher's node to being written
    /// to our subscribers goes (the hop), if anywhere.
    hop_latency: Option<prometheus::Histogram>,
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

/// What a subscriber's copy of a packet carries of the publisher's header extensions:
/// the ones about the media (str0m adds the transport's own).
fn media_extensions(from: &ExtensionValues) -> ExtensionValues {
    ExtensionValues {
        audio_level: from.audio_level,
        voice_activity: from.voice_activity,
        video_orientation: from.video_orientation,
        ..ExtensionValues::default()
    }
}

/// One incoming packet of a publisher, located: which track, and how to read it.
struct Located {
    mid: Mid,
    params: PayloadParams,
    packet: PacketIn,
}

impl Sfu {
    /// `local` is the UDP socket address peers send to (the host candidate we advertise);
    /// `shard` is written into every local ICE ufrag so that the node's demux can tell
    /// from a STUN request which shard the peer belongs to.
    pub fn new(local: SocketAddr, shard: u8) -> Self {
        Self {
            local,
            shard,
            bandwidth_cap: true,
            waiting: Vec::new(),
            peers: Vec::new(),
            out: VecDeque::new(),
            keyframe_every: Duration::from_millis(500),
            stats: SfuStats::default(),
            next_speaker_check: None,
            speakers: Vec::new(),
            sinks: Vec::new(),
            remotes: Vec::new(),
            links: Vec::new(),
            wants_changed: false,
            hop_latency: None,
        }
    }

    /// Observes in `h` how long each remote packet took from its arrival at the
    /// publisher's node until it was written to our subscribers (the relay hop).
    pub fn set_hop_histogram(&mut self, h: prometheus::Histogram) {
        self.hop_latency = Some(h);
    }

    /// Off: subscribers get the layer their tile asks for, whatever their estimate.
    pub fn set_bandwidth_cap(&mut self, on: bool) {
        self.bandwidth_cap = on;
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
        let mean = |v: Vec<f64>| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        s.rtt_seconds = mean(
            self.peers
                .iter()
                .filter_map(|p| p.rtt)
                .map(|d| d.as_secs_f64())
                .collect(),
        );
        s.egress_loss = mean(
            self.peers
                .iter()
                .filter_map(|p| p.egress_loss)
                .map(f64::from)
                .collect(),
        );
        s
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    fn peer_mut(&mut self, key: PeerKey) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.key == key)
    }

    /// Our track `track_id` on relay link `link`.
    fn link_track(&mut self, link: LinkKey, track_id: u32) -> Option<&mut LinkTrack> {
        self.links
            .iter_mut()
            .find(|l| l.key == link)?
            .tracks
            .iter_mut()
            .find(|t| t.track_id == track_id)
    }

    fn signal(&mut self, key: PeerKey, msg: SignalOut) {
        self.out.push_back(SfuOutput::Signal { key, msg });
    }

    fn refuse(&mut self, key: PeerKey, answers: &'static str, message: String) {
        self.signal(key, SignalOut::Error { answers, message });
    }

    /// The parsed SDP of the client's `answers` message (`offer`, `answer`), or None
    /// after refusing it.
    fn parsed<T, E: std::fmt::Display>(
        &mut self,
        key: PeerKey,
        answers: &'static str,
        sdp: Result<T, E>,
    ) -> Option<T> {
        sdp.map_err(|e| {
            let message = format!("invalid {answers} SDP: {}", sdp_error(&e));
            self.refuse(key, answers, message)
        })
        .ok()
    }

    pub fn handle_command(&mut self, now: Instant, cmd: SfuCommand) {
        match cmd {
            SfuCommand::Join {
                key,
                meeting,
                participant,
                name,
            } => {
                if !self.waiting.iter().any(|w| w.key == key) {
                    self.waiting.push(Waiting {
                        key,
                        meeting,
                        participant,
                        name,
                    });
                }
            }
            SfuCommand::Offer { key, sdp } => {
                match self.waiting.iter().position(|w| w.key == key) {
                    Some(w) => self.first_offer(now, w, sdp),
                    None => self.renegotiate(now, key, sdp),
                }
            }
            SfuCommand::Answer { key, sdp } => self.answer(now, key, sdp),
            SfuCommand::Layer { key, mid, rid } => {
                let mid = Mid::from(mid.as_str());
                let cap = self.bandwidth_cap;
                let Some(p) = self.peer_mut(key) else {
                    return self.refuse(key, "layer", "no media session yet".into());
                };
                let budget = p.video_budget_bps().filter(|_| cap);
                let Some(t) = p
                    .tracks_out
                    .iter_mut()
                    .find(|t| t.state == OutState::Open(mid) && t.kind == MediaKind::Video)
                else {
                    return self.refuse(key, "layer", format!("no video on m-line {mid}"));
                };
                t.asked = rid;
                let rid = capped(rid, budget);
                if t.want == rid {
                    return;
                }
                t.want = rid;
                let source = t.source;
                self.wants_changed = true;
                // Switching needs a keyframe of the new layer.
                self.request_keyframe(now, source, Some(rid), KeyframeRequestKind::Pli);
            }
            SfuCommand::Leave { key } => {
                self.waiting.retain(|w| w.key != key);
                self.remove_peer(key);
            }
            SfuCommand::SinkAttach { key, meeting } => {
                if !self.sinks.iter().any(|s| s.key == key) {
                    self.sinks.push(Sink {
                        key,
                        meeting,
                        tracks: Vec::new(),
                        next_track_id: 1,
                    });
                    self.wants_changed = true;
                }
            }
            SfuCommand::SinkDetach { key } => {
                self.sinks.retain(|s| s.key != key);
                self.wants_changed = true;
            }
            SfuCommand::LinkAttach { link, meeting } => {
                if !self.links.iter().any(|l| l.key == link) {
                    self.links.push(Link {
                        key: link,
                        meeting,
                        tracks: Vec::new(),
                        next_track_id: 1,
                    });
                }
            }
            SfuCommand::LinkSubscribe {
                link,
                track_id,
                mask,
            } => {
                let Some(t) = self.link_track(link, track_id) else {
                    return;
                };
                let mask = if t.simulcast {
                    mask & ALL_LAYERS
                } else {
                    mask.min(1)
                };
                let added = mask & !t.mask;
                t.mask = mask;
                let (source, simulcast) = (t.source, t.simulcast);
                // The far node's subscribers start on a keyframe of each layer it added.
                for i in (0..3u8).filter(|i| added & (1 << i) != 0) {
                    let rid = simulcast.then(|| layer_rid(i));
                    self.request_keyframe(now, source, rid, KeyframeRequestKind::Pli);
                }
            }
            SfuCommand::LinkKeyframe {
                link,
                track_id,
                layer,
            } => {
                let Some(t) = self.link_track(link, track_id) else {
                    return;
                };
                let (source, rid) = (t.source, t.simulcast.then(|| layer_rid(layer)));
                self.request_keyframe(now, source, rid, KeyframeRequestKind::Pli);
            }
            SfuCommand::SinkKeyframe { key, track_id } => {
                let Some(t) = self
                    .sinks
                    .iter()
                    .find(|s| s.key == key)
                    .and_then(|s| s.tracks.iter().find(|t| t.track_id == track_id))
                else {
                    return;
                };
                let (source, rid) = (t.source, t.layer());
                self.request_keyframe(now, source, rid, KeyframeRequestKind::Pli);
            }
            SfuCommand::RemoteTrack {
                link,
                meeting,
                track_id,
                participant,
                name,
                kind,
                codec,
                clock_rate,
                layers,
            } => {
                let source = Source::Remote(link, track_id);
                if self
                    .remotes
                    .iter()
                    .any(|r| r.link == link && r.track_id == track_id)
                {
                    return;
                }
                for p in self.peers.iter_mut().filter(|p| p.meeting == meeting) {
                    p.tracks_out.push(TrackOut::new(source, kind));
                    p.want_offer();
                }
                self.remotes.push(RemoteTrack {
                    link,
                    track_id,
                    meeting,
                    participant,
                    name,
                    kind,
                    codec,
                    clock_rate,
                    layers: if layers > 1 { 3 } else { 1 },
                    highest_seq: [None; 3],
                    last_keyframe_request: [None; 3],
                    mask: 0,
                    loudness: 0.0,
                    window: (0.0, 0),
                });
                self.wants_changed = true;
            }
            SfuCommand::RemoteTrackEnded { link, track_id } => {
                self.remotes
                    .retain(|r| !(r.link == link && r.track_id == track_id));
                self.retire(|s| *s == Source::Remote(link, track_id));
            }
            SfuCommand::LinkDown { link } => {
                self.links.retain(|l| l.key != link);
                self.remotes.retain(|r| r.link != link);
                self.retire(|s| matches!(s, Source::Remote(l, _) if *l == link));
            }
            SfuCommand::RemotePacket {
                link,
                track_id,
                layer,
                rtp,
            } => self.remote_packet(now, link, track_id, layer, &rtp),
        }
    }

    /// The first offer of waiting session `w`: its peer connection, or an error that
    /// leaves it waiting for another offer.
    fn first_offer(&mut self, now: Instant, w: usize, sdp: String) {
        let key = self.waiting[w].key;
        let Some(offer) = self.parsed(key, "offer", SdpOffer::from_sdp_string(&sdp)) else {
            return;
        };
        let mut creds = IceCreds::new();
        creds.ufrag = format!("{:02x}{}", self.shard, creds.ufrag);
        let mut rtc = with_video_codecs(Rtc::builder(), &sdp)
            .set_rtp_mode(true)
            .set_local_ice_credentials(creds)
            .set_ice_lite(true)
            .enable_bwe(Some(Bitrate::kbps(INITIAL_ESTIMATE_KBPS)))
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        match Candidate::host(self.local, "udp") {
            Ok(c) => {
                rtc.add_local_candidate(c);
            }
            Err(e) => return self.refuse(key, "offer", format!("no host candidate: {e}")),
        }
        let answer = match rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => return self.refuse(key, "offer", format!("offer not accepted: {e}")),
        };
        let w = self.waiting.swap_remove(w);
        let mut peer = Peer {
            key,
            meeting: w.meeting,
            participant: w.participant,
            name: w.name,
            rtc,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            pending: None,
            needs_offer: false,
            dirty: true,
            due: now,
            rtt: None,
            egress_loss: None,
            bytes: None,
            bitrate_in_bps: 0,
            bitrate_out_bps: 0,
            stream_counters: Vec::new(),
            to_deactivate: Vec::new(),
            estimate_bps: None,
        };
        // Everything already published in the meeting, here or on other nodes, is
        // offered to the newcomer.
        for other in self.peers.iter().filter(|o| o.meeting == peer.meeting) {
            for t in &other.tracks_in {
                peer.tracks_out
                    .push(TrackOut::new(Source::Peer(other.key, t.mid), t.kind));
                peer.needs_offer = true;
            }
        }
        for r in self.remotes.iter().filter(|r| r.meeting == peer.meeting) {
            peer.tracks_out
                .push(TrackOut::new(Source::Remote(r.link, r.track_id), r.kind));
            peer.needs_offer = true;
        }
        self.peers.push(peer);
        self.signal(key, SignalOut::Answer(answer.to_sdp_string()));
    }

    fn renegotiate(&mut self, now: Instant, key: PeerKey, sdp: String) {
        let Some(offer) = self.parsed(key, "offer", SdpOffer::from_sdp_string(&sdp)) else {
            return;
        };
        let Some(peer) = self.peer_mut(key) else {
            return self.refuse(key, "offer", "the media session has ended".into());
        };
        // The peer's offer wins over ours: drop our pending offer and redo it after.
        if peer.pending.take().is_some() {
            for t in &mut peer.tracks_out {
                if let OutState::Negotiating(_) = t.state {
                    t.state = OutState::ToOpen;
                }
            }
            peer.want_offer();
        }
        match peer.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => {
                peer.dirty = true;
                let started = peer.refresh_directions();
                self.wants_changed = true;
                self.signal(key, SignalOut::Answer(a.to_sdp_string()));
                self.keyframes_for(now, started);
            }
            Err(e) => self.refuse(key, "offer", format!("offer not accepted: {e}")),
        }
    }

    fn answer(&mut self, now: Instant, key: PeerKey, sdp: String) {
        let Some(answer) = self.parsed(key, "answer", SdpAnswer::from_sdp_string(&sdp)) else {
            return;
        };
        let Some(peer) = self.peer_mut(key) else {
            return self.refuse(key, "answer", "answer before any offer".into());
        };
        let Some(pending) = peer.pending.take() else {
            return self.refuse(key, "answer", "answer without an offer of ours".into());
        };
        match peer.rtc.sdp_api().accept_answer(pending, answer) {
            Ok(()) => {
                for t in &mut peer.tracks_out {
                    if let OutState::Negotiating(m) = t.state {
                        t.state = OutState::Open(m);
                    }
                }
                // Tracks added meanwhile are offered now.
                peer.dirty = true;
                let started = peer.refresh_directions();
                self.wants_changed = true;
                // A new subscriber needs a keyframe to start decoding.
                self.keyframes_for(now, started);
            }
            Err(e) => self.refuse(key, "answer", format!("answer not accepted: {e}")),
        }
    }

    fn keyframes_for(&mut self, now: Instant, tracks: Vec<Source>) {
        for source in tracks {
            self.request_keyframe(now, source, None, KeyframeRequestKind::Pli);
        }
    }

    fn remove_peer(&mut self, key: PeerKey) {
        let Some(i) = self.peers.iter().position(|p| p.key == key) else {
            return;
        };
        let mut peer = self.peers.swap_remove(i);
        peer.rtc.disconnect();
        self.retire(|s| matches!(s, Source::Peer(k, _) if *k == key));
    }

    /// Ends the tracks whose source `gone` says is gone: sinks are told, subscribers'
    /// m-lines go inactive in their next offer.
    fn retire(&mut self, gone: impl Fn(&Source) -> bool) {
        self.wants_changed = true;
        for link in &mut self.links {
            for track_id in drop_gone(&mut link.tracks, |t| (t.source, t.track_id), &gone) {
                let event = RelayEvent::Remove { track_id };
                self.out.push_back(SfuOutput::Link {
                    link: link.key,
                    event,
                });
            }
        }
        for sink in &mut self.sinks {
            for track_id in drop_gone(&mut sink.tracks, |t| (t.source, t.track_id), &gone) {
                let event = RelayEvent::Remove { track_id };
                self.out.push_back(SfuOutput::Sink {
                    key: sink.key,
                    event,
                });
            }
        }
        for p in &mut self.peers {
            let mut removed = Vec::new();
            p.tracks_out.retain(|t| match t.state {
                _ if !gone(&t.source) => true,
                OutState::ToOpen => false,
                OutState::Negotiating(mid) | OutState::Open(mid) => {
                    removed.push(mid);
                    false
                }
            });
            for mid in removed {
                p.to_deactivate.push(mid);
                p.want_offer();
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
        peer.dirty = true;
        true
    }

    /// Handles the timeouts that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for p in self.peers.iter_mut().filter(|p| p.due <= now) {
            if p.rtc.is_alive() && p.rtc.handle_input(Input::Timeout(now)).is_err() {
                p.rtc.disconnect();
            }
            p.dirty = true;
        }
    }

    /// Drives every peer that got input or was written to until it has nothing more to
    /// say, forwarding media as it arrives, and returns the next output; `Timeout` means
    /// "call again at that time or on input". Everything a packet causes (its copy to
    /// every subscriber) leaves in the same drain as the packet's own effects: a peer
    /// written to is driven before the drain ends.
    pub fn poll_output(&mut self, now: Instant) -> SfuOutput {
        let check = *self.next_speaker_check.get_or_insert(now + SPEAKER_CHECK);
        loop {
            if let Some(o) = self.out.pop_front() {
                return o;
            }
            if self.drive_dirty(now) {
                continue;
            }
            if std::mem::take(&mut self.wants_changed) {
                self.update_remote_layers();
                continue;
            }
            if now >= check {
                self.next_speaker_check = Some(now + SPEAKER_CHECK);
                self.detect_speakers();
                self.adapt_layers(now);
                // Keyframe requests made peers dirty: drive them too.
                return self.poll_output(now);
            }
            break;
        }
        let next = self
            .peers
            .iter()
            .map(|p| p.due)
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        SfuOutput::Timeout(next.min(check))
    }

    /// One sweep over the peers, driving each that is dirty; false if none was. A
    /// packet makes its publisher and then its subscribers dirty, so a few sweeps
    /// (each O(peers)) settle it.
    fn drive_dirty(&mut self, now: Instant) -> bool {
        let mut any = false;
        let mut i = 0;
        while i < self.peers.len() {
            if self.peers[i].dirty {
                any = true;
                let before = self.peers.len();
                self.drive(now, i);
                if self.peers.len() < before {
                    // Peer i left (another took its index): look at i again.
                    continue;
                }
            }
            i += 1;
        }
        any
    }

    /// Polls peer `i` until its `Rtc` has nothing more to say.
    fn drive(&mut self, now: Instant, i: usize) {
        self.peers[i].dirty = false;
        if !self.peers[i].rtc.is_alive() {
            let key = self.peers[i].key;
            self.remove_peer(key);
            self.signal(key, SignalOut::Closed("connection closed".into()));
            return;
        }
        if self.peers[i].needs_offer && self.peers[i].pending.is_none() {
            self.negotiate(i);
        }
        let mut immediate = 0;
        loop {
            let out = match self.peers[i].rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, "poll_output failed; disconnecting");
                    self.peers[i].rtc.disconnect();
                    self.peers[i].dirty = true;
                    return;
                }
            };
            match out {
                // Written packets are only sent after a timeout stamps them: at once.
                Output::Timeout(t) if t <= now && immediate < IMMEDIATE_TIMEOUTS => {
                    immediate += 1;
                    if self.peers[i].rtc.handle_input(Input::Timeout(now)).is_err() {
                        self.peers[i].rtc.disconnect();
                        self.peers[i].dirty = true;
                        return;
                    }
                }
                Output::Timeout(t) => {
                    self.peers[i].due = t;
                    return;
                }
                Output::Transmit(t) => self.out.push_back(SfuOutput::Transmit {
                    destination: t.destination,
                    source: t.source,
                    contents: t.contents.into(),
                }),
                Output::Event(e) => self.handle_event(now, i, e),
            }
        }
    }

    fn handle_event(&mut self, now: Instant, i: usize, e: Event) {
        let key = self.peers[i].key;
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.peers[i].rtc.disconnect();
                self.peers[i].dirty = true;
            }
            Event::MediaAdded(m)
                if matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) =>
            {
                let meeting = self.peers[i].meeting.clone();
                self.peers[i].tracks_in.push(TrackIn {
                    mid: m.mid,
                    kind: m.kind,
                    streams: Vec::new(),
                    codec: None,
                    last_keyframe_request: Vec::new(),
                    loudness: 0.0,
                    window: (0.0, 0),
                });
                for p in self
                    .peers
                    .iter_mut()
                    .filter(|p| p.key != key && p.meeting == meeting)
                {
                    p.tracks_out
                        .push(TrackOut::new(Source::Peer(key, m.mid), m.kind));
                    p.want_offer();
                }
            }
            Event::RtpPacket(packet) => {
                if let Some(located) = self.locate(i, &packet) {
                    self.forward(now, i, &located, &packet);
                }
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

    /// Which track of peer `i` a packet belongs to, its codec, and what a forwarder needs
    /// to know of it. Also feeds the track's loudness. None for a packet we cannot place.
    fn locate(&mut self, i: usize, packet: &RtpPacket) -> Option<Located> {
        let peer = &mut self.peers[i];
        let ssrc = packet.header.ssrc;
        let found = peer.tracks_in.iter().enumerate().find_map(|(ti, t)| {
            t.streams
                .iter()
                .find(|(s, _)| *s == ssrc)
                .map(|(_, rid)| (ti, *rid))
        });
        let (ti, rid) = match found {
            Some(f) => f,
            None => {
                // A new SSRC: str0m knows its m-line and layer (from SDP or the mid/rid
                // header extensions). Once per stream.
                let (mid, rid) = {
                    let mut direct = peer.rtc.direct_api();
                    let s = direct.stream_rx(&ssrc)?;
                    (s.mid(), s.rid())
                };
                let ti = peer.tracks_in.iter().position(|t| t.mid == mid)?;
                peer.tracks_in[ti].streams.push((ssrc, rid));
                (ti, rid)
            }
        };
        let pt = packet.header.payload_type;
        let params = match peer.tracks_in[ti].codec {
            Some(p) if p.pt() == pt => p,
            _ => {
                let p = *peer.rtc.codec_config().find(|p| p.pt() == pt)?;
                peer.tracks_in[ti].codec = Some(p);
                p
            }
        };
        let t = &mut peer.tracks_in[ti];
        if let Some(level) = packet.header.ext_vals.audio_level {
            t.window.0 += loudness_of(level);
            t.window.1 += 1;
        }
        let codec = params.spec().codec;
        let vp8 = (codec == Codec::Vp8)
            .then(|| rtp::vp8_fields(&packet.payload))
            .flatten();
        let keyframe_start = match codec {
            Codec::Vp8 => vp8.is_some_and(|v| v.keyframe_start),
            Codec::H264 => rtp::h264_keyframe_start(&packet.payload),
            _ => false,
        };
        Some(Located {
            mid: t.mid,
            params,
            packet: PacketIn {
                rid,
                seq: *packet.seq_no,
                timestamp: packet.header.timestamp,
                at: packet.timestamp,
                clock_rate: params.spec().clock_rate.get(),
                keyframe_start,
                video: t.kind == MediaKind::Video,
                vp8,
            },
        })
    }

    /// Forwards one packet of publisher `oi` to its subscribers and the meeting's sinks.
    fn forward(&mut self, now: Instant, oi: usize, at: &Located, packet: &RtpPacket) {
        let p = &at.packet;
        let (before, rest) = self.peers.split_at_mut(oi);
        let (publisher, after) = rest.split_first_mut().expect("index in range");
        let source = Source::Peer(publisher.key, at.mid);
        let ext = media_extensions(&packet.header.ext_vals);
        let payload = Payload {
            data: &packet.payload,
            marker: packet.header.marker,
            ext: &ext,
            pt: at.params.pt(),
        };
        let meeting = &publisher.meeting;
        let subscribers = before
            .iter_mut()
            .chain(after.iter_mut())
            .filter(|s| s.meeting == *meeting);
        let mut want_keyframe = fan_out(subscribers, source, p, &payload, |rtc| {
            rtc.codec_config().match_params(at.params).map(|x| x.pt())
        });
        let who = Who {
            meeting,
            participant: &publisher.participant,
            name: &publisher.name,
        };
        want_keyframe |= feed_sinks(
            &mut self.sinks,
            &mut self.out,
            &who,
            source,
            at.params.spec().codec,
            p,
            &payload,
        );
        feed_links(
            &mut self.links,
            &mut self.out,
            &who,
            source,
            at.params.spec().codec,
            p,
            &payload,
        );
        if want_keyframe {
            self.request_keyframe(now, source, p.rid, KeyframeRequestKind::Pli);
        }
    }

    /// Forwards one packet of a remote track to local subscribers and the sinks, as if
    /// its publisher were here. The payload is copied once, for all of them.
    fn remote_packet(
        &mut self,
        now: Instant,
        link: LinkKey,
        track_id: u32,
        layer: u8,
        data: &[u8],
    ) {
        let Some(ri) = self
            .remotes
            .iter()
            .position(|r| r.link == link && r.track_id == track_id)
        else {
            return;
        };
        let Some(h) = rtp::RtpView::parse(data) else {
            return;
        };
        let r = &mut self.remotes[ri];
        let rid = (r.layers > 1).then(|| layer_rid(layer));
        let highest = &mut r.highest_seq[usize::from(layer_index(rid))];
        let seq = rtp::extend_seq(*highest, h.seq);
        *highest = Some(highest.map_or(seq, |s| s.max(seq)));
        if let Some(level) = h.audio_level {
            r.window.0 += loudness_of(level);
            r.window.1 += 1;
        }
        let body = &data[h.payload.clone()];
        let vp8 = (r.codec == Codec::Vp8)
            .then(|| rtp::vp8_fields(body))
            .flatten();
        let p = PacketIn {
            rid,
            seq,
            timestamp: h.timestamp,
            at: now,
            clock_rate: r.clock_rate,
            keyframe_start: match r.codec {
                Codec::Vp8 => vp8.is_some_and(|v| v.keyframe_start),
                Codec::H264 => rtp::h264_keyframe_start(body),
                _ => false,
            },
            video: r.kind == MediaKind::Video,
            vp8,
        };
        let shared: std::sync::Arc<[u8]> = body.into();
        let ext = ExtensionValues::default();
        let payload = Payload {
            data: &shared,
            marker: h.marker,
            ext: &ext,
            pt: Pt::from(h.payload_type),
        };
        let r = &self.remotes[ri];
        let (codec, source) = (r.codec, Source::Remote(link, track_id));
        let subscribers = self.peers.iter_mut().filter(|s| s.meeting == r.meeting);
        let mut want_keyframe = fan_out(subscribers, source, &p, &payload, |rtc| {
            rtc.codec_config()
                .find(|x| x.spec().codec == codec)
                .map(|x| x.pt())
        });
        let who = Who {
            meeting: &r.meeting,
            participant: &r.participant,
            name: &r.name,
        };
        want_keyframe |= feed_sinks(
            &mut self.sinks,
            &mut self.out,
            &who,
            source,
            codec,
            &p,
            &payload,
        );
        if let (Some(hist), Some(at)) = (&self.hop_latency, h.arrived_unix_us) {
            let here = unix_us_at(Instant::now());
            hist.observe(here.saturating_sub(at) as f64 / 1e6);
        }
        if want_keyframe {
            self.request_keyframe(now, source, rid, KeyframeRequestKind::Pli);
        }
    }

    fn keyframe_from_subscriber(&mut self, now: Instant, i: usize, req: KeyframeRequest) {
        let Some(t) = self.peers[i]
            .tracks_out
            .iter()
            .find(|t| t.state == OutState::Open(req.mid))
        else {
            return;
        };
        let (source, rid) = (t.source, t.forwarder.layer());
        self.request_keyframe(now, source, rid, req.kind);
    }

    /// Asks the publisher of `source` for a keyframe (of layer `rid`), at most once per
    /// `keyframe_every` per layer, whoever asks. A remote track's request goes back over
    /// its link; the publisher's node throttles it again for everyone.
    fn request_keyframe(
        &mut self,
        now: Instant,
        source: Source,
        rid: Option<Rid>,
        kind: KeyframeRequestKind,
    ) {
        let every = self.keyframe_every;
        let too_soon = |at: Instant| now.saturating_duration_since(at) < every;
        let (origin, mid) = match source {
            Source::Peer(origin, mid) => (origin, mid),
            Source::Remote(link, track_id) => {
                let Some(r) = self
                    .remotes
                    .iter_mut()
                    .find(|r| r.link == link && r.track_id == track_id)
                else {
                    return;
                };
                let layer = if r.layers > 1 { layer_index(rid) } else { 0 };
                let last = &mut r.last_keyframe_request[usize::from(layer)];
                if r.kind != MediaKind::Video || last.is_some_and(too_soon) {
                    return;
                }
                *last = Some(now);
                return self.out.push_back(SfuOutput::Link {
                    link,
                    event: RelayEvent::Keyframe { track_id, layer },
                });
            }
        };
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
            Some((_, at)) if too_soon(*at) => return,
            Some((_, at)) => *at = now,
            None => t.last_keyframe_request.push((rid, now)),
        }
        if let Some(s) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            s.request_keyframe(kind);
            p.dirty = true;
        }
    }

    /// Offers peer `i` the tracks it does not have yet and retires m-lines whose
    /// publisher left; called only while no offer of ours is pending.
    fn negotiate(&mut self, i: usize) {
        let remotes = &self.remotes;
        let (left, right) = self.peers.split_at_mut(i);
        let (peer, rest) = right.split_first_mut().expect("index in range");
        peer.needs_offer = false;
        let mut change = peer.rtc.sdp_api();
        for mid in peer.to_deactivate.drain(..) {
            change.set_direction(mid, Direction::Inactive);
        }
        let mut announced = Vec::new();
        for t in &mut peer.tracks_out {
            if t.state == OutState::ToOpen {
                let participant = match t.source {
                    Source::Peer(key, _) => left
                        .iter()
                        .chain(rest.iter())
                        .find(|p| p.key == key)
                        .map(|p| &p.participant),
                    Source::Remote(link, id) => remotes
                        .iter()
                        .find(|r| r.link == link && r.track_id == id)
                        .map(|r| &r.participant),
                };
                let Some(participant) = participant else {
                    continue;
                };
                let stream = participant.to_string();
                let mid = change.add_media(t.kind, Direction::SendOnly, Some(stream), None, None);
                t.state = OutState::Negotiating(mid);
                announced.push((mid, participant.clone(), t.kind));
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
}

/// The Unix time, in microseconds, of the instant `at` (which is at most a little in the
/// past): relay links carry arrival times between nodes, whose monotonic clocks differ.
fn unix_us_at(at: Instant) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(at.elapsed()).as_micros() as u64
}

/// Removes the relay tracks (a sink's or a link's) whose source is `gone`; returns their
/// track ids.
fn drop_gone<T>(
    tracks: &mut Vec<T>,
    id: impl Fn(&T) -> (Source, u32),
    gone: impl Fn(&Source) -> bool,
) -> Vec<u32> {
    let mut dropped = Vec::new();
    tracks.retain(|t| {
        let (source, track_id) = id(t);
        let keep = !gone(&source);
        if !keep {
            dropped.push(track_id);
        }
        keep
    });
    dropped
}

/// RFC 6464: 0 is the loudest (0 dBov), -127 silence; loudness is 127 + level.
fn loudness_of(level: i8) -> f32 {
    f32::from(127 - level.clamp(-127, 0).unsigned_abs() as i8)
}

/// What a forwarded packet carries besides its place in the stream.
struct Payload<'a> {
    data: &'a std::sync::Arc<[u8]>,
    marker: bool,
    ext: &'a ExtensionValues,
    /// Its payload type where it came from.
    pt: Pt,
}

/// Who published a track, for sinks.
struct Who<'a> {
    meeting: &'a MeetingId,
    participant: &'a ParticipantId,
    name: &'a str,
}

/// Writes one packet of `source` into every subscriber's `Rtc` among `subscribers` that
/// receives it; true when one of them waits for a keyframe. Per subscriber this neither
/// allocates nor locks: the payload is one `Arc` shared by all of them, rewritten (SSRC,
/// sequence number, time, VP8 picture id) as str0m encrypts it. `pt_for` finds a
/// subscriber's payload type for the packet's codec (once per track and payload type).
fn fan_out<'a>(
    subscribers: impl Iterator<Item = &'a mut Peer>,
    source: Source,
    p: &PacketIn,
    payload: &Payload,
    pt_for: impl Fn(&Rtc) -> Option<Pt>,
) -> bool {
    let mut want_keyframe = false;
    for sub in subscribers {
        let Some(t) = sub.tracks_out.iter_mut().find(|t| t.source == source) else {
            continue;
        };
        let (OutState::Open(_), true, Some(ssrc)) = (t.state, t.receiving, t.ssrc) else {
            continue;
        };
        let out = match t.forwarder.handle(p, p.rid.map(|_| t.want)) {
            Verdict::Forward(out) => out,
            Verdict::Drop => continue,
            Verdict::WaitKeyframe => {
                want_keyframe = true;
                continue;
            }
        };
        let pt = match t.pt {
            Some((from, to)) if from == payload.pt => to,
            _ => {
                let Some(to) = pt_for(&sub.rtc) else {
                    continue;
                };
                t.pt = Some((payload.pt, to));
                to
            }
        };
        let mut write = RtpWrite::new(
            pt,
            out.seq.into(),
            out.timestamp,
            p.at,
            payload.data.clone(),
        )
        .marker(payload.marker)
        .ext_vals(payload.ext.clone())
        .nackable(p.video);
        if let Some((picture_id, tl0)) = out.vp8 {
            match vp8_patch(payload.data, picture_id, tl0) {
                Some(patch) => write = write.vp8_patch(patch),
                None => continue,
            }
        }
        let mut direct = sub.rtc.direct_api();
        let Some(stream) = direct.stream_tx(&ssrc) else {
            continue;
        };
        stream.write_rtp(write);
        sub.dirty = true;
    }
    want_keyframe
}

/// Hands a packet of `source` to the relay sinks of its meeting. True when a sink waits
/// for a keyframe of its layer.
fn feed_sinks(
    sinks: &mut [Sink],
    out: &mut VecDeque<SfuOutput>,
    who: &Who,
    source: Source,
    codec: Codec,
    p: &PacketIn,
    payload: &Payload,
) -> bool {
    let mut want_keyframe = false;
    for sink in sinks.iter_mut().filter(|s| s.meeting == *who.meeting) {
        let i = match sink.tracks.iter().position(|t| t.source == source) {
            Some(i) => i,
            None => {
                let Some(codec) = sink::codec_name(codec) else {
                    continue;
                };
                let kind = if p.video {
                    MediaKind::Video
                } else {
                    MediaKind::Audio
                };
                let track_id = sink.next_track_id;
                sink.next_track_id += 1;
                out.push_back(SfuOutput::Sink {
                    key: sink.key,
                    event: RelayEvent::Announce {
                        track_id,
                        participant: who.participant.clone(),
                        name: who.name.to_owned(),
                        kind,
                        codec,
                        clock_rate: p.clock_rate,
                        layers: 1,
                    },
                });
                sink.tracks.push(SinkTrack::new(track_id, source, codec));
                sink.tracks.len() - 1
            }
        };
        let t = &mut sink.tracks[i];
        match t.packet(p, payload.marker, payload.data) {
            Ok(rtp) => out.push_back(SfuOutput::Sink {
                key: sink.key,
                event: RelayEvent::Media {
                    track_id: t.track_id,
                    layer: 0,
                    packet: rtp,
                },
            }),
            Err(wait) => want_keyframe |= wait,
        }
    }
    want_keyframe
}

/// Hands a packet of local track `source` to the relay links of its meeting: announced
/// at its first packet, sent as the publisher sent it (its sequence number, RTP time and
/// audio level) while the far node subscribes to its layer. Remote tracks never reach
/// this: each node sends the far nodes only its own participants.
fn feed_links(
    links: &mut [Link],
    out: &mut VecDeque<SfuOutput>,
    who: &Who,
    source: Source,
    codec: Codec,
    p: &PacketIn,
    payload: &Payload,
) {
    let mut arrived = None;
    for link in links.iter_mut().filter(|l| l.meeting == *who.meeting) {
        let i = match link.tracks.iter().position(|t| t.source == source) {
            Some(i) => i,
            None => {
                let Some(codec) = sink::codec_name(codec) else {
                    continue;
                };
                let track_id = link.next_track_id;
                link.next_track_id += 1;
                let simulcast = p.rid.is_some();
                out.push_back(SfuOutput::Link {
                    link: link.key,
                    event: RelayEvent::Announce {
                        track_id,
                        participant: who.participant.clone(),
                        name: who.name.to_owned(),
                        kind: if p.video {
                            MediaKind::Video
                        } else {
                            MediaKind::Audio
                        },
                        codec,
                        clock_rate: p.clock_rate,
                        layers: if simulcast { 3 } else { 1 },
                    },
                });
                link.tracks.push(LinkTrack {
                    track_id,
                    source,
                    codec,
                    simulcast,
                    mask: 0,
                });
                link.tracks.len() - 1
            }
        };
        let t = &link.tracks[i];
        let layer = layer_index(p.rid);
        if t.mask & (1 << layer) == 0 {
            continue;
        }
        let meta = sink::LinkMeta {
            track_id: t.track_id,
            layer,
            marker: payload.marker,
            level: payload.ext.audio_level,
            arrived_unix_us: *arrived.get_or_insert_with(|| unix_us_at(p.at)),
        };
        let packet = sink::link_packet(t.codec, p, &meta, payload.data);
        out.push_back(SfuOutput::Link {
            link: link.key,
            event: RelayEvent::Media {
                track_id: t.track_id,
                layer,
                packet,
            },
        });
    }
}

/// str0m's SDP parse error on one line, without the parser's memory address.
fn sdp_error(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(|l| match l.find(" at PointerOffset(") {
            Some(at) => &l[..at],
            None => l,
        })
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// str0m's patch for a packet whose VP8 picture id and TL0PICIDX a layer switch moved.
fn vp8_patch(
    payload: &[u8],
    picture_id: Option<u16>,
    tl0: Option<u8>,
) -> Option<str0m::rtp::Vp8Patch> {
    let mut b = Vp8Descriptor::parse(payload).ok()?.patch();
    if let Some(id) = picture_id {
        b = b.picture_id(id);
    }
    if let Some(t) = tl0 {
        b = b.tl0_pic_idx(t);
    }
    b.build().ok()
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
                    keyframes.push((t.source, want));
                }
            }
            if desired > 0 {
                p.rtc
                    .bwe()
                    .set_bitrate(Bitrate::kbps(100), Bitrate::from(desired));
                p.dirty = true;
            }
        }
        // Layers in use change as subscribers switch: tell the far nodes.
        self.wants_changed = true;
        for (source, rid) in keyframes {
            self.request_keyframe(now, source, Some(rid), KeyframeRequestKind::Pli);
        }
    }

    /// What local subscribers (and sinks) need of each remote track now: the layer each
    /// one wants and the one it gets (every layer while it has not started), or nothing.
    /// Changes go to the far node, which sends only that.
    fn update_remote_layers(&mut self) {
        for r in &mut self.remotes {
            let source = Source::Remote(r.link, r.track_id);
            let simulcast = r.layers > 1;
            let mut mask = 0;
            for p in self.peers.iter().filter(|p| p.meeting == r.meeting) {
                for t in p.tracks_out.iter().filter(|t| {
                    t.source == source && t.receiving && matches!(t.state, OutState::Open(_))
                }) {
                    mask |= match t.forwarder.layer() {
                        _ if !simulcast => 1,
                        None => ALL_LAYERS,
                        Some(now) => layer_bit(Some(t.want)) | layer_bit(Some(now)),
                    };
                }
            }
            if self.sinks.iter().any(|s| s.meeting == r.meeting) {
                mask |= if simulcast { ALL_LAYERS } else { 1 };
            }
            if mask != r.mask {
                r.mask = mask;
                self.out.push_back(SfuOutput::Link {
                    link: r.link,
                    event: RelayEvent::Layers {
                        track_id: r.track_id,
                        mask,
                    },
                });
            }
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
        for r in self
            .remotes
            .iter_mut()
            .filter(|r| r.kind == MediaKind::Audio)
        {
            let (sum, n) = std::mem::take(&mut r.window);
            let mean = if n == 0 { 0.0 } else { sum / n as f32 };
            r.loudness = 0.5 * r.loudness + 0.5 * mean;
        }
        // Participants here and on the other nodes of the meeting (their levels come
        // over the links), so that every node picks the same speaker.
        let local = self.peers.iter().map(|p| {
            let l = p
                .tracks_in
                .iter()
                .filter(|t| t.kind == MediaKind::Audio)
                .map(|t| t.loudness)
                .fold(0.0, f32::max);
            (&p.meeting, &p.participant, l)
        });
        let remote = self
            .remotes
            .iter()
            .filter(|r| r.kind == MediaKind::Audio)
            .map(|r| (&r.meeting, &r.participant, r.loudness));
        let mut loudest: Vec<(MeetingId, ParticipantId, f32)> = Vec::new();
        for (meeting, participant, l) in local.chain(remote) {
            if l < SPEAKER_THRESHOLD {
                continue;
            }
            match loudest.iter_mut().find(|(m, _, _)| m == meeting) {
                Some(e) if e.2 >= l => {}
                Some(e) => *e = (meeting.clone(), participant.clone(), l),
                None => loudest.push((meeting.clone(), participant.clone(), l)),
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
        self.speakers.retain(|(m, _)| {
            self.peers.iter().any(|p| &p.meeting == m)
                || self.remotes.iter().any(|r| &r.meeting == m)
        });
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
