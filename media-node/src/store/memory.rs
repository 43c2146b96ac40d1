//! The meeting store in memory, with the etcd store's contract: one revision counter for
//! every write, compare-and-swap changes, follows that read and then see every change
//! (coalesced, as a watch that fell behind and re-read would), and an outage to inject
//! (every call fails, follows hear nothing, and read afresh once it ends).
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use common::ids::{MeetingId, NodeId, ParticipantId};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    Attendance, Change, CollabRecord, MeetingSettings, MeetingStore, RoomRecord, Seen, StoreError,
    Take,
};

#[derive(Default)]
struct State {
    revision: i64,
    /// Bumped when an outage ends: followers read afresh.
    outages_ended: u64,
    down: bool,
    meetings: HashMap<MeetingId, MeetingSettings>,
    rooms: HashMap<MeetingId, (RoomRecord, i64)>,
    collabs: HashMap<MeetingId, (CollabRecord, i64)>,
    attendance: HashMap<(MeetingId, ParticipantId), Attendance>,
    /// Placement slot → node, per meeting.
    placements: HashMap<MeetingId, HashMap<String, NodeId>>,
}

/// A record as a follower sees it: the record and the revision it was written at.
type Versioned<R> = Option<(R, i64)>;

pub struct MemoryStore {
    state: Mutex<State>,
    /// The revision after every write (and outage change): what followers wait on.
    changed: watch::Sender<i64>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            state: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory store")
    }

    /// Creates (or replaces) a meeting, as the controller does.
    pub fn put_meeting(&self, meeting: &MeetingId, settings: MeetingSettings) {
        let mut s = self.lock();
        s.revision += 1;
        s.meetings.insert(meeting.clone(), settings);
        self.changed.send_replace(s.revision);
    }

    /// Places `meeting` on `node` in `slot` (replacing what the slot held), or empties
    /// the slot (None), as the controller's placement and the reconciler do.
    pub fn place(&self, meeting: &MeetingId, slot: &str, node: Option<NodeId>) {
        let mut s = self.lock();
        s.revision += 1;
        let slots = s.placements.entry(meeting.clone()).or_default();
        match node {
            Some(n) => {
                slots.insert(slot.to_owned(), n);
            }
            None => {
                slots.remove(slot);
            }
        }
        self.changed.send_replace(s.revision);
    }

    /// Deletes a meeting and everything under it, as the controller's retention does.
    pub fn delete_meeting(&self, meeting: &MeetingId) {
        let mut s = self.lock();
        s.revision += 1;
        s.meetings.remove(meeting);
        s.rooms.remove(meeting);
        s.collabs.remove(meeting);
        s.attendance.retain(|(m, _), _| m != meeting);
        s.placements.remove(meeting);
        self.changed.send_replace(s.revision);
    }

    /// Starts (true) or ends (false) an outage.
    pub fn set_down(&self, down: bool) {
        let mut s = self.lock();
        if s.down && !down {
            s.outages_ended += 1;
        }
        s.down = down;
        self.changed.send_replace(s.revision);
    }

    fn up(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        let s = self.lock();
        if s.down {
            return Err(StoreError::Unavailable);
        }
        Ok(s)
    }

    async fn follow<R: Clone>(
        &self,
        stop: CancellationToken,
        mut take: Take<R>,
        get: impl Fn(&State) -> Versioned<R>,
    ) {
        let mut rx = self.changed.subscribe();
        // What was last told: the revision of the record (0: none), and the outages
        // ended by then (None: nothing read yet).
        let mut told: i64 = 0;
        let mut read_after: Option<u64> = None;
        loop {
            let news = {
                let s = self.lock();
                if s.down {
                    None
                } else if read_after != Some(s.outages_ended) {
                    read_after = Some(s.outages_ended);
                    let rec = get(&s);
                    told = rec.as_ref().map_or(0, |r| r.1);
                    Some(Seen::Read(rec.map(|r| r.0), s.revision))
                } else {
                    match get(&s) {
                        Some((rec, at)) if at > told => {
                            told = at;
                            Some(Seen::Changed(Some(rec), at))
                        }
                        None if told > 0 => {
                            told = 0;
                            Some(Seen::Changed(None, s.revision))
                        }
                        _ => None,
                    }
                }
            };
            if let Some(seen) = news {
                take(seen);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }

    fn update<R: Default + Clone>(
        &self,
        change: Change<'_, R>,
        table: impl FnOnce(&mut State) -> &mut HashMap<MeetingId, (R, i64)>,
        meeting: &MeetingId,
    ) -> Result<(R, i64), StoreError> {
        let mut s = self.up()?;
        let revision = s.revision + 1;
        let entry = table(&mut s)
            .entry(meeting.clone())
            .or_insert_with(|| (R::default(), 0));
        change(&mut entry.0);
        entry.1 = revision;
        let written = entry.0.clone();
        s.revision = revision;
        self.changed.send_replace(revision);
        Ok((written, revision))
    }
}

#[async_trait::async_trait]
impl MeetingStore for MemoryStore {
    async fn follow_placements(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        mut take: Box<dyn FnMut(HashSet<NodeId>) + Send>,
    ) {
        let mut rx = self.changed.subscribe();
        let mut told: Option<HashSet<NodeId>> = None;
        loop {
            let now = {
                let s = self.lock();
                (!s.down).then(|| {
                    s.placements
                        .get(meeting)
                        .map(|slots| slots.values().cloned().collect::<HashSet<_>>())
                        .unwrap_or_default()
                })
            };
            if let Some(now) = now
                && told.as_ref() != Some(&now)
            {
                told = Some(now.clone());
                take(now);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn meeting(&self, meeting: &MeetingId) -> Result<Option<MeetingSettings>, StoreError> {
        Ok(self.up()?.meetings.get(meeting).cloned())
    }

    async fn follow_room(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        take: Take<RoomRecord>,
    ) {
        self.follow(stop, take, |s| s.rooms.get(meeting).cloned())
            .await;
    }

    async fn update_room(
        &self,
        meeting: &MeetingId,
        change: Change<'_, RoomRecord>,
    ) -> Result<(RoomRecord, i64), StoreError> {
        self.update(change, |s| &mut s.rooms, meeting)
    }

    async fn follow_collab(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        take: Take<CollabRecord>,
    ) {
        self.follow(stop, take, |s| s.collabs.get(meeting).cloned())
            .await;
    }

    async fn update_collab(
        &self,
        meeting: &MeetingId,
        change: Change<'_, CollabRecord>,
    ) -> Result<(CollabRecord, i64), StoreError> {
        self.update(change, |s| &mut s.collabs, meeting)
    }

    async fn put_attendance(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
        rec: &Attendance,
        over: Option<&Attendance>,
    ) -> Result<bool, StoreError> {
        let mut s = self.up()?;
        let key = (meeting.clone(), participant.clone());
        if over.is_some() && s.attendance.get(&key) != over {
            return Ok(false);
        }
        s.revision += 1;
        s.attendance.insert(key, rec.clone());
        self.changed.send_replace(s.revision);
        Ok(true)
    }

    async fn attendance(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
    ) -> Result<Option<Attendance>, StoreError> {
        let key = (meeting.clone(), participant.clone());
        Ok(self.up()?.attendance.get(&key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_outage_fails_every_call_and_a_follower_reads_afresh_after_it() {
        let store = MemoryStore::new();
        let m = MeetingId::parse("m1").unwrap();
        let seen: std::sync::Arc<Mutex<Vec<Seen<RoomRecord>>>> = Default::default();
        let (got, stop) = (seen.clone(), CancellationToken::new());
        let follower = {
            let store = std::sync::Arc::new(store);
            let (s, m, stop) = (store.clone(), m.clone(), stop.clone());
            tokio::spawn(async move {
                let take = move |x| got.lock().unwrap().push(x);
                s.follow_room(&m, stop, Box::new(take)).await
            });
            store
        };
        let until = |n: usize| {
            let seen = seen.clone();
            async move {
                while seen.lock().unwrap().len() < n {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        };
        until(1).await;
        follower.set_down(true);
        assert!(matches!(
            follower.update_room(&m, &mut |r| r.locked = true).await,
            Err(StoreError::Unavailable)
        ));
        assert!(follower.meeting(&m).await.is_err());
        follower.set_down(false);
        // Back: the follower reads the record afresh, then sees changes again.
        until(2).await;
        follower
            .update_room(&m, &mut |r| r.locked = true)
            .await
            .unwrap();
        until(3).await;
        stop.cancel();
        let seen = seen.lock().unwrap();
        assert!(matches!(seen[0], Seen::Read(None, _)), "{seen:?}");
        assert!(matches!(seen[1], Seen::Read(None, _)), "{seen:?}");
        assert!(
            matches!(&seen[2], Seen::Changed(Some(r), _) if r.locked),
            "{seen:?}"
        );
    }
}
