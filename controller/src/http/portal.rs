//! The portal (`/portal`: a signed-in user's meetings, and for administrators the
//! dashboard) and the dashboard's data, `GET /v1/dashboard`. Its script is one of
//! `web.rs`'s static files.
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use super::{ApiJson, HttpState, Json};
use crate::auth::Caller;
use crate::error::ApiError;

pub(super) const PORTAL_HTML: &str = include_str!("../../web/portal.html");

pub(super) fn router() -> Router<HttpState> {
    Router::new()
        .route(
            "/portal",
            get(|headers: axum::http::HeaderMap| async move {
                super::web::localised(PORTAL_HTML, &headers)
            }),
        )
        .route("/v1/dashboard", get(dashboard))
        .route("/v1/org/settings", get(org_settings).put(set_org_settings))
}

fn settings_json(org: String, o: crate::model::OrgSettings) -> Json<Value> {
    Json(json!({
        "org": org,
        "waiting_room": o.waiting_room,
        "recording_allowed": !o.recording_forbidden,
        "recording_needs_classification": o.recording_needs_classification,
        "e2ee": o.e2ee,
        "allowed_regions": o.allowed_regions.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "retention_secs": o.retention.map(|d| d.as_secs()),
        "updated_unix_ms": (o.updated_unix_ms > 0).then_some(o.updated_unix_ms),
        "updated_by": (!o.updated_by.is_empty()).then_some(o.updated_by),
    }))
}

/// The signed-in administrator's organisation's settings.
async fn org_settings(State(s): State<HttpState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let (org, o) = s.service.org_settings(&caller).await?;
    Ok(settings_json(org, o))
}

async fn set_org_settings(
    State(s): State<HttpState>,
    caller: Caller,
    ApiJson(b): ApiJson<crate::org::OrgSettingsInput>,
) -> Result<Json<Value>, ApiError> {
    let (org, o) = s.service.set_org_settings(&caller, b).await?;
    Ok(settings_json(org, o))
}

async fn dashboard(State(s): State<HttpState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let rows = s.service.dashboard(&caller).await?;
    let now = common::unix_ms();
    let meetings: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let m = r.meeting;
            let here: Vec<Value> = r
                .attendance
                .iter()
                .filter(|a| a.left_unix_ms.is_none() && !m.is_ended())
                .map(|a| {
                    let q = r.quality.iter().find(|q| q.participant_id == a.participant_id);
                    json!({
                        "rtt_ms": q.and_then(|q| q.rtt_ms),
                        "loss": q.and_then(|q| q.loss),
                        "jitter_ms": q.and_then(|q| q.jitter_ms),
                        "participant_id": a.participant_id,
                        "name": a.name,
                        "role": a.role,
                        "region": a.region,
                        "node_id": a.node_id,
                        "joined_unix_ms": a.joined_unix_ms,
                    })
                })
                .collect();
            let end = m.ended_unix_ms.unwrap_or(now);
            json!({
                "id": m.id.to_string(),
                "title": m.title,
                "kind": m.kind.as_str(),
                "state": m.state.as_str(),
                "owner": m.owner.as_ref().map(|o| json!({ "name": o.name, "email": o.email })),
                "created_unix_ms": m.created_unix_ms,
                "ended_unix_ms": m.ended_unix_ms,
                "duration_secs": (end - m.created_unix_ms).max(0) / 1000,
                "placements": r.placements.iter().map(|(region, node)| json!({ "region": region, "node_id": node })).collect::<Vec<_>>(),
                "recording": r.recording,
                "participants_now": here,
                "participants_total": r.attendance.len(),
            })
        })
        .collect();
    Ok(Json(json!({ "meetings": meetings })))
}
