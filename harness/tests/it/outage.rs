//! etcd going away: joins answer 503 with a reason; when it is back, the same controller
//! process serves again.
use std::time::Duration;

use harness::eventually;
use serde_json::json;

use crate::{Api, spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_gives_503_and_the_controller_recovers_without_a_restart() {
    let mut c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let placed = api.create(&base, json!({ "title": "placed" })).await;
    api.join_from(&base, &placed, "oslo").await;
    let fresh = api.create(&base, json!({ "title": "fresh" })).await;
    let pid = c.controllers[0].proc.pid();

    c.etcd.stop();
    for m in [&placed, &fresh] {
        let v = eventually(Duration::from_secs(8), "joins to answer 503", || async {
            let (st, v) = api
                .join(&base, m, json!({ "name": "Ada", "region": "oslo" }))
                .await;
            (st == 503).then_some(v)
        })
        .await
        .unwrap();
        assert_eq!(v["error"], "unavailable");
        assert!(v["message"].as_str().unwrap().contains("etcd"), "{v}");
    }
    let (st, _) = api.send(api.http.get(format!("{base}/readyz"))).await;
    assert_eq!(
        st, 503,
        "controller must report not ready while etcd is away"
    );

    c.etcd.restart().await.unwrap();
    for m in [&placed, &fresh] {
        eventually(
            Duration::from_secs(20),
            "joins to succeed again",
            || async {
                let (st, _) = api
                    .join(&base, m, json!({ "name": "Ada", "region": "oslo" }))
                    .await;
                (st == 200).then_some(())
            },
        )
        .await
        .unwrap();
    }
    assert!(c.controllers[0].proc.is_running());
    assert_eq!(
        c.controllers[0].proc.pid(),
        pid,
        "served again without a restart"
    );
}
