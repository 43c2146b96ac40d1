//! Host controls as a session asks for them: which actions a host's message means, and
//! whether its sender may take them. Pure: the meeting's members are passed in; the
//! actions go to the store (`hosts/`), which every node of the meeting follows.
use common::ids::RecordingId;
use signaling::limits::{
    BREAKOUT_CLOSE_SECS, MAX_BREAKOUT_CLOSE_SECS, MAX_BREAKOUT_ROOMS, MAX_CHAT_CHARS,
};
use signaling::{ClientMsg, CloudRecordingAction, Participant, Role};

use crate::hosts::{Action, Actor, RoomState};

/// The actions a host message asks for, checked: the sender may (hosts and co-hosts;
/// the host alone for ending the meeting and making or unmaking a host), and the
/// participant it names is in the meeting (`members` lists everyone in it, here and on
/// its other media nodes, and who waits: asked only by the actions that need it, after
/// the sender's role is checked). `room`: what the hosts decided so far.
pub fn host_actions(
    members: &dyn Fn() -> Vec<Participant>,
    actor: &Actor,
    room: &RoomState,
    msg: ClientMsg,
) -> Result<Vec<Action>, String> {
    let rooms_made = room.rec.breakout_rooms.len() as u32;
    if !actor.role.is_host() {
        return Err(format!(
            "only hosts and co-hosts can do this ({}); you are {}",
            msg.kind(),
            if actor.role == Role::Attendee {
                "an attendee"
            } else {
                "a panelist"
            }
        ));
    }
    let actions = match msg {
        ClientMsg::Admit { participant_id } => vec![Action::Admit(participant_id)],
        ClientMsg::Deny { participant_id } => vec![Action::Deny(participant_id)],
        ClientMsg::AdmitAll {} => {
            let all: Vec<Action> = members()
                .iter()
                .filter(|p| p.waiting)
                .map(|p| Action::Admit(p.participant_id.clone()))
                .collect();
            if all.is_empty() {
                return Err("nobody is in the waiting room".into());
            }
            all
        }
        ClientMsg::Lock { locked } => vec![Action::Lock(locked)],
        ClientMsg::WaitingRoom { enabled } => vec![Action::WaitingRoom(enabled)],
        ClientMsg::MuteAll { allow_unmute } => {
            let mut a: Vec<Action> = allow_unmute.map(Action::AllowUnmute).into_iter().collect();
            a.push(Action::MuteAll);
            a
        }
        ClientMsg::AllowUnmute { allowed } => vec![Action::AllowUnmute(allowed)],
        ClientMsg::MuteParticipant {
            participant_id,
            audio,
            video,
        } => {
            if !audio && !video {
                return Err("say what to turn off: audio, video or both".into());
            }
            vec![Action::Mute {
                target: participant_id,
                audio,
                video,
            }]
        }
        ClientMsg::AskUnmute { participant_id } => vec![Action::AskUnmute(participant_id)],
        ClientMsg::Remove { participant_id } => {
            if participant_id == actor.id {
                return Err("you cannot remove yourself: leave instead".into());
            }
            vec![Action::Remove(participant_id)]
        }
        ClientMsg::SetRole {
            participant_id,
            role,
        } => {
            vec![Action::SetRole {
                target: participant_id,
                role,
            }]
        }
        ClientMsg::Rename {
            participant_id,
            name,
        } => {
            let name = signaling::limits::display_name(&name)?;
            vec![Action::Rename {
                target: participant_id,
                name,
            }]
        }
        ClientMsg::LowerHand {
            participant_id: Some(participant_id),
        } => vec![Action::LowerHand(participant_id)],
        ClientMsg::EndMeeting {} => vec![Action::End],
        ClientMsg::BreakoutCreate { rooms } => {
            if !(1..=MAX_BREAKOUT_ROOMS).contains(&rooms) {
                return Err(format!("rooms: 1 to {MAX_BREAKOUT_ROOMS}"));
            }
            let names = (1..=rooms).map(|n| format!("Room {n}")).collect();
            vec![Action::BreakoutCreate(names)]
        }
        ClientMsg::BreakoutAssign {
            participant_id,
            room,
        } => {
            if room > rooms_made {
                return Err(format!(
                    "room {room}: there are {rooms_made} breakout rooms (0 is the main room)"
                ));
            }
            vec![Action::BreakoutAssign(vec![(participant_id, room)])]
        }
        ClientMsg::BreakoutAuto {} => {
            if rooms_made == 0 {
                return Err("create breakout rooms first".into());
            }
            let everyone = members();
            let mut people: Vec<&Participant> = everyone
                .iter()
                .filter(|p| !p.waiting && !p.is_host())
                .collect();
            people.sort_by_key(|p| p.joined_unix_ms);
            let moves = people
                .into_iter()
                .enumerate()
                .map(|(i, p)| (p.participant_id.clone(), i as u32 % rooms_made + 1))
                .collect();
            vec![Action::BreakoutAssign(moves)]
        }
        ClientMsg::BreakoutOpen {} => {
            if rooms_made == 0 {
                return Err("create breakout rooms first".into());
            }
            vec![Action::BreakoutOpen]
        }
        ClientMsg::BreakoutClose { seconds } => {
            let seconds = seconds.unwrap_or(BREAKOUT_CLOSE_SECS);
            if seconds > MAX_BREAKOUT_CLOSE_SECS {
                return Err(format!("seconds: at most {MAX_BREAKOUT_CLOSE_SECS}"));
            }
            vec![Action::BreakoutClose(seconds)]
        }
        ClientMsg::BoardAllow { allowed } => vec![Action::BoardAllow(allowed)],
        ClientMsg::LocalRecordingAllow { allowed } => vec![Action::LocalRecordingAllow(allowed)],
        ClientMsg::AttendeeChat { everyone } => vec![Action::AttendeeChatEveryone(everyone)],
        ClientMsg::CloudRecording { action } => vec![cloud_recording(room, action)?],
        ClientMsg::BreakoutBroadcast { text } => {
            let text = text.trim().to_owned();
            if text.is_empty() || text.chars().count() > MAX_CHAT_CHARS {
                return Err(format!("text: 1 to {MAX_CHAT_CHARS} characters"));
            }
            vec![Action::BreakoutBroadcast(text)]
        }
        other => return Err(format!("{} is not a host action", other.kind())),
    };
    // The participant an action names is in the meeting (and, to be admitted or turned
    // away, in its waiting room).
    let target_role = match actions.as_slice() {
        [a] => match a.target() {
            Some(id) => {
                let t = members()
                    .into_iter()
                    .find(|p| p.participant_id == id)
                    .ok_or_else(|| format!("participant {id} is not in this meeting"))?;
                if matches!(a, Action::Admit(_) | Action::Deny(_)) && !t.waiting {
                    return Err(format!("participant {id} is not in the waiting room"));
                }
                Some(t.role)
            }
            None => None,
        },
        _ => None,
    };
    if actor.role != Role::Host
        && let Some(a) = actions.iter().find(|a| a.needs_host(target_role))
    {
        return Err(format!("only the host can do this ({})", a.name()));
    }
    Ok(actions)
}

