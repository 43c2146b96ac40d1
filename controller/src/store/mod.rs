//! The cluster state store behind one trait, [`ClusterStore`]: meetings, placements,
//! nodes, recordings, the change feed the controller's view follows, and the leader
//! election. Two implementations keep one contract (`controller/tests/store_contract.rs`
//! runs the same suite on both): [`EtcdStore`], what production runs, and
//! [`MemoryStore`], for the planner and placement tests, with faults to inject (slow
//! commits, a lost watch, compaction, an outage, a lost lease).
//!
//! Everything here speaks the domain types of [`crate::model`]; only `convert.rs` knows
//! the protobuf records, and only `common::keyspace` spells a key.
mod convert;
mod etcd;
mod memory;

use std::collections::BTreeMap;
use std::time::Duration;

use common::ids::{MeetingId, NodeId, RecordingId};
use common::keyspace::Slot;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

pub use self::convert::gaps_to_proto;
pub use self::etcd::EtcdStore;
pub use self::memory::MemoryStore;
use crate::model::{
    Account, Attendance, CloudRecording, Collab, HostAction, MediaNode, Meeting, NodeLoad,
    OrgSettings, Recording, RecordingNode, Registrant, Room, StoredPlacement,
};

/// What [`ClusterStore::update_cloud_recording`] makes of a meeting's cloud recording:
/// from the one there, the one to write (None: as it is) and the audit entry, or None to
/// write nothing.
pub type CloudChange<'a> =
    dyn FnMut(Option<CloudRecording>) -> Option<(Option<CloudRecording>, HostAction)> + Send + 'a;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cluster state store (etcd) unreachable: {0}")]
    Unavailable(String),
    #[error("undecodable record at {0}")]
    Corrupt(String),
    /// A watch asked for revisions the store no longer keeps: read everything anew.
    #[error("the store compacted its history past revision {0}")]
    Compacted(i64),
    #[error("the store's change feed ended: {0}")]
    WatchLost(String),
}

/// What the placement key held when our transaction lost.
#[derive(Debug)]
pub enum PlacementCommit {
    Committed(StoredPlacement),
    Lost(Option<StoredPlacement>),
}

/// One record written (`Some`) or deleted (`None`).
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    MediaNode(NodeId, Option<MediaNode>),
    RecordingNode(NodeId, Option<RecordingNode>),
    Load(NodeId, Option<NodeLoad>),
    Meeting(MeetingId, Option<Meeting>),
    Placement(MeetingId, Slot, Option<StoredPlacement>),
    Room(MeetingId, Option<Room>),
    Collab(MeetingId, Option<Collab>),
    Recording(RecordingId, Option<Recording>),
}

/// Everything in the store at `revision`, each record as a write.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub revision: i64,
    pub records: Vec<Change>,
}

/// The changes of one store revision (or of a run of them), in order.
#[derive(Clone, Debug)]
pub struct Batch {
    pub revision: i64,
    pub changes: Vec<Change>,
}

/// The change feed: batches in revision order, until an error ends it.
pub type ChangeStream = BoxStream<'static, Result<Batch, StoreError>>;

/// A lease the store holds records under: they go when it is revoked or expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lease(pub i64);

/// A leader's term, won by [`ClusterStore::campaign`]. It ends when the leader's lease
/// cannot be renewed ([`Term::lost`]) or when it resigns.
pub struct Term {
    lost: CancellationToken,
    resign: Option<BoxFuture<'static, ()>>,
}

impl Term {
    fn new(lost: CancellationToken, resign: BoxFuture<'static, ()>) -> Self {
        Self {
            lost,
            resign: Some(resign),
        }
    }
    /// Resolves when the term is over without our resigning (the lease was lost).
    pub fn lost(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.lost.clone().cancelled_owned()
    }
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
    /// Hands leadership over at once, rather than after the lease expires.
    pub async fn resign(mut self) {
        if let Some(f) = self.resign.take() {
            f.await
        }
    }
}

/// The files of a deleted recording on a recording node that was away when it was
/// deleted: removed (and this with them) once the node is back.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Erasure {
    pub node: NodeId,
    pub recording: RecordingId,
    /// The storage class its files are under on that node.
    pub classification: String,
}

