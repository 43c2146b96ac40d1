//! `ClusterView`: the controller's in-memory copy of Fjord's etcd state, fed by one watch,
//! so that placement and listing read no etcd. Only commits go to etcd (see `store`).
//! While the watch is down the view is marked unsynced and joins answer 503 rather than
//! act on stale state.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::config::EtcdConfig;
use common::ids::{MeetingId, NodeId, RecordingId};
use common::keyspace::{Key, Keyspace, Slot};
use etcd_client::{EventType, GetOptions, WatchOptions};
use prost::Message;
use proto::v1::{
    MediaNodeRecord, MeetingRecord, NodeLoad, PlacementRecord, RecordingNodeRecord, RecordingRecord,
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// A placement as stored, with the etcd revision that last wrote it (for compare-and-swap).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPlacement {
    pub record: PlacementRecord,
    pub mod_revision: i64,
}

#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub media: BTreeMap<NodeId, MediaNodeRecord>,
    pub recording: BTreeMap<NodeId, RecordingNodeRecord>,
    pub load: HashMap<NodeId, NodeLoad>,
    pub meetings: HashMap<MeetingId, MeetingRecord>,
    pub placements: HashMap<MeetingId, BTreeMap<Slot, StoredPlacement>>,
    pub recordings: HashMap<RecordingId, RecordingRecord>,
    pub revision: i64,
    /// Nodes whose record was deleted while it did not say draining (its lease expired:
    /// a crash, a kill, a network loss), by (kind, region), counted since the controller
    /// started (kept when the view is read anew). A drained node says draining before it
    /// deregisters.
    pub lost: BTreeMap<(&'static str, String), u64>,
}

fn decode<M: Message + Default>(key: &str, value: &[u8]) -> Option<M> {
    match M::decode(value) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(key, error = %e, "undecodable record in etcd; ignored");
            None
        }
    }
}

impl ClusterView {
    fn departed(&mut self, kind: &'static str, region: &str, state: i32) {
        if state != proto::v1::NodeState::Draining as i32 {
            *self.lost.entry((kind, region.to_owned())).or_default() += 1;
        }
    }

