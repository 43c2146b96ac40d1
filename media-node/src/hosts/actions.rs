//! Host actions: what a host may decide, applied to the meeting's room record, with
//! its entry in the action log (the audit trail).
use crate::store::{CloudRecordingEntry, LoggedAction, RoomRecord};
use signaling::{CloudRecordingAction, Role};

/// The action log keeps this many of the newest actions.
pub const MAX_ACTIONS: usize = 1000;
/// Most participants one record lists as admitted, denied or removed, or gives a role or
/// a name: a meeting's whole history stays far below etcd's value limit.
pub const MAX_LISTED: usize = 5000;

/// A host's action. Who may take it is the session's check ([`Action::needs_host`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Admit(String),
    Deny(String),
    Lock(bool),
    WaitingRoom(bool),
    /// Mutes everyone but hosts and co-hosts.
    MuteAll,
    AllowUnmute(bool),
    /// Mutes a participant's audio (`audio`), stops their video (`video`).
    Mute {
        target: String,
        audio: bool,
        video: bool,
    },
    AskUnmute(String),
    Remove(String),
    SetRole {
        target: String,
        role: Role,
    },
    Rename {
        target: String,
        name: String,
    },
    LowerHand(String),
    End,
    /// New breakout rooms with these names (closed, nobody assigned).
    BreakoutCreate(Vec<String>),
    /// Participants into breakout rooms (0: back to the main room).
    BreakoutAssign(Vec<(String, u32)>),
    BreakoutOpen,
    /// Everyone returns to the main room in this many seconds.
    BreakoutClose(u32),
    /// A message to every room.
    BreakoutBroadcast(String),
    /// Whether attendees may draw on the whiteboard.
    BoardAllow(bool),
    /// Whether participants (not hosts) may record on their own computers.
    LocalRecordingAllow(bool),
    /// Webinars: whether attendees' chat reaches everyone (else the panel only).
    AttendeeChatEveryone(bool),
    /// The meeting's recording on the servers: started (as the recording `id`), paused,
    /// resumed or stopped. The leader controller carries it out.
    CloudRecording {
        action: CloudRecordingAction,
        id: String,
    },
}

impl Action {
    /// The name in the log (and the audit).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Admit(_) => "admit",
            Action::Deny(_) => "deny",
            Action::Lock(true) => "lock",
            Action::Lock(false) => "unlock",
            Action::WaitingRoom(true) => "waiting_room_on",
            Action::WaitingRoom(false) => "waiting_room_off",
            Action::MuteAll => "mute_all",
            Action::AllowUnmute(true) => "allow_unmute",
            Action::AllowUnmute(false) => "disallow_unmute",
            Action::Mute { video: true, .. } => "stop_video",
            Action::Mute { .. } => "mute",
            Action::AskUnmute(_) => "ask_unmute",
            Action::Remove(_) => "remove",
            Action::SetRole { .. } => "set_role",
            Action::Rename { .. } => "rename",
            Action::LowerHand(_) => "lower_hand",
            Action::End => "end",
            Action::BreakoutCreate(_) => "breakout_create",
            Action::BreakoutAssign(_) => "breakout_assign",
            Action::BreakoutOpen => "breakout_open",
            Action::BreakoutClose(_) => "breakout_close",
            Action::BreakoutBroadcast(_) => "breakout_broadcast",
            Action::BoardAllow(true) => "board_allow",
            Action::BoardAllow(false) => "board_forbid",
            Action::LocalRecordingAllow(true) => "local_recording_allow",
            Action::LocalRecordingAllow(false) => "local_recording_forbid",
            Action::AttendeeChatEveryone(true) => "attendee_chat_everyone",
            Action::AttendeeChatEveryone(false) => "attendee_chat_panel",
            Action::CloudRecording { action, .. } => match action {
                CloudRecordingAction::Start => "recording_start",
                CloudRecordingAction::Pause => "recording_pause",
                CloudRecordingAction::Resume => "recording_resume",
                CloudRecordingAction::Stop => "recording_stop",
            },
        }
    }

    pub fn target(&self) -> Option<&str> {
        match self {
            Action::Admit(t)
            | Action::Deny(t)
            | Action::AskUnmute(t)
            | Action::Remove(t)
            | Action::LowerHand(t)
            | Action::Mute { target: t, .. }
            | Action::SetRole { target: t, .. }
            | Action::Rename { target: t, .. } => Some(t),
            Action::BreakoutAssign(moves) if moves.len() == 1 => Some(&moves[0].0),
            _ => None,
        }
    }

    /// Only the host, not a co-host, may end the meeting or make or unmake a host.
    pub fn needs_host(&self, target_role: Option<Role>) -> bool {
        match self {
            Action::End => true,
            Action::SetRole { role, .. } => *role == Role::Host || target_role == Some(Role::Host),
            Action::Remove(_) | Action::Mute { .. } => target_role == Some(Role::Host),
            _ => false,
        }
    }

    /// The action a log entry records, for those whose effect each session carries out
    /// itself (muting, asking to unmute, lowering a hand, a broadcast); None for the
    /// rest, whose effect is in the room record. The one place a logged action's name
    /// and detail are read back.
    pub fn from_record(rec: &LoggedAction) -> Option<Action> {
        let target = rec.target.clone();
        Some(match rec.action.as_str() {
            // The name says which (`stop_video` when video went off); the detail whether
            // the other went too.
            "stop_video" => {
                let audio = rec.detail == "audio and video";
                Action::Mute {
                    target,
                    audio,
                    video: true,
                }
            }
            "mute" => Action::Mute {
                target,
                audio: true,
                video: false,
            },
            "mute_all" => Action::MuteAll,
            "ask_unmute" => Action::AskUnmute(target),
            "lower_hand" => Action::LowerHand(target),
            "breakout_broadcast" => Action::BreakoutBroadcast(rec.detail.clone()),
            _ => return None,
        })
    }

    fn detail(&self) -> String {
        match self {
            Action::SetRole { role, .. } => role.as_str().to_owned(),
            Action::Rename { name, .. } => name.clone(),
            Action::BreakoutCreate(names) => names.join(", "),
            Action::BreakoutAssign(moves) if moves.len() == 1 => format!("room {}", moves[0].1),
            Action::BreakoutAssign(moves) => format!("{} participants", moves.len()),
            Action::BreakoutClose(secs) => format!("in {secs} s"),
            Action::BreakoutBroadcast(text) => text.clone(),
            Action::CloudRecording { id, .. } => id.clone(),
            Action::Mute { audio, video, .. } => match (audio, video) {
                (true, true) => "audio and video".into(),
                (false, true) => "video".into(),
                _ => "audio".into(),
            },
            _ => String::new(),
        }
    }
}

