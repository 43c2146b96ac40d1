//! The leader's census of registered nodes (`fjord_cluster_nodes`,
//! `fjord_cluster_nodes_lost_total`).
use std::collections::BTreeMap;

use crate::model::NodeState;
use crate::service::Service;

/// The leader's census of registered nodes, for `fjord_cluster_nodes` and
/// `fjord_cluster_nodes_lost_total`. Losses are the view's count of nodes that left
/// without draining; the counter takes what was added since the leader last looked
/// (from when it became leader, so a new leader counts nothing twice).
#[derive(Default)]
pub(super) struct Census {
    lost_seen: Option<BTreeMap<(&'static str, String), u64>>,
}

impl Census {
    pub(super) fn count(&mut self, service: &Service) {
        if !service.view.is_synced() {
            return;
        }
        let draining = |s: NodeState| s == NodeState::Draining;
        let (nodes, lost) = service.view.read(|v| {
            let media = v
                .media
                .values()
                .map(|r| ("media", r.region.to_string(), draining(r.state)));
            let recording = v
                .recording
                .values()
                .map(|r| ("recording", r.region.to_string(), draining(r.state)));
            (media.chain(recording).collect::<Vec<_>>(), v.lost.clone())
        });
        let m = &service.metrics;
        // Every known region shows, with 0 where it has no node of a kind or state.
        for r in &service.regions.known {
            for kind in ["media", "recording"] {
                m.nodes_lost.with_label_values(&[kind, r.as_str()]);
            }
        }
        if let Some(before) = &self.lost_seen {
            for ((kind, region), n) in &lost {
                let added =
                    n.saturating_sub(before.get(&(*kind, region.clone())).copied().unwrap_or(0));
                if added > 0 {
                    m.nodes_lost
                        .with_label_values(&[*kind, region.as_str()])
                        .inc_by(added);
                    tracing::warn!(
                        kind,
                        region,
                        added,
                        "node lost: its lease expired without a drain"
                    );
                }
            }
        }
        self.lost_seen = Some(lost);
        m.cluster_nodes.reset();
        for r in &service.regions.known {
            for kind in ["media", "recording"] {
                for state in ["active", "draining"] {
                    m.cluster_nodes
                        .with_label_values(&[kind, r.as_str(), state])
                        .set(0);
                }
            }
        }
        for (kind, region, is_draining) in nodes {
            let state = if is_draining { "draining" } else { "active" };
            m.cluster_nodes
                .with_label_values(&[kind, region.as_str(), state])
                .inc();
        }
    }
}
