//! Drain: a draining node gets no new placement, keeps what it has, and exits when idle.
use std::time::Duration;

use harness::eventually;
use nix::sys::signal::Signal;
use serde_json::json;

use crate::{Api, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_node_gets_no_new_placement_keeps_its_participant_and_exits_when_idle() {
    let mut c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();

    // A participant connected to media-oslo-1.
    let first = api.create(&base, json!({ "title": "busy" })).await;
    let joined = loop {
        let v = api.join_from(&base, &first, "oslo").await;
        if v["node_id"] == "media-oslo-1" {
            break v;
        }
        // Affinity keeps the meeting on one node; use a new meeting until it lands on node 1.
        let next = api.create(&base, json!({ "title": "busy" })).await;
        let v = api.join_from(&base, &next, "oslo").await;
        if v["node_id"] == "media-oslo-1" {
            break v;
        }
    };
    let (mut ws, _welcome) = crate::open_session(&joined).await;

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
        eventually(
            Duration::from_secs(5),
            "controllers to see the node draining",
            || async {
                let nodes = api.nodes(&ctl.url()).await;
                nodes
                    .iter()
                    .any(|n| n["id"] == "media-oslo-1" && n["state"] == "draining")
                    .then_some(())
            },
        )
        .await
        .unwrap();
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
    // The existing session goes on: the node stays up while it has a participant.
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
}
