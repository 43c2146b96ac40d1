//! The JSON API (`/v1/...`): request bodies, response shapes (typed, every one) and the
//! handlers that call the service layer.
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{ApiJson, HttpState, Json};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::join::JoinInput;
use crate::meetings::{MeetingInfo, NewMeeting};
use crate::model::Recording;
use crate::nodes::NodeInfo;
use crate::registration::RegistrationInput;
use crate::schedule::{Schedule, ScheduleInput};
use crate::service::Service;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMeetingBody {
    title: String,
    password: Option<String>,
    residency: Option<String>,
    classification: Option<String>,
    waiting_room: Option<bool>,
    e2ee: Option<bool>,
    /// `meeting` (the default) or `webinar`.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    description: String,
    schedule: Option<ScheduleInput>,
    registration: Option<RegistrationInput>,
    /// `anyone` (the default), `signed_in`, `organisation`.
    #[serde(default)]
    audience: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    name: String,
    password: Option<String>,
    region: Option<String>,
    host_key: Option<String>,
    panelist_key: Option<String>,
    registrant_key: Option<String>,
    lost_node: Option<String>,
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
}

#[derive(Serialize)]
struct PlacementJson {
    region: String,
    node_id: String,
}

#[derive(Serialize)]
struct MeetingJson {
    id: String,
    title: String,
    has_password: bool,
    residency: Option<String>,
    classification: String,
    state: &'static str,
    created_unix_ms: i64,
    ended_unix_ms: Option<i64>,
    placements: Vec<PlacementJson>,
    waiting_room: bool,
    /// Who may join: `anyone`, `signed_in`, `organisation`.
    audience: &'static str,
    /// Locked by a host: nobody new gets in.
    locked: bool,
    /// Media encrypted end to end in the browsers.
    e2ee: bool,
    /// `meeting` or `webinar`.
    kind: &'static str,
    description: String,
    /// When it takes place (null: any time).
    schedule: Option<ScheduleInput>,
    /// The start of the next occurrence that has not ended.
    next_start_unix_ms: Option<i64>,
    /// Participants register first (null: nobody registers).
    registration: Option<RegistrationJson>,
    /// The signed-in user who made it (null: an operator key).
    owner: Option<OwnerJson>,
    /// Ended meetings: when the meeting and its personal data (audit, polls, registrants,
    /// attendance) are deleted.
    personal_data_deleted_after_unix_ms: Option<i64>,
}

#[derive(Serialize)]
struct OwnerJson {
    name: String,
    email: String,
}

#[derive(Serialize)]
struct RegistrationJson {
    approval: &'static str,
    questions: Vec<String>,
}

impl From<crate::model::Registration> for RegistrationJson {
    fn from(r: crate::model::Registration) -> Self {
        Self {
            approval: if r.manual_approval {
                "manual"
            } else {
                "automatic"
            },
            questions: r.questions,
        }
    }
}

