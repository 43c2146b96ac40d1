//! The media node refuses every join token that is not for it, for this meeting, now,
//! and signed by the controller's key.
use std::time::Duration;

use common::ids::{MeetingId, NodeId, ParticipantId, Region};
use common::token::{Role, TokenSigner};
use serde_json::json;

use crate::{Api, spec};

/// A signer with the controllers' own key: it mints tokens the nodes trust.
fn controller_signer(c: &harness::Cluster) -> TokenSigner {
    let pem = std::fs::read(c.pki.token_key_file()).unwrap();
    TokenSigner::from_pem(&pem, "k1", Duration::from_secs(60)).unwrap()
}

/// A token from `s` issued at `iat` for meeting `m` on `node`.
fn mint(s: &TokenSigner, iat: u64, node: &str, m: &str) -> String {
    s.sign(&s.claims(
        iat,
        ParticipantId::random(),
        MeetingId::parse(m).unwrap(),
        "Mallory".into(),
        Role::Attendee,
        NodeId::parse(node).unwrap(),
        Region::parse("oslo").unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_node_refuses_expired_forged_wrong_node_and_wrong_meeting_tokens() {
    let c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "tokens" })).await;
    let other_meeting = api.create(&base, json!({ "title": "other" })).await;
    let joined = api.join_from(&base, &meeting, "oslo").await;
    let node_id = joined["node_id"].as_str().unwrap().to_owned();
    let node = c.media.iter().find(|n| n.spec.id == node_id).unwrap();
    let signal =
        |m: &str, token: &str| format!("http://127.0.0.1:{}/signal/{m}?token={token}", node.http);

    let signer = controller_signer(&c);
    let now = common::unix_ms() as u64 / 1000;
    let forger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let forged = TokenSigner::from_pem(
        forger.serialize_pem().as_bytes(),
        "k1",
        Duration::from_secs(60),
    )
    .unwrap();
    let other_node = if node_id == "media-oslo-1" {
        "media-oslo-2"
    } else {
        "media-oslo-1"
    };

    let cases = [
        (
            "expired",
            mint(&signer, now - 120, &node_id, &meeting),
            meeting.clone(),
            "expired",
        ),
        (
            "forged",
            mint(&forged, now, &node_id, &meeting),
            meeting.clone(),
            "signature",
        ),
        (
            "wrong node",
            mint(&signer, now, other_node, &meeting),
            meeting.clone(),
            "another media node",
        ),
        (
            "wrong meeting",
            mint(&signer, now, &node_id, &other_meeting),
            meeting.clone(),
            "another meeting",
        ),
        (
            "used for another meeting",
            joined["token"].as_str().unwrap().to_owned(),
            other_meeting.clone(),
            "another meeting",
        ),
        (
            "garbage",
            "not-a-jwt".to_owned(),
            meeting.clone(),
            "malformed",
        ),
    ];
    for (what, token, m, says) in cases {
        let (st, v) = api.send(api.http.get(signal(&m, &token))).await;
        assert_eq!(st, 401, "{what}: {v}");
        assert!(v["message"].as_str().unwrap().contains(says), "{what}: {v}");
    }
    let (st, v) = api
        .send(
            api.http
                .get(format!("http://127.0.0.1:{}/signal/{meeting}", node.http)),
        )
        .await;
    assert_eq!(st, 401, "no token: {v}");

    // The token the controller issued opens a real session on its node.
    let (_ws, welcome) = crate::open_session(&joined).await;
    assert_eq!(welcome.participant_id, joined["participant_id"]);
    assert_eq!(welcome.meeting_id, meeting);

    let text = crate::metrics_text(&format!("http://127.0.0.1:{}", node.http)).await;
    assert!(
        text.contains("fjord_media_tokens_refused_total"),
        "refusals are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_for_a_meeting_not_hosted_on_the_node_is_refused_and_recreates_nothing() {
    let c = harness::Cluster::start(spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "ends" })).await;
    let joined = api.join_from(&base, &meeting, "oslo").await;
    let node_id = joined["node_id"].as_str().unwrap().to_owned();
    let node = c.media.iter().find(|n| n.spec.id == node_id).unwrap();
    let node_base = format!("http://127.0.0.1:{}", node.http);
    let signal = |m: &str, token: &str| format!("{node_base}/signal/{m}?token={token}");

    // A meeting the controller never placed on this node, with a token its key signed.
    let elsewhere = api.create(&base, json!({ "title": "never here" })).await;
    let now = common::unix_ms() as u64 / 1000;
    let token = mint(&controller_signer(&c), now, &node_id, &elsewhere);
    let (st, v) = api.send(api.http.get(signal(&elsewhere, &token))).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("not hosted"), "{v}");

    // The meeting ends: the node closes it, and the token, still valid, opens nothing.
    let (st, v) = api
        .operator(
            reqwest::Method::DELETE,
            format!("{base}/v1/meetings/{meeting}"),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let ws_url = signal(&meeting, joined["token"].as_str().unwrap()).replacen("http", "ws", 1);
    match tokio_tungstenite::connect_async(&ws_url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 409, "{resp:?}")
        }
        Ok(_) => panic!("a session opened for a meeting that ended"),
        Err(e) => panic!("unexpected: {e}"),
    }
    harness::eventually(
        Duration::from_secs(5),
        "the node hosts no meeting",
        || async {
            let text = crate::metrics_text(&node_base).await;
            (harness::metric_value(&text, "fjord_media_meetings") == Some(0.0)).then_some(())
        },
    )
    .await
    .unwrap();
}
