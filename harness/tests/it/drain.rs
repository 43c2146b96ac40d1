//! Drain: a draining node gets no new placement, keeps what it has, and exits when idle.
use std::time::Duration;

use harness::eventually;
use nix::sys::signal::Signal;
use serde_json::json;

use crate::{Api, spec};

/// A participant's signaling session on media-oslo-1.
async fn participant_on_oslo_1(api: &Api, base: &str) -> crate::Session {
    let joined = loop {
        // Affinity keeps a meeting on one node; use new meetings until one lands on node 1.
        let id = api.create(base, json!({ "title": "busy" })).await;
        let v = api.join_from(base, &id, "oslo").await;
        if v["node_id"] == "media-oslo-1" {
            break v;
        }
    };
    crate::open_session(&joined).await.0
}

/// Waits until the controller at `base` lists media-oslo-1 as draining.
async fn seen_draining(api: &Api, base: &str) {
    eventually(
        Duration::from_secs(5),
        "the controller to see media-oslo-1 draining",
        || async {
            let nodes = api.nodes(base).await;
            nodes
                .iter()
                .any(|n| n["id"] == "media-oslo-1" && n["state"] == "draining")
                .then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_node_gets_no_new_placement_keeps_its_participant_and_exits_when_idle() {
    let mut c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();

    let mut ws = participant_on_oslo_1(&api, &base).await;

    let (st, v) = api
        .operator(
            reqwest::Method::POST,
            format!("{base}/v1/nodes/media-oslo-1/drain"),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "draining");
    assert_eq!(v["load"]["participants"], 1);

    // Both controllers see it draining, and place every new oslo meeting elsewhere.
    for ctl in &c.controllers {
        seen_draining(&api, &ctl.url()).await;
    }
    for i in 0..8 {
        let id = api
            .create(&base, json!({ "title": format!("new {i}") }))
            .await;
        let v = api
            .join_from(&c.controllers[i % 2].url(), &id, "oslo")
            .await;
        assert_eq!(v["node_id"], "media-oslo-2", "{v}");
    }
    // The existing session goes on: the node stays up while it has a participant. A
    // draining node looks for idleness every 250 ms, so in a second it would have left.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        c.media_node("media-oslo-1").unwrap().proc.is_running(),
        "a draining node with a participant must stay"
    );

    ws.close(None).await.unwrap();
    let code = c
        .media_node("media-oslo-1")
        .unwrap()
        .proc
        .wait_exit(Duration::from_secs(10))
        .await;
    assert_eq!(code, Some(0), "idle draining node should exit cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_idle_node_which_exits_and_leaves_the_cluster() {
    let mut c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let node = c.media_node("media-stockholm-1").unwrap();
    node.proc.signal(Signal::SIGTERM);
    assert_eq!(node.proc.wait_exit(Duration::from_secs(10)).await, Some(0));
    // It revoked its lease on the way out: gone at once, not after the TTL.
    eventually(
        Duration::from_secs(2),
        "the node to leave the node list",
        || async {
            let nodes = api.nodes(&c.controllers[0].url()).await;
            (!nodes.iter().any(|n| n["id"] == "media-stockholm-1")).then_some(())
        },
    )
    .await
    .unwrap();
    // It drained, so the leader does not count it as lost (FjordNodeDown stays quiet).
    // Two seconds: had the leader taken the exit for a death, its watch on the node would
    // have counted one within about a second (two confirming probes of 500 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut counted = Vec::new();
    for ctl in &c.controllers {
        let text = crate::metrics_text(&ctl.url()).await;
        counted.extend(
            text.lines()
                .filter(|l| l.starts_with("fjord_cluster_nodes_lost_total{"))
                .filter(|l| {
                    l.contains("kind=\"media\"") && l.contains("cluster_region=\"stockholm\"")
                })
                .map(str::to_owned),
        );
    }
    assert!(
        !counted.is_empty(),
        "the leader exports the stockholm media count"
    );
    assert!(counted.iter().all(|l| l.ends_with(" 0")), "{counted:?}");
}

/// The chart's preStop hook: `fjord-media-node --drain-and-wait` with the node's config
/// drains the node over its own control gRPC (mutual TLS) and returns only once the
/// node's last participant has left; the node then exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_wait_drains_the_node_and_returns_once_its_last_participant_left() {
    let mut c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let mut ws = participant_on_oslo_1(&api, &base).await;

    let log = c.dir.join("logs/drain-and-wait.log");
    let mut hook = harness::Proc::spawn_args(
        "drain-and-wait",
        &harness::bin_path("fjord-media-node").unwrap(),
        vec![
            "--config".into(),
            c.config_path("media-oslo-1").display().to_string(),
            "--drain-and-wait".into(),
        ],
        &log,
    )
    .unwrap();
    seen_draining(&api, &base).await;
    // It waits while the participant is there.
    assert_eq!(hook.wait_exit(Duration::from_secs(3)).await, None);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("draining: 1 participants left"), "{said}");

    ws.close(None).await.unwrap();
    assert_eq!(hook.wait_exit(Duration::from_secs(10)).await, Some(0));
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("drained"), "{said}");
    let node = c.media_node("media-oslo-1").unwrap();
    assert_eq!(node.proc.wait_exit(Duration::from_secs(10)).await, Some(0));
}
