//! Host controls through the signaling protocol, with webrtc-rs bots: the waiting room,
//! the lock, muting, removal, roles and hands, who may do what, and the audit trail —
//! on one media node and across cascaded ones (the decisions live in the meeting's room
//! record in etcd, which every node of the meeting follows).
use std::time::{Duration, Instant};

use futures::SinkExt;
use harness::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};
use signaling::{Breakout, ClientMsg, CloseCode, Participant, Role, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

use crate::Api;

/// A small test clip: a tone of `hz` and a 320×240 pattern at 10 fps.
pub(crate) fn clip(hz: u32) -> bot::ClipSpec {
    bot::ClipSpec {
        tone_hz: hz,
        width: 320,
        height: 240,
        fps: 10,
        seconds: 2,
        ..bot::ClipSpec::default()
    }
}

/// A cluster from `spec` with a meeting (with a waiting room or not): the cluster, the
/// API, the controller's URL, the meeting's id and its host key.
pub(crate) async fn start(
    spec: harness::ClusterSpec,
    waiting_room: bool,
) -> (harness::Cluster, Api, String, String, String) {
    let c = harness::Cluster::start(spec).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let (meeting, key) = hosted_meeting(&api, &base, waiting_room).await;
    (c, api, base, meeting, key)
}

/// A guest joined (not waiting), publishing a tone of `hz`.
pub(crate) async fn guest(base: &str, meeting: &str, name: &str, hz: u32) -> bot::Bot {
    bot::Bot::join(
        guest_config(base, meeting, name, None, hz),
        Duration::from_secs(20),
    )
    .await
    .unwrap()
}

/// Creates a meeting (with a waiting room or not); its id and host key.
async fn hosted_meeting(api: &Api, base: &str, waiting_room: bool) -> (String, String) {
    let (st, v) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": "Board meeting", "waiting_room": waiting_room })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["waiting_room"], waiting_room, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["host_key"].as_str().unwrap().to_owned(),
    )
}

/// A bot joined as the host (with the host key), publishing a tone of `hz`.
pub(crate) async fn host(
    base: &str,
    meeting: &str,
    key: &str,
    region: Option<&str>,
    hz: u32,
) -> bot::Bot {
    let cfg = bot::BotConfig {
        host_key: Some(key.to_owned()),
        ..crate::bot_config(base, meeting, "Hanne Host", region, Some(clip(hz)))
    };
    bot::Bot::join(cfg, Duration::from_secs(20)).await.unwrap()
}

fn guest_config(
    base: &str,
    meeting: &str,
    name: &str,
    region: Option<&str>,
    hz: u32,
) -> bot::BotConfig {
    crate::bot_config(base, meeting, name, region, Some(clip(hz)))
}

/// The participant object of the newest `participant_joined`/`participant_updated` about
/// a participant named `name` that `b` was told.
fn told_about(b: &bot::Bot, name: &str) -> Option<Participant> {
    let mut news: Vec<Participant> = b
        .participants_joined()
        .into_iter()
        .chain(b.participants_updated())
        .collect();
    news.retain(|p| p.name == name);
    news.pop()
}

/// Every `breakout` that `b` was told, in order.
fn breakouts(b: &bot::Bot) -> Vec<Breakout> {
    b.pick_events(|m| match m {
        ServerMsg::Breakout(rooms) => Some(rooms.clone()),
        _ => None,
    })
}

/// Packets of `publisher`'s `kind` that `b` received so far.
fn packets(b: &bot::Bot, publisher: &str, kind: &'static str) -> u64 {
    b.received()
        .get(&(publisher.to_owned(), kind))
        .map_or(0, |c| c.packets)
}

/// Whether `publisher`'s `kinds` have stopped arriving at `b`: nothing for half a second
/// (audio comes every 20 ms, video ten frames a second), or nothing ever.
fn stopped(b: &bot::Bot, publisher: &str, kinds: &[&'static str]) -> bool {
    let got = b.received();
    kinds.iter().all(|kind| {
        got.get(&(publisher.to_owned(), *kind))
            .and_then(|c| c.last_arrival())
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(500))
    })
}

