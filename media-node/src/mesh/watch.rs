//! Which nodes a meeting is placed on: its placements in the store
//! (`/meetings/{m}/placement/…` in etcd, followed by the store) name the peers the mesh
//! links to ([`Mesh::set_peers`]).
use std::collections::HashSet;
use std::sync::Arc;

use common::ids::{MeetingId, NodeId};
use tokio_util::sync::CancellationToken;

use super::Mesh;

/// Follows the placements of `meeting` in the store until `stop`: links come and go with
/// the nodes they name.
pub(super) async fn watch_placements(mesh: Arc<Mesh>, meeting: MeetingId, stop: CancellationToken) {
    let store = mesh.store.clone();
    let (m, me) = (meeting.clone(), mesh.id.clone());
    let take = move |mut placed: HashSet<NodeId>| {
        placed.remove(&me);
        Mesh::set_peers(&mesh, &m, placed);
    };
    store
        .follow_placements(&meeting, stop, Box::new(take))
        .await;
}
