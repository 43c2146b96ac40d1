//! [`ClusterStore`] in memory, with etcd's semantics where the controller relies on them
//! (one revision counter, compare-and-swap on a record's revision, records bound to
//! leases, an ordered change feed that can resume from a revision, one leader at a time)
//! and faults to inject: slow commits, an outage, a lost watch, a compacted history, a
//! lost lease, a deposed leader. Leases do not expire by themselves: a test expires one.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ids::{MeetingId, NodeId, RecordingId};
use common::keyspace::{Key, Slot};
use futures::StreamExt;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::{
    Batch, Change, ChangeStream, CloudChange, ClusterStore, Erasure, Lease, PlacementCommit,
    Snapshot, StoreError, Term,
};
use crate::model::{
    Account, Attendance, MediaNode, Meeting, NodeLoad, OrgSettings, Recording, RecordingNode,
    Registrant, StoredPlacement,
};

#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    /// Wakes candidates when the leadership is free.
    vacated: Arc<Notify>,
}

struct Record {
    change: Change,
    lease: Option<Lease>,
}

struct Inner {
    revision: i64,
    records: BTreeMap<Key, Record>,
    /// Every revision's changes since `compacted`.
    history: VecDeque<Batch>,
    compacted: i64,
    feed: broadcast::Sender<Batch>,
    /// Cancelled to end every open watch (a lost watch); replaced after.
    watches: CancellationToken,
    leases: HashMap<Lease, Vec<Key>>,
    next_lease: i64,
    leader: Option<(u64, CancellationToken)>,
    terms: u64,
    commit_delay: Duration,
    down: bool,
    /// Registrants and attendance, by meeting and id (not in the change feed: the view
    /// does not hold them).
    registrants: BTreeMap<(MeetingId, String), Registrant>,
    attendance: BTreeMap<(MeetingId, String), Attendance>,
    orgs: BTreeMap<String, OrgSettings>,
    /// Local accounts, by lower-case e-mail address.
    accounts: BTreeMap<String, Account>,
    erasures: std::collections::BTreeSet<Erasure>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            revision: 1,
            records: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            feed: broadcast::channel(4096).0,
            watches: CancellationToken::new(),
            leases: HashMap::new(),
            next_lease: 1,
            leader: None,
            terms: 0,
            commit_delay: Duration::ZERO,
            down: false,
            registrants: BTreeMap::new(),
            attendance: BTreeMap::new(),
            orgs: BTreeMap::new(),
            accounts: BTreeMap::new(),
            erasures: std::collections::BTreeSet::new(),
        }
    }
}

fn key_of(c: &Change) -> Key {
    match c {
        Change::MediaNode(id, _) => Key::MediaNode(id.clone()),
        Change::RecordingNode(id, _) => Key::RecordingNode(id.clone()),
        Change::Load(id, _) => Key::Load(id.clone()),
        Change::Meeting(id, _) => Key::Meeting(id.clone()),
        Change::Placement(m, s, _) => Key::Placement(m.clone(), s.clone()),
        Change::Room(id, _) => Key::Room(id.clone()),
        Change::Collab(id, _) => Key::Collab(id.clone()),
        Change::Recording(id, _) => Key::Recording(id.clone()),
    }
}

/// The deletion of whatever `key` holds.
fn deleted(key: &Key) -> Option<Change> {
    Some(match key.clone() {
        Key::MediaNode(id) => Change::MediaNode(id, None),
        Key::RecordingNode(id) => Change::RecordingNode(id, None),
        Key::Load(id) => Change::Load(id, None),
        Key::Meeting(id) => Change::Meeting(id, None),
        Key::Placement(m, s) => Change::Placement(m, s, None),
        Key::Room(id) => Change::Room(id, None),
        Key::Collab(id) => Change::Collab(id, None),
        Key::Recording(id) => Change::Recording(id, None),
        Key::Other => return None,
    })
}

impl Inner {
    fn check_up(&self) -> Result<(), StoreError> {
        if self.down {
            Err(StoreError::Unavailable(
                "the in-memory store is down (injected)".into(),
            ))
        } else {
            Ok(())
        }
    }

