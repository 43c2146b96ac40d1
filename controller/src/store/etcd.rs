//! [`ClusterStore`] on etcd, what production runs. Writes that race between controllers
//! are transactions: a placement is created only if absent (or replaced only if
//! unchanged since it was read), so two controllers racing on one join agree on the
//! node. The election is etcd's own (campaign on a key under a lease).
use std::collections::BTreeMap;
use std::time::Duration;

use common::config::EtcdConfig;
use common::ids::{MeetingId, NodeId, ParticipantId, RecordingId};
use common::keyspace::{Key, Keyspace, Slot};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, ResignOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use futures::StreamExt;
use prost::Message;
use proto::v1 as pb;
use tokio_util::sync::CancellationToken;

use super::convert;
use super::{
    Batch, Change, ChangeStream, CloudChange, ClusterStore, Erasure, Lease, PlacementCommit,
    Snapshot, StoreError, Term,
};
use crate::model::{
    Account, Attendance, MediaNode, Meeting, NodeLoad, OrgSettings, Recording, RecordingNode,
    Registrant, StoredPlacement,
};

impl From<etcd_client::Error> for StoreError {
    fn from(e: etcd_client::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

#[derive(Clone)]
pub struct EtcdStore {
    /// For requests, with a deadline each.
    client: Client,
    /// For what legitimately blocks (a campaign, a watch): no deadline, keep-alives on.
    blocking: Client,
    ks: Keyspace,
    /// How long a request may take before etcd counts as unreachable.
    deadline: Duration,
}

impl EtcdStore {
    /// Connects both clients; etcd need not be up yet (the clients connect lazily).
    pub async fn connect(cfg: &EtcdConfig) -> Result<Self, StoreError> {
        let client =
            Client::connect(cfg.endpoints.clone(), Some(common::etcd::options(cfg))).await?;
        let blocking = Client::connect(
            cfg.endpoints.clone(),
            Some(common::etcd::blocking_options(cfg)),
        )
        .await?;
        Ok(Self {
            client,
            blocking,
            ks: Keyspace::new(&cfg.prefix),
            deadline: cfg.request_timeout(),
        })
    }

    fn change(&self, key: &str, value: Option<&[u8]>, mod_revision: i64) -> Option<Change> {
        match convert::change(self.ks.parse(key), value, mod_revision) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(key, error = %e, "undecodable record in etcd; ignored");
                None
            }
        }
    }

    async fn get<T>(
        &self,
        key: String,
        from: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<Option<T>, StoreError> {
        let resp = self.client.clone().get(key.clone(), None).await?;
        resp.kvs()
            .first()
            .map(|kv| from(kv.value()).map_err(|e| StoreError::Corrupt(format!("{key}: {e}"))))
            .transpose()
    }

    /// Every value under `prefix`, decoded, in key order.
    async fn list<T>(
        &self,
        prefix: String,
        from: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<Vec<T>, StoreError> {
        self.list_keyed(prefix, |_, v| from(v)).await
    }

    /// Every entry under `prefix`, decoded from its key (what follows the prefix) and
    /// value, in key order.
    async fn list_keyed<T>(
        &self,
        prefix: String,
        from: impl Fn(&str, &[u8]) -> Result<T, String>,
    ) -> Result<Vec<T>, StoreError> {
        let resp = self
            .client
            .clone()
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        resp.kvs()
            .iter()
            .map(|kv| {
                let key = kv.key_str().unwrap_or(&prefix);
                from(key.strip_prefix(&prefix).unwrap_or_default(), kv.value())
                    .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))
            })
            .collect()
    }

    async fn put(
        &self,
        key: String,
        value: Vec<u8>,
        lease: Option<Lease>,
    ) -> Result<(), StoreError> {
        let opts = lease.map(|l| PutOptions::new().with_lease(l.0));
        self.client.clone().put(key, value, opts).await?;
        Ok(())
    }

    fn placement(
        &self,
        key: &str,
        value: &[u8],
        mod_revision: i64,
    ) -> Result<StoredPlacement, StoreError> {
        etcd_decode(value)
            .and_then(|r| convert::placement_from_record(r, mod_revision))
            .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))
    }
}

