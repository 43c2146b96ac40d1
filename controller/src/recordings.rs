//! The recording API over the service layer: start (host key or operator key), stop,
//! list, show and delete. A recording is placed on a recording node of the region
//! where the meeting's media is (never outside a residency pin), with a free slot and
//! storage for the meeting's classification; its state lives in etcd
//! (`/fjord/recordings/{id}`).
use common::ids::{MeetingId, NodeId, RecordingId, Region};
use proto::v1::{
    MeetingRecord, MeetingStatus, NodeState, RecordingNodeRecord, RecordingRecord, RecordingState,
    StartRecordingRequest,
};

use crate::service::{ApiError, Caller, Service, blocking, verify_secret};
use crate::view::ClusterView;

/// The classification of meetings created without one.
pub const DEFAULT_CLASSIFICATION: &str = "internal";

/// Whether a recording in this state holds a slot of its node.
pub fn holds_slot(r: &RecordingRecord) -> bool {
    matches!(
        RecordingState::try_from(r.state),
        Ok(RecordingState::Starting | RecordingState::Recording)
    )
}

/// The recording node for a meeting whose media is in `region`: the least busy active
/// node of that region with storage for `classification` and a free slot; else, unless
/// `residency` pins the meeting, of any region. `Err` says why there is none.
pub fn place_recording(
    view: &ClusterView,
    region: &Region,
    residency: Option<&Region>,
    classification: &str,
) -> Result<NodeId, String> {
    let busy = |n: &NodeId| {
        view.recordings
            .values()
            .filter(|r| r.node_id == n.as_str() && holds_slot(r))
            .count() as u32
    };
    let candidates = |in_region: &dyn Fn(&str) -> bool| {
        view.recording
            .iter()
            .filter(|(_, r)| r.state == NodeState::Active as i32 && in_region(&r.region))
            .filter(|(_, r)| r.storage_classes.iter().any(|c| c == classification))
            .filter_map(|(id, r)| {
                let used = busy(id);
                (used < r.slots).then(|| (used as f64 / f64::from(r.slots.max(1)), id.clone()))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
            .map(|(_, id)| id)
    };
    if let Some(n) = candidates(&|r| r == region.as_str()) {
        return Ok(n);
    }
    if let Some(pin) = residency {
        return Err(format!(
            "no recording node with a free slot and {classification:?} storage in {pin}, and the \
             meeting's residency keeps its recordings there"
        ));
    }
    candidates(&|_| true).ok_or_else(|| {
        format!("no recording node with a free slot and {classification:?} storage in any region")
    })
}

impl Service {
    /// Operator key, or the meeting's host key.
    async fn require_host(&self, caller: &Caller, meeting: &MeetingRecord) -> Result<(), ApiError> {
        let Some(bearer) = caller.bearer.clone() else {
            return Err(ApiError::Unauthorized(
                "recording needs the meeting's host key or an operator key: \
                 Authorization: Bearer <key>"
                    .into(),
            ));
        };
        if self.require_operator(caller).is_ok() {
            return Ok(());
        }
        let hash = meeting.host_key_hash.clone();
        if blocking(move || verify_secret(&bearer, &hash)).await? {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only the meeting's host (or an operator) may record it".into(),
            ))
        }
    }

    /// Recording node `id`'s record, while it is registered.
    fn recording_node(&self, id: &str) -> Option<RecordingNodeRecord> {
        let id = NodeId::parse(id).ok()?;
        self.view.read(|v| v.recording.get(&id).cloned())
    }

    /// The control address of recording node `id`, while it is registered.
    fn recording_node_addr(&self, id: &str) -> Option<String> {
        self.recording_node(id).map(|n| n.grpc_addr)
    }

    /// Stores `r` under its own id.
    async fn save(&self, r: &RecordingRecord) -> Result<(), ApiError> {
        let id =
            RecordingId::parse(&r.recording_id).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(self.store.put_recording(&id, r).await?)
    }

    /// The meeting a stored recording belongs to.
    async fn meeting_of(&self, r: &RecordingRecord) -> Result<MeetingRecord, ApiError> {
        let id = MeetingId::parse(&r.meeting_id).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.meeting_record(&id).await
    }

    async fn recording_record(&self, rid: &str) -> Result<RecordingRecord, ApiError> {
        let id = RecordingId::parse(rid).map_err(|_| {
            ApiError::NotFound(format!(
                "recording {:?} does not exist",
                rid.get(..40).unwrap_or(rid)
            ))
        })?;
        if let Some(r) = self.view.read(|v| v.recordings.get(&id).cloned()) {
            return Ok(r);
        }
        self.store
            .get_recording(&id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("recording {id} does not exist")))
    }

    /// The recording and its meeting, once the caller is shown to be its host.
    async fn hosted_recording(
        &self,
        caller: &Caller,
        rid: &str,
    ) -> Result<RecordingRecord, ApiError> {
        let r = self.recording_record(rid).await?;
        self.require_host(caller, &self.meeting_of(&r).await?)
            .await?;
        Ok(r)
    }

    pub async fn start_recording(
        &self,
        caller: &Caller,
        meeting_id: &str,
    ) -> Result<RecordingRecord, ApiError> {
        let id = MeetingId::parse(meeting_id)
            .map_err(|_| ApiError::NotFound(format!("meeting {meeting_id:?} does not exist")))?;
        let meeting = self.meeting_record(&id).await?;
        self.require_host(caller, &meeting).await?;
        if meeting.status != MeetingStatus::Active as i32 {
            return Err(ApiError::Conflict("the meeting has ended".into()));
        }
        let residency = Region::parse(&meeting.residency).ok();
        let classification = if meeting.classification.is_empty() {
            DEFAULT_CLASSIFICATION.to_owned()
        } else {
            meeting.classification.clone()
        };
        // The media node to record from: the pinned region's, else the first placement.
        let (region, media) = self
            .view
            .read(|v| {
                let placements = v.placements.get(&id)?;
                let (slot, p) = match &residency {
                    Some(r) => placements.iter().find(|(s, _)| &s.region == r)?,
                    None => placements.iter().next()?,
                };
                let region = slot.region.clone();
                let node = NodeId::parse(&p.record.node_id).ok()?;
                let rec = v.media.get(&node)?.clone();
                Some((region, rec))
            })
            .ok_or_else(|| {
                ApiError::Conflict(
                    "nobody is in the meeting yet: start the recording once someone has joined"
                        .into(),
                )
            })?;
        if media.relay_addr.is_empty() {
            return Err(ApiError::Unavailable(format!(
                "media node {} has no relay endpoint, so it cannot be recorded",
                media.node_id
            )));
        }
        let node = self
            .view
            .read(|v| place_recording(v, &region, residency.as_ref(), &classification))
            .map_err(ApiError::Unavailable)?;
        let grpc = self
            .recording_node_addr(node.as_str())
            .ok_or_else(|| ApiError::Unavailable(format!("recording node {node} went away")))?;
        let rid = RecordingId::random();
        let mut record = RecordingRecord {
            recording_id: rid.to_string(),
            meeting_id: id.to_string(),
            node_id: node.to_string(),
            state: RecordingState::Starting as i32,
            started_unix_ms: common::unix_ms(),
            classification: classification.clone(),
            media_node_id: media.node_id.clone(),
            segment: 1,
            ..Default::default()
        };
        self.save(&record).await?;
        let started = self
            .nodes
            .start_recording(
                &grpc,
                StartRecordingRequest {
                    recording_id: rid.to_string(),
                    meeting_id: id.to_string(),
                    classification,
                    media_relay_addr: media.relay_addr.clone(),
                    media_node_id: media.node_id.clone(),
                    segment: 1,
                    recording_started_unix_ms: record.started_unix_ms,
                    gaps: Vec::new(),
                    earlier_nodes: Vec::new(),
                },
            )
            .await;
        match started {
            Ok(()) => {
                record.state = RecordingState::Recording as i32;
                self.save(&record).await?;
                self.metrics.recordings_started.inc();
                tracing::info!(recording = %rid, meeting = %id, %node, "recording started");
                Ok(record)
            }
            Err(e) => {
                record.state = RecordingState::Failed as i32;
                record.error = e.to_string();
                self.save(&record).await?;
                Err(ApiError::Unavailable(format!(
                    "the recording node {node} could not start it: {e}"
                )))
            }
        }
    }

    pub async fn stop_recording(
        &self,
        caller: &Caller,
        rid: &str,
    ) -> Result<RecordingRecord, ApiError> {
        let mut r = self.hosted_recording(caller, rid).await?;
        if !holds_slot(&r) {
            return Err(ApiError::Conflict(format!(
                "recording {rid} is not running ({})",
                state_name(r.state)
            )));
        }
        self.finish_recording(&mut r, None).await?;
        Ok(r)
    }

    /// Stops `r` on its node and stores it stopped, with the files of the manifest the
    /// node answers, and `gap` if there is one.
    async fn finish_recording(
        &self,
        r: &mut RecordingRecord,
        gap: Option<String>,
    ) -> Result<(), ApiError> {
        let grpc = self.recording_node_addr(&r.node_id).ok_or_else(|| {
            ApiError::Unavailable(format!("recording node {} is not reachable", r.node_id))
        })?;
        let manifest = self
            .nodes
            .stop_recording(&grpc, &r.recording_id)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let now = common::unix_ms();
        r.state = RecordingState::Stopped as i32;
        r.stopped_unix_ms = now;
        if let Ok(m) = serde_json::from_str::<serde_json::Value>(&manifest) {
            r.files = m["files"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["name"].as_str().map(str::to_owned))
                .collect();
            r.files.push("manifest.json".into());
        }
        if let Some(reason) = gap {
            r.gaps.push(proto::v1::RecordingGap {
                start_unix_ms: now,
                end_unix_ms: 0,
                reason,
            });
        }
        self.save(r).await
    }

    pub async fn get_recording(
        &self,
        caller: &Caller,
        rid: &str,
    ) -> Result<RecordingRecord, ApiError> {
        self.hosted_recording(caller, rid).await
    }

    pub async fn list_recordings(
        &self,
        caller: &Caller,
        meeting_id: &str,
    ) -> Result<Vec<RecordingRecord>, ApiError> {
        let id = MeetingId::parse(meeting_id)
            .map_err(|_| ApiError::NotFound(format!("meeting {meeting_id:?} does not exist")))?;
        let meeting = self.meeting_record(&id).await?;
        self.require_host(caller, &meeting).await?;
        let mut list: Vec<RecordingRecord> = self.view.read(|v| {
            v.recordings
                .values()
                .filter(|r| r.meeting_id == id.as_str())
                .cloned()
                .collect()
        });
        list.sort_by_key(|r| r.started_unix_ms);
        Ok(list)
    }

    /// Removes the files from the recording node and records the deletion.
    pub async fn delete_recording(
        &self,
        caller: &Caller,
        rid: &str,
    ) -> Result<RecordingRecord, ApiError> {
        let mut r = self.hosted_recording(caller, rid).await?;
        if holds_slot(&r) {
            return Err(ApiError::Conflict(
                "the recording is running: stop it first".into(),
            ));
        }
        if r.state == RecordingState::Deleted as i32 {
            return Ok(r);
        }
        let grpc = self.recording_node_addr(&r.node_id).ok_or_else(|| {
            ApiError::Unavailable(format!(
                "recording node {} is not reachable, so its files cannot be removed now",
                r.node_id
            ))
        })?;
        self.nodes
            .delete_recording(&grpc, rid, &r.classification)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        r.state = RecordingState::Deleted as i32;
        r.deleted_unix_ms = common::unix_ms();
        r.files.clear();
        self.save(&r).await?;
        tracing::info!(recording = %rid, "recording deleted");
        Ok(r)
    }
}

