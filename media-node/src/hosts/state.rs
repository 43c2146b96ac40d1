//! A meeting's room as this node knows it, and what it means for one participant.
use std::collections::HashMap;

use common::cloud_recording::Wish;
use signaling::{Breakout, CloseCode, Role, RoomSettings, ServerMsg};

use crate::store::{LoggedAction, RoomRecord};

/// A meeting's room as this node knows it.
#[derive(Clone, Debug, Default)]
pub struct RoomState {
    /// The room record and the meeting's settings have been read from etcd at least once
    /// (until both are, nothing is known: [`RoomState::loaded`]).
    pub(super) room_read: bool,
    pub(super) meeting_read: bool,
    /// The etcd revision of what is here (newer writes replace it, older never do).
    pub revision: i64,
    pub title: String,
    /// The meeting's own setting, from its creation.
    pub meeting_waiting_room: bool,
    /// A webinar: attendees only watch and listen (`webinar.rs`).
    pub webinar: bool,
    /// Why hosts cannot record the meeting on the servers, if they cannot.
    pub cloud_refusal: Option<common::cloud_recording::Refusal>,
    pub rec: RoomRecord,
}

/// What a change of the room means for one participant's session: read under the
/// state's lock, so that no session copies the whole record (its action log) for it.
pub struct News {
    pub ended: bool,
    /// Why the participant may no longer be in the meeting, if so.
    pub refusal: Option<Refusal>,
    pub role: Role,
    pub name: String,
    /// Actions newer than the ones seen, oldest first.
    pub actions: Vec<LoggedAction>,
    pub last_seq: u64,
    pub room_msg: ServerMsg,
    pub breakout_msg: ServerMsg,
}

/// Why a participant is not let in (again): the code the client is told (`closed`,
/// or the HTTP refusal's `error`) and why, in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: CloseCode,
    pub message: &'static str,
}

impl Refusal {
    /// The `error` code of an HTTP refusal before the upgrade.
    pub fn http_code(&self) -> &'static str {
        match self.code {
            CloseCode::Removed => "removed",
            CloseCode::Denied => "denied",
            _ => "ended",
        }
    }
}

pub const REMOVED: Refusal = Refusal {
    code: CloseCode::Removed,
    message: "a host removed you from this meeting",
};
pub const DENIED: Refusal = Refusal {
    code: CloseCode::Denied,
    message: "a host did not let you into this meeting",
};
pub const ENDED: Refusal = Refusal {
    code: CloseCode::Ended,
    message: "the host ended the meeting for everyone",
};

impl RoomState {
    pub fn loaded(&self) -> bool {
        self.room_read && self.meeting_read
    }
    pub fn waiting_room(&self) -> bool {
        self.rec.waiting_room.unwrap_or(self.meeting_waiting_room)
    }
    pub fn allow_unmute(&self) -> bool {
        !self.rec.unmute_disallowed
    }
    pub fn attendees_may_draw(&self) -> bool {
        !self.rec.board_attendees_forbidden
    }
    /// Webinars: whether attendees' chat reaches the other attendees too.
    pub fn attendee_chat_everyone(&self) -> bool {
        self.rec.attendee_chat_everyone
    }
    pub fn local_recording_allowed(&self) -> bool {
        !self.rec.local_recording_forbidden
    }
    /// What the hosts asked of the cloud recording (stopped when they never asked).
    pub fn cloud_wish(&self) -> Wish {
        self.rec.cloud_wish()
    }
    /// `participant`'s role: the one a host gave (attendee when this node cannot read
    /// it), else the join token's.
    pub fn role_of(&self, participant: &str, token_role: Role) -> Role {
        match self.rec.roles.get(participant) {
            Some(role) => *role,
            None if self.rec.other_roles.contains_key(participant) => Role::Attendee,
            None => token_role,
        }
    }
    pub fn name_of<'a>(&'a self, participant: &str, token_name: &'a str) -> &'a str {
        self.rec
            .names
            .get(participant)
            .map_or(token_name, String::as_str)
    }
    pub fn admitted(&self, participant: &str) -> bool {
        self.rec.admitted.iter().any(|x| x == participant)
    }
    /// Why `participant` may not be in the meeting, if they may not.
    pub fn refusal(&self, participant: &str) -> Option<Refusal> {
        if self.rec.removed.iter().any(|x| x == participant) {
            Some(REMOVED)
        } else if self.rec.denied.iter().any(|x| x == participant) {
            Some(DENIED)
        } else {
            None
        }
    }
    /// The sequence number of the newest action.
    pub fn last_seq(&self) -> u64 {
        self.rec.next_seq.saturating_sub(1)
    }
    /// Actions newer than `seq`, oldest first.
    pub fn actions_after(&self, seq: u64) -> impl Iterator<Item = &LoggedAction> {
        self.rec.actions.iter().filter(move |a| a.seq > seq)
    }
    /// What the room now says to `me` (whose join token gave `token_role` and
    /// `token_name`), who has seen the actions up to `seen_seq`.
    pub fn news_for(
        &self,
        me: &str,
        token_role: Role,
        token_name: &str,
        seen_seq: u64,
        now_ms: i64,
    ) -> News {
        News {
            ended: self.rec.ended,
            refusal: self.refusal(me),
            role: self.role_of(me, token_role),
            name: self.name_of(me, token_name).to_owned(),
            actions: self.actions_after(seen_seq).cloned().collect(),
            last_seq: self.last_seq(),
            room_msg: self.message(),
            breakout_msg: self.breakout_message(me, now_ms),
        }
    }

