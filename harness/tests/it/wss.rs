//! Signaling over TLS served by the media node itself (`[signal_tls]`): the join answer
//! names a `wss://` URL, bots that trust the node's CA exchange media through it, and a
//! client that does not trust it is refused by the handshake.
use std::sync::Arc;
use std::time::Duration;

use harness::{Cluster, ClusterSpec, NodeSpec, eventually};
use serde_json::json;

use crate::cascade::clip;
use crate::{Api, spec};

async fn bot_over_wss(
    base: &str,
    meeting: &str,
    name: &str,
    hz: Option<u32>,
    ca: Option<Arc<Vec<u8>>>,
) -> anyhow::Result<bot::Bot> {
    let cfg = bot::BotConfig {
        signal_ca: ca,
        ..crate::bot_config(base, meeting, name, Some("oslo"), hz.map(clip))
    };
    bot::Bot::join(cfg, Duration::from_secs(20)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_serving_wss_itself_carries_signaling_for_clients_that_trust_its_certificate() {
    let mut c = Cluster::start(ClusterSpec {
        controllers: 1,
        media: vec![],
        ..spec()
    })
    .await
    .unwrap();
    // The node's certificate, for 127.0.0.1 and localhost, from the cluster's CA.
    c.pki.issue("signal-oslo-1").unwrap();
    let (cert_file, key_file) = c.pki.files("signal-oslo-1");
    let wss_port = harness::free_port();
    c.media_extra = json!({
        "signal_tls": {
            "listen": format!("127.0.0.1:{wss_port}"),
            "cert_file": cert_file,
            "key_file": key_file,
        }
    });
    c.start_media(NodeSpec {
        id: "media-oslo-1".into(),
        region: "oslo".into(),
        capacity: 100,
    })
    .unwrap();
    c.media_extra = json!({});
    c.wait_ready(Duration::from_secs(20)).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "over TLS" })).await;

    let joined: serde_json::Value = api
        .http
        .post(format!("{base}/v1/meetings/{meeting}/join"))
        .json(&json!({ "name": "Peek" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = joined["signal_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("wss://127.0.0.1:{wss_port}/signal/")),
        "the join answer names the node's wss:// URL: {url}"
    );

    // Without the cluster's CA, the handshake refuses the node's certificate.
    let refused = bot_over_wss(&base, &meeting, "Doubter", None, None)
        .await
        .err()
        .expect("a client that does not trust the certificate cannot signal");
    let why = format!("{refused:#}");
    assert!(
        why.contains("certificate") || why.contains("UnknownIssuer"),
        "refused for its certificate: {why}"
    );

    let ca = Some(Arc::new(std::fs::read(c.pki.ca_file()).unwrap()));
    let speaker = bot_over_wss(&base, &meeting, "Speaker", Some(440), ca.clone())
        .await
        .unwrap();
    let listener = bot_over_wss(&base, &meeting, "Listener", None, ca)
        .await
        .unwrap();
    let id = speaker.participant_id.clone();
    eventually(
        Duration::from_secs(30),
        "the listener gets the speaker's audio and video, negotiated over wss://",
        || async {
            let got = listener.received();
            let audio = got.get(&(id.clone(), "audio"));
            let video = got.get(&(id.clone(), "video"));
            (audio.is_some_and(|a| a.audio.len() >= bot::AUDIO_KEPT)
                && video.is_some_and(|v| v.keyframes >= 1 && v.frames >= 20))
            .then_some(())
        },
    )
    .await
    .unwrap();
}
