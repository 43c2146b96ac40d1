//! The `ClusterStore` contract: every case runs on the etcd store (a real etcd on a free
//! loopback port, with a temporary data dir) and on the in-memory one, so that tests on
//! the in-memory store stand for production.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::cloud_recording::Wish;
use common::ids::{MeetingId, NodeId, RecordingId, Region};
use common::keyspace::Slot;
use controller::model::{
    Account, Capacity, CloudRecording, Gap, HostAction, MediaNode, Meeting, MeetingKind,
    MeetingState, NodeLoad, NodeState, Recording, RecordingNode, RecordingState, Room,
};
use controller::store::{
    Batch, Change, ChangeStream, ClusterStore, Erasure, EtcdStore, MemoryStore, PlacementCommit,
    StoreError,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// A store under test, with what the contract needs beyond the trait.
struct Rig {
    store: Arc<dyn ClusterStore>,
    compact: Box<dyn Fn(i64) -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
    /// Writes bytes that are no record at a meeting's key (etcd only).
    garbage:
        Option<Box<dyn Fn(MeetingId) -> futures::future::BoxFuture<'static, ()> + Send + Sync>>,
    _etcd: Option<harness::process::TestEtcd>,
}

fn memory() -> Rig {
    let store = MemoryStore::new();
    let s = store.clone();
    Rig {
        store: Arc::new(store),
        compact: Box::new(move |_| {
            s.compact();
            Box::pin(async {})
        }),
        garbage: None,
        _etcd: None,
    }
}

async fn etcd() -> Rig {
    let test_etcd = harness::process::TestEtcd::start("/contract")
        .await
        .unwrap();
    let (cfg, etcd) = (test_etcd.config.clone(), &test_etcd.etcd);
    let store = EtcdStore::connect(&cfg).await.unwrap();
    let client = etcd.client().await.unwrap();
    let c = client.clone();
    let ks = common::keyspace::Keyspace::new(&cfg.prefix);
    Rig {
        store: Arc::new(store),
        compact: Box::new(move |rev| {
            let mut c = c.clone();
            Box::pin(async move {
                c.compact(rev, None).await.unwrap();
            })
        }),
        garbage: Some(Box::new(move |m| {
            let mut c = client.clone();
            let key = ks.meeting(&m);
            Box::pin(async move {
                c.put(key, vec![0xff, 0xff, 0xff], None).await.unwrap();
            })
        })),
        _etcd: Some(test_etcd),
    }
}

harness::store_contract!(
    a_meeting_is_created_once_and_reads_back_as_written,
    ending_a_meeting_removes_its_placements_in_the_same_revision,
    a_placement_commits_only_over_what_its_writer_saw,
    a_recording_reads_back_as_written,
    an_account_is_created_once_and_found_by_its_address_in_any_case,
    the_cloud_recording_is_written_into_the_room_record_with_its_audit_entry,
    registrants_and_attendance_read_back_per_meeting,
    an_edit_lands_only_on_the_active_meeting_it_was_made_from,
    a_snapshot_and_the_feed_after_it_miss_nothing_and_repeat_nothing,
    records_bound_to_a_lease_go_with_it,
    a_watch_from_a_compacted_revision_fails_as_compacted,
    one_leader_at_a_time_and_the_next_takes_over_when_it_resigns,
);

/// The in-memory store holds domain values only and cannot hold garbage: this case is
/// the etcd store's alone.
#[tokio::test]
async fn on_etcd_an_undecodable_record_is_skipped_and_reading_it_is_an_error() {
    an_undecodable_record_is_skipped_and_reading_it_is_an_error(etcd().await).await
}

fn id(s: &str) -> MeetingId {
    MeetingId::parse(s).unwrap()
}

fn node(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}

fn oslo() -> Slot {
    Slot::first(Region::parse("oslo").unwrap())
}

fn meeting(s: &str) -> Meeting {
    Meeting {
        id: id(s),
        title: "weekly".into(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        residency: Some(Region::parse("oslo").unwrap()),
        classification: "internal".into(),
        host_key_hash: "$argon2id$host".into(),
        state: MeetingState::Active,
        created_unix_ms: 1_700_000_000_000,
        ended_unix_ms: None,
        waiting_room: false,
        locked: true,
        e2ee: true,
        kind: MeetingKind::Webinar,
        panelist_key_hash: Some("$argon2id$panelist".into()),
        description: "Every week; bring notes.".into(),
        schedule: Some(
            controller::schedule::Schedule::parse(&controller::schedule::ScheduleInput {
                start: "2026-10-19T10:00".into(),
                time_zone: Some("Europe/Oslo".into()),
                duration_minutes: 90,
                recurrence: Some(controller::schedule::RecurrenceInput {
                    frequency: "weekly".into(),
                    count: Some(4),
                    ..Default::default()
                }),
                join_before_minutes: Some(15),
            })
            .unwrap(),
        ),
        registration: Some(controller::model::Registration {
            manual_approval: true,
            questions: vec!["Affiliation?".into()],
        }),
        audience: controller::model::Audience::Organisation,
        owner: Some(controller::model::Owner {
            issuer: "https://idp.uni.no".into(),
            subject: "ada".into(),
            email: "ada@uni.no".into(),
            name: "Ada".into(),
            org: "uni.no".into(),
        }),
        recording_forbidden: true,
        recording_needs_classification: true,
        retention: Some(std::time::Duration::from_secs(7200)),
    }
}

fn media(s: &str) -> MediaNode {
    MediaNode {
        id: node(s),
        region: Region::parse("oslo").unwrap(),
        zone: "a".into(),
        signal_url: "wss://media.example/ws".into(),
        grpc_addr: "127.0.0.1:7001".into(),
        relay_addr: Some("127.0.0.1:7002".into()),
        capacity: Capacity {
            participants: 500,
            bitrate_kbps: 1_000_000,
            cpu_cores: 4.0,
        },
        version: "0.1.0".into(),
        state: NodeState::Active,
        lease_id: 0,
    }
}

/// The next batch of the feed, within 5 s.
async fn next(feed: &mut ChangeStream) -> Result<Batch, StoreError> {
    tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .expect("the feed answers within 5 s")
        .expect("the feed goes on")
}

/// Batches until `n` changes have come.
async fn changes(feed: &mut ChangeStream, n: usize) -> Vec<Change> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(next(feed).await.unwrap().changes);
    }
    out
}

