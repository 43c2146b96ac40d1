//! The stored records (`state.proto`) to the meeting layer's types and back: the one
//! place they are converted. A role a record names that this node does not know reads
//! as attendee.
#![allow(clippy::disallowed_types)]

use proto::{AttendanceRecord, HostActionRecord, MeetingRoomRecord};
use signaling::Role;

use super::model::{Attendance, LoggedAction, RoomRecord};

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
            roles: r.roles.into_iter().map(|(p, n)| (p, role(&n))).collect(),
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
                .roles
                .iter()
                .map(|(p, role)| (p.clone(), role.as_str().to_owned()))
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
            by_role: role(&a.by_role),
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
            by_role: a.by_role.as_str().to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_record_reads_back_as_it_was_written() {
        let mut room = RoomRecord {
            locked: true,
            waiting_room: Some(false),
            admitted: vec!["a".into()],
            next_seq: 3,
            breakout_rooms: vec!["Room 1".into()],
            breakout_closes_unix_ms: 7,
            attendee_chat_everyone: true,
            ..RoomRecord::default()
        };
        room.roles.insert("c".into(), Role::CoHost);
        room.breakout_assignment.insert("a".into(), 1);
        room.actions.push(LoggedAction {
            seq: 2,
            by: "h".into(),
            by_role: Role::Host,
            action: "lock".into(),
            ..LoggedAction::default()
        });
        let stored = MeetingRoomRecord::from(&room);
        assert_eq!(stored.roles["c"], "co-host");
        assert_eq!(RoomRecord::from(stored), room);
        let gone = Attendance {
            participant_id: "p".into(),
            role: Role::Panelist,
            left_unix_ms: 9,
            ..Attendance::default()
        };
        assert_eq!(Attendance::from(AttendanceRecord::from(&gone)), gone);
    }

    #[test]
    fn a_role_this_node_does_not_know_reads_as_attendee() {
        let mut stored = MeetingRoomRecord::default();
        stored.roles.insert("p".into(), "moderator".into());
        assert_eq!(RoomRecord::from(stored).roles["p"], Role::Attendee);
    }
}
