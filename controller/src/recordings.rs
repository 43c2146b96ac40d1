//! The recording API over the service layer: start (host key or operator key), stop,
//! list, show and delete. Where a recording goes is `placement::place_recording`; what
//! happens when its node is lost is the leader's (`leader/`); its download links are
//! `downloads`. Its state lives in the store.
use std::time::Duration;

use common::cloud_recording::{self, Wish};
use common::ids::{MeetingId, NodeId, RecordingId};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::meetings::DEFAULT_CLASSIFICATION;
use crate::model::{
    CloudRecording, Gap, HostAction, MediaNode, Meeting, Recording, RecordingState,
};
use crate::placement::place_recording;
use crate::service::Service;
use crate::store::Erasure;

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

    /// Asks for a cloud recording of the meeting, as a host does with the page's Record
    /// button: the meeting's room record says so (everyone in it is told, and the audit
    /// has who), the leader starts it, and this answers once it runs (or why it could
    /// not). One recording of a meeting runs at a time.
    pub async fn start_recording(
        &self,
        caller: &Caller,
        meeting_id: &str,
    ) -> Result<Recording, ApiError> {
        let meeting = self.hosted_meeting(caller, meeting_id, "recording").await?;
        recordable(&meeting)?;
        if self.cloud_of(&meeting.id).is_some_and(|c| c.on()) {
            return Err(refused(cloud_recording::ALREADY));
        }
        // What the leader would find: said here with its own status.
        self.recording_route(&meeting)?;
        let id = RecordingId::random();
        let now = common::unix_ms();
        let wrote = self
            .store
            .update_cloud_recording(&meeting.id, &mut |was| {
                if was.is_some_and(|c| c.on()) {
                    return None;
                }
                let cloud = CloudRecording {
                    recording: id.clone(),
                    wish: Wish::Recording,
                    since_unix_ms: now,
                    error: None,
                };
                Some((Some(cloud), audit(caller, "recording_start", &id, now)))
            })
            .await?;
        if !wrote {
            return Err(refused(cloud_recording::ALREADY));
        }
        tracing::info!(recording = %id, meeting = %meeting.id, "cloud recording asked for through the API");
        self.carried_out(&id, |r| match r.state {
            RecordingState::Recording | RecordingState::Paused => Some(Ok(())),
            RecordingState::Failed => Some(Err(r.error.clone().unwrap_or_default())),
            _ => None,
        })
        .await
    }

    /// Asks for the recording to stop, as a host does with the page's Stop button, and
    /// answers it stopped (with its files).
    pub async fn stop_recording(&self, caller: &Caller, rid: &str) -> Result<Recording, ApiError> {
        let r = self.hosted_recording(caller, rid).await?;
        if !r.holds_slot() {
            return Err(ApiError::MeetingConflict {
                code: cloud_recording::NOT_RUNNING.code,
                message: format!("recording {rid} is not running ({})", r.state.as_str()),
            });
        }
        let now = common::unix_ms();
        self.store
            .update_cloud_recording(&r.meeting, &mut |was| {
                // Only the meeting's current recording is stopped through its room.
                if was.is_some_and(|c| c.recording != r.id && c.on()) {
                    return None;
                }
                let cloud = CloudRecording {
                    recording: r.id.clone(),
                    wish: Wish::Stopped,
                    since_unix_ms: now,
                    error: None,
                };
                Some((Some(cloud), audit(caller, "recording_stop", &r.id, now)))
            })
            .await?;
        self.carried_out(&r.id, |r| match r.state {
            RecordingState::Stopped | RecordingState::Failed | RecordingState::Deleted => {
                Some(Ok(()))
            }
            _ => None,
        })
        .await
    }

    /// The meeting's cloud recording as its room record says.
    pub(crate) fn cloud_of(&self, meeting: &MeetingId) -> Option<CloudRecording> {
        self.view
            .read(|v| v.rooms.get(meeting).and_then(|r| r.cloud.clone()))
    }

    /// Waits until the leader has carried out what was asked of recording `id`: `done`
    /// says so of the record (Ok), or that it failed (Err: why); a wish the leader gave up
    /// on says why too.
    async fn carried_out(
        &self,
        id: &RecordingId,
        done: impl Fn(&Recording) -> Option<Result<(), String>>,
    ) -> Result<Recording, ApiError> {
        let deadline = tokio::time::Instant::now() + CARRIED_OUT;
        loop {
            let (rec, gave_up) = self.view.read(|v| {
                let rec = v.recordings.get(id).cloned();
                let gave_up = rec.as_ref().and_then(|r| {
                    let c = v.rooms.get(&r.meeting)?.cloud.as_ref()?;
                    (c.recording == *id).then(|| c.error.clone()).flatten()
                });
                (rec, gave_up)
            });
            if let Some(r) = rec {
                match done(&r) {
                    Some(Ok(())) => return Ok(r),
                    Some(Err(why)) => {
                        return Err(ApiError::Unavailable(format!(
                            "recording {id} could not be made: {why}"
                        )));
                    }
                    None => {}
                }
            }
            if let Some(why) = gave_up {
                return Err(ApiError::Unavailable(format!(
                    "recording {id} could not be made: {why}"
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::Unavailable(format!(
                    "the leader controller has not carried out what was asked of recording \
                     {id} within {} s; it will when it can",
                    CARRIED_OUT.as_secs()
                )));
            }
            tokio::select! {
                _ = self.view.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Where `meeting` would be recorded now: the media node to record from (the pinned
    /// region's, else the first placement's) and the recording node to record on.
    pub(crate) fn recording_route(
        &self,
        meeting: &Meeting,
    ) -> Result<(MediaNode, NodeId), ApiError> {
        let residency = meeting.residency.as_ref();
        let (region, media) = self
            .view
            .read(|v| {
                let placements = v.placements.get(&meeting.id)?;
                let (slot, p) = match residency {
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
            .read(|v| place_recording(v, &region, residency, &classification_of(meeting)))
            .map_err(ApiError::Unavailable)?;
        Ok((media, node))
    }

    /// Starts recording `meeting` as recording `id` (the leader, for a wish of its
    /// hosts): stored before its node is asked, and stored failed, saying why, when it
    /// cannot be made.
    pub(crate) async fn begin_recording(
        &self,
        meeting: &Meeting,
        id: RecordingId,
    ) -> Result<Recording, ApiError> {
        let mut r = Recording {
            id,
            meeting: meeting.id.clone(),
            node: NodeId::parse("none").expect("a valid node id"),
            state: RecordingState::Starting,
            files: Vec::new(),
            gaps: Vec::new(),
            started_unix_ms: common::unix_ms(),
            stopped_unix_ms: None,
            deleted_unix_ms: None,
            classification: classification_of(meeting),
            media_node: NodeId::parse("none").expect("a valid node id"),
            error: None,
            segment: 1,
            earlier_nodes: Vec::new(),
            retention: meeting.retention,
            bytes: 0,
            duration_ms: 0,
        };
        let route = recordable(meeting).and_then(|()| self.recording_route(meeting));
        let (media, node) = match route {
            Ok(route) => route,
            Err(e) => {
                r.state = RecordingState::Failed;
                r.error = Some(e.to_string());
                r.stopped_unix_ms = Some(r.started_unix_ms);
                self.save(&r).await?;
                return Err(e);
            }
        };
        r.node = node.clone();
        r.media_node = media.id.clone();
        self.save(&r).await?;
        let started = match self.recording_node_addr(&node) {
            Some(grpc) => self
                .nodes
                .start_recording(&grpc, &r, &media)
                .await
                .map_err(|e| format!("the recording node {node} could not start it: {e}")),
            None => Err(format!("recording node {node} went away")),
        };
        match started {
            Ok(()) => {
                r.state = RecordingState::Recording;
                self.save(&r).await?;
                self.metrics.recordings_started.inc();
                tracing::info!(recording = %r.id, meeting = %meeting.id, %node, "recording started");
                Ok(r)
            }
            Err(e) => {
                r.state = RecordingState::Failed;
                r.error = Some(e.clone());
                r.stopped_unix_ms = Some(common::unix_ms());
                self.save(&r).await?;
                Err(ApiError::Unavailable(e))
            }
        }
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
        r.take_manifest(&manifest);
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

    /// The recordings of the meetings `caller` hosts, as [`Service::meeting_filter`]
    /// says, newest first.
    pub fn my_recordings(&self, caller: &Caller) -> Result<Vec<Recording>, ApiError> {
        let hosts = self.meeting_filter(caller)?;
        let mut list: Vec<Recording> = self.view.read(|v| {
            v.recordings
                .values()
                .filter(|r| v.meetings.get(&r.meeting).is_some_and(&hosts))
                .cloned()
                .collect()
        });
        list.sort_by_key(|r| std::cmp::Reverse(r.started_unix_ms));
        Ok(list)
    }

    /// Deletes the recording at once (an operator, or its meeting's host): its files and
    /// its record go; the meeting's audit trail says who.
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
        let now = common::unix_ms();
        self.erase_recording(&r, audit(caller, "recording_deleted", &r.id, now))
            .await?;
        r.state = RecordingState::Deleted;
        r.deleted_unix_ms = Some(now);
        r.files.clear();
        Ok(r)
    }

    /// Removes recording `r` for good: its files on its recording node and on the nodes
    /// of its earlier segments, then its record; the meeting's audit trail gets `entry`
    /// while the meeting is kept. A node that is not registered now (down, or gone for
    /// good) gets an erasure in the same transaction as the record's removal: its files
    /// go when it is back ([`Service::carry_out_erasures`]). Nothing is removed from the
    /// store while a registered node fails to remove its files.
    pub(crate) async fn erase_recording(
        &self,
        r: &Recording,
        entry: HostAction,
    ) -> Result<(), ApiError> {
        let mut away = Vec::new();
        if r.state != RecordingState::Deleted {
            let mut nodes = vec![&r.node];
            nodes.extend(r.earlier_nodes.iter().filter(|n| **n != r.node));
            for node in nodes {
                let Some(addr) = self.recording_node_addr(node) else {
                    tracing::warn!(recording = %r.id, %node, "the recording node is away: its files go when it is back");
                    away.push(Erasure {
                        node: node.clone(),
                        recording: r.id.clone(),
                        classification: r.classification.clone(),
                    });
                    continue;
                };
                self.nodes
                    .delete_recording(&addr, r.id.as_str(), &r.classification)
                    .await
                    .map_err(|e| {
                        ApiError::Unavailable(format!(
                            "recording node {node} could not remove the files of recording {}: {e}",
                            r.id
                        ))
                    })?;
            }
        }
        self.store.delete_recording(&r.id, &away).await?;
        if self.view.read(|v| v.meetings.contains_key(&r.meeting)) {
            self.store
                .update_cloud_recording(&r.meeting, &mut |_| Some((None, entry.clone())))
                .await?;
        }
        tracing::info!(recording = %r.id, meeting = %r.meeting, why = %entry.action, away = away.len(), "recording deleted: files and record");
        Ok(())
    }

    /// Removes the files that deleted recordings left on recording nodes that were away,
    /// from each such node that is back; returns how many it removed.
    pub(crate) async fn carry_out_erasures(&self) -> Result<usize, ApiError> {
        let mut done = 0;
        for e in self.store.erasures().await? {
            let Some(addr) = self.recording_node_addr(&e.node) else {
                continue;
            };
            match self
                .nodes
                .delete_recording(&addr, e.recording.as_str(), &e.classification)
                .await
            {
                Ok(()) => {
                    self.store.drop_erasure(&e).await?;
                    tracing::info!(recording = %e.recording, node = %e.node, "a deleted recording's files removed from a node that is back");
                    done += 1;
                }
                Err(err) => {
                    tracing::warn!(recording = %e.recording, node = %e.node, error = %err, "could not remove a deleted recording's files; trying again");
                }
            }
        }
        Ok(done)
    }
}

/// How long an API call waits for the leader to carry out a recording's start or stop.
const CARRIED_OUT: Duration = Duration::from_secs(30);

/// The storage class a meeting's recordings go to.
fn classification_of(meeting: &Meeting) -> String {
    if meeting.classification.is_empty() {
        DEFAULT_CLASSIFICATION.to_owned()
    } else {
        meeting.classification.clone()
    }
}

/// The error of a refusal, with its code.
fn refused(r: cloud_recording::Refusal) -> ApiError {
    ApiError::MeetingConflict {
        code: r.code,
        message: r.message.into(),
    }
}

/// Whether `meeting` may be recorded on the servers (it runs, is not end-to-end
/// encrypted, and its organisation allows it).
pub(crate) fn recordable(meeting: &Meeting) -> Result<(), ApiError> {
    if meeting.is_ended() {
        return Err(ApiError::Conflict("the meeting has ended".into()));
    }
    match cloud_recording::refusal(
        meeting.e2ee,
        meeting.recording_forbidden,
        meeting.recording_needs_classification,
    ) {
        Some(r) => Err(refused(r)),
        None => Ok(()),
    }
}

/// The audit trail's entry for `caller`'s `action` on recording `id` through the API.
pub(crate) fn audit(caller: &Caller, action: &str, id: &RecordingId, now: i64) -> HostAction {
    let (by, by_name) = match &caller.user {
        Some(u) => (u.sub.clone(), u.email.clone()),
        None => (
            "api".to_owned(),
            "host key or operator key (API)".to_owned(),
        ),
    };
    HostAction {
        seq: 0,
        unix_ms: now,
        by,
        by_name,
        by_role: "host".into(),
        action: action.into(),
        target: String::new(),
        detail: id.to_string(),
    }
}

/// The audit trail's entry for what the leader did to recording `id` of its own accord
/// (`action`), saying `why`.
pub(crate) fn system_audit(action: &str, id: &RecordingId, why: &str, now: i64) -> HostAction {
    HostAction {
        seq: 0,
        unix_ms: now,
        by: "controller".into(),
        by_name: "Fjord".into(),
        by_role: "system".into(),
        action: action.into(),
        target: String::new(),
        detail: format!("{id}: {why}"),
    }
}

impl Recording {
    /// Takes in what a segment's manifest (the recording node's JSON) says: its files
    /// (after those of earlier segments), their bytes and how long it recorded. Nothing
    /// from what is not a manifest.
    pub(crate) fn take_manifest(&mut self, manifest: &str) {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(manifest) else {
            return;
        };
        for f in m["files"].as_array().into_iter().flatten() {
            if let Some(name) = f["name"].as_str() {
                self.files.push(name.to_owned());
                self.bytes += f["bytes"].as_u64().unwrap_or(0);
            }
        }
        self.duration_ms += m["duration_ms"].as_u64().unwrap_or(0);
    }

    /// When its files and record go (Unix ms), once it stopped: `retention` is the
    /// cluster's, for a recording without its own.
    pub fn expires_unix_ms(&self, retention: Duration) -> Option<i64> {
        if self.holds_slot() {
            return None;
        }
        let ended = self.stopped_unix_ms.unwrap_or(self.started_unix_ms);
        Some(ended + self.retention.unwrap_or(retention).as_millis() as i64)
    }
}
