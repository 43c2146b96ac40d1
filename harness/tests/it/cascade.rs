//! One meeting across media nodes (cascading): participants placed on different nodes
//! see, hear and talk to each other through the relay links between the nodes.
use std::time::Duration;

use harness::{Cluster, ClusterSpec, eventually, metric_sum};
use serde_json::json;
use signaling::{ClientMsg, ServerMsg};

use crate::{Api, metrics_text, node};

/// Media nodes in oslo, stockholm and helsinki (and more given), each region the
/// others' neighbour.
fn regions_spec(extra: &[(&str, &str)]) -> ClusterSpec {
    let mut media = vec![
        node("media-oslo-1", "oslo"),
        node("media-stockholm-1", "stockholm"),
        node("media-helsinki-1", "helsinki"),
    ];
    media.extend(extra.iter().map(|(id, r)| node(id, r)));
    ClusterSpec {
        media,
        regions: vec![
            ("oslo".into(), vec!["stockholm".into(), "helsinki".into()]),
            ("stockholm".into(), vec!["oslo".into(), "helsinki".into()]),
            ("helsinki".into(), vec!["stockholm".into(), "oslo".into()]),
        ],
        ..crate::spec()
    }
}

/// A small clip: a tone of `hz` and a 160×120 pattern at 10 fps.
pub(crate) fn clip(hz: u32) -> bot::ClipSpec {
    bot::ClipSpec {
        tone_hz: hz,
        width: 160,
        height: 120,
        fps: 10,
        video_kbps: 150,
        ..bot::ClipSpec::default()
    }
}

async fn bot_in(base: &str, meeting: &str, name: &str, region: &str, hz: Option<u32>) -> bot::Bot {
    crate::join_bot(base, meeting, name, Some(region), hz.map(clip)).await
}

/// Whether `b` gets audio and video of `publisher`: some seconds of audio, and video
/// that started on a keyframe.
pub(crate) fn receives(b: &bot::Bot, publisher: &str) -> bool {
    let got = b.received();
    let audio = got.get(&(publisher.to_owned(), "audio"));
    let video = got.get(&(publisher.to_owned(), "video"));
    audio.is_some_and(|a| a.audio.len() >= bot::AUDIO_KEPT)
        && video.is_some_and(|v| v.keyframes >= 1 && v.frames >= 20)
}

/// `b` kept receiving `publisher` since its counts were cleared: audio (a packet every
/// 20 ms) with no gap over 200 ms and nothing lost, video (10 frames a second, a packet
/// each) with no gap over 300 ms (a late frame on a loaded machine is not a stall).
fn assert_kept_flowing(b: &bot::Bot, publisher: &str, who: &str) {
    let got = b.received();
    let audio = &got[&(publisher.to_owned(), "audio")];
    let video = &got[&(publisher.to_owned(), "video")];
    eprintln!(
        "from {who}: audio gap {:.0} ms, {} lost; video gap {:.0} ms, {} lost",
        audio.max_gap_ms, audio.lost, video.max_gap_ms, video.lost
    );
    assert!(
        audio.max_gap_ms <= 200.0 && audio.lost == 0,
        "audio from {who}: gap {} ms, {} lost",
        audio.max_gap_ms,
        audio.lost
    );
    assert!(
        video.max_gap_ms <= 300.0,
        "video from {who}: gap {} ms",
        video.max_gap_ms
    );
}

fn node_url(c: &Cluster, id: &str) -> String {
    let n = c.media.iter().find(|n| n.spec.id == id).unwrap();
    format!("http://127.0.0.1:{}", n.http)
}

