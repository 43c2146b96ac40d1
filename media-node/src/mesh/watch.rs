//! Which nodes a meeting is placed on: its placements in etcd
//! (`/meetings/{m}/placement/…`), read and then watched, name the peers the mesh links
//! to ([`Mesh::set_peers`]).
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::ids::{MeetingId, NodeId};
use etcd_client::{GetOptions, WatchOptions};
use prost::Message;
use proto::v1::PlacementRecord;
use tokio_util::sync::CancellationToken;

use super::{LinkError, Mesh};

use crate::store::{RETRY_FIRST, back_off};

/// Follows the placements of `meeting` until `stop`: a full read, then a watch; both
/// again after a lost watch.
pub(super) async fn watch_placements(mesh: Arc<Mesh>, meeting: MeetingId, stop: CancellationToken) {
    let prefix = mesh.keyspace.placements_of(&meeting);
    let mut delay = RETRY_FIRST;
    while !stop.is_cancelled() {
        let result = async {
            let mut etcd = mesh.etcd.client().await.ok_or(LinkError::NoEtcd)?;
            let r = etcd
                .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
                .await?;
            let revision = r.header().map_or(0, |h| h.revision());
            let mut placed: HashMap<String, NodeId> = HashMap::new();
            for kv in r.kvs() {
                if let Some(n) = placement_node(kv.value()) {
                    placed.insert(String::from_utf8_lossy(kv.key()).into_owned(), n);
                }
            }
            Mesh::set_peers(&mesh, &meeting, peers_of(&placed, &mesh.id));
            let mut stream = etcd
                .watch(
                    prefix.as_str(),
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(revision + 1),
                    ),
                )
                .await?;
            // A watch that was up and then broke is followed again after the first
            // pause: only failures to set it up back off further, so that a node whose
            // watch breaks now and then never sleeps through a placement change for long.
            delay = RETRY_FIRST;
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    m = stream.message() => m?,
                };
                let Some(resp) = msg else {
                    return Err(LinkError::Watch("the watch ended".into()));
                };
                if resp.canceled() {
                    return Err(LinkError::Watch(format!(
                        "cancelled: {}",
                        resp.cancel_reason()
                    )));
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    match (ev.event_type(), placement_node(kv.value())) {
                        (etcd_client::EventType::Put, Some(n)) => {
                            placed.insert(key, n);
                        }
                        _ => {
                            placed.remove(&key);
                        }
                    }
                }
                Mesh::set_peers(&mesh, &meeting, peers_of(&placed, &mesh.id));
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%meeting, error = %e, "following the meeting's placements failed; retrying");
            if !back_off(&stop, &mut delay).await {
                return;
            }
        }
    }
}

fn placement_node(value: &[u8]) -> Option<NodeId> {
    let p = PlacementRecord::decode(value).ok()?;
    NodeId::parse(&p.node_id).ok()
}

fn peers_of(placed: &HashMap<String, NodeId>, me: &NodeId) -> HashSet<NodeId> {
    placed.values().filter(|n| *n != me).cloned().collect()
}
