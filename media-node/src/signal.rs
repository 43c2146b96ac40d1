//! The signaling endpoint, `GET /signal/{meeting}?token=...` (WebSocket). The join token is
//! checked before anything else: a refused token never reaches the upgrade.
//! After the upgrade the session speaks the JSON protocol of `docs/signaling.md`: SDP
//! offer/answer with the SFU, the room's participant list, chat and mute state.
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

use crate::room::{ParticipantInfo, RoomEvent};
use crate::sfu::{SfuCommand, SignalOut};

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
    let prepared_by = tokio::time::Instant::now() + PREPARE_GRACE;
    while !node.hosts(&meeting) && tokio::time::Instant::now() < prepared_by {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if !node.hosts(&meeting) {
        return error(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "meeting {meeting} is not hosted on this node (it ended or moved): join it again"
            ),
        );
    }
    if !node
        .rooms
        .has_room(&meeting, &claims.sub, node.max_participants)
    {
        return error(
            StatusCode::CONFLICT,
            "meeting_full",
            format!(
                "meeting {meeting} is full: it has its maximum of {} participants",
                node.max_participants
            ),
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
            up.on_upgrade(move |ws| session(node, claims, ws).instrument(span))
        }
        Err(_) => error(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "token accepted; expected a WebSocket upgrade",
        ),
    }
}

/// Messages a client sends. Each may carry `"v": 1`; other versions are refused.
#[derive(Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ClientMsg {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    Chat {
        text: String,
    },
    Mute {
        audio_muted: bool,
        video_muted: bool,
    },
    /// The subscriber shows m-line `mid` at `width` x `height`: pick the layer to match.
    Layer {
        mid: String,
        width: u32,
        height: u32,
    },
    Leave {},
}

pub const PROTOCOL_VERSION: u64 = 1;
/// How long a session waits for its meeting to be prepared here before it is refused.
const PREPARE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
pub(crate) const MAX_CHAT_CHARS: usize = 2000;

/// A refused client message: what to say, and the type of message it answers (the
/// client's own `type`, or `unknown` when the message had none we could read).
#[derive(Debug)]
pub struct Refusal {
    pub answers: String,
    pub message: String,
}

