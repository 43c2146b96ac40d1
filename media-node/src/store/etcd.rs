//! The meeting store in etcd: the records under the meeting's key
//! (`/fjord/meetings/{m}`, `…/room`, `…/collab`, `…/attendance/{p}`), followed with a
//! read and a watch from the revision read, changed with a compare-and-swap on the key's
//! revision. It reads and writes the stored records (`state.proto`), converted to the
//! meeting layer's types at once (`convert.rs`).
#![allow(clippy::disallowed_types)]

use common::config::EtcdConfig;
use std::collections::{HashMap, HashSet};

use common::ids::{MeetingId, NodeId, ParticipantId};
use common::keyspace::Keyspace;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, WatchOptions};
use prost::Message;
use proto::{
    AttendanceRecord, MeetingCollabRecord, MeetingRecord, MeetingRoomRecord, PlacementRecord,
};
use tokio_util::sync::CancellationToken;

use super::watches::Watches;
use super::{
    ATTEMPTS, Attendance, Change, CollabRecord, MeetingSettings, MeetingStore, RETRY_FIRST,
    RoomRecord, Seen, StoreError, Take, back_off,
};

pub struct EtcdStore {
    config: EtcdConfig,
    keyspace: Keyspace,
    /// Made at first use; None while the node shuts down before etcd answers.
    client: tokio::sync::OnceCell<etcd_client::Client>,
    /// The one watch stream every follower's watch goes on (`watches.rs`).
    watches: tokio::sync::OnceCell<Watches>,
    shutdown: CancellationToken,
}

impl EtcdStore {
    pub fn new(config: EtcdConfig, shutdown: CancellationToken) -> Self {
        EtcdStore {
            keyspace: Keyspace::new(&config.prefix),
            config,
            client: tokio::sync::OnceCell::new(),
            watches: tokio::sync::OnceCell::new(),
            shutdown,
        }
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

    async fn connected(&self) -> Result<etcd_client::Client, StoreError> {
        self.client().await.ok_or(StoreError::Unavailable)
    }

    /// The node's shared watch stream (started at first use).
    async fn watches(&self) -> Result<&Watches, StoreError> {
        self.watches
            .get_or_try_init(|| async {
                let client = self.connected().await?;
                Ok(Watches::start(client, self.shutdown.clone()))
            })
            .await
    }

    /// Follows `key` (every key under it, with `prefix`) until `stop`: what is there at
    /// once, then every put and delete, each watch response closed by `Synced`; all of it
    /// again after a broken watch (the store's one back-off between tries). `what`
    /// names it in logs.
    async fn watch_keys(
        &self,
        what: &'static str,
        meeting: &MeetingId,
        key: &str,
        prefix: bool,
        stop: &CancellationToken,
        on: &mut (dyn FnMut(Watched<'_>) -> Result<(), StoreError> + Send),
    ) {
        let mut delay = RETRY_FIRST;
        while !stop.is_cancelled() {
            let result: Result<(), StoreError> = async {
                let mut etcd = self.connected().await?;
                let get = prefix.then(|| etcd_client::GetOptions::new().with_prefix());
                let r = etcd.get(key, get).await?;
                let revision = r.header().map_or(0, |h| h.revision());
                let kvs = r.kvs().iter().map(|kv| (kv.key(), kv.value())).collect();
                on(Watched::Read(kvs, revision))?;
                on(Watched::Synced)?;
                let mut options = WatchOptions::new().with_start_revision(revision + 1);
                if prefix {
                    options = options.with_prefix();
                }
                let mut stream = self.watches().await?.watch(key, options);
                // A watch that was up and then broke is followed again after the first
                // pause: only failures to set it up back off further, so that a follower
                // whose watch breaks now and then never sleeps through a change for long.
                delay = RETRY_FIRST;
                loop {
                    let msg = tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        m = stream.message() => m,
                    };
                    let Some(resp) = msg else {
                        return Err(watch_error("the node's watch stream broke".into()));
                    };
                    if resp.canceled() {
                        return Err(watch_error(format!("cancelled: {}", resp.cancel_reason())));
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        on(match ev.event_type() {
                            etcd_client::EventType::Put => {
                                Watched::Put(kv.key(), kv.value(), kv.mod_revision())
                            }
                            etcd_client::EventType::Delete => {
                                Watched::Delete(kv.key(), kv.mod_revision())
                            }
                        })?;
                    }
                    on(Watched::Synced)?;
                }
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(%meeting, error = %e, "following the meeting's {what} failed; retrying");
                if !back_off(stop, &mut delay).await {
                    return;
                }
            }
        }
    }

    /// Follows the record at `key` (`what` names it in logs) until `stop`.
    async fn follow<R: Message + Default>(
        &self,
        what: &'static str,
        meeting: &MeetingId,
        key: String,
        stop: CancellationToken,
        mut take: Take<R>,
    ) {
        let mut on = |w: Watched<'_>| {
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
        self.watch_keys(what, meeting, &key, false, &stop, &mut on)
            .await;
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

/// What a watch of keys sees.
enum Watched<'a> {
    /// Every key and value there (under a prefix), read at a revision.
    Read(Vec<(&'a [u8], &'a [u8])>, i64),
    Put(&'a [u8], &'a [u8], i64),
    Delete(&'a [u8], i64),
    /// The end of a read or of one watch response: what was seen is consistent.
    Synced,
}

fn watch_error(why: String) -> StoreError {
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
        let mut on = |w: Watched<'_>| {
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
        self.watch_keys("placements", meeting, &prefix, true, &stop, &mut on)
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