/// A host's request of the cloud recording, if the meeting and its recording's state
/// allow it; a start names the new recording.
fn cloud_recording(room: &RoomState, action: CloudRecordingAction) -> Result<Action, String> {
    use common::cloud_recording as cloud;
    let refused = match (action, room.cloud_refusal) {
        (CloudRecordingAction::Start, Some(r)) => Err(r),
        _ => cloud::after(room.cloud_wish(), action),
    };
    refused.map_err(|r| r.message.to_owned())?;
    let id = match (action, &room.rec.cloud_recording) {
        (CloudRecordingAction::Start, _) | (_, None) => RecordingId::random().to_string(),
        (_, Some(c)) => c.recording_id.clone(),
    };
    Ok(Action::CloudRecording { action, id })
}

/// Who takes the host role when the host `me` leaves: nobody while another host is in;
/// else the co-host who has been there longest, or else the participant who has.
pub fn heir<'a>(members: &'a [Participant], me: &str) -> Option<&'a Participant> {
    let others: Vec<&Participant> = members
        .iter()
        .filter(|p| p.participant_id != me && !p.waiting)
        .collect();
    if others.iter().any(|p| p.role == Role::Host) {
        return None;
    }
    others
        .iter()
        .filter(|p| p.role == Role::CoHost)
        .min_by_key(|p| p.joined_unix_ms)
        .or_else(|| others.iter().min_by_key(|p| p.joined_unix_ms))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, role: Role, joined: i64) -> Participant {
        Participant {
            participant_id: id.into(),
            role,
            joined_unix_ms: joined,
            ..Participant::default()
        }
    }

    #[test]
    fn the_host_role_goes_to_the_longest_present_co_host_else_participant() {
        let me = person("h", Role::Host, 1);
        let members = vec![
            me.clone(),
            person("a", Role::Attendee, 2),
            person("c2", Role::CoHost, 5),
            person("c1", Role::CoHost, 4),
        ];
        assert_eq!(heir(&members, "h").unwrap().participant_id, "c1");
        let no_co: Vec<Participant> = members
            .iter()
            .filter(|p| p.role != Role::CoHost)
            .cloned()
            .collect();
        assert_eq!(heir(&no_co, "h").unwrap().participant_id, "a");
        let mut another_host = members.clone();
        another_host.push(person("h2", Role::Host, 9));
        assert!(heir(&another_host, "h").is_none(), "a host is still in");
        assert!(heir(&[me], "h").is_none(), "nobody to take it");
    }
}