    /// Applies `changes` as one new revision, feeding watchers.
    fn commit(&mut self, changes: Vec<(Change, Option<Lease>)>) -> i64 {
        self.revision += 1;
        let rev = self.revision;
        let mut batch = Vec::with_capacity(changes.len());
        for (mut change, lease) in changes {
            if let Change::Placement(_, _, Some(p)) = &mut change {
                p.mod_revision = rev;
            }
            let key = key_of(&change);
            let is_put = !matches!(
                &change,
                Change::MediaNode(_, None)
                    | Change::RecordingNode(_, None)
                    | Change::Load(_, None)
                    | Change::Meeting(_, None)
                    | Change::Placement(_, _, None)
                    | Change::Room(_, None)
                    | Change::Collab(_, None)
                    | Change::Recording(_, None)
            );
            if is_put {
                if let Some(l) = lease {
                    self.leases.entry(l).or_default().push(key.clone());
                }
                self.records.insert(
                    key,
                    Record {
                        change: change.clone(),
                        lease,
                    },
                );
            } else if self.records.remove(&key).is_none() {
                continue;
            }
            batch.push(change);
        }
        let batch = Batch {
            revision: rev,
            changes: batch,
        };
        self.history.push_back(batch.clone());
        let _ = self.feed.send(batch);
        rev
    }

    fn placement(&self, meeting: &MeetingId, slot: &Slot) -> Option<StoredPlacement> {
        match self
            .records
            .get(&Key::Placement(meeting.clone(), slot.clone()))
        {
            Some(Record {
                change: Change::Placement(_, _, Some(p)),
                ..
            }) => Some(p.clone()),
            _ => None,
        }
    }

    fn revoke(&mut self, lease: Lease) {
        let keys = self.leases.remove(&lease).unwrap_or_default();
        let gone = keys
            .iter()
            .filter(|k| self.records.get(*k).is_some_and(|r| r.lease == Some(lease)))
            .filter_map(deleted)
            .map(|c| (c, None))
            .collect::<Vec<_>>();
        if !gone.is_empty() {
            self.commit(gone);
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("memory store lock")
    }

    /// Waits the injected commit delay, then checks the store is up.
    async fn before_write(&self) -> Result<(), StoreError> {
        let delay = self.lock().commit_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.lock().check_up()
    }

    fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> Result<T, StoreError> {
        let inner = self.lock();
        inner.check_up()?;
        Ok(f(&inner))
    }

    /// Fault: every write waits `delay` before it commits.
    pub fn set_commit_delay(&self, delay: Duration) {
        self.lock().commit_delay = delay;
    }

    /// Fault: every call fails as if the store were unreachable, until `false`.
    pub fn set_down(&self, down: bool) {
        let mut inner = self.lock();
        inner.down = down;
        if down {
            inner.watches.cancel();
            inner.watches = CancellationToken::new();
        }
    }

    /// Fault: every open watch ends with an error (the records stay).
    pub fn break_watches(&self) {
        let mut inner = self.lock();
        inner.watches.cancel();
        inner.watches = CancellationToken::new();
    }

    /// Fault: forgets the history up to now, so a watch from before fails as compacted.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.compacted = inner.revision;
        inner.history.clear();
    }

    /// Fault: the lease expires, as when its node crashed.
    pub fn expire_lease(&self, lease: Lease) {
        self.lock().revoke(lease);
    }

    /// Fault: the leader's lease is lost; its term ends and the others may campaign.
    pub fn depose(&self) {
        if let Some((_, lost)) = self.lock().leader.take() {
            lost.cancel();
        }
        self.vacated.notify_waiters();
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.lock().revision
    }
}

fn one<T>(
    records: &BTreeMap<Key, Record>,
    key: Key,
    pick: impl Fn(&Change) -> Option<T>,
) -> Option<T> {
    records.get(&key).and_then(|r| pick(&r.change))
}

