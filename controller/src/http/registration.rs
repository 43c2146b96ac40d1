//! Registering for a meeting (`POST /v1/meetings/{id}/registrants`, anyone with the
//! link) and a host's decision on a registrant (`POST …/registrants/{r}/approve` and
//! `…/reject`). The list of registrants is an export (`exports.rs`).
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

use super::calendar::public_base;
use super::{ApiJson, HttpState, Json};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::model::Registrant;
use crate::registration::RegisterInput;

pub(super) fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/meetings/{id}/registrants", post(register))
        .route(
            "/v1/meetings/{id}/registrants/{registrant}/approve",
            post(decide::<true>),
        )
        .route(
            "/v1/meetings/{id}/registrants/{registrant}/reject",
            post(decide::<false>),
        )
}

fn registrant_json(r: &Registrant) -> Value {
    json!({
        "registrant_id": r.id,
        "name": r.name,
        "state": r.state.as_str(),
        "registered_unix_ms": r.registered_unix_ms,
        "decided_unix_ms": r.decided_unix_ms,
    })
}

/// Registers; the answer has the personal join link (shown this once), which works once
/// the registration is approved.
async fn register(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<RegisterInput>,
) -> Result<impl IntoResponse, ApiError> {
    let (r, key) = s.service.register(&caller, &id, b).await?;
    let mut body = registrant_json(&r);
    body["registrant_key"] = json!(key);
    body["join_url"] = json!(format!(
        "{}/m/{}?registrant_key={key}",
        public_base(&s, &headers),
        r.meeting
    ));
    Ok((StatusCode::CREATED, Json(body)))
}

async fn decide<const APPROVE: bool>(
    State(s): State<HttpState>,
    caller: Caller,
    Path((id, registrant)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let r = s
        .service
        .decide_registrant(&caller, &id, &registrant, APPROVE)
        .await?;
    Ok(Json(registrant_json(&r)))
}
