//! The HTTP/JSON edge: routes, JSON shapes and the one place where `ApiError` becomes an
//! HTTP status with a `{error, message}` body.
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proto::v1::{MeetingStatus, NodeState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::service::{ApiError, Caller, JoinInput, MeetingInfo, NewMeeting, NodeInfo, Service};

const MAX_BODY: usize = 64 * 1024;

// The browser client: self-contained static files, compiled in (no CDN, no build step).
const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(INDEX_HTML)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), message = %self, "request failed");
        }
        (
            status,
            Json(ErrorBody {
                error: self.code(),
                message: self.to_string(),
            }),
        )
            .into_response()
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

/// A JSON body whose every defect (syntax, type, unknown field, size) is a 400 with a message.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if bytes.len() > MAX_BODY {
            return Err(ApiError::BadRequest(format!(
                "request body over {MAX_BODY} bytes"
            )));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub service: Arc<Service>,
    pub region_header: Option<String>,
}

impl FromRequestParts<HttpState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, ApiError> {
        let bearer = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => {
                let v = v
                    .to_str()
                    .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
                Some(
                    crate::service::parse_bearer(v)
                        .ok_or_else(|| {
                            ApiError::Unauthorized(
                                "Authorization must be `Bearer <operator key>`".into(),
                            )
                        })?
                        .to_owned(),
                )
            }
        };
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let region_header = header_value(&parts.headers, state.region_header.as_deref());
        Ok(Caller {
            bearer,
            addr,
            region_header,
        })
    }
}

fn header_value(h: &HeaderMap, name: Option<&str>) -> Option<String> {
    name.and_then(|n| h.get(n))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMeetingBody {
    title: String,
    password: Option<String>,
    residency: Option<String>,
    classification: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    name: String,
    password: Option<String>,
    region: Option<String>,
    host_key: Option<String>,
}

#[derive(Serialize)]
pub struct PlacementJson {
    pub region: String,
    pub node_id: String,
}

#[derive(Serialize)]
pub struct MeetingJson {
    pub id: String,
    pub title: String,
    pub has_password: bool,
    pub residency: Option<String>,
    pub classification: String,
    pub state: &'static str,
    pub created_unix_ms: i64,
    pub ended_unix_ms: Option<i64>,
    pub placements: Vec<PlacementJson>,
}

impl From<MeetingInfo> for MeetingJson {
    fn from(m: MeetingInfo) -> Self {
        let r = m.record;
        Self {
            id: r.meeting_id,
            title: r.title,
            has_password: !r.password_hash.is_empty(),
            residency: (!r.residency.is_empty()).then_some(r.residency),
            classification: r.classification,
            state: if r.status == MeetingStatus::Ended as i32 {
                "ended"
            } else {
                "active"
            },
            created_unix_ms: r.created_unix_ms,
            ended_unix_ms: (r.ended_unix_ms != 0).then_some(r.ended_unix_ms),
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

pub fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Active => "active",
        NodeState::Draining => "draining",
        NodeState::Unspecified => "unknown",
    }
}

impl From<NodeInfo> for NodeJson {
    fn from(n: NodeInfo) -> Self {
        Self {
            id: n.id.to_string(),
            kind: n.kind,
            region: n.region,
            state: state_name(n.state),
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

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/v1/meetings", post(create_meeting).get(list_meetings))
        .route("/v1/meetings/{id}", get(get_meeting).delete(end_meeting))
        .route("/v1/meetings/{id}/join", post(join))
        .route(
            "/v1/meetings/{id}/recordings",
            post(start_recording).get(list_recordings),
        )
        .route(
            "/v1/recordings/{id}",
            get(get_recording).delete(delete_recording),
        )
        .route("/v1/recordings/{id}/stop", post(stop_recording))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{id}/drain", post(drain_node))
        .route("/", get(page))
        .route("/m/{id}", get(page))
        .route(
            "/static/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .route(
            "/static/style.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    STYLE_CSS,
                )
            }),
        )
        .fallback(|| async { ApiError::NotFound("no such API route".into()) })
        .with_state(state)
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
    };
    let (info, host_key) = s.service.create_meeting(&caller, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedJson {
            meeting: info.into(),
            host_key,
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
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let list = s.service.list_meetings(&caller, q.state.as_deref()).await?;
    let list: Vec<MeetingJson> = list.into_iter().map(Into::into).collect();
    Ok(Json(serde_json::json!({ "meetings": list })))
}

/// A recording as the API shows it.
#[derive(Serialize)]
struct RecordingJson {
    recording_id: String,
    meeting_id: String,
    node_id: String,
    state: &'static str,
    classification: String,
    started_unix_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_unix_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_unix_ms: Option<i64>,
    files: Vec<String>,
    gaps: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
    /// Signed, expiring links to the files (stopped recordings).
    downloads: Vec<DownloadJson>,
}

#[derive(Serialize)]
struct DownloadJson {
    file: String,
    url: String,
    expires_unix: i64,
}

impl RecordingJson {
    fn of(s: &Service, r: proto::v1::RecordingRecord) -> Self {
        let downloads = s
            .download_links(&r)
            .into_iter()
            .map(|d| DownloadJson {
                file: d.file,
                url: d.url,
                expires_unix: d.expires_unix,
            })
            .collect();
        Self {
            downloads,
            ..r.into()
        }
    }
}

impl From<proto::v1::RecordingRecord> for RecordingJson {
    fn from(r: proto::v1::RecordingRecord) -> Self {
        let some = |t: i64| (t > 0).then_some(t);
        Self {
            state: crate::recordings::state_name(r.state),
            stopped_unix_ms: some(r.stopped_unix_ms),
            deleted_unix_ms: some(r.deleted_unix_ms),
            gaps: r
                .gaps
                .iter()
                .map(|g| {
                    serde_json::json!({
                        "start_unix_ms": g.start_unix_ms,
                        "end_unix_ms": g.end_unix_ms,
                        "reason": g.reason,
                    })
                })
                .collect(),
            recording_id: r.recording_id,
            meeting_id: r.meeting_id,
            node_id: r.node_id,
            classification: r.classification,
            started_unix_ms: r.started_unix_ms,
            files: r.files,
            error: r.error,
            downloads: Vec::new(),
        }
    }
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
) -> Result<Json<serde_json::Value>, ApiError> {
    let list: Vec<RecordingJson> = s
        .service
        .list_recordings(&caller, &id)
        .await?
        .into_iter()
        .map(|r| RecordingJson::of(&s.service, r))
        .collect();
    Ok(Json(serde_json::json!({ "recordings": list })))
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

async fn end_meeting(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MeetingJson>, ApiError> {
    Ok(Json(s.service.end_meeting(&caller, &id).await?.into()))
}

async fn join(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<JoinBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req = JoinInput {
        meeting: id,
        name: b.name,
        password: b.password,
        region: b.region,
        host_key: b.host_key,
    };
    let j = s.service.join(&caller, req).await?;
    Ok(Json(serde_json::json!({
        "signal_url": j.signal_url,
        "token": j.token,
        "region": j.region.to_string(),
        "node_id": j.node.to_string(),
        "participant_id": j.participant.to_string(),
        "role": j.role.as_str(),
        "expires_in": j.expires_in_secs,
    })))
}

async fn list_nodes(
    State(s): State<HttpState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let nodes: Vec<NodeJson> = s
        .service
        .list_nodes(&caller)?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(serde_json::json!({ "nodes": nodes })))
}

async fn drain_node(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n: NodeJson = s.service.drain_node(&caller, &id).await?.into();
    Ok(Json(
        serde_json::to_value(n).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}
