//! The entry points for datagrams and timeouts, and the drive loop: every peer that got
//! input or was written to is polled until its `Rtc` has nothing more to say, its events
//! handled as they come (media to `forward`, keyframe requests to `simulcast`, stats),
//! so that a packet's copies leave in the same drain as the packet.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output};

use super::api::{SfuOutput, SignalOut};
use super::core::Sfu;
use super::peer::TrackIn;
use super::speaker::SPEAKER_CHECK;
use super::stats::counter_delta;

/// How often one peer's `Rtc` may ask for its timeout to be handled at once within one
/// drive before we let the driver's timer do it (a guard against a busy loop). Each of
/// str0m's pacer releases takes one (`PACER_GATE`), as do its other due timers.
pub(super) const IMMEDIATE_TIMEOUTS: u32 = 64;

/// str0m's pacer closes a gate after each packet it releases and asks for a timeout 1 µs
/// after its last one, so that time advances between packets. A drive's `now` stands
/// still, so such a timeout is taken at its own time: the peer's clock (`Peer::clock`)
/// runs ahead of `now` by a microsecond per packet, and a drive sends what the pacer's
/// budget allows, not one packet. The next drive starts from the peer's clock (str0m
/// reports no timeout earlier than its own), never more than `MAX_LEAD` ahead of `now`.
/// A `Timeout` older than the peer's clock does nothing in str0m; a `Receive` is
/// handled with its own time.
const PACER_GATE: Duration = Duration::from_micros(1);

/// How far a peer's clock may run ahead of the time the core was given.
const MAX_LEAD: Duration = Duration::from_millis(1);

