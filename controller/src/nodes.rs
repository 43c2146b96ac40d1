//! Nodes through the API: the list with each node's state, load and capacity, and drain.
use common::ids::{NodeId, Region};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::lengths::truncate;
use crate::model::{Capacity, NodeKind, NodeLoad, NodeState};
use crate::service::Service;

/// A node as the API shows it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: NodeId,
    pub kind: NodeKind,
    pub region: Region,
    pub state: NodeState,
    pub load: NodeLoad,
    /// A media node's (a recording node's is its slots).
    pub capacity: Capacity,
    pub slots: u32,
}

impl Service {
    pub fn list_nodes(&self, caller: &Caller) -> Result<Vec<NodeInfo>, ApiError> {
        self.require_operator(caller)?;
        self.require_synced()?;
        Ok(self.view.read(|v| {
            let load = |id: &NodeId| v.load.get(id).copied().unwrap_or_default();
            let media = v.media.iter().map(|(id, n)| NodeInfo {
                id: id.clone(),
                kind: NodeKind::Media,
                region: n.region.clone(),
                state: n.state,
                load: load(id),
                capacity: n.capacity,
                slots: 0,
            });
            let rec = v.recording.iter().map(|(id, n)| NodeInfo {
                id: id.clone(),
                kind: NodeKind::Recording,
                region: n.region.clone(),
                state: n.state,
                load: load(id),
                capacity: Capacity::default(),
                slots: n.slots,
            });
            media.chain(rec).collect()
        }))
    }

    pub async fn drain_node(&self, caller: &Caller, id: &str) -> Result<NodeInfo, ApiError> {
        self.require_operator(caller)?;
        self.require_synced()?;
        let node = NodeId::parse(id).map_err(|_| {
            ApiError::NotFound(format!("node {:?} is not registered", truncate(id, 80)))
        })?;
        let (media, recording) = self.view.read(|v| {
            (
                v.media.get(&node).map(|n| n.grpc_addr.clone()),
                v.recording.get(&node).map(|n| n.grpc_addr.clone()),
            )
        });
        let result = match (&media, &recording) {
            (Some(addr), _) => self.nodes.drain_media(addr).await,
            (None, Some(addr)) => self.nodes.drain_recording(addr).await,
            (None, None) => {
                return Err(ApiError::NotFound(format!("node {node} is not registered")));
            }
        };
        let left = result.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let mut info = self
            .list_nodes(caller)?
            .into_iter()
            .find(|n| n.id == node)
            .ok_or_else(|| ApiError::NotFound(format!("node {node} left the cluster")))?;
        info.state = NodeState::Draining;
        info.load.participants = left.participants;
        info.load.meetings = left.meetings;
        Ok(info)
    }
}
