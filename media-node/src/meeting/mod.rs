//! The meeting layer's decisions, without I/O: what a participant's message means, given
//! who they are and what the meeting's hosts allow, as [`Output`]s for the session
//! adapter (`session/live.rs`) to carry out — a refusal to its client, an event for everyone,
//! a change of its own participant record, a command for the SFU, a whiteboard
//! operation, host actions or a poll request for the store. Time comes in as an input.
//!
//! By concern: `participant` (chat, reactions, mute, hands, local recording, media
//! negotiation, the whiteboard), `host_controls` (host actions and who may take them;
//! who inherits the host role), `news` (what a host's logged action means for one
//! session), `polls` (poll and Q&A requests), `allowance` (how fast a session may ask).
pub mod allowance;
pub mod host_controls;
pub mod news;
pub mod participant;
pub mod polls;

pub use allowance::Allowances;
pub use participant::{Ctx, Output, handle};