async fn a_meeting_is_created_once_and_reads_back_as_written(rig: Rig) {
    let s = &rig.store;
    let m = meeting("abc-defg-hij");
    assert!(s.create_meeting(&m).await.unwrap());
    let mut other = meeting("abc-defg-hij");
    other.title = "a collision".into();
    assert!(
        !s.create_meeting(&other).await.unwrap(),
        "an existing id is a collision"
    );
    assert_eq!(s.get_meeting(&m.id).await.unwrap(), Some(m));
    assert_eq!(s.get_meeting(&id("zzz-zzzz-zzz")).await.unwrap(), None);
}

async fn ending_a_meeting_removes_its_placements_in_the_same_revision(rig: Rig) {
    let s = &rig.store;
    let mut m = meeting("abc-defg-hij");
    s.create_meeting(&m).await.unwrap();
    let sthlm = Slot::first(Region::parse("stockholm").unwrap());
    let spill = Slot { n: 1, ..oslo() };
    for slot in [oslo(), spill, sthlm] {
        let c = s
            .commit_placement(&m.id, &slot, &node("media-1"), None)
            .await;
        assert!(matches!(c, Ok(PlacementCommit::Committed(_))), "{c:?}");
    }
    let before = s.snapshot().await.unwrap().revision;
    let mut feed = s.watch(before).await.unwrap();
    m.state = MeetingState::Ended;
    m.ended_unix_ms = Some(1_700_000_100_000);
    s.end_meeting(&m).await.unwrap();
    assert!(s.placements(&m.id).await.unwrap().is_empty());
    assert_eq!(s.get_meeting(&m.id).await.unwrap(), Some(m.clone()));
    let batch = next(&mut feed).await.unwrap();
    assert_eq!(batch.changes.len(), 4, "one revision: {:?}", batch.changes);
    assert!(
        batch
            .changes
            .contains(&Change::Meeting(m.id.clone(), Some(m.clone())))
    );
    assert_eq!(
        batch
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Placement(_, _, None)))
            .count(),
        3
    );
}

