//! A client whose UDP is blocked reaches the media node through TURN over TCP: coturn on
//! loopback, the controller's `[turn]` in the join answer, an aiortc peer (the third
//! WebRTC stack) running as a user for whom the network namespace prohibits UDP.
use std::process::Command;

use harness::aiortc::{AiortcPeer, PeerSpec};
use harness::netns;
use harness::turn::Coturn;
use serde_json::json;

use crate::Api;

/// The user the blocked peer runs as (`nobody`).
const BLOCKED_UID: u32 = 65534;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In this namespace, every UDP packet of `BLOCKED_UID` is refused before routing, even
/// to loopback: the local table's rule moves behind a rule that prohibits it.
fn block_udp_of_blocked_uid() {
    ip(&["rule", "add", "pref", "100", "lookup", "local"]);
    ip(&["rule", "del", "pref", "0"]);
    let uid = format!("{BLOCKED_UID}-{BLOCKED_UID}");
    ip(&[
        "rule", "add", "pref", "10", "uidrange", &uid, "ipproto", "udp", "prohibit",
    ]);
}

/// Whether `BLOCKED_UID` can send a UDP datagram to loopback.
fn blocked_uid_can_send_udp() -> bool {
    let out = Command::new("setpriv")
        .arg(format!("--reuid={BLOCKED_UID}"))
        .arg(format!("--regid={BLOCKED_UID}"))
        .args(["--clear-groups", "--", "/usr/bin/python3", "-c"])
        .arg("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))")
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn a_client_whose_udp_is_blocked_exchanges_media_through_turn_over_tcp() {
    let here = "turn::a_client_whose_udp_is_blocked_exchanges_media_through_turn_over_tcp";
    if let netns::Place::RanInside = netns::enter(here).unwrap() {
        return;
    }
    assert!(blocked_uid_can_send_udp(), "UDP works before the block");
    block_udp_of_blocked_uid();
    assert!(
        !blocked_uid_can_send_udp(),
        "the block refuses the peer's UDP"
    );

    let rt = crate::runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let coturn = Coturn::start(&dir.path().join("coturn")).await.unwrap();
        let c = harness::Cluster::start(harness::ClusterSpec {
            controllers: 1,
            media: vec![crate::node("media-oslo-1", "oslo")],
            turn: Some(coturn.controller_config("oslo")),
            ..crate::spec()
        })
        .await
        .unwrap();
        let api = Api::new(&c);
        let base = c.controllers[0].url();
        let meeting = api.create(&base, json!({ "title": "through TURN" })).await;

        let spec = |name: &str, uid| PeerSpec {
            name: name.into(),
            publish: true,
            seconds: 8.0,
            uid,
            ..PeerSpec::default()
        };
        let behind =
            AiortcPeer::spawn(&base, &meeting, &spec("behind", Some(BLOCKED_UID))).unwrap();
        let open = AiortcPeer::spawn(&base, &meeting, &spec("open", None)).unwrap();
        let (behind, open) = (behind.report().await, open.report().await);
        let behind = behind.unwrap_or_else(|e| {
            let log = std::fs::read_to_string(coturn.log_path()).unwrap_or_default();
            panic!("the blocked peer: {e:#}\ncoturn said:\n{log}")
        });
        let open = open.unwrap();

        assert_eq!(
            behind.ice_servers, 1,
            "the join answer offers the region's TURN server"
        );
        assert_eq!(
            behind.local_candidate.as_deref(),
            Some("relay"),
            "the blocked peer's media goes through TURN"
        );
        for (who, got, from) in [
            ("the open peer", &open, &behind.participant_id),
            ("the blocked peer", &behind, &open.participant_id),
        ] {
            for kind in ["audio", "video"] {
                let frames = got
                    .received
                    .get(from)
                    .and_then(|k| k.get(kind))
                    .map_or(0, |f| f.len());
                // 8 s of 50 audio frames and 15 video frames a second; most must arrive.
                let least = if kind == "audio" { 200 } else { 60 };
                assert!(
                    frames >= least,
                    "{who} got {frames} {kind} frames of the other (at least {least} expected)"
                );
            }
        }
    });
}
