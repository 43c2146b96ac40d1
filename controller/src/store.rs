//! Every write the controller makes to etcd. Writes that race between controllers are
//! transactions: a placement is created only if absent (or replaced only if unchanged
//! since it was read), so two controllers racing on one join agree on the node.
use common::ids::{MeetingId, NodeId, RecordingId};
use common::keyspace::{Keyspace, Slot};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse,
};
use prost::Message;
use proto::v1::{MeetingRecord, PlacementRecord, RecordingRecord};

use crate::view::StoredPlacement;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cluster state store (etcd) unreachable: {0}")]
    Unavailable(#[from] etcd_client::Error),
    #[error("undecodable record at {0}")]
    Corrupt(String),
}

/// What the placement key held when our transaction lost.
#[derive(Debug)]
pub enum PlacementCommit {
    Committed(StoredPlacement),
    Lost(Option<StoredPlacement>),
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    ks: Keyspace,
}

impl Store {
    pub fn new(client: Client, ks: Keyspace) -> Self {
        Self { client, ks }
    }
    pub fn keyspace(&self) -> &Keyspace {
        &self.ks
    }
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Creates a meeting; the id is random, so an existing key means a collision (retry).
    pub async fn create_meeting(
        &self,
        m: &MeetingRecord,
        id: &MeetingId,
    ) -> Result<bool, StoreError> {
        let key = self.ks.meeting(id);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, m.encode_to_vec(), None)]);
        Ok(self.client.clone().txn(txn).await?.succeeded())
    }

    pub async fn put_recording(
        &self,
        id: &RecordingId,
        r: &RecordingRecord,
    ) -> Result<(), StoreError> {
        self.client
            .clone()
            .put(self.ks.recording(id), r.encode_to_vec(), None)
            .await?;
        Ok(())
    }

    pub async fn get_recording(
        &self,
        id: &RecordingId,
    ) -> Result<Option<RecordingRecord>, StoreError> {
        let key = self.ks.recording(id);
        let resp = self.client.clone().get(key.clone(), None).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => RecordingRecord::decode(kv.value())
                .map(Some)
                .map_err(|_| StoreError::Corrupt(key)),
        }
    }

    pub async fn get_meeting(&self, id: &MeetingId) -> Result<Option<MeetingRecord>, StoreError> {
        let key = self.ks.meeting(id);
        let resp = self.client.clone().get(key.clone(), None).await?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => MeetingRecord::decode(kv.value())
                .map(Some)
                .map_err(|_| StoreError::Corrupt(key)),
        }
    }

    /// Marks a meeting ended and removes its placements, in one transaction.
    pub async fn end_meeting(&self, id: &MeetingId, m: &MeetingRecord) -> Result<(), StoreError> {
        let txn = Txn::new().and_then([
            TxnOp::put(self.ks.meeting(id), m.encode_to_vec(), None),
            TxnOp::delete(
                self.ks.placements_of(id),
                Some(DeleteOptions::new().with_prefix()),
            ),
        ]);
        self.client.clone().txn(txn).await?;
        Ok(())
    }

    /// Writes `node` as the meeting's placement in `slot` if the key is still as we saw
    /// it (`expected`: its mod revision, or `None` for absent). When another controller got
    /// there first, returns what the key holds now.
    pub async fn commit_placement(
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
                p.record.epoch + 1,
            ),
        };
        let record = PlacementRecord {
            node_id: node.to_string(),
            epoch,
            placed_unix_ms: common::unix_ms(),
        };
        let txn = Txn::new()
            .when([cmp])
            .and_then([TxnOp::put(key.clone(), record.encode_to_vec(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self.client.clone().txn(txn).await?;
        if resp.succeeded() {
            let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            return Ok(PlacementCommit::Committed(StoredPlacement {
                record,
                mod_revision: rev,
            }));
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op
                && let Some(kv) = g.kvs().first()
            {
                let record = PlacementRecord::decode(kv.value())
                    .map_err(|_| StoreError::Corrupt(key.clone()))?;
                return Ok(PlacementCommit::Lost(Some(StoredPlacement {
                    record,
                    mod_revision: kv.mod_revision(),
                })));
            }
        }
        Ok(PlacementCommit::Lost(None))
    }

    /// Deletes a placement only if nobody rewrote it since `mod_revision`.
    pub async fn remove_placement(
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

    /// Reads every placement of a meeting straight from etcd.
    pub async fn placements(
        &self,
        meeting: &MeetingId,
    ) -> Result<Vec<(String, StoredPlacement)>, StoreError> {
        let resp = self
            .client
            .clone()
            .get(
                self.ks.placements_of(meeting),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let mut out = Vec::new();
        for kv in resp.kvs() {
            let key = kv.key_str().unwrap_or("").to_owned();
            let record = PlacementRecord::decode(kv.value())
                .map_err(|_| StoreError::Corrupt(key.clone()))?;
            out.push((
                key,
                StoredPlacement {
                    record,
                    mod_revision: kv.mod_revision(),
                },
            ));
        }
        Ok(out)
    }
}
