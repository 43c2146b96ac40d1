//! What a participant's message means for the meeting: every client message, checked
//! against who the sender is and what the hosts allow, becomes [`Output`]s.
use std::time::Instant;

use signaling::limits::{MAX_CHAT_CHARS, REACTION_EMOJI};
use signaling::{BoardOp, ClientMsg, Participant, Role, ServerMsg};

use super::Allowances;
use super::host_controls::host_actions;
use super::polls::collab_op;
use crate::collab;
use crate::hosts::{Action, Actor, RoomState};
use crate::webinar;

/// Refused to participants who start recording on their computers while hosts forbid it.
pub const LOCAL_RECORDING_FORBIDDEN: &str =
    "the host does not allow recording this meeting on participants' computers";

/// What a session knows when it handles a message of its participant.
pub struct Ctx<'a> {
    pub me: &'a Participant,
    /// Whether the participant may publish (a webinar's attendees may not).
    pub publishes: bool,
    /// What the meeting's hosts decided.
    pub room: &'a RoomState,
    /// Everyone in the meeting, here and on its other nodes, and who waits (asked only
    /// by a host's actions that need it).
    pub members: &'a dyn Fn() -> Vec<Participant>,
    pub now_ms: i64,
    pub now: Instant,
}

/// What handling a message does; the session carries it out.
#[derive(Debug, PartialEq)]
pub enum Output {
    /// An `error` to the sender, answering its message of type `answers`.
    Refuse {
        answers: &'static str,
        message: String,
    },
    /// An event for every session of the meeting (chat, a reaction).
    Publish(ServerMsg),
    /// The sender's mute state: everyone is told, and the SFU stops what is muted.
    Mute {
        audio: bool,
        video: bool,
    },
    /// The sender's hand goes up (at this time, unless it is up already) or down.
    RaiseHand(i64),
    LowerHand,
    /// The sender records on their computer, or stopped.
    LocalRecording(bool),
    /// Media negotiation with the SFU.
    Offer(String),
    Answer(String),
    /// What the sender shows: the SFU fills its receive slots from it.
    View(signaling::View),
    /// The sender asks for a page of the roster, from the `n`-th participant on.
    RosterPage(u32),
    /// The sender shows m-line `mid` at this size.
    Layer {
        mid: String,
        width: u32,
        height: u32,
    },
    /// A whiteboard operation, checked (the session gives it its board-wide `op_id`).
    Draw(BoardOp),
    Undo(u32),
    ClearBoard,
    /// Host actions, checked, for the store.
    Act {
        answers: &'static str,
        actions: Vec<Action>,
    },
    /// A poll or Q&A request, for the store.
    Collab {
        answers: &'static str,
        op: collab::Op,
    },
    Leave,
}

fn refuse(answers: &'static str, message: impl Into<String>) -> Vec<Output> {
    vec![Output::Refuse {
        answers,
        message: message.into(),
    }]
}

