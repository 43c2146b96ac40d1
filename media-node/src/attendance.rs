//! Who attended: each participant's arrival in a meeting (past the waiting room) and
//! departure, written by their media node to `/fjord/meetings/{m}/attendance/{p}`
//! (`AttendanceRecord`), from which the controller exports the meeting's participants.
//!
//! One task per session writes both, in order, retrying while etcd is unreachable, so
//! that a departure never lands before its arrival; the departure lands only over its
//! own arrival (a newer session of the same participant wins); the session itself
//! never waits on etcd. A node that dies leaves its participants' departures unwritten (the export
//! shows them without one).
use std::sync::Arc;

use common::ids::{MeetingId, NodeId, ParticipantId};
use common::token::JoinClaims;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::store::{self, Attendance, MeetingStore};

/// A participant in the meeting; [`Present::left`] records their departure.
pub struct Present {
    left: Option<oneshot::Sender<i64>>,
}

impl Present {
    /// `claims`'s participant came in now, as `name` with `role`, on node `node`; the
    /// writes retry until `stop`.
    pub fn arrived(
        store: Arc<dyn MeetingStore>,
        node: &NodeId,
        stop: CancellationToken,
        claims: &JoinClaims,
        name: &str,
        role: signaling::Role,
    ) -> Self {
        let mut rec = Attendance {
            participant_id: claims.sub.to_string(),
            name: name.to_owned(),
            registrant_id: claims.reg.clone().unwrap_or_default(),
            role,
            region: claims.region.to_string(),
            node_id: node.to_string(),
            joined_unix_ms: common::unix_ms(),
            left_unix_ms: 0,
        };
        let (meeting, participant) = (claims.mtg.clone(), claims.sub.clone());
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let at = Writer {
                store: &*store,
                meeting: &meeting,
                participant: &participant,
                stop: &stop,
            };
            let arrival = rec.clone();
            at.write(&arrival, None).await;
            // The session ended (or its node is shutting down: it ends them all first).
            let Ok(left) = rx.await else { return };
            rec.left_unix_ms = left;
            // Only over our own arrival: a newer session of the same participant (a
            // reconnect with the same token) wrote its own, and will write its departure.
            at.write(&rec, Some(&arrival)).await;
        });
        Self { left: Some(tx) }
    }

    /// The participant left now.
    pub fn left(mut self) {
        if let Some(tx) = self.left.take() {
            let _ = tx.send(common::unix_ms());
        }
    }
}

struct Writer<'a> {
    store: &'a dyn MeetingStore,
    meeting: &'a MeetingId,
    participant: &'a ParticipantId,
    stop: &'a CancellationToken,
}

impl Writer<'_> {
    /// Writes `rec` (when `over` is given, only if the stored one is still exactly that),
    /// retrying with back-off until `stop`.
    async fn write(&self, rec: &Attendance, over: Option<&Attendance>) {
        let mut delay = store::RETRY_FIRST;
        loop {
            match self
                .store
                .put_attendance(self.meeting, self.participant, rec, over)
                .await
            {
                Ok(_) => return,
                Err(e) => tracing::warn!(
                    meeting_id = %self.meeting,
                    participant_id = %self.participant,
                    error = %e,
                    "writing attendance failed; retrying"
                ),
            }
            if !store::back_off(self.stop, &mut delay).await {
                return;
            }
        }
    }
}
