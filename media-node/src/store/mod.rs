//! What the meeting layer keeps in the cluster's state, behind one trait: which nodes a
//! meeting is placed on (the controller writes that; the mesh follows it), a meeting's
//! settings, its room record (what its hosts decided, with the action log that is also
//! its audit trail), its polls and Q&A, and who attended. [`EtcdStore`] is production;
//! [`MemoryStore`] keeps the same contract (`tests/meeting_store.rs` runs every case on
//! both), so that host controls, the waiting room and breakout rooms are tested in
//! milliseconds without etcd or processes.
//!
//! The shared records (room, polls) are changed with a compare-and-swap, so that nodes
//! writing at once never overwrite each other, and followed: read, then every change
//! (re-read after a broken watch).
use std::time::Duration;

use std::collections::HashSet;

use common::ids::{MeetingId, NodeId, ParticipantId};
use tokio_util::sync::CancellationToken;

mod convert;
mod etcd;
mod feed;
mod memory;
pub mod model;
mod watches;

pub use convert::collab_bytes;
pub use etcd::EtcdStore;
pub use memory::MemoryStore;
pub use model::{
    Attendance, CloudRecordingEntry, CollabRecord, LoggedAction, PollAnswerEntry, PollEntry,
    PollKind, PollState, QuestionEntry, RoomRecord,
};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("the cluster state (etcd) cannot be reached")]
    Unavailable,
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the meeting's record is unreadable: {0}")]
    Corrupt(#[from] prost::DecodeError),
    #[error("others kept changing the meeting at the same time; try again")]
    Contended,
}

/// What a follower learns of a record (None: there is none, or it was deleted).
#[derive(Clone, Debug, PartialEq)]
pub enum Seen<R> {
    /// A fresh read, as of store revision `.1`: the truth, even against a newer one
    /// this node wrote meanwhile (the taker decides).
    Read(Option<R>, i64),
    /// A change, written at revision `.1`.
    Changed(Option<R>, i64),
}

/// What the meeting layer reads of a meeting's own record: what hosts cannot change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeetingSettings {
    pub title: String,
    /// Whether the meeting was made with a waiting room (hosts may turn it off or on).
    pub waiting_room: bool,
    pub webinar: bool,
    /// The region the meeting's media must stay in, if it is pinned to one.
    pub residency: Option<String>,
    /// Why its hosts cannot record it on the servers, if they cannot.
    pub cloud_recording_refusal: Option<common::cloud_recording::Refusal>,
}

impl<R> Seen<R> {
    /// The same news of the record as another type.
    pub fn map<T>(self, f: impl FnOnce(R) -> T) -> Seen<T> {
        match self {
            Seen::Read(r, at) => Seen::Read(r.map(f), at),
            Seen::Changed(r, at) => Seen::Changed(r.map(f), at),
        }
    }
}

/// Takes every read and change of a followed record.
pub type Take<R> = Box<dyn FnMut(Seen<R>) + Send>;
/// Changes a shared record in place (called again when another writer came first).
pub type Change<'a, R> = &'a mut (dyn FnMut(&mut R) + Send);

/// How many times a change is tried against concurrent writers before it gives up
/// ([`StoreError::Contended`]).
pub const ATTEMPTS: usize = 8;

#[async_trait::async_trait]
pub trait MeetingStore: Send + Sync + 'static {
    /// Follows which media nodes `meeting` is placed on (this one too) until `stop`: the
    /// set at once and after every change (again after anything broke, retried with
    /// back-off, never given up).
    async fn follow_placements(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        take: Box<dyn FnMut(HashSet<NodeId>) + Send>,
    );

    /// The meeting's settings; None when there is no such meeting.
    async fn meeting(&self, meeting: &MeetingId) -> Result<Option<MeetingSettings>, StoreError>;

    /// Follows the meeting's room record until `stop`: a read, then every change; a
    /// fresh read after anything broke (retried with back-off, never given up).
    async fn follow_room(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        take: Take<RoomRecord>,
    );

    /// Changes the room record (a new one when there is none) in one write that no
    /// concurrent one overwrites; the record written and its revision.
    async fn update_room(
        &self,
        meeting: &MeetingId,
        change: Change<'_, RoomRecord>,
    ) -> Result<(RoomRecord, i64), StoreError>;

    /// As [`MeetingStore::follow_room`], for the meeting's polls and Q&A.
    async fn follow_collab(
        &self,
        meeting: &MeetingId,
        stop: CancellationToken,
        take: Take<CollabRecord>,
    );

    /// As [`MeetingStore::update_room`], for the meeting's polls and Q&A.
    async fn update_collab(
        &self,
        meeting: &MeetingId,
        change: Change<'_, CollabRecord>,
    ) -> Result<(CollabRecord, i64), StoreError>;

    /// Writes a participant's attendance; with `over`, only if the stored one is still
    /// exactly that (a departure lands only over its own arrival). Whether it was
    /// written.
    async fn put_attendance(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
        rec: &Attendance,
        over: Option<&Attendance>,
    ) -> Result<bool, StoreError>;

    /// A participant's attendance as stored.
    async fn attendance(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
    ) -> Result<Option<Attendance>, StoreError>;
}

/// How long a failed read or watch waits before it tries again: doubling from the first
/// to the most.
pub const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Waits `delay` before another try (unless `stop` comes first) and doubles it, up to
/// [`RETRY_MAX`]; false when stopped. The one back-off of the meeting layer's retries.
pub async fn back_off(stop: &CancellationToken, delay: &mut Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => return false,
        _ = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(RETRY_MAX);
    true
}
