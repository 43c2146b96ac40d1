//! The `MeetingStore` contract: every case runs on the etcd store (a real etcd on a free
//! loopback port, with a temporary data dir) and on the in-memory one, so that the
//! meeting layer's tests on the in-memory store stand for production. The etcd rig
//! writes stored records as the controller does.
#![allow(clippy::disallowed_types)]
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::HashSet;

use common::ids::{MeetingId, NodeId, ParticipantId};
use futures::future::BoxFuture;
use media_node::store::{Attendance, CollabRecord, PollEntry, RoomRecord};
use media_node::store::{EtcdStore, MeetingSettings, MeetingStore, MemoryStore, Seen};
use prost::Message;
use tokio_util::sync::CancellationToken;

/// Places a meeting on a node in a slot, or empties the slot (None).
type Place = Box<dyn Fn(MeetingId, &str, Option<NodeId>) -> BoxFuture<'static, ()> + Send + Sync>;

/// A store under test, with what the contract needs beyond the trait: what the
/// controller does to a meeting's records (create it; delete it and all under it).
struct Rig {
    store: Arc<dyn MeetingStore>,
    create: Box<dyn Fn(MeetingId, MeetingSettings) -> BoxFuture<'static, ()> + Send + Sync>,
    delete: Box<dyn Fn(MeetingId) -> BoxFuture<'static, ()> + Send + Sync>,
    place: Place,
    _etcd: Option<harness::process::TestEtcd>,
}

fn memory() -> Rig {
    let store = Arc::new(MemoryStore::new());
    let (c, d, p) = (store.clone(), store.clone(), store.clone());
    Rig {
        place: Box::new(move |m, slot, node| {
            p.place(&m, slot, node);
            Box::pin(async {})
        }),
        store,
        create: Box::new(move |m, s| {
            c.put_meeting(&m, s);
            Box::pin(async {})
        }),
        delete: Box::new(move |m| {
            d.delete_meeting(&m);
            Box::pin(async {})
        }),
        _etcd: None,
    }
}

async fn etcd() -> Rig {
    let test_etcd = harness::process::TestEtcd::start("/contract")
        .await
        .unwrap();
    let (cfg, etcd) = (test_etcd.config.clone(), &test_etcd.etcd);
    let ks = common::keyspace::Keyspace::new(&cfg.prefix);
    let store = Arc::new(EtcdStore::new(cfg, CancellationToken::new()));
    let client = etcd.client().await.unwrap();
    let (c, ks_c) = (client.clone(), ks.clone());
    let (pc, ks_p) = (client.clone(), ks.clone());
    Rig {
        place: Box::new(move |m, slot, node| {
            let mut c = pc.clone();
            let key = format!("{}{slot}", ks_p.placements_of(&m));
            Box::pin(async move {
                match node {
                    Some(n) => {
                        let rec = proto::PlacementRecord {
                            node_id: n.to_string(),
                            ..Default::default()
                        };
                        c.put(key, rec.encode_to_vec(), None).await.unwrap();
                    }
                    None => {
                        c.delete(key, None).await.unwrap();
                    }
                }
            })
        }),
        store,
        create: Box::new(move |m, s| {
            let mut c = c.clone();
            use common::cloud_recording as cloud;
            let refused = |r| s.cloud_recording_refusal == Some(r);
            let rec = proto::MeetingRecord {
                e2ee: refused(cloud::E2EE),
                recording_forbidden: refused(cloud::FORBIDDEN),
                recording_needs_classification: refused(cloud::NEEDS_CLASSIFICATION),
                meeting_id: m.to_string(),
                title: s.title,
                waiting_room: s.waiting_room,
                residency: s.residency.unwrap_or_default(),
                kind: if s.webinar {
                    proto::MeetingKind::Webinar as i32
                } else {
                    proto::MeetingKind::Meeting as i32
                },
                ..Default::default()
            };
            let key = ks_c.meeting(&m);
            Box::pin(async move {
                c.put(key, rec.encode_to_vec(), None).await.unwrap();
            })
        }),
        delete: Box::new(move |m| {
            let mut c = client.clone();
            let key = ks.meeting(&m);
            Box::pin(async move {
                let all = etcd_client::DeleteOptions::new().with_prefix();
                c.delete(key, Some(all)).await.unwrap();
            })
        }),
        _etcd: Some(test_etcd),
    }
}