async fn a_placement_commits_only_over_what_its_writer_saw(rig: Rig) {
    let s = &rig.store;
    let m = id("abc-defg-hij");
    let PlacementCommit::Committed(p1) = s
        .commit_placement(&m, &oslo(), &node("media-1"), None)
        .await
        .unwrap()
    else {
        panic!("an empty slot commits");
    };
    assert_eq!((p1.node.as_str(), p1.epoch), ("media-1", 1));
    match s
        .commit_placement(&m, &oslo(), &node("media-2"), None)
        .await
        .unwrap()
    {
        PlacementCommit::Lost(Some(now)) => assert_eq!(now, p1, "the loser learns the winner"),
        other => panic!("a taken slot does not commit: {other:?}"),
    }
    let PlacementCommit::Committed(p2) = s
        .commit_placement(&m, &oslo(), &node("media-2"), Some(&p1))
        .await
        .unwrap()
    else {
        panic!("replacing what we saw commits");
    };
    assert_eq!((p2.node.as_str(), p2.epoch), ("media-2", 2));
    assert!(p2.mod_revision > p1.mod_revision);
    match s
        .commit_placement(&m, &oslo(), &node("media-3"), Some(&p1))
        .await
        .unwrap()
    {
        PlacementCommit::Lost(Some(now)) => assert_eq!(now, p2),
        other => panic!("a stale replacement does not commit: {other:?}"),
    }
    assert_eq!(
        s.placements(&m).await.unwrap(),
        BTreeMap::from([(oslo(), p2.clone())])
    );
    assert!(
        !s.remove_placement(&m, &oslo(), p1.mod_revision)
            .await
            .unwrap()
    );
    assert!(
        s.remove_placement(&m, &oslo(), p2.mod_revision)
            .await
            .unwrap()
    );
    assert!(s.placements(&m).await.unwrap().is_empty());
    match s
        .commit_placement(&m, &oslo(), &node("media-3"), Some(&p2))
        .await
        .unwrap()
    {
        PlacementCommit::Lost(None) => {}
        other => panic!("replacing a removed placement does not commit: {other:?}"),
    }
}

async fn an_edit_lands_only_on_the_active_meeting_it_was_made_from(rig: Rig) {
    let s = &rig.store;
    let was = meeting("abc-defg-hij");
    assert!(s.create_meeting(&was).await.unwrap());
    let renamed = Meeting {
        title: "renamed".into(),
        ..was.clone()
    };
    assert!(s.edit_meeting(&renamed, &was).await.unwrap());
    assert_eq!(s.get_meeting(&was.id).await.unwrap(), Some(renamed.clone()));
    // Made from what is no longer there: refused.
    let stale = Meeting {
        title: "stale".into(),
        ..was.clone()
    };
    assert!(!s.edit_meeting(&stale, &was).await.unwrap());
    // Ended meanwhile: refused, and it stays ended.
    let ended = Meeting {
        state: MeetingState::Ended,
        ended_unix_ms: Some(5),
        ..renamed.clone()
    };
    s.end_meeting(&ended).await.unwrap();
    let late = Meeting {
        title: "late".into(),
        ..renamed.clone()
    };
    assert!(!s.edit_meeting(&late, &renamed).await.unwrap());
    assert_eq!(s.get_meeting(&was.id).await.unwrap(), Some(ended));
}

