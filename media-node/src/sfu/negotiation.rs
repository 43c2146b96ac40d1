//! SDP negotiation with each peer: the first offer (which admits a waiting session),
//! renegotiations either way, and our offers when tracks come or go.
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, IceCreds, Rtc};

use super::api::{PeerKey, SfuOutput, SignalOut};
use super::codec::with_video_codecs;
use super::core::Sfu;
use super::peer::{OutState, Peer};
use super::simulcast::{INITIAL_ESTIMATE_KBPS, PACING_FACTOR};
use super::slots::slot_stream;

/// Packets each video stream we send keeps for resends (NACK) and probing: about a
/// second of a camera's top layer, two of its middle one. str0m's default (1,000) kept
/// five to ten seconds per stream, most of a receiver's memory once it has nine.
pub(super) const SEND_BUFFER_VIDEO: usize = 300;
/// How long a packet we sent stays resendable. A NACK comes a round trip after the loss;
/// a second covers any path a meeting works on. str0m keeps three, which with nine video
/// slots and three audio ones was most of a receiver's memory (its resend rings and
/// their payloads: 0.45 of 1 MB per participant at 100).
pub(super) const RESEND_WINDOW: Duration = Duration::from_secs(1);
/// Audio packets a send stream keeps for resends: a second of Opus at 20 ms (str0m's
/// default too).
const RESEND_AUDIO: usize = 50;
/// The share of a stream's bytes in the last second resends may take before str0m drops
/// the queued ones: half, where str0m's default is 0.15. With str0m patch 13 each lost
/// packet is resent once per round trip, but at 10 % loss the resends of a low-bitrate
/// stream's keyframe still passed 0.15, and a page stopped decoding for seconds
/// (`browser::with_ten_percent_loss_…`). At 0.5 a receiver can at most double what a
/// stream sends it.
const RESEND_RATIO_CAP: Option<f32> = Some(0.5);

/// str0m's SDP parse error on one line, without the parser's memory address.
pub(super) fn sdp_error(e: &impl std::fmt::Display) -> String {
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

impl Sfu {
    /// The first offer of waiting session `w`: its peer connection, or an error that
    /// leaves it waiting for another offer.
    pub(super) fn first_offer(&mut self, now: Instant, w: usize, sdp: String) {
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
            .set_pacing_factor(PACING_FACTOR)
            .set_send_buffer_video(SEND_BUFFER_VIDEO)
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
        let group = self.group_of(&w.meeting, &w.participant);
        // A client that declared no view (another WebRTC stack, a bot) gets the default
        // one: its slots come in one offer after this answer, as a declared view's do.
        let view = w.view.unwrap_or_else(signaling::View::default_for_client);
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
            jitter_ms: None,
            bytes: None,
            bitrate_in_bps: 0,
            bitrate_out_bps: 0,
            stream_counters: Vec::new(),
            estimate_bps: None,
            twcc: false,
            clock: now,
            muted: w.muted,
            group,
            view: view.clone(),
            slots_changed: false,
            told_layers: Vec::new(),
        };
        // One offer of its slots, which the SFU fills (no estimate yet to cap a layer).
        peer.fit_slots(&view, None);
        self.slots_dirty = true;
        self.peers.push(peer);
        self.signal(key, SignalOut::Answer(answer.to_sdp_string()));
    }

    pub(super) fn renegotiate(&mut self, now: Instant, key: PeerKey, sdp: String) {
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

    pub(super) fn answer(&mut self, now: Instant, key: PeerKey, sdp: String) {
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
                        // The m-line's send stream is new: its resend ring keeps a
                        // second (set now, before it holds anything to lose).
                        let packets = match t.kind {
                            MediaKind::Audio => RESEND_AUDIO,
                            MediaKind::Video => SEND_BUFFER_VIDEO,
                        };
                        if let Some(tx) = peer.rtc.direct_api().stream_tx_by_mid(m, None) {
                            tx.set_rtx_cache(packets, RESEND_WINDOW, RESEND_RATIO_CAP);
                        }
                    }
                }
                // Its slots' mids are known now: tell it what they carry.
                peer.slots_changed = true;
                // Tracks added meanwhile are offered now.
                peer.dirty = true;
                let started = peer.refresh_directions();
                self.wants_changed = true;
                self.tell_slots = true;
                // A new subscriber needs a keyframe to start decoding.
                self.keyframes_for(now, started);
            }
            Err(e) => self.refuse(key, "answer", format!("answer not accepted: {e}")),
        }
    }

    /// Offers peer `i` the slots it does not have yet; called only while no offer of ours
    /// is pending.
    pub(super) fn negotiate(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        peer.needs_offer = false;
        let mut change = peer.rtc.sdp_api();
        let mut slot_index = [0usize; 3];
        for t in &mut peer.tracks_out {
            let n = &mut slot_index[t.slot as usize];
            if t.state == OutState::ToOpen {
                let stream = slot_stream(t.slot, *n);
                let mid = change.add_media(t.kind, Direction::SendOnly, Some(stream), None, None);
                t.state = OutState::Negotiating(mid);
            }
            *n += 1;
        }
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        peer.pending = Some(pending);
        let key = peer.key;
        self.out.push_back(SfuOutput::Signal {
            key,
            msg: SignalOut::Offer(offer.to_sdp_string()),
        });
    }
}
