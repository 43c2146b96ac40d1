//! The media node refuses every join token that is not for it, for this meeting, now,
//! and signed by the controller's key.
use std::time::Duration;

use common::ids::{MeetingId, NodeId, ParticipantId, Region};
use common::token::{Role, TokenSigner};
use serde_json::json;

use crate::{Api, spec};

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

    let pem = std::fs::read(c.pki.token_key_file()).unwrap();
    let signer = TokenSigner::from_pem(&pem, "k1", Duration::from_secs(60)).unwrap();
    let now = common::unix_ms() as u64 / 1000;
    let mint = |s: &TokenSigner, iat: u64, node: &str, m: &str| {
        s.sign(&s.claims(
            iat,
            ParticipantId::random(),
            MeetingId::parse(m).unwrap(),
            "Mallory".into(),
            Role::Attendee,
            NodeId::parse(node).unwrap(),
            Region::parse("oslo").unwrap(),
        ))
    };
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
    assert_eq!(welcome["participant_id"], joined["participant_id"]);
    assert_eq!(welcome["meeting_id"], meeting.as_str());

    let text = crate::metrics_text(&format!("http://127.0.0.1:{}", node.http)).await;
    assert!(
        text.contains("fjord_media_tokens_refused_total"),
        "refusals are counted"
    );
}