impl Service {
    /// The leader's pass over recordings: one whose recording node is gone (its lease
    /// expired) goes on in a new segment on another node of the region, with the gap
    /// recorded; if there is none, it fails, saying why.
    pub async fn reconcile_recordings(&self, lease_ttl: std::time::Duration) {
        let lost: Vec<RecordingRecord> = self.view.read(|v| {
            v.recordings
                .values()
                .filter(|r| holds_slot(r))
                .filter(|r| NodeId::parse(&r.node_id).is_ok_and(|n| !v.recording.contains_key(&n)))
                .cloned()
                .collect()
        });
        for r in lost {
            if let Err(e) = self.redispatch(r.clone(), lease_ttl).await {
                tracing::warn!(recording = %r.recording_id, error = %e, "could not move a lost recording");
            }
        }
        // Recordings whose meeting ended, or whose media node is gone, end cleanly: the
        // node has finished (or now finishes) the files; we collect the manifest.
        let orphans: Vec<(RecordingRecord, Option<String>)> = self.view.read(|v| {
            v.recordings
                .values()
                .filter(|r| holds_slot(r))
                .filter(|r| NodeId::parse(&r.node_id).is_ok_and(|n| v.recording.contains_key(&n)))
                .filter_map(|r| {
                    let ended = MeetingId::parse(&r.meeting_id)
                        .ok()
                        .and_then(|m| v.meetings.get(&m))
                        .is_none_or(|m| m.status == MeetingStatus::Ended as i32);
                    let media_gone =
                        NodeId::parse(&r.media_node_id).is_ok_and(|n| !v.media.contains_key(&n));
                    if ended {
                        Some((r.clone(), None))
                    } else if media_gone {
                        Some((
                            r.clone(),
                            Some(format!(
                                "the meeting's media node {} was lost; the recording ended",
                                r.media_node_id
                            )),
                        ))
                    } else {
                        None
                    }
                })
                .collect()
        });
        for (mut r, gap) in orphans {
            match self.finish_recording(&mut r, gap).await {
                Ok(()) => {
                    tracing::info!(recording = %r.recording_id, "recording ended with its meeting or media node")
                }
                Err(e) => {
                    tracing::warn!(recording = %r.recording_id, error = %e, "could not end a recording")
                }
            }
        }
    }

