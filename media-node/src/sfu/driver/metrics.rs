//! What the driver counts for `/metrics`: per-packet tallies added to the shared
//! counters once a second, counters from the shards' stats, and the gauges.
use crate::sfu::SfuStats;

/// Counters the driver keeps for `/metrics`.
#[derive(Clone)]
pub struct DriverMetrics {
    pub datagrams_in: prometheus::IntCounter,
    pub datagrams_out: prometheus::IntCounter,
    /// Of `datagrams_out`, those that went in UDP GSO sends.
    pub gso_datagrams_out: prometheus::IntCounter,
    pub bytes_in: prometheus::IntCounter,
    pub bytes_out: prometheus::IntCounter,
    pub unknown_datagrams: prometheus::IntCounter,
    pub dropped_datagrams: prometheus::IntCounter,
    pub nacks_received: prometheus::IntCounter,
    pub nacks_sent: prometheus::IntCounter,
    pub plis_received: prometheus::IntCounter,
    pub firs_received: prometheus::IntCounter,
    pub resends_dropped: prometheus::IntCounter,
    pub tracks: prometheus::IntGauge,
    pub bitrate_in: prometheus::IntGauge,
    pub bitrate_out: prometheus::IntGauge,
    pub estimate: prometheus::IntGauge,
    pub rtt: prometheus::Gauge,
    pub loss: prometheus::Gauge,
    /// From a packet's arrival at its publisher's node to its copies being written to
    /// our subscribers, for packets of participants on other nodes.
    pub hop_latency: prometheus::Histogram,
    /// From a datagram's arrival (read from the socket) to the end of the drain that sent
    /// what it caused: its copies to every subscriber that the pacer lets go at once.
    pub forward_latency: prometheus::Histogram,
}

/// Per-packet counts kept locally by a task and added to the shared counters once a
/// second, so that tasks do not contend on them per packet.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) unknown: u64,
    pub(super) dropped: u64,
}

impl Tally {
    pub(super) fn flush_in(&mut self, m: &DriverMetrics) {
        let t = std::mem::take(self);
        m.datagrams_in.inc_by(t.packets);
        m.bytes_in.inc_by(t.bytes);
        m.unknown_datagrams.inc_by(t.unknown);
        m.dropped_datagrams.inc_by(t.dropped);
    }

    pub(super) fn flush_out(&mut self, m: &DriverMetrics) {
        let t = std::mem::take(self);
        m.datagrams_out.inc_by(t.packets);
        m.bytes_out.inc_by(t.bytes);
        m.unknown_datagrams.inc_by(t.unknown);
    }
}

pub(super) fn update_metrics(m: &DriverMetrics, prev: &SfuStats, now: &SfuStats) {
    m.nacks_received
        .inc_by(now.nacks_received.saturating_sub(prev.nacks_received));
    m.nacks_sent
        .inc_by(now.nacks_sent.saturating_sub(prev.nacks_sent));
    m.plis_received
        .inc_by(now.plis_received.saturating_sub(prev.plis_received));
    m.firs_received
        .inc_by(now.firs_received.saturating_sub(prev.firs_received));
    m.resends_dropped
        .inc_by(now.resends_dropped.saturating_sub(prev.resends_dropped));
}

/// Gauges are totals over shards: set from the handle's merged stats.
pub fn set_gauges(m: &DriverMetrics, s: &SfuStats) {
    m.tracks.set(i64::from(s.tracks_in));
    m.bitrate_in.set(s.bitrate_in_bps as i64);
    m.bitrate_out.set(s.bitrate_out_bps as i64);
    m.estimate.set(s.estimate_bps as i64);
    m.rtt.set(s.rtt_seconds);
    m.loss.set(s.egress_loss);
}
