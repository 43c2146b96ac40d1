//! Meetings as signaling sees them: who is in, and a broadcast of what happens. Media
//! routing is the SFU's; this is the participant list, chat and mute state.
//!
//! Participants of the same meeting on other media nodes (cascading) are members too,
//! with the relay link to the node they live on: that link keeps them up to date
//! ([`Rooms::remote_upsert`], [`Rooms::remote_leave`]) and forgets them when it goes
//! ([`Rooms::remote_forget`]). Local sessions cannot tell them from neighbours.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use common::ids::{MeetingId, ParticipantId};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use signaling::{CloseCode, Participant, ServerMsg};

/// What sessions are told when a participant's record changes from `old` to `new`:
/// nothing, a `mute` (when only the mute state changed, as clients have always been
/// told), a join (when it left the waiting room), or the whole record.
fn change_event(old: &Participant, new: &Participant) -> Option<ServerMsg> {
    if old == new {
        return None;
    }
    if old.waiting && !new.waiting {
        return Some(ServerMsg::ParticipantJoined {
            participant: new.clone(),
        });
    }
    let muted_only = Participant {
        audio_muted: new.audio_muted,
        video_muted: new.video_muted,
        ..old.clone()
    } == *new;
    Some(if muted_only {
        ServerMsg::Mute {
            participant_id: new.participant_id.clone(),
            audio_muted: new.audio_muted,
            video_muted: new.video_muted,
        }
    } else {
        ServerMsg::ParticipantUpdated {
            participant: new.clone(),
        }
    })
}

/// Ends a session, saying why (its client is told in a `closed` message).
#[derive(Clone, Default)]
pub struct SessionEnd {
    token: CancellationToken,
    why: Arc<OnceLock<Close>>,
}

/// Why the node ends a session: the code its client switches on, and words for people.
#[derive(Clone, Debug, PartialEq)]
pub struct Close {
    pub code: CloseCode,
    pub reason: String,
}

impl Close {
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Close {
        Close {
            code,
            reason: reason.into(),
        }
    }

    /// Why a session ended when its participant connected again.
    pub fn replaced() -> Close {
        Close::new(CloseCode::Replaced, REPLACED)
    }

    /// The `closed` message that tells the client.
    pub fn message(&self) -> ServerMsg {
        ServerMsg::Closed {
            code: self.code,
            reason: self.reason.clone(),
        }
    }
}

impl SessionEnd {
    /// Ends the session; the first reason given is the one told.
    pub fn end(&self, why: Close) {
        let _ = self.why.set(why);
        self.token.cancel();
    }

    /// Waits until the session is ended; why.
    pub async fn ended(&self) -> Close {
        self.token.cancelled().await;
        self.why
            .get()
            .cloned()
            .unwrap_or_else(|| Close::new(CloseCode::ClosedHere, "the session was ended"))
    }

