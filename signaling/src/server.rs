use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{BoardOp, Role};

/// Messages the media node sends a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message in a meeting with a waiting room, for those a host has not let in.
    Waiting(Waiting),
    /// First message in the meeting (after `waiting`, if one waited).
    Welcome(Welcome),
    /// The meeting's settings: after `welcome`, and whenever a host changes one.
    Room(RoomSettings),
    Answer {
        sdp: String,
    },
    Offer {
        sdp: String,
    },
    /// Which participant each receive slot carries now: after the first negotiation of
    /// the slots, and whenever one changes.
    Slots {
        slots: Vec<crate::Slot>,
    },
    /// Dynacast: the simulcast layers of your track on m-line `mid` that some receiver
    /// needs now (the lowest always, as a keep-alive); send only these.
    PublishLayers {
        mid: String,
        layers: Vec<String>,
    },
    ParticipantJoined {
        participant: Participant,
    },
    /// A participant's role, name, hand or mute state changed (`mute` alone when only
    /// the mute state did).
    ParticipantUpdated {
        participant: Participant,
    },
    ParticipantLeft {
        participant_id: String,
    },
    /// Clients on receive slots: the roster's changes (`participant_joined`,
    /// `participant_updated`, `participant_left`, `mute`) in order, at most one batch
    /// every 250 ms.
    Roster {
        events: Vec<ServerMsg>,
    },
    /// The answer to `roster_page`: participants from the `from`-th on (at most
    /// [`ROSTER_PAGE`]), of `total` the client may be shown now.
    RosterPage {
        from: u32,
        total: u32,
        participants: Vec<Participant>,
    },
    Chat {
        from: String,
        name: String,
        text: String,
        unix_ms: i64,
    },
    Mute {
        participant_id: String,
        audio_muted: bool,
        video_muted: bool,
    },
    /// A host muted you or stopped your video: the node drops that media already.
    MutedByHost {
        audio_muted: bool,
        video_muted: bool,
        by_name: String,
    },
    /// A host asks you to unmute; you decide.
    UnmuteRequest {
        by_name: String,
    },
    ActiveSpeaker {
        participant_id: String,
    },
    /// A client message was refused (`in_reply_to`: its type); the session goes on.
    Error {
        in_reply_to: String,
        message: String,
    },
    Polls {
        polls: Vec<Poll>,
    },
    Questions {
        questions: Vec<Question>,
    },
    /// The whole whiteboard, in order: after `welcome`.
    Board {
        ops: Vec<BoardOp>,
    },
    /// An operation on the whiteboard.
    BoardDraw(BoardOp),
    /// A stroke taken off the board.
    BoardUndo {
        author: String,
        stroke_id: u32,
    },
    BoardClear {
        by: String,
        by_name: String,
    },
    /// A short emoji shown on the sender's tile for a few seconds.
    Reaction {
        from: String,
        name: String,
        emoji: String,
        unix_ms: i64,
    },
    /// Hosts forbade recording on participants' computers: stop.
    LocalRecordingStop {
        reason: String,
    },
    /// The breakout rooms: after `welcome` when there are any, and whenever they change.
    Breakout(Breakout),
    /// A host's message to every breakout room.
    Broadcast {
        text: String,
        by_name: String,
    },
    /// The session ends: `code` says why (clients switch on it), `reason` says it to a
    /// person.
    Closed {
        code: CloseCode,
        reason: String,
    },
}

impl ServerMsg {
    /// An `error` answering a client message of type `in_reply_to`.
    pub fn error(in_reply_to: &str, message: impl Into<String>) -> ServerMsg {
        ServerMsg::Error {
            in_reply_to: in_reply_to.to_owned(),
            message: message.into(),
        }
    }

    /// The message as its text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("signaling messages always serialise")
    }
}

/// `waiting`: the participant waits for a host to let them in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    pub version: u64,
    pub meeting_id: String,
    pub participant_id: String,
    pub name: String,
    /// The meeting's title.
    pub title: String,
}

/// How many participants `welcome` lists, and `roster_page` answers with: the roster of
/// a meeting of hundreds comes a page at a time.
pub const ROSTER_PAGE: usize = 100;