    /// The `room` message: the meeting's settings as every participant sees them.
    pub fn message(&self) -> ServerMsg {
        let cloud = self.rec.cloud_recording.as_ref();
        ServerMsg::Room(RoomSettings {
            title: self.title.clone(),
            webinar: self.webinar,
            locked: self.rec.locked,
            waiting_room: self.waiting_room(),
            allow_unmute: self.allow_unmute(),
            attendees_may_draw: self.attendees_may_draw(),
            local_recording_allowed: self.local_recording_allowed(),
            attendee_chat_everyone: self.attendee_chat_everyone(),
            cloud_recording: match self.cloud_wish() {
                Wish::Stopped => "off".into(),
                w => w.as_str().into(),
            },
            cloud_recording_since_unix_ms: cloud.map_or(0, |c| c.since_unix_ms),
            cloud_recording_error: cloud
                .filter(|c| !c.error.is_empty())
                .map(|c| c.error.clone()),
            cloud_recording_refusal: self.cloud_refusal.map(|r| r.message.to_owned()),
        })
    }
    /// Whether breakout rooms are open at `now_ms` (opened, and not yet closed).
    pub fn breakouts_open(&self, now_ms: i64) -> bool {
        let closes = self.rec.breakout_closes_unix_ms;
        self.rec.breakout_open && (closes == 0 || now_ms < closes)
    }
    /// The breakout room of `participant` at `now_ms` (0: the main room).
    pub fn group_of(&self, participant: &str, now_ms: i64) -> u32 {
        if !self.breakouts_open(now_ms) {
            return 0;
        }
        self.rec
            .breakout_assignment
            .get(participant)
            .copied()
            .filter(|r| *r as usize <= self.rec.breakout_rooms.len())
            .unwrap_or(0)
    }
    /// Every participant's room out of the main one, at `now_ms`.
    pub fn groups(&self, now_ms: i64) -> HashMap<String, u32> {
        if !self.breakouts_open(now_ms) {
            return HashMap::new();
        }
        self.rec
            .breakout_assignment
            .keys()
            .map(|p| (p.clone(), self.group_of(p, now_ms)))
            .filter(|(_, g)| *g != 0)
            .collect()
    }
    /// When the breakout rooms close, if a countdown runs.
    pub fn closing_at(&self) -> Option<i64> {
        (self.rec.breakout_open && self.rec.breakout_closes_unix_ms > 0)
            .then_some(self.rec.breakout_closes_unix_ms)
    }
    /// The `breakout` message: the rooms, who is where, and whether and until when
    /// they are open.
    pub fn breakout_message(&self, me: &str, now_ms: i64) -> ServerMsg {
        ServerMsg::Breakout(Breakout {
            rooms: self.rec.breakout_rooms.clone(),
            assignment: self
                .rec
                .breakout_assignment
                .iter()
                .map(|(p, r)| (p.clone(), *r))
                .collect(),
            open: self.breakouts_open(now_ms),
            closes_unix_ms: self.closing_at().filter(|c| *c > now_ms),
            my_room: self.group_of(me, now_ms),
        })
    }
}