fn etcd_decode<M: Message + Default>(value: &[u8]) -> Result<M, String> {
    M::decode(value).map_err(|e| e.to_string())
}

#[async_trait::async_trait]
impl ClusterStore for EtcdStore {
    async fn create_meeting(&self, m: &Meeting) -> Result<bool, StoreError> {
        let key = self.ks.meeting(&m.id);
        let value = convert::meeting_to_record(m).encode_to_vec();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }

    async fn edit_meeting(&self, m: &Meeting, was: &Meeting) -> Result<bool, StoreError> {
        let key = self.ks.meeting(&m.id);
        let resp = self.client.clone().get(key.clone(), None).await?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(false);
        };
        let stored = convert::meeting_from_record(
            etcd_decode(kv.value()).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?,
        )
        .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
        if stored != *was || stored.is_ended() {
            return Ok(false);
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([TxnOp::put(
                key,
                convert::meeting_to_record(m).encode_to_vec(),
                None,
            )]);
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }

    async fn get_meeting(&self, id: &MeetingId) -> Result<Option<Meeting>, StoreError> {
        self.get(self.ks.meeting(id), |v| {
            convert::meeting_from_record(etcd_decode(v)?)
        })
        .await
    }

    async fn end_meeting(&self, m: &Meeting) -> Result<(), StoreError> {
        let txn = Txn::new().and_then([
            TxnOp::put(
                self.ks.meeting(&m.id),
                convert::meeting_to_record(m).encode_to_vec(),
                None,
            ),
            TxnOp::delete(
                self.ks.placements_of(&m.id),
                Some(DeleteOptions::new().with_prefix()),
            ),
        ]);
        self.client.clone().txn(txn).await?;
        Ok(())
    }

    async fn delete_meeting(&self, id: &MeetingId) -> Result<(), StoreError> {
        let under = format!("{}/", self.ks.meeting(id));
        let txn = Txn::new().and_then([
            TxnOp::delete(self.ks.meeting(id), None),
            TxnOp::delete(under, Some(DeleteOptions::new().with_prefix())),
        ]);
        self.client.clone().txn(txn).await?;
        Ok(())
    }

    async fn commit_placement(
        &self,
        meeting: &MeetingId,
        slot: &Slot,
        node: &NodeId,
        expected: Option<&StoredPlacement>,
    ) -> Result<PlacementCommit, StoreError> {
        let key = self.ks.placement(meeting, slot);
        let (cmp, epoch) = match expected {
            None => (
                Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                1,
            ),
            Some(p) => (
                Compare::mod_revision(key.clone(), CompareOp::Equal, p.mod_revision),
                p.epoch + 1,
            ),
        };
        let mut placed = StoredPlacement {
            node: node.clone(),
            epoch,
            placed_unix_ms: common::unix_ms(),
            mod_revision: 0,
        };
        let value = convert::placement_to_record(&placed).encode_to_vec();
        let txn = Txn::new()
            .when([cmp])
            .and_then([TxnOp::put(key.clone(), value, None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.client.clone().txn(txn).await?;
        if resp.succeeded() {
            placed.mod_revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            return Ok(PlacementCommit::Committed(placed));
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op
                && let Some(kv) = g.kvs().first()
            {
                let now = self.placement(&key, kv.value(), kv.mod_revision())?;
                return Ok(PlacementCommit::Lost(Some(now)));
            }
        }
        Ok(PlacementCommit::Lost(None))
    }

    async fn remove_placement(
        &self,
        meeting: &MeetingId,
        slot: &Slot,
        mod_revision: i64,
    ) -> Result<bool, StoreError> {
        let key = self.ks.placement(meeting, slot);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                mod_revision,
            )])
            .and_then([TxnOp::delete(key, None)]);
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }

