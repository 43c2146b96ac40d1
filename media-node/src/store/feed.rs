//! One read and one watch for everything a node follows of a meeting. A node follows
//! three records of each meeting placed on it — its placements (the mesh), its room
//! (host controls) and its polls and Q&A — and each follower used to read its key and
//! watch it: three reads and three watcher registrations on etcd per prepared meeting,
//! which in a join storm (1,000 meetings placed on 20 nodes in a second or two) made
//! etcd, not the controller, the bound of the first joins. The three keys sit next to
//! each other under the meeting's key (`…/collab`, `…/placement/…`, `…/room`), so one
//! range watch from `…/collab` to `…/room` serves them all, after one read — a
//! transaction of two gets, `…/collab` to the end of `…/placement/`, and `…/room`, at one
//! revision: the meeting's registrants sort between them (up to 10,000 records, each with
//! its answers: megabytes, past a gRPC message's 4 MiB) and are not read. A meeting's
//! feed hands each follower what is under its keys (a registrant's change, which the
//! watch does see, wakes none; attendance sorts before the range).
//!
//! A feed starts with its first follower and ends with its last. A follower that comes
//! while the feed runs is given what the feed has seen, as a read at the feed's revision
//! (what its watch has brought so far: a write that completed a moment before may come
//! after it, as a change). Followers are called under the feed's lock, in order; a
//! follower that panicked leaves the lock poisoned, which the others go past.
//! After a broken watch every follower gets a fresh read, as a follower of its own would.
#![allow(clippy::disallowed_types)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use common::ids::MeetingId;
use etcd_client::{GetOptions, Txn, TxnOp, TxnOpResponse, WatchOptions};
use tokio_util::sync::CancellationToken;

use super::etcd::{Shared, Watched, watch_error};
use super::{RETRY_FIRST, StoreError, back_off};

/// Takes what a follower's keys see; an error (a record that does not decode) is
/// logged, and the follower goes on with the next change.
pub(super) type On = Box<dyn FnMut(Watched<'_>) -> Result<(), StoreError> + Send>;

/// The keys of the meeting's range a follower takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Keys {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
}

impl Keys {
    fn matches(&self, key: &[u8]) -> bool {
        match self {
            Keys::Exact(k) => key == k.as_slice(),
            Keys::Prefix(p) => key.starts_with(p),
        }
    }
}

/// A feed's lock, even after a follower panicked under it: what it guards stays whole
/// (the follower's own state is its own), and every other meeting's following goes on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The feeds of the meetings this node follows, by meeting.
#[derive(Default)]
pub(super) struct Feeds(Mutex<HashMap<MeetingId, Arc<Feed>>>);

struct Feed {
    stop: CancellationToken,
    /// The keys any follower may take: what the feed keeps of the range.
    kept: [Keys; 3],
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    followers: Vec<Follower>,
    /// What the feed has read and seen change since (kept keys only), and the revision
    /// it is as of; None until the first read.
    known: Option<(Records, i64)>,
}

/// Key → value, of the keys a feed keeps.
type Records = BTreeMap<Vec<u8>, Vec<u8>>;

struct Follower {
    id: u64,
    what: &'static str,
    keys: Keys,
    on: On,
}

impl Follower {
    fn take(&mut self, meeting: &MeetingId, w: Watched<'_>) {
        if let Err(e) = (self.on)(w) {
            tracing::warn!(%meeting, error = %e, "the meeting's {} is unreadable", self.what);
        }
    }

    /// A read of what `known` has under the follower's keys, as of `revision`.
    fn read(&mut self, meeting: &MeetingId, known: &Records, revision: i64) {
        let kvs = known
            .iter()
            .filter(|(k, _)| self.keys.matches(k))
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        self.take(meeting, Watched::Read(kvs, revision));
        self.take(meeting, Watched::Synced);
    }
}

/// A follower of a feed; detached (and the feed ended, if it was the last) when dropped.
pub(super) struct Attached<'a> {
    feeds: &'a Feeds,
    meeting: MeetingId,
    id: u64,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        let mut feeds = lock(&self.feeds.0);
        let Some(feed) = feeds.get(&self.meeting) else {
            return;
        };
        let mut state = lock(&feed.state);
        state.followers.retain(|f| f.id != self.id);
        if state.followers.is_empty() {
            feed.stop.cancel();
            drop(state);
            feeds.remove(&self.meeting);
        }
    }
}

impl Feeds {
    /// Adds a follower of `keys` (one of the three the feed serves) to `meeting`'s feed,
    /// started if there is none; `what` names the follower's record in logs.
    pub(super) fn attach(
        &self,
        shared: &Arc<Shared>,
        meeting: &MeetingId,
        what: &'static str,
        keys: Keys,
        on: On,
    ) -> Attached<'_> {
        let mut feeds = lock(&self.0);
        let feed = feeds.entry(meeting.clone()).or_insert_with(|| {
            let ks = shared.keyspace();
            let feed = Arc::new(Feed {
                stop: shared.shutdown().child_token(),
                kept: [
                    Keys::Prefix(ks.placements_of(meeting).into_bytes()),
                    Keys::Exact(ks.room(meeting).into_bytes()),
                    Keys::Exact(ks.collab(meeting).into_bytes()),
                ],
                state: Mutex::default(),
            });
            tokio::spawn(run(shared.clone(), meeting.clone(), feed.clone()));
            feed
        });
        debug_assert!(
            feed.kept.contains(&keys),
            "a feed serves {keys:?} only if it keeps it"
        );
        let mut state = lock(&feed.state);
        let id = state.next_id;
        state.next_id += 1;
        let mut follower = Follower { id, what, keys, on };
        if let Some((known, revision)) = &state.known {
            follower.read(meeting, known, *revision);
        }
        state.followers.push(follower);
        Attached {
            feeds: self,
            meeting: meeting.clone(),
            id,
        }
    }
}

