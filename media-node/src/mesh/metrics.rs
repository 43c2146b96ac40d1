//! The mesh's Prometheus series: relay links to other media nodes, their traffic and
//! the connections under them.
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Prometheus series of the relay links between media nodes.
#[derive(Clone)]
pub struct MeshMetrics {
    /// Meeting links up, by peer node.
    pub links: IntGaugeVec,
    /// Datagrams and bytes by peer node and direction (`in`, `out`).
    pub packets: IntCounterVec,
    pub bytes: IntCounterVec,
    /// RTP packets over relay links dropped, by reason: `link_full` going out (the
    /// connection could not take the datagram: its buffers were full), `queue_full`
    /// coming in (the SFU shard's queue of link packets was full).
    pub dropped: IntCounterVec,
    /// `dropped{reason="link_full"}`.
    pub dropped_out: IntCounter,
    /// `dropped{reason="queue_full"}`.
    pub dropped_in: IntCounter,
    pub rtt: prometheus::GaugeVec,
    /// QUIC packets the connection to a peer lost.
    pub lost: IntCounterVec,
    /// Tracks of participants on other nodes that this node receives.
    pub remote_tracks: IntGauge,
}

impl MeshMetrics {
    pub fn new(r: &Registry) -> Self {
        let dropped = IntCounterVec::new(
            Opts::new(
                "fjord_relay_link_dropped_total",
                "RTP packets over relay links to other media nodes dropped, by reason: link_full (going out, the link could not take them), queue_full (coming in, the SFU's queue of link packets was full)",
            ),
            &["reason"],
        )
        .expect("metric");
        let m = Self {
            links: IntGaugeVec::new(
                Opts::new(
                    "fjord_relay_links",
                    "Relay links to other media nodes that are up, one per meeting in common",
                ),
                &["peer"],
            )
            .expect("metric"),
            packets: IntCounterVec::new(
                Opts::new(
                    "fjord_relay_link_packets_total",
                    "RTP packets over relay links to other media nodes",
                ),
                &["peer", "direction"],
            )
            .expect("metric"),
            bytes: IntCounterVec::new(
                Opts::new(
                    "fjord_relay_link_bytes_total",
                    "Datagram bytes over relay links to other media nodes",
                ),
                &["peer", "direction"],
            )
            .expect("metric"),
            // Both series exist from the start, at 0.
            dropped_out: dropped.with_label_values(&["link_full"]),
            dropped_in: dropped.with_label_values(&["queue_full"]),
            dropped,
            rtt: prometheus::GaugeVec::new(
                Opts::new(
                    "fjord_relay_link_rtt_seconds",
                    "Round-trip time of the relay connection to a media node",
                ),
                &["peer"],
            )
            .expect("metric"),
            lost: IntCounterVec::new(
                Opts::new(
                    "fjord_relay_link_lost_packets_total",
                    "QUIC packets lost on the relay connection to a media node",
                ),
                &["peer"],
            )
            .expect("metric"),
            remote_tracks: IntGauge::new(
                "fjord_relay_remote_tracks",
                "Tracks of participants on other media nodes received here",
            )
            .expect("metric"),
        };
        for c in [
            Box::new(m.links.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.packets.clone()),
            Box::new(m.bytes.clone()),
            Box::new(m.dropped.clone()),
            Box::new(m.rtt.clone()),
            Box::new(m.lost.clone()),
            Box::new(m.remote_tracks.clone()),
        ] {
            r.register(c).expect("register");
        }
        m
    }
}