/// The ids of the participants `b` knows of: the welcome's list and those who joined
/// since, minus those who left.
fn known(b: &bot::Bot) -> Vec<String> {
    let mut ids: Vec<String> = b
        .welcome
        .participants
        .iter()
        .cloned()
        .chain(b.participants_joined())
        .map(|p| p.participant_id)
        .collect();
    let left = b.participants_left();
    ids.retain(|id| !left.contains(id));
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn participants_in_three_regions_hear_see_and_chat_with_each_other_in_one_meeting() {
    let c = Cluster::start(regions_spec(&[])).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "nordic" })).await;
    let tones = [("oslo", 440), ("stockholm", 660), ("helsinki", 880)];
    let mut bots = Vec::new();
    for (region, hz) in tones {
        let b = bot_in(&base, &meeting, &format!("In {region}"), region, Some(hz)).await;
        assert_eq!(
            b.node_id,
            format!("media-{region}-1"),
            "placed in its region"
        );
        bots.push((region, hz, b));
    }
    eventually(
        Duration::from_secs(40),
        "every bot receives both others",
        || async {
            bots.iter()
                .all(|(_, _, b)| {
                    bots.iter()
                        .filter(|(_, _, o)| o.participant_id != b.participant_id)
                        .all(|(_, _, o)| receives(b, &o.participant_id))
                })
                .then_some(())
        },
    )
    .await
    .unwrap();
    for (region, _, b) in &bots {
        let got = b.received();
        for (other, hz, o) in bots.iter().filter(|(r, _, _)| r != region) {
            let audio = &got[&(o.participant_id.clone(), "audio")];
            let video = &got[&(o.participant_id.clone(), "video")];
            assert_eq!(
                bot::media::tone_hz(&audio.audio).unwrap(),
                *hz,
                "{region} hears {other}'s tone"
            );
            assert_eq!(
                (audio.lost, video.lost),
                (0, 0),
                "{region} lost packets of {other} on loopback"
            );
        }
        // The others are listed as participants, with their names, wherever they are.
        let mut others: Vec<String> = bots
            .iter()
            .filter(|(r, _, _)| r != region)
            .map(|(_, _, o)| o.participant_id.clone())
            .collect();
        others.sort();
        assert_eq!(known(b), others, "{region} knows the whole meeting");
    }
    // Chat crosses the links, with the sender's id and name.
    bots[0]
        .2
        .send(ClientMsg::Chat {
            text: "hei fra Oslo".into(),
        })
        .unwrap();
    let oslo_id = bots[0].2.participant_id.clone();
    eventually(
        Duration::from_secs(10),
        "the chat reaches both far regions",
        || async {
            bots[1..]
                .iter()
                .all(|(_, _, b)| {
                    b.events("chat").iter().any(|m| {
                        matches!(m, ServerMsg::Chat { from, name, text, .. }
                            if *from == oslo_id && name == "In oslo" && text == "hei fra Oslo")
                    })
                })
                .then_some(())
        },
    )
    .await
    .unwrap();
    // Mute state crosses too.
    bots[2]
        .2
        .send(ClientMsg::Mute {
            audio_muted: true,
            video_muted: false,
        })
        .unwrap();
    let helsinki_id = bots[2].2.participant_id.clone();
    eventually(
        Duration::from_secs(10),
        "oslo sees helsinki muted",
        || async {
            bots[0]
                .2
                .events("mute")
                .iter()
                .any(|m| {
                    matches!(m, ServerMsg::Mute { participant_id, audio_muted: true, .. }
                        if *participant_id == helsinki_id)
                })
                .then_some(())
        },
    )
    .await
    .unwrap();
    // A full mesh: each node has a link to each of the two others, and none dropped a
    // packet for want of room (a datagram too large, a full buffer).
    for (region, _, _) in &bots {
        let text = metrics_text(&node_url(&c, &format!("media-{region}-1"))).await;
        assert_eq!(
            metric_sum(&text, "fjord_relay_link_dropped_total", &[]),
            0.0,
            "{region} dropped relay packets"
        );
        assert_eq!(
            metric_sum(&text, "fjord_relay_links", &[]),
            2.0,
            "{region}: {}",
            text.lines()
                .filter(|l| l.contains("relay"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publishers_track_crosses_the_link_once_whatever_the_number_of_far_subscribers() {
    let c = Cluster::start(regions_spec(&[])).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "webinar" })).await;
    let publisher = bot_in(&base, &meeting, "Speaker", "oslo", Some(440)).await;
    let mut viewers = Vec::new();
    for i in 0..10 {
        viewers.push(bot_in(&base, &meeting, &format!("Viewer {i}"), "stockholm", None).await);
    }
    eventually(
        Duration::from_secs(40),
        "every viewer receives the speaker",
        || async {
            viewers
                .iter()
                .all(|v| receives(v, &publisher.participant_id))
                .then_some(())
        },
    )
    .await
    .unwrap();
    let oslo = node_url(&c, "media-oslo-1");
    let sample = || async {
        let text = metrics_text(&oslo).await;
        (
            metric_sum(
                &text,
                "fjord_relay_link_bytes_total",
                &[("peer", "media-stockholm-1"), ("direction", "out")],
            ),
            metric_sum(&text, "fjord_media_bytes_in_total", &[]),
        )
    };
    let (relay0, in0) = sample().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (relay1, in1) = sample().await;
    let (relay, published) = (relay1 - relay0, in1 - in0);
    eprintln!("10 s: {relay} relay bytes to stockholm for {published} bytes from the publisher");
    assert!(published > 50_000.0, "the publisher sent {published} bytes");
    assert!(
        relay <= 1.3 * published,
        "oslo sent {relay} bytes to stockholm for a publisher's {published}: more than one copy"
    );
    assert!(
        relay >= 0.5 * published,
        "only {relay} bytes crossed for {published}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_a_node_of_the_mesh_dies_the_others_keep_their_media_and_its_participants_come_back() {
    let mut c = Cluster::start(regions_spec(&[("media-stockholm-2", "stockholm")]))
        .await
        .unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "resilient" })).await;
    let oslo = [
        bot_in(&base, &meeting, "Oslo A", "oslo", Some(440)).await,
        bot_in(&base, &meeting, "Oslo B", "oslo", Some(550)).await,
    ];
    let far = bot_in(&base, &meeting, "Stockholm", "stockholm", Some(660)).await;
    let victim = far.node_id.clone();
    eventually(
        Duration::from_secs(40),
        "everyone receives everyone",
        || async {
            let all = [&oslo[0], &oslo[1], &far];
            all.iter()
                .all(|b| {
                    all.iter()
                        .filter(|o| o.participant_id != b.participant_id)
                        .all(|o| receives(b, &o.participant_id))
                })
                .then_some(())
        },
    )
    .await
    .unwrap();
    for b in &oslo {
        b.clear_received();
    }
    c.media_node(&victim).unwrap().proc.kill9();
    // The far participant leaves the oslo bots' meeting: the dead link is noticed by its
    // idle timeout (2 s; allow 1 s more for a loaded machine).
    let far_id = far.participant_id.clone();
    eventually(
        Duration::from_secs(3),
        "oslo sees the stockholm participant leave",
        || async {
            oslo.iter()
                .all(|b| !known(b).contains(&far_id))
                .then_some(())
        },
    )
    .await
    .unwrap();
    drop(far);
    // Oslo's own media never stopped: its gaps are measured over three seconds after the
    // death, long enough for a stall caused by it to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (b, o) in [(&oslo[0], &oslo[1]), (&oslo[1], &oslo[0])] {
        assert_kept_flowing(b, &o.participant_id, "the other oslo bot");
    }
    // The stockholm participant joins again: placed on the region's other node once the
    // dead one's lease is gone, and linked to oslo.
    let back = eventually(
        Duration::from_secs(15),
        "a rejoin placed on a live node",
        || async {
            let b = bot_in(&base, &meeting, "Stockholm again", "stockholm", Some(660)).await;
            (b.node_id != victim).then_some(b)
        },
    )
    .await
    .unwrap();
    assert_eq!(back.node_id, "media-stockholm-2");
    eventually(
        Duration::from_secs(30),
        "media flows across regions again",
        || async {
            (oslo.iter().all(|b| receives(b, &back.participant_id))
                && oslo.iter().all(|o| receives(&back, &o.participant_id)))
            .then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_pinned_to_a_region_never_links_out_of_it_and_refuses_joins_it_cannot_hold() {
    let c = Cluster::start(regions_spec(&[])).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let pinned = api
        .create(
            &base,
            json!({ "title": "pinned", "residency": "stockholm" }),
        )
        .await;
    let mut bots = Vec::new();
    for region in ["oslo", "stockholm", "helsinki"] {
        let b = bot_in(&base, &pinned, region, region, Some(440)).await;
        assert_eq!(
            b.node_id, "media-stockholm-1",
            "{region}'s participant stays in stockholm"
        );
        bots.push(b);
    }
    let placements = crate::placements(&c, &pinned).await;
    assert_eq!(
        placements.values().collect::<Vec<_>>(),
        vec!["media-stockholm-1"],
        "{placements:?}"
    );
    eventually(
        Duration::from_secs(30),
        "the pinned meeting's media flows",
        || async { receives(&bots[0], &bots[1].participant_id).then_some(()) },
    )
    .await
    .unwrap();
    // Once the pinned region has no room (its node drains), a participant from another
    // region is refused rather than served, and linked, outside the pin.
    let (st, v) = api
        .operator(
            reqwest::Method::POST,
            format!("{base}/v1/nodes/media-stockholm-1/drain"),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    eventually(
        Duration::from_secs(5),
        "the controller to see the drain",
        || async {
            api.nodes(&base)
                .await
                .iter()
                .any(|n| n["id"] == "media-stockholm-1" && n["state"] == "draining")
                .then_some(())
        },
    )
    .await
    .unwrap();
    let (st, v) = api
        .join(&base, &pinned, json!({ "name": "Late", "region": "oslo" }))
        .await;
    assert_eq!(st, 503, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("pinned to region stockholm"),
        "{v}"
    );
    for n in ["media-oslo-1", "media-stockholm-1", "media-helsinki-1"] {
        let text = metrics_text(&node_url(&c, n)).await;
        let links = metric_sum(&text, "fjord_relay_links", &[]);
        let bytes = metric_sum(&text, "fjord_relay_link_bytes_total", &[]);
        assert_eq!((links, bytes), (0.0, 0.0), "{n} has relay traffic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_node_spills_the_region_over_to_a_second_node_that_joins_the_mesh() {
    let small = |id: &str| harness::NodeSpec {
        capacity: 4,
        ..node(id, "oslo")
    };
    let c = Cluster::start(ClusterSpec {
        media: vec![small("media-oslo-1"), small("media-oslo-2")],
        ..crate::spec()
    })
    .await
    .unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "crowded" })).await;
    let mut bots = Vec::new();
    for i in 0..6 {
        // Each hears all five others: more audio slots than the default three.
        let mut cfg = crate::bot_config(
            &base,
            &meeting,
            &format!("Oslo {i}"),
            Some("oslo"),
            Some(clip(400 + 100 * i)),
        );
        cfg.view = Some(signaling::View {
            audio_slots: 5,
            ..signaling::View::default_for_client()
        });
        bots.push(bot::Bot::join(cfg, Duration::from_secs(20)).await.unwrap());
    }
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for b in &bots {
        *per_node.entry(b.node_id.clone()).or_default() += 1;
    }
    assert_eq!(
        per_node.len(),
        2,
        "six joins on two oslo nodes: {per_node:?}"
    );
    assert!(
        per_node.values().all(|n| *n <= 4),
        "no node over its capacity: {per_node:?}"
    );
    let placements = crate::placements(&c, &meeting).await;
    assert_eq!(
        placements.len(),
        2,
        "two placements in oslo: {placements:?}"
    );
    eventually(
        Duration::from_secs(60),
        "all six receive each other",
        || async {
            bots.iter()
                .all(|b| {
                    bots.iter()
                        .filter(|o| o.participant_id != b.participant_id)
                        .all(|o| receives(b, &o.participant_id))
                })
                .then_some(())
        },
    )
    .await
    .unwrap();
    for b in &bots {
        assert_eq!(
            known(b).len(),
            5,
            "{} knows all five others",
            b.participant_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loss_on_a_link_is_concealed_and_holds_up_no_other_track() {
    // Oslo dials stockholm (its id sorts first) through a relay that loses every 20th
    // datagram from stockholm to oslo.
    let mut c = Cluster::start(ClusterSpec {
        media: vec![node("media-oslo-1", "oslo")],
        ..regions_spec(&[])
    })
    .await
    .unwrap();
    let listen = harness::free_udp_port();
    let proxy = harness::lossy::LossyProxy::start(([127, 0, 0, 1], listen).into(), 20)
        .await
        .unwrap();
    c.media_extra = json!({
        "relay_listen": format!("127.0.0.1:{listen}"),
        "relay_advertise": proxy.front.to_string(),
    });
    c.start_media(node("media-stockholm-1", "stockholm"))
        .unwrap();
    c.media_extra = json!({});
    c.wait_ready(Duration::from_secs(20)).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "lossy link" })).await;
    let local = bot_in(&base, &meeting, "Local", "oslo", Some(440)).await;
    let far = bot_in(&base, &meeting, "Far", "stockholm", Some(660)).await;
    let listener = bot_in(&base, &meeting, "Listener", "oslo", None).await;
    eventually(
        Duration::from_secs(40),
        "the listener gets both publishers",
        || async {
            (receives(&listener, &local.participant_id) && receives(&listener, &far.participant_id))
                .then_some(())
        },
    )
    .await
    .unwrap();
    listener.clear_received();
    let dropped_before = proxy.dropped.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let got = listener.received();
    let dropped = proxy.dropped.load(std::sync::atomic::Ordering::Relaxed) - dropped_before;
    // The local publisher's media is untouched by the far one's losses.
    assert_kept_flowing(&listener, &local.participant_id, "the local publisher");
    // The far publisher's media keeps flowing: what the link lost is missing (concealed
    // by the receiver), nothing more, and nothing waits for it.
    let audio = &got[&(far.participant_id.clone(), "audio")];
    let video = &got[&(far.participant_id.clone(), "video")];
    eprintln!(
        "link lost {dropped} datagrams; the listener missed {} audio and {} video packets",
        audio.lost, video.lost
    );
    assert!(dropped > 0, "the proxy lost nothing");
    // Per kind, not summed: QUIC packs an audio and a video packet sent together into
    // one UDP datagram, so one datagram the link loses can take one of each. (And a
    // datagram lost just before the window opened may be missed inside it.)
    for (kind, lost) in [("audio", audio.lost), ("video", video.lost)] {
        assert!(
            lost <= dropped + 2,
            "{lost} {kind} packets missing for {dropped} datagrams lost on the link"
        );
    }
    assert!(
        audio.packets >= 300,
        "far audio: {} packets in 8 s",
        audio.packets
    );
    assert!(
        audio.max_gap_ms <= 200.0,
        "far audio stalled for {} ms",
        audio.max_gap_ms
    );
}
