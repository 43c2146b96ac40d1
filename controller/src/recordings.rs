//! The recording API over the service layer: start (host key or operator key), stop,
//! list, show and delete. Where a recording goes is `placement::place_recording`; what
//! happens when its node is lost is the leader's (`leader/`); its download links are
//! `downloads`. Its state lives in the store.
use common::ids::{MeetingId, NodeId, RecordingId};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::meetings::DEFAULT_CLASSIFICATION;
use crate::model::{Gap, Meeting, Recording, RecordingState};
use crate::placement::place_recording;
use crate::service::Service;

impl Service {
    /// The control address of recording node `id`, while it is registered.
    pub(crate) fn recording_node_addr(&self, id: &NodeId) -> Option<String> {
        self.view
            .read(|v| v.recording.get(id).map(|n| n.grpc_addr.clone()))
    }

    /// Stores `r` under its own id.
    pub(crate) async fn save(&self, r: &Recording) -> Result<(), ApiError> {
        Ok(self
            .store
            .put_recording(r)
            .await
            .inspect_err(|_| self.metrics.etcd_errors.inc())?)
    }

    async fn recording(&self, rid: &str) -> Result<Recording, ApiError> {
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

    /// The recording, once the caller is shown to be its meeting's host.
    async fn hosted_recording(&self, caller: &Caller, rid: &str) -> Result<Recording, ApiError> {
        let r = self.recording(rid).await?;
        self.require_host(caller, &self.meeting(&r.meeting).await?, "recording")
            .await?;
        Ok(r)
    }

    /// The meeting, once the caller is shown to be its host.
    pub(crate) async fn hosted_meeting(
        &self,
        caller: &Caller,
        id: &str,
        what: &str,
    ) -> Result<Meeting, ApiError> {
        let id = MeetingId::parse(id)
            .map_err(|_| ApiError::NotFound(format!("meeting {id:?} does not exist")))?;
        let meeting = self.meeting(&id).await?;
        self.require_host(caller, &meeting, what).await?;
        Ok(meeting)
    }

    pub async fn start_recording(
        &self,
        caller: &Caller,
        meeting_id: &str,
    ) -> Result<Recording, ApiError> {
        let meeting = self.hosted_meeting(caller, meeting_id, "recording").await?;
        let id = meeting.id.clone();
        if meeting.is_ended() {
            return Err(ApiError::Conflict("the meeting has ended".into()));
        }
        if meeting.e2ee {
            return Err(ApiError::MeetingConflict {
                code: "e2ee_meeting",
                message: "this meeting is end-to-end encrypted: its media cannot be recorded on \
                          the servers (participants may record on their own computers)"
                    .into(),
            });
        }
        if meeting.recording_forbidden {
            return Err(ApiError::MeetingConflict {
                code: "recording_forbidden",
                message: "the organisation of this meeting's host does not allow recording \
                          meetings on the servers"
                    .into(),
            });
        }
        let residency = meeting.residency.clone();
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
                Some((slot.region.clone(), v.media.get(&p.node)?.clone()))
            })
            .ok_or_else(|| {
                ApiError::Conflict(
                    "nobody is in the meeting yet: start the recording once someone has joined"
                        .into(),
                )
            })?;
        if media.relay_addr.is_none() {
            return Err(ApiError::Unavailable(format!(
                "media node {} has no relay endpoint, so it cannot be recorded",
                media.id
            )));
        }
        let node = self
            .view
            .read(|v| place_recording(v, &region, residency.as_ref(), &classification))
            .map_err(ApiError::Unavailable)?;
        let grpc = self
            .recording_node_addr(&node)
            .ok_or_else(|| ApiError::Unavailable(format!("recording node {node} went away")))?;
        let mut r = Recording {
            id: RecordingId::random(),
            meeting: id.clone(),
            node: node.clone(),
            state: RecordingState::Starting,
            files: Vec::new(),
            gaps: Vec::new(),
            started_unix_ms: common::unix_ms(),
            stopped_unix_ms: None,
            deleted_unix_ms: None,
            classification,
            media_node: media.id.clone(),
            error: None,
            segment: 1,
            earlier_nodes: Vec::new(),
        };
        self.save(&r).await?;
        match self.nodes.start_recording(&grpc, &r, &media).await {
            Ok(()) => {
                r.state = RecordingState::Recording;
                self.save(&r).await?;
                self.metrics.recordings_started.inc();
                tracing::info!(recording = %r.id, meeting = %id, %node, "recording started");
                Ok(r)
            }
            Err(e) => {
                r.state = RecordingState::Failed;
                r.error = Some(e.to_string());
                self.save(&r).await?;
                Err(ApiError::Unavailable(format!(
                    "the recording node {node} could not start it: {e}"
                )))
            }
        }
    }

    pub async fn stop_recording(&self, caller: &Caller, rid: &str) -> Result<Recording, ApiError> {
        let mut r = self.hosted_recording(caller, rid).await?;
        if !r.holds_slot() {
            return Err(ApiError::Conflict(format!(
                "recording {rid} is not running ({})",
                r.state.as_str()
            )));
        }
        self.finish_recording(&mut r, None).await?;
        Ok(r)
    }

    /// Stops `r` on its node and stores it stopped, with the files of the manifest the
    /// node answers (after those of its earlier segments on that node), and an open gap
    /// saying `gap` if there is one.
    pub(crate) async fn finish_recording(
        &self,
        r: &mut Recording,
        gap: Option<String>,
    ) -> Result<(), ApiError> {
        let grpc = self.recording_node_addr(&r.node).ok_or_else(|| {
            ApiError::Unavailable(format!("recording node {} is not reachable", r.node))
        })?;
        let manifest = self
            .nodes
            .stop_recording(&grpc, r.id.as_str())
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let now = common::unix_ms();
        r.state = RecordingState::Stopped;
        r.stopped_unix_ms = Some(now);
        // After the files of earlier segments recorded on the same node, if any.
        r.files.extend(manifest_files(&manifest));
        r.files.push("manifest.json".into());
        if let Some(reason) = gap {
            r.gaps.push(Gap {
                start_unix_ms: now,
                end_unix_ms: 0,
                reason,
            });
        }
        self.save(r).await
    }

    pub async fn get_recording(&self, caller: &Caller, rid: &str) -> Result<Recording, ApiError> {
        self.hosted_recording(caller, rid).await
    }

    pub async fn list_recordings(
        &self,
        caller: &Caller,
        meeting_id: &str,
    ) -> Result<Vec<Recording>, ApiError> {
        let meeting = self.hosted_meeting(caller, meeting_id, "recording").await?;
        let mut list: Vec<Recording> = self.view.read(|v| {
            v.recordings
                .values()
                .filter(|r| r.meeting == meeting.id)
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
    ) -> Result<Recording, ApiError> {
        let mut r = self.hosted_recording(caller, rid).await?;
        if r.holds_slot() {
            return Err(ApiError::Conflict(
                "the recording is running: stop it first".into(),
            ));
        }
        if r.state == RecordingState::Deleted {
            return Ok(r);
        }
        let grpc = self.recording_node_addr(&r.node).ok_or_else(|| {
            ApiError::Unavailable(format!(
                "recording node {} is not reachable, so its files cannot be removed now",
                r.node
            ))
        })?;
        self.nodes
            .delete_recording(&grpc, r.id.as_str(), &r.classification)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        r.state = RecordingState::Deleted;
        r.deleted_unix_ms = Some(common::unix_ms());
        r.files.clear();
        self.save(&r).await?;
        tracing::info!(recording = %r.id, "recording deleted");
        Ok(r)
    }
}

/// The names of the files a recording node's manifest (JSON) lists; none when it is not
/// one.
pub(crate) fn manifest_files(manifest: &str) -> Vec<String> {
    let Ok(m) = serde_json::from_str::<serde_json::Value>(manifest) else {
        return Vec::new();
    };
    m["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .collect()
}
