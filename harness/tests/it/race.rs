//! Two controllers racing on the same joins agree on one node per region.
use futures::future::join_all;
use serde_json::Value;

use crate::{Api, placements, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_controllers_joining_50_new_meetings_agree_on_one_node_per_region() {
    let c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let (a, b) = (c.controllers[0].url(), c.controllers[1].url());
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            api.create(&a, serde_json::json!({ "title": format!("race {i}") }))
                .await,
        );
    }
    let mut joins = Vec::new();
    for id in &ids {
        for r in ["oslo", "stockholm"] {
            joins.push((a.clone(), id.clone(), r));
            joins.push((b.clone(), id.clone(), r));
        }
    }
    let results: Vec<(String, &str, Value)> =
        join_all(joins.into_iter().map(|(base, id, region)| {
            let api = &api;
            async move { (id.clone(), region, api.join_from(&base, &id, region).await) }
        }))
        .await;

    for id in &ids {
        let stored = placements(&c, id).await;
        assert_eq!(
            stored.len(),
            2,
            "meeting {id} must have exactly one node per region: {stored:?}"
        );
        for region in ["oslo", "stockholm"] {
            let node = &stored[region];
            let answers: Vec<&Value> = results
                .iter()
                .filter(|(m, r, _)| m == id && *r == region)
                .map(|(_, _, v)| v)
                .collect();
            assert_eq!(answers.len(), 2);
            for v in answers {
                assert_eq!(
                    v["node_id"].as_str(),
                    Some(node.as_str()),
                    "{id}/{region}: controller answered {v}"
                );
                assert_eq!(v["region"].as_str(), Some(region));
            }
        }
    }
}