    async fn redispatch(
        &self,
        mut r: RecordingRecord,
        lease_ttl: std::time::Duration,
    ) -> Result<(), ApiError> {
        let lost = r.node_id.clone();
        let now = common::unix_ms();
        // The node stopped renewing its lease at most a TTL before it expired.
        let gap_start = (now - lease_ttl.as_millis() as i64).max(r.started_unix_ms);
        let media = self.view.read(|v| {
            NodeId::parse(&r.media_node_id)
                .ok()
                .and_then(|n| v.media.get(&n).cloned())
        });
        let residency = Region::parse(&self.meeting_of(&r).await?.residency).ok();
        let fail = |r: &mut RecordingRecord, why: String| {
            r.state = RecordingState::Failed as i32;
            r.error = why;
            r.stopped_unix_ms = now;
            r.gaps.push(proto::v1::RecordingGap {
                start_unix_ms: gap_start,
                end_unix_ms: now,
                reason: format!("recording node {lost} was lost"),
            });
        };
        let Some(media) = media else {
            fail(
                &mut r,
                format!("recording node {lost} was lost, and so is the meeting's media node"),
            );
            self.save(&r).await?;
            self.metrics.recordings_failed.inc();
            return Ok(());
        };
        let region = Region::parse(&media.region).map_err(|e| ApiError::Internal(e.to_string()))?;
        let placed = self
            .view
            .read(|v| place_recording(v, &region, residency.as_ref(), &r.classification))
            .and_then(|n| {
                let addr = self.recording_node_addr(n.as_str());
                addr.map(|a| (n, a))
                    .ok_or_else(|| "the chosen node went away".to_owned())
            });
        let (node, grpc) = match placed {
            Ok(x) => x,
            Err(why) => {
                fail(&mut r, format!("recording node {lost} was lost and {why}"));
                self.save(&r).await?;
                self.metrics.recordings_failed.inc();
                return Ok(());
            }
        };
        r.gaps.push(proto::v1::RecordingGap {
            start_unix_ms: gap_start,
            end_unix_ms: now,
            reason: format!("recording node {lost} was lost; continued on {node}"),
        });
        r.earlier_nodes.push(lost.clone());
        r.segment = r.segment.max(1) + 1;
        r.node_id = node.to_string();
        self.save(&r).await?;
        let req = StartRecordingRequest {
            recording_id: r.recording_id.clone(),
            meeting_id: r.meeting_id.clone(),
            classification: r.classification.clone(),
            media_relay_addr: media.relay_addr.clone(),
            media_node_id: media.node_id.clone(),
            segment: r.segment,
            recording_started_unix_ms: r.started_unix_ms,
            gaps: r.gaps.clone(),
            earlier_nodes: r.earlier_nodes.clone(),
        };
        if let Err(e) = self.nodes.start_recording(&grpc, req).await {
            // Left as is: the next pass sees the same record (the node is alive, so it
            // is not re-dispatched) — mark it failed rather than pretend.
            r.state = RecordingState::Failed as i32;
            r.error = format!("moving to {node} failed: {e}");
            self.save(&r).await?;
            self.metrics.recordings_failed.inc();
            return Err(ApiError::Unavailable(r.error));
        }
        self.metrics.recordings_moved.inc();
        tracing::info!(recording = %r.recording_id, from = %lost, to = %node, segment = r.segment, "recording moved after its node was lost");
        Ok(())
    }
}

