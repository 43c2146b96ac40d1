//! `Sfu`: the one state of the SFU, its constructor and settings, and the command entry
//! point, which hands each command to the concern that handles it. The concerns are
//! `impl Sfu` blocks in sibling modules (see `sfu/mod.rs`); datagrams, timeouts and the
//! drive loop are `drive`'s.
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ids::{MeetingId, ParticipantId};

use super::api::{PeerKey, SfuCommand, SfuOutput, SignalOut};
use super::forward::WallClock;
use super::negotiation::sdp_error;
use super::peer::{Peer, Waiting};
use super::relays::{Link, RemoteTrack, Sink};
use super::stats::SfuStats;

pub struct Sfu {
    pub(super) local: SocketAddr,
    /// Whether a subscriber's bandwidth estimate caps its simulcast layer.
    pub(super) bandwidth_cap: bool,
    /// Which shard of the node this is: the first two hex digits of every local ICE ufrag.
    pub(super) shard: u8,
    pub(super) waiting: Vec<Waiting>,
    pub(super) peers: Vec<Peer>,
    /// Per meeting with breakout rooms open: each moved participant's room.
    pub(super) groups: HashMap<MeetingId, HashMap<ParticipantId, u32>>,
    /// Which peer (index in `peers`) a source address's datagrams go to: learned when a
    /// peer's `Rtc` first accepts one (its STUN binding request), so that a datagram
    /// costs one lookup instead of a scan of the shard's peers. Checked with `accepts`
    /// on use, forgotten with the peer.
    pub(super) by_addr: HashMap<SocketAddr, usize>,
    pub(super) out: VecDeque<SfuOutput>,
    pub(super) keyframe_every: Duration,
    pub(super) stats: SfuStats,
    pub(super) next_speaker_check: Option<Instant>,
    pub(super) speakers: Vec<(MeetingId, ParticipantId)>,
    pub(super) sinks: Vec<Sink>,
    pub(super) remotes: Vec<RemoteTrack>,
    pub(super) links: Vec<Link>,
    /// Something changed what local subscribers need of remote tracks.
    pub(super) wants_changed: bool,
    /// The time each remote packet took from its publisher's node to being forwarded
    /// here (the relay hop), in seconds, until the driver takes them
    /// ([`Sfu::take_hop_latency`]); at most [`HOP_SAMPLES`] (room made once).
    pub(super) hop_latency: Vec<f64>,
    /// Something changed who publishes, speaks or is wanted: slots are to be filled
    /// again (`slots::allocate`).
    pub(super) slots_dirty: bool,
    /// A receiver's slots changed what they carry: it is to be told.
    pub(super) tell_slots: bool,
    /// Every source some slot carries or moves to, with the peers whose slots do (index
    /// into `peers`, ascending, and key: a peer that left since is skipped), rebuilt
    /// whenever slots are filled, which every change of who receives what leads to. A
    /// packet goes to those peers only, without a look at every subscriber; a packet of
    /// a source not here goes to sinks and links only.
    pub(super) routes: HashMap<super::api::Source, Vec<(usize, PeerKey)>>,
    /// Per meeting, who spoke last, the latest first.
    pub(super) recent_speakers: Vec<(MeetingId, Vec<ParticipantId>)>,
    /// The last stable order handed to a track (`slots::next_order`).
    pub(super) track_order: u64,
    /// The wall clock as last told ([`Sfu::set_wall_clock`]); until then, Unix times
    /// are 0 (unknown).
    pub(super) wall: Option<WallClock>,
}