    async fn placements(
        &self,
        meeting: &MeetingId,
    ) -> Result<BTreeMap<Slot, StoredPlacement>, StoreError> {
        let resp = self
            .client
            .clone()
            .get(
                self.ks.placements_of(meeting),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let mut out = BTreeMap::new();
        for kv in resp.kvs() {
            let key = kv.key_str().unwrap_or("");
            if let Key::Placement(_, slot) = self.ks.parse(key) {
                out.insert(slot, self.placement(key, kv.value(), kv.mod_revision())?);
            }
        }
        Ok(out)
    }

    async fn put_recording(&self, r: &Recording) -> Result<(), StoreError> {
        let value = convert::recording_to_record(r).encode_to_vec();
        self.put(self.ks.recording(&r.id), value, None).await
    }

    async fn get_recording(&self, id: &RecordingId) -> Result<Option<Recording>, StoreError> {
        self.get(self.ks.recording(id), |v| {
            convert::recording_from_record(etcd_decode(v)?)
        })
        .await
    }

    async fn delete_recording(
        &self,
        id: &RecordingId,
        erasures: &[Erasure],
    ) -> Result<(), StoreError> {
        let mut ops = vec![TxnOp::delete(self.ks.recording(id), None)];
        for e in erasures {
            let key = self.ks.erasure(&e.node, &e.recording);
            ops.push(TxnOp::put(key, e.classification.as_bytes(), None));
        }
        self.client.clone().txn(Txn::new().and_then(ops)).await?;
        Ok(())
    }

    async fn erasures(&self) -> Result<Vec<Erasure>, StoreError> {
        self.list_keyed(self.ks.erasures(), |key, value| {
            let (node, recording) = key
                .split_once('/')
                .ok_or_else(|| "not an erasure's key".to_owned())?;
            Ok(Erasure {
                node: NodeId::parse(node).map_err(|e| e.to_string())?,
                recording: RecordingId::parse(recording).map_err(|e| e.to_string())?,
                classification: std::str::from_utf8(value)
                    .map_err(|e| e.to_string())?
                    .to_owned(),
            })
        })
        .await
    }

    async fn drop_erasure(&self, e: &Erasure) -> Result<(), StoreError> {
        self.client
            .clone()
            .delete(self.ks.erasure(&e.node, &e.recording), None)
            .await?;
        Ok(())
    }

    async fn update_cloud_recording(
        &self,
        meeting: &MeetingId,
        change: &mut CloudChange<'_>,
    ) -> Result<bool, StoreError> {
        let key = self.ks.room(meeting);
        // Written by media nodes too: the whole record is read and written back with only
        // the cloud recording and the log changed, on the revision it was read at.
        loop {
            let resp = self.client.clone().get(key.clone(), None).await?;
            let (mut rec, cmp) = match resp.kvs().first() {
                Some(kv) => (
                    etcd_decode::<pb::MeetingRoomRecord>(kv.value())
                        .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?,
                    Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision()),
                ),
                None => (
                    pb::MeetingRoomRecord::default(),
                    Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                ),
            };
            let now = rec
                .cloud_recording
                .clone()
                .and_then(convert::cloud_from_record);
            let Some((cloud, action)) = change(now) else {
                return Ok(false);
            };
            if let Some(cloud) = cloud {
                rec.cloud_recording = Some(convert::cloud_to_record(&cloud));
            }
            convert::log_action(&mut rec, action);
            let txn = Txn::new().when([cmp]).and_then([TxnOp::put(
                key.clone(),
                rec.encode_to_vec(),
                None,
            )]);
            if self.client.clone().txn(txn).await?.succeeded() {
                return Ok(true);
            }
        }
    }

    async fn create_account(&self, a: &Account) -> Result<bool, StoreError> {
        let key = self.ks.account(&a.email);
        let value = convert::account_to_record(a).encode_to_vec();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }

    async fn update_account(&self, a: &Account) -> Result<bool, StoreError> {
        let key = self.ks.account(&a.email);
        let value = convert::account_to_record(a).encode_to_vec();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Greater, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }

    async fn get_account(&self, email: &str) -> Result<Option<Account>, StoreError> {
        self.get(self.ks.account(email), |v| {
            convert::account_from_record(etcd_decode(v)?)
        })
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        let mut all = self
            .list(self.ks.accounts(), |v| {
                convert::account_from_record(etcd_decode(v)?)
            })
            .await?;
        all.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(all)
    }

