//! The gateway's metrics (`/metrics`, every one labelled with the gateway's node and
//! region): calls by their final answer, calls in progress and how many are transcoded,
//! call setup time, and the callers' RTP: packets each way, packets lost on the way in,
//! and each call's interarrival jitter (RFC 3550) when it ends.
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub calls: IntCounterVec,
    pub active: IntGaugeVec,
    pub setup_seconds: Histogram,
    pub rtp_packets: IntCounterVec,
    pub rtp_lost: IntCounter,
    pub jitter_seconds: Histogram,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Self {
        let m = Self {
            calls: IntCounterVec::new(
                Opts::new("fjord_sip_calls_total", "Calls by the gateway's final answer (SIP status code)"),
                &["code"],
            )
            .expect("metric"),
            active: IntGaugeVec::new(
                Opts::new("fjord_sip_calls_active", "Calls in progress, by codec (opus is passed through; pcmu, pcma are transcoded)"),
                &["codec"],
            )
            .expect("metric"),
            setup_seconds: Histogram::with_opts(
                HistogramOpts::new("fjord_sip_call_setup_seconds", "From INVITE to the call answered in the meeting")
                    .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 15.0]),
            )
            .expect("metric"),
            rtp_packets: IntCounterVec::new(
                Opts::new("fjord_sip_rtp_packets_total", "Callers' RTP packets, from_caller or to_caller"),
                &["direction"],
            )
            .expect("metric"),
            rtp_lost: IntCounter::new(
                "fjord_sip_rtp_lost_packets_total",
                "Packets of callers' audio that never arrived (sequence gaps)",
            )
            .expect("metric"),
            jitter_seconds: Histogram::with_opts(
                HistogramOpts::new("fjord_sip_rtp_jitter_seconds", "Each call's interarrival jitter of the caller's audio at its end")
                    .buckets(vec![0.001, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1]),
            )
            .expect("metric"),
        };
        registry
            .register(Box::new(m.calls.clone()))
            .expect("register");
        registry
            .register(Box::new(m.active.clone()))
            .expect("register");
        registry
            .register(Box::new(m.setup_seconds.clone()))
            .expect("register");
        registry
            .register(Box::new(m.rtp_packets.clone()))
            .expect("register");
        registry
            .register(Box::new(m.rtp_lost.clone()))
            .expect("register");
        registry
            .register(Box::new(m.jitter_seconds.clone()))
            .expect("register");
        m
    }
}
