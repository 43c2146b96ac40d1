//! The signaling protocol between a participant's client and its media node, as types:
//! what a client sends ([`ClientMsg`]), what the node sends ([`ServerMsg`]), the
//! participant object, roles, why a session ends ([`CloseCode`]) and the limits both
//! sides check. `docs/signaling.md` describes it for people; `tests/agreement.rs` fails
//! when the two disagree on a message's name, and keeps the page's `protocol.js` (the
//! names the browser client dispatches on) generated from these types.
//!
//! Every message is one JSON object with a `type`, in a WebSocket text frame. Version 1.
pub mod board;
mod client;
pub mod limits;
mod role;
mod server;
pub mod view;

pub use board::BoardOp;
pub use client::{ClientMsg, CloudRecordingAction, Refusal, parse_client};
pub use role::Role;
pub use server::{
    Breakout, CloseCode, MediaKind, Participant, Poll, PollAnswer, PollResults, Question,
    ROSTER_PAGE, RoomSettings, ServerMsg, Waiting, Welcome,
};
pub use view::{Slot, TileSize, View, ViewMode};

/// The protocol version: a client message may carry `"v": 1`; any other is refused.
pub const VERSION: u64 = 1;

/// The names serde knows for the variants of `T`: message `type`s for a message enum
/// (`probe` `{"type":"\u0000"}`), the strings of a plain enum (`probe` `"\u0000"`). Read
/// from the error serde gives for a variant that does not exist, which lists every one
/// it expects, so the agreement test and the page's `protocol.js` get serde's own names.
pub fn variant_names<T: serde::de::DeserializeOwned>(probe: &str) -> Vec<String> {
    let Err(e) = serde_json::from_str::<T>(probe) else {
        return Vec::new();
    };
    let e = e.to_string();
    let Some((_, expected)) = e.split_once("expected") else {
        return Vec::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The `type` of every message a client may send.
pub fn client_types() -> Vec<String> {
    variant_names::<ClientMsg>(r#"{"type":"\u0000"}"#)
}

/// The `type` of every message the node sends.
pub fn server_types() -> Vec<String> {
    variant_names::<ServerMsg>(r#"{"type":"\u0000"}"#)
}
