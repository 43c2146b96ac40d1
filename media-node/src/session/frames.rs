//! Messages as WebSocket frames, and why a session ended.
use axum::extract::ws::{Message, WebSocket};
use signaling::{CloseCode, ServerMsg};

use crate::hosts;
use crate::room::Close;
use crate::sfu::SignalOut;

/// A message as its text frame.
pub(super) fn frame(msg: &ServerMsg) -> Message {
    Message::Text(msg.to_json().into())
}

/// An `error` message; `answers` is the type of the client message it refuses.
pub(super) fn error_msg(answers: &str, message: impl Into<String>) -> Message {
    frame(&ServerMsg::error(answers, message))
}

/// What the SFU says to a session's client, as its message (a closed peer connection
/// is the session's end, handled apart).
pub(super) fn signal_msg(msg: SignalOut) -> ServerMsg {
    match msg {
        SignalOut::Answer(sdp) => ServerMsg::Answer { sdp },
        SignalOut::Offer(sdp) => ServerMsg::Offer { sdp },
        SignalOut::Slots(slots) => ServerMsg::Slots { slots },
        SignalOut::PublishLayers { mid, layers } => ServerMsg::PublishLayers { mid, layers },
        SignalOut::Error { answers, message } => ServerMsg::error(answers, message),
        SignalOut::Closed(why) => media_failed(why).message(),
    }
}

/// The session's end when its peer connection failed or closed.
pub(super) fn media_failed(why: String) -> Close {
    Close::new(CloseCode::MediaFailed, why)
}

/// Sends each message of `now` that differs from the one last told (`last`, updated);
/// the session's end when the connection broke.
pub(super) async fn tell_changes<const N: usize>(
    ws: &mut WebSocket,
    last: [&mut ServerMsg; N],
    now: [ServerMsg; N],
) -> Result<(), Ending> {
    for (last, now) in last.into_iter().zip(now) {
        if now != *last {
            *last = now;
            ws.send(frame(last)).await.map_err(|_| BROKE)?;
        }
    }
    Ok(())
}

/// Why a session ended.
#[derive(Clone, Debug)]
pub(super) enum Ending {
    /// The client left, closed signaling, or its connection broke (says which).
    Client(&'static str),
    /// The node ended it and told the client why.
    Closed(Close),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Client(how) => f.write_str(how),
            Ending::Closed(c) => write!(f, "{:?}: {}", c.code, c.reason),
        }
    }
}

pub(super) const LEFT: Ending = Ending::Client("the client left");
pub(super) const CLIENT_CLOSED: Ending = Ending::Client("the client closed signaling");
pub(super) const BROKE: Ending = Ending::Client("the client's connection broke");

/// Sends `closed` saying `why`, and returns it.
pub(super) async fn closing(ws: &mut WebSocket, why: Close) -> Ending {
    let _ = ws.send(frame(&why.message())).await;
    Ending::Closed(why)
}

pub(super) fn shutting_down() -> Close {
    Close::new(CloseCode::Shutdown, "media node shutting down")
}

pub(super) fn closed_here() -> Close {
    Close::new(
        CloseCode::ClosedHere,
        "the meeting closed on this media node: join again",
    )
}

/// A host's refusal (removed, denied, ended) as the session's end.
pub(super) fn refused(r: hosts::Refusal) -> Close {
    Close::new(r.code, r.message)
}
