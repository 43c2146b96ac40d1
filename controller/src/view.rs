//! `ClusterView`: the controller's in-memory copy of Fjord's etcd state, fed by one watch,
//! so that placement and listing read no etcd. Only commits go to etcd (see `store`).
//! While the watch is down the view is marked unsynced and joins answer 503 rather than
//! act on stale state.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::ids::{MeetingId, NodeId, RecordingId};
use common::keyspace::Slot;
use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::model::{
    Collab, MediaNode, Meeting, NodeLoad, NodeState, Recording, RecordingNode, Room,
    StoredPlacement,
};
use crate::store::{Change, ClusterStore, StoreError};

#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub media: BTreeMap<NodeId, MediaNode>,
    pub recording: BTreeMap<NodeId, RecordingNode>,
    pub load: HashMap<NodeId, NodeLoad>,
    pub meetings: HashMap<MeetingId, Meeting>,
    pub placements: HashMap<MeetingId, BTreeMap<Slot, StoredPlacement>>,
    /// What each meeting's hosts decided (lock, who may not come back, the audit).
    pub rooms: HashMap<MeetingId, Room>,
    /// Each meeting's polls and Q&A.
    pub collabs: HashMap<MeetingId, Collab>,
    pub recordings: HashMap<RecordingId, Recording>,
    pub revision: i64,
    /// Nodes whose record was deleted while it did not say draining (its lease expired:
    /// a crash, a kill, a network loss), by (kind, region), counted since the controller
    /// started (kept when the view is read anew). A drained node says draining before it
    /// deregisters.
    pub lost: BTreeMap<(&'static str, String), u64>,
}

impl ClusterView {
    fn departed(&mut self, kind: &'static str, region: &str, state: NodeState) {
        if state != NodeState::Draining {
            *self.lost.entry((kind, region.to_owned())).or_default() += 1;
        }
    }

    /// Applies one change.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::MediaNode(id, Some(n)) => {
                self.media.insert(id, n);
            }
            Change::MediaNode(id, None) => {
                if let Some(n) = self.media.remove(&id) {
                    self.departed("media", n.region.as_str(), n.state);
                }
            }
            Change::RecordingNode(id, Some(n)) => {
                self.recording.insert(id, n);
            }
            Change::RecordingNode(id, None) => {
                if let Some(n) = self.recording.remove(&id) {
                    self.departed("recording", n.region.as_str(), n.state);
                }
            }
            Change::Load(id, Some(l)) => {
                self.load.insert(id, l);
            }
            Change::Load(id, None) => {
                self.load.remove(&id);
            }
            Change::Meeting(id, Some(m)) => {
                self.meetings.insert(id, m);
            }
            Change::Meeting(id, None) => {
                self.meetings.remove(&id);
            }
            Change::Placement(m, slot, Some(p)) => {
                self.placements.entry(m).or_default().insert(slot, p);
            }
            Change::Placement(m, slot, None) => {
                if let Some(p) = self.placements.get_mut(&m) {
                    p.remove(&slot);
                    if p.is_empty() {
                        self.placements.remove(&m);
                    }
                }
            }
            Change::Room(id, Some(r)) => {
                self.rooms.insert(id, r);
            }
            Change::Room(id, None) => {
                self.rooms.remove(&id);
            }
            Change::Collab(id, Some(c)) => {
                self.collabs.insert(id, c);
            }
            Change::Collab(id, None) => {
                self.collabs.remove(&id);
            }
            Change::Recording(id, Some(r)) => {
                self.recordings.insert(id, r);
            }
            Change::Recording(id, None) => {
                self.recordings.remove(&id);
            }
        }
    }
}

/// The view shared by the API, placement and the reconciler, and whether it is in sync.
#[derive(Clone)]
pub struct SharedView {
    inner: Arc<RwLock<ClusterView>>,
    synced: watch::Sender<bool>,
    changed: Arc<Notify>,
}

impl Default for SharedView {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            synced: watch::channel(false).0,
            changed: Arc::default(),
        }
    }
}

