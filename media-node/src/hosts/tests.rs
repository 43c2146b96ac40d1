use super::*;
use signaling::Role;

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
            ..MeetingSettings::default()
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
    let mut rec = crate::store::RoomRecord::default();
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

/// The settings the controller tells when it prepares a meeting are the room's, with no
/// read of the meeting (a join storm prepares a meeting per first join); a session's
/// follow after the prepare sees them too.
#[tokio::test(start_paused = true)]
async fn settings_told_at_prepare_are_shown_without_reading_the_meeting() {
    let r = rig(false);
    let told = MeetingSettings {
        title: "As the controller read it".into(),
        waiting_room: true,
        webinar: true,
        residency: None,
        cloud_recording_refusal: Some(common::cloud_recording::E2EE),
    };
    let rx = r.hosts.follow_told(&r.meeting, Some(told));
    assert!(
        rx.borrow().meeting_read,
        "the told settings are taken at once"
    );
    let room = r.room_when(|_| true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = r.hosts.follow(&r.meeting).borrow().clone();
    for s in [&room, &now] {
        assert_eq!(
            s.title, "As the controller read it",
            "the store's record was read"
        );
        assert!(s.meeting_waiting_room && s.webinar);
        assert_eq!(s.cloud_refusal, Some(common::cloud_recording::E2EE));
    }
}
