//! A peer's state: one str0m `Rtc` and the tracks it publishes (`TrackIn`) and
//! receives (`TrackOut`), its mute and its breakout room; and a session still waiting
//! for its first offer to be accepted.
use std::time::{Duration, Instant};

use common::ids::{MeetingId, ParticipantId};
use str0m::Rtc;
use str0m::change::SdpPendingOffer;
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt, Rid};
use str0m::rtp::Ssrc;

use super::api::{PeerKey, Source};
use super::rtp;
use super::simulcast::AUDIO_BPS;
use super::stats::{Counters, StreamKey};

pub(super) struct TrackIn {
    pub(super) mid: Mid,
    pub(super) kind: MediaKind,
    /// The incoming SSRCs of this track and the simulcast layer each carries.
    pub(super) streams: Vec<(Ssrc, Option<Rid>)>,
    /// The payload type last seen on this track and what it stands for.
    pub(super) codec: Option<PayloadParams>,
    /// When we last asked for a keyframe, per simulcast layer (None: no simulcast).
    pub(super) last_keyframe_request: Vec<(Option<Rid>, Instant)>,
    /// Smoothed mean loudness of recent check windows (127 + dBov; 0 is silence).
    pub(super) loudness: f32,
    /// Sum and count of loudness samples in the current window.
    pub(super) window: (f32, u32),
    /// When it came, among the SFU's tracks: the gallery's stable order.
    pub(super) order: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
}

/// Which receive slot an m-line of ours is (see `slots.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlotKind {
    /// One of the loudest speakers.
    Audio,
    /// A tile of the receiver's view.
    Video,
    /// The screen share.
    Screen,
}

pub(super) struct TrackOut {
    /// What it carries now: a per-track m-line always the same source; a slot whoever
    /// the SFU chose (None: nothing yet, or nobody any more).
    pub(super) source: Option<Source>,
    /// A slot only: the source it moves to on that source's next keyframe (audio: its
    /// next packet). Until then the current source goes on.
    pub(super) next: Option<Source>,
    /// Since when the slot waits for `next`'s keyframe of the layer it wants: after
    /// [`rtp::LAYER_STALE`] a keyframe of any layer will do (the publisher may not be
    /// sending that one).
    pub(super) next_since: Option<Instant>,
    /// The slot it is (every m-line of ours is a receive slot).
    pub(super) slot: SlotKind,
    pub(super) kind: MediaKind,
    pub(super) state: OutState,
    /// Whether the subscriber receives on this m-line: the negotiated direction of our
    /// m-line sends. Nothing is written to an m-line it answered `inactive`.
    pub(super) receiving: bool,
    /// Our SSRC on this m-line, once open.
    pub(super) ssrc: Option<Ssrc>,
    /// The publisher's payload type and the subscriber's for the same codec.
    pub(super) pt: Option<(Pt, Pt)>,
    /// Renumbers the publisher's packets into this subscriber's stream.
    pub(super) forwarder: rtp::Forwarder,
    /// The layer this subscriber should get: what it asked for, capped by its bandwidth
    /// estimate. We switch to it on its next keyframe.
    pub(super) want: Rid,
    /// The layer the subscriber asked for by tile size.
    pub(super) asked: Rid,
}

