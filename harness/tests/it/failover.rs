//! Failure handling: a media node or the leader controller killed with SIGKILL.
use std::time::{Duration, Instant};

use harness::eventually;
use serde_json::json;

use crate::{Api, TTL, metrics_text, spec, wait_placements_gone};

/// `kill -9` of media node `victim`, then waits (TTL + 2 s at most) until the placements of
/// its `meetings` are gone.
async fn kill_and_wait_placements_gone(
    c: &mut harness::Cluster,
    victim: &str,
    meetings: &[String],
) {
    c.media_node(victim).unwrap().proc.kill9();
    let killed = Instant::now();
    wait_placements_gone(
        c,
        meetings,
        victim,
        "the dead node's placements to be removed",
    )
    .await;
    eprintln!(
        "placements of {victim} gone {:?} after kill -9",
        killed.elapsed()
    );
}

/// The node of the first of `placed` (meeting, node) pairs, and every meeting on it.
fn first_node(placed: &[(String, String)]) -> (String, Vec<String>) {
    let node = placed[0].1.clone();
    let meetings = placed
        .iter()
        .filter(|(_, n)| *n == node)
        .map(|(m, _)| m.clone())
        .collect();
    (node, meetings)
}

/// Creates `n` meetings joined from oslo and returns (meeting, node) pairs.
async fn meetings_in_oslo(c: &harness::Cluster, api: &Api, n: usize) -> Vec<(String, String)> {
    let base = c.controllers[0].url();
    let mut out = Vec::new();
    for i in 0..n {
        let id = api.create(&base, json!({ "title": format!("m{i}") })).await;
        let v = api.join_from(&base, &id, "oslo").await;
        out.push((id, v["node_id"].as_str().unwrap().to_owned()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_media_node_loses_its_placements_and_its_meetings_move_to_a_live_node_of_the_region()
{
    let mut c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let placed = meetings_in_oslo(&c, &api, 6).await;
    let (victim, victims) = first_node(&placed);
    let survivor = if victim == "media-oslo-1" {
        "media-oslo-2"
    } else {
        "media-oslo-1"
    };
    assert!(
        placed.iter().any(|(_, n)| n == survivor),
        "placement should spread over both oslo nodes: {placed:?}"
    );

    kill_and_wait_placements_gone(&mut c, &victim, &victims).await;

    for m in &victims {
        let v = api.join_from(&c.controllers[1].url(), m, "oslo").await;
        assert_eq!(v["node_id"], survivor, "meeting {m}: {v}");
        assert_eq!(v["region"], "oslo");
    }

    // The leader counts it as lost (what the FjordNodeDown alert watches), and only it;
    // its census shows one active media node left in oslo.
    let media_oslo = [("kind", "media"), ("cluster_region", "oslo")];
    let text = eventually(
        Duration::from_secs(5),
        "the leader to count the lost node",
        || async {
            let text = metrics_text(&c.controllers[leader_of(&c).await?].url()).await;
            (labelled(&text, "fjord_cluster_nodes_lost_total", &media_oslo) == Some(1.0))
                .then_some(text)
        },
    )
    .await
    .unwrap();
    for (kind, region) in [("media", "stockholm"), ("recording", "oslo")] {
        let labels = [("kind", kind), ("cluster_region", region)];
        assert_eq!(
            labelled(&text, "fjord_cluster_nodes_lost_total", &labels),
            Some(0.0),
            "{kind} {region}"
        );
    }
    let active = [media_oslo[0], media_oslo[1], ("state", "active")];
    assert_eq!(labelled(&text, "fjord_cluster_nodes", &active), Some(1.0));
}

/// The value of the series of `name` that carries all of `labels`.
fn labelled(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_within_the_lease_ttl_and_the_new_leader_reconciles() {
    let mut c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let leader = eventually(Duration::from_secs(10), "a leader", || {
        let c = &c;
        async move { leader_of(c).await }
    })
    .await
    .unwrap();
    let other = 1 - leader;
    let placed = meetings_in_oslo(&c, &api, 4).await;
    let (victim, victims) = first_node(&placed);

    // The leader and a media node die together: only the new leader can clean up.
    c.controllers[leader].proc.kill9();
    c.media_node(&victim).unwrap().proc.kill9();
    let killed = Instant::now();
    eventually(
        Duration::from_secs(TTL + 2),
        "the other controller to lead",
        || {
            let c = &c;
            async move { (leader_of(c).await == Some(other)).then_some(()) }
        },
    )
    .await
    .unwrap();
    eprintln!("new leader after {:?}", killed.elapsed());
    wait_placements_gone(
        &c,
        &victims,
        &victim,
        "the new leader to remove the dead node's placements",
    )
    .await;
    eprintln!("reconciled after {:?}", killed.elapsed());
    let text = metrics_text(&c.controllers[other].url()).await;
    assert!(
        harness::metric_value(&text, "fjord_controller_reconciled_placements_total").unwrap()
            >= victims.len() as f64
    );
}

async fn leader_of(c: &harness::Cluster) -> Option<usize> {
    let leaders = c.leaders().await;
    assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
    leaders.first().copied()
}

/// The leader holds every node's heartbeat stream: a media node killed with -9 loses its
/// placements within seconds, long before its lease (30 s here) would run out, and the
/// next joins of its meetings land on the other node of the region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_media_node_is_noticed_by_its_heartbeat_stream_long_before_its_lease_runs_out() {
    let mut c = harness::Cluster::start(crate::long_lease_spec())
        .await
        .unwrap();
    let api = Api::new(&c);
    let placed = meetings_in_oslo(&c, &api, 4).await;
    let (victim, victims) = first_node(&placed);
    // Let the leader's watchers reach every node (a node never reached is left to its
    // lease).
    tokio::time::sleep(Duration::from_millis(500)).await;
    // At most TTL + 2 = 5 s; the victim's lease has 30.
    kill_and_wait_placements_gone(&mut c, &victim, &victims).await;
    for m in &victims {
        let v = api.join_from(&c.controllers[1].url(), m, "oslo").await;
        assert_ne!(v["node_id"], victim.as_str(), "meeting {m}: {v}");
        assert_eq!(v["region"], "oslo");
    }
}

/// A rejoin that names the node it lost (`lost_node`) makes the controller check that
/// node first: right after `kill -9` the join lands on the other node of the region; a
/// hint naming a node that answers changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoin_naming_the_node_it_lost_lands_on_a_live_node_at_once() {
    let mut c = harness::Cluster::start(crate::long_lease_spec())
        .await
        .unwrap();
    let api = Api::new(&c);
    let base = c.controllers[1].url();
    let placed = meetings_in_oslo(&c, &api, 1).await;
    let (meeting, node) = placed[0].clone();
    let rejoin = |lost: &str| {
        let body = json!({ "name": "Ada", "region": "oslo", "lost_node": lost });
        let (api, base, meeting) = (&api, &base, &meeting);
        async move {
            let (st, v) = api.join(base, meeting, body).await;
            assert_eq!(st, 200, "{v}");
            v
        }
    };
    // A live node named as lost: the meeting stays where it is; garbage is ignored.
    for hint in [node.as_str(), "../../etc"] {
        let v = rejoin(hint).await;
        assert_eq!(v["node_id"], node.as_str(), "{hint}: {v}");
    }

    // The leader must have reached the node's heartbeat stream to tell its death at
    // once (a node it never reached is left to its lease).
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.media_node(&node).unwrap().proc.kill9();
    let v = rejoin(&node).await;
    assert_ne!(v["node_id"], node.as_str(), "{v}");
    assert_eq!(v["region"], "oslo", "{v}");
}
