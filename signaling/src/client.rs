use serde::{Deserialize, Serialize};

use crate::Role;
use crate::limits::MAX_MESSAGE_BYTES;

/// Messages a client sends. Each may carry `"v": 1`; other versions are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
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
    /// What the client shows (receive slots): how many videos and speakers, gallery or
    /// speaker view, the page, tile sizes and who is pinned.
    View(crate::View),
    /// Asks for [`crate::ROSTER_PAGE`] participants from the `from`-th on, in the order
    /// `welcome` lists them: the roster beyond the welcome's first page.
    RosterPage {
        from: u32,
    },
    Leave {},
    RaiseHand {},
    /// Lowers one's own hand, or (hosts) anyone's.
    LowerHand {
        #[serde(default)]
        participant_id: Option<String>,
    },
    // Hosts and co-hosts only, from here on.
    Admit {
        participant_id: String,
    },
    AdmitAll {},
    Deny {
        participant_id: String,
    },
    Lock {
        locked: bool,
    },
    WaitingRoom {
        enabled: bool,
    },
    /// Mutes everyone but hosts and co-hosts; `allow_unmute` sets whether they may
    /// unmute themselves (unchanged when absent).
    MuteAll {
        #[serde(default)]
        allow_unmute: Option<bool>,
    },
    AllowUnmute {
        allowed: bool,
    },
    /// Mutes a participant's audio and/or stops their video.
    MuteParticipant {
        participant_id: String,
        #[serde(default)]
        audio: bool,
        #[serde(default)]
        video: bool,
    },
    AskUnmute {
        participant_id: String,
    },
    Remove {
        participant_id: String,
    },
    SetRole {
        participant_id: String,
        role: Role,
    },
    Rename {
        participant_id: String,
        name: String,
    },
    EndMeeting {},
    /// New breakout rooms (1 to 50), closed, nobody in them yet.
    BreakoutCreate {
        rooms: u32,
    },
    /// A participant into a breakout room (0: back to the main room); a host may move
    /// themselves, to visit a room.
    BreakoutAssign {
        participant_id: String,
        room: u32,
    },
    /// Everyone but hosts and co-hosts spread evenly over the rooms.
    BreakoutAuto {},
    BreakoutOpen {},
    /// Everyone returns to the main room after `seconds` (default 60).
    BreakoutClose {
        #[serde(default)]
        seconds: Option<u32>,
    },
    /// A text message to every room.
    BreakoutBroadcast {
        text: String,
    },
    // Polls and Q&A (`collab/`); launching, ending and sharing polls, answering and
    // dismissing questions: hosts and co-hosts.
    PollCreate {
        question: String,
        kind: String,
        #[serde(default)]
        options: Vec<String>,
        #[serde(default)]
        anonymous: bool,
    },
    PollLaunch {
        poll_id: u32,
    },
    PollEnd {
        poll_id: u32,
    },
    PollShare {
        poll_id: u32,
    },
    PollAnswer {
        poll_id: u32,
        #[serde(default)]
        choices: Vec<u32>,
        #[serde(default)]
        text: String,
    },
    QuestionAsk {
        text: String,
        #[serde(default)]
        anonymous: bool,
    },
    QuestionUpvote {
        question_id: u32,
    },
    QuestionAnswer {
        question_id: u32,
        #[serde(default)]
        text: String,
        #[serde(default)]
        live: bool,
    },
    QuestionDismiss {
        question_id: u32,
    },
    Reaction {
        emoji: String,
    },
    /// A whiteboard operation: a segment of a stroke as it is drawn, a shape, a text.
    BoardDraw {
        stroke_id: u32,
        tool: String,
        color: String,
        width: u32,
        points: Vec<i32>,
        #[serde(default)]
        text: String,
    },
    /// Takes one's own stroke off the whiteboard.
    BoardUndo {
        stroke_id: u32,
    },
    /// Hosts: clears the whiteboard.
    BoardClear {},
    /// Hosts: whether attendees may draw.
    BoardAllow {
        allowed: bool,
    },
    /// The client started or stopped recording the meeting on its computer.
    LocalRecording {
        recording: bool,
    },
    /// Hosts: whether participants may record on their own computers.
    LocalRecordingAllow {
        allowed: bool,
    },
    /// Hosts of a webinar: whether attendees' chat reaches everyone (else the panel).
    AttendeeChat {
        everyone: bool,
    },
    /// Hosts: start, pause, resume or stop the meeting's recording on the servers.
    CloudRecording {
        action: CloudRecordingAction,
    },
}

/// What a host asks of the meeting's cloud recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudRecordingAction {
    Start,
    Pause,
    Resume,
    Stop,
}