/// A signed, expiring link to one file of a recording.
pub struct Download {
    pub file: String,
    pub url: String,
    pub expires_unix: i64,
}

impl Service {
    /// Links to the files of a stopped recording on the node that holds them; none when
    /// the controller has no download key or the node serves no downloads.
    pub fn download_links(&self, r: &RecordingRecord) -> Vec<Download> {
        let Some((key, ttl)) = &self.downloads else {
            return Vec::new();
        };
        if r.state != RecordingState::Stopped as i32 {
            return Vec::new();
        }
        let base = self.recording_node(&r.node_id).map(|n| n.download_url);
        let Some(base) = base.filter(|b| !b.is_empty()) else {
            return Vec::new();
        };
        let expires = common::unix_ms() / 1000 + ttl.as_secs() as i64;
        r.files
            .iter()
            .map(|f| {
                let sig = common::download::sign(key, &r.recording_id, f, expires);
                Download {
                    file: f.clone(),
                    url: format!(
                        "{}/v1/files/{}/{f}?expires={expires}&sig={sig}",
                        base.trim_end_matches('/'),
                        r.recording_id
                    ),
                    expires_unix: expires,
                }
            })
            .collect()
    }
}

pub fn state_name(state: i32) -> &'static str {
    match RecordingState::try_from(state) {
        Ok(RecordingState::Starting) => "starting",
        Ok(RecordingState::Recording) => "recording",
        Ok(RecordingState::Stopped) => "stopped",
        Ok(RecordingState::Failed) => "failed",
        Ok(RecordingState::Deleted) => "deleted",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::RecordingNodeRecord;

    fn node(id: &str, region: &str, slots: u32) -> (NodeId, RecordingNodeRecord) {
        (
            NodeId::parse(id).unwrap(),
            RecordingNodeRecord {
                node_id: id.into(),
                region: region.into(),
                storage_classes: vec!["internal".into()],
                slots,
                state: NodeState::Active as i32,
                ..Default::default()
            },
        )
    }

    fn busy(v: &mut ClusterView, node: &str, n: usize) {
        for i in 0..n {
            let id = RecordingId::parse(&format!("{node}-r{i}")).unwrap();
            v.recordings.insert(
                id,
                RecordingRecord {
                    node_id: node.into(),
                    state: RecordingState::Recording as i32,
                    ..Default::default()
                },
            );
        }
    }

    #[test]
    fn recordings_go_to_a_free_node_of_the_region_and_never_cross_a_pin() {
        let mut v = ClusterView::default();
        v.recording.extend([
            node("rec-oslo-1", "oslo", 1),
            node("rec-oslo-2", "oslo", 2),
            node("rec-sthlm-1", "stockholm", 4),
        ]);
        let oslo = Region::parse("oslo").unwrap();
        assert_eq!(
            place_recording(&v, &oslo, None, "internal")
                .unwrap()
                .as_str(),
            "rec-oslo-1",
            "both free: the first by name"
        );
        busy(&mut v, "rec-oslo-1", 1);
        assert_eq!(
            place_recording(&v, &oslo, None, "internal")
                .unwrap()
                .as_str(),
            "rec-oslo-2"
        );
        busy(&mut v, "rec-oslo-2", 2);
        assert_eq!(
            place_recording(&v, &oslo, None, "internal")
                .unwrap()
                .as_str(),
            "rec-sthlm-1",
            "region full, no pin: another region"
        );
        let err = place_recording(&v, &oslo, Some(&oslo), "internal").unwrap_err();
        assert!(err.contains("residency"), "{err}");
        assert!(
            place_recording(&v, &oslo, None, "secret").is_err(),
            "no such storage"
        );
    }
}
