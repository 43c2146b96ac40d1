//! The stored records (`state.proto`) to the meeting layer's types and back: the one
//! place they are converted. A role a record names that this node does not know reads
//! as attendee.
#![allow(clippy::disallowed_types)]

use proto::{
    AttendanceRecord, CloudRecordingRecord, HostActionRecord, MeetingCollabRecord,
    MeetingRoomRecord, PollAnswerRecord, PollRecord, QuestionRecord,
};
use signaling::Role;

use super::model::{
    Attendance, CloudRecordingEntry, CollabRecord, LoggedAction, PollAnswerEntry, PollEntry,
    PollKind, PollState, QuestionEntry, RoomRecord,
};

fn role(name: &str) -> Role {
    Role::parse(name).unwrap_or(Role::Attendee)
}

impl From<MeetingRoomRecord> for RoomRecord {
    fn from(r: MeetingRoomRecord) -> Self {
        RoomRecord {
            locked: r.locked,
            waiting_room: r.waiting_room,
            unmute_disallowed: r.unmute_disallowed,
            admitted: r.admitted,
            denied: r.denied,
            removed: r.removed,
            roles: r
                .roles
                .iter()
                .filter_map(|(p, n)| Some((p.clone(), Role::parse(n)?)))
                .collect(),
            other_roles: r
                .roles
                .into_iter()
                .filter(|(_, n)| Role::parse(n).is_none())
                .collect(),
            names: r.names,
            ended: r.ended,
            actions: r.actions.into_iter().map(LoggedAction::from).collect(),
            next_seq: r.next_seq,
            breakout_rooms: r.breakout_rooms,
            breakout_assignment: r.breakout_assignment,
            breakout_open: r.breakout_open,
            breakout_closes_unix_ms: r.breakout_closes_unix_ms,
            board_attendees_forbidden: r.board_attendees_forbidden,
            local_recording_forbidden: r.local_recording_forbidden,
            attendee_chat_everyone: r.attendee_chat_everyone,
            cloud_recording: r.cloud_recording.map(|c| CloudRecordingEntry {
                recording_id: c.recording_id,
                state: c.state,
                since_unix_ms: c.since_unix_ms,
                error: c.error,
            }),
        }
    }
}

impl From<&RoomRecord> for MeetingRoomRecord {
    fn from(r: &RoomRecord) -> Self {
        MeetingRoomRecord {
            locked: r.locked,
            waiting_room: r.waiting_room,
            unmute_disallowed: r.unmute_disallowed,
            admitted: r.admitted.clone(),
            denied: r.denied.clone(),
            removed: r.removed.clone(),
            roles: r
                .other_roles
                .iter()
                .map(|(p, n)| (p.clone(), n.clone()))
                .chain(
                    r.roles
                        .iter()
                        .map(|(p, role)| (p.clone(), role.as_str().to_owned())),
                )
                .collect(),
            names: r.names.clone(),
            ended: r.ended,
            actions: r.actions.iter().map(HostActionRecord::from).collect(),
            next_seq: r.next_seq,
            breakout_rooms: r.breakout_rooms.clone(),
            breakout_assignment: r.breakout_assignment.clone(),
            breakout_open: r.breakout_open,
            breakout_closes_unix_ms: r.breakout_closes_unix_ms,
            board_attendees_forbidden: r.board_attendees_forbidden,
            local_recording_forbidden: r.local_recording_forbidden,
            attendee_chat_everyone: r.attendee_chat_everyone,
            cloud_recording: r.cloud_recording.as_ref().map(|c| CloudRecordingRecord {
                recording_id: c.recording_id.clone(),
                state: c.state.clone(),
                since_unix_ms: c.since_unix_ms,
                error: c.error.clone(),
            }),
        }
    }
}

impl From<HostActionRecord> for LoggedAction {
    fn from(a: HostActionRecord) -> Self {
        LoggedAction {
            seq: a.seq,
            unix_ms: a.unix_ms,
            by: a.by,
            by_name: a.by_name,
            by_role: a.by_role,
            action: a.action,
            target: a.target,
            detail: a.detail,
        }
    }
}

impl From<&LoggedAction> for HostActionRecord {
    fn from(a: &LoggedAction) -> Self {
        HostActionRecord {
            seq: a.seq,
            unix_ms: a.unix_ms,
            by: a.by.clone(),
            by_name: a.by_name.clone(),
            by_role: a.by_role.clone(),
            action: a.action.clone(),
            target: a.target.clone(),
            detail: a.detail.clone(),
        }
    }
}

impl From<AttendanceRecord> for Attendance {
    fn from(a: AttendanceRecord) -> Self {
        Attendance {
            participant_id: a.participant_id,
            name: a.name,
            registrant_id: a.registrant_id,
            role: role(&a.role),
            region: a.region,
            node_id: a.node_id,
            joined_unix_ms: a.joined_unix_ms,
            left_unix_ms: a.left_unix_ms,
        }
    }
}