async fn registrants_and_attendance_read_back_per_meeting(rig: Rig) {
    use controller::model::{Attendance, Registrant, RegistrantState};
    let s = &rig.store;
    let (m, other) = (id("abc-defg-hij"), id("xyz-defg-hij"));
    let mut r = Registrant {
        meeting: m.clone(),
        id: "r1aaaaaaaaaa".into(),
        name: "Ada".into(),
        email: "ada@uni.no".into(),
        answers: vec!["UiO".into()],
        state: RegistrantState::Pending,
        registered_unix_ms: 7,
        decided_unix_ms: None,
        key_hash: "$argon2id$key".into(),
    };
    s.put_registrant(&r).await.unwrap();
    s.put_registrant(&Registrant {
        meeting: other.clone(),
        id: "r2aaaaaaaaaa".into(),
        ..r.clone()
    })
    .await
    .unwrap();
    r.state = RegistrantState::Approved;
    r.decided_unix_ms = Some(9);
    s.put_registrant(&r).await.unwrap();
    assert_eq!(s.registrants(&m).await.unwrap(), vec![r.clone()]);
    assert_eq!(s.get_registrant(&m, "r1aaaaaaaaaa").await.unwrap(), Some(r));
    assert_eq!(s.get_registrant(&m, "r2aaaaaaaaaa").await.unwrap(), None);
    let a = Attendance {
        participant_id: "p1aaaaaaaaaa".into(),
        name: "Ada".into(),
        registrant_id: Some("r1aaaaaaaaaa".into()),
        role: "attendee".into(),
        region: "oslo".into(),
        node_id: "media-1".into(),
        joined_unix_ms: 10,
        left_unix_ms: Some(20),
    };
    s.put_attendance(&m, &a).await.unwrap();
    assert_eq!(s.attendance(&m).await.unwrap(), vec![a]);
    assert!(s.attendance(&other).await.unwrap().is_empty());

    // Past its retention, a meeting goes with everything under it; others stay.
    let mut gone = meeting("abc-defg-hij");
    assert!(s.create_meeting(&gone).await.unwrap());
    gone.id = other.clone();
    assert!(s.create_meeting(&gone).await.unwrap());
    s.delete_meeting(&m).await.unwrap();
    assert_eq!(s.get_meeting(&m).await.unwrap(), None);
    assert!(s.registrants(&m).await.unwrap().is_empty());
    assert!(s.attendance(&m).await.unwrap().is_empty());
    assert!(s.get_meeting(&other).await.unwrap().is_some());
    assert_eq!(s.registrants(&other).await.unwrap().len(), 1);
}

async fn an_account_is_created_once_and_found_by_its_address_in_any_case(rig: Rig) {
    let s = &rig.store;
    let account = |email: &str, name: &str| Account {
        email: email.into(),
        name: name.into(),
        admin: false,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_unix_ms: 1_700_000_000_000,
        password_changed_unix_ms: 1_700_000_000_000,
    };
    let ada = account("ada/lovelace+1@uio.no", "Ada Lovelace");
    assert!(s.create_account(&ada).await.unwrap(), "created");
    assert!(
        !s.create_account(&account("ada/lovelace+1@uio.no", "Someone else"))
            .await
            .unwrap(),
        "an address has one account"
    );
    assert_eq!(
        s.get_account("Ada/Lovelace+1@UiO.no").await.unwrap(),
        Some(ada.clone()),
        "found in any case, as written"
    );
    assert_eq!(s.get_account("bo@uio.no").await.unwrap(), None);

    // An update lands on an account that is there, and on no other.
    let admin = Account {
        admin: true,
        password_changed_unix_ms: 1_700_000_100_000,
        ..ada.clone()
    };
    assert!(s.update_account(&admin).await.unwrap());
    assert_eq!(
        s.get_account(&ada.email).await.unwrap(),
        Some(admin.clone())
    );
    assert!(
        !s.update_account(&account("bo@uio.no", "Bo")).await.unwrap(),
        "no account to update"
    );
    assert_eq!(s.get_account("bo@uio.no").await.unwrap(), None);

    let bo = account("bo@ntnu.no", "Bo");
    assert!(s.create_account(&bo).await.unwrap());
    assert_eq!(
        s.list_accounts().await.unwrap(),
        vec![admin.clone(), bo.clone()],
        "by address"
    );
    s.delete_account("ADA/LOVELACE+1@uio.no").await.unwrap();
    s.delete_account("ada/lovelace+1@uio.no").await.unwrap();
    assert_eq!(s.list_accounts().await.unwrap(), vec![bo]);
}