/// What `msg` from `ctx.me` does.
pub fn handle(ctx: &Ctx<'_>, allow: &mut Allowances, msg: ClientMsg) -> Vec<Output> {
    let me = ctx.me;
    let answers = msg.kind();
    if let Some(op) = collab_op(&msg) {
        return match op {
            Err(refused) => refuse(answers, refused),
            Ok(_) if allow.collab.take(ctx.now).is_err() => refuse(
                answers,
                "too many poll and Q&A requests at once: wait a moment and try again",
            ),
            Ok(op) => vec![Output::Collab { answers, op }],
        };
    }
    match msg {
        ClientMsg::Offer { sdp } if !ctx.publishes && webinar::sends_media(&sdp) => {
            refuse(answers, webinar::ATTENDEE_OFFER)
        }
        ClientMsg::Offer { sdp } => vec![Output::Offer(sdp)],
        ClientMsg::Answer { sdp } => vec![Output::Answer(sdp)],
        ClientMsg::Layer { mid, width, height } if mid.len() <= 16 => {
            vec![Output::Layer { mid, width, height }]
        }
        ClientMsg::Layer { .. } => refuse(answers, "mid too long"),
        ClientMsg::View(view) => match view.check() {
            Err(rule) => refuse(answers, rule),
            Ok(()) if allow.views.take(ctx.now).is_err() => refuse(
                answers,
                "too many view changes: a few at once, then a few a second",
            ),
            Ok(()) => vec![Output::View(view)],
        },
        ClientMsg::RosterPage { .. } if allow.roster_pages.take(ctx.now).is_err() => refuse(
            answers,
            "too many roster pages asked for at once: a few, then a few a second",
        ),
        ClientMsg::RosterPage { from } => vec![Output::RosterPage(from)],
        ClientMsg::BoardDraw {
            stroke_id,
            tool,
            color,
            width,
            points,
            text,
        } => {
            let op = BoardOp {
                op_id: 0,
                author: me.participant_id.clone(),
                stroke_id,
                tool,
                color: color.to_ascii_lowercase(),
                width,
                points,
                text,
            };
            if me.role == Role::Attendee && !ctx.room.attendees_may_draw() {
                refuse(
                    answers,
                    "the host does not let attendees draw on the whiteboard",
                )
            } else if allow.board.take(ctx.now).is_err() {
                refuse(
                    answers,
                    "too many whiteboard messages: send a stroke's points in fewer, larger messages",
                )
            } else {
                match op.check() {
                    Ok(()) => vec![Output::Draw(op)],
                    Err(why) => refuse(answers, why),
                }
            }
        }
        ClientMsg::BoardUndo { stroke_id } => vec![Output::Undo(stroke_id)],
        ClientMsg::BoardClear {} if me.is_host() => vec![Output::ClearBoard],
        ClientMsg::BoardClear {} => {
            refuse(answers, "only hosts and co-hosts can clear the whiteboard")
        }
        ClientMsg::LocalRecording { recording } => {
            if recording && !me.is_host() && !ctx.room.local_recording_allowed() {
                refuse(answers, LOCAL_RECORDING_FORBIDDEN)
            } else if recording != me.local_recording {
                vec![Output::LocalRecording(recording)]
            } else {
                Vec::new()
            }
        }
        ClientMsg::Reaction { emoji } => {
            if !REACTION_EMOJI.contains(&emoji.as_str()) {
                refuse(
                    answers,
                    format!("emoji: one of {}", REACTION_EMOJI.join(" ")),
                )
            } else if allow.reactions.take(ctx.now).is_err() {
                refuse(
                    answers,
                    "too many reactions: a few at once, then one a second",
                )
            } else {
                vec![Output::Publish(ServerMsg::Reaction {
                    from: me.participant_id.clone(),
                    name: me.name.clone(),
                    emoji,
                    unix_ms: ctx.now_ms,
                })]
            }
        }
        ClientMsg::Chat { text } => {
            let text = text.trim();
            if text.is_empty() || text.chars().count() > MAX_CHAT_CHARS {
                return refuse(
                    answers,
                    format!("chat text: 1 to {MAX_CHAT_CHARS} characters"),
                );
            }
            vec![Output::Publish(ServerMsg::Chat {
                from: me.participant_id.clone(),
                name: me.name.clone(),
                text: text.to_owned(),
                unix_ms: ctx.now_ms,
            })]
        }
        ClientMsg::Mute {
            audio_muted,
            video_muted,
        } => {
            let may_unmute = me.is_host() || ctx.room.allow_unmute();
            if me.audio_muted && !audio_muted && !may_unmute {
                vec![
                    Output::Mute {
                        audio: true,
                        video: video_muted,
                    },
                    Output::Refuse {
                        answers,
                        message: "the host does not allow participants to unmute themselves: \
                                  you stay muted"
                            .into(),
                    },
                ]
            } else {
                vec![Output::Mute {
                    audio: audio_muted,
                    video: video_muted,
                }]
            }
        }
        ClientMsg::Leave {} => vec![Output::Leave],
        ClientMsg::RaiseHand {} => vec![Output::RaiseHand(ctx.now_ms)],
        ClientMsg::LowerHand {
            participant_id: None,
        } => vec![Output::LowerHand],
        ClientMsg::LowerHand {
            participant_id: Some(p),
        } if p == me.participant_id => vec![Output::LowerHand],
        host_msg => {
            let actor = Actor {
                id: me.participant_id.clone(),
                name: me.name.clone(),
                role: me.role,
            };
            match host_actions(ctx.members, &actor, ctx.room, host_msg) {
                Ok(_) if allow.host_actions.take(ctx.now).is_err() => refuse(
                    answers,
                    "too many host actions at once: wait a moment and try again",
                ),
                Ok(actions) => vec![Output::Act { answers, actions }],
                Err(refused) => refuse(answers, refused),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::{Action, RoomState};
    use common::cloud_recording::Wish;

    fn person(id: &str, role: Role) -> Participant {
        Participant {
            participant_id: id.into(),
            name: format!("Name of {id}"),
            role,
            ..Participant::default()
        }
    }

    /// One instant for every message of a test: the allowances are counted on it, not
    /// on how fast the machine runs the test.
    fn at() -> Instant {
        static AT: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *AT.get_or_init(Instant::now)
    }

    /// What `me` sending `msg` does in `room`, with `members` in the meeting.
    fn run(
        me: &Participant,
        room: &RoomState,
        members: &[Participant],
        allow: &mut Allowances,
        msg: ClientMsg,
    ) -> Vec<Output> {
        let list = || members.to_vec();
        let ctx = Ctx {
            me,
            publishes: true,
            room,
            members: &list,
            now_ms: 42,
            now: at(),
        };
        handle(&ctx, allow, msg)
    }

    fn refused(out: &[Output]) -> Option<&str> {
        out.iter().find_map(|o| match o {
            Output::Refuse { message, .. } => Some(message.as_str()),
            _ => None,
        })
    }

    #[test]
    fn views_outside_the_limits_and_floods_of_them_are_refused_saying_why() {
        let me = person("a", Role::Attendee);
        let room = RoomState::default();
        let mut allow = Allowances::new(at());
        let view = |video_slots| {
            signaling::parse_client(&format!(r#"{{"type":"view","video_slots":{video_slots}}}"#))
                .unwrap()
        };
        let out = run(&me, &room, &[], &mut allow, view(10_000));
        assert_eq!(refused(&out), Some("video_slots: 1 to 49"));
        let negative = signaling::parse_client(r#"{"type":"view","video_slots":4,"page":-1}"#);
        assert_eq!(
            negative.unwrap_err().answers,
            "view",
            "a negative page is refused"
        );
        let pins = format!(
            r#"{{"type":"view","video_slots":4,"pinned":[{}]}}"#,
            (0..10)
                .map(|i| format!("\"p{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let out = run(
            &me,
            &room,
            &[],
            &mut allow,
            signaling::parse_client(&pins).unwrap(),
        );
        assert_eq!(refused(&out), Some("pinned: at most 9 participants"));
        // A burst goes through, then the flood is refused (and the session goes on).
        let passed = (0..30)
            .filter(|_| {
                matches!(
                    run(&me, &room, &[], &mut allow, view(9)).as_slice(),
                    [Output::View(_)]
                )
            })
            .count();
        assert_eq!(passed, crate::meeting::allowance::VIEWS.0 as usize);
        let out = run(&me, &room, &[], &mut allow, view(9));
        assert!(refused(&out).unwrap().starts_with("too many view changes"));
    }

    /// A host's Record, Pause, Resume and Stop follow the recording's state; what the
    /// state (or the meeting, or the sender's role) does not allow is refused, each with
    /// its own sentence, and changes nothing.
    #[test]
    fn cloud_recording_requests_follow_the_recordings_state_and_are_refused_saying_why() {
        use common::cloud_recording as cloud;
        use signaling::CloudRecordingAction as A;
        let host = person("h", Role::CoHost);
        let mut allow = Allowances::new(at());
        let ask = |room: &RoomState, who: &Participant, action, allow: &mut Allowances| {
            let out = run(who, room, &[], allow, ClientMsg::CloudRecording { action });
            match out.as_slice() {
                [Output::Act { actions, .. }] => Ok(actions.clone()),
                _ => Err(refused(&out).expect("an act or a refusal").to_owned()),
            }
        };
        let mut room = RoomState::default();
        for (who, role) in [("p", Role::Panelist), ("a", Role::Attendee)] {
            let err = ask(&room, &person(who, role), A::Start, &mut allow).unwrap_err();
            assert!(err.starts_with("only hosts and co-hosts"), "{err}");
        }
        for action in [A::Pause, A::Resume, A::Stop] {
            assert_eq!(
                ask(&room, &host, action, &mut allow),
                Err(cloud::NOT_RUNNING.message.into())
            );
        }
        let actor = Actor {
            id: "h".into(),
            name: "Hanne".into(),
            role: Role::CoHost,
        };
        let mut step = |room: &mut RoomState, action| {
            let actions = ask(room, &host, action, &mut allow)?;
            for a in &actions {
                crate::hosts::apply(&mut room.rec, &actor, a, 7);
            }
            Ok::<_, String>(room.cloud_wish())
        };
        assert_eq!(step(&mut room, A::Start), Ok(Wish::Recording));
        let id = room.rec.cloud_recording.clone().unwrap().recording_id;
        assert!(common::ids::RecordingId::parse(&id).is_ok(), "{id}");
        assert_eq!(
            step(&mut room, A::Start),
            Err(cloud::ALREADY.message.into())
        );
        assert_eq!(
            step(&mut room, A::Resume),
            Err(cloud::NOT_PAUSED.message.into())
        );
        assert_eq!(step(&mut room, A::Pause), Ok(Wish::Paused));
        assert_eq!(
            step(&mut room, A::Pause),
            Err(cloud::ALREADY_PAUSED.message.into())
        );
        assert_eq!(step(&mut room, A::Resume), Ok(Wish::Recording));
        assert_eq!(step(&mut room, A::Stop), Ok(Wish::Stopped));
        assert_eq!(
            step(&mut room, A::Stop),
            Err(cloud::NOT_RUNNING.message.into())
        );
        // One recording throughout, and the audit has each step.
        assert_eq!(room.rec.cloud_recording.as_ref().unwrap().recording_id, id);
        let logged: Vec<&str> = room.rec.actions.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(
            logged,
            [
                "recording_start",
                "recording_pause",
                "recording_resume",
                "recording_stop"
            ]
        );
        assert!(
            room.rec
                .actions
                .iter()
                .all(|a| a.detail == id && a.by_name == "Hanne")
        );
        // A new start is a new recording.
        assert_eq!(step(&mut room, A::Start), Ok(Wish::Recording));
        assert_ne!(room.rec.cloud_recording.as_ref().unwrap().recording_id, id);
        // A meeting that may not be recorded says why.
        for refusal in [cloud::E2EE, cloud::FORBIDDEN, cloud::NEEDS_CLASSIFICATION] {
            let mut room = RoomState::default();
            room.cloud_refusal = Some(refusal);
            assert_eq!(
                ask(&room, &host, A::Start, &mut allow),
                Err(refusal.message.into())
            );
        }
    }

    #[test]
    fn chat_and_reactions_go_to_everyone_within_their_bounds() {
        let me = person("a", Role::Attendee);
        let room = RoomState::default();
        let mut allow = Allowances::new(at());
        let out = run(
            &me,
            &room,
            &[],
            &mut allow,
            ClientMsg::Chat {
                text: "  hi  ".into(),
            },
        );
        assert_eq!(
            out,
            [Output::Publish(ServerMsg::Chat {
                from: "a".into(),
                name: "Name of a".into(),
                text: "hi".into(),
                unix_ms: 42
            })]
        );
        let long = "x".repeat(MAX_CHAT_CHARS + 1);
        let out = run(&me, &room, &[], &mut allow, ClientMsg::Chat { text: long });
        assert!(refused(&out).unwrap().contains("1 to 2000"));
        let out = run(
            &me,
            &room,
            &[],
            &mut allow,
            ClientMsg::Reaction {
                emoji: "💩".into()
            },
        );
        assert!(refused(&out).unwrap().starts_with("emoji: one of"));
        let thumbs = || ClientMsg::Reaction {
            emoji: "👍".into()
        };
        let sent = (0..10)
            .filter(|_| refused(&run(&me, &room, &[], &mut allow, thumbs())).is_none())
            .count();
        assert_eq!(sent, 5, "a burst of five reactions, then one a second");
    }

    #[test]
    fn a_participant_stays_muted_when_hosts_disallow_unmuting_but_a_host_may() {
        let mut me = person("a", Role::Attendee);
        me.audio_muted = true;
        let mut room = RoomState::default();
        room.rec.unmute_disallowed = true;
        let mut allow = Allowances::new(at());
        let unmute = || ClientMsg::Mute {
            audio_muted: false,
            video_muted: false,
        };
        let out = run(&me, &room, &[], &mut allow, unmute());
        assert_eq!(
            out[0],
            Output::Mute {
                audio: true,
                video: false
            }
        );
        assert!(refused(&out).unwrap().contains("you stay muted"));
        me.role = Role::CoHost;
        let out = run(&me, &room, &[], &mut allow, unmute());
        assert_eq!(
            out,
            [Output::Mute {
                audio: false,
                video: false
            }]
        );
    }

    #[test]
    fn host_messages_become_checked_actions_and_others_may_not_send_them() {
        let host = person("h", Role::Host);
        let co = person("c", Role::CoHost);
        let mut waiting = person("w", Role::Attendee);
        waiting.waiting = true;
        let members = [
            host.clone(),
            co.clone(),
            waiting,
            person("a", Role::Attendee),
        ];
        let room = RoomState::default();
        let mut allow = Allowances::new(at());
        let out = run(&host, &room, &members, &mut allow, ClientMsg::AdmitAll {});
        assert_eq!(
            out,
            [Output::Act {
                answers: "admit_all",
                actions: vec![Action::Admit("w".into())]
            }]
        );
        let admit_a = || ClientMsg::Admit {
            participant_id: "a".into(),
        };
        let out = run(&host, &room, &members, &mut allow, admit_a());
        assert!(refused(&out).unwrap().contains("not in the waiting room"));
        let out = run(
            &members[3],
            &room,
            &members,
            &mut allow,
            ClientMsg::EndMeeting {},
        );
        assert!(refused(&out).unwrap().contains("you are an attendee"));
        let out = run(&co, &room, &members, &mut allow, ClientMsg::EndMeeting {});
        assert!(refused(&out).unwrap().contains("only the host"));
        let out = run(
            &co,
            &room,
            &members,
            &mut allow,
            ClientMsg::Remove {
                participant_id: "h".into(),
            },
        );
        assert!(refused(&out).unwrap().contains("only the host"), "{out:?}");
        let out = run(
            &host,
            &room,
            &members,
            &mut allow,
            ClientMsg::Remove {
                participant_id: "nobody".into(),
            },
        );
        assert!(refused(&out).unwrap().contains("not in this meeting"));
        let out = run(
            &host,
            &room,
            &members,
            &mut allow,
            ClientMsg::BreakoutAuto {},
        );
        assert!(
            refused(&out)
                .unwrap()
                .contains("create breakout rooms first")
        );
    }

    #[test]
    fn attendees_draw_only_while_hosts_let_them_and_only_hosts_clear() {
        let me = person("a", Role::Attendee);
        let mut room = RoomState::default();
        let mut allow = Allowances::new(at());
        let stroke = || ClientMsg::BoardDraw {
            stroke_id: 1,
            tool: "pen".into(),
            color: "#FF0000".into(),
            width: 3,
            points: vec![1, 2, 3, 4],
            text: String::new(),
        };
        match &run(&me, &room, &[], &mut allow, stroke())[..] {
            [Output::Draw(op)] => {
                assert_eq!((op.author.as_str(), op.color.as_str()), ("a", "#ff0000"))
            }
            other => panic!("{other:?}"),
        }
        room.rec.board_attendees_forbidden = true;
        let out = run(&me, &room, &[], &mut allow, stroke());
        assert!(
            refused(&out)
                .unwrap()
                .contains("does not let attendees draw")
        );
        let out = run(&me, &room, &[], &mut allow, ClientMsg::BoardClear {});
        assert!(refused(&out).is_some());
        let host = person("h", Role::Host);
        let out = run(&host, &room, &[], &mut allow, ClientMsg::BoardClear {});
        assert_eq!(out, [Output::ClearBoard]);
    }
}