    async fn delete_account(&self, email: &str) -> Result<(), StoreError> {
        self.client
            .clone()
            .delete(self.ks.account(email), None)
            .await?;
        Ok(())
    }

    async fn get_org_settings(&self, org: &str) -> Result<Option<OrgSettings>, StoreError> {
        self.get(self.ks.org_settings(org), |v| {
            convert::org_settings_from_record(etcd_decode(v)?)
        })
        .await
    }

    async fn put_org_settings(&self, org: &str, s: &OrgSettings) -> Result<(), StoreError> {
        let value = convert::org_settings_to_record(s).encode_to_vec();
        self.put(self.ks.org_settings(org), value, None).await
    }

    async fn put_registrant(&self, r: &Registrant) -> Result<(), StoreError> {
        let value = convert::registrant_to_record(r).encode_to_vec();
        self.put(self.ks.registrant(&r.meeting, &r.id), value, None)
            .await
    }

    async fn get_registrant(
        &self,
        meeting: &MeetingId,
        id: &str,
    ) -> Result<Option<Registrant>, StoreError> {
        self.get(self.ks.registrant(meeting, id), |v| {
            convert::registrant_from_record(meeting, etcd_decode(v)?)
        })
        .await
    }

    async fn registrants(&self, meeting: &MeetingId) -> Result<Vec<Registrant>, StoreError> {
        self.list(self.ks.registrants_of(meeting), |v| {
            convert::registrant_from_record(meeting, etcd_decode(v)?)
        })
        .await
    }

    async fn put_attendance(&self, meeting: &MeetingId, a: &Attendance) -> Result<(), StoreError> {
        let id = ParticipantId::parse(&a.participant_id)
            .map_err(|e| StoreError::Corrupt(format!("participant id: {e}")))?;
        let value = convert::attendance_to_record(a).encode_to_vec();
        self.put(self.ks.attendance(meeting, &id), value, None)
            .await
    }

    async fn attendance(&self, meeting: &MeetingId) -> Result<Vec<Attendance>, StoreError> {
        self.list(self.ks.attendance_of(meeting), |v| {
            Ok(convert::attendance_from_record(etcd_decode(v)?))
        })
        .await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let resp = self
            .client
            .clone()
            .lease_grant(ttl.as_secs().max(1) as i64, None)
            .await?;
        Ok(Lease(resp.id()))
    }