    pub fn is_ended(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// Why a session ended when its participant connected again.
pub const REPLACED: &str = "replaced by a newer session";

struct Member {
    info: Participant,
    /// The relay link a remote participant's node keeps it up to date over; None for
    /// ours.
    origin: Option<u64>,
    /// Ends the member's session; a reconnect with the same participant id uses it.
    session: SessionEnd,
    generation: u64,
}

struct Room {
    members: BTreeMap<ParticipantId, Member>,
    /// Each event once, shared by every receiver: a slot of the channel's ring is a
    /// pointer, not a message (1,024 messages inline were 190 kB a room, allocated and
    /// touched when the room is made — for every meeting a relay link opens too).
    events: broadcast::Sender<Arc<ServerMsg>>,
    /// The last announced active speaker, told to whoever joins later.
    active_speaker: Option<String>,
    board: crate::board::Board,
}

impl Room {
    fn new() -> Self {
        Self {
            members: BTreeMap::new(),
            // Room for a burst of whiteboard segments from several people drawing.
            events: broadcast::channel(1024).0,
            active_speaker: None,
            board: crate::board::Board::default(),
        }
    }

    /// Tells everyone following the room (sessions, relay links) of `event`.
    fn tell(&self, event: ServerMsg) {
        let _ = self.events.send(Arc::new(event));
    }
}

#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<MeetingId, Room>>,
    next_generation: std::sync::atomic::AtomicU64,
}

/// A session's membership; leave with [`Rooms::leave`].
pub struct Membership {
    pub meeting: MeetingId,
    pub participant: ParticipantId,
    pub generation: u64,
    pub session: SessionEnd,
    pub events: broadcast::Receiver<Arc<ServerMsg>>,
    /// Who else was there when we joined.
    pub others: Vec<Participant>,
    /// Who was the active speaker when we joined.
    pub active_speaker: Option<String>,
}

impl Rooms {
    /// Joins `info` to `meeting`, replacing (cancelling) an older session of the same participant.
    pub fn join(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
        info: Participant,
    ) -> Membership {
        self.try_join(meeting, participant, info, usize::MAX)
            .expect("no bound")
    }

    /// Whether `participant` could join `meeting` now without taking it over `max`
    /// participants (on every node: remote ones count); one already in it (reconnecting)
    /// always could.
    pub fn has_room(&self, meeting: &MeetingId, participant: &ParticipantId, max: usize) -> bool {
        let rooms = self.rooms.lock().expect("rooms");
        rooms
            .get(meeting)
            .is_none_or(|r| r.members.contains_key(participant) || r.members.len() < max)
    }

    /// [`Rooms::join`], unless that would take the meeting over `max` participants:
    /// then `Err(max)`.
    pub fn try_join(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
        info: Participant,
        max: usize,
    ) -> Result<Membership, usize> {
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rooms = self.rooms.lock().expect("rooms");
        let room = rooms.entry(meeting.clone()).or_insert_with(Room::new);
        if !room.members.contains_key(participant) && room.members.len() >= max {
            return Err(max);
        }
        let session = SessionEnd::default();
        let replaced = room.members.insert(
            participant.clone(),
            Member {
                info: info.clone(),
                origin: None,
                session: session.clone(),
                generation,
            },
        );
        if let Some(old) = &replaced {
            old.session.end(Close::replaced());
        }
        let events = room.events.subscribe();
        if replaced.is_none() {
            room.tell(ServerMsg::ParticipantJoined { participant: info });
        }
        let others = room
            .members
            .iter()
            .filter(|(p, _)| *p != participant)
            .map(|(_, m)| m.info.clone())
            .collect();
        Ok(Membership {
            meeting: meeting.clone(),
            participant: participant.clone(),
            generation,
            session,
            events,
            others,
            active_speaker: room.active_speaker.clone(),
        })
    }

    /// Leaves, unless a newer session of the same participant has replaced this one.
    pub fn leave(&self, m: &Membership) {
        let mut rooms = self.rooms.lock().expect("rooms");
        let Some(room) = rooms.get_mut(&m.meeting) else {
            return;
        };
        if room
            .members
            .get(&m.participant)
            .is_some_and(|x| x.origin.is_none() && x.generation == m.generation)
        {
            room.members.remove(&m.participant);
            room.tell(ServerMsg::ParticipantLeft {
                participant_id: m.participant.to_string(),
            });
        }
        if room.members.is_empty() {
            rooms.remove(&m.meeting);
        }
    }

    /// Tells every session of `meeting` about `event` (chat, the active speaker; changes
    /// of a participant go through [`Rooms::update`], which keeps the record too).
    pub fn publish(&self, meeting: &MeetingId, event: ServerMsg) {
        let mut rooms = self.rooms.lock().expect("rooms");
        let Some(room) = rooms.get_mut(meeting) else {
            return;
        };
        if let ServerMsg::ActiveSpeaker { participant_id } = &event {
            room.active_speaker = Some(participant_id.clone());
        }
        room.tell(event);
    }