impl SharedView {
    /// Runs `f` on the current view. Never await inside: the lock is a std lock.
    pub fn read<T>(&self, f: impl FnOnce(&ClusterView) -> T) -> T {
        f(&self.inner.read().expect("view lock poisoned"))
    }
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }
    pub fn subscribe_synced(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Replaces the view (when a test builds one by hand). Marks it synced.
    pub fn set(&self, view: ClusterView) {
        *self.inner.write().expect("view lock poisoned") = view;
        self.synced.send_replace(true);
        self.changed.notify_waiters();
    }

    /// Keeps the view in step with the store until `shutdown`: a full read, then the
    /// change feed from the next revision; on any error the view is marked unsynced and
    /// read again.
    pub async fn run_watcher(self, store: Arc<dyn ClusterStore>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let result = tokio::select! {
                _ = shutdown.cancelled() => Ok(()),
                r = self.follow(store.as_ref()) => r,
            };
            self.synced.send_replace(false);
            match result {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the store's change feed; cluster view unsynced, resyncing")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
    }

    /// One read and the feed after it, until the feed fails.
    async fn follow(&self, store: &dyn ClusterStore) -> Result<(), StoreError> {
        let snap = store.snapshot().await?;
        let mut fresh = ClusterView {
            revision: snap.revision,
            ..Default::default()
        };
        for c in snap.records {
            fresh.apply(c);
        }
        let mut feed = store.watch(snap.revision).await?;
        {
            let mut inner = self.inner.write().expect("view lock poisoned");
            // Losses are a count over the view's life, not part of the store's state.
            fresh.lost = std::mem::take(&mut inner.lost);
            *inner = fresh;
        }
        self.synced.send_replace(true);
        self.changed.notify_waiters();
        tracing::info!(
            revision = snap.revision,
            "cluster view synced with the store"
        );
        loop {
            let batch = feed
                .next()
                .await
                .ok_or_else(|| StoreError::WatchLost("watch ended".into()))??;
            {
                let mut v = self.inner.write().expect("view lock poisoned");
                for c in batch.changes {
                    v.apply(c);
                }
                v.revision = v.revision.max(batch.revision);
            }
            self.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::ids::Region;

    fn node(id: &str, state: NodeState) -> MediaNode {
        MediaNode {
            id: NodeId::parse(id).unwrap(),
            region: Region::parse("oslo").unwrap(),
            zone: String::new(),
            signal_url: String::new(),
            grpc_addr: String::new(),
            relay_addr: None,
            capacity: Default::default(),
            version: String::new(),
            state,
            lease_id: 0,
        }
    }

    #[test]
    fn a_node_that_leaves_without_draining_counts_as_lost_and_a_drained_one_does_not() {
        let mut v = ClusterView::default();
        let put = |v: &mut ClusterView, id: &str, state: NodeState| {
            let n = node(id, state);
            v.apply(Change::MediaNode(n.id.clone(), Some(n.clone())));
            n.id
        };
        let crashed = put(&mut v, "media-1", NodeState::Active);
        let drained = put(&mut v, "media-2", NodeState::Active);
        put(&mut v, "media-2", NodeState::Draining);
        v.apply(Change::MediaNode(drained, None));
        assert!(
            v.lost.is_empty(),
            "a drained node is not lost: {:?}",
            v.lost
        );
        v.apply(Change::MediaNode(crashed, None));
        assert_eq!(v.lost.get(&("media", "oslo".to_string())), Some(&1));
        // A delete of a node never seen is no loss.
        v.apply(Change::MediaNode(NodeId::parse("media-9").unwrap(), None));
        assert_eq!(v.lost.values().sum::<u64>(), 1);
    }
}

#[cfg(test)]
mod fault_tests {
    use crate::store::{ClusterStore, MemoryStore};
    use crate::testing::{meeting, until};

    use super::*;

    #[tokio::test]
    async fn the_view_catches_up_after_lost_watches_and_an_outage() {
        let store = MemoryStore::new();
        let view = SharedView::default();
        let stop = CancellationToken::new();
        let dyn_store: Arc<dyn ClusterStore> = Arc::new(store.clone());
        tokio::spawn(view.clone().run_watcher(dyn_store, stop.clone()));
        until("synced", || view.is_synced()).await;
        let has = |id: &str| {
            let id = MeetingId::parse(id).unwrap();
            view.read(|v| v.meetings.contains_key(&id))
        };

        store.break_watches();
        store
            .create_meeting(&meeting("aaa-aaaa-aaa"))
            .await
            .unwrap();
        until("a meeting written while the watch was lost", || {
            has("aaa-aaaa-aaa")
        })
        .await;

        store.break_watches();
        store
            .create_meeting(&meeting("bbb-bbbb-bbb"))
            .await
            .unwrap();
        until("and again", || has("bbb-bbbb-bbb")).await;

        store.set_down(true);
        until("unsynced while the store is down", || !view.is_synced()).await;
        store.set_down(false);
        store
            .create_meeting(&meeting("ccc-cccc-ccc"))
            .await
            .unwrap();
        until("synced again, with what was written", || {
            view.is_synced() && has("ccc-cccc-ccc")
        })
        .await;
        assert_eq!(view.read(|v| v.meetings.len()), 3);
        assert!(view.read(|v| v.revision) >= store.revision() - 1);
        stop.cancel();
    }
}