    async fn revoke_lease(&self, lease: Lease) -> Result<(), StoreError> {
        match self.client.clone().lease_revoke(lease.0).await {
            Ok(_) => Ok(()),
            // Gone already (it ran out, or its holder revoked it): what was asked.
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("lease not found") => {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn put_media_node(&self, n: &MediaNode, lease: Lease) -> Result<(), StoreError> {
        let value = convert::media_node_to_record(n).encode_to_vec();
        self.put(self.ks.media_node(&n.id), value, Some(lease))
            .await
    }

    async fn put_recording_node(&self, n: &RecordingNode, lease: Lease) -> Result<(), StoreError> {
        let value = convert::recording_node_to_record(n).encode_to_vec();
        self.put(self.ks.recording_node(&n.id), value, Some(lease))
            .await
    }

    async fn put_load(&self, node: &NodeId, l: &NodeLoad, lease: Lease) -> Result<(), StoreError> {
        let value = convert::load_to_record(l).encode_to_vec();
        self.put(self.ks.load(node), value, Some(lease)).await
    }

    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let resp = self
            .client
            .clone()
            .get(self.ks.root(), Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let records = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                self.change(
                    kv.key_str().unwrap_or(""),
                    Some(kv.value()),
                    kv.mod_revision(),
                )
            })
            .collect();
        Ok(Snapshot { revision, records })
    }

    async fn watch(&self, revision: i64) -> Result<ChangeStream, StoreError> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1)
            .with_progress_notify();
        let stream = self
            .blocking
            .clone()
            .watch(self.ks.root(), Some(opts))
            .await?;
        let store = self.clone();
        let feed = futures::stream::unfold(Some(stream), move |stream| {
            let store = store.clone();
            async move {
                let mut stream = stream?;
                // Skips what carries no event: the watch's creation, progress notices.
                let resp = loop {
                    match stream.message().await {
                        Ok(Some(r)) if r.canceled() || !r.events().is_empty() => break r,
                        Ok(Some(_)) => continue,
                        Ok(None) => {
                            let ended = StoreError::WatchLost("watch ended".into());
                            return Some((Err(ended), None));
                        }
                        Err(e) => return Some((Err(e.into()), None)),
                    }
                };
                if resp.canceled() {
                    let err = if resp.compact_revision() > 0 {
                        StoreError::Compacted(resp.compact_revision())
                    } else {
                        StoreError::WatchLost(format!("cancelled: {}", resp.cancel_reason()))
                    };
                    return Some((Err(err), None));
                }
                let changes = resp
                    .events()
                    .iter()
                    .filter_map(|ev| {
                        let kv = ev.kv()?;
                        let value = match ev.event_type() {
                            etcd_client::EventType::Put => Some(kv.value()),
                            etcd_client::EventType::Delete => None,
                        };
                        store.change(kv.key_str().unwrap_or(""), value, kv.mod_revision())
                    })
                    .collect();
                let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
                Some((Ok(Batch { revision, changes }), Some(stream)))
            }
        });
        Ok(feed.boxed())
    }

    async fn campaign(
        &self,
        candidate: &str,
        ttl: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<Term>, StoreError> {
        let mut client = self.blocking.clone();
        let deadline = self.deadline;
        let timed_out = || StoreError::Unavailable("etcd request timed out".into());
        let lease = tokio::time::timeout(deadline, client.lease_grant(ttl.as_secs() as i64, None))
            .await
            .map_err(|_| timed_out())??
            .id();
        let (keeper, stream) = tokio::time::timeout(deadline, client.lease_keep_alive(lease))
            .await
            .map_err(|_| timed_out())??;
        // The lease is renewed from now until the term ends; `lost` fires if it cannot be.
        let lost = CancellationToken::new();
        let renewing = tokio::spawn(keep_lease(keeper, stream, ttl, lost.clone()));
        let abort = renewing.abort_handle();
        let revoke = {
            let client = self.blocking.clone();
            async move |abort: tokio::task::AbortHandle| {
                abort.abort();
                let _ = tokio::time::timeout(deadline, client.clone().lease_revoke(lease)).await;
            }
        };
        let mut campaigner = client.election_client();
        let won = tokio::select! {
            _ = shutdown.cancelled() => None,
            _ = lost.cancelled() => {
                revoke(abort).await;
                return Err(StoreError::Unavailable("controller lease lost while campaigning".into()));
            }
            r = campaigner.campaign(self.ks.election(), candidate, lease) => Some(r),
        };
        let leader_key = match won {
            None => {
                revoke(abort).await;
                return Ok(None);
            }
            Some(Err(e)) => {
                revoke(abort).await;
                return Err(e.into());
            }
            Some(Ok(mut r)) => r.take_leader(),
        };
        let mut elections = self.blocking.election_client();
        let resign = async move {
            if let Some(k) = leader_key {
                let opts = ResignOptions::new().with_leader(k);
                let _ = tokio::time::timeout(deadline, elections.resign(Some(opts))).await;
            }
            revoke(abort).await;
        };
        Ok(Some(Term::new(lost, Box::pin(resign))))
    }
}

/// Renews `lease` three times per TTL until it cannot (then cancels `lost`).
async fn keep_lease(
    mut keeper: etcd_client::LeaseKeeper,
    mut stream: etcd_client::LeaseKeepAliveStream,
    ttl: Duration,
    lost: CancellationToken,
) {
    let mut renew = tokio::time::interval((ttl / 3).max(Duration::from_millis(500)));
    loop {
        renew.tick().await;
        let ok = keeper.keep_alive().await.is_ok()
            && matches!(
                tokio::time::timeout(ttl / 2, stream.message()).await,
                Ok(Ok(Some(r))) if r.ttl() > 0
            );
        if !ok {
            tracing::warn!("controller lease lost");
            lost.cancel();
            return;
        }
    }
}