    /// A participant of `meeting` on the media node behind link `origin` joined, or changed (mute): it
    /// is shown to local sessions like a neighbour. Ignored if the id is one of ours (a
    /// participant who moved here is ours from then on).
    pub fn remote_upsert(&self, meeting: &MeetingId, origin: u64, info: Participant) {
        let Ok(id) = ParticipantId::parse(&info.participant_id) else {
            return;
        };
        let mut rooms = self.rooms.lock().expect("rooms");
        let room = rooms.entry(meeting.clone()).or_insert_with(Room::new);
        let event = match room.members.get_mut(&id) {
            Some(m) if m.origin.is_none() => return,
            Some(m) => {
                m.origin = Some(origin);
                let old = std::mem::replace(&mut m.info, info);
                let Some(event) = change_event(&old, &m.info) else {
                    return;
                };
                event
            }
            None => {
                room.members.insert(
                    id,
                    Member {
                        info: info.clone(),
                        origin: Some(origin),
                        session: SessionEnd::default(),
                        generation: 0,
                    },
                );
                ServerMsg::ParticipantJoined { participant: info }
            }
        };
        room.tell(event);
    }

    /// Changes local participant `participant_id` of `meeting` with `f` and tells every
    /// session (and so the meeting's other nodes) what changed; the new record, or None
    /// when there is no such local participant.
    pub fn update(
        &self,
        meeting: &MeetingId,
        participant_id: &str,
        f: impl FnOnce(&mut Participant),
    ) -> Option<Participant> {
        let mut rooms = self.rooms.lock().expect("rooms");
        let room = rooms.get_mut(meeting)?;
        let m = room
            .members
            .iter_mut()
            .find(|(id, m)| id.as_str() == participant_id && m.origin.is_none())
            .map(|(_, m)| m)?;
        let old = m.info.clone();
        f(&mut m.info);
        m.info.participant_id = old.participant_id.clone();
        let new = m.info.clone();
        if let Some(event) = change_event(&old, &new) {
            room.tell(event);
        }
        Some(new)
    }

    /// Participant `participant_id` of `meeting`, here or on another node.
    pub fn member(&self, meeting: &MeetingId, participant_id: &str) -> Option<Participant> {
        let rooms = self.rooms.lock().expect("rooms");
        let room = rooms.get(meeting)?;
        room.members
            .iter()
            .find(|(id, _)| id.as_str() == participant_id)
            .map(|(_, m)| m.info.clone())
    }

    /// Every participant of `meeting`, here and on other nodes.
    pub fn members(&self, meeting: &MeetingId) -> Vec<Participant> {
        let rooms = self.rooms.lock().expect("rooms");
        rooms
            .get(meeting)
            .map(|r| r.members.values().map(|m| m.info.clone()).collect())
            .unwrap_or_default()
    }

    /// A participant of `origin` left.
    pub fn remote_leave(&self, meeting: &MeetingId, origin: u64, participant_id: &str) {
        self.remove_remote(meeting, |id, o| {
            o == origin && id.as_str() == participant_id
        });
    }

    /// The link to `origin` is gone: its participants leave.
    pub fn remote_forget(&self, meeting: &MeetingId, origin: u64) {
        self.remove_remote(meeting, |_, o| o == origin);
    }