#[async_trait::async_trait]
impl ClusterStore for MemoryStore {
    async fn create_meeting(&self, m: &Meeting) -> Result<bool, StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        if inner.records.contains_key(&Key::Meeting(m.id.clone())) {
            return Ok(false);
        }
        inner.commit(vec![(Change::Meeting(m.id.clone(), Some(m.clone())), None)]);
        Ok(true)
    }

    async fn edit_meeting(&self, m: &Meeting, was: &Meeting) -> Result<bool, StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        let stored = one(&inner.records, Key::Meeting(m.id.clone()), |c| match c {
            Change::Meeting(_, m) => m.clone(),
            _ => None,
        });
        if stored.as_ref() != Some(was) || was.is_ended() {
            return Ok(false);
        }
        inner.commit(vec![(Change::Meeting(m.id.clone(), Some(m.clone())), None)]);
        Ok(true)
    }

    async fn get_meeting(&self, id: &MeetingId) -> Result<Option<Meeting>, StoreError> {
        self.read(|i| {
            one(&i.records, Key::Meeting(id.clone()), |c| match c {
                Change::Meeting(_, m) => m.clone(),
                _ => None,
            })
        })
    }

    async fn end_meeting(&self, m: &Meeting) -> Result<(), StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        let mut changes = vec![(Change::Meeting(m.id.clone(), Some(m.clone())), None)];
        changes.extend(
            inner
                .records
                .keys()
                .filter(|k| matches!(k, Key::Placement(id, _) if *id == m.id))
                .filter_map(deleted)
                .map(|c| (c, None)),
        );
        inner.commit(changes);
        Ok(())
    }

    async fn delete_meeting(&self, id: &MeetingId) -> Result<(), StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        let changes: Vec<_> = inner
            .records
            .keys()
            .filter(|k| match k {
                Key::Meeting(m) | Key::Placement(m, _) | Key::Room(m) | Key::Collab(m) => m == id,
                _ => false,
            })
            .filter_map(deleted)
            .map(|c| (c, None))
            .collect();
        inner.commit(changes);
        inner.registrants.retain(|(m, _), _| m != id);
        inner.attendance.retain(|(m, _), _| m != id);
        Ok(())
    }

    async fn commit_placement(
        &self,
        meeting: &MeetingId,
        slot: &Slot,
        node: &NodeId,
        expected: Option<&StoredPlacement>,
    ) -> Result<PlacementCommit, StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        let now = inner.placement(meeting, slot);
        let unchanged = match (expected, &now) {
            (None, None) => true,
            (Some(e), Some(n)) => e.mod_revision == n.mod_revision,
            _ => false,
        };
        if !unchanged {
            return Ok(PlacementCommit::Lost(now));
        }
        let placed = StoredPlacement {
            node: node.clone(),
            epoch: expected.map_or(1, |p| p.epoch + 1),
            placed_unix_ms: common::unix_ms(),
            mod_revision: 0,
        };
        let change = Change::Placement(meeting.clone(), slot.clone(), Some(placed.clone()));
        let rev = inner.commit(vec![(change, None)]);
        Ok(PlacementCommit::Committed(StoredPlacement {
            mod_revision: rev,
            ..placed
        }))
    }

    async fn remove_placement(
        &self,
        meeting: &MeetingId,
        slot: &Slot,
        mod_revision: i64,
    ) -> Result<bool, StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        if inner
            .placement(meeting, slot)
            .is_none_or(|p| p.mod_revision != mod_revision)
        {
            return Ok(false);
        }
        inner.commit(vec![(
            Change::Placement(meeting.clone(), slot.clone(), None),
            None,
        )]);
        Ok(true)
    }

    async fn placements(
        &self,
        meeting: &MeetingId,
    ) -> Result<BTreeMap<Slot, StoredPlacement>, StoreError> {
        self.read(|i| {
            i.records
                .values()
                .filter_map(|r| match &r.change {
                    Change::Placement(m, s, Some(p)) if m == meeting => {
                        Some((s.clone(), p.clone()))
                    }
                    _ => None,
                })
                .collect()
        })
    }

    async fn put_recording(&self, r: &Recording) -> Result<(), StoreError> {
        self.before_write().await?;
        self.lock().commit(vec![(
            Change::Recording(r.id.clone(), Some(r.clone())),
            None,
        )]);
        Ok(())
    }

    async fn get_recording(&self, id: &RecordingId) -> Result<Option<Recording>, StoreError> {
        self.read(|i| {
            one(&i.records, Key::Recording(id.clone()), |c| match c {
                Change::Recording(_, r) => r.clone(),
                _ => None,
            })
        })
    }

    async fn delete_recording(
        &self,
        id: &RecordingId,
        erasures: &[Erasure],
    ) -> Result<(), StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        if inner.records.contains_key(&Key::Recording(id.clone())) {
            inner.commit(vec![(Change::Recording(id.clone(), None), None)]);
        }
        inner.erasures.extend(erasures.iter().cloned());
        Ok(())
    }

    async fn erasures(&self) -> Result<Vec<Erasure>, StoreError> {
        self.read(|i| i.erasures.iter().cloned().collect())
    }

    async fn drop_erasure(&self, e: &Erasure) -> Result<(), StoreError> {
        self.before_write().await?;
        self.lock().erasures.remove(e);
        Ok(())
    }

    async fn update_cloud_recording(
        &self,
        meeting: &MeetingId,
        change: &mut CloudChange<'_>,
    ) -> Result<bool, StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        let mut room = one(&inner.records, Key::Room(meeting.clone()), |c| match c {
            Change::Room(_, r) => r.clone(),
            _ => None,
        })
        .unwrap_or_default();
        let Some((cloud, mut action)) = change(room.cloud.clone()) else {
            return Ok(false);
        };
        if cloud.is_some() {
            room.cloud = cloud;
        }
        action.seq = room.actions.last().map_or(1, |a| a.seq + 1);
        room.actions.push(action);
        inner.commit(vec![(Change::Room(meeting.clone(), Some(room)), None)]);
        Ok(true)
    }

    async fn create_account(&self, a: &Account) -> Result<bool, StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        if inner.accounts.contains_key(&a.email) {
            return Ok(false);
        }
        inner.accounts.insert(a.email.clone(), a.clone());
        Ok(true)
    }

    async fn update_account(&self, a: &Account) -> Result<bool, StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        let Some(there) = inner.accounts.get_mut(&a.email) else {
            return Ok(false);
        };
        *there = a.clone();
        Ok(true)
    }

    async fn get_account(&self, email: &str) -> Result<Option<Account>, StoreError> {
        self.read(|i| i.accounts.get(&email.to_lowercase()).cloned())
    }

    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(|i| i.accounts.values().cloned().collect())
    }

    async fn delete_account(&self, email: &str) -> Result<(), StoreError> {
        self.before_write().await?;
        self.lock().accounts.remove(&email.to_lowercase());
        Ok(())
    }

    async fn get_org_settings(&self, org: &str) -> Result<Option<OrgSettings>, StoreError> {
        self.read(|i| i.orgs.get(org).cloned())
    }

    async fn put_org_settings(&self, org: &str, s: &OrgSettings) -> Result<(), StoreError> {
        self.before_write().await?;
        self.lock().orgs.insert(org.to_owned(), s.clone());
        Ok(())
    }

    async fn put_registrant(&self, r: &Registrant) -> Result<(), StoreError> {
        self.before_write().await?;
        self.lock()
            .registrants
            .insert((r.meeting.clone(), r.id.clone()), r.clone());
        Ok(())
    }

    async fn get_registrant(
        &self,
        meeting: &MeetingId,
        id: &str,
    ) -> Result<Option<Registrant>, StoreError> {
        self.read(|i| {
            i.registrants
                .get(&(meeting.clone(), id.to_owned()))
                .cloned()
        })
    }

    async fn registrants(&self, meeting: &MeetingId) -> Result<Vec<Registrant>, StoreError> {
        self.read(|i| {
            i.registrants
                .iter()
                .filter(|((m, _), _)| m == meeting)
                .map(|(_, r)| r.clone())
                .collect()
        })
    }

    async fn put_attendance(&self, meeting: &MeetingId, a: &Attendance) -> Result<(), StoreError> {
        self.before_write().await?;
        self.lock()
            .attendance
            .insert((meeting.clone(), a.participant_id.clone()), a.clone());
        Ok(())
    }

    async fn attendance(&self, meeting: &MeetingId) -> Result<Vec<Attendance>, StoreError> {
        self.read(|i| {
            i.attendance
                .iter()
                .filter(|((m, _), _)| m == meeting)
                .map(|(_, a)| a.clone())
                .collect()
        })
    }

    async fn grant_lease(&self, _ttl: Duration) -> Result<Lease, StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        let lease = Lease(inner.next_lease);
        inner.next_lease += 1;
        inner.leases.insert(lease, Vec::new());
        Ok(lease)
    }

    async fn revoke_lease(&self, lease: Lease) -> Result<(), StoreError> {
        self.before_write().await?;
        self.lock().revoke(lease);
        Ok(())
    }

    async fn put_media_node(&self, n: &MediaNode, lease: Lease) -> Result<(), StoreError> {
        self.put_leased(Change::MediaNode(n.id.clone(), Some(n.clone())), lease)
            .await
    }

    async fn put_recording_node(&self, n: &RecordingNode, lease: Lease) -> Result<(), StoreError> {
        self.put_leased(Change::RecordingNode(n.id.clone(), Some(n.clone())), lease)
            .await
    }

    async fn put_load(&self, node: &NodeId, l: &NodeLoad, lease: Lease) -> Result<(), StoreError> {
        self.put_leased(Change::Load(node.clone(), Some(*l)), lease)
            .await
    }

    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.read(|i| Snapshot {
            revision: i.revision,
            records: i.records.values().map(|r| r.change.clone()).collect(),
        })
    }

    async fn watch(&self, revision: i64) -> Result<ChangeStream, StoreError> {
        let (backlog, rx, ended) = {
            let inner = self.lock();
            inner.check_up()?;
            if revision < inner.compacted {
                return Err(StoreError::Compacted(inner.compacted));
            }
            let backlog: VecDeque<Batch> = inner
                .history
                .iter()
                .filter(|b| b.revision > revision)
                .cloned()
                .collect();
            // Subscribed under the lock that commits: nothing falls between the two.
            (backlog, inner.feed.subscribe(), inner.watches.clone())
        };
        struct Feed {
            backlog: VecDeque<Batch>,
            rx: broadcast::Receiver<Batch>,
            ended: CancellationToken,
        }
        let feed = Feed { backlog, rx, ended };
        let lost = |why: &str| Err(StoreError::WatchLost(why.to_owned()));
        let stream = futures::stream::unfold(Some(feed), move |feed| async move {
            let mut f = feed?;
            if f.ended.is_cancelled() {
                return Some((lost("watch broken (injected)"), None));
            }
            if let Some(b) = f.backlog.pop_front() {
                return Some((Ok(b), Some(f)));
            }
            tokio::select! {
                _ = f.ended.cancelled() => Some((lost("watch broken (injected)"), None)),
                r = f.rx.recv() => match r {
                    Ok(b) => Some((Ok(b), Some(f))),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        Some((lost("watcher fell behind"), None))
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                },
            }
        });
        Ok(stream.boxed())
    }

    async fn campaign(
        &self,
        _candidate: &str,
        _ttl: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<Term>, StoreError> {
        loop {
            let vacated = self.vacated.notified();
            tokio::pin!(vacated);
            vacated.as_mut().enable();
            {
                let mut inner = self.lock();
                inner.check_up()?;
                if inner.leader.is_none() {
                    inner.terms += 1;
                    let term = inner.terms;
                    let lost = CancellationToken::new();
                    inner.leader = Some((term, lost.clone()));
                    let store = self.clone();
                    let resign = async move {
                        let mut inner = store.lock();
                        if inner.leader.as_ref().is_some_and(|(t, _)| *t == term) {
                            inner.leader = None;
                            drop(inner);
                            store.vacated.notify_waiters();
                        }
                    };
                    return Ok(Some(Term::new(lost, Box::pin(resign))));
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = vacated => {}
            }
        }
    }
}

impl MemoryStore {
    async fn put_leased(&self, change: Change, lease: Lease) -> Result<(), StoreError> {
        self.before_write().await?;
        let mut inner = self.lock();
        if !inner.leases.contains_key(&lease) {
            return Err(StoreError::Unavailable(format!(
                "lease {} not found (expired or revoked)",
                lease.0
            )));
        }
        inner.commit(vec![(change, Some(lease))]);
        Ok(())
    }
}
