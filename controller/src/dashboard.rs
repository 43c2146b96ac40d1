//! The administrators' dashboard: the organisation's meetings, active first, with who is
//! in each now (from the media nodes' attendance records), where (regions and nodes), for
//! how long, and whether it is being recorded. Operators see every meeting.
use common::ids::MeetingId;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::model::{Attendance, Meeting, Quality, RecordingState};
use crate::service::Service;

/// How long the dashboard waits for a media node's figures.
const QUALITY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Most meetings one answer lists (active ones first, then the most recently ended).
pub const MAX_LISTED: usize = 200;

/// One meeting on the dashboard.
#[derive(Clone, Debug)]
pub struct Row {
    pub meeting: Meeting,
    pub placements: Vec<(String, String)>,
    /// Whether a recording is running.
    pub recording: bool,
    /// Everyone who came; those in now have no departure.
    pub attendance: Vec<Attendance>,
    /// How those in now fare, from their media nodes (active meetings).
    pub quality: Vec<Quality>,
    /// The media nodes' control addresses, to ask them.
    nodes: Vec<String>,
}

impl Service {
    pub async fn dashboard(&self, caller: &Caller) -> Result<Vec<Row>, ApiError> {
        if caller.user.as_ref().is_some_and(|u| !u.admin) {
            return Err(ApiError::Forbidden(
                "the dashboard is for administrators".into(),
            ));
        }
        // An administrator hosts their organisation's meetings; an operator all.
        let sees = self.meeting_filter(caller)?;
        self.require_synced()?;
        let mut rows: Vec<Row> = self.view.read(|v| {
            v.meetings
                .values()
                .filter(|m| sees(m))
                .map(|m| Row {
                    nodes: v
                        .placements
                        .get(&m.id)
                        .into_iter()
                        .flatten()
                        .filter_map(|(_, p)| v.media.get(&p.node).map(|n| n.grpc_addr.clone()))
                        .collect(),
                    quality: Vec::new(),
                    placements: v
                        .placements
                        .get(&m.id)
                        .into_iter()
                        .flatten()
                        .map(|(s, p)| (s.region.to_string(), p.node.to_string()))
                        .collect(),
                    recording: v
                        .recordings
                        .values()
                        .any(|r| r.meeting == m.id && r.state == RecordingState::Recording),
                    meeting: m.clone(),
                    attendance: Vec::new(),
                })
                .collect()
        });
        rows.sort_by_key(|r| {
            (
                r.meeting.is_ended(),
                -r.meeting.ended_unix_ms.unwrap_or(r.meeting.created_unix_ms),
            )
        });
        rows.truncate(MAX_LISTED);
        let ids: Vec<MeetingId> = rows.iter().map(|r| r.meeting.id.clone()).collect();
        let reads = futures::future::join_all(ids.iter().map(|id| self.store.attendance(id))).await;
        for (row, read) in rows.iter_mut().zip(reads) {
            row.attendance = read?;
            row.attendance.sort_by_key(|a| a.joined_unix_ms);
        }
        // Each active meeting's nodes say how its participants fare; a node that does
        // not answer within a second leaves its participants without figures.
        let asks = rows.iter().flat_map(|r| {
            r.nodes.iter().map(move |addr| {
                let id = r.meeting.id.clone();
                async move {
                    let q =
                        tokio::time::timeout(QUALITY_WAIT, self.nodes.meeting_quality(addr, &id))
                            .await;
                    (id, q.ok().and_then(Result::ok).unwrap_or_default())
                }
            })
        });
        for (id, quality) in futures::future::join_all(asks).await {
            if let Some(row) = rows.iter_mut().find(|r| r.meeting.id == id) {
                row.quality.extend(quality);
            }
        }
        Ok(rows)
    }
}
