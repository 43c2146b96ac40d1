//! What the SFU counts: `SfuStats` (packets, bytes, peers, keyframe requests, NACKs),
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

/// A media stream of a peer: (mid, simulcast layer, egress?).
pub(super) type StreamKey = (Mid, Option<Rid>, bool);

/// (NACKs, PLIs, FIRs) as str0m counts them, cumulatively.
pub(super) type Counters = (u64, u64, u64);

/// Turns str0m's cumulative per-stream counters into increments since the last report.
pub(super) fn counter_delta(
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