impl TrackOut {
    /// An empty receive slot.
    pub(super) fn slot(slot: SlotKind, kind: MediaKind) -> Self {
        Self {
            source: None,
            next: None,
            next_since: None,
            slot,
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

    /// Whether packets of `source` concern it: it carries them, or moves to them.
    pub(super) fn carries(&self, source: Source) -> bool {
        self.source == Some(source) || self.next == Some(source)
    }

    /// The source it carries once a switch under way is done.
    pub(super) fn target(&self) -> Option<Source> {
        self.next.or(self.source)
    }
}

pub(super) struct Peer {
    pub(super) key: PeerKey,
    pub(super) meeting: MeetingId,
    pub(super) participant: ParticipantId,
    pub(super) name: String,
    pub(super) rtc: Rtc,
    pub(super) tracks_in: Vec<TrackIn>,
    pub(super) tracks_out: Vec<TrackOut>,
    pub(super) pending: Option<SdpPendingOffer>,
    /// Slots to offer: an offer is due once none is pending.
    pub(super) needs_offer: bool,
    /// Got input, was written to, or must be looked at: drive it before the next
    /// `Timeout` leaves the SFU.
    pub(super) dirty: bool,
    /// When its `Rtc` wants its timeout handled.
    pub(super) due: Instant,
    pub(super) rtt: Option<Duration>,
    pub(super) egress_loss: Option<f32>,
    /// Interarrival jitter of its audio, as we last reported it to the peer.
    pub(super) jitter_ms: Option<f32>,
    /// Last (bytes received, bytes sent, when) and the rates derived from them.
    pub(super) bytes: Option<(u64, u64, Instant)>,
    pub(super) bitrate_in_bps: u64,
    pub(super) bitrate_out_bps: u64,
    /// Last cumulative per-stream counters str0m reported: (mid, rid, egress?) -> (nacks, plis, firs).
    pub(super) stream_counters: Vec<(StreamKey, Counters)>,
    /// The latest egress bandwidth estimate for this peer, bit/s: TWCC's, or, for a peer
    /// that sends no transport-wide feedback, the REMB it sends (none of either: no cap).
    pub(super) estimate_bps: Option<u64>,
    /// Its transport-wide feedback drives an estimate (TWCC events came): REMB is then
    /// not used.
    pub(super) twcc: bool,
    /// The latest time handed to its `Rtc` by a drive, which may run a little ahead of
    /// the drive's `now` (`drive.rs`, `PACER_GATE`): the next drive starts from it.
    pub(super) clock: Instant,
    pub(super) muted: Muted,
    /// Its breakout room (0: the main room): it gets and gives media in that room only.
    pub(super) group: u32,
    /// What it shows (`view`; a client that declared none gets
    /// [`signaling::View::default_for_client`]): it receives on slots, which the SFU
    /// fills.
    pub(super) view: signaling::View,
    /// A slot changed what it carries: the client is to be told (`slots`).
    pub(super) slots_changed: bool,
    /// The layers of each of its simulcast tracks that someone needs, as last told
    /// (`publish_layers`): (mid, layer bits).
    pub(super) told_layers: Vec<(Mid, u8)>,
}

impl Peer {
    /// What each video track we send this peer may use: its estimate minus audio,
    /// shared by its video tracks. None while there is no estimate or no video.
    pub(super) fn video_budget_bps(&self) -> Option<u64> {
        let estimate = self.estimate_bps?;
        let open = |k: MediaKind| {
            self.tracks_out
                .iter()
                .filter(|t| {
                    t.kind == k && t.target().is_some() && matches!(t.state, OutState::Open(_))
                })
                .count() as u64
        };
        let video = open(MediaKind::Video);
        (video > 0).then(|| estimate.saturating_sub(open(MediaKind::Audio) * AUDIO_BPS) / video)
    }

    pub(super) fn want_offer(&mut self) {
        self.needs_offer = true;
        self.dirty = true;
    }

    /// After a negotiation: which of our open m-lines the peer receives on, and our
    /// SSRC on each. Returns the tracks that started receiving (they need a keyframe).
    pub(super) fn refresh_directions(&mut self) -> Vec<Source> {
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
                started.extend(t.target());
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

/// A signaling session whose first offer has not been accepted yet.
pub(super) struct Waiting {
    pub(super) key: PeerKey,
    pub(super) meeting: MeetingId,
    pub(super) participant: ParticipantId,
    pub(super) name: String,
    pub(super) muted: Muted,
    /// The view it declared before its first offer.
    pub(super) view: Option<signaling::View>,
}

/// What of a peer's own media is dropped on arrival: the kinds it is muted in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Muted {
    pub(super) audio: bool,
    pub(super) video: bool,
}

impl Muted {
    pub(super) fn drops(self, video: bool) -> bool {
        if video { self.video } else { self.audio }
    }
}
