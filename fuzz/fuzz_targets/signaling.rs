//! What reaches a media node's signaling endpoint from anyone on the internet: a client
//! message (a WebSocket text frame), the join token of the query, and the ids in the
//! path. None may panic, and a refusal names at most 32 characters of the client's type.
//! The first byte picks the input; the rest is it.
#![no_main]

use std::sync::OnceLock;

use common::ids::{MeetingId, NodeId, ParticipantId};
use common::token::TokenVerifier;
use libfuzzer_sys::fuzz_target;

/// A verifier that knows one real key, so that garbage can get past the key lookup.
fn verifier() -> &'static TokenVerifier {
    static V: OnceLock<TokenVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("an Ed25519 key");
        let mut v = TokenVerifier::new(NodeId::parse("media-oslo-1").expect("a node id"));
        v.add_key_pem("k1", kp.public_key_pem().as_bytes())
            .expect("its public key");
        v
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 4 {
        0 => {
            match signaling::parse_client(&text) {
                Err(r) => {
                    assert!(r.answers.chars().count() <= 32, "answers {:?}", r.answers);
                    assert!(!r.message.is_empty());
                }
                // A view is checked against the limits; a refusal says the rule.
                Ok(signaling::ClientMsg::View(v)) => match v.check() {
                    Err(rule) => assert!(!rule.is_empty()),
                    Ok(()) => {
                        for i in 0..v.video_slots as usize {
                            let t = v.tile(i);
                            assert!(t.width <= signaling::view::MAX_TILE_PX);
                        }
                    }
                },
                Ok(_) => {}
            }
        }
        1 => {
            let meeting = MeetingId::parse("m-1").expect("a meeting id");
            if let Ok(claims) = verifier().verify(&text, &meeting, 1_800_000_000) {
                panic!("a token no one signed was accepted: {claims:?}");
            }
        }
        2 => {
            // The operator's key files (a public key or a certificate).
            let mut v = TokenVerifier::new(NodeId::parse("n1").expect("a node id"));
            let _ = v.add_key_pem("k", rest);
        }
        _ => {
            // An id that passes is short and safe in a URL and an etcd key.
            for parsed in [
                MeetingId::parse(&text).map(|m| m.to_string()),
                ParticipantId::parse(&text).map(|p| p.to_string()),
                NodeId::parse(&text).map(|n| n.to_string()),
            ] {
                if let Ok(id) = parsed {
                    assert!(
                        id.len() <= 63 && !id.contains(['/', '%', '?', '#']),
                        "{id:?}"
                    );
                }
            }
        }
    }
});