/// Hop latency samples kept between two takes; more are not recorded.
pub const HOP_SAMPLES: usize = 4096;

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
            groups: HashMap::new(),
            by_addr: HashMap::new(),
            out: VecDeque::new(),
            keyframe_every: Duration::from_millis(500),
            stats: SfuStats::default(),
            next_speaker_check: None,
            speakers: Vec::new(),
            sinks: Vec::new(),
            remotes: Vec::new(),
            links: Vec::new(),
            wants_changed: false,
            hop_latency: Vec::with_capacity(HOP_SAMPLES),
            wall: None,
            slots_dirty: false,
            tell_slots: false,
            recent_speakers: Vec::new(),
            routes: HashMap::new(),
            track_order: 0,
        }
    }

    /// The wall clock: the Unix time (µs) at instant `at`. The driver tells it now and
    /// then; the core reads no clock of its own.
    pub fn set_wall_clock(&mut self, at: Instant, unix_us: u64) {
        self.wall = Some(WallClock { at, unix_us });
    }

    /// How long remote packets took from their arrival at the publisher's node until
    /// they were forwarded here (the relay hop), in seconds, since the last take.
    pub fn take_hop_latency(&mut self) -> std::vec::Drain<'_, f64> {
        self.hop_latency.drain(..)
    }

    /// Off: subscribers get the layer their tile asks for, whatever their estimate.
    pub fn set_bandwidth_cap(&mut self, on: bool) {
        self.bandwidth_cap = on;
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub(super) fn peer_mut(&mut self, key: PeerKey) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.key == key)
    }

    pub(super) fn signal(&mut self, key: PeerKey, msg: SignalOut) {
        self.out.push_back(SfuOutput::Signal { key, msg });
    }

    pub(super) fn refuse(&mut self, key: PeerKey, answers: &'static str, message: String) {
        self.signal(key, SignalOut::Error { answers, message });
    }

    /// The parsed SDP of the client's `answers` message (`offer`, `answer`), or None
    /// after refusing it.
    pub(super) fn parsed<T, E: std::fmt::Display>(
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

    // Never inlined in the rig: scripts/forward-cost.sh counts inside it.
    #[cfg_attr(feature = "rig", inline(never))]
    pub fn handle_command(&mut self, now: Instant, cmd: SfuCommand) {
        match cmd {
            SfuCommand::Join {
                key,
                meeting,
                participant,
                name,
            } => self.join(key, meeting, participant, name),
            SfuCommand::Offer { key, sdp } => {
                match self.waiting.iter().position(|w| w.key == key) {
                    Some(w) => self.first_offer(now, w, sdp),
                    None => self.renegotiate(now, key, sdp),
                }
            }
            SfuCommand::Answer { key, sdp } => self.answer(now, key, sdp),
            SfuCommand::Layer { key, mid, rid } => self.set_layer(now, key, mid, rid),
            SfuCommand::Leave { key } => self.leave(key),
            SfuCommand::View { key, view } => self.set_view(now, key, view),
            SfuCommand::Groups { meeting, groups } => self.set_groups(now, meeting, groups),
            SfuCommand::Mute { key, audio, video } => self.mute(now, key, audio, video),
            SfuCommand::SinkAttach { key, meeting } => self.attach_sink(key, meeting),
            SfuCommand::SinkDetach { key } => self.detach_sink(key),
            SfuCommand::LinkAttach { link, meeting } => self.attach_link(link, meeting),
            SfuCommand::LinkSubscribe {
                link,
                track_id,
                mask,
            } => self.link_subscribe(now, link, track_id, mask),
            SfuCommand::LinkKeyframe {
                link,
                track_id,
                layer,
            } => self.link_keyframe(now, link, track_id, layer),
            SfuCommand::SinkKeyframe { key, track_id } => self.sink_keyframe(now, key, track_id),
            SfuCommand::SinkLayer { key, track_id, rid } => {
                self.sink_layer(now, key, track_id, rid)
            }
            SfuCommand::RemoteTrack(track) => self.add_remote_track(track),
            SfuCommand::RemoteTrackEnded { link, track_id } => {
                self.end_remote_track(link, track_id)
            }
            SfuCommand::LinkDown { link } => self.link_down(link),
            SfuCommand::RemotePacket {
                link,
                track_id,
                layer,
                rtp,
            } => self.remote_packet(now, link, track_id, layer, &rtp),
        }
    }
}
