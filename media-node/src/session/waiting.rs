//! A participant in the waiting room.
use axum::extract::ws::{Message, WebSocket};
use signaling::{ClientMsg, Participant, ServerMsg, Waiting, parse_client};
use tokio::sync::watch;

use super::frames::{
    BROKE, CLIENT_CLOSED, Ending, LEFT, closed_here, closing, error_msg, frame, refused,
    shutting_down,
};
use crate::Node;
use crate::hosts::{self, RoomState};
use crate::room::Membership;

/// A participant in the waiting room: told so (`waiting`), given no media and no one's
/// news, until a host admits them (None: go on into the meeting) or turns them away, or
/// the session ends otherwise (why).
pub(super) async fn wait_for_host(
    node: &Node,
    me: &Participant,
    membership: &mut Membership,
    room: &mut watch::Receiver<RoomState>,
    ws: &mut WebSocket,
) -> Option<Ending> {
    let hello = ServerMsg::Waiting(Waiting {
        version: signaling::VERSION,
        meeting_id: membership.meeting.as_str().to_owned(),
        participant_id: me.participant_id.clone(),
        name: me.name.clone(),
        title: room.borrow().title.clone(),
    });
    if ws.send(frame(&hello)).await.is_err() {
        return Some(BROKE);
    }
    tracing::info!("waiting for a host to let them in");
    loop {
        tokio::select! {
            biased;
            _ = node.shutdown.cancelled() => return Some(closing(ws, shutting_down()).await),
            why = membership.session.ended() => return Some(closing(ws, why).await),
            changed = room.changed() => {
                if changed.is_err() {
                    return Some(closing(ws, closed_here()).await);
                }
                let (ended, refusal, admitted) = {
                    let r = room.borrow_and_update();
                    let id = me.participant_id.as_str();
                    (r.rec.ended, r.refusal(id), r.admitted(id) || !r.waiting_room())
                };
                if ended {
                    return Some(closing(ws, refused(hosts::ENDED)).await);
                }
                if let Some(why) = refusal {
                    return Some(closing(ws, refused(why)).await);
                }
                if admitted {
                    node.rooms.update(&membership.meeting, &me.participant_id, |p| p.waiting = false);
                    tracing::info!("admitted from the waiting room");
                    return None;
                }
            }
            msg = ws.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let refusal = match parse_client(&t) {
                        Ok(ClientMsg::Leave {}) => return Some(LEFT),
                        Ok(m) => error_msg(m.kind(), "you are in the waiting room: a host has not let you in yet"),
                        Err(e) => error_msg(&e.answers, e.message),
                    };
                    if ws.send(refusal).await.is_err() {
                        return Some(BROKE);
                    }
                }
                Some(Ok(Message::Close(_))) => return Some(CLIENT_CLOSED),
                Some(Err(_)) | None => return Some(BROKE),
                Some(Ok(_)) => {}
            },
        }
    }
}
