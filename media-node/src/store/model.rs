//! What the meeting layer keeps in the store, as its own types: the room record (what a
//! meeting's hosts decided, with the log of their actions) and a participant's
//! attendance. The stored records (`state.proto`) become these in `convert.rs`, the only
//! module besides the etcd store that names them (`media-node/clippy.toml`).
use std::collections::HashMap;

use signaling::Role;

/// What a meeting's hosts decided: one record per meeting, shared by all its nodes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomRecord {
    pub locked: bool,
    /// None: the meeting's own setting.
    pub waiting_room: Option<bool>,
    /// Participants may not unmute themselves (after a host muted them).
    pub unmute_disallowed: bool,
    /// Participant ids a host let in from the waiting room, turned away, removed.
    pub admitted: Vec<String>,
    pub denied: Vec<String>,
    pub removed: Vec<String>,
    /// Roles and names a host gave, by participant id.
    pub roles: HashMap<String, Role>,
    /// Roles a host gave that this node cannot read (a newer node's): kept as written,
    /// so that this node's writes do not lose them; read as attendee.
    pub other_roles: HashMap<String, String>,
    pub names: HashMap<String, String>,
    /// A host ended the meeting for everyone.
    pub ended: bool,
    /// The newest host actions, oldest first: the audit trail, and how one-off actions
    /// reach each participant's node.
    pub actions: Vec<LoggedAction>,
    /// The sequence number the next action gets (from 1).
    pub next_seq: u64,
    /// Breakout rooms: their names (room n is `breakout_rooms[n - 1]`; 0 is the main
    /// room), who is moved where, whether they are open, and when they close (0: no
    /// countdown).
    pub breakout_rooms: Vec<String>,
    pub breakout_assignment: HashMap<String, u32>,
    pub breakout_open: bool,
    pub breakout_closes_unix_ms: i64,
    pub board_attendees_forbidden: bool,
    pub local_recording_forbidden: bool,
    /// Webinars: attendees' chat reaches everyone (else the panel only).
    pub attendee_chat_everyone: bool,
    /// The meeting's cloud recording as its hosts asked for it, if they ever did.
    pub cloud_recording: Option<CloudRecordingEntry>,
}

/// What a meeting's hosts asked of its cloud recording (the leader controller carries it
/// out, and writes here when it cannot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloudRecordingEntry {
    pub recording_id: String,
    /// `recording`, `paused` or `stopped` (kept as written: see [`Self::wish`]).
    pub state: String,
    pub since_unix_ms: i64,
    /// Why it stopped without a host stopping it (empty: it did not).
    pub error: String,
}

impl RoomRecord {
    /// What the hosts asked of the cloud recording (stopped when they never asked).
    pub fn cloud_wish(&self) -> common::cloud_recording::Wish {
        self.cloud_recording
            .as_ref()
            .map_or(common::cloud_recording::Wish::Stopped, |c| c.wish())
    }
}

impl CloudRecordingEntry {
    /// The state; one this node cannot read (a newer writer's) counts as recording, so
    /// that participants are told rather than not.
    pub fn wish(&self) -> common::cloud_recording::Wish {
        common::cloud_recording::Wish::parse(&self.state)
            .unwrap_or(common::cloud_recording::Wish::Recording)
    }
}

/// One host action in the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoggedAction {
    pub seq: u64,
    pub unix_ms: i64,
    /// Who acted: participant id, name and role at the time.
    pub by: String,
    pub by_name: String,
    /// As the audit shows it (kept as written, whatever node wrote it).
    pub by_role: String,
    /// The action's name as the audit shows it (`admit`, `mute`, `stop_video`, …).
    pub action: String,
    /// The participant acted on, if any (empty: none).
    pub target: String,
    pub detail: String,
}

/// A participant's arrival in a meeting and departure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attendance {
    pub participant_id: String,
    pub name: String,
    /// The registration they joined with; empty for none.
    pub registrant_id: String,
    pub role: Role,
    pub region: String,
    pub node_id: String,
    pub joined_unix_ms: i64,
    /// 0 while they are in.
    pub left_unix_ms: i64,
}

/// A meeting's polls and questions: one record per meeting, shared by all its nodes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollabRecord {
    pub polls: Vec<PollEntry>,
    pub questions: Vec<QuestionEntry>,
    /// The id the next poll or question gets (from 1).
    pub next_id: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollKind {
    Single,
    Multiple,
    Text,
    /// A kind this node does not know (0: none; else a newer node's), kept as stored.
    Unknown(i32),
}

impl Default for PollKind {
    fn default() -> Self {
        PollKind::Unknown(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollState {
    /// Prepared by a host, not yet shown to participants.
    Draft,
    Open,
    Ended,
    /// A state this node does not know (0: none; else a newer node's), kept as stored.
    Unknown(i32),
}

impl Default for PollState {
    fn default() -> Self {
        PollState::Unknown(0)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PollEntry {
    pub id: u32,
    pub question: String,
    pub kind: PollKind,
    pub options: Vec<String>,
    pub anonymous: bool,
    pub state: PollState,
    /// A host shared the results with everyone.
    pub shared: bool,
    pub created_by_name: String,
    pub created_unix_ms: i64,
    pub launched_unix_ms: i64,
    pub ended_unix_ms: i64,
    /// Who answered (participant ids, sorted): a second answer is refused. Nothing links
    /// an id here to an answer of an anonymous poll.
    pub voters: Vec<String>,
    /// Answers per option, in the options' order.
    pub tally: Vec<u64>,
    /// Named polls: each answer with who gave it. Anonymous polls: none.
    pub answers: Vec<PollAnswerEntry>,
    /// Anonymous free-text answers, sorted (so that their order says nothing of who).
    pub texts: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollAnswerEntry {
    pub participant_id: String,
    pub name: String,
    /// Indexes into the poll's options.
    pub choices: Vec<u32>,
    pub text: String,
    pub unix_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuestionEntry {
    pub id: u32,
    pub text: String,
    /// Empty for an anonymous question: its author is kept nowhere.
    pub author_id: String,
    pub author_name: String,
    pub asked_unix_ms: i64,
    /// Who upvoted (participant ids): one vote each.
    pub voters: Vec<String>,
    /// A host's written answer.
    pub answer: String,
    pub answered_by_name: String,
    pub answered_live: bool,
    pub dismissed: bool,
}
