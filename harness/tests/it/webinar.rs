//! Webinars with webrtc-rs bots on two cascaded media nodes: panelists publish,
//! attendees only receive (their offers that send are refused), attendees do not see each
//! other, and a host can make an attendee a panelist, whom everyone then hears.
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use harness::eventually;
use reqwest::StatusCode;
use serde_json::json;
use signaling::{ClientMsg, Role};

use crate::Api;
use crate::cascade::receives;
use crate::hosts::clip;

const ATTENDEES: usize = 30;

/// A webrtc-rs bot in `meeting` from `region` with the host or panelist key (or none:
/// an attendee), publishing a tone of `hz` or only listening.
async fn bot(
    base: &str,
    meeting: &str,
    name: &str,
    region: &str,
    keys: (Option<&str>, Option<&str>),
    hz: Option<u32>,
) -> anyhow::Result<bot::Bot> {
    let cfg = bot::BotConfig {
        host_key: keys.0.map(str::to_owned),
        panelist_key: keys.1.map(str::to_owned),
        ..crate::bot_config(base, meeting, name, Some(region), hz.map(clip))
    };
    bot::Bot::join(cfg, Duration::from_secs(30)).await
}

/// The names `b` was shown: the welcome's list and every participant it was told
/// joined or changed.
fn names_shown(b: &bot::Bot) -> BTreeSet<String> {
    let listed = b.welcome.participants.clone();
    let told = b
        .participants_joined()
        .into_iter()
        .chain(b.participants_updated());
    listed.into_iter().chain(told).map(|p| p.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webinar_attendees_get_the_panel_publish_nothing_see_only_the_panel_and_hear_one_made_panelist()
 {
    let c = harness::Cluster::start(crate::oslo_and_bergen())
        .await
        .unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let (st, v) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": "Seminar", "kind": "webinar", "waiting_room": false })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["kind"], "webinar", "{v}");
    let meeting = v["id"].as_str().unwrap().to_owned();
    let host_key = v["host_key"].as_str().unwrap().to_owned();
    let panelist_key = v["panelist_key"].as_str().unwrap().to_owned();

    // A wrong panelist key is refused; a meeting's kind must be one we know.
    let (st, e) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings/{meeting}/join"))
                .json(&json!({ "name": "Mallory", "panelist_key": "not-the-key" })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    let (st, e) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": "Seminar", "kind": "lecture" })),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["message"].as_str().unwrap().contains("webinar"), "{e}");

    let host = bot(
        &base,
        &meeting,
        "Hanne Host",
        "oslo",
        (Some(&host_key), None),
        None,
    )
    .await
    .unwrap();
    let panel = [
        bot(
            &base,
            &meeting,
            "Petter Panel",
            "oslo",
            (None, Some(&panelist_key)),
            Some(440),
        )
        .await
        .unwrap(),
        bot(
            &base,
            &meeting,
            "Berit Panel",
            "bergen",
            (None, Some(&panelist_key)),
            Some(550),
        )
        .await
        .unwrap(),
    ];
    for p in &panel {
        assert_eq!(p.welcome.role, Role::Panelist, "{:?}", p.welcome);
    }
    assert_eq!(panel[1].node_id, "media-bergen-1");
    // Thirty attendees, a third of them on the Bergen node, joining ten at a time.
    let mut attendees = Vec::new();
    for batch in 0..3 {
        let joins = (0..ATTENDEES / 3).map(|i| {
            let n = batch * ATTENDEES / 3 + i;
            let region = if n % 3 == 2 { "bergen" } else { "oslo" };
            let (base, meeting) = (base.clone(), meeting.clone());
            async move {
                bot(
                    &base,
                    &meeting,
                    &format!("Attendee {n}"),
                    region,
                    (None, None),
                    None,
                )
                .await
            }
        });
        for b in futures::future::join_all(joins).await {
            let b = b.unwrap();
            assert_eq!(b.welcome.role, Role::Attendee, "{:?}", b.welcome);
            attendees.push(b);
        }
    }

    // Every attendee gets both panelists' audio and video, on either node.
    let panel_ids: BTreeSet<String> = panel.iter().map(|p| p.participant_id.clone()).collect();
    eventually(
        Duration::from_secs(30),
        "every attendee gets the panel",
        || async {
            attendees
                .iter()
                .all(|a| panel_ids.iter().all(|p| receives(a, p)))
                .then_some(())
        },
    )
    .await
    .unwrap();

    // An attendee's offer that sends is refused, and nobody gets media from an attendee.
    let refused = attendees[0]
        .publish(
            Arc::new(bot::media::encode(&clip(660)).unwrap()),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("watch and listen only"), "{refused}");
    // Nothing may come: in a second, media from the attendee (a packet every 20 ms)
    // would have reached the others.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for b in attendees.iter().chain(panel.iter()).chain([&host]) {
        let from: BTreeSet<String> = b.received().keys().map(|(p, _)| p.clone()).collect();
        assert!(
            from.is_subset(&panel_ids),
            "{} got media from {from:?}",
            b.participant_id
        );
    }

    // Attendees are shown the panel and the host, never each other; the host sees all.
    let panel_names: BTreeSet<String> = ["Hanne Host", "Petter Panel", "Berit Panel"]
        .map(str::to_owned)
        .into();
    for (n, a) in attendees.iter().enumerate() {
        let mut allowed = panel_names.clone();
        allowed.insert(format!("Attendee {n}"));
        let shown = names_shown(a);
        assert!(
            shown.is_subset(&allowed),
            "attendee {n} was shown {shown:?}"
        );
        assert!(
            panel_names.is_subset(&shown),
            "attendee {n} was shown {shown:?}"
        );
    }
    let everyone = eventually(
        Duration::from_secs(10),
        "the host sees every attendee",
        || async {
            let shown = names_shown(&host);
            ((0..ATTENDEES).all(|n| shown.contains(&format!("Attendee {n}")))).then_some(shown)
        },
    )
    .await
    .unwrap();
    assert!(
        everyone.is_superset(
            &panel_names
                .iter()
                .filter(|n| *n != "Hanne Host")
                .cloned()
                .collect()
        )
    );

    // What an attendee writes in chat reaches the panel, not the other attendees, until
    // a host lets it reach everyone.
    let chats = |b: &bot::Bot, text: &str| b.chat_texts().iter().any(|c| c == text);
    let chat = |text: &str| ClientMsg::Chat { text: text.into() };
    attendees[0].send(chat("question from the floor")).unwrap();
    eventually(
        Duration::from_secs(10),
        "the panel gets an attendee's chat",
        || async {
            (chats(&panel[1], "question from the floor") && chats(&host, "question from the floor"))
                .then_some(())
        },
    )
    .await
    .unwrap();
    // The panel has it; half a second more, ample for a chat on its way to the other
    // attendees to have come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !chats(&attendees[1], "question from the floor")
            && !chats(&attendees[2], "question from the floor")
    );
    host.send(ClientMsg::AttendeeChat { everyone: true })
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the attendees are told chat is open",
        || async {
            attendees[2]
                .rooms()
                .iter()
                .any(|r| r.attendee_chat_everyone)
                .then_some(())
        },
    )
    .await
    .unwrap();
    attendees[0].send(chat("hello everyone")).unwrap();
    eventually(
        Duration::from_secs(10),
        "attendees on both nodes get it",
        || async {
            (chats(&attendees[1], "hello everyone") && chats(&attendees[2], "hello everyone"))
                .then_some(())
        },
    )
    .await
    .unwrap();

    // The host makes attendee 5 (Bergen) a panelist: they publish, and the others hear
    // and see them, on both nodes.
    let promoted = &mut attendees[5];
    assert_eq!(promoted.node_id, "media-bergen-1");
    host.send(ClientMsg::SetRole {
        participant_id: promoted.participant_id.clone(),
        role: Role::Panelist,
    })
    .unwrap();
    let id = promoted.participant_id.clone();
    eventually(
        Duration::from_secs(10),
        "the promoted attendee is told",
        || async {
            promoted
                .participants_updated()
                .into_iter()
                .find(|p| p.participant_id == id && p.role == Role::Panelist)
        },
    )
    .await
    .unwrap();
    promoted
        .publish(
            Arc::new(bot::media::encode(&clip(770)).unwrap()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let listeners = [
        &attendees[0],
        &attendees[2],
        &attendees[29],
        &panel[0],
        &host,
    ];
    let heard = eventually(
        Duration::from_secs(30),
        "everyone hears the new panelist",
        || async { listeners.iter().all(|b| receives(b, &id)).then_some(()) },
    )
    .await;
    if let Err(e) = heard {
        eprintln!("promoted's errors: {:?}", attendees[5].events("error"));
        eprintln!("promoted's sent: {:?}", attendees[5].sent());
        for b in &listeners {
            let got = b.received();
            eprintln!(
                "{}: mid {:?} audio {:?} video {:?}",
                b.participant_id,
                b.mid_of(&id, "audio"),
                got.get(&(id.clone(), "audio"))
                    .map(|c| (c.packets, c.audio.len())),
                got.get(&(id.clone(), "video"))
                    .map(|c| (c.packets, c.frames, c.keyframes)),
            );
        }
        panic!("{e}");
    }
    for b in &listeners[..3] {
        assert!(
            names_shown(b).contains("Attendee 5"),
            "{} does not see the new panelist",
            b.participant_id
        );
    }
    for b in attendees {
        b.leave().await;
    }
}