impl From<&Attendance> for AttendanceRecord {
    fn from(a: &Attendance) -> Self {
        AttendanceRecord {
            participant_id: a.participant_id.clone(),
            name: a.name.clone(),
            registrant_id: a.registrant_id.clone(),
            role: a.role.as_str().to_owned(),
            region: a.region.clone(),
            node_id: a.node_id.clone(),
            joined_unix_ms: a.joined_unix_ms,
            left_unix_ms: a.left_unix_ms,
        }
    }
}

/// The bytes the store keeps for `c` (what an audit of the stored record would read).
pub fn collab_bytes(c: &CollabRecord) -> Vec<u8> {
    prost::Message::encode_to_vec(&MeetingCollabRecord::from(c))
}

impl From<MeetingCollabRecord> for CollabRecord {
    fn from(r: MeetingCollabRecord) -> Self {
        CollabRecord {
            polls: r.polls.into_iter().map(PollEntry::from).collect(),
            questions: r.questions.into_iter().map(QuestionEntry::from).collect(),
            next_id: r.next_id,
        }
    }
}

impl From<&CollabRecord> for MeetingCollabRecord {
    fn from(r: &CollabRecord) -> Self {
        MeetingCollabRecord {
            polls: r.polls.iter().map(PollRecord::from).collect(),
            questions: r.questions.iter().map(QuestionRecord::from).collect(),
            next_id: r.next_id,
        }
    }
}

// Poll kinds and states by their stored numbers: one this node does not know is kept.
fn kind_of(n: i32) -> PollKind {
    match proto::PollKind::try_from(n) {
        Ok(proto::PollKind::Single) => PollKind::Single,
        Ok(proto::PollKind::Multiple) => PollKind::Multiple,
        Ok(proto::PollKind::Text) => PollKind::Text,
        _ => PollKind::Unknown(n),
    }
}

fn stored_kind(k: PollKind) -> i32 {
    match k {
        PollKind::Single => proto::PollKind::Single as i32,
        PollKind::Multiple => proto::PollKind::Multiple as i32,
        PollKind::Text => proto::PollKind::Text as i32,
        PollKind::Unknown(n) => n,
    }
}

fn state_of(n: i32) -> PollState {
    match proto::PollState::try_from(n) {
        Ok(proto::PollState::Draft) => PollState::Draft,
        Ok(proto::PollState::Open) => PollState::Open,
        Ok(proto::PollState::Ended) => PollState::Ended,
        _ => PollState::Unknown(n),
    }
}

fn stored_state(s: PollState) -> i32 {
    match s {
        PollState::Draft => proto::PollState::Draft as i32,
        PollState::Open => proto::PollState::Open as i32,
        PollState::Ended => proto::PollState::Ended as i32,
        PollState::Unknown(n) => n,
    }
}

impl From<PollRecord> for PollEntry {
    fn from(p: PollRecord) -> Self {
        PollEntry {
            kind: kind_of(p.kind),
            state: state_of(p.state),
            id: p.id,
            question: p.question,
            options: p.options,
            anonymous: p.anonymous,
            shared: p.shared,
            created_by_name: p.created_by_name,
            created_unix_ms: p.created_unix_ms,
            launched_unix_ms: p.launched_unix_ms,
            ended_unix_ms: p.ended_unix_ms,
            voters: p.voters,
            tally: p.tally,
            answers: p
                .answers
                .into_iter()
                .map(|a| PollAnswerEntry {
                    participant_id: a.participant_id,
                    name: a.name,
                    choices: a.choices,
                    text: a.text,
                    unix_ms: a.unix_ms,
                })
                .collect(),
            texts: p.texts,
        }
    }
}

impl From<&PollEntry> for PollRecord {
    fn from(p: &PollEntry) -> Self {
        PollRecord {
            id: p.id,
            question: p.question.clone(),
            kind: stored_kind(p.kind),
            options: p.options.clone(),
            anonymous: p.anonymous,
            state: stored_state(p.state),
            shared: p.shared,
            created_by_name: p.created_by_name.clone(),
            created_unix_ms: p.created_unix_ms,
            launched_unix_ms: p.launched_unix_ms,
            ended_unix_ms: p.ended_unix_ms,
            voters: p.voters.clone(),
            tally: p.tally.clone(),
            answers: p
                .answers
                .iter()
                .map(|a| PollAnswerRecord {
                    participant_id: a.participant_id.clone(),
                    name: a.name.clone(),
                    choices: a.choices.clone(),
                    text: a.text.clone(),
                    unix_ms: a.unix_ms,
                })
                .collect(),
            texts: p.texts.clone(),
        }
    }
}

