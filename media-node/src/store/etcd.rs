//! The meeting store in etcd: the records under the meeting's key
//! (`/fjord/meetings/{m}`, `…/room`, `…/collab`, `…/attendance/{p}`), followed with a
//! read and a watch from the revision read — one of each per meeting for all that a node
//! follows of it (`feed.rs`) — changed with a compare-and-swap on the key's
//! revision. It reads and writes the stored records (`state.proto`), converted to the
//! meeting layer's types at once (`convert.rs`).
#![allow(clippy::disallowed_types)]

use common::config::EtcdConfig;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::ids::{MeetingId, NodeId, ParticipantId};
use common::keyspace::Keyspace;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use prost::Message;
use proto::{
    AttendanceRecord, MeetingCollabRecord, MeetingRecord, MeetingRoomRecord, PlacementRecord,
};
use tokio_util::sync::CancellationToken;

use super::feed::{Feeds, Keys, On};
use super::watches::Watches;
use super::{
    ATTEMPTS, Attendance, Change, CollabRecord, MeetingSettings, MeetingStore, RoomRecord, Seen,
    StoreError, Take,
};

/// The meeting store in etcd (cheap to share: its state is behind one `Arc`, which the
/// meetings' feeds hold too).
pub struct EtcdStore(Arc<Shared>);

/// What the store's calls and its meetings' feeds (`feed.rs`) share.
pub struct Shared {
    config: EtcdConfig,
    keyspace: Keyspace,
    /// Made at first use; None while the node shuts down before etcd answers.
    client: tokio::sync::OnceCell<etcd_client::Client>,
    /// The one watch stream every follower's watch goes on (`watches.rs`).
    watches: tokio::sync::OnceCell<Watches>,
    shutdown: CancellationToken,
    /// One read and one watch per followed meeting (`feed.rs`).
    feeds: Feeds,
}

impl std::ops::Deref for EtcdStore {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl EtcdStore {
    pub fn new(config: EtcdConfig, shutdown: CancellationToken) -> Self {
        EtcdStore(Arc::new(Shared {
            keyspace: Keyspace::new(&config.prefix),
            config,
            client: tokio::sync::OnceCell::new(),
            watches: tokio::sync::OnceCell::new(),
            shutdown,
            feeds: Feeds::default(),
        }))
    }

    /// Follows the records under `keys` in `meeting`'s feed until `stop`.
    async fn follow_in_feed(
        &self,
        what: &'static str,
        meeting: &MeetingId,
        keys: Keys,
        on: On,
        stop: CancellationToken,
    ) {
        let _attached = self.feeds.attach(&self.0, meeting, what, keys, on);
        stop.cancelled().await;
    }

    /// Follows the record at `key` (`what` names it in logs) until `stop`.
    async fn follow<R: Message + Default + 'static>(
        &self,
        what: &'static str,
        meeting: &MeetingId,
        key: String,
        stop: CancellationToken,
        mut take: Take<R>,
    ) {
        let on = move |w: Watched<'_>| {
            match w {
                Watched::Read(kvs, revision) => {
                    let rec = kvs.first().map(|(_, v)| R::decode(*v)).transpose()?;
                    take(Seen::Read(rec, revision));
                }
                Watched::Put(_, value, at) => take(Seen::Changed(Some(R::decode(value)?), at)),
                Watched::Delete(_, at) => take(Seen::Changed(None, at)),
                Watched::Synced => {}
            }
            Ok(())
        };
        let keys = Keys::Exact(key.into_bytes());
        self.follow_in_feed(what, meeting, keys, Box::new(on), stop)
            .await;
    }
}

impl Shared {
    pub(super) fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    pub(super) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The key prefix of the cluster's state.
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// A connection to etcd (made once, at first use); None when the node shuts down
    /// before etcd answers.
    pub async fn client(&self) -> Option<etcd_client::Client> {
        self.client
            .get_or_try_init(|| async {
                common::etcd::connect(&self.config, &self.shutdown)
                    .await
                    .ok_or(())
            })
            .await
            .ok()
            .cloned()
    }

    pub(super) async fn connected(&self) -> Result<etcd_client::Client, StoreError> {
        self.client().await.ok_or(StoreError::Unavailable)
    }

    /// The node's shared watch stream (started at first use).
    pub(super) async fn watches(&self) -> Result<&Watches, StoreError> {
        self.watches
            .get_or_try_init(|| async {
                let client = self.connected().await?;
                Ok(Watches::start(client, self.shutdown.clone()))
            })
            .await
    }

    /// Changes the record at `key` with `change` (given the stored record, or a new
    /// one) in one write that no concurrent one overwrites: read, change, write if the
    /// key is still as read, else again (up to [`ATTEMPTS`] times).
    async fn update<R: Message + Default>(
        &self,
        key: &str,
        change: Change<'_, R>,
    ) -> Result<(R, i64), StoreError> {
        let mut etcd = self.connected().await?;
        for _ in 0..ATTEMPTS {
            let got = etcd.get(key, None).await?;
            let (mut rec, unchanged) = match got.kvs().first() {
                Some(kv) => (
                    R::decode(kv.value())?,
                    Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision()),
                ),
                None => (R::default(), Compare::version(key, CompareOp::Equal, 0)),
            };
            change(&mut rec);
            let txn =
                Txn::new()
                    .when([unchanged])
                    .and_then([TxnOp::put(key, rec.encode_to_vec(), None)]);
            let done = etcd.txn(txn).await?;
            if done.succeeded() {
                let revision = done.header().map_or(0, |h| h.revision());
                return Ok((rec, revision));
            }
        }
        Err(StoreError::Contended)
    }
}

