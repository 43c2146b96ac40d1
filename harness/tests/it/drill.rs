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

/// A drill of one recorded meeting, after the recording has written a while.
async fn recorded() -> Drill {
    let drill = Drill::start(DrillSpec {
        meetings: 1,
        subscribers: 1,
        recordings: 1,
        ..DrillSpec::default()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    drill
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_recording_node_loses_no_recording_and_the_gap_is_short() {
    let mut drill = recorded().await;
    let r = drill.kill_recording_node().await.unwrap();
    r.print();
    assert_eq!(r.recordings_hit, 1, "{r:?}");
    assert_eq!(r.recordings_lost, 0, "{r:?}");
    assert_eq!(r.meetings_lost, 0, "the meeting goes on: {r:?}");
    // The gap starts at the dead node's last heartbeat (the goal is 3 s).
    assert!(r.recording_gaps[0] < Duration::from_secs(10), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recording_fed_by_a_killed_media_node_goes_on_fed_by_the_meetings_new_node() {
    let mut drill = recorded().await;
    let r = drill.kill_media_node().await.unwrap();
    r.print();
    assert_eq!(r.meetings_lost, 0, "{r:?}");
    assert_eq!(
        r.recordings_hit, 1,
        "its one meeting was on the killed node: {r:?}"
    );
    assert_eq!(r.recordings_lost, 0, "{r:?}");
    // From the node's last heartbeat until the new segment's start (the goal is 3 s).
    assert!(r.recording_gaps[0] < Duration::from_secs(10), "{r:?}");

    // Both segments are kept, listed and on disk: the second fed by the new node.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rid, key) = drill.recordings().remove(0);
    let base = drill.cluster.controllers[0].url();
    let http = reqwest::Client::new();
    let stopped: serde_json::Value = http
        .post(format!("{base}/v1/recordings/{rid}/stop"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["segment"], 2, "{stopped}");
    assert_ne!(stopped["media_node_id"], r.dead_node.as_str(), "{stopped}");
    let files: Vec<&str> = stopped["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        "composite.mp4",
        "composite-s2.mp4",
        "manifest-segment-1.json",
        "manifest.json",
    ] {
        assert!(files.contains(&f), "{f} in {files:?}");
    }
    let node = stopped["node_id"].as_str().unwrap();
    let dir = drill
        .cluster
        .recording_storage(node)
        .join("internal")
        .join(&rid);
    for f in &files {
        let len = std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{f} is on disk in {}", dir.display());
    }
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(latest["segment"], 2);
    let gap = latest["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["reason"].as_str().unwrap().contains(&r.dead_node));
    assert!(
        gap.is_some(),
        "the manifest says why there is a gap: {latest}"
    );
}

/// The drills of the control plane's faults: short leases, so that they are quick.
fn short() -> DrillSpec {
    DrillSpec {
        meetings: 1,
        subscribers: 2,
        lease_ttl_secs: 5,
        ..DrillSpec::default()
    }
}

/// Nobody's media stopped, nobody had to rejoin, and no join was refused for long.
fn nothing_noticed(r: &harness::drill::FaultReport) {
    assert_eq!(r.meetings_lost, 0, "{r:?}");
    assert_eq!(r.media_back.len(), r.participants, "{r:?}");
    assert_eq!(r.rejoined, 0, "no session ended: {r:?}");
    assert!(r.joins_tried > 0, "{r:?}");
}

/// The other controller led within a few seconds, and joins went to it meanwhile.
fn handed_over(r: &harness::drill::FaultReport) {
    // The other wins once the old leader's election lease (3 s) has run out; a leader
    // cut off from etcd has stepped down by then (within half of it).
    let back = r.leader_back.expect("the other controller leads");
    assert!(back < Duration::from_secs(8), "{r:?}");
    assert!(
        r.join_outage <= Duration::from_secs(1),
        "joins go to the other: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_controller_leader_hands_over_and_joins_and_meetings_go_on() {
    let mut drill = Drill::start(short()).await.unwrap();
    let r = drill.kill_controller_leader().await.unwrap();
    r.print();
    nothing_noticed(&r);
    handed_over(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_etcd_member_loses_no_meeting_no_session_and_no_lease() {
    let mut drill = Drill::start(short()).await.unwrap();
    let r = drill.kill_etcd_member().await.unwrap();
    r.print();
    nothing_noticed(&r);
    assert!(r.join_outage < Duration::from_secs(5), "{r:?}");
    // Had a node's lease run out, its placements would have gone and its participants
    // rejoined; and the cluster still has a leader.
    let base = drill.cluster.controllers[0].url();
    let nodes: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/v1/nodes"))
        .bearer_auth(&drill.cluster.operator_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        nodes["nodes"].as_array().unwrap().len(),
        drill.cluster.media.len(),
        "{nodes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_media_node_cut_off_from_etcd_fences_itself_its_meetings_move_and_it_serves_again_after_the_heal()
 {
    let mut drill = Drill::start(short()).await.unwrap();
    let r = drill.partition_media_node().await.unwrap();
    r.print();
    let fenced = r.fenced_after.expect("the node fences itself");
    // Its lease (5 s) unrenewed, plus the time to notice a failed renewal.
    assert!(fenced < Duration::from_secs(9), "{r:?}");
    assert!(r.rejoined > 0, "its participants move: {r:?}");
    assert_eq!(r.meetings_lost, 0, "{r:?}");
    assert_eq!(r.media_back.len(), r.participants, "{r:?}");
    assert_eq!(r.stale_placements, 0, "{r:?}");
    assert!(r.healed_after.is_some(), "it serves again: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_cut_off_from_etcd_steps_down_says_it_is_not_ready_and_serves_again_after_the_heal()
 {
    let mut drill = Drill::start(short()).await.unwrap();
    let r = drill.partition_controller().await.unwrap();
    r.print();
    nothing_noticed(&r);
    handed_over(&r);
    assert!(r.healed_after.is_some(), "it serves again: {r:?}");
}
