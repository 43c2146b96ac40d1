//! The controller's metrics (DESIGN §10).
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct Metrics {
    pub joins: IntCounterVec,
    pub placements: IntCounterVec,
    pub join_seconds: Histogram,
    pub is_leader: IntGauge,
    pub view_synced: IntGauge,
    pub etcd_errors: IntCounter,
    pub reconciled_placements: IntCounter,
    pub meetings_active: IntGauge,
    pub media_nodes: IntGauge,
    pub recordings_started: IntCounter,
    pub recordings_moved: IntCounter,
    pub recordings_failed: IntCounter,
    /// Registered nodes by `kind`, `cluster_region` and `state` (the leader's census; the
    /// `region` label is the controller's own, so the nodes' region has another name).
    pub cluster_nodes: IntGaugeVec,
    /// Nodes whose registration vanished while they were not draining (lease expired).
    pub nodes_lost: IntCounterVec,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Self {
        let m = Self {
            joins: IntCounterVec::new(
                Opts::new("fjord_controller_joins_total", "Join requests by result"),
                &["result"],
            )
            .expect("metric"),
            placements: IntCounterVec::new(
                Opts::new(
                    "fjord_controller_placements_total",
                    "Placement outcomes of joins",
                ),
                &["outcome"],
            )
            .expect("metric"),
            join_seconds: Histogram::with_opts(
                HistogramOpts::new("fjord_controller_join_duration_seconds", "Join latency")
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
            )
            .expect("metric"),
            is_leader: IntGauge::new(
                "fjord_controller_is_leader",
                "1 while this replica is the leader",
            )
            .expect("metric"),
            view_synced: IntGauge::new(
                "fjord_controller_view_synced",
                "1 while the cluster view follows etcd",
            )
            .expect("metric"),
            etcd_errors: IntCounter::new(
                "fjord_controller_etcd_errors_total",
                "Failed etcd requests",
            )
            .expect("metric"),
            reconciled_placements: IntCounter::new(
                "fjord_controller_reconciled_placements_total",
                "Placements the leader removed because their node died or their meeting ended",
            )
            .expect("metric"),
            meetings_active: IntGauge::new("fjord_cluster_meetings_active", "Active meetings")
                .expect("metric"),
            media_nodes: IntGauge::new("fjord_cluster_media_nodes", "Registered media nodes")
                .expect("metric"),
            recordings_started: IntCounter::new(
                "fjord_controller_recordings_started_total",
                "Recordings started on a recording node",
            )
            .expect("metric"),
            recordings_moved: IntCounter::new(
                "fjord_controller_recordings_moved_total",
                "Recordings moved to another recording node after theirs was lost",
            )
            .expect("metric"),
            recordings_failed: IntCounter::new(
                "fjord_controller_recordings_failed_total",
                "Recordings that failed because their node was lost and none could take over",
            )
            .expect("metric"),
            cluster_nodes: IntGaugeVec::new(
                Opts::new(
                    "fjord_cluster_nodes",
                    "Registered nodes by kind, region and state, as the leader sees etcd",
                ),
                &["kind", "cluster_region", "state"],
            )
            .expect("metric"),
            nodes_lost: IntCounterVec::new(
                Opts::new(
                    "fjord_cluster_nodes_lost_total",
                    "Nodes whose registration expired without a drain (crash, kill, network loss)",
                ),
                &["kind", "cluster_region"],
            )
            .expect("metric"),
        };
        // Names are fixed and unique, so registration cannot fail.
        registry
            .register(Box::new(m.joins.clone()))
            .expect("register");
        registry
            .register(Box::new(m.placements.clone()))
            .expect("register");
        registry
            .register(Box::new(m.join_seconds.clone()))
            .expect("register");
        registry
            .register(Box::new(m.is_leader.clone()))
            .expect("register");
        registry
            .register(Box::new(m.view_synced.clone()))
            .expect("register");
        registry
            .register(Box::new(m.etcd_errors.clone()))
            .expect("register");
        registry
            .register(Box::new(m.reconciled_placements.clone()))
            .expect("register");
        registry
            .register(Box::new(m.meetings_active.clone()))
            .expect("register");
        registry
            .register(Box::new(m.media_nodes.clone()))
            .expect("register");
        for c in [
            &m.recordings_started,
            &m.recordings_moved,
            &m.recordings_failed,
        ] {
            registry.register(Box::new(c.clone())).expect("register");
        }
        registry
            .register(Box::new(m.cluster_nodes.clone()))
            .expect("register");
        registry
            .register(Box::new(m.nodes_lost.clone()))
            .expect("register");
        m
    }
}