#[async_trait::async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// Creates a meeting; the id is random, so an existing one means a collision (false).
    async fn create_meeting(&self, m: &Meeting) -> Result<bool, StoreError>;
    async fn get_meeting(&self, id: &MeetingId) -> Result<Option<Meeting>, StoreError>;
    /// Writes `m` (a host's edit) over the stored meeting if that is still active and
    /// unchanged since it was read: false when it ended or another write came between.
    async fn edit_meeting(&self, m: &Meeting, was: &Meeting) -> Result<bool, StoreError>;
    /// Stores the meeting (ended) and removes its placements, in one transaction.
    async fn end_meeting(&self, m: &Meeting) -> Result<(), StoreError>;
    /// Removes the meeting and everything under it (room, polls, registrants,
    /// attendance), in one transaction: its retention is over.
    async fn delete_meeting(&self, id: &MeetingId) -> Result<(), StoreError>;

    /// Writes `node` as the meeting's placement in `slot` if the slot is still as we saw
    /// it (`expected`, or absent for `None`); otherwise answers what it holds now.
    async fn commit_placement(
        &self,
        meeting: &MeetingId,
        slot: &Slot,
        node: &NodeId,
        expected: Option<&StoredPlacement>,
    ) -> Result<PlacementCommit, StoreError>;
    /// Deletes a placement only if nobody rewrote it since `mod_revision`.
    async fn remove_placement(
        &self,
        meeting: &MeetingId,
        slot: &Slot,
        mod_revision: i64,
    ) -> Result<bool, StoreError>;
    /// Every placement of a meeting, read from the store itself.
    async fn placements(
        &self,
        meeting: &MeetingId,
    ) -> Result<BTreeMap<Slot, StoredPlacement>, StoreError>;

    async fn put_recording(&self, r: &Recording) -> Result<(), StoreError>;
    async fn get_recording(&self, id: &RecordingId) -> Result<Option<Recording>, StoreError>;
    /// Removes a recording's record (its files are gone, or are left to `erasures` on
    /// nodes that were away) in one transaction with those erasures; none there is no
    /// error.
    async fn delete_recording(
        &self,
        id: &RecordingId,
        erasures: &[Erasure],
    ) -> Result<(), StoreError>;
    /// Files of deleted recordings left on recording nodes that were away.
    async fn erasures(&self) -> Result<Vec<Erasure>, StoreError>;
    /// The node removed those files.
    async fn drop_erasure(&self, e: &Erasure) -> Result<(), StoreError>;

    /// Sets the meeting's cloud recording in its room record to what `change` makes of
    /// the one there (None: leaves it; a new room record when there is none), with
    /// `action` appended to its action log (numbered next), in one compare-and-swap,
    /// retried on a concurrent write; `change` answers None to write nothing. Answers
    /// whether it wrote.
    async fn update_cloud_recording(
        &self,
        meeting: &MeetingId,
        change: &mut CloudChange<'_>,
    ) -> Result<bool, StoreError>;

    /// An organisation's settings, if its administrators set any.
    /// Creates a local account; false (and nothing written) when its e-mail address has
    /// one already.
    async fn create_account(&self, a: &Account) -> Result<bool, StoreError>;
    /// Writes an existing account back (its name, role or password changed); false (and
    /// nothing written) when it is gone.
    async fn update_account(&self, a: &Account) -> Result<bool, StoreError>;
    /// The account of `email` (any case).
    async fn get_account(&self, email: &str) -> Result<Option<Account>, StoreError>;
    /// Every account, by e-mail address.
    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// Removes the account of `email`; none there is no error.
    async fn delete_account(&self, email: &str) -> Result<(), StoreError>;

    async fn get_org_settings(&self, org: &str) -> Result<Option<OrgSettings>, StoreError>;
    async fn put_org_settings(&self, org: &str, s: &OrgSettings) -> Result<(), StoreError>;

    /// Writes a registrant of `r.meeting` (new, or with a host's decision).
    async fn put_registrant(&self, r: &Registrant) -> Result<(), StoreError>;
    async fn get_registrant(
        &self,
        meeting: &MeetingId,
        id: &str,
    ) -> Result<Option<Registrant>, StoreError>;
    /// Every registrant of a meeting, in the order of their ids.
    async fn registrants(&self, meeting: &MeetingId) -> Result<Vec<Registrant>, StoreError>;
    /// Media nodes write attendance; this is for tools and tests.
    async fn put_attendance(&self, meeting: &MeetingId, a: &Attendance) -> Result<(), StoreError>;
    /// Every participant's time in a meeting, in the order of their ids.
    async fn attendance(&self, meeting: &MeetingId) -> Result<Vec<Attendance>, StoreError>;

    /// Nodes register themselves (`common::registration`); these are for tools and tests.
    async fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError>;
    /// Ends `lease` and removes what is bound to it; a lease already gone is no error.
    async fn revoke_lease(&self, lease: Lease) -> Result<(), StoreError>;
    async fn put_media_node(&self, n: &MediaNode, lease: Lease) -> Result<(), StoreError>;
    async fn put_recording_node(&self, n: &RecordingNode, lease: Lease) -> Result<(), StoreError>;
    async fn put_load(&self, node: &NodeId, l: &NodeLoad, lease: Lease) -> Result<(), StoreError>;

    /// Every record, and the revision to watch from.
    async fn snapshot(&self) -> Result<Snapshot, StoreError>;
    /// The changes after `revision`, in order. Records that do not decode are skipped
    /// with a warning; a compacted history ends the stream with [`StoreError::Compacted`].
    async fn watch(&self, revision: i64) -> Result<ChangeStream, StoreError>;

    /// Campaigns as `candidate` under a lease of `ttl`, kept alive while campaigning and
    /// leading; resolves when we lead, or with `None` once `shutdown` fires.
    async fn campaign(
        &self,
        candidate: &str,
        ttl: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<Term>, StoreError>;
}
