//! The SFU core's interface: the keys that name peers, sinks and links, the commands it
//! takes, and the outputs it gives (signaling messages, datagrams, relay events).
use std::net::SocketAddr;
use std::time::Instant;

use common::ids::{MeetingId, ParticipantId};
use relay::Codec;
use str0m::media::{MediaKind, Mid, Rid};

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
        codec: Codec,
        clock_rate: u32,
        layers: u8,
    },
    /// The track ended (its publisher left).
    Remove { track_id: u32 },
    /// Sinks only: the meeting's active speaker is now `participant`.
    Speaker { participant: ParticipantId },
    /// One RTP packet of a track (of simulcast layer `layer`, 0 without simulcast),
    /// with room for the relay's media id in front: it goes on the wire as it is.
    Media {
        track_id: u32,
        layer: u8,
        packet: relay::wire::MediaPacket,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// What the receiver shows: from then on it receives on slots (made in one offer),
    /// which the SFU fills. Checked against the limits already (`View::check`).
    View {
        key: PeerKey,
        view: signaling::View,
    },
    /// The participant is muted (by themselves or by a host): what it publishes of a
    /// muted kind is dropped here, so nobody receives it whatever its client sends.
    /// Unmuted video restarts on a keyframe, asked for at once.
    Mute {
        key: PeerKey,
        audio: bool,
        video: bool,
    },
    /// The meeting's breakout rooms: the room of each participant moved out of the main
    /// room (0). Media flows only between participants of the same room; sinks (the
    /// recording) get the main room's. Empty when no breakout rooms are open.
    Groups {
        meeting: MeetingId,
        groups: std::collections::HashMap<ParticipantId, u32>,
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
    /// The sink wants simulcast layer `rid` of its track `track_id` (the one that fits
    /// the tile it shows the track in).
    SinkLayer {
        key: SinkKey,
        track_id: u32,
        rid: Rid,
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
    RemoteTrack(RemoteTrackInfo),
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

/// A track a far node announced on relay link `link`.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteTrackInfo {
    pub link: LinkKey,
    pub meeting: MeetingId,
    pub track_id: u32,
    pub participant: ParticipantId,
    pub name: String,
    pub kind: MediaKind,
    pub codec: Codec,
    pub clock_rate: u32,
    /// 3 when the link carries the track's simulcast layers, else 1.
    pub layers: u8,
}

/// Signaling messages the SFU sends to a peer.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalOut {
    Answer(String),
    Offer(String),
    /// What each receive slot carries now.
    Slots(Vec<signaling::Slot>),
    /// Dynacast: the simulcast layers of the peer's track on `mid` that someone needs.
    PublishLayers {
        mid: String,
        layers: Vec<String>,
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