/// Reads one client message (a WebSocket text frame). Public for the fuzzer (`fuzz/`).
pub fn parse_client(text: &str) -> Result<ClientMsg, Refusal> {
    let refuse = |answers: &str, message: String| Refusal {
        answers: answers.to_owned(),
        message,
    };
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(refuse(
            "unknown",
            format!("message over {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let mut v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| refuse("unknown", format!("invalid JSON: {e}")))?;
    let answers = v
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("unknown")
        .chars()
        .take(32)
        .collect::<String>();
    if let Some(obj) = v.as_object_mut() {
        match obj.remove("v") {
            None => {}
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(PROTOCOL_VERSION) => {}
            Some(other) => {
                return Err(refuse(
                    &answers,
                    format!(
                        "unsupported protocol version {other}; this node speaks {PROTOCOL_VERSION}"
                    ),
                ));
            }
        }
    }
    serde_json::from_value(v).map_err(|e| refuse(&answers, format!("invalid message: {e}")))
}

fn json(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

/// An `error` message; `answers` is the type of the client message it refuses.
fn error_msg(answers: &str, message: impl Into<String>) -> Message {
    json(serde_json::json!({ "type": "error", "in_reply_to": answers, "message": message.into() }))
}

fn signal_msg(msg: SignalOut) -> Message {
    match msg {
        SignalOut::Answer(sdp) => json(serde_json::json!({ "type": "answer", "sdp": sdp })),
        SignalOut::Offer(sdp) => json(serde_json::json!({ "type": "offer", "sdp": sdp })),
        SignalOut::Track {
            mid,
            participant,
            kind,
        } => json(
            serde_json::json!({ "type": "track", "mid": mid, "participant_id": participant.as_str(), "kind": kind }),
        ),
        SignalOut::TrackRemoved { mid } => {
            json(serde_json::json!({ "type": "track_removed", "mid": mid }))
        }
        SignalOut::Error { answers, message } => error_msg(answers, message),
        SignalOut::Closed(why) => json(serde_json::json!({ "type": "closed", "reason": why })),
    }
}

async fn session(node: Arc<Node>, claims: JoinClaims, mut ws: WebSocket) {
    let me = ParticipantInfo {
        participant_id: claims.sub.to_string(),
        name: claims.name.clone(),
        role: claims.role.as_str(),
        audio_muted: false,
        video_muted: false,
    };
    // Checked before the upgrade too; this catches joins that raced for the last place.
    let mut membership =
        match node
            .rooms
            .try_join(&claims.mtg, &claims.sub, me.clone(), node.max_participants)
        {
            Ok(m) => m,
            Err(max) => {
                let why = format!("the meeting is full: it has its maximum of {max} participants");
                tracing::info!(reason = %why, "session refused");
                let _ = ws.send(signal_msg(SignalOut::Closed(why))).await;
                let _ = ws.send(Message::Close(None)).await;
                return;
            }
        };
    node.participant_joined(&claims.mtg);
    let (sfu, mut from_sfu) = node.sfu.register(&claims.mtg);
    let key = sfu.key;
    // The first offer makes the peer connection; until one is accepted, every offer is
    // a first one (a refused offer leaves the session usable).
    sfu.send(SfuCommand::Join {
        key,
        meeting: claims.mtg.clone(),
        participant: claims.sub.clone(),
        name: claims.name.clone(),
    });
    let welcome = serde_json::json!({
        "type": "welcome",
        "version": PROTOCOL_VERSION,
        "meeting_id": claims.mtg.as_str(),
        "participant_id": claims.sub.as_str(),
        "name": claims.name,
        "role": claims.role.as_str(),
        "node_id": node.id.as_str(),
        "participants": membership.others,
        "active_speaker": membership.active_speaker,
    });
    tracing::info!(role = claims.role.as_str(), "session started");
    let mut ok = ws.send(json(welcome)).await.is_ok();
    let mut why = "the client's connection broke".to_owned();
    while ok {
        tokio::select! {
            _ = node.shutdown.cancelled() => {
                why = "media node shutting down".into();
                let _ = ws.send(signal_msg(SignalOut::Closed(why.clone()))).await;
                break;
            }
            ended = membership.session.ended() => {
                why = ended;
                let _ = ws.send(signal_msg(SignalOut::Closed(why.clone()))).await;
                break;
            }
            ev = membership.events.recv() => match ev {
                Ok(RoomEvent::ParticipantJoined { participant }) if participant.participant_id == me.participant_id => {}
                Ok(ev) => ok = ws.send(Message::Text(serde_json::to_string(&ev).unwrap_or_default().into())).await.is_ok(),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "signaling session fell behind its room's events");
                }
                Err(_) => break,
            },
            sig = from_sfu.recv() => match sig {
                Some(SignalOut::Closed(reason)) => {
                    why = reason;
                    let _ = ws.send(signal_msg(SignalOut::Closed(why.clone()))).await;
                    break;
                }
                Some(msg) => ok = ws.send(signal_msg(msg)).await.is_ok(),
                None => break,
            },
            msg = ws.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) => {
                        why = "the client closed signaling".into();
                        break;
                    }
                    Some(Err(_)) | None => break,
                    Some(Ok(Message::Binary(_))) => {
                        ok = ws.send(error_msg("binary", "binary messages are not part of the protocol")).await.is_ok();
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                let parsed = match parse_client(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        ok = ws.send(error_msg(&e.answers, e.message)).await.is_ok();
                        continue;
                    }
                };
                match parsed {
                    ClientMsg::Offer { sdp } => sfu.send(SfuCommand::Offer { key, sdp }),
                    ClientMsg::Answer { sdp } => sfu.send(SfuCommand::Answer { key, sdp }),
                    ClientMsg::Chat { text } => {
                        let text = text.trim();
                        if text.is_empty() || text.chars().count() > MAX_CHAT_CHARS {
                            ok = ws.send(error_msg("chat", format!("chat text: 1 to {MAX_CHAT_CHARS} characters"))).await.is_ok();
                            continue;
                        }
                        node.rooms.publish(&claims.mtg, RoomEvent::Chat {
                            from: me.participant_id.clone(),
                            name: me.name.clone(),
                            text: text.to_owned(),
                            unix_ms: common::unix_ms(),
                        });
                    }
                    ClientMsg::Mute { audio_muted, video_muted } => node.rooms.publish(&claims.mtg, RoomEvent::Mute {
                        participant_id: me.participant_id.clone(),
                        audio_muted,
                        video_muted,
                    }),
                    ClientMsg::Layer { mid, width, height } if mid.len() <= 16 => sfu.send(SfuCommand::Layer {
                        key,
                        mid,
                        rid: crate::sfu::layer_for_size(width, height),
                    }),
                    ClientMsg::Layer { .. } => ok = ws.send(error_msg("layer", "mid too long")).await.is_ok(),
                    ClientMsg::Leave {} => {
                        why = "the client left".into();
                        break;
                    }
                }
            }
        }
    }
    sfu.send(SfuCommand::Leave { key });
    node.rooms.leave(&membership);
    node.participant_left(&claims.mtg);
    let _ = ws.send(Message::Close(None)).await;
    tracing::info!(reason = %why, "session ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versioned_messages_and_refuses_garbage() {
        assert!(matches!(
            parse_client(r#"{"v":1,"type":"chat","text":"hi"}"#),
            Ok(ClientMsg::Chat { .. })
        ));
        assert!(matches!(
            parse_client(r#"{"type":"leave"}"#),
            Ok(ClientMsg::Leave {})
        ));
        for bad in [
            "",
            "{",
            "[]",
            "null",
            r#"{"type":"dance"}"#,
            r#"{"v":2,"type":"leave"}"#,
            r#"{"v":"1","type":"leave"}"#,
            r#"{"type":"offer"}"#,
            r#"{"type":"chat","text":"x","extra":1}"#,
            r#"{"type":"mute","audio_muted":"yes","video_muted":false}"#,
        ] {
            assert!(parse_client(bad).is_err(), "{bad:?} accepted");
        }
        // A refusal names the type of the message it answers, when there is one.
        let answers = |m: &str| parse_client(m).unwrap_err().answers;
        assert_eq!(answers(r#"{"type":"offer"}"#), "offer");
        assert_eq!(answers(r#"{"v":2,"type":"leave"}"#), "leave");
        assert_eq!(answers(r#"{"type":"dance"}"#), "dance");
        assert_eq!(answers("{"), "unknown");
        assert_eq!(answers(r#"{"type":7}"#), "unknown");
        assert!(
            parse_client(&format!(
                r#"{{"type":"chat","text":"{}"}}"#,
                "x".repeat(MAX_MESSAGE_BYTES)
            ))
            .is_err()
        );
    }
}