harness::store_contract!(
    a_meetings_settings_read_back_and_an_unknown_meeting_has_none,
    a_followed_room_is_read_then_every_change_is_seen_and_a_deletion_too,
    concurrent_room_changes_never_overwrite_each_other,
    a_late_follower_reads_the_latest_record,
    polls_and_questions_are_followed_and_changed_like_the_room,
    a_departure_lands_only_over_its_own_arrival,
    the_nodes_a_meeting_is_placed_on_are_followed_as_they_change,
    a_meetings_records_followed_at_once_each_see_their_own_changes_only,
);

fn id(s: &str) -> MeetingId {
    MeetingId::parse(s).unwrap()
}

/// What a follower saw, and a way to wait for what it should see. Stops following when
/// dropped.
struct Follower<R> {
    seen: Arc<Mutex<Vec<Seen<R>>>>,
    stop: CancellationToken,
}

impl<R: Clone + Send + 'static> Follower<R> {
    fn new() -> Self {
        Follower {
            seen: Arc::default(),
            stop: CancellationToken::new(),
        }
    }

    fn take(&self) -> Box<dyn FnMut(Seen<R>) + Send> {
        let seen = self.seen.clone();
        Box::new(move |s| seen.lock().unwrap().push(s))
    }

    /// Waits (at most 10 s) until what was seen satisfies `done`; everything seen.
    async fn until(&self, what: &str, done: impl Fn(&[Seen<R>]) -> bool) -> Vec<Seen<R>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.seen.lock().unwrap().clone();
            if done(&now) {
                return now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the follower never saw {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Follower<RoomRecord> {
    /// A follower of `m`'s room in `store`.
    fn of_room(store: &Arc<dyn MeetingStore>, m: &MeetingId) -> Self {
        let f = Self::new();
        let (store, m, stop, take) = (store.clone(), m.clone(), f.stop.clone(), f.take());
        tokio::spawn(async move { store.follow_room(&m, stop, take).await });
        f
    }
}

impl Follower<CollabRecord> {
    /// A follower of `m`'s polls and Q&A in `store`.
    fn of_collab(store: &Arc<dyn MeetingStore>, m: &MeetingId) -> Self {
        let f = Self::new();
        let (store, m, stop, take) = (store.clone(), m.clone(), f.stop.clone(), f.take());
        tokio::spawn(async move { store.follow_collab(&m, stop, take).await });
        f
    }
}

impl<R> Drop for Follower<R> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A follower of a meeting's placements: every set of nodes it was told. Stops when
/// dropped.
struct Placed {
    seen: Arc<Mutex<Vec<HashSet<NodeId>>>>,
    stop: CancellationToken,
}

impl Placed {
    fn follow(store: &Arc<dyn MeetingStore>, m: &MeetingId) -> Self {
        let (seen, stop) = (Arc::<Mutex<Vec<_>>>::default(), CancellationToken::new());
        let (store, m, got, s) = (store.clone(), m.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let take = move |nodes| got.lock().unwrap().push(nodes);
            store.follow_placements(&m, s, Box::new(take)).await
        });
        Placed { seen, stop }
    }

    /// Waits (at most 10 s) until the nodes last told are `want`.
    async fn until(&self, want: &[&str]) {
        let want: HashSet<NodeId> = want.iter().map(|n| NodeId::parse(n).unwrap()).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.seen.lock().unwrap().last() != Some(&want) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never saw {want:?}: {:?}",
                self.seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Adds poll 1, asking `question`, to `m`'s polls in `store`.
async fn add_poll(store: &Arc<dyn MeetingStore>, m: &MeetingId, question: &str) {
    store
        .update_collab(m, &mut |c| {
            c.polls.push(PollEntry {
                id: 1,
                question: question.into(),
                ..Default::default()
            })
        })
        .await
        .unwrap();
}

fn latest<R: Clone>(seen: &[Seen<R>]) -> Option<R> {
    match seen.last()? {
        Seen::Read(r, _) | Seen::Changed(r, _) => r.clone(),
    }
}

async fn a_meetings_settings_read_back_and_an_unknown_meeting_has_none(rig: Rig) {
    let settings = MeetingSettings {
        title: "Thesis defence".into(),
        waiting_room: true,
        webinar: true,
        residency: Some("oslo".into()),
        cloud_recording_refusal: Some(common::cloud_recording::FORBIDDEN),
    };
    (rig.create)(id("m1"), settings.clone()).await;
    assert_eq!(rig.store.meeting(&id("m1")).await.unwrap(), Some(settings));
    assert_eq!(rig.store.meeting(&id("nope")).await.unwrap(), None);
}

async fn a_followed_room_is_read_then_every_change_is_seen_and_a_deletion_too(rig: Rig) {
    let m = id("m1");
    (rig.create)(m.clone(), MeetingSettings::default()).await;
    let f = Follower::<RoomRecord>::new();
    let (store, m2, stop, take) = (rig.store.clone(), m.clone(), f.stop.clone(), f.take());
    tokio::spawn(async move { store.follow_room(&m2, stop, take).await });
    let first = f.until("the first read", |s| !s.is_empty()).await;
    assert!(
        matches!(first[0], Seen::Read(None, rev) if rev > 0),
        "{first:?}"
    );
    let (written, rev) = rig
        .store
        .update_room(&m, &mut |r| r.locked = true)
        .await
        .unwrap();
    assert!(written.locked);
    let seen = f
        .until("the lock", |s| latest(s).is_some_and(|r| r.locked))
        .await;
    assert!(
        matches!(seen.last(), Some(Seen::Changed(Some(_), at)) if *at == rev),
        "a change carries the revision it was written at: {seen:?}"
    );
    let (_, rev2) = rig
        .store
        .update_room(&m, &mut |r| r.admitted.push("p1".into()))
        .await
        .unwrap();
    assert!(rev2 > rev, "revisions only grow");
    f.until("the admission on top of the lock", |s| {
        latest(s).is_some_and(|r| r.locked && r.admitted == ["p1"])
    })
    .await;
    (rig.delete)(m.clone()).await;
    f.until("the deletion", |s| {
        matches!(s.last(), Some(Seen::Changed(None, _)))
    })
    .await;
}

async fn concurrent_room_changes_never_overwrite_each_other(rig: Rig) {
    let m = id("m1");
    let writers: Vec<_> = (0..12)
        .map(|i| {
            let (store, m) = (rig.store.clone(), m.clone());
            tokio::spawn(async move {
                store
                    .update_room(&m, &mut |r| r.admitted.push(format!("p{i}")))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for w in writers {
        // A writer that lost every round to the others says so; none may overwrite.
        if w.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    let (rec, _) = rig.store.update_room(&m, &mut |_| {}).await.unwrap();
    assert_eq!(rec.admitted.len(), ok, "{:?}", rec.admitted);
    assert!(ok >= 1);
}

async fn a_late_follower_reads_the_latest_record(rig: Rig) {
    let m = id("m1");
    for n in 0..3 {
        rig.store
            .update_room(&m, &mut |r| r.next_seq = n + 1)
            .await
            .unwrap();
    }
    let f = Follower::<RoomRecord>::new();
    let (store, m2, stop, take) = (rig.store.clone(), m.clone(), f.stop.clone(), f.take());
    tokio::spawn(async move { store.follow_room(&m2, stop, take).await });
    let seen = f.until("a read", |s| !s.is_empty()).await;
    assert!(
        matches!(&seen[0], Seen::Read(Some(r), _) if r.next_seq == 3),
        "{seen:?}"
    );
}

async fn polls_and_questions_are_followed_and_changed_like_the_room(rig: Rig) {
    let m = id("m1");
    let f = Follower::<CollabRecord>::new();
    let (store, m2, stop, take) = (rig.store.clone(), m.clone(), f.stop.clone(), f.take());
    tokio::spawn(async move { store.follow_collab(&m2, stop, take).await });
    f.until("the first read", |s| !s.is_empty()).await;
    add_poll(&rig.store, &m, "Tea or coffee?").await;
    f.until("the poll", |s| {
        latest(s).is_some_and(|c| c.polls.len() == 1 && c.polls[0].question == "Tea or coffee?")
    })
    .await;
    // The room is a record of its own.
    let (room, _) = rig.store.update_room(&m, &mut |_| {}).await.unwrap();
    assert_eq!(room, RoomRecord::default());
}

async fn a_departure_lands_only_over_its_own_arrival(rig: Rig) {
    let (m, p) = (id("m1"), ParticipantId::parse("p1").unwrap());
    let arrival = Attendance {
        participant_id: "p1".into(),
        name: "Ada".into(),
        joined_unix_ms: 1_000,
        ..Default::default()
    };
    assert!(
        rig.store
            .put_attendance(&m, &p, &arrival, None)
            .await
            .unwrap()
    );
    // A reconnect wrote its own arrival: the older session's departure does not land.
    let newer = Attendance {
        joined_unix_ms: 2_000,
        ..arrival.clone()
    };
    assert!(
        rig.store
            .put_attendance(&m, &p, &newer, None)
            .await
            .unwrap()
    );
    let stale_departure = Attendance {
        left_unix_ms: 3_000,
        ..arrival.clone()
    };
    assert!(
        !rig.store
            .put_attendance(&m, &p, &stale_departure, Some(&arrival))
            .await
            .unwrap()
    );
    assert_eq!(
        rig.store.attendance(&m, &p).await.unwrap(),
        Some(newer.clone())
    );
    let departure = Attendance {
        left_unix_ms: 4_000,
        ..newer.clone()
    };
    assert!(
        rig.store
            .put_attendance(&m, &p, &departure, Some(&newer))
            .await
            .unwrap()
    );
    assert_eq!(rig.store.attendance(&m, &p).await.unwrap(), Some(departure));
}

async fn the_nodes_a_meeting_is_placed_on_are_followed_as_they_change(rig: Rig) {
    let m = id("m1");
    let node = |s: &str| NodeId::parse(s).unwrap();
    (rig.place)(m.clone(), "oslo", Some(node("media-oslo-1"))).await;
    (rig.place)(id("other"), "oslo", Some(node("media-oslo-9"))).await;
    let placed = Placed::follow(&rig.store, &m);
    placed.until(&["media-oslo-1"]).await;
    (rig.place)(m.clone(), "stockholm", Some(node("media-sto-1"))).await;
    placed.until(&["media-oslo-1", "media-sto-1"]).await;
    // The region's placement moves to another node; then the other region's ends.
    (rig.place)(m.clone(), "oslo", Some(node("media-oslo-2"))).await;
    placed.until(&["media-oslo-2", "media-sto-1"]).await;
    (rig.place)(m.clone(), "stockholm", None).await;
    placed.until(&["media-oslo-2"]).await;
}

/// A node follows a meeting's placements, room and polls at once (the etcd store serves
/// them from one read and one watch of the meeting's keys): each follower sees its own
/// record's changes and no other's, one that comes late reads the latest, and one that
/// stops leaves the others following, as does following again after all stopped.
async fn a_meetings_records_followed_at_once_each_see_their_own_changes_only(rig: Rig) {
    let (m, other) = (id("m1"), id("m2"));
    let node = |s: &str| NodeId::parse(s).unwrap();
    (rig.place)(m.clone(), "oslo", Some(node("media-oslo-1"))).await;
    let room = Follower::of_room(&rig.store, &m);
    room.until("the first read", |s| !s.is_empty()).await;
    let placed = Placed::follow(&rig.store, &m);
    placed.until(&["media-oslo-1"]).await;

    rig.store
        .update_room(&m, &mut |r| r.next_seq = 7)
        .await
        .unwrap();
    room.until("the room's change", |s| {
        latest(s).is_some_and(|r| r.next_seq == 7)
    })
    .await;
    // A late follower of the polls reads what is there.
    add_poll(&rig.store, &m, "Now?").await;
    // It joins a running feed: a read of what the feed has seen, and the poll (in that
    // read, or as a change the feed's watch brings a moment later).
    let collab = Follower::of_collab(&rig.store, &m);
    let seen = collab
        .until("the poll", |s| {
            latest(s).is_some_and(|c| c.polls.len() == 1)
        })
        .await;
    assert!(matches!(&seen[0], Seen::Read(..)), "{seen:?}");

    // Changes to one record, and to another meeting, reach no other follower.
    let (rooms, placements) = (
        room.seen.lock().unwrap().len(),
        placed.seen.lock().unwrap().len(),
    );
    rig.store
        .update_collab(&m, &mut |c| c.polls.clear())
        .await
        .unwrap();
    rig.store
        .update_room(&other, &mut |r| r.next_seq = 1)
        .await
        .unwrap();
    (rig.place)(other.clone(), "oslo", Some(node("media-oslo-9"))).await;
    collab
        .until("the polls cleared", |s| {
            latest(s).is_some_and(|c| c.polls.is_empty())
        })
        .await;
    (rig.place)(m.clone(), "stockholm", Some(node("media-sto-1"))).await;
    placed.until(&["media-oslo-1", "media-sto-1"]).await;
    assert_eq!(
        room.seen.lock().unwrap().len(),
        rooms,
        "the room's follower was told of others' changes"
    );
    assert_eq!(
        placed.seen.lock().unwrap().len(),
        placements + 1,
        "the placements' follower was told of others' changes: {:?}",
        placed.seen.lock().unwrap()
    );

    // The placements' follower stops; the room's still sees changes.
    drop(placed);
    rig.store
        .update_room(&m, &mut |r| r.next_seq = 8)
        .await
        .unwrap();
    room.until("the room's change after another follower left", |s| {
        latest(s).is_some_and(|r| r.next_seq == 8)
    })
    .await;

    // Everyone stops; following again reads and then sees changes (that the feed itself
    // ends with its last follower, etcd's watcher count shows:
    // `on_etcd_a_meetings_three_followers_are_one_watch`).
    drop(room);
    drop(collab);
    tokio::time::sleep(Duration::from_millis(50)).await;
    rig.store
        .update_room(&m, &mut |r| r.next_seq = 9)
        .await
        .unwrap();
    let again = Follower::of_room(&rig.store, &m);
    let seen = again
        .until("the latest record", |s| {
            latest(s).is_some_and(|r| r.next_seq == 9)
        })
        .await;
    assert!(matches!(&seen[0], Seen::Read(..)), "{seen:?}");
    rig.store
        .update_room(&m, &mut |r| r.next_seq = 10)
        .await
        .unwrap();
    again
        .until("a change", |s| latest(s).is_some_and(|r| r.next_seq == 10))
        .await;
}

/// etcd's count of its watchers (from its metrics).
async fn etcd_watchers(endpoint: &str) -> u64 {
    let text = reqwest::get(format!("{endpoint}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .expect("etcd reports its watchers")
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

/// The etcd store serves the three records a node follows of a meeting from one read and
/// one watch: three followers of a meeting are one watcher on etcd (a join storm
/// prepares a meeting on a node per first join), and it goes when the last one stops.
#[tokio::test]
async fn on_etcd_a_meetings_three_followers_are_one_watch() {
    let test_etcd = harness::process::TestEtcd::start("/one-watch")
        .await
        .unwrap();
    let endpoint = test_etcd.etcd.endpoint();
    let store: Arc<dyn MeetingStore> = Arc::new(EtcdStore::new(
        test_etcd.config.clone(),
        CancellationToken::new(),
    ));
    let m = id("m1");
    let room = Follower::of_room(&store, &m);
    let collab = Follower::of_collab(&store, &m);
    let placed = Placed::follow(&store, &m);
    room.until("the room read", |s| !s.is_empty()).await;
    collab.until("the polls read", |s| !s.is_empty()).await;
    placed.until(&[]).await;
    // The read comes before the watch is set up: wait for etcd to count it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while etcd_watchers(&endpoint).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "etcd never counted a watcher"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        etcd_watchers(&endpoint).await,
        1,
        "three followers of one meeting, one watch"
    );
    drop(room);
    drop(collab);
    drop(placed);
    while etcd_watchers(&endpoint).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the meeting's watch outlived its followers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The meeting's registrants sort between its placements and its room, and a webinar's
/// may be megabytes (each with its answers): a meeting's feed reads past them, so that a
/// read over gRPC's 4 MiB message limit never keeps a node from following the meeting.
#[tokio::test]
async fn on_etcd_a_meeting_with_megabytes_of_registrants_is_followed() {
    let test_etcd = harness::process::TestEtcd::start("/registrants")
        .await
        .unwrap();
    let ks = common::keyspace::Keyspace::new(&test_etcd.config.prefix);
    let m = id("m1");
    let mut client = test_etcd.etcd.client().await.unwrap();
    // Five registrants of 1.2 MB each (etcd takes requests up to 1.5 MiB).
    for n in 0..5 {
        let key = ks.registrant(&m, &format!("r{n}"));
        client.put(key, vec![b'x'; 1_200_000], None).await.unwrap();
    }
    let store: Arc<dyn MeetingStore> = Arc::new(EtcdStore::new(
        test_etcd.config.clone(),
        CancellationToken::new(),
    ));
    room_is_followed(&store, &m).await;
}

/// Follows `m`'s room in `store`: it is read, and a change is seen.
async fn room_is_followed(store: &Arc<dyn MeetingStore>, m: &MeetingId) {
    let room = Follower::of_room(store, m);
    room.until("a read", |s| !s.is_empty()).await;
    store.update_room(m, &mut |r| r.next_seq = 3).await.unwrap();
    room.until("the change", |s| latest(s).is_some_and(|r| r.next_seq == 3))
        .await;
}