impl From<MeetingInfo> for MeetingJson {
    fn from(m: MeetingInfo) -> Self {
        let r = m.meeting;
        Self {
            id: r.id.to_string(),
            title: r.title,
            has_password: r.password_hash.is_some(),
            residency: r.residency.map(|r| r.to_string()),
            classification: r.classification,
            state: r.state.as_str(),
            created_unix_ms: r.created_unix_ms,
            ended_unix_ms: r.ended_unix_ms,
            waiting_room: r.waiting_room,
            audience: r.audience.as_str(),
            locked: m.room.locked,
            e2ee: r.e2ee,
            kind: r.kind.as_str(),
            next_start_unix_ms: next_start(r.schedule.as_ref()),
            registration: r.registration.map(Into::into),
            personal_data_deleted_after_unix_ms: m.deleted_after_unix_ms,
            owner: r.owner.map(|o| OwnerJson {
                name: o.name,
                email: o.email,
            }),
            schedule: r.schedule.as_ref().map(Schedule::input),
            description: r.description,
            placements: m
                .placements
                .into_iter()
                .map(|(r, n)| PlacementJson {
                    region: r.to_string(),
                    node_id: n.to_string(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct CreatedJson {
    #[serde(flatten)]
    meeting: MeetingJson,
    host_key: String,
    /// Webinars: joining with it gives the panelist role.
    #[serde(skip_serializing_if = "Option::is_none")]
    panelist_key: Option<String>,
}

#[derive(Serialize)]
struct MeetingsJson {
    meetings: Vec<MeetingJson>,
}

#[derive(Serialize)]
struct JoinedJson {
    signal_url: String,
    token: String,
    region: String,
    node_id: String,
    participant_id: String,
    role: &'static str,
    /// Seconds the token is valid for.
    expires_in: u64,
    /// TURN servers for the peer connection (`RTCPeerConnection`'s `iceServers`).
    ice_servers: Vec<crate::turn::IceServer>,
}

#[derive(Serialize)]
struct NodeJson {
    id: String,
    kind: &'static str,
    region: String,
    state: &'static str,
    load: LoadJson,
    capacity: CapacityJson,
    slots: u32,
}

#[derive(Serialize)]
struct LoadJson {
    participants: u32,
    meetings: u32,
    tracks: u32,
    bitrate_in_kbps: u64,
    bitrate_out_kbps: u64,
    cpu_cores: f64,
    recordings: u32,
}

#[derive(Serialize)]
struct CapacityJson {
    participants: u32,
    bitrate_kbps: u64,
    cpu_cores: f64,
}

impl From<NodeInfo> for NodeJson {
    fn from(n: NodeInfo) -> Self {
        Self {
            id: n.id.to_string(),
            kind: n.kind.as_str(),
            region: n.region.to_string(),
            state: n.state.as_str(),
            load: LoadJson {
                participants: n.load.participants,
                meetings: n.load.meetings,
                tracks: n.load.tracks,
                bitrate_in_kbps: n.load.bitrate_in_kbps,
                bitrate_out_kbps: n.load.bitrate_out_kbps,
                cpu_cores: n.load.cpu_cores,
                recordings: n.load.recordings,
            },
            capacity: CapacityJson {
                participants: n.capacity.participants,
                bitrate_kbps: n.capacity.bitrate_kbps,
                cpu_cores: n.capacity.cpu_cores,
            },
            slots: n.slots,
        }
    }
}

#[derive(Serialize)]
struct NodesJson {
    nodes: Vec<NodeJson>,
}

/// A recording as the API shows it.
#[derive(Serialize)]
struct RecordingJson {
    recording_id: String,
    meeting_id: String,
    /// The recording node writing it (its latest segment's).
    node_id: String,
    /// The media node feeding it.
    media_node_id: String,
    /// 1, plus one each time it went on after a recording node or the meeting's media
    /// node was lost.
    segment: u32,
    state: &'static str,
    classification: String,
    started_unix_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_unix_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_unix_ms: Option<i64>,
    files: Vec<String>,
    gaps: Vec<GapJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Signed, expiring links to the files (stopped recordings).
    downloads: Vec<DownloadJson>,
    /// The meeting's title, while the meeting is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    meeting_title: Option<String>,
    /// The bytes of its files and how long it recorded (once stopped).
    bytes: u64,
    duration_ms: u64,
    /// When its files and record are deleted (its retention), once it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_unix_ms: Option<i64>,
}

#[derive(Serialize)]
struct GapJson {
    start_unix_ms: i64,
    end_unix_ms: i64,
    reason: String,
}

#[derive(Serialize)]
struct DownloadJson {
    file: String,
    url: String,
    expires_unix: i64,
}

#[derive(Serialize)]
struct RecordingsJson {
    recordings: Vec<RecordingJson>,
}

impl RecordingJson {
    fn of(s: &Service, r: Recording) -> Self {
        let downloads = s
            .download_links(&r)
            .into_iter()
            .map(|d| DownloadJson {
                file: d.file,
                url: d.url,
                expires_unix: d.expires_unix,
            })
            .collect();
        let meeting_title = s
            .view
            .read(|v| v.meetings.get(&r.meeting).map(|m| m.title.clone()));
        Self {
            meeting_title,
            bytes: r.bytes,
            duration_ms: r.duration_ms,
            expires_unix_ms: r.expires_unix_ms(s.retention),
            recording_id: r.id.to_string(),
            meeting_id: r.meeting.to_string(),
            node_id: r.node.to_string(),
            media_node_id: r.media_node.to_string(),
            segment: r.segment.max(1),
            state: r.state.as_str(),
            classification: r.classification,
            started_unix_ms: r.started_unix_ms,
            stopped_unix_ms: r.stopped_unix_ms,
            deleted_unix_ms: r.deleted_unix_ms,
            files: r.files,
            gaps: r
                .gaps
                .into_iter()
                .map(|g| GapJson {
                    start_unix_ms: g.start_unix_ms,
                    end_unix_ms: g.end_unix_ms,
                    reason: g.reason,
                })
                .collect(),
            error: r.error,
            downloads,
        }
    }
}

pub(super) fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/meetings", post(create_meeting).get(list_meetings))
        .route(
            "/v1/meetings/{id}",
            get(get_meeting).patch(edit_meeting).delete(end_meeting),
        )
        .route("/v1/meetings/{id}/join", post(join))
        .route("/v1/meetings/{id}/audit", get(audit))
        .route("/v1/meetings/{id}/public", get(public_meeting))
        .route(
            "/v1/meetings/{id}/recordings",
            post(start_recording).get(list_recordings),
        )
        .route("/v1/recordings", get(my_recordings))
        .route(
            "/v1/recordings/{id}",
            get(get_recording).delete(delete_recording),
        )
        .route("/v1/recordings/{id}/stop", post(stop_recording))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{id}/drain", post(drain_node))
}

/// The start of the next occurrence that has not ended, for a meeting with a schedule.
fn next_start(schedule: Option<&Schedule>) -> Option<i64> {
    schedule?
        .next_start(chrono::Utc::now())
        .map(|t| t.timestamp_millis())
}

async fn create_meeting(
    State(s): State<HttpState>,
    caller: Caller,
    ApiJson(b): ApiJson<CreateMeetingBody>,
) -> Result<impl IntoResponse, ApiError> {
    let req = NewMeeting {
        title: b.title,
        password: b.password,
        residency: b.residency,
        classification: b.classification,
        waiting_room: b.waiting_room,
        e2ee: b.e2ee,
        kind: b.kind,
        description: b.description,
        schedule: b.schedule,
        registration: b.registration,
        audience: b.audience,
    };
    let c = s.service.create_meeting(&caller, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedJson {
            meeting: c.info.into(),
            host_key: c.host_key,
            panelist_key: c.panelist_key,
        }),
    ))
}

async fn get_meeting(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MeetingJson>, ApiError> {
    Ok(Json(s.service.get_meeting(&caller, &id).await?.into()))
}

async fn list_meetings(
    State(s): State<HttpState>,
    caller: Caller,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MeetingsJson>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let list = s.service.list_meetings(&caller, q.state.as_deref()).await?;
    Ok(Json(MeetingsJson {
        meetings: list.into_iter().map(Into::into).collect(),
    }))
}

async fn edit_meeting(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<crate::meetings::MeetingEdit>,
) -> Result<Json<MeetingJson>, ApiError> {
    Ok(Json(s.service.edit_meeting(&caller, &id, b).await?.into()))
}

async fn end_meeting(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MeetingJson>, ApiError> {
    Ok(Json(s.service.end_meeting(&caller, &id).await?.into()))
}

#[derive(Serialize)]
struct AuditJson {
    meeting_id: String,
    /// Host actions, oldest first (the newest 1000 are kept).
    actions: Vec<HostActionJson>,
}

#[derive(Serialize)]
struct HostActionJson {
    seq: u64,
    unix_ms: i64,
    by: String,
    by_name: String,
    by_role: String,
    action: String,
    target: Option<String>,
    detail: Option<String>,
}

/// What anyone with the meeting's link may know before joining (the pre-join screen).
#[derive(Serialize)]
struct PublicMeetingJson {
    id: String,
    title: String,
    has_password: bool,
    waiting_room: bool,
    /// Who may join: `anyone`, `signed_in` (sign in first), `organisation`.
    audience: &'static str,
    locked: bool,
    e2ee: bool,
    kind: &'static str,
    description: String,
    schedule: Option<ScheduleInput>,
    next_start_unix_ms: Option<i64>,
    registration: Option<RegistrationJson>,
    state: &'static str,
    /// The meeting is being recorded on the servers (or paused in a recording): who joins
    /// is told before they do.
    recording: bool,
}

async fn public_meeting(
    State(s): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<PublicMeetingJson>, ApiError> {
    let info = s.service.public_meeting(&id).await?;
    let m = info.meeting;
    Ok(Json(PublicMeetingJson {
        id: m.id.to_string(),
        title: m.title,
        has_password: m.password_hash.is_some(),
        waiting_room: m.waiting_room,
        audience: m.audience.as_str(),
        locked: info.room.locked,
        e2ee: m.e2ee,
        kind: m.kind.as_str(),
        next_start_unix_ms: next_start(m.schedule.as_ref()),
        registration: m.registration.map(Into::into),
        schedule: m.schedule.as_ref().map(Schedule::input),
        recording: info.room.cloud.as_ref().is_some_and(|c| c.on())
            && m.state != crate::model::MeetingState::Ended,
        description: m.description,
        state: if info.room.ended {
            "ended"
        } else {
            m.state.as_str()
        },
    }))
}

/// What the meeting's hosts did (admit, deny, remove, lock, end, role changes, mutes…):
/// for its host (host key) and operators.
async fn audit(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AuditJson>, ApiError> {
    let (meeting, actions) = s.service.audit(&caller, &id).await?;
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    Ok(Json(AuditJson {
        meeting_id: meeting.to_string(),
        actions: actions
            .into_iter()
            .map(|a| HostActionJson {
                seq: a.seq,
                unix_ms: a.unix_ms,
                by: a.by,
                by_name: a.by_name,
                by_role: a.by_role,
                action: a.action,
                target: non_empty(a.target),
                detail: non_empty(a.detail),
            })
            .collect(),
    }))
}

async fn join(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<JoinBody>,
) -> Result<Json<JoinedJson>, ApiError> {
    let req = JoinInput {
        meeting: id,
        name: b.name,
        password: b.password,
        region: b.region,
        host_key: b.host_key,
        panelist_key: b.panelist_key,
        registrant_key: b.registrant_key,
        lost_node: b.lost_node,
    };
    let j = s.service.join(&caller, req).await?;
    Ok(Json(JoinedJson {
        signal_url: j.signal_url,
        token: j.token,
        region: j.region.to_string(),
        node_id: j.node.to_string(),
        participant_id: j.participant.to_string(),
        role: j.role.as_str(),
        expires_in: j.expires_in_secs,
        ice_servers: j.ice_servers,
    }))
}

async fn start_recording(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RecordingJson>), ApiError> {
    let r = s.service.start_recording(&caller, &id).await?;
    Ok((StatusCode::CREATED, Json(RecordingJson::of(&s.service, r))))
}

async fn list_recordings(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RecordingsJson>, ApiError> {
    let recordings = s
        .service
        .list_recordings(&caller, &id)
        .await?
        .into_iter()
        .map(|r| RecordingJson::of(&s.service, r))
        .collect();
    Ok(Json(RecordingsJson { recordings }))
}

/// The recordings of the meetings the caller hosts (a signed-in user: theirs; an
/// administrator: their organisation's; an operator: all), newest first.
async fn my_recordings(
    State(s): State<HttpState>,
    caller: Caller,
) -> Result<Json<RecordingsJson>, ApiError> {
    let recordings = s
        .service
        .my_recordings(&caller)?
        .into_iter()
        .map(|r| RecordingJson::of(&s.service, r))
        .collect();
    Ok(Json(RecordingsJson { recordings }))
}

async fn get_recording(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RecordingJson>, ApiError> {
    let r = s.service.get_recording(&caller, &id).await?;
    Ok(Json(RecordingJson::of(&s.service, r)))
}

async fn stop_recording(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RecordingJson>, ApiError> {
    let r = s.service.stop_recording(&caller, &id).await?;
    Ok(Json(RecordingJson::of(&s.service, r)))
}

async fn delete_recording(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RecordingJson>, ApiError> {
    let r = s.service.delete_recording(&caller, &id).await?;
    Ok(Json(RecordingJson::of(&s.service, r)))
}

async fn list_nodes(
    State(s): State<HttpState>,
    caller: Caller,
) -> Result<Json<NodesJson>, ApiError> {
    let nodes = s
        .service
        .list_nodes(&caller)?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(NodesJson { nodes }))
}

async fn drain_node(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<NodeJson>, ApiError> {
    Ok(Json(s.service.drain_node(&caller, &id).await?.into()))
}