async fn a_recording_reads_back_as_written(rig: Rig) {
    let s = &rig.store;
    let r = Recording {
        id: RecordingId::random(),
        meeting: id("abc-defg-hij"),
        node: node("rec-2"),
        state: RecordingState::Recording,
        files: vec!["composite.mkv".into()],
        gaps: vec![Gap {
            start_unix_ms: 10,
            end_unix_ms: 20,
            reason: "recording node rec-1 was lost; continued on rec-2".into(),
        }],
        started_unix_ms: 5,
        stopped_unix_ms: None,
        deleted_unix_ms: None,
        classification: "internal".into(),
        media_node: node("media-1"),
        error: None,
        segment: 2,
        earlier_nodes: vec![node("rec-1")],
        retention: Some(Duration::from_secs(7 * 86_400)),
        bytes: 9_876_543,
        duration_ms: 3_600_000,
    };
    s.put_recording(&r).await.unwrap();
    assert_eq!(s.get_recording(&r.id).await.unwrap(), Some(r.clone()));
    assert_eq!(s.get_recording(&RecordingId::random()).await.unwrap(), None);
    s.delete_recording(&r.id, &[]).await.unwrap();
    assert_eq!(s.get_recording(&r.id).await.unwrap(), None, "deleted");
    s.delete_recording(&r.id, &[]).await.unwrap();
    assert_eq!(s.erasures().await.unwrap(), vec![], "none left");

    // Deleted while two of its nodes were away: the record goes, and with it the
    // erasures for those nodes, which are dropped one by one as the nodes remove them.
    s.put_recording(&r).await.unwrap();
    let away = |n: &str| Erasure {
        node: node(n),
        recording: r.id.clone(),
        classification: "internal".into(),
    };
    s.delete_recording(&r.id, &[away("rec-1"), away("rec-2")])
        .await
        .unwrap();
    assert_eq!(s.get_recording(&r.id).await.unwrap(), None, "deleted");
    let mut left = s.erasures().await.unwrap();
    left.sort();
    assert_eq!(left, vec![away("rec-1"), away("rec-2")]);
    s.drop_erasure(&away("rec-1")).await.unwrap();
    assert_eq!(s.erasures().await.unwrap(), vec![away("rec-2")]);
    s.drop_erasure(&away("rec-1")).await.unwrap();
    s.drop_erasure(&away("rec-2")).await.unwrap();
    assert_eq!(s.erasures().await.unwrap(), vec![]);
}

/// The room record of `m` as the store holds it.
async fn room_of(s: &dyn ClusterStore, m: &MeetingId) -> Option<Room> {
    s.snapshot()
        .await
        .unwrap()
        .records
        .into_iter()
        .find_map(|c| match c {
            Change::Room(id, room) if id == *m => room,
            _ => None,
        })
}

