//! What a meeting's hosts decide, and where it lives (DESIGN §6, meeting-wide state).
//!
//! The lock, the waiting room, who was admitted, turned away or removed, the roles and
//! names hosts gave, whether participants may unmute themselves and an end for everyone
//! are one record in etcd, `/fjord/meetings/{m}/room` (`MeetingRoomRecord`). The media
//! node a host is connected to writes it, with a compare-and-swap on the key's revision
//! so that hosts on different nodes never overwrite each other; every media node of the
//! meeting watches it and acts on its own participants; the controllers read it (a
//! locked meeting refuses joins). One-off actions (mute one or all, ask to unmute, stop
//! a video, lower a hand) are entries in the same record's action log, which is also
//! the meeting's audit trail: who did what to whom, and when.
//!
//! *Why etcd:* it is already the one place every node and controller of a meeting sees;
//! a decision survives the node that took it; and the relay between nodes carries only
//! what changes many times a second (participants' mute and hands, chat, media).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ids::{MeetingId, ParticipantId};
use proto::{HostActionRecord, MeetingRoomRecord};
use signaling::{Breakout, CloseCode, Role, RoomSettings, ServerMsg};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{self, MeetingStore, Seen, StoreError};

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
    pub fn from_record(rec: &HostActionRecord) -> Option<Action> {
        let target = rec.target.clone();
        Some(match rec.action.as_str() {
            "mute" | "stop_video" => {
                let (audio, video) = match rec.detail.as_str() {
                    "audio and video" => (true, true),
                    "video" => (false, true),
                    _ => (true, false),
                };
                Action::Mute {
                    target,
                    audio,
                    video,
                }
            }
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

/// Applies `action` by `actor` to `rec` at `now_ms`: the decision, and its entry in the
/// action log (the newest [`MAX_ACTIONS`] are kept).
pub fn apply(rec: &mut MeetingRoomRecord, actor: &Actor, action: &Action, now_ms: i64) {
    match action {
        Action::Admit(t) => push_once(&mut rec.admitted, t),
        Action::Deny(t) => push_once(&mut rec.denied, t),
        Action::Remove(t) => push_once(&mut rec.removed, t),
        Action::Lock(on) => rec.locked = *on,
        Action::WaitingRoom(on) => rec.waiting_room = Some(*on),
        Action::AllowUnmute(on) => rec.unmute_disallowed = !on,
        Action::SetRole { target, role } => {
            if rec.roles.len() < MAX_LISTED || rec.roles.contains_key(target) {
                rec.roles.insert(target.clone(), role.as_str().to_owned());
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
        Action::MuteAll
        | Action::Mute { .. }
        | Action::AskUnmute(_)
        | Action::LowerHand(_)
        | Action::BreakoutBroadcast(_) => {}
    }
    let seq = rec.next_seq.max(1);
    rec.next_seq = seq + 1;
    rec.actions.push(HostActionRecord {
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

/// The role a stored role name stands for (unknown names: attendee).
pub fn role_named(name: &str) -> Role {
    Role::parse(name).unwrap_or(Role::Attendee)
}

/// A meeting's room as this node knows it.
#[derive(Clone, Debug, Default)]
pub struct RoomState {
    /// The room record and the meeting's settings have been read from etcd at least once
    /// (until both are, nothing is known: [`RoomState::loaded`]).
    room_read: bool,
    meeting_read: bool,
    /// The etcd revision of what is here (newer writes replace it, older never do).
    pub revision: i64,
    pub title: String,
    /// The meeting's own setting, from its creation.
    pub meeting_waiting_room: bool,
    /// A webinar: attendees only watch and listen (`webinar.rs`).
    pub webinar: bool,
    pub rec: MeetingRoomRecord,
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
    pub actions: Vec<HostActionRecord>,
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
    /// `participant`'s role: the one a host gave, else the join token's.
    pub fn role_of(&self, participant: &str, token_role: Role) -> Role {
        self.rec
            .roles
            .get(participant)
            .map_or(token_role, |r| role_named(r))
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
    pub fn actions_after(&self, seq: u64) -> impl Iterator<Item = &HostActionRecord> {
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
        ServerMsg::Room(RoomSettings {
            title: self.title.clone(),
            webinar: self.webinar,
            locked: self.rec.locked,
            waiting_room: self.waiting_room(),
            allow_unmute: self.allow_unmute(),
            attendees_may_draw: self.attendees_may_draw(),
            local_recording_allowed: self.local_recording_allowed(),
            attendee_chat_everyone: self.attendee_chat_everyone(),
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

struct Followed {
    state: watch::Sender<RoomState>,
    stop: CancellationToken,
}

/// Where a meeting's breakout rooms go when they change: participant → room (0: the
/// main room). The SFU, in production.
pub type GroupsOut = Arc<dyn Fn(&MeetingId, HashMap<ParticipantId, u32>) + Send + Sync>;

/// The rooms of the meetings this node hosts: followed in the store, written by host
/// actions.
pub struct Hosts {
    store: Arc<dyn MeetingStore>,
    groups: GroupsOut,
    shutdown: CancellationToken,
    clock: Clock,
    meetings: Mutex<HashMap<MeetingId, Followed>>,
}

/// The wall clock in Unix milliseconds (a fake one in tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

impl Hosts {
    pub fn new(
        store: Arc<dyn MeetingStore>,
        groups: GroupsOut,
        shutdown: CancellationToken,
    ) -> Self {
        Self::with_clock(store, groups, shutdown, Arc::new(common::unix_ms))
    }

    /// As [`Hosts::new`], on `clock` (actions are logged at its time, and breakout
    /// countdowns run on it).
    pub fn with_clock(
        store: Arc<dyn MeetingStore>,
        groups: GroupsOut,
        shutdown: CancellationToken,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            groups,
            shutdown,
            clock,
            meetings: Mutex::default(),
        }
    }

    /// Starts following `meeting`'s room (idempotent) and returns its state, which
    /// changes whenever a host of the meeting, on any node, decides something.
    pub fn follow(&self, meeting: &MeetingId) -> watch::Receiver<RoomState> {
        let mut meetings = self.meetings.lock().expect("hosts");
        if let Some(f) = meetings.get(meeting) {
            return f.state.subscribe();
        }
        let (tx, rx) = watch::channel(RoomState::default());
        let stop = self.shutdown.child_token();
        meetings.insert(
            meeting.clone(),
            Followed {
                state: tx.clone(),
                stop: stop.clone(),
            },
        );
        tokio::spawn(follow_room(
            self.store.clone(),
            meeting.clone(),
            tx,
            stop.clone(),
        ));
        tokio::spawn(apply_groups(
            self.groups.clone(),
            self.clock.clone(),
            meeting.clone(),
            rx.clone(),
            stop,
        ));
        rx
    }

    /// Stops following `meeting` (it closed here).
    pub fn unfollow(&self, meeting: &MeetingId) {
        if let Some(f) = self.meetings.lock().expect("hosts").remove(meeting) {
            f.stop.cancel();
        }
    }

    /// Records `actions` by `actor` in `meeting`'s room, as one write that no concurrent
    /// one overwrites (compare-and-swap on the record's revision, retried).
    pub async fn act(
        &self,
        meeting: &MeetingId,
        actor: &Actor,
        actions: &[Action],
    ) -> Result<(), StoreError> {
        let (rec, revision) = self
            .store
            .update_room(meeting, &mut |rec| {
                let now = (self.clock)();
                for a in actions {
                    apply(rec, actor, a, now);
                }
            })
            .await?;
        if let Some(f) = self.meetings.lock().expect("hosts").get(meeting) {
            publish(&f.state, Some(rec), revision);
        }
        Ok(())
    }
}

/// Takes `rec` (None: the record was deleted) at `revision` unless what we have is newer.
fn publish(tx: &watch::Sender<RoomState>, rec: Option<MeetingRoomRecord>, revision: i64) {
    tx.send_if_modified(|s| {
        if s.room_read && revision <= s.revision {
            return false;
        }
        s.room_read = true;
        s.revision = revision;
        s.rec = rec.unwrap_or_default();
        true
    });
}

/// Keeps the breakout rooms of `meeting` (`out`: the SFU's) as the room record says,
/// including when a closing countdown runs out.
async fn apply_groups(
    out: GroupsOut,
    clock: Clock,
    meeting: MeetingId,
    mut rx: watch::Receiver<RoomState>,
    stop: CancellationToken,
) {
    let mut told: HashMap<String, u32> = HashMap::new();
    loop {
        let now = clock();
        let (groups, closing) = {
            let s = rx.borrow_and_update();
            (s.groups(now), s.closing_at().filter(|c| *c > now))
        };
        if groups != told {
            let by_id = groups
                .iter()
                .filter_map(|(p, g)| ParticipantId::parse(p).ok().map(|p| (p, *g)))
                .collect();
            out(&meeting, by_id);
            tracing::info!(%meeting, moved = groups.len(), "breakout rooms changed");
            told = groups;
        }
        let until_close = closing.map(|c| Duration::from_millis((c - now).max(0) as u64));
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
            _ = async {
                match until_close {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Keeps `tx` up to date with `meeting`'s room record, and the settings of the meeting
/// it needs (title, waiting room), until `stop`.
async fn follow_room(
    store: Arc<dyn MeetingStore>,
    meeting: MeetingId,
    tx: watch::Sender<RoomState>,
    stop: CancellationToken,
) {
    let settings = read_settings(&*store, &meeting, &tx, &stop);
    let take = tx.clone();
    let room = store.follow_room(
        &meeting,
        stop.clone(),
        Box::new(move |seen: Seen<MeetingRoomRecord>| match seen {
            // A fresh read is the truth, even against a newer revision we wrote.
            Seen::Read(rec, revision) => {
                take.send_modify(|s| {
                    s.room_read = true;
                    s.revision = s.revision.max(revision);
                    if let Some(rec) = rec
                        && s.rec.next_seq <= rec.next_seq
                    {
                        s.rec = rec;
                    }
                });
            }
            Seen::Changed(rec, revision) => publish(&take, rec, revision),
        }),
    );
    tokio::join!(settings, room);
}

/// Reads the meeting's title and waiting-room setting (they do not change) into `tx`,
/// trying again until it can or `stop`.
async fn read_settings(
    store: &dyn MeetingStore,
    meeting: &MeetingId,
    tx: &watch::Sender<RoomState>,
    stop: &CancellationToken,
) {
    let mut delay = store::RETRY_FIRST;
    loop {
        match store.meeting(meeting).await {
            Ok(m) => {
                let m = m.unwrap_or_default();
                tx.send_modify(|s| {
                    s.title = m.title;
                    s.meeting_waiting_room = m.waiting_room;
                    s.webinar = m.webinar;
                    s.meeting_read = true;
                });
                return;
            }
            Err(e) => {
                tracing::warn!(%meeting, error = %e, "reading the meeting's settings failed; retrying");
            }
        }
        if !store::back_off(stop, &mut delay).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MeetingSettings, MemoryStore};

    /// Hosts on the memory store and a fake clock that runs with tokio's (paused) time,
    /// and what the SFU would have been told of the breakout rooms.
    struct Rig {
        store: Arc<MemoryStore>,
        hosts: Hosts,
        groups: Arc<Mutex<Vec<HashMap<ParticipantId, u32>>>>,
        meeting: MeetingId,
    }

    const EPOCH_MS: i64 = 1_800_000_000_000;

    fn rig(waiting_room: bool) -> Rig {
        let store = Arc::new(MemoryStore::new());
        let meeting = MeetingId::parse("m1").unwrap();
        store.put_meeting(
            &meeting,
            MeetingSettings {
                title: "Seminar".into(),
                waiting_room,
                webinar: false,
            },
        );
        let groups: Arc<Mutex<Vec<_>>> = Arc::default();
        let told = groups.clone();
        let start = tokio::time::Instant::now();
        let hosts = Hosts::with_clock(
            store.clone(),
            Arc::new(move |_, g| told.lock().unwrap().push(g)),
            CancellationToken::new(),
            Arc::new(move || EPOCH_MS + start.elapsed().as_millis() as i64),
        );
        Rig {
            store,
            hosts,
            groups,
            meeting,
        }
    }

    fn actor(id: &str, role: Role) -> Actor {
        Actor {
            id: id.into(),
            name: format!("Name of {id}"),
            role,
        }
    }

    impl Rig {
        /// The room once it satisfies `done` (at most 1 s of tokio time).
        async fn room_when(&self, done: impl Fn(&RoomState) -> bool) -> RoomState {
            let mut rx = self.hosts.follow(&self.meeting);
            tokio::time::timeout(
                Duration::from_secs(1),
                rx.wait_for(|r| r.loaded() && done(r)),
            )
            .await
            .expect("the room never got there")
            .unwrap()
            .clone()
        }

        async fn act(&self, by: &Actor, actions: &[Action]) {
            self.hosts.act(&self.meeting, by, actions).await.unwrap();
        }

        /// What the SFU was last told of the breakout rooms, once it is `want` (at most
        /// 1 s of tokio time).
        async fn groups_become(&self, want: &HashMap<ParticipantId, u32>) {
            for _ in 0..100 {
                if self.groups.lock().unwrap().last() == Some(want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!(
                "the SFU was told {:?}, not {want:?}",
                self.groups.lock().unwrap().last()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_waiting_room_admits_and_turns_away_and_a_host_can_switch_it_off() {
        let r = rig(true);
        let room = r.room_when(|_| true).await;
        assert!(room.waiting_room(), "the meeting's own setting");
        assert_eq!(room.title, "Seminar");
        let host = actor("h", Role::Host);
        r.act(
            &host,
            &[Action::Admit("a".into()), Action::Deny("d".into())],
        )
        .await;
        let room = r.room_when(|r| r.admitted("a")).await;
        assert_eq!(room.refusal("d"), Some(DENIED));
        assert_eq!(room.refusal("a"), None);
        r.act(&host, &[Action::WaitingRoom(false)]).await;
        let room = r.room_when(|r| !r.waiting_room()).await;
        // The audit trail: who did what to whom, and when.
        let log: Vec<(&str, &str, &str)> = room
            .rec
            .actions
            .iter()
            .map(|a| (a.by.as_str(), a.action.as_str(), a.target.as_str()))
            .collect();
        assert_eq!(
            log,
            [
                ("h", "admit", "a"),
                ("h", "deny", "d"),
                ("h", "waiting_room_off", "")
            ]
        );
        assert!(room.rec.actions.iter().all(|a| a.unix_ms == EPOCH_MS));
    }

    #[tokio::test(start_paused = true)]
    async fn host_controls_reach_every_follower_and_only_the_host_makes_hosts() {
        let r = rig(false);
        let host = actor("h", Role::Host);
        let co = actor("c", Role::CoHost);
        r.act(
            &host,
            &[
                Action::Lock(true),
                Action::AllowUnmute(false),
                Action::SetRole {
                    target: "c".into(),
                    role: Role::CoHost,
                },
                Action::Rename {
                    target: "p".into(),
                    name: "Per".into(),
                },
            ],
        )
        .await;
        let room = r.room_when(|r| r.rec.locked).await;
        assert!(!room.allow_unmute());
        assert_eq!(room.role_of("c", Role::Attendee), Role::CoHost);
        assert_eq!(room.role_of("x", Role::Panelist), Role::Panelist);
        assert_eq!(room.name_of("p", "token name"), "Per");
        // Making a host or removing one is the host's alone (the session checks it).
        let make_host = Action::SetRole {
            target: "p".into(),
            role: Role::Host,
        };
        assert!(make_host.needs_host(Some(Role::Attendee)));
        assert!(Action::Remove("h".into()).needs_host(Some(Role::Host)));
        assert!(!Action::Remove("p".into()).needs_host(Some(Role::Attendee)));
        // Another node following the same meeting sees what this one wrote.
        let other = Hosts::new(
            r.store.clone(),
            Arc::new(|_, _| {}),
            CancellationToken::new(),
        );
        let mut far = other.follow(&r.meeting);
        r.act(&co, &[Action::Remove("p".into())]).await;
        let seen = tokio::time::timeout(
            Duration::from_secs(1),
            far.wait_for(|s| s.refusal("p") == Some(REMOVED)),
        )
        .await;
        assert!(seen.is_ok(), "the far node never saw the removal");
        r.act(&host, &[Action::End]).await;
        assert!(r.room_when(|r| r.rec.ended).await.rec.ended);
    }

    #[tokio::test(start_paused = true)]
    async fn breakout_rooms_open_move_people_and_close_when_the_countdown_runs_out() {
        let r = rig(false);
        let host = actor("h", Role::Host);
        let p = |s: &str| ParticipantId::parse(s).unwrap();
        r.act(
            &host,
            &[
                Action::BreakoutCreate(vec!["Room 1".into(), "Room 2".into()]),
                Action::BreakoutAssign(vec![("a".into(), 1), ("b".into(), 2)]),
            ],
        )
        .await;
        let room = r.room_when(|r| r.rec.breakout_rooms.len() == 2).await;
        assert_eq!(room.group_of("a", EPOCH_MS), 0, "closed rooms hold nobody");
        r.act(&host, &[Action::BreakoutOpen]).await;
        let opened = HashMap::from([(p("a"), 1), (p("b"), 2)]);
        r.groups_become(&opened).await;
        // Closing: everyone returns to the main room when the 60 s countdown ends.
        r.act(&host, &[Action::BreakoutClose(60)]).await;
        let room = r.room_when(|r| r.closing_at().is_some()).await;
        let closes = room.closing_at().unwrap();
        assert!(
            (EPOCH_MS + 60_000..EPOCH_MS + 61_000).contains(&closes),
            "{closes}"
        );
        assert_eq!(room.group_of("a", closes - 1), 1);
        assert_eq!(room.group_of("a", closes), 0);
        tokio::time::sleep(Duration::from_secs(58)).await;
        assert_eq!(r.groups.lock().unwrap().last(), Some(&opened), "not yet");
        tokio::time::sleep(Duration::from_secs(3)).await;
        r.groups_become(&HashMap::new()).await;
    }

    #[test]
    fn the_actions_sessions_carry_out_read_back_from_the_log_as_they_were_taken() {
        let actor = Actor {
            id: "h".into(),
            name: "Hanne".into(),
            role: Role::Host,
        };
        let taken = [
            Action::Mute {
                target: "a".into(),
                audio: true,
                video: false,
            },
            Action::Mute {
                target: "a".into(),
                audio: false,
                video: true,
            },
            Action::Mute {
                target: "a".into(),
                audio: true,
                video: true,
            },
            Action::MuteAll,
            Action::AskUnmute("b".into()),
            Action::LowerHand("c".into()),
            Action::BreakoutBroadcast("back in five, audio and video".into()),
        ];
        let mut rec = MeetingRoomRecord::default();
        for (i, action) in taken.iter().enumerate() {
            apply(&mut rec, &actor, action, i as i64);
            let logged = rec.actions.last().unwrap();
            assert_eq!(Action::from_record(logged).as_ref(), Some(action));
            assert_eq!(logged.by_name, "Hanne");
        }
        // Those whose effect is the room record itself are not read back.
        apply(&mut rec, &actor, &Action::Lock(true), 9);
        assert_eq!(Action::from_record(rec.actions.last().unwrap()), None);
    }
}
