//! The meeting store in etcd: the records under the meeting's key
//! (`/fjord/meetings/{m}`, `…/room`, `…/collab`, `…/attendance/{p}`), followed with a
//! read and a watch from the revision read, changed with a compare-and-swap on the key's
//! revision.
use common::config::EtcdConfig;
use common::ids::{MeetingId, ParticipantId};
use common::keyspace::Keyspace;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, WatchOptions};
use prost::Message;
use proto::{AttendanceRecord, MeetingCollabRecord, MeetingRecord, MeetingRoomRecord};
use tokio_util::sync::CancellationToken;

use super::{
    ATTEMPTS, Change, MeetingSettings, MeetingStore, RETRY_FIRST, Seen, StoreError, Take, back_off,
};

pub struct EtcdStore {
    config: EtcdConfig,
    keyspace: Keyspace,
    /// Made at first use; None while the node shuts down before etcd answers.
    client: tokio::sync::OnceCell<etcd_client::Client>,
    shutdown: CancellationToken,
}

impl EtcdStore {
    pub fn new(config: EtcdConfig, shutdown: CancellationToken) -> Self {
        EtcdStore {
            keyspace: Keyspace::new(&config.prefix),
            config,
            client: tokio::sync::OnceCell::new(),
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

    /// Follows the record at `key` (`what` names it in logs) until `stop`.
    async fn follow<R: Message + Default>(
        &self,
        what: &'static str,
        meeting: &MeetingId,
        key: String,
        stop: CancellationToken,
        mut take: Take<R>,
    ) {
        let mut delay = RETRY_FIRST;
        while !stop.is_cancelled() {
            let result: Result<(), StoreError> = async {
                let mut etcd = self.connected().await?;
                let r = etcd.get(key.as_str(), None).await?;
                let revision = r.header().map_or(0, |h| h.revision());
                let rec = r
                    .kvs()
                    .first()
                    .map(|kv| R::decode(kv.value()))
                    .transpose()?;
                take(Seen::Read(rec, revision));
                let mut stream = etcd
                    .watch(
                        key.as_str(),
                        Some(WatchOptions::new().with_start_revision(revision + 1)),
                    )
                    .await?;
                delay = RETRY_FIRST;
                loop {
                    let msg = tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        m = stream.message() => m?,
                    };
                    let Some(resp) = msg else {
                        return Err(StoreError::Etcd(etcd_client::Error::WatchError(
                            "the watch ended".into(),
                        )));
                    };
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let rec = match ev.event_type() {
                            etcd_client::EventType::Put => Some(R::decode(kv.value())?),
                            etcd_client::EventType::Delete => None,
                        };
                        take(Seen::Changed(rec, kv.mod_revision()));
                    }
                }
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(%meeting, error = %e, "following the meeting's {what} failed; retrying");
                if !back_off(&stop, &mut delay).await {
                    return;
                }
            }
        }
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

#[async_trait::async_trait]
impl MeetingStore for EtcdStore {
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
        }))
    }

    async fn follow_room(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        take: Take<MeetingRoomRecord>,
    ) {
        let key = self.keyspace.room(meeting);
        self.follow("room record", meeting, key, stop, take).await;
    }

    async fn update_room(
        &self,
        meeting: &MeetingId,
        change: Change<'_, MeetingRoomRecord>,
    ) -> Result<(MeetingRoomRecord, i64), StoreError> {
        self.update(&self.keyspace.room(meeting), change).await
    }

    async fn follow_collab(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        take: Take<MeetingCollabRecord>,
    ) {
        let key = self.keyspace.collab(meeting);
        self.follow("polls and Q&A", meeting, key, stop, take).await;
    }

    async fn update_collab(
        &self,
        meeting: &MeetingId,
        change: Change<'_, MeetingCollabRecord>,
    ) -> Result<(MeetingCollabRecord, i64), StoreError> {
        self.update(&self.keyspace.collab(meeting), change).await
    }

    async fn put_attendance(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
        rec: &AttendanceRecord,
        over: Option<&AttendanceRecord>,
    ) -> Result<bool, StoreError> {
        let key = self.keyspace.attendance(meeting, participant);
        let put = TxnOp::put(key.as_str(), rec.encode_to_vec(), None);
        let txn = match over {
            Some(old) => Txn::new()
                .when([Compare::value(
                    key.as_str(),
                    CompareOp::Equal,
                    old.encode_to_vec(),
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
    ) -> Result<Option<AttendanceRecord>, StoreError> {
        let key = self.keyspace.attendance(meeting, participant);
        let got = self.connected().await?.get(key, None).await?;
        Ok(got
            .kvs()
            .first()
            .map(|kv| AttendanceRecord::decode(kv.value()))
            .transpose()?)
    }
}