async fn the_cloud_recording_is_written_into_the_room_record_with_its_audit_entry(rig: Rig) {
    let s = &*rig.store;
    let m = id("abc-defg-hij");
    let rid = RecordingId::random();
    let entry = |action: &str| HostAction {
        unix_ms: 7,
        by: "api".into(),
        by_name: "host key".into(),
        by_role: "host".into(),
        action: action.into(),
        detail: rid.to_string(),
        ..HostAction::default()
    };
    let wish = |w| CloudRecording {
        recording: rid.clone(),
        wish: w,
        since_unix_ms: 7,
        error: None,
    };
    // A new room record when there is none.
    let mut saw = Vec::new();
    let wrote = s
        .update_cloud_recording(&m, &mut |was| {
            saw.push(was.clone());
            Some((Some(wish(Wish::Recording)), entry("recording_start")))
        })
        .await
        .unwrap();
    assert!(wrote);
    assert_eq!(saw, [None]);
    // Over what is there, numbered next; and nothing when the change says so.
    let wrote = s
        .update_cloud_recording(&m, &mut |was| {
            assert_eq!(was.map(|c| c.wish), Some(Wish::Recording));
            Some((Some(wish(Wish::Stopped)), entry("recording_stop")))
        })
        .await
        .unwrap();
    assert!(wrote);
    let before = s.snapshot().await.unwrap().revision;
    assert!(!s.update_cloud_recording(&m, &mut |_| None).await.unwrap());
    assert_eq!(
        s.snapshot().await.unwrap().revision,
        before,
        "nothing written"
    );
    let room = room_of(s, &m).await.unwrap();
    assert_eq!(room.cloud, Some(wish(Wish::Stopped)));
    let log: Vec<(u64, &str)> = room
        .actions
        .iter()
        .map(|a| (a.seq, a.action.as_str()))
        .collect();
    assert_eq!(log, [(1, "recording_start"), (2, "recording_stop")]);
}

