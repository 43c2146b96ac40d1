//! The media node's own Prometheus metrics: what it registers at start, in one place.
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::sfu;

pub struct Metrics {
    pub participants: IntGauge,
    pub meetings: IntGauge,
    pub draining: IntGauge,
    pub capacity_participants: IntGauge,
    pub tokens_refused: IntCounterVec,
    pub driver: sfu::driver::DriverMetrics,
    pub relay_packets_out: IntCounter,
    pub relay_dropped: IntCounter,
    pub relay_sink_layer_packets: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new(r: &Registry, capacity: u32) -> Self {
        let m = Self {
            participants: IntGauge::new("fjord_media_participants", "Connected participants")
                .expect("metric"),
            meetings: IntGauge::new("fjord_media_meetings", "Meetings hosted").expect("metric"),
            relay_packets_out: IntCounter::new(
                "fjord_relay_packets_sent_total",
                "RTP packets sent to relay peers (recording nodes) as QUIC datagrams",
            )
            .expect("metric"),
            relay_sink_layer_packets: IntCounterVec::new(
                prometheus::Opts::new(
                    "fjord_relay_sink_simulcast_packets_total",
                    "Simulcast video packets sent to recording nodes, by layer (l, m, h): a \
                     recording takes the layer that fits each participant's tile",
                ),
                &["layer"],
            )
            .expect("metric"),
            relay_dropped: IntCounter::new(
                "fjord_relay_packets_dropped_total",
                "RTP packets for relay peers dropped because the link could not take them",
            )
            .expect("metric"),
            draining: IntGauge::new("fjord_node_draining", "1 while the node drains")
                .expect("metric"),
            capacity_participants: IntGauge::new(
                "fjord_node_capacity_participants",
                "Participant capacity",
            )
            .expect("metric"),
            tokens_refused: IntCounterVec::new(
                Opts::new(
                    "fjord_media_tokens_refused_total",
                    "Join tokens refused, by reason",
                ),
                &["reason"],
            )
            .expect("metric"),
            driver: sfu::driver::DriverMetrics {
                datagrams_in: IntCounter::new(
                    "fjord_media_packets_in_total",
                    "UDP datagrams received",
                )
                .expect("metric"),
                datagrams_out: IntCounter::new(
                    "fjord_media_packets_out_total",
                    "UDP datagrams sent",
                )
                .expect("metric"),
                gso_datagrams_out: IntCounter::new(
                    "fjord_media_gso_packets_out_total",
                    "UDP datagrams sent in GSO sends (runs of equal-size datagrams to one peer), of fjord_media_packets_out_total",
                )
                .expect("metric"),
                bytes_in: IntCounter::new("fjord_media_bytes_in_total", "UDP bytes received")
                    .expect("metric"),
                bytes_out: IntCounter::new("fjord_media_bytes_out_total", "UDP bytes sent")
                    .expect("metric"),
                unknown_datagrams: IntCounter::new(
                    "fjord_media_unknown_datagrams_total",
                    "UDP datagrams that belonged to no peer (garbage, late or spoofed)",
                )
                .expect("metric"),
                dropped_datagrams: IntCounter::new(
                    "fjord_media_dropped_datagrams_total",
                    "UDP datagrams dropped because their SFU shard was too busy to take them",
                )
                .expect("metric"),
                nacks_received: IntCounter::new(
                    "fjord_media_nacks_received_total",
                    "NACKs from subscribers (we retransmit)",
                )
                .expect("metric"),
                nacks_sent: IntCounter::new(
                    "fjord_media_nacks_sent_total",
                    "NACKs sent to publishers",
                )
                .expect("metric"),
                plis_received: IntCounter::new(
                    "fjord_media_plis_received_total",
                    "PLIs from subscribers",
                )
                .expect("metric"),
                firs_received: IntCounter::new(
                    "fjord_media_firs_received_total",
                    "FIRs from subscribers",
                )
                .expect("metric"),
                resends_dropped: IntCounter::new(
                    "fjord_media_resends_dropped_total",
                    "Resends that subscribers' NACKs asked for, dropped because a stream's resends passed half of its bytes",
                )
                .expect("metric"),
                tracks: IntGauge::new("fjord_media_tracks", "Published tracks").expect("metric"),
                bitrate_in: IntGauge::new("fjord_media_bitrate_in_bps", "Media bitrate received")
                    .expect("metric"),
                bitrate_out: IntGauge::new("fjord_media_bitrate_out_bps", "Media bitrate sent")
                    .expect("metric"),
                estimate: IntGauge::new(
                    "fjord_media_bandwidth_estimate_bps",
                    "Sum of the subscribers' bandwidth estimates (TWCC), which cap their simulcast layers",
                )
                .expect("metric"),
                rtt: prometheus::Gauge::new(
                    "fjord_media_rtt_seconds",
                    "Mean round-trip time to peers",
                )
                .expect("metric"),
                loss: prometheus::Gauge::new(
                    "fjord_media_egress_loss_ratio",
                    "Mean fraction of sent packets peers report lost",
                )
                .expect("metric"),
                hop_latency: prometheus::Histogram::with_opts(
                    prometheus::HistogramOpts::new(
                        "fjord_relay_hop_latency_seconds",
                        "Time from a packet's arrival at its publisher's media node to its shard here taking it (one relay hop)",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("metric"),
                forward_latency: prometheus::Histogram::with_opts(
                    prometheus::HistogramOpts::new(
                        "fjord_media_forward_latency_seconds",
                        "Time from a datagram's arrival at this node to the end of the drain that sent its copies to subscribers (pacer delay excluded)",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("metric"),
            },
        };
        m.capacity_participants.set(i64::from(capacity));
        for c in [
            Box::new(m.participants.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.meetings.clone()),
            Box::new(m.relay_packets_out.clone()),
            Box::new(m.relay_dropped.clone()),
            Box::new(m.relay_sink_layer_packets.clone()),
            Box::new(m.draining.clone()),
            Box::new(m.capacity_participants.clone()),
            Box::new(m.tokens_refused.clone()),
            Box::new(m.driver.datagrams_in.clone()),
            Box::new(m.driver.datagrams_out.clone()),
            Box::new(m.driver.gso_datagrams_out.clone()),
            Box::new(m.driver.bytes_in.clone()),
            Box::new(m.driver.bytes_out.clone()),
            Box::new(m.driver.unknown_datagrams.clone()),
            Box::new(m.driver.dropped_datagrams.clone()),
            Box::new(m.driver.nacks_received.clone()),
            Box::new(m.driver.nacks_sent.clone()),
            Box::new(m.driver.plis_received.clone()),
            Box::new(m.driver.firs_received.clone()),
            Box::new(m.driver.resends_dropped.clone()),
            Box::new(m.driver.tracks.clone()),
            Box::new(m.driver.bitrate_in.clone()),
            Box::new(m.driver.bitrate_out.clone()),
            Box::new(m.driver.estimate.clone()),
            Box::new(m.driver.rtt.clone()),
            Box::new(m.driver.loss.clone()),
            Box::new(m.driver.hop_latency.clone()),
            Box::new(m.driver.forward_latency.clone()),
        ] {
            r.register(c).expect("register");
        }
        m
    }
}

/// Buckets of the latency histograms, in seconds: fine below a few milliseconds, where
/// a node's own work and one relay hop fall.
const LATENCY_BUCKETS: [f64; 15] = [
    0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.005, 0.01, 0.02,
    0.05, 0.1, 0.25,
];
