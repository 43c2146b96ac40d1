//! What the SFU counts: `SfuStats` (packets, bytes, peers, keyframe requests, NACKs,
//! resends dropped),
//! merged over shards for the node's metrics, and the per-stream counter deltas.

use str0m::media::{Mid, Rid};

use super::core::Sfu;

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
    /// Resends that subscribers' NACKs asked for and str0m dropped, queued, when a
    /// stream's resends passed their share of its bytes (`negotiation.rs`
    /// `RESEND_RATIO_CAP`).
    pub resends_dropped: u64,
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
            t.resends_dropped += s.resends_dropped;
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

/// A media stream of a peer: (mid, simulcast layer, egress?).
pub(super) type StreamKey = (Mid, Option<Rid>, bool);

/// (NACKs, PLIs, FIRs, resends dropped at the ratio cap) as str0m counts them,
/// cumulatively.
pub(super) type Counters = [u64; 4];

/// Turns str0m's cumulative per-stream counters into increments since the last report.
pub(super) fn counter_delta(
    seen: &mut Vec<(StreamKey, Counters)>,
    key: (Mid, Option<Rid>, bool),
    now: Counters,
) -> Counters {
    let prev = match seen.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => std::mem::replace(v, now),
        None => {
            seen.push((key, now));
            [0; 4]
        }
    };
    std::array::from_fn(|i| now[i].saturating_sub(prev[i]))
}

/// How one peer's connection fares, for the dashboard.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerQuality {
    pub meeting: common::ids::MeetingId,
    pub participant: common::ids::ParticipantId,
    pub rtt_ms: Option<f32>,
    /// Fraction of what we send it that it reports lost.
    pub loss: Option<f32>,
    /// Interarrival jitter of what it sends us (audio).
    pub jitter_ms: Option<f32>,
}

impl Sfu {
    /// Every peer's quality; once a second.
    pub fn quality(&self) -> Vec<PeerQuality> {
        self.peers
            .iter()
            .map(|p| PeerQuality {
                meeting: p.meeting.clone(),
                participant: p.participant.clone(),
                rtt_ms: p.rtt.map(|d| d.as_secs_f32() * 1000.0),
                loss: p.egress_loss,
                jitter_ms: p.jitter_ms,
            })
            .collect()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_deltas_are_increments_per_stream_and_direction() {
        let mut seen = Vec::new();
        let mid = Mid::from("v");
        let egress = (mid, None, true);
        let ingress = (mid, None, false);
        // A stream's first report counts from zero.
        assert_eq!(counter_delta(&mut seen, egress, [3, 1, 0, 7]), [3, 1, 0, 7]);
        assert_eq!(
            counter_delta(&mut seen, ingress, [2, 0, 0, 0]),
            [2, 0, 0, 0]
        );
        // Then what grew since the last report of that stream, each counter apart.
        assert_eq!(
            counter_delta(&mut seen, egress, [5, 1, 1, 10]),
            [2, 0, 1, 3]
        );
        assert_eq!(counter_delta(&mut seen, ingress, [2, 0, 0, 0]), [0; 4]);
        // A counter that went back (str0m recreated the stream) adds nothing.
        assert_eq!(counter_delta(&mut seen, egress, [1, 1, 1, 10]), [0; 4]);
    }
}
