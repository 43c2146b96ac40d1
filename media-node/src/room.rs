//! Meetings as signaling sees them: who is in, and a broadcast of what happens. Media
//! routing is the SFU's; this is the participant list, chat and mute state.
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use common::ids::{MeetingId, ParticipantId};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ParticipantInfo {
    pub participant_id: String,
    pub name: String,
    pub role: &'static str,
    pub audio_muted: bool,
    pub video_muted: bool,
}

/// Something every session of a meeting hears about. Serialised as a signaling message.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomEvent {
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: String,
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
    ActiveSpeaker {
        participant_id: String,
    },
}

struct Member {
    info: ParticipantInfo,
    /// Cancels the member's session; a reconnect with the same participant id uses it.
    session: CancellationToken,
    generation: u64,
}

struct Room {
    members: BTreeMap<ParticipantId, Member>,
    events: broadcast::Sender<RoomEvent>,
    /// The last announced active speaker, told to whoever joins later.
    active_speaker: Option<String>,
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
    pub session: CancellationToken,
    pub events: broadcast::Receiver<RoomEvent>,
    /// Who else was there when we joined.
    pub others: Vec<ParticipantInfo>,
    /// Who was the active speaker when we joined.
    pub active_speaker: Option<String>,
}

impl Rooms {
    /// Joins `info` to `meeting`, replacing (cancelling) an older session of the same participant.
    pub fn join(
        &self,
        meeting: &MeetingId,
        participant: &ParticipantId,
        info: ParticipantInfo,
    ) -> Membership {
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rooms = self.rooms.lock().expect("rooms");
        let room = rooms.entry(meeting.clone()).or_insert_with(|| Room {
            members: BTreeMap::new(),
            events: broadcast::channel(256).0,
            active_speaker: None,
        });
        let session = CancellationToken::new();
        let replaced = room.members.insert(
            participant.clone(),
            Member {
                info: info.clone(),
                session: session.clone(),
                generation,
            },
        );
        if let Some(old) = &replaced {
            old.session.cancel();
        }
        let events = room.events.subscribe();
        if replaced.is_none() {
            let _ = room
                .events
                .send(RoomEvent::ParticipantJoined { participant: info });
        }
        let others = room
            .members
            .iter()
            .filter(|(p, _)| *p != participant)
            .map(|(_, m)| m.info.clone())
            .collect();
        Membership {
            meeting: meeting.clone(),
            participant: participant.clone(),
            generation,
            session,
            events,
            others,
            active_speaker: room.active_speaker.clone(),
        }
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
            .is_some_and(|x| x.generation == m.generation)
        {
            room.members.remove(&m.participant);
            let _ = room.events.send(RoomEvent::ParticipantLeft {
                participant_id: m.participant.to_string(),
            });
        }
        if room.members.is_empty() {
            rooms.remove(&m.meeting);
        }
    }

    pub fn publish(&self, meeting: &MeetingId, event: RoomEvent) {
        let mut rooms = self.rooms.lock().expect("rooms");
        let Some(room) = rooms.get_mut(meeting) else {
            return;
        };
        if let RoomEvent::Mute {
            participant_id,
            audio_muted,
            video_muted,
        } = &event
            && let Some(m) = room
                .members
                .values_mut()
                .find(|m| &m.info.participant_id == participant_id)
        {
            m.info.audio_muted = *audio_muted;
            m.info.video_muted = *video_muted;
        }
        if let RoomEvent::ActiveSpeaker { participant_id } = &event {
            room.active_speaker = Some(participant_id.clone());
        }
        let _ = room.events.send(event);
    }

    /// Ends every session of a meeting (it was closed by the controller).
    pub fn close(&self, meeting: &MeetingId) {
        if let Some(room) = self.rooms.lock().expect("rooms").remove(meeting) {
            for m in room.members.values() {
                m.session.cancel();
            }
        }
    }

    pub fn participants(&self) -> usize {
        self.rooms
            .lock()
            .expect("rooms")
            .values()
            .map(|r| r.members.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> ParticipantInfo {
        ParticipantInfo {
            participant_id: id.into(),
            name: id.into(),
            role: "attendee",
            audio_muted: false,
            video_muted: false,
        }
    }

    #[test]
    fn reconnect_replaces_the_old_session_and_the_old_leave_is_ignored() {
        let rooms = Rooms::default();
        let m = MeetingId::parse("m").unwrap();
        let p = ParticipantId::parse("p").unwrap();
        let first = rooms.join(&m, &p, info("p"));
        let second = rooms.join(&m, &p, info("p"));
        assert!(first.session.is_cancelled());
        assert!(!second.session.is_cancelled());
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
            a.events.try_recv(),
            Ok(RoomEvent::ParticipantJoined { .. })
        ));
        assert!(
            matches!(a.events.try_recv(), Ok(RoomEvent::ParticipantJoined { participant }) if participant.participant_id == "b")
        );
        rooms.leave(&b);
        assert!(
            matches!(a.events.try_recv(), Ok(RoomEvent::ParticipantLeft { participant_id }) if participant_id == "b")
        );
    }

    #[test]
    fn a_late_joiner_learns_the_current_active_speaker() {
        let rooms = Rooms::default();
        let m = MeetingId::parse("m").unwrap();
        let _a = rooms.join(&m, &ParticipantId::parse("a").unwrap(), info("a"));
        rooms.publish(
            &m,
            RoomEvent::ActiveSpeaker {
                participant_id: "a".into(),
            },
        );
        let b = rooms.join(&m, &ParticipantId::parse("b").unwrap(), info("b"));
        assert_eq!(b.active_speaker.as_deref(), Some("a"));
    }
}