async fn a_snapshot_and_the_feed_after_it_miss_nothing_and_repeat_nothing(rig: Rig) {
    let s = &rig.store;
    let before = meeting("aaa-aaaa-aaa");
    s.create_meeting(&before).await.unwrap();
    let snap = s.snapshot().await.unwrap();
    assert_eq!(
        snap.records,
        vec![Change::Meeting(before.id.clone(), Some(before.clone()))]
    );
    let mut feed = s.watch(snap.revision).await.unwrap();
    let after = meeting("bbb-bbbb-bbb");
    s.create_meeting(&after).await.unwrap();
    let PlacementCommit::Committed(p) = s
        .commit_placement(&after.id, &oslo(), &node("media-1"), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    let got = changes(&mut feed, 2).await;
    assert_eq!(
        got,
        vec![
            Change::Meeting(after.id.clone(), Some(after.clone())),
            Change::Placement(after.id.clone(), oslo(), Some(p.clone())),
        ],
        "in order, the placement with the revision its commit answered"
    );
    // A feed resumed from the first change's revision gives the second only.
    let mut resumed = s.watch(p.mod_revision - 1).await.unwrap();
    assert_eq!(
        changes(&mut resumed, 1).await,
        vec![Change::Placement(after.id.clone(), oslo(), Some(p))]
    );
}

async fn records_bound_to_a_lease_go_with_it(rig: Rig) {
    let s = &rig.store;
    let lease = s.grant_lease(Duration::from_secs(30)).await.unwrap();
    let n = media("media-1");
    let r = RecordingNode {
        id: node("rec-1"),
        region: Region::parse("oslo").unwrap(),
        grpc_addr: "127.0.0.1:7101".into(),
        storage_classes: vec!["internal".into(), "restricted".into()],
        slots: 4,
        version: "0.1.0".into(),
        state: NodeState::Draining,
        lease_id: 0,
        download_url: None,
    };
    let load = NodeLoad {
        participants: 7,
        meetings: 2,
        tracks: 9,
        bitrate_in_kbps: 1_500,
        bitrate_out_kbps: 9_000,
        cpu_cores: 0.25,
        recordings: 0,
        updated_unix_ms: 1_700_000_000_000,
    };
    s.put_media_node(&n, lease).await.unwrap();
    s.put_recording_node(&r, lease).await.unwrap();
    s.put_load(&n.id, &load, lease).await.unwrap();
    let snap = s.snapshot().await.unwrap();
    for want in [
        Change::MediaNode(n.id.clone(), Some(n.clone())),
        Change::RecordingNode(r.id.clone(), Some(r.clone())),
        Change::Load(n.id.clone(), Some(load)),
    ] {
        assert!(
            snap.records.contains(&want),
            "{want:?} in {:?}",
            snap.records
        );
    }
    let mut feed = s.watch(snap.revision).await.unwrap();
    s.revoke_lease(lease).await.unwrap();
    let mut gone = changes(&mut feed, 3).await;
    gone.sort_by_key(|c| format!("{c:?}"));
    let mut want = vec![
        Change::MediaNode(n.id.clone(), None),
        Change::RecordingNode(r.id.clone(), None),
        Change::Load(n.id.clone(), None),
    ];
    want.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(gone, want);
    assert!(s.snapshot().await.unwrap().records.is_empty());
    // The leader may revoke a dead node's lease that ran out meanwhile: no error.
    s.revoke_lease(lease).await.unwrap();
    assert!(
        s.put_media_node(&n, lease).await.is_err(),
        "a revoked lease binds nothing"
    );
}

async fn a_watch_from_a_compacted_revision_fails_as_compacted(rig: Rig) {
    let s = &rig.store;
    s.create_meeting(&meeting("aaa-aaaa-aaa")).await.unwrap();
    let old = s.snapshot().await.unwrap().revision;
    s.create_meeting(&meeting("bbb-bbbb-bbb")).await.unwrap();
    s.create_meeting(&meeting("ccc-cccc-ccc")).await.unwrap();
    let now = s.snapshot().await.unwrap().revision;
    (rig.compact)(now).await;
    let failed = match s.watch(old - 1).await {
        Err(e) => e,
        Ok(mut feed) => next(&mut feed).await.unwrap_err(),
    };
    assert!(matches!(failed, StoreError::Compacted(_)), "{failed:?}");
    // From the compaction on, the feed works.
    let mut feed = s.watch(now).await.unwrap();
    s.create_meeting(&meeting("ddd-dddd-ddd")).await.unwrap();
    assert_eq!(changes(&mut feed, 1).await.len(), 1);
}

async fn one_leader_at_a_time_and_the_next_takes_over_when_it_resigns(rig: Rig) {
    let s = rig.store.clone();
    let shutdown = CancellationToken::new();
    let ttl = Duration::from_secs(5);
    let first = s
        .campaign("controller-a", ttl, &shutdown)
        .await
        .unwrap()
        .unwrap();
    let (s2, sd2) = (s.clone(), shutdown.clone());
    let mut second = tokio::spawn(async move { s2.campaign("controller-b", ttl, &sd2).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut second)
            .await
            .is_err(),
        "a second candidate waits while the first leads"
    );
    assert!(!first.is_lost());
    first.resign().await;
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second leads once the first resigned")
        .unwrap()
        .unwrap()
        .unwrap();
    // A third candidate gives up when it is shut down.
    let stop = CancellationToken::new();
    let (s3, sd3) = (s.clone(), stop.clone());
    let third = tokio::spawn(async move { s3.campaign("controller-c", ttl, &sd3).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    let third = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(third.is_none());
    second.resign().await;
}

async fn an_undecodable_record_is_skipped_and_reading_it_is_an_error(rig: Rig) {
    let garbage = rig.garbage.as_ref().expect("a store that can hold garbage");
    let s = &rig.store;
    let good = meeting("aaa-aaaa-aaa");
    s.create_meeting(&good).await.unwrap();
    let before = s.snapshot().await.unwrap().revision;
    let mut feed = s.watch(before).await.unwrap();
    garbage(id("bad-badb-bad")).await;
    s.create_meeting(&meeting("ccc-cccc-ccc")).await.unwrap();
    let snap = s.snapshot().await.unwrap();
    assert_eq!(
        snap.records.len(),
        2,
        "the garbage is skipped: {:?}",
        snap.records
    );
    let got = changes(&mut feed, 1).await;
    assert!(
        matches!(&got[..], [Change::Meeting(m, Some(_))] if m.as_str() == "ccc-cccc-ccc"),
        "{got:?}"
    );
    let err = s.get_meeting(&id("bad-badb-bad")).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}