/// `welcome`: the participant is in the meeting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u64,
    pub meeting_id: String,
    pub participant_id: String,
    pub name: String,
    pub role: Role,
    /// The media node the session is on.
    pub node_id: String,
    /// Who was in the meeting when we came (hosts also see who waits): the first
    /// [`ROSTER_PAGE`] of them, hosts first, then in the order they joined.
    pub participants: Vec<Participant>,
    /// How many others were in the meeting when we came (what the client may be shown):
    /// more than `participants` holds asks for `roster_page`s; the roster's changes keep
    /// it right from then on.
    #[serde(default)]
    pub participant_count: u32,
    /// Who is speaking.
    pub active_speaker: Option<String>,
}

/// Why a session ended (`closed`'s `code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseCode {
    /// A newer session of the same participant took over (another window).
    Replaced,
    /// A host removed the participant; their join cannot be used again.
    Removed,
    /// A host turned the participant away at the waiting room.
    Denied,
    /// A host ended the meeting for everyone.
    Ended,
    /// The meeting was full when the session came to take its place.
    Full,
    /// The meeting closed on this media node (it moved, or the controller closed it
    /// here): join again through the controller.
    ClosedHere,
    /// The media node is shutting down: join again.
    Shutdown,
    /// The media node lost contact with the cluster: join again.
    Fenced,
    /// The media connection failed: join again.
    MediaFailed,
}

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// A participant as every session is shown them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub participant_id: String,
    pub name: String,
    pub role: Role,
    pub audio_muted: bool,
    pub video_muted: bool,
    /// When the hand went up; None while it is down. Hands are listed in this order.
    pub hand_raised_unix_ms: Option<i64>,
    /// In the waiting room: shown to hosts and co-hosts only, gets no media.
    pub waiting: bool,
    /// When the participant joined (the longest present takes over from a host who
    /// leaves without a co-host).
    pub joined_unix_ms: i64,
    /// Recording the meeting on their own computer: every participant is shown it.
    pub local_recording: bool,
}

impl Participant {
    /// Whether the participant runs the meeting (host or co-host).
    pub fn is_host(&self) -> bool {
        self.role.is_host()
    }
}

/// The meeting's settings (`room`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomSettings {
    pub title: String,
    pub webinar: bool,
    pub locked: bool,
    pub waiting_room: bool,
    pub allow_unmute: bool,
    pub attendees_may_draw: bool,
    pub local_recording_allowed: bool,
    pub attendee_chat_everyone: bool,
    /// The meeting's recording on the servers: `off`, `recording` or `paused` (everyone
    /// is told while it is not off; who joins, before their media is sent).
    #[serde(default)]
    pub cloud_recording: String,
    /// Since when it is in that state (Unix ms; 0 when off and never on).
    #[serde(default)]
    pub cloud_recording_since_unix_ms: i64,
    /// Why the last recording ended without a host stopping it, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_recording_error: Option<String>,
    /// Why hosts cannot record this meeting on the servers, if they cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_recording_refusal: Option<String>,
}

/// The breakout rooms as one participant is told them (`breakout`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakout {
    /// The rooms' names; room n is `rooms[n - 1]` (0 is the main room).
    pub rooms: Vec<String>,
    /// Participant id → room.
    pub assignment: BTreeMap<String, u32>,
    pub open: bool,
    /// While a countdown to closing runs.
    pub closes_unix_ms: Option<i64>,
    pub my_room: u32,
}

/// A poll as one participant is shown it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Poll {
    pub poll_id: u32,
    pub question: String,
    /// `single`, `multiple` or `text`.
    pub kind: String,
    pub options: Vec<String>,
    pub anonymous: bool,
    /// `draft`, `open` or `ended`.
    pub state: String,
    pub shared: bool,
    pub answered_by_me: bool,
    /// Hosts: always; others once shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<PollResults>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollResults {
    pub answered: usize,
    /// Answers per option.
    pub tally: Vec<u64>,
    pub texts: Vec<String>,
    /// Hosts of a poll that is not anonymous: who answered what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<PollAnswer>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollAnswer {
    pub participant_id: String,
    pub name: String,
    pub choices: Vec<u32>,
    pub text: String,
}

/// A question as one participant is shown it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub question_id: u32,
    pub text: String,
    pub anonymous: bool,
    /// None when anonymous.
    pub author_name: Option<String>,
    pub mine: bool,
    pub votes: usize,
    pub voted_by_me: bool,
    pub answer: Option<String>,
    pub answered_live: bool,
    pub answered_by_name: Option<String>,
    pub dismissed: bool,
    pub asked_unix_ms: i64,
}