    fn remove_remote(&self, meeting: &MeetingId, which: impl Fn(&ParticipantId, u64) -> bool) {
        let mut rooms = self.rooms.lock().expect("rooms");
        let Some(room) = rooms.get_mut(meeting) else {
            return;
        };
        let gone: Vec<ParticipantId> = room
            .members
            .iter()
            .filter(|(id, m)| m.origin.is_some_and(|o| which(id, o)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            room.members.remove(&id);
            room.tell(ServerMsg::ParticipantLeft {
                participant_id: id.to_string(),
            });
        }
        if room.members.is_empty() {
            rooms.remove(meeting);
        }
    }

    /// Whether `participant_id` is a participant of `meeting` connected here.
    pub fn is_local(&self, meeting: &MeetingId, participant_id: &str) -> bool {
        let rooms = self.rooms.lock().expect("rooms");
        rooms.get(meeting).is_some_and(|r| {
            r.members
                .iter()
                .any(|(id, m)| id.as_str() == participant_id && m.origin.is_none())
        })
    }

    /// The local participants of `meeting` now, what they drew on the whiteboard, and
    /// its events from now on: what a relay link tells the far node.
    pub fn watch(
        &self,
        meeting: &MeetingId,
    ) -> (
        Vec<Participant>,
        Vec<crate::board::BoardOp>,
        broadcast::Receiver<Arc<ServerMsg>>,
    ) {
        let mut rooms = self.rooms.lock().expect("rooms");
        let room = rooms.entry(meeting.clone()).or_insert_with(Room::new);
        let local = room
            .members
            .values()
            .filter(|m| m.origin.is_none())
            .map(|m| m.info.clone())
            .collect();
        (local, room.board.local_ops(), room.events.subscribe())
    }

    /// Puts `op` (checked) on `meeting`'s whiteboard and tells every session, unless it
    /// was there already; `local`: its author is connected here.
    pub fn board_draw(
        &self,
        meeting: &MeetingId,
        op: crate::board::BoardOp,
        local: bool,
    ) -> Result<(), &'static str> {
        let mut rooms = self.rooms.lock().expect("rooms");
        let room = rooms
            .get_mut(meeting)
            .ok_or("the meeting is not on this node")?;
        if room.board.draw(op.clone(), local)? {
            room.tell(ServerMsg::BoardDraw(op));
        }
        Ok(())
    }

    /// Takes `author`'s stroke off `meeting`'s whiteboard; whether there was one.
    pub fn board_undo(&self, meeting: &MeetingId, author: &str, stroke_id: u32) -> bool {
        let mut rooms = self.rooms.lock().expect("rooms");
        let Some(room) = rooms.get_mut(meeting) else {
            return false;
        };
        let undone = room.board.undo(author, stroke_id);
        if undone {
            room.tell(ServerMsg::BoardUndo {
                author: author.to_owned(),
                stroke_id,
            });
        }
        undone
    }

    /// Clears `meeting`'s whiteboard (host `by`, named `by_name`, did).
    pub fn board_clear(&self, meeting: &MeetingId, by: &str, by_name: &str) {
        let mut rooms = self.rooms.lock().expect("rooms");
        if let Some(room) = rooms.get_mut(meeting) {
            room.board.clear();
            room.tell(ServerMsg::BoardClear {
                by: by.to_owned(),
                by_name: by_name.to_owned(),
            });
        }
    }

    /// Everything on `meeting`'s whiteboard, in order.
    pub fn board(&self, meeting: &MeetingId) -> Vec<crate::board::BoardOp> {
        let rooms = self.rooms.lock().expect("rooms");
        rooms
            .get(meeting)
            .map(|r| r.board.ops())
            .unwrap_or_default()
    }

    /// Ends every session of a meeting, saying `why` (it was closed by the controller,
    /// or the node is fenced).
    pub fn close(&self, meeting: &MeetingId, why: &Close) {
        if let Some(room) = self.rooms.lock().expect("rooms").remove(meeting) {
            for m in room.members.values() {
                m.session.end(why.clone());
            }
        }
    }