impl Feed {
    fn keeps(&self, key: &[u8]) -> bool {
        self.kept.iter().any(|k| k.matches(key))
    }

    /// A fresh read of the range: every follower is told what is under its keys.
    fn read<'a>(
        &self,
        meeting: &MeetingId,
        kvs: impl Iterator<Item = &'a etcd_client::KeyValue>,
        revision: i64,
    ) {
        let known: Records = kvs
            .filter(|kv| self.keeps(kv.key()))
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect();
        let mut state = lock(&self.state);
        for f in &mut state.followers {
            f.read(meeting, &known, revision);
        }
        state.known = Some((known, revision));
    }

    /// Changes seen by the watch: each follower is told those under its keys, then that
    /// it is synced (a follower with none is not woken).
    fn changed(&self, meeting: &MeetingId, events: &[etcd_client::Event]) {
        let mut state = lock(&self.state);
        let State {
            followers, known, ..
        } = &mut *state;
        let Some((known, revision)) = known else {
            return;
        };
        let events: Vec<_> = events
            .iter()
            .filter_map(|ev| Some((ev.event_type(), ev.kv()?)))
            .filter(|(_, kv)| self.keeps(kv.key()))
            .collect();
        for (kind, kv) in &events {
            *revision = (*revision).max(kv.mod_revision());
            match kind {
                etcd_client::EventType::Put => {
                    known.insert(kv.key().to_vec(), kv.value().to_vec());
                }
                etcd_client::EventType::Delete => {
                    known.remove(kv.key());
                }
            }
        }
        for f in followers.iter_mut() {
            let mut told = false;
            for (kind, kv) in &events {
                if !f.keys.matches(kv.key()) {
                    continue;
                }
                told = true;
                f.take(
                    meeting,
                    match kind {
                        etcd_client::EventType::Put => {
                            Watched::Put(kv.key(), kv.value(), kv.mod_revision())
                        }
                        etcd_client::EventType::Delete => {
                            Watched::Delete(kv.key(), kv.mod_revision())
                        }
                    },
                );
            }
            if told {
                f.take(meeting, Watched::Synced);
            }
        }
    }
}

/// Reads the meeting's followed range and watches it from the revision read, until the
/// feed stops; all of it again after a broken watch (the store's one back-off between
/// tries).
async fn run(shared: Arc<Shared>, meeting: MeetingId, feed: Arc<Feed>) {
    let ks = shared.keyspace();
    // `…/collab` sorts first of the three, `…/room` last; a range's end is exclusive. The
    // read leaves out what sorts between `…/placement/` and `…/room`: the registrants.
    let from = ks.collab(&meeting);
    let to = format!("{}\0", ks.room(&meeting));
    let placements_end = format!("{}0", ks.placements_of(&meeting).trim_end_matches('/'));
    let room = ks.room(&meeting);
    let mut delay = RETRY_FIRST;
    while !feed.stop.is_cancelled() {
        let result: Result<(), StoreError> = async {
            let mut etcd = shared.connected().await?;
            let read = Txn::new().and_then([
                TxnOp::get(
                    from.as_str(),
                    Some(GetOptions::new().with_range(placements_end.as_str())),
                ),
                TxnOp::get(room.as_str(), None),
            ]);
            let r = etcd.txn(read).await?;
            let revision = r.header().map_or(0, |h| h.revision());
            let gets = r.op_responses();
            let kvs = gets.iter().flat_map(|op| match op {
                TxnOpResponse::Get(g) => g.kvs(),
                _ => &[],
            });
            feed.read(&meeting, kvs, revision);
            let options = WatchOptions::new()
                .with_start_revision(revision + 1)
                .with_range(to.as_str());
            let mut stream = shared.watches().await?.watch(&from, options);
            // A watch that was up and then broke is followed again after the first
            // pause: only failures to set it up back off further, so that a feed whose
            // watch breaks now and then never sleeps through a change for long.
            delay = RETRY_FIRST;
            loop {
                let msg = tokio::select! {
                    _ = feed.stop.cancelled() => return Ok(()),
                    m = stream.message() => m,
                };
                let Some(resp) = msg else {
                    return Err(watch_error("the node's watch stream broke".into()));
                };
                if resp.canceled() {
                    return Err(watch_error(format!("cancelled: {}", resp.cancel_reason())));
                }
                feed.changed(&meeting, resp.events());
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%meeting, error = %e, "following the meeting's records failed; retrying");
            if !back_off(&feed.stop, &mut delay).await {
                return;
            }
        }
    }
}