impl From<QuestionRecord> for QuestionEntry {
    fn from(q: QuestionRecord) -> Self {
        QuestionEntry {
            id: q.id,
            text: q.text,
            author_id: q.author_id,
            author_name: q.author_name,
            asked_unix_ms: q.asked_unix_ms,
            voters: q.voters,
            answer: q.answer,
            answered_by_name: q.answered_by_name,
            answered_live: q.answered_live,
            dismissed: q.dismissed,
        }
    }
}

impl From<&QuestionEntry> for QuestionRecord {
    fn from(q: &QuestionEntry) -> Self {
        QuestionRecord {
            id: q.id,
            text: q.text.clone(),
            author_id: q.author_id.clone(),
            author_name: q.author_name.clone(),
            asked_unix_ms: q.asked_unix_ms,
            voters: q.voters.clone(),
            answer: q.answer.clone(),
            answered_by_name: q.answered_by_name.clone(),
            answered_live: q.answered_live,
            dismissed: q.dismissed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_record_reads_back_as_it_was_written() {
        // Every field different from its default, and from the others.
        let room = RoomRecord {
            locked: true,
            waiting_room: Some(false),
            unmute_disallowed: true,
            admitted: vec!["a".into()],
            denied: vec!["d".into()],
            removed: vec!["r".into()],
            roles: [("c".to_owned(), Role::CoHost)].into(),
            other_roles: [("m".to_owned(), "moderator".to_owned())].into(),
            names: [("a".to_owned(), "Ada".to_owned())].into(),
            ended: true,
            actions: vec![LoggedAction {
                seq: 2,
                unix_ms: 5,
                by: "h".into(),
                by_name: "Hanne".into(),
                by_role: "host".into(),
                action: "mute".into(),
                target: "a".into(),
                detail: "audio".into(),
            }],
            next_seq: 3,
            breakout_rooms: vec!["Room 1".into()],
            breakout_assignment: [("a".to_owned(), 1)].into(),
            breakout_open: true,
            breakout_closes_unix_ms: 7,
            board_attendees_forbidden: true,
            local_recording_forbidden: true,
            attendee_chat_everyone: true,
            cloud_recording: Some(CloudRecordingEntry {
                recording_id: "rec".into(),
                state: "paused".into(),
                since_unix_ms: 11,
                error: "e".into(),
            }),
        };
        let stored = MeetingRoomRecord::from(&room);
        assert_eq!(stored.roles["c"], "co-host");
        assert_eq!(RoomRecord::from(stored), room);
        let gone = Attendance {
            participant_id: "p".into(),
            name: "Per".into(),
            registrant_id: "reg".into(),
            role: Role::Panelist,
            region: "oslo".into(),
            node_id: "media-oslo-1".into(),
            joined_unix_ms: 8,
            left_unix_ms: 9,
        };
        assert_eq!(Attendance::from(AttendanceRecord::from(&gone)), gone);
    }

    #[test]
    fn polls_and_questions_read_back_as_they_were_written() {
        let collab = CollabRecord {
            polls: vec![PollEntry {
                id: 1,
                question: "Tea?".into(),
                kind: PollKind::Multiple,
                state: PollState::Ended,
                options: vec!["yes".into(), "no".into()],
                tally: vec![2, 1],
                voters: vec!["a".into()],
                answers: vec![PollAnswerEntry {
                    participant_id: "a".into(),
                    choices: vec![0, 1],
                    ..PollAnswerEntry::default()
                }],
                ..PollEntry::default()
            }],
            questions: vec![QuestionEntry {
                id: 2,
                text: "Why?".into(),
                answered_live: true,
                ..QuestionEntry::default()
            }],
            next_id: 3,
        };
        let stored = MeetingCollabRecord::from(&collab);
        assert_eq!(stored.polls[0].kind(), proto::PollKind::Multiple);
        assert_eq!(stored.polls[0].state(), proto::PollState::Ended);
        assert_eq!(CollabRecord::from(stored), collab);
    }

    #[test]
    fn what_this_node_does_not_know_is_written_back_as_it_was_stored() {
        let mut stored = MeetingRoomRecord::default();
        stored.roles.insert("p".into(), "moderator".into());
        stored.roles.insert("h".into(), "host".into());
        let room = RoomRecord::from(stored.clone());
        assert_eq!(room.roles.get("p"), None);
        assert_eq!(room.other_roles["p"], "moderator");
        assert_eq!(MeetingRoomRecord::from(&room), stored);
        let collab = MeetingCollabRecord {
            polls: vec![PollRecord {
                id: 1,
                kind: 9,
                state: 7,
                ..PollRecord::default()
            }],
            ..MeetingCollabRecord::default()
        };
        let read = CollabRecord::from(collab.clone());
        assert_eq!(read.polls[0].kind, PollKind::Unknown(9));
        assert_eq!(MeetingCollabRecord::from(&read), collab);
    }
}
