//! Each binary: `--help`, a bad config value exits naming the key, and the ops endpoints.
use std::process::Command;

use crate::{Api, spec};

const BINARIES: [(&str, &str); 3] = [
    ("fjord-controller", "FJORD_CONTROLLER__"),
    ("fjord-media-node", "FJORD_MEDIA_NODE__"),
    ("fjord-recording-node", "FJORD_RECORDING_NODE__"),
];

#[test]
fn every_binary_has_help_and_names_the_key_of_a_bad_config_value() {
    for (bin, prefix) in BINARIES {
        let path = harness::bin_path(bin).unwrap();
        let help = Command::new(&path).arg("--help").output().unwrap();
        assert!(help.status.success(), "{bin} --help");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("--config"),
            "{bin} --help mentions --config"
        );

        let bad = Command::new(&path)
            .env(format!("{prefix}ETCD__LEASE_TTL_SECS"), "soon")
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2), "{bin} with a bad value");
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(
            err.contains("LEASE_TTL_SECS") && err.contains(prefix),
            "{bin}: {err}"
        );

        let out_of_range = Command::new(&path)
            .env(format!("{prefix}ETCD__LEASE_TTL_SECS"), "1")
            .output()
            .unwrap();
        assert_eq!(
            out_of_range.status.code(),
            Some(2),
            "{bin} with an out-of-range value"
        );
        let err = String::from_utf8_lossy(&out_of_range.stderr);
        assert!(err.contains("etcd.lease_ttl_secs"), "{bin}: {err}");

        let missing = Command::new(&path)
            .args(["--config", "/nonexistent/fjord.toml"])
            .output()
            .unwrap();
        assert_eq!(missing.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&missing.stderr).contains("does not exist"),
            "{bin}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_serves_metrics_healthz_and_readyz() {
    let mut s = spec();
    s.recording = vec![crate::node("recording-oslo-1", "oslo")];
    let c = harness::Cluster::start(s).await.unwrap();
    let api = Api::new(&c);
    let mut bases: Vec<(String, &str)> = c
        .controllers
        .iter()
        .map(|x| (x.url(), "fjord_controller_is_leader"))
        .collect();
    bases.extend(c.media.iter().map(|n| {
        (
            format!("http://127.0.0.1:{}", n.http),
            "fjord_media_participants",
        )
    }));
    bases.extend(c.recording.iter().map(|n| {
        (
            format!("http://127.0.0.1:{}", n.http),
            "fjord_recording_slots_free",
        )
    }));
    for (base, metric) in bases {
        for path in ["/healthz", "/readyz"] {
            let (st, v) = api.send(api.http.get(format!("{base}{path}"))).await;
            assert_eq!(st, 200, "{base}{path}: {v}");
        }
        let (st, v) = api.send(api.http.get(format!("{base}/metrics"))).await;
        assert_eq!(st, 200);
        let text = v.as_str().unwrap();
        assert!(
            harness::metric_value(text, metric).is_some(),
            "{base}: {metric} missing"
        );
        assert!(
            text.contains("region=\""),
            "{base}: metrics carry the region label"
        );
    }
    // The recording node is registered with its slots and shown as such.
    let nodes = api.nodes(&c.controllers[0].url()).await;
    let rec = nodes
        .iter()
        .find(|n| n["kind"] == "recording")
        .expect("recording node listed");
    assert_eq!(rec["region"], "oslo");
    assert!(rec["slots"].as_u64().unwrap() >= 1);
}

/// `fjord-plan` on a small trace (worked out by hand in `controller::capacity`'s tests):
/// Oslo's 13 participants need two 10-place nodes, Bergen's 9 too; with one each, 3 of
/// Oslo's go to Bergen and 2 of Bergen's are refused.
#[test]
fn fjord_plan_prints_the_nodes_each_region_needs_for_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    std::fs::write(
        &trace,
        "meeting,region,start_s,end_s,participants\n\
         m1,oslo,0,100,8\nm2,oslo,10,50,5\nm3,bergen,20,30,9\n",
    )
    .unwrap();
    let out = Command::new(harness::bin_path("fjord-plan").unwrap())
        .arg("--trace")
        .arg(&trace)
        .args(["--fleet", "oslo=1x10,bergen=1x10"])
        .args(["--near", "oslo:bergen", "--near", "bergen:oslo"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "region",
            "peak",
            "nodes",
            "needed",
            "joins",
            "in_region",
            "out_of_region",
            "refused",
            "cross_links"
        ]
    );
    assert_eq!(rows[1], ["bergen", "9", "1", "2", "9", "7", "0", "2", "1"]);
    assert_eq!(rows[2], ["oslo", "13", "1", "2", "13", "10", "3", "0", "1"]);

    // A broken trace: exit 2, naming the line.
    std::fs::write(
        &trace,
        "meeting,region,start_s,end_s,participants\nm1,oslo,9,3,1\n",
    )
    .unwrap();
    let bad = Command::new(harness::bin_path("fjord-plan").unwrap())
        .arg("--trace")
        .arg(&trace)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 2"));
}
