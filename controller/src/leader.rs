//! Leader election over etcd and the leader's reconciler. Every replica campaigns; the
//! winner, while its lease holds, removes placements whose node died and those of ended
//! meetings, so the next join of such a meeting lands on a live node, and moves
//! recordings whose recording node died to another node. A replica that
//! cannot renew its lease steps down at once.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::config::EtcdConfig;
use common::ids::MeetingId;
use common::keyspace::Slot;
use etcd_client::{Client, ResignOptions};
use proto::v1::{MeetingStatus, NodeState};
use tokio_util::sync::CancellationToken;

use crate::service::Service;

pub async fn run(service: Arc<Service>, cfg: EtcdConfig, id: String, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        // Campaigning blocks until we lead, so this client has no per-request deadline.
        let opts = common::etcd::blocking_options(&cfg);
        let Some(client) = common::etcd::connect_with(&cfg, opts, &shutdown).await else {
            break;
        };
        if let Err(e) = term(&service, client, &cfg, &id, &shutdown).await {
            tracing::warn!(error = %e, "leader election interrupted");
        }
        service.metrics.is_leader.set(0);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn term(
    service: &Service,
    mut client: Client,
    cfg: &EtcdConfig,
    id: &str,
    shutdown: &CancellationToken,
) -> Result<(), etcd_client::Error> {
    let ks = service.store.keyspace().clone();
    let deadline = cfg.request_timeout();
    let timed_out = || etcd_client::Error::InvalidArgs("etcd request timed out".into());
    let lease = tokio::time::timeout(
        deadline,
        client.lease_grant(cfg.lease_ttl_secs as i64, None),
    )
    .await
    .map_err(|_| timed_out())??
    .id();
    let (mut keeper, mut stream) = tokio::time::timeout(deadline, client.lease_keep_alive(lease))
        .await
        .map_err(|_| timed_out())??;
    let renew_every = Duration::from_millis((cfg.lease_ttl_secs * 1000 / 3).max(500));
    let mut renew = tokio::time::interval(renew_every);
    let mut keep_alive = async || -> Result<(), etcd_client::Error> {
        keeper.keep_alive().await?;
        match tokio::time::timeout(cfg.request_timeout(), stream.message()).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => Ok(()),
            Ok(Err(e)) => Err(e),
            _ => Err(etcd_client::Error::LeaseKeepAliveError(
                "controller lease lost".into(),
            )),
        }
    };

    // Campaign while keeping the lease alive: campaign blocks until we lead.
    let mut campaigner = client.election_client();
    let campaign = campaigner.campaign(ks.election(), id, lease);
    tokio::pin!(campaign);
    let leader_key = loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = tokio::time::timeout(deadline, client.lease_revoke(lease)).await;
                return Ok(());
            }
            r = &mut campaign => break r?.take_leader(),
            _ = renew.tick() => keep_alive().await?,
        }
    };
    tracing::info!(controller = id, "became leader");
    let ttl = Duration::from_secs(cfg.lease_ttl_secs);
    service.metrics.is_leader.set(1);

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut census = Census::default();
    let result = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = renew.tick() => {
                if let Err(e) = keep_alive().await {
                    break Err(e);
                }
            }
            _ = tick.tick() => reconcile(service, ttl).await,
            _ = service.view.changed() => reconcile(service, ttl).await,
        }
        census.count(service);
    };
    service.metrics.is_leader.set(0);
    // Only the leader counts nodes: a former leader's figures would go stale.
    service.metrics.cluster_nodes.reset();
    tracing::info!(controller = id, "no longer leader");
    if let Some(k) = leader_key {
        let mut e = client.election_client();
        let _ = tokio::time::timeout(
            deadline,
            e.resign(Some(ResignOptions::new().with_leader(k))),
        )
        .await;
    }
    let _ = tokio::time::timeout(deadline, client.lease_revoke(lease)).await;
    result
}

/// One pass of the leader's reconciler over the view.
pub async fn reconcile(service: &Service, lease_ttl: Duration) {
    if !service.view.is_synced() {
        return;
    }
    service.reconcile_recordings(lease_ttl).await;
    type Stale = Vec<(MeetingId, Slot, String, i64, &'static str)>;
    let stale: Stale = service.view.read(|v| {
        let mut out = Vec::new();
        for (m, regions) in &v.placements {
            let ended = v
                .meetings
                .get(m)
                .is_none_or(|r| r.status == MeetingStatus::Ended as i32);
            for (r, p) in regions {
                let alive = common::ids::NodeId::parse(&p.record.node_id)
                    .is_ok_and(|n| v.media.contains_key(&n));
                let why = if !alive {
                    "node gone"
                } else if ended {
                    "meeting ended"
                } else {
                    continue;
                };
                out.push((
                    m.clone(),
                    r.clone(),
                    p.record.node_id.clone(),
                    p.mod_revision,
                    why,
                ));
            }
        }
        out
    });
    for (m, r, node, rev, why) in stale {
        match service.store.remove_placement(&m, &r, rev).await {
            Ok(true) => {
                service.metrics.reconciled_placements.inc();
                tracing::info!(meeting = %m, slot = %r, node, why, "removed placement");
            }
            Ok(false) => {}
            Err(e) => {
                service.metrics.etcd_errors.inc();
                tracing::warn!(error = %e, "reconciler could not remove a placement");
                return;
            }
        }
    }
    let (meetings, nodes) = service.view.read(|v| {
        (
            v.meetings
                .values()
                .filter(|m| m.status == MeetingStatus::Active as i32)
                .count(),
            v.media.len(),
        )
    });
    service.metrics.meetings_active.set(meetings as i64);
    service.metrics.media_nodes.set(nodes as i64);
}

/// The leader's census of registered nodes, for `fjord_cluster_nodes` and
/// `fjord_cluster_nodes_lost_total`. Losses are the view's count of nodes that left
/// without draining; the counter takes what was added since the leader last looked
/// (from when it became leader, so a new leader counts nothing twice).
#[derive(Default)]
struct Census {
    lost_seen: Option<BTreeMap<(&'static str, String), u64>>,
}

impl Census {
    fn count(&mut self, service: &Service) {
        if !service.view.is_synced() {
            return;
        }
        let draining = |s: i32| s == NodeState::Draining as i32;
        let (nodes, lost) = service.view.read(|v| {
            let media = v
                .media
                .values()
                .map(|r| ("media", r.region.clone(), draining(r.state)));
            let recording = v
                .recording
                .values()
                .map(|r| ("recording", r.region.clone(), draining(r.state)));
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