    /// Participants connected here (not those of other nodes).
    pub fn participants(&self) -> usize {
        self.rooms
            .lock()
            .expect("rooms")
            .values()
            .flat_map(|r| r.members.values())
            .filter(|m| m.origin.is_none())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> Participant {
        Participant {
            participant_id: id.into(),
            name: id.into(),
            role: signaling::Role::Attendee,
            ..Participant::default()
        }
    }

    #[tokio::test]
    async fn a_session_ends_saying_why_replaced_or_closed() {
        let rooms = Rooms::default();
        let m = MeetingId::parse("m").unwrap();
        let (a, b) = (
            ParticipantId::parse("a").unwrap(),
            ParticipantId::parse("b").unwrap(),
        );
        let first = rooms.join(&m, &a, info("a"));
        let _again = rooms.join(&m, &a, info("a"));
        assert_eq!(first.session.ended().await, Close::replaced());
        let other = rooms.join(&m, &b, info("b"));
        let fenced = Close::new(CloseCode::Fenced, "fenced: join again");
        rooms.close(&m, &fenced);
        assert_eq!(other.session.ended().await, fenced);
    }

    #[test]
    fn reconnect_replaces_the_old_session_and_the_old_leave_is_ignored() {
        let rooms = Rooms::default();
        let m = MeetingId::parse("m").unwrap();
        let p = ParticipantId::parse("p").unwrap();
        let first = rooms.join(&m, &p, info("p"));
        let second = rooms.join(&m, &p, info("p"));
        assert!(first.session.is_ended());
        assert!(!second.session.is_ended());
        rooms.leave(&first);
        assert_eq!(
            rooms.participants(),
            1,
            "the stale session's leave must not remove the new one"
        );
        rooms.leave(&second);
        assert_eq!(rooms.participants(), 0);
    }

    #[test]
    fn members_hear_joins_leaves_and_see_who_was_there() {
        let rooms = Rooms::default();
        let m = MeetingId::parse("m").unwrap();
        let mut a = rooms.join(&m, &ParticipantId::parse("a").unwrap(), info("a"));
        let b = rooms.join(&m, &ParticipantId::parse("b").unwrap(), info("b"));
        assert_eq!(b.others, vec![info("a")]);
        assert_eq!(b.active_speaker, None);
        // a hears its own join first, then b's.
        assert!(matches!(
            a.events.try_recv().map(Arc::unwrap_or_clone),
            Ok(ServerMsg::ParticipantJoined { .. })
        ));
        assert!(
            matches!(a.events.try_recv().map(Arc::unwrap_or_clone), Ok(ServerMsg::ParticipantJoined { participant }) if participant.participant_id == "b")
        );
        rooms.leave(&b);
        assert!(
            matches!(a.events.try_recv().map(Arc::unwrap_or_clone), Ok(ServerMsg::ParticipantLeft { participant_id }) if participant_id == "b")
        );
    }

    #[test]
    fn a_full_meeting_refuses_a_newcomer_but_not_a_reconnect_and_counts_far_participants() {
        let rooms = Rooms::default();
        let m = MeetingId::parse("m").unwrap();
        let id = |p: &str| ParticipantId::parse(p).unwrap();
        rooms.remote_upsert(&m, 7, info("far"));
        let a = rooms.try_join(&m, &id("a"), info("a"), 3).unwrap();
        let _b = rooms.try_join(&m, &id("b"), info("b"), 3).unwrap();
        // far + a + b: full.
        assert!(!rooms.has_room(&m, &id("c"), 3));
        assert_eq!(rooms.try_join(&m, &id("c"), info("c"), 3).err(), Some(3));
        // a reconnects: allowed, and replaces its old session.
        assert!(rooms.has_room(&m, &id("a"), 3));
        let a2 = rooms.try_join(&m, &id("a"), info("a"), 3).unwrap();
        assert!(a.session.is_ended());
        // Someone leaves: there is room again; another meeting was never full.
        rooms.leave(&a2);
        assert!(rooms.try_join(&m, &id("c"), info("c"), 3).is_ok());
        assert!(rooms.has_room(&MeetingId::parse("other").unwrap(), &id("c"), 3));
    }

    #[test]
    fn remote_participants_look_local_and_leave_with_their_node() {
        let rooms = Rooms::default();
        let m = MeetingId::parse("m").unwrap();
        let far = 7;
        rooms.remote_upsert(&m, far, info("r"));
        let mut a = rooms.join(&m, &ParticipantId::parse("a").unwrap(), info("a"));
        assert_eq!(
            a.others,
            vec![info("r")],
            "the welcome lists the far participant"
        );
        assert!(!rooms.is_local(&m, "r") && rooms.is_local(&m, "a"));
        assert_eq!(rooms.participants(), 1);
        let _ = a.events.try_recv().map(Arc::unwrap_or_clone); // a's own join
        let mut muted = info("r");
        muted.audio_muted = true;
        rooms.remote_upsert(&m, far, muted);
        assert!(matches!(
            a.events.try_recv().map(Arc::unwrap_or_clone),
            Ok(ServerMsg::Mute { participant_id, audio_muted: true, .. }) if participant_id == "r"
        ));
        // A far record never replaces one of ours.
        rooms.remote_upsert(&m, far, info("a"));
        assert!(rooms.is_local(&m, "a"));
        rooms.remote_forget(&m, far);
        assert!(matches!(
            a.events.try_recv().map(Arc::unwrap_or_clone),
            Ok(ServerMsg::ParticipantLeft { participant_id }) if participant_id == "r"
        ));
        let (local, _, _) = rooms.watch(&m);
        assert_eq!(local, vec![info("a")]);
    }

    #[test]
    fn an_update_tells_a_mute_as_mute_an_admission_as_a_join_and_the_rest_whole() {
        let rooms = Rooms::default();
        let m = MeetingId::parse("m").unwrap();
        let mut a = rooms.join(&m, &ParticipantId::parse("a").unwrap(), info("a"));
        let waiting = Participant {
            waiting: true,
            ..info("w")
        };
        let _w = rooms.join(&m, &ParticipantId::parse("w").unwrap(), waiting);
        let mut next = || {
            a.events
                .try_recv()
                .map(Arc::unwrap_or_clone)
                .expect("an event")
        };
        assert!(
            matches!(next(), ServerMsg::ParticipantJoined { participant } if participant.participant_id == "a")
        );
        assert!(
            matches!(next(), ServerMsg::ParticipantJoined { participant } if participant.waiting)
        );
        rooms.update(&m, "w", |p| p.waiting = false);
        assert!(
            matches!(next(), ServerMsg::ParticipantJoined { participant } if !participant.waiting)
        );
        rooms.update(&m, "w", |p| p.audio_muted = true);
        assert!(
            matches!(next(), ServerMsg::Mute { participant_id, audio_muted: true, .. } if participant_id == "w")
        );
        rooms.update(&m, "w", |p| p.hand_raised_unix_ms = Some(5));
        assert!(
            matches!(next(), ServerMsg::ParticipantUpdated { participant } if participant.hand_raised_unix_ms == Some(5))
        );
        assert!(
            rooms
                .update(&m, "w", |p| p.hand_raised_unix_ms = Some(5))
                .is_some()
        );
        assert!(
            a.events.try_recv().map(Arc::unwrap_or_clone).is_err(),
            "no change, no event"
        );
        assert!(rooms.update(&m, "nobody", |_| {}).is_none());
    }

    #[test]
    fn a_late_joiner_learns_the_current_active_speaker() {
        let rooms = Rooms::default();
        let m = MeetingId::parse("m").unwrap();
        let _a = rooms.join(&m, &ParticipantId::parse("a").unwrap(), info("a"));
        rooms.publish(
            &m,
            ServerMsg::ActiveSpeaker {
                participant_id: "a".into(),
            },
        );
        let b = rooms.join(&m, &ParticipantId::parse("b").unwrap(), info("b"));
        assert_eq!(b.active_speaker.as_deref(), Some("a"));
    }
}
