//! A residency pin is never crossed.
use serde_json::json;

use crate::{Api, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_meeting_joined_from_another_region_is_placed_in_the_pinned_region_or_refused() {
    let mut s = spec();
    s.regions
        .push(("helsinki".into(), vec!["stockholm".into()]));
    let c = harness::Cluster::start(s).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();

    let pinned = api
        .create(
            &base,
            json!({ "title": "pinned", "residency": "stockholm" }),
        )
        .await;
    for region in ["oslo", "stockholm"] {
        let v = api.join_from(&base, &pinned, region).await;
        assert_eq!(v["region"], "stockholm", "{v}");
        assert_eq!(v["node_id"], "media-stockholm-1", "{v}");
    }

    // Helsinki is a known region with no media node: the join fails and says why,
    // although oslo and stockholm have room.
    let nowhere = api
        .create(&base, json!({ "title": "pinned", "residency": "helsinki" }))
        .await;
    let (st, v) = api
        .join(&base, &nowhere, json!({ "name": "Ada", "region": "oslo" }))
        .await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["error"], "unavailable");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("pinned to region helsinki"), "{msg}");

    // An unpinned meeting from helsinki falls back to its neighbour.
    let free = api.create(&base, json!({ "title": "free" })).await;
    let v = api.join_from(&base, &free, "helsinki").await;
    assert_eq!(v["region"], "stockholm", "{v}");
}