/// Who acts: a participant, with their name and role at the time.
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: String,
    pub name: String,
    pub role: Role,
}

fn push_once(list: &mut Vec<String>, id: &str) {
    if !list.iter().any(|x| x == id) && list.len() < MAX_LISTED {
        list.push(id.to_owned());
    }
}

/// What a host asked of the cloud recording, in the room record: only a change that the
/// record's state allows (two hosts who start one at once on two nodes start one).
fn cloud_recording(rec: &mut RoomRecord, action: CloudRecordingAction, id: &str, now_ms: i64) {
    let Ok(to) = common::cloud_recording::after(rec.cloud_wish(), action) else {
        return;
    };
    let c = match action {
        CloudRecordingAction::Start => rec.cloud_recording.insert(CloudRecordingEntry {
            recording_id: id.to_owned(),
            ..CloudRecordingEntry::default()
        }),
        _ => match &mut rec.cloud_recording {
            Some(c) => c,
            None => return, // nothing to pause, resume or stop (`after` refused it)
        },
    };
    c.state = to.as_str().to_owned();
    c.since_unix_ms = now_ms;
    c.error.clear();
}

/// Applies `action` by `actor` to `rec` at `now_ms`: the decision, and its entry in the
/// action log (the newest [`MAX_ACTIONS`] are kept).
pub fn apply(rec: &mut RoomRecord, actor: &Actor, action: &Action, now_ms: i64) {
    match action {
        Action::Admit(t) => push_once(&mut rec.admitted, t),
        Action::Deny(t) => push_once(&mut rec.denied, t),
        Action::Remove(t) => push_once(&mut rec.removed, t),
        Action::Lock(on) => rec.locked = *on,
        Action::WaitingRoom(on) => rec.waiting_room = Some(*on),
        Action::AllowUnmute(on) => rec.unmute_disallowed = !on,
        Action::SetRole { target, role } => {
            if rec.roles.len() < MAX_LISTED || rec.roles.contains_key(target) {
                rec.other_roles.remove(target);
                rec.roles.insert(target.clone(), *role);
            }
        }
        Action::Rename { target, name } => {
            if rec.names.len() < MAX_LISTED || rec.names.contains_key(target) {
                rec.names.insert(target.clone(), name.clone());
            }
        }
        Action::End => rec.ended = true,
        Action::BreakoutCreate(names) => {
            rec.breakout_rooms = names.clone();
            rec.breakout_assignment.clear();
            rec.breakout_open = false;
            rec.breakout_closes_unix_ms = 0;
        }
        Action::BreakoutAssign(moves) => {
            for (who, room) in moves {
                if *room == 0 {
                    rec.breakout_assignment.remove(who);
                } else if rec.breakout_assignment.len() < MAX_LISTED
                    || rec.breakout_assignment.contains_key(who)
                {
                    rec.breakout_assignment.insert(who.clone(), *room);
                }
            }
        }
        Action::BreakoutOpen => {
            rec.breakout_open = true;
            rec.breakout_closes_unix_ms = 0;
        }
        Action::BreakoutClose(secs) => {
            rec.breakout_closes_unix_ms = now_ms + i64::from(*secs) * 1000;
        }
        Action::BoardAllow(on) => rec.board_attendees_forbidden = !on,
        Action::LocalRecordingAllow(on) => rec.local_recording_forbidden = !on,
        Action::AttendeeChatEveryone(on) => rec.attendee_chat_everyone = *on,
        Action::CloudRecording { action, id } => cloud_recording(rec, *action, id, now_ms),
        Action::MuteAll
        | Action::Mute { .. }
        | Action::AskUnmute(_)
        | Action::LowerHand(_)
        | Action::BreakoutBroadcast(_) => {}
    }
    let seq = rec.next_seq.max(1);
    rec.next_seq = seq + 1;
    rec.actions.push(LoggedAction {
        seq,
        unix_ms: now_ms,
        by: actor.id.clone(),
        by_name: actor.name.clone(),
        by_role: actor.role.as_str().to_owned(),
        action: action.name().to_owned(),
        target: action.target().unwrap_or_default().to_owned(),
        detail: action.detail(),
    });
    if rec.actions.len() > MAX_ACTIONS {
        let extra = rec.actions.len() - MAX_ACTIONS;
        rec.actions.drain(..extra);
    }
}