    /// Applies a put (`Some(value)`) or delete (`None`) of `key`.
    pub fn apply(&mut self, ks: &Keyspace, key: &str, value: Option<&[u8]>, mod_revision: i64) {
        match (ks.parse(key), value) {
            (Key::MediaNode(id), Some(v)) => {
                if let Some(r) = decode(key, v) {
                    self.media.insert(id, r);
                }
            }
            (Key::MediaNode(id), None) => {
                if let Some(r) = self.media.remove(&id) {
                    self.departed("media", &r.region, r.state);
                }
            }
            (Key::RecordingNode(id), Some(v)) => {
                if let Some(r) = decode(key, v) {
                    self.recording.insert(id, r);
                }
            }
            (Key::RecordingNode(id), None) => {
                if let Some(r) = self.recording.remove(&id) {
                    self.departed("recording", &r.region, r.state);
                }
            }
            (Key::Load(id), Some(v)) => {
                if let Some(r) = decode(key, v) {
                    self.load.insert(id, r);
                }
            }
            (Key::Load(id), None) => {
                self.load.remove(&id);
            }
            (Key::Meeting(id), Some(v)) => {
                if let Some(r) = decode(key, v) {
                    self.meetings.insert(id, r);
                }
            }
            (Key::Meeting(id), None) => {
                self.meetings.remove(&id);
            }
            (Key::Placement(m, r), Some(v)) => {
                if let Some(record) = decode(key, v) {
                    self.placements.entry(m).or_default().insert(
                        r,
                        StoredPlacement {
                            record,
                            mod_revision,
                        },
                    );
                }
            }
            (Key::Placement(m, r), None) => {
                if let Some(p) = self.placements.get_mut(&m) {
                    p.remove(&r);
                    if p.is_empty() {
                        self.placements.remove(&m);
                    }
                }
            }
            (Key::Recording(id), Some(v)) => {
                if let Some(r) = decode(key, v) {
                    self.recordings.insert(id, r);
                }
            }
            (Key::Recording(id), None) => {
                self.recordings.remove(&id);
            }
            (Key::Other, _) => {}
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

    /// Keeps the view in step with etcd until `shutdown`: a full read, then a watch from
    /// the next revision; on any error the view is marked unsynced and read again.
    pub async fn run_watcher(self, cfg: EtcdConfig, shutdown: CancellationToken) {
        let ks = Keyspace::new(&cfg.prefix);
        while !shutdown.is_cancelled() {
            let Some(mut client) = common::etcd::connect(&cfg, &shutdown).await else {
                break;
            };
            let result: Result<(), etcd_client::Error> = async {
                let resp = client
                    .get(ks.root(), Some(GetOptions::new().with_prefix()))
                    .await?;
                let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                let mut fresh = ClusterView {
                    revision: rev,
                    ..Default::default()
                };
                for kv in resp.kvs() {
                    fresh.apply(
                        &ks,
                        kv.key_str().unwrap_or(""),
                        Some(kv.value()),
                        kv.mod_revision(),
                    );
                }
                {
                    let mut inner = self.inner.write().expect("view lock poisoned");
                    // Losses are a count over the view's life, not part of etcd's state.
                    fresh.lost = std::mem::take(&mut inner.lost);
                    *inner = fresh;
                }
                let opts = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev + 1)
                    .with_progress_notify();
                let mut stream = client.watch(ks.root(), Some(opts)).await?;
                self.synced.send_replace(true);
                self.changed.notify_waiters();
                tracing::info!(revision = rev, "cluster view synced with etcd");
                loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        m = stream.message() => m?,
                    };
                    let Some(resp) = msg else {
                        return Err(etcd_client::Error::WatchError("watch ended".into()));
                    };
                    if resp.canceled() {
                        return Err(etcd_client::Error::WatchError(format!(
                            "watch cancelled: {}",
                            resp.cancel_reason()
                        )));
                    }
                    {
                        let mut v = self.inner.write().expect("view lock poisoned");
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let key = kv.key_str().unwrap_or("");
                            match ev.event_type() {
                                EventType::Put => {
                                    v.apply(&ks, key, Some(kv.value()), kv.mod_revision())
                                }
                                EventType::Delete => v.apply(&ks, key, None, kv.mod_revision()),
                            }
                        }
                        if let Some(h) = resp.header() {
                            v.revision = v.revision.max(h.revision());
                        }
                    }
                    self.changed.notify_waiters();
                }
            }
            .await;
            self.synced.send_replace(false);
            match result {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the etcd watch; cluster view unsynced, resyncing")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::NodeState;

    #[test]
    fn a_node_that_leaves_without_draining_counts_as_lost_and_a_drained_one_does_not() {
        let ks = Keyspace::new("/fjord");
        let mut v = ClusterView::default();
        let put = |v: &mut ClusterView, id: &str, state: NodeState| {
            let r = MediaNodeRecord {
                node_id: id.into(),
                region: "oslo".into(),
                state: state as i32,
                ..Default::default()
            };
            let key = ks.media_node(&NodeId::parse(id).unwrap());
            v.apply(&ks, &key, Some(&r.encode_to_vec()), 1);
            key
        };
        let crashed = put(&mut v, "media-1", NodeState::Active);
        let drained = put(&mut v, "media-2", NodeState::Active);
        put(&mut v, "media-2", NodeState::Draining);
        v.apply(&ks, &drained, None, 2);
        assert!(
            v.lost.is_empty(),
            "a drained node is not lost: {:?}",
            v.lost
        );
        v.apply(&ks, &crashed, None, 3);
        assert_eq!(v.lost.get(&("media", "oslo".to_string())), Some(&1));
        // A delete of a node never seen is no loss.
        v.apply(
            &ks,
            &ks.media_node(&NodeId::parse("media-9").unwrap()),
            None,
            4,
        );
        assert_eq!(v.lost.values().sum::<u64>(), 1);
    }
}
