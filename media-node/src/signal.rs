//! The signaling endpoint, `GET /signal/{meeting}?token=...` (WebSocket). The join token is
//! checked before anything else: a refused token never reaches the upgrade.
//! The message protocol itself comes with the media issue; today a session is admitted,
//! greeted, counted as a participant until it closes, and nothing more.
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::ids::MeetingId;
use common::token::{JoinClaims, TokenError};
use serde::Deserialize;

use crate::Node;

#[derive(Deserialize)]
pub struct SignalQuery {
    token: Option<String>,
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/signal/{meeting}", get(signal))
        .with_state(node)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": code, "message": message.into() })),
    )
        .into_response()
}

async fn signal(
    State(node): State<Arc<Node>>,
    Path(meeting): Path<String>,
    Query(q): Query<SignalQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(token) = q.token else {
        node.metrics
            .tokens_refused
            .with_label_values(&["missing"])
            .inc();
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a join token is required (?token=...)",
        );
    };
    let Ok(meeting) = MeetingId::parse(&meeting) else {
        node.metrics
            .tokens_refused
            .with_label_values(&["wrong_meeting"])
            .inc();
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            TokenError::WrongMeeting.to_string(),
        );
    };
    let now = common::unix_ms() as u64 / 1000;
    let claims = match node.verifier.verify(&token, &meeting, now) {
        Ok(c) => c,
        Err(e) => {
            let reason = match e {
                TokenError::Expired => "expired",
                TokenError::WrongNode => "wrong_node",
                TokenError::WrongMeeting => "wrong_meeting",
                TokenError::BadSignature | TokenError::UnknownKey => "forged",
                _ => "malformed",
            };
            node.metrics
                .tokens_refused
                .with_label_values(&[reason])
                .inc();
            return error(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string());
        }
    };
    // Self-fencing: a node that cannot renew its lease may already have been replaced.
    if let Err(why) = node.registration.check() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("this media node is fenced: {why}"),
        );
    }
    match upgrade {
        Ok(up) => up.on_upgrade(move |ws| session(node, claims, ws)),
        Err(_) => error(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "token accepted; expected a WebSocket upgrade",
        ),
    }
}

async fn session(node: Arc<Node>, claims: JoinClaims, mut ws: WebSocket) {
    node.participant_joined(&claims.mtg);
    let welcome = serde_json::json!({
        "type": "welcome",
        "version": 1,
        "meeting_id": claims.mtg.as_str(),
        "participant_id": claims.sub.as_str(),
        "name": claims.name,
        "role": claims.role.as_str(),
        "node_id": node.id.as_str(),
    });
    if ws
        .send(Message::Text(welcome.to_string().into()))
        .await
        .is_ok()
    {
        loop {
            tokio::select! {
                _ = node.shutdown.cancelled() => {
                    let _ = ws.send(Message::Close(None)).await;
                    break;
                }
                msg = ws.recv() => match msg {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    node.participant_left(&claims.mtg);
}