/// Whether `b` receives audio and video from `publisher` (some of each).
fn receives(b: &bot::Bot, publisher: &str) -> bool {
    packets(b, publisher, "audio") > 20 && packets(b, publisher, "video") > 5
}

/// Waits (up to `secs`) until every `(receiver, publisher)` pair in `pairs` has media.
async fn wait_media(secs: u64, what: &str, pairs: &[(&bot::Bot, &str)]) {
    eventually(Duration::from_secs(secs), what, || async {
        pairs.iter().all(|(b, p)| receives(b, p)).then_some(())
    })
    .await
    .unwrap();
}

/// The meeting's audit trail, as its host reads it.
pub(crate) async fn audit(api: &Api, base: &str, meeting: &str, host_key: &str) -> Vec<Value> {
    let (st, v) = api
        .send(
            api.http
                .get(format!("{base}/v1/meetings/{meeting}/audit"))
                .bearer_auth(host_key),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["actions"].as_array().unwrap().clone()
}

/// A join through the controller as a browser does it: its answer.
async fn join(api: &Api, base: &str, meeting: &str, name: &str) -> (StatusCode, Value) {
    api.join(base, meeting, json!({ "name": name })).await
}

/// What the node answers a signaling request with `joined`'s token, without upgrading.
async fn signal_refusal(joined: &Value) -> (StatusCode, Value) {
    let url = format!(
        "{}?token={}",
        joined["signal_url"].as_str().unwrap(),
        joined["token"].as_str().unwrap()
    );
    // Plain HTTP: the node answers before any upgrade.
    let url = url.replacen("ws://", "http://", 1);
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_participant_gets_no_media_until_admitted_and_a_denied_one_cannot_come_back() {
    let (_c, api, base, meeting, key) = start(crate::spec(), true).await;
    let h = host(&base, &meeting, &key, None, 440).await;
    assert!(h.waited.is_none(), "a host never waits");
    assert_eq!(h.welcome.role, Role::Host);

    // A guest waits: told so with the title; the host sees them waiting; no media.
    let cfg = guest_config(&base, &meeting, "Gina Guest", None, 660);
    let joining = tokio::spawn(bot::Bot::join(cfg, Duration::from_secs(40)));
    let waiting = eventually(
        Duration::from_secs(10),
        "the host sees the guest waiting",
        || async { told_about(&h, "Gina Guest").filter(|p| p.waiting) },
    )
    .await
    .unwrap();
    let guest_id = waiting.participant_id.clone();
    // Nothing may come: in a second, media (a packet every 20 ms) or a track offered
    // from the waiting guest would have shown.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!joining.is_finished(), "the guest is still waiting");
    assert_eq!(
        packets(&h, &guest_id, "audio"),
        0,
        "no media from a waiting guest"
    );
    assert!(
        h.mid_of(&guest_id, "audio").is_none(),
        "no track of a waiting guest offered"
    );

    // Admitted: media flows both ways.
    h.send(ClientMsg::Admit {
        participant_id: guest_id.clone(),
    })
    .unwrap();
    let g = joining.await.unwrap().unwrap();
    let waited = g.waited.as_ref().expect("the guest was told it waits");
    assert_eq!(waited.title, "Board meeting");
    assert_eq!(g.participant_id, guest_id);
    wait_media(
        15,
        "media both ways after admission",
        &[(&h, &g.participant_id), (&g, &h.participant_id)],
    )
    .await;
    assert!(
        told_about(&h, "Gina Guest").is_some_and(|p| !p.waiting),
        "the host's list shows the guest in"
    );

    // Another waits (a raw session, to keep its token) and is turned away.
    let (st, joined) = join(&api, &base, &meeting, "Dag Denied").await;
    assert_eq!(st, StatusCode::OK, "{joined}");
    let (mut ws, first) = {
        let url = format!(
            "{}?token={}",
            joined["signal_url"].as_str().unwrap(),
            joined["token"].as_str().unwrap()
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let first = crate::next_msg(&mut ws).await;
        (ws, first)
    };
    assert!(matches!(first, ServerMsg::Waiting { .. }), "{first:?}");
    // A waiting participant can do nothing but wait.
    let chat = ClientMsg::Chat {
        text: "let me in".into(),
    };
    ws.send(Message::Text(serde_json::to_string(&chat).unwrap().into()))
        .await
        .unwrap();
    let refused = crate::next_msg(&mut ws).await;
    let ServerMsg::Error { in_reply_to, .. } = &refused else {
        panic!("expected an error, got {refused:?}");
    };
    assert_eq!(in_reply_to, "chat");
    let denied_id = joined["participant_id"].as_str().unwrap();
    eventually(
        Duration::from_secs(10),
        "the host sees Dag waiting",
        || async { told_about(&h, "Dag Denied").filter(|p| p.waiting) },
    )
    .await
    .unwrap();
    h.send(ClientMsg::Deny {
        participant_id: denied_id.to_owned(),
    })
    .unwrap();
    let closed = crate::next_msg(&mut ws).await;
    let ServerMsg::Closed { code, reason } = &closed else {
        panic!("expected closed, got {closed:?}");
    };
    assert_eq!(*code, CloseCode::Denied, "{closed:?}");
    assert!(reason.contains("did not let you in"), "{closed:?}");
    let (st, body) = signal_refusal(&joined).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "denied");

    // The audit says who did what to whom.
    let trail = audit(&api, &base, &meeting, &key).await;
    let said: Vec<(String, String, String)> = trail
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_owned(),
                a["target"].as_str().unwrap_or_default().to_owned(),
                a["by_role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        said,
        vec![
            ("admit".into(), guest_id.clone(), "host".into()),
            ("deny".into(), denied_id.to_owned(), "host".into())
        ]
    );
    assert_eq!(trail[0]["by_name"], "Hanne Host");
    assert!(trail[0]["unix_ms"].as_i64().unwrap() > 0);
    // Nobody else reads it.
    let (st, _) = api
        .send(
            api.http
                .get(format!("{base}/v1/meetings/{meeting}/audit"))
                .bearer_auth("not-the-host-key"),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_locked_meeting_refuses_new_joins_with_403_and_unlocking_lets_the_next_in() {
    let (_c, api, base, meeting, key) = start(crate::spec(), false).await;
    let h = host(&base, &meeting, &key, None, 440).await;
    let g = guest(&base, &meeting, "Inside", 660).await;
    h.send(ClientMsg::Lock { locked: true }).unwrap();
    let (st, body) = eventually(
        Duration::from_secs(10),
        "joins refused once locked",
        || async {
            let (st, body) = join(&api, &base, &meeting, "Late").await;
            (st == StatusCode::FORBIDDEN).then_some((st, body))
        },
    )
    .await
    .unwrap();
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "meeting_locked", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("locked by its host")
    );
    // A host still gets in: with the host key, or as an operator.
    for bearer in [None, Some(api.key.as_str())] {
        let mut req = api.http.post(format!("{base}/v1/meetings/{meeting}/join"));
        let mut body = json!({ "name": "Another host" });
        match bearer {
            Some(k) => req = req.bearer_auth(k),
            None => body["host_key"] = key.clone().into(),
        }
        let (st, v) = api.send(req.json(&body)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["role"], "host");
    }
    // Everyone is told; whoever was in stays, with media.
    eventually(
        Duration::from_secs(5),
        "the guest is told it is locked",
        || async { g.rooms().iter().any(|r| r.locked).then_some(()) },
    )
    .await
    .unwrap();
    g.clear_received();
    wait_media(
        10,
        "media goes on after the lock",
        &[(&g, &h.participant_id)],
    )
    .await;
    let (st, v) = api
        .send(
            api.http
                .get(format!("{base}/v1/meetings/{meeting}"))
                .bearer_auth(&api.key),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["locked"], true, "{v}");

    h.send(ClientMsg::Lock { locked: false }).unwrap();
    eventually(
        Duration::from_secs(10),
        "a join succeeds once unlocked",
        || async {
            let (st, _) = join(&api, &base, &meeting, "Next").await;
            (st == StatusCode::OK).then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attendees_host_messages_get_errors_and_change_nothing_and_a_forged_role_is_refused() {
    let (_c, api, base, meeting, key) = start(crate::spec(), false).await;
    let h = host(&base, &meeting, &key, None, 440).await;
    let a = guest(&base, &meeting, "Ada Attendee", 660).await;
    assert_eq!(a.welcome.role, Role::Attendee);
    let hid = h.participant_id.as_str();
    let attempts = [
        ClientMsg::MuteAll { allow_unmute: None },
        ClientMsg::Remove {
            participant_id: hid.into(),
        },
        ClientMsg::Admit {
            participant_id: hid.into(),
        },
        ClientMsg::AdmitAll {},
        ClientMsg::Deny {
            participant_id: hid.into(),
        },
        ClientMsg::Lock { locked: true },
        ClientMsg::MuteParticipant {
            participant_id: hid.into(),
            audio: true,
            video: false,
        },
        ClientMsg::SetRole {
            participant_id: a.participant_id.clone(),
            role: Role::Host,
        },
        ClientMsg::Rename {
            participant_id: hid.into(),
            name: "Nobody".into(),
        },
        ClientMsg::EndMeeting {},
        ClientMsg::LowerHand {
            participant_id: Some(hid.into()),
        },
    ];
    for m in &attempts {
        a.send(m.clone()).unwrap();
    }
    for m in &attempts {
        let kind = m.kind();
        let e = eventually(Duration::from_secs(5), "an error", || async {
            a.errors(kind).pop()
        })
        .await
        .unwrap();
        assert!(e.contains("only hosts and co-hosts"), "{kind}: {e}");
    }
    // Nothing changed: no action recorded, the meeting open, the host in and heard.
    assert!(audit(&api, &base, &meeting, &key).await.is_empty());
    assert_eq!(
        join(&api, &base, &meeting, "Still open").await.0,
        StatusCode::OK
    );
    a.clear_received();
    wait_media(10, "the host is still heard", &[(&a, hid)]).await;
    assert!(a.closed().is_none() && h.closed().is_none());

    // A token whose role was rewritten to host fails its signature.
    let (st, joined) = join(&api, &base, &meeting, "Forger").await;
    assert_eq!(st, StatusCode::OK);
    let token = joined["token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["role"], "attendee");
    claims["role"] = "host".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let mut forged_join = joined.clone();
    forged_join["token"] = forged.into();
    let (st, body) = signal_refusal(&forged_join).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mute_all_stops_everyone_elses_audio_and_with_unmute_disallowed_an_unmute_is_refused() {
    let (_c, _api, base, meeting, key) = start(crate::spec(), false).await;
    let h = host(&base, &meeting, &key, None, 440).await;
    let mut guests = Vec::new();
    for (i, hz) in [550, 660].into_iter().enumerate() {
        guests.push(guest(&base, &meeting, &format!("Guest {i}"), hz).await);
    }
    eventually(
        Duration::from_secs(15),
        "everyone hears everyone",
        || async {
            (guests
                .iter()
                .all(|g| receives(&h, &g.participant_id) && receives(g, &h.participant_id))
                && receives(&guests[0], &guests[1].participant_id))
            .then_some(())
        },
    )
    .await
    .unwrap();

    h.send(ClientMsg::MuteAll {
        allow_unmute: Some(false),
    })
    .unwrap();
    for g in &guests {
        eventually(
            Duration::from_secs(5),
            "the guest is told it was muted",
            || async {
                g.events("muted_by_host").pop().filter(|m| {
                    matches!(
                        m,
                        ServerMsg::MutedByHost {
                            audio_muted: true,
                            ..
                        }
                    )
                })
            },
        )
        .await
        .unwrap();
    }
    // Everyone else's outgoing audio stops at every receiver; the host's goes on. What
    // was on its way when the mute came arrives first.
    let quiet = eventually(
        Duration::from_secs(5),
        "the muted guests' audio to stop arriving",
        || async {
            (guests
                .iter()
                .all(|g| stopped(&h, &g.participant_id, &["audio"]))
                && stopped(&guests[1], &guests[0].participant_id, &["audio"]))
            .then_some(())
        },
    )
    .await;
    if let Err(e) = quiet {
        eprintln!("{e}");
    }
    let before: Vec<u64> = guests
        .iter()
        .map(|g| packets(&h, &g.participant_id, "audio"))
        .collect();
    let cross = packets(&guests[1], &guests[0].participant_id, "audio");
    let host_heard = packets(&guests[0], &h.participant_id, "audio");
    // Two seconds are a hundred audio packets: none may come from the muted guests, and
    // the host's go on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: Vec<u64> = guests
        .iter()
        .map(|g| packets(&h, &g.participant_id, "audio"))
        .collect();
    assert_eq!(before, after, "muted guests' audio stopped at the host");
    assert_eq!(
        cross,
        packets(&guests[1], &guests[0].participant_id, "audio")
    );
    assert!(
        packets(&guests[0], &h.participant_id, "audio") > host_heard + 50,
        "the host is not muted"
    );
    // Video goes on; everyone sees the guests muted.
    assert!(packets(&h, &guests[0].participant_id, "video") > 0);
    let gid = guests[0].participant_id.as_str();
    eventually(
        Duration::from_secs(5),
        "the others see guest 0 muted",
        || async {
            guests[1]
                .events("mute")
                .iter()
                .any(|m| {
                    matches!(m, ServerMsg::Mute { participant_id, audio_muted: true, .. }
                        if participant_id == gid)
                })
                .then_some(())
        },
    )
    .await
    .unwrap();

    // Unmuting is refused while the host disallows it.
    guests[0]
        .send(ClientMsg::Mute {
            audio_muted: false,
            video_muted: false,
        })
        .unwrap();
    let e = eventually(Duration::from_secs(5), "the unmute refused", || async {
        guests[0].errors("mute").pop()
    })
    .await
    .unwrap();
    assert!(e.contains("does not allow"), "{e}");
    let still = packets(&h, gid, "audio");
    // A second: fifty packets, had the refused unmute let the guest's audio through.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(still, packets(&h, gid, "audio"), "still muted");

    // Allowed again, and asked: the guest unmutes and is heard.
    h.send(ClientMsg::AllowUnmute { allowed: true }).unwrap();
    h.send(ClientMsg::AskUnmute {
        participant_id: gid.into(),
    })
    .unwrap();
    eventually(
        Duration::from_secs(5),
        "the guest is asked to unmute",
        || async { guests[0].events("unmute_request").pop() },
    )
    .await
    .unwrap();
    guests[0]
        .send(ClientMsg::Mute {
            audio_muted: false,
            video_muted: false,
        })
        .unwrap();
    let unmuted = packets(&h, gid, "audio");
    eventually(
        Duration::from_secs(5),
        "the guest is heard again",
        || async { (packets(&h, gid, "audio") > unmuted + 20).then_some(()) },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_participants_media_stops_within_a_second_and_their_token_is_refused() {
    let (_c, api, base, meeting, key) = start(crate::spec(), false).await;
    let h = host(&base, &meeting, &key, None, 440).await;
    let witness = guest(&base, &meeting, "Witness", 550).await;
    let r = guest(&base, &meeting, "Rune Removed", 660).await;
    wait_media(
        15,
        "the others get Rune's media",
        &[(&h, &r.participant_id), (&witness, &r.participant_id)],
    )
    .await;

    h.send(ClientMsg::Remove {
        participant_id: r.participant_id.clone(),
    })
    .unwrap();
    let removed_at = Instant::now();
    let closed = eventually(Duration::from_secs(5), "Rune is told", || async {
        r.closed()
    })
    .await
    .unwrap();
    assert_eq!(closed.0, CloseCode::Removed, "{closed:?}");
    assert!(closed.1.contains("removed you"), "{closed:?}");
    // Past the one-second bound, with a margin: media forwarded later would have come.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for b in [&h, &witness] {
        for kind in ["audio", "video"] {
            let last = b
                .received()
                .get(&(r.participant_id.clone(), kind))
                .and_then(|c| c.last_arrival())
                .expect("media arrived before");
            let after = last.saturating_duration_since(removed_at);
            assert!(
                after < Duration::from_secs(1),
                "{kind} still arrived {after:?} after the removal"
            );
        }
    }
    assert!(
        witness.participants_left().contains(&r.participant_id),
        "the others see Rune leave"
    );
    // The same identity cannot come back: Rune's token is refused.
    let retry = json!({ "signal_url": r.signal_url, "token": r.token });
    let (st, body) = signal_refusal(&retry).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "removed");
    let trail = audit(&api, &base, &meeting, &key).await;
    assert!(
        trail
            .iter()
            .any(|a| a["action"] == "remove" && a["target"] == r.participant_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hands_roles_and_names_show_in_every_list_and_a_leaving_host_hands_over() {
    let (_c, api, base, meeting, key) = start(crate::spec(), false).await;
    let h = host(&base, &meeting, &key, None, 440).await;
    let first = guest(&base, &meeting, "Early", 550).await;
    let co = guest(&base, &meeting, "Cora", 660).await;
    // Hands up, in order; the host lowers one.
    first.send(ClientMsg::RaiseHand {}).unwrap();
    eventually(
        Duration::from_secs(5),
        "Early's hand seen by the host",
        || async { told_about(&h, "Early")?.hand_raised_unix_ms },
    )
    .await
    .unwrap();
    co.send(ClientMsg::RaiseHand {}).unwrap();
    let raised = eventually(
        Duration::from_secs(5),
        "both hands seen by the host",
        || async {
            let a = told_about(&h, "Early")?.hand_raised_unix_ms?;
            let b = told_about(&h, "Cora")?.hand_raised_unix_ms?;
            Some((a, b))
        },
    )
    .await
    .unwrap();
    assert!(raised.0 <= raised.1, "raised in order: {raised:?}");
    h.send(ClientMsg::LowerHand {
        participant_id: Some(first.participant_id.clone()),
    })
    .unwrap();
    eventually(
        Duration::from_secs(5),
        "Early's hand is down for everyone",
        || async { told_about(&co, "Early").filter(|p| p.hand_raised_unix_ms.is_none()) },
    )
    .await
    .unwrap();
    // A co-host, a new name.
    h.send(ClientMsg::SetRole {
        participant_id: co.participant_id.clone(),
        role: Role::CoHost,
    })
    .unwrap();
    h.send(ClientMsg::Rename {
        participant_id: first.participant_id.clone(),
        name: "Early Bird".into(),
    })
    .unwrap();
    eventually(
        Duration::from_secs(5),
        "the new role and name everywhere",
        || async {
            let me = told_about(&co, "Cora")?;
            let renamed = told_about(&h, "Early Bird")?;
            (me.role == Role::CoHost && renamed.participant_id == first.participant_id)
                .then_some(())
        },
    )
    .await
    .unwrap();
    // The co-host may now lock; the host leaves and Cora, the co-host, becomes host.
    co.send(ClientMsg::Lock { locked: true }).unwrap();
    eventually(Duration::from_secs(5), "locked by the co-host", || async {
        first.rooms().iter().any(|r| r.locked).then_some(())
    })
    .await
    .unwrap();
    h.leave().await;
    eventually(Duration::from_secs(5), "Cora is the host", || async {
        told_about(&first, "Cora").filter(|p| p.role == Role::Host)
    })
    .await
    .unwrap();
    let trail = audit(&api, &base, &meeting, &key).await;
    let actions: Vec<&str> = trail
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["lower_hand", "set_role", "rename", "lock", "set_role"]
    );
    assert_eq!(trail[3]["by_role"], "co-host");
    assert_eq!(trail[4]["detail"], "host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_on_one_node_admits_and_mutes_participants_waiting_on_another() {
    let (_c, api, base, meeting, key) = start(crate::oslo_and_bergen(), true).await;
    let h = host(&base, &meeting, &key, Some("oslo"), 440).await;
    assert_eq!(h.node_id, "media-oslo-1");
    let joining = tokio::spawn(bot::Bot::join(
        guest_config(&base, &meeting, "Bergen Guest", Some("bergen"), 660),
        Duration::from_secs(40),
    ));
    let waiting = eventually(
        Duration::from_secs(15),
        "the host sees the far guest waiting",
        || async { told_about(&h, "Bergen Guest").filter(|p| p.waiting) },
    )
    .await
    .unwrap();
    h.send(ClientMsg::Admit {
        participant_id: waiting.participant_id,
    })
    .unwrap();
    let g = joining.await.unwrap().unwrap();
    assert_eq!(g.node_id, "media-bergen-1");
    wait_media(
        20,
        "media both ways across the nodes",
        &[(&h, &g.participant_id), (&g, &h.participant_id)],
    )
    .await;
    h.send(ClientMsg::MuteAll { allow_unmute: None }).unwrap();
    eventually(Duration::from_secs(5), "the far guest is muted", || async {
        g.events("muted_by_host").pop()
    })
    .await
    .unwrap();
    let quiet = eventually(
        Duration::from_secs(5),
        "the far guest's audio to stop arriving",
        || async { stopped(&h, &g.participant_id, &["audio"]).then_some(()) },
    )
    .await;
    if let Err(e) = quiet {
        eprintln!("{e}");
    }
    let before = packets(&h, &g.participant_id, "audio");
    // Two seconds: a hundred packets, had the far guest's audio gone on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        before,
        packets(&h, &g.participant_id, "audio"),
        "the far guest's audio stopped"
    );
    h.send(ClientMsg::EndMeeting {}).unwrap();
    for b in [&h, &g] {
        let closed = eventually(
            Duration::from_secs(5),
            "everyone is told the meeting ended",
            || async { b.closed() },
        )
        .await
        .unwrap();
        assert_eq!(closed.0, CloseCode::Ended, "{closed:?}");
        assert!(closed.1.contains("ended the meeting"), "{closed:?}");
    }
    let (st, body) = join(&api, &base, &meeting, "Too late").await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    // The leader ends it as an operator's end would: the API shows it ended.
    eventually(
        Duration::from_secs(10),
        "the meeting stored as ended",
        || async {
            let (st, v) = api
                .send(
                    api.http
                        .get(format!("{base}/v1/meetings/{meeting}"))
                        .bearer_auth(&api.key),
                )
                .await;
            (st == StatusCode::OK && v["state"] == "ended").then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn breakout_rooms_hear_only_themselves_get_the_broadcast_and_all_return_on_close() {
    let (_c, api, base, meeting, key) = start(crate::spec(), false).await;
    let tones = [440, 550, 660, 880];
    let mut bots = vec![host(&base, &meeting, &key, None, tones[0]).await];
    for (i, hz) in tones.iter().enumerate().skip(1) {
        bots.push(guest(&base, &meeting, &format!("Guest {i}"), *hz).await);
    }
    let ids: Vec<String> = bots.iter().map(|b| b.participant_id.clone()).collect();
    let hears_all = || async {
        bots.iter()
            .all(|b| {
                ids.iter()
                    .filter(|o| **o != b.participant_id)
                    .all(|o| packets(b, o, "audio") > 25)
            })
            .then_some(())
    };
    eventually(
        Duration::from_secs(20),
        "everyone hears everyone",
        hears_all,
    )
    .await
    .unwrap();

    // Rooms 1 (the host and guest 1) and 2 (guests 2 and 3), opened.
    let h = &bots[0];
    h.send(ClientMsg::BreakoutCreate { rooms: 2 }).unwrap();
    for (i, id) in ids.iter().enumerate() {
        h.send(ClientMsg::BreakoutAssign {
            participant_id: id.clone(),
            room: (1 + i / 2) as u32,
        })
        .unwrap();
    }
    h.send(ClientMsg::BreakoutOpen {}).unwrap();
    for (i, b) in bots.iter().enumerate() {
        eventually(Duration::from_secs(5), "each is told its room", || async {
            breakouts(b)
                .iter()
                .any(|m| m.open && m.my_room as usize == 1 + i / 2)
                .then_some(())
        })
        .await
        .unwrap();
    }
    // What the other room sent before the rooms opened arrives first; then count afresh.
    let apart = eventually(
        Duration::from_secs(5),
        "the other room's media to stop arriving",
        || async {
            bots.iter()
                .enumerate()
                .all(|(i, b)| {
                    (0..4)
                        .filter(|o| o / 2 != i / 2)
                        .all(|o| stopped(b, &ids[o], &["audio", "video"]))
                })
                .then_some(())
        },
    )
    .await;
    if let Err(e) = apart {
        eprintln!("{e}");
    }
    bots.iter().for_each(bot::Bot::clear_received);
    // Three seconds counted: the room mate's audio (a packet every 20 ms) arrives, none
    // of the other room's media may.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, b) in bots.iter().enumerate() {
        let mate = i ^ 1;
        let got = b.received();
        let audio = got
            .get(&(ids[mate].clone(), "audio"))
            .expect("the room mate is heard");
        assert!(
            audio.packets > 50,
            "{i} hears {mate}: {} packets",
            audio.packets
        );
        let hz = bot::media::tone_hz(&audio.audio).unwrap();
        assert!(
            hz.abs_diff(tones[mate]) < 20,
            "{i} hears {hz} Hz from {mate}, who plays {}",
            tones[mate]
        );
        for other in (0..4).filter(|o| o / 2 != i / 2) {
            assert_eq!(
                packets(b, &ids[other], "audio"),
                0,
                "{i} hears {other} of the other room"
            );
            assert_eq!(
                packets(b, &ids[other], "video"),
                0,
                "{i} sees {other} of the other room"
            );
        }
    }
    // Chat stays in its room; the host's broadcast reaches both.
    bots[2]
        .send(ClientMsg::Chat {
            text: "only room 2".into(),
        })
        .unwrap();
    h.send(ClientMsg::BreakoutBroadcast {
        text: "Five minutes left".into(),
    })
    .unwrap();
    for b in &bots {
        eventually(Duration::from_secs(5), "the broadcast", || async {
            b.events("broadcast")
                .iter()
                .any(|m| {
                    matches!(m, ServerMsg::Broadcast { text, .. } if text == "Five minutes left")
                })
                .then_some(())
        })
        .await
        .unwrap();
    }
    let chat_seen = |b: &bot::Bot| b.chat_texts().iter().any(|t| t == "only room 2");
    assert!(chat_seen(&bots[3]), "room 2's chat reaches room 2");
    assert!(
        !chat_seen(&bots[0]) && !chat_seen(&bots[1]),
        "room 2's chat stays there"
    );

    // Closing, with a countdown: everyone is back in the main room and hears everyone.
    h.send(ClientMsg::BreakoutClose { seconds: Some(2) })
        .unwrap();
    for b in &bots {
        eventually(Duration::from_secs(5), "the countdown", || async {
            breakouts(b)
                .iter()
                .any(|m| m.closes_unix_ms.is_some())
                .then_some(())
        })
        .await
        .unwrap();
    }
    for b in &bots {
        eventually(Duration::from_secs(6), "back in the main room", || async {
            breakouts(b)
                .last()
                .filter(|m| !m.open && m.my_room == 0)
                .map(|_| ())
        })
        .await
        .unwrap();
    }
    bots.iter().for_each(bot::Bot::clear_received);
    eventually(
        Duration::from_secs(10),
        "everyone hears everyone again",
        hears_all,
    )
    .await
    .unwrap();
    let trail = audit(&api, &base, &meeting, &key).await;
    assert!(trail.iter().any(|a| a["action"] == "breakout_open"));
    assert!(
        trail
            .iter()
            .any(|a| a["action"] == "breakout_close" && a["detail"] == "in 2 s")
    );
}
