//! The Helm chart, checked with real tools: the Helm v4 SDK (helm-python-sdk) lints it
//! strictly and renders it for several value sets, every rendered manifest validates
//! against Kubernetes' schemas (kubernetes-validate), values.schema.json refuses bad
//! values (tests/helm/test_chart.py). And the keys and certificates the chart makes work
//! with the binaries' own TLS and token code, under the names the pods dial each other by;
//! each binary accepts the config file and environment the chart gives its pods.
//! scripts/test.sh installs the tools into target/py-tools.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::ids::{MeetingId, NodeId, ParticipantId, Region};
use common::tls::Pem;
use common::token::{Role, TokenSigner, TokenVerifier};
use proto::v1::relay_control::Msg;
use proto::v1::{RelayControl, RelayHello};

use harness::repo_root as root;

/// Runs tests/helm/test_chart.py with `args` in the tools' venv; answers what it printed.
fn chart_checks(args: &[&str]) -> String {
    let python = harness::py_tools().join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh (ensure_python_tools makes it)",
        python.display()
    );
    let out = Command::new(&python)
        .arg(root().join("tests/helm/test_chart.py"))
        .args(args)
        .output()
        .expect("running the chart checks");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "chart checks failed:\n{text}");
    text
}

#[test]
fn the_chart_lints_renders_and_validates_and_its_schema_refuses_bad_values() {
    let text = chart_checks(&[]);
    assert!(text.contains("0 failures"), "{text}");
}

fn pem(dir: &Path, component: &str) -> Pem {
    let read = |f: String| std::fs::read(dir.join(f)).unwrap();
    Pem {
        ca: read("ca.crt".into()),
        cert: read(format!("{component}.crt")),
        key: read(format!("{component}.key")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_keys_and_certificates_carry_mutual_tls_and_join_tokens() {
    let dir = tempfile::tempdir().unwrap();
    chart_checks(&["--export", dir.path().to_str().unwrap()]);
    let dir = dir.path();

    // A token signed with the controllers' key verifies with what media nodes mount.
    let signer = TokenSigner::from_file(
        &dir.join("token-signing-key.pem"),
        "k1",
        Duration::from_secs(60),
    )
    .unwrap();
    let node = NodeId::parse("t-fjord-media-oslo-0").unwrap();
    let meeting = MeetingId::parse("m-1").unwrap();
    let mut verifier = TokenVerifier::new(node.clone());
    verifier
        .add_key_file("k1", &dir.join("token-signing.crt"))
        .unwrap();
    let now = (common::unix_ms() / 1000) as u64;
    let claims = signer.claims(
        now,
        ParticipantId::parse("p1").unwrap(),
        meeting.clone(),
        "Ada".into(),
        Role::Attendee,
        node,
        Region::parse("oslo").unwrap(),
    );
    let token = signer.sign(&claims);
    assert_eq!(
        verifier.verify(&token, &meeting, now + 1).unwrap().name,
        "Ada"
    );

    // The relay: a media node serves with its certificate; a recording node dials it by
    // node id (its pod name), the controllers by the pod's DNS name under the headless
    // Service (what they dial gRPC at, with the same rustls and certificates).
    let server = relay::server("127.0.0.1:0".parse().unwrap(), &pem(dir, "media")).unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(r) = relay::accept(&server).await {
            if let Ok((link, _hello)) = r {
                tokio::spawn(async move {
                    // Hold the link until the peer goes.
                    let _ = link.connection.closed().await;
                });
            }
        }
    });
    let hello = RelayControl {
        msg: Some(Msg::Hello(RelayHello {
            node_id: "t-fjord-rec-oslo-0".into(),
            meeting_id: "m-1".into(),
            sink_only: true,
        })),
    };
    for (component, name) in [
        ("recording", "t-fjord-media-oslo-0"),
        (
            "controller",
            "t-fjord-media-oslo-0.t-fjord-media-oslo.fjord.svc",
        ),
    ] {
        let client = relay::client("127.0.0.1:0".parse().unwrap(), &pem(dir, component)).unwrap();
        let link = tokio::time::timeout(
            Duration::from_secs(10),
            relay::connect(&client, addr, name, &hello),
        )
        .await
        .expect("handshake in time");
        assert!(
            link.is_ok(),
            "{component} dialling {name}: {:?}",
            link.err()
        );
    }
    // A name the media certificate does not carry is refused (one replica: only -0).
    let client = relay::client("127.0.0.1:0".parse().unwrap(), &pem(dir, "recording")).unwrap();
    let wrong = tokio::time::timeout(
        Duration::from_secs(10),
        relay::connect(&client, addr, "t-fjord-media-oslo-1", &hello),
    )
    .await
    .expect("refusal in time");
    assert!(
        wrong.is_err(),
        "a certificate for another name was accepted"
    );
}

#[test]
fn every_binary_accepts_the_config_and_environment_the_chart_gives_its_pods() {
    let dir = tempfile::tempdir().unwrap();
    chart_checks(&["--export", dir.path().to_str().unwrap()]);
    let dir = dir.path();
    for (component, bin) in [
        ("controller", "fjord-controller"),
        ("media", "fjord-media-node"),
        ("recording", "fjord-recording-node"),
    ] {
        let env: std::collections::BTreeMap<String, String> = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{component}.env.json"))).unwrap(),
        )
        .unwrap();
        assert!(!env.is_empty(), "{component}: no environment exported");
        let mut cmd = Command::new(harness::bin_path(bin).unwrap());
        cmd.arg("--config")
            .arg(dir.join(format!("{component}.toml")))
            .arg("--check-config")
            .envs(&env);
        if component == "controller" {
            // The Secret's file, which the pod has at /etc/fjord/operator/.
            cmd.env(
                "FJORD_CONTROLLER__OPERATOR_KEYS_FILE",
                dir.join("operator-keys"),
            );
        }
        let out = cmd.output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.contains("the config is valid"),
            "{bin} refused the chart's config: {said}"
        );
    }
}
