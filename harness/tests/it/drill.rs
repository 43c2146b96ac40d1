//! The fault drills' short versions (`harness::drill`; `fjord-drill` is the long one).
use std::time::Duration;

use harness::drill::{Drill, DrillSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_media_node_loses_no_meeting_and_every_participant_gets_media_back() {
    let mut drill = Drill::start(DrillSpec::default()).await.unwrap();
    let r = drill.kill_media_node().await.unwrap();
    r.print();
    assert!(r.rejoined > 0, "someone was on the killed node: {r:?}");
    assert_eq!(r.meetings_lost, 0, "{r:?}");
    assert_eq!(r.media_back.len(), r.participants, "{r:?}");
    assert_eq!(r.stale_placements, 0, "{r:?}");
    // The goal is 3 s (measured by `fjord-drill`); this bound only catches a way back
    // that is broken, on a loaded machine.
    assert!(r.percentile(1.0) < Duration::from_secs(10), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_recording_node_loses_no_recording_and_the_gap_is_short() {
    let mut drill = Drill::start(DrillSpec {
        meetings: 1,
        subscribers: 1,
        recordings: 1,
        ..DrillSpec::default()
    })
    .await
    .unwrap();
    // Let the recording write a while first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = drill.kill_recording_node().await.unwrap();
    r.print();
    assert_eq!(r.recordings_hit, 1, "{r:?}");
    assert_eq!(r.recordings_lost, 0, "{r:?}");
    assert_eq!(r.meetings_lost, 0, "the meeting goes on: {r:?}");
    // The gap starts at the dead node's last heartbeat (the goal is 3 s).
    assert!(r.recording_gaps[0] < Duration::from_secs(10), "{r:?}");
}