impl ClientMsg {
    /// The message's `type`, as `error` messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMsg::Offer { .. } => "offer",
            ClientMsg::Answer { .. } => "answer",
            ClientMsg::Chat { .. } => "chat",
            ClientMsg::Mute { .. } => "mute",
            ClientMsg::Layer { .. } => "layer",
            ClientMsg::View(_) => "view",
            ClientMsg::RosterPage { .. } => "roster_page",
            ClientMsg::Leave {} => "leave",
            ClientMsg::RaiseHand {} => "raise_hand",
            ClientMsg::LowerHand { .. } => "lower_hand",
            ClientMsg::Admit { .. } => "admit",
            ClientMsg::AdmitAll {} => "admit_all",
            ClientMsg::Deny { .. } => "deny",
            ClientMsg::Lock { .. } => "lock",
            ClientMsg::WaitingRoom { .. } => "waiting_room",
            ClientMsg::MuteAll { .. } => "mute_all",
            ClientMsg::AllowUnmute { .. } => "allow_unmute",
            ClientMsg::MuteParticipant { .. } => "mute_participant",
            ClientMsg::AskUnmute { .. } => "ask_unmute",
            ClientMsg::Remove { .. } => "remove",
            ClientMsg::SetRole { .. } => "set_role",
            ClientMsg::Rename { .. } => "rename",
            ClientMsg::EndMeeting {} => "end_meeting",
            ClientMsg::BreakoutCreate { .. } => "breakout_create",
            ClientMsg::BreakoutAssign { .. } => "breakout_assign",
            ClientMsg::BreakoutAuto {} => "breakout_auto",
            ClientMsg::BreakoutOpen {} => "breakout_open",
            ClientMsg::BreakoutClose { .. } => "breakout_close",
            ClientMsg::BreakoutBroadcast { .. } => "breakout_broadcast",
            ClientMsg::PollCreate { .. } => "poll_create",
            ClientMsg::PollLaunch { .. } => "poll_launch",
            ClientMsg::PollEnd { .. } => "poll_end",
            ClientMsg::PollShare { .. } => "poll_share",
            ClientMsg::PollAnswer { .. } => "poll_answer",
            ClientMsg::QuestionAsk { .. } => "question_ask",
            ClientMsg::QuestionUpvote { .. } => "question_upvote",
            ClientMsg::QuestionAnswer { .. } => "question_answer",
            ClientMsg::QuestionDismiss { .. } => "question_dismiss",
            ClientMsg::Reaction { .. } => "reaction",
            ClientMsg::BoardDraw { .. } => "board_draw",
            ClientMsg::BoardUndo { .. } => "board_undo",
            ClientMsg::BoardClear {} => "board_clear",
            ClientMsg::BoardAllow { .. } => "board_allow",
            ClientMsg::LocalRecording { .. } => "local_recording",
            ClientMsg::LocalRecordingAllow { .. } => "local_recording_allow",
            ClientMsg::AttendeeChat { .. } => "attendee_chat",
            ClientMsg::CloudRecording { .. } => "cloud_recording",
        }
    }
}

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
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(crate::VERSION) => {}
            Some(other) => {
                return Err(refuse(
                    &answers,
                    format!(
                        "unsupported protocol version {other}; this node speaks {}",
                        crate::VERSION
                    ),
                ));
            }
        }
    }
    serde_json::from_value(v).map_err(|e| refuse(&answers, format!("invalid message: {e}")))
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

    #[test]
    fn every_message_kind_is_its_type() {
        for name in crate::client_types() {
            // A message of this type with every field it needs: add each field serde
            // says is missing, as the first kind of value it takes.
            let mut v = serde_json::json!({ "type": name });
            // The field added last: the one a type error is about (the others parsed).
            let mut last: Option<String> = None;
            let kinds = [
                serde_json::json!("x"),
                serde_json::json!(1),
                serde_json::json!(true),
                serde_json::json!([]),
                serde_json::json!("host"),
                serde_json::json!("start"),
            ];
            let m = loop {
                let e = match serde_json::from_value::<ClientMsg>(v.clone()) {
                    Ok(m) => break m,
                    Err(e) => e.to_string(),
                };
                if let Some(field) = e.split("missing field `").nth(1) {
                    let field = field.split('`').next().unwrap().to_owned();
                    v[&field] = kinds[0].clone();
                    last = Some(field);
                    continue;
                }
                let field = last.clone().unwrap_or_else(|| panic!("{name}: {e}"));
                let at = kinds.iter().position(|k| *k == v[&field]).unwrap_or(0);
                assert!(at + 1 < kinds.len(), "{name}: no value fits {field}: {e}");
                v[&field] = kinds[at + 1].clone();
            };
            assert_eq!(m.kind(), name, "{v}");
        }
    }
}
