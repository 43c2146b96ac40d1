//! The signaling endpoint, `GET /signal/{meeting}?token=...` (WebSocket): a participant's
//! session, the adapter between its client and the meeting. The join token is checked
//! before anything else: a refused token never reaches the upgrade. After the upgrade the
//! session speaks the protocol of the `signaling` crate (`docs/signaling.md`): `waiting`
//! (the waiting room), then `live` (the meeting: what the client says goes through the
//! meeting core, `crate::meeting`; what the room, the hosts and the SFU say goes to the
//! client), with `frames` turning messages into WebSocket frames and saying why a session
//! ended.
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
use signaling::CloseCode;

use crate::Node;
use crate::hosts::{self, RoomState};
use crate::room::{Close, Participant};

mod frames;
mod live;
mod roster;
mod waiting;

use frames::closing;

/// A signaling connection's read buffer: messages are a few hundred bytes, an SDP a few
/// kilobytes; a larger one is read in several goes.
const SIGNAL_BUFFER: usize = 8 * 1024;

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
    // Counted by reason, answered 401.
    let refuse = |reason: &str, message: String| {
        node.metrics
            .tokens_refused
            .with_label_values(&[reason])
            .inc();
        error(StatusCode::UNAUTHORIZED, "unauthorized", message)
    };
    let Some(token) = q.token else {
        return refuse("missing", "a join token is required (?token=...)".into());
    };
    let Ok(meeting) = MeetingId::parse(&meeting) else {
        return refuse("wrong_meeting", TokenError::WrongMeeting.to_string());
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
            return refuse(reason, e.to_string());
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
    // Only a meeting the controller placed here and has not closed: a token that outlived
    // its meeting, or a restart of this node, goes back to the controller for a new join.
    // A join that raced its meeting's first join may arrive before the controller's
    // PrepareMeeting: it waits a moment for it.
    if !node.prepared(&meeting, PREPARE_GRACE).await {
        return error(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "meeting {meeting} is not hosted on this node (it ended or moved): join it again"
            ),
        );
    }
    // What the meeting's hosts decided: read from etcd when the meeting was prepared
    // here, and followed since.
    let mut room = node.hosts.follow(&meeting);
    let loaded = tokio::time::timeout(PREPARE_GRACE, room.wait_for(|r| r.loaded()))
        .await
        .is_ok_and(|r| r.is_ok());
    if !loaded {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this meeting's settings cannot be read right now (cluster state unreachable): try again",
        );
    }
    let refusal = {
        let r = room.borrow_and_update();
        if r.rec.ended {
            Some((StatusCode::CONFLICT, hosts::ENDED))
        } else {
            r.refusal(claims.sub.as_str())
                .map(|why| (StatusCode::FORBIDDEN, why))
        }
    };
    if let Some((status, refusal)) = refusal {
        let (code, why) = (refusal.http_code(), refusal.message);
        tracing::info!(meeting_id = %meeting, participant_id = %claims.sub, reason = why, "session refused");
        return error(status, code, why);
    }
    let max = max_participants(&node, &room.borrow());
    if !node.rooms.has_room(&meeting, &claims.sub, max) {
        return error(
            StatusCode::CONFLICT,
            "meeting_full",
            format!("meeting {meeting} is full: it has its maximum of {max} participants"),
        );
    }
    match upgrade {
        Ok(up) => {
            use tracing::Instrument;
            // The ids the controller's lines about this join carry too.
            let span = tracing::info_span!(
                "session",
                meeting_id = %claims.mtg,
                participant_id = %claims.sub
            );
            // Signaling messages are small and few: tungstenite's defaults (128 KiB read
            // and write buffers a connection, messages up to 64 MiB) cost a meeting of
            // 300 a quarter of a megabyte per participant and let one client make the
            // node hold 64 MiB. A message over the protocol's limit still gets its clear
            // `error` up to twice that; past that the socket closes.
            up.read_buffer_size(SIGNAL_BUFFER)
                .write_buffer_size(0)
                .max_message_size(2 * signaling::limits::MAX_MESSAGE_BYTES)
                .max_frame_size(2 * signaling::limits::MAX_MESSAGE_BYTES)
                .on_upgrade(move |ws| session(node, claims, room, ws).instrument(span))
        }
        Err(_) => error(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "token accepted; expected a WebSocket upgrade",
        ),
    }
}

/// Most participants the meeting may have: a webinar's cap or a meeting's.
fn max_participants(node: &Node, room: &RoomState) -> usize {
    if room.webinar {
        node.max_webinar_participants
    } else {
        node.max_participants
    }
}

/// How long a session waits for its meeting to be prepared here before it is refused.
const PREPARE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
async fn session(
    node: Arc<Node>,
    claims: JoinClaims,
    mut room: tokio::sync::watch::Receiver<RoomState>,
    mut ws: WebSocket,
) {
    let (me, waits) = {
        let r = room.borrow_and_update();
        let id = claims.sub.as_str();
        let role = r.role_of(id, claims.role);
        let waits = r.waiting_room() && !role.is_host() && !r.admitted(id);
        let me = Participant {
            participant_id: id.to_owned(),
            name: r.name_of(id, &claims.name).to_owned(),
            role,
            waiting: waits,
            joined_unix_ms: common::unix_ms(),
            ..Participant::default()
        };
        (me, waits)
    };
    // Checked before the upgrade too; this catches joins that raced for the last place.
    let max = max_participants(&node, &room.borrow());
    let mut membership = match node
        .rooms
        .try_join(&claims.mtg, &claims.sub, me.clone(), max)
    {
        Ok(m) => m,
        Err(max) => {
            let why = format!("the meeting is full: it has its maximum of {max} participants");
            tracing::info!(reason = %why, "session refused");
            let _ = closing(&mut ws, Close::new(CloseCode::Full, why)).await;
            let _ = ws.send(Message::Close(None)).await;
            return;
        }
    };
    let waited = if waits {
        waiting::wait_for_host(&node, &me, &mut membership, &mut room, &mut ws).await
    } else {
        None
    };
    let why = match waited {
        Some(why) => why,
        None => {
            let mut collab = node.collab.follow(&claims.mtg);
            let present = crate::attendance::Present::arrived(
                node.store.clone(),
                &node.id,
                node.shutdown.clone(),
                &claims,
                &me.name,
                me.role,
            );
            let why = live::in_meeting(
                &node,
                &claims,
                &mut membership,
                &mut room,
                &mut collab,
                &mut ws,
            )
            .await;
            present.left();
            why
        }
    };
    node.rooms.leave(&membership);
    let _ = ws.send(Message::Close(None)).await;
    tracing::info!(reason = %why, "session ended");
}