impl Sfu {
    /// Whether a datagram from `source` belongs to one of our peers. Datagrams may be fed
    /// one after the other before the next drain: a peer that has input not yet driven
    /// is driven first (str0m holds one received RTP packet until it is polled).
    // Never inlined in the rig: scripts/forward-cost.sh counts inside these functions.
    #[cfg_attr(feature = "rig", inline(never))]
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
        let known = self
            .by_addr
            .get(&source)
            .copied()
            .filter(|&i| self.peers.get(i).is_some_and(|p| p.rtc.accepts(&input)));
        let i = match known {
            Some(i) => i,
            None => {
                let Some(i) = self.peers.iter().position(|p| p.rtc.accepts(&input)) else {
                    return false;
                };
                self.by_addr.insert(source, i);
                i
            }
        };
        let i = if self.peers[i].dirty {
            let key = self.peers[i].key;
            self.drive(now, i);
            match self.peers.iter().position(|p| p.key == key) {
                Some(i) => i,
                None => return true,
            }
        } else {
            i
        };
        let peer = &mut self.peers[i];
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::info!(
                meeting_id = %peer.meeting,
                participant_id = %peer.participant,
                error = %e,
                "peer input failed; disconnecting"
            );
            peer.rtc.disconnect();
        }
        peer.dirty = true;
        true
    }

    /// Handles the timeouts that are due.
    // Never inlined in the rig: scripts/forward-cost.sh counts inside these functions.
    #[cfg_attr(feature = "rig", inline(never))]
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
    // Never inlined in the rig: scripts/forward-cost.sh counts inside these functions.
    #[cfg_attr(feature = "rig", inline(never))]
    pub fn poll_output(&mut self, now: Instant) -> SfuOutput {
        let mut check = *self.next_speaker_check.get_or_insert(now + SPEAKER_CHECK);
        loop {
            if let Some(o) = self.out.pop_front() {
                return o;
            }
            if self.drive_dirty(now) {
                continue;
            }
            if std::mem::take(&mut self.slots_dirty) {
                self.allocate(now);
                continue;
            }
            if std::mem::take(&mut self.wants_changed) {
                self.update_remote_layers();
                self.send_publish_layers();
                continue;
            }
            if std::mem::take(&mut self.tell_slots) {
                self.send_slots();
                continue;
            }
            if now >= check {
                check = now + SPEAKER_CHECK;
                self.next_speaker_check = Some(check);
                self.detect_speakers();
                self.adapt_layers(now);
                // Audio slots follow who speaks; keyframe requests made peers dirty:
                // the loop drives them too.
                self.slots_dirty = true;
                continue;
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
    pub(super) fn drive_dirty(&mut self, now: Instant) -> bool {
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
    pub(super) fn drive(&mut self, now: Instant, i: usize) {
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
        // The peer's clock in this drive (`PACER_GATE`).
        let mut clock = now.max(self.peers[i].clock);
        loop {
            let out = match self.peers[i].rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    let p = &self.peers[i];
                    tracing::info!(
                        meeting_id = %p.meeting,
                        participant_id = %p.participant,
                        error = %e,
                        "poll_output failed; disconnecting"
                    );
                    self.peers[i].rtc.disconnect();
                    self.peers[i].dirty = true;
                    return;
                }
            };
            match out {
                // Written packets are only sent after a timeout stamps them, and the
                // pacer releases one per timeout: at once, up to its budget.
                Output::Timeout(t)
                    if t <= clock + PACER_GATE
                        && t <= now + MAX_LEAD
                        && immediate < IMMEDIATE_TIMEOUTS =>
                {
                    immediate += 1;
                    clock = clock.max(t);
                    self.peers[i].clock = clock;
                    if self.peers[i]
                        .rtc
                        .handle_input(Input::Timeout(clock))
                        .is_err()
                    {
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

    pub(super) fn handle_event(&mut self, now: Instant, i: usize, e: Event) {
        match e {
            Event::Connected => {
                let p = &self.peers[i];
                tracing::info!(meeting_id = %p.meeting, participant_id = %p.participant, "media connected");
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                let p = &self.peers[i];
                tracing::info!(meeting_id = %p.meeting, participant_id = %p.participant, "ICE disconnected");
                self.peers[i].rtc.disconnect();
                self.peers[i].dirty = true;
            }
            Event::MediaAdded(m)
                if matches!(m.direction, Direction::RecvOnly | Direction::SendRecv) =>
            {
                let order = super::slots::next_order(&mut self.track_order);
                self.slots_dirty = true;
                self.peers[i].tracks_in.push(TrackIn {
                    mid: m.mid,
                    kind: m.kind,
                    streams: Vec::new(),
                    codec: None,
                    last_keyframe_request: Vec::new(),
                    loudness: 0.0,
                    window: (0.0, 0),
                    order,
                });
            }
            Event::RtpPacket(packet) => {
                if let Some(located) = self.locate(i, &packet)
                    && !self.peers[i].muted.drops(located.packet.video)
                {
                    self.forward(now, i, &located, &packet);
                }
            }
            Event::KeyframeRequest(req) => self.keyframe_from_subscriber(now, i, req),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.peers[i].estimate_bps = Some(estimate.as_u64());
                self.peers[i].twcc = true;
            }
            // A receiver without transport-wide feedback (str0m then sends unpaced):
            // what it says it can take chooses its layers.
            Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) if !self.peers[i].twcc => {
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
                let [n, pl, f, dropped] = counter_delta(
                    &mut p.stream_counters,
                    (st.mid, st.rid, true),
                    [st.nacks, st.plis, st.firs, st.resends_dropped],
                );
                self.stats.nacks_received += n;
                self.stats.plis_received += pl;
                self.stats.firs_received += f;
                self.stats.resends_dropped += dropped;
            }
            Event::MediaIngressStats(st) => {
                let p = &mut self.peers[i];
                // Opus runs at 48 kHz: the jitter in RTP units over 48 is milliseconds.
                if p.tracks_in
                    .iter()
                    .any(|t| t.mid == st.mid && t.kind == MediaKind::Audio)
                {
                    p.jitter_ms = Some(st.jitter as f32 / 48.0);
                }
                let [n, ..] = counter_delta(
                    &mut p.stream_counters,
                    (st.mid, st.rid, false),
                    [st.nacks, st.plis, st.firs, 0],
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
}