/// What a follower of keys sees.
pub(super) enum Watched<'a> {
    /// Every key and value there (under a prefix), read at a revision.
    Read(Vec<(&'a [u8], &'a [u8])>, i64),
    Put(&'a [u8], &'a [u8], i64),
    Delete(&'a [u8], i64),
    /// The end of a read or of one watch response: what was seen is consistent.
    Synced,
}

pub(super) fn watch_error(why: String) -> StoreError {
    StoreError::Etcd(etcd_client::Error::WatchError(why))
}

/// The node a placement record names, if it reads.
fn placed_node(value: &[u8]) -> Option<NodeId> {
    let p = PlacementRecord::decode(value).ok()?;
    NodeId::parse(&p.node_id).ok()
}

#[async_trait::async_trait]
impl MeetingStore for EtcdStore {
    async fn follow_placements(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        mut take: Box<dyn FnMut(HashSet<NodeId>) + Send>,
    ) {
        let prefix = self.keyspace.placements_of(meeting);
        // Placement key → node; told as a set at every consistent point.
        let mut placed: HashMap<Vec<u8>, NodeId> = HashMap::new();
        let on = move |w: Watched<'_>| {
            match w {
                Watched::Read(kvs, _) => {
                    placed = kvs
                        .into_iter()
                        .filter_map(|(k, v)| Some((k.to_vec(), placed_node(v)?)))
                        .collect();
                }
                Watched::Put(k, v, _) => match placed_node(v) {
                    Some(n) => {
                        placed.insert(k.to_vec(), n);
                    }
                    None => {
                        placed.remove(k);
                    }
                },
                Watched::Delete(k, _) => {
                    placed.remove(k);
                }
                Watched::Synced => take(placed.values().cloned().collect()),
            }
            Ok(())
        };
        let keys = Keys::Prefix(prefix.into_bytes());
        self.follow_in_feed("placements", meeting, keys, Box::new(on), stop)
            .await;
    }

    async fn meeting(&self, meeting: &MeetingId) -> Result<Option<MeetingSettings>, StoreError> {
        let mut etcd = self.connected().await?;
        let got = etcd.get(self.keyspace.meeting(meeting), None).await?;
        let Some(kv) = got.kvs().first() else {
            return Ok(None);
        };
        let m = MeetingRecord::decode(kv.value())?;
        Ok(Some(MeetingSettings {
            webinar: m.kind == proto::MeetingKind::Webinar as i32,
            title: m.title,
            waiting_room: m.waiting_room,
            residency: (!m.residency.is_empty()).then_some(m.residency),
            cloud_recording_refusal: common::cloud_recording::refusal(
                m.e2ee,
                m.recording_forbidden,
                m.recording_needs_classification,
            ),
        }))
    }

    async fn follow_room(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        mut take: Take<RoomRecord>,
    ) {
        let key = self.keyspace.room(meeting);
        let stored = move |seen: Seen<MeetingRoomRecord>| take(seen.map(RoomRecord::from));
        self.follow("room record", meeting, key, stop, Box::new(stored))
            .await;
    }

    async fn update_room(
        &self,
        meeting: &MeetingId,
        change: Change<'_, RoomRecord>,
    ) -> Result<(RoomRecord, i64), StoreError> {
        let mut stored = |rec: &mut MeetingRoomRecord| {
            let mut room = RoomRecord::from(std::mem::take(rec));
            change(&mut room);
            *rec = MeetingRoomRecord::from(&room);
        };
        let (rec, at) = self
            .update(&self.keyspace.room(meeting), &mut stored)
            .await?;
        Ok((RoomRecord::from(rec), at))
    }

    async fn follow_collab(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        mut take: Take<CollabRecord>,
    ) {
        let key = self.keyspace.collab(meeting);
        let stored = move |seen: Seen<MeetingCollabRecord>| take(seen.map(CollabRecord::from));
        self.follow("polls and Q&A", meeting, key, stop, Box::new(stored))
            .await;
    }

    async fn update_collab(
        &self,
        meeting: &MeetingId,
        change: Change<'_, CollabRecord>,
    ) -> Result<(CollabRecord, i64), StoreError> {
        let mut stored = |rec: &mut MeetingCollabRecord| {
            let mut collab = CollabRecord::from(std::mem::take(rec));
            change(&mut collab);
            *rec = MeetingCollabRecord::from(&collab);
        };
        let (rec, at) = self
            .update(&self.keyspace.collab(meeting), &mut stored)
            .await?;
        Ok((CollabRecord::from(rec), at))
    }

    async fn put_attendance(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
        rec: &Attendance,
        over: Option<&Attendance>,
    ) -> Result<bool, StoreError> {
        let key = self.keyspace.attendance(meeting, participant);
        let put = TxnOp::put(
            key.as_str(),
            AttendanceRecord::from(rec).encode_to_vec(),
            None,
        );
        let txn = match over {
            Some(old) => Txn::new()
                .when([Compare::value(
                    key.as_str(),
                    CompareOp::Equal,
                    AttendanceRecord::from(old).encode_to_vec(),
                )])
                .and_then([put]),
            None => Txn::new().and_then([put]),
        };
        Ok(self.connected().await?.txn(txn).await?.succeeded())
    }

    async fn attendance(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
    ) -> Result<Option<Attendance>, StoreError> {
        let key = self.keyspace.attendance(meeting, participant);
        let got = self.connected().await?.get(key, None).await?;
        Ok(got
            .kvs()
            .first()
            .map(|kv| AttendanceRecord::decode(kv.value()).map(Attendance::from))
            .transpose()?)
    }
}
