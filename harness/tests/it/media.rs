//! Media through one node between independent WebRTC stacks: aiortc (Python) and
//! webrtc-rs bots, counted frame by frame (RTP timestamp) against what each publisher
//! says it sent. The node forwards packets, so a subscriber gets every frame in exactly
//! as many packets as the publisher sent it in.
use std::collections::HashMap;
use std::time::Duration;

use harness::aiortc::{AiortcPeer, PeerSpec};
use harness::eventually;
use serde_json::json;

use crate::Api;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A webrtc-rs bot: publishing a VP8 320×240 15 fps pattern and a tone, or listening.
async fn bot(base: &str, meeting: &str, name: &str, publish: bool) -> bot::Bot {
    let clip = publish.then(|| bot::ClipSpec {
        width: 320,
        height: 240,
        fps: 15,
        ..bot::ClipSpec::default()
    });
    crate::join_bot(base, meeting, name, None, clip).await
}

/// Packets per RTP timestamp, per (publisher, kind), as one subscriber received them.
type Got = HashMap<(String, String), HashMap<u32, u32>>;
/// Per (publisher, kind): (RTP timestamp, packets) of every frame sent in the window.
type Sent = Vec<((String, String), Vec<(u32, u32)>)>;

fn bot_got(b: &bot::Bot) -> Got {
    b.received()
        .into_iter()
        .map(|((pid, kind), c)| {
            let frames = c.by_timestamp.into_iter().collect();
            ((pid, kind.to_owned()), frames)
        })
        .collect()
}

/// What is wrong with what each subscriber in `got` received of each publisher's frames
/// in `sent` (its own excepted): a frame in more packets than sent (the node split it
/// anew), or fewer than 99.5 % of the frames whole. Every video stream must have more
/// than `min_video` frames (audio: 400), or the window measured nothing.
fn frame_failures(sent: &Sent, got: &[(String, Got)], min_video: usize) -> Vec<String> {
    let mut failures = Vec::new();
    for ((publisher, kind), frames) in sent {
        let packets: u32 = frames.iter().map(|f| f.1).sum();
        assert!(
            frames.len() > if kind == "video" { min_video } else { 400 },
            "{publisher} sent only {} {kind} frames in 10 s",
            frames.len()
        );
        for (subscriber, g) in got {
            if subscriber == publisher {
                continue;
            }
            let empty = HashMap::new();
            let recv = g.get(&(publisher.clone(), kind.clone())).unwrap_or(&empty);
            let arrived = frames
                .iter()
                .filter(|(ts, _)| recv.contains_key(ts))
                .count();
            let whole = frames
                .iter()
                .filter(|(ts, n)| recv.get(ts) == Some(n))
                .count();
            // A frame in more packets than sent would mean the node split it anew.
            let resplit = frames
                .iter()
                .filter(|(ts, n)| recv.get(ts).is_some_and(|got| got > n))
                .count();
            let got_packets: u32 = frames.iter().filter_map(|(ts, _)| recv.get(ts)).sum();
            let share = whole as f64 / frames.len() as f64;
            eprintln!(
                "{subscriber} from {publisher} {kind}: {arrived}/{} frames, {whole} whole; \
                 packets per frame {:.3} sent, {:.3} received",
                frames.len(),
                packets as f64 / frames.len() as f64,
                got_packets as f64 / arrived.max(1) as f64,
            );
            if resplit > 0 {
                failures.push(format!(
                    "{subscriber} got {resplit} {kind} frames of {publisher} in more packets \
                     than sent"
                ));
            }
            if share < 0.995 {
                failures.push(format!(
                    "{subscriber} got {whole} of {} {kind} frames of {publisher} whole",
                    frames.len()
                ));
            }
        }
    }
    failures
}

/// `n` listening aiortc peers (`aiortc-sub-{i}`), staying `seconds` once answered.
fn aiortc_subscribers(base: &str, meeting: &str, n: usize, seconds: f64) -> Vec<AiortcPeer> {
    (0..n)
        .map(|i| {
            let spec = PeerSpec {
                name: format!("aiortc-sub-{i}"),
                seconds,
                ..PeerSpec::default()
            };
            AiortcPeer::spawn(base, meeting, &spec).unwrap()
        })
        .collect()
}

/// What an aiortc publisher sent of `kind` in `window` (Unix ms), as [`Sent`] has it.
fn aiortc_sent(
    r: &harness::aiortc::PeerReport,
    kind: &str,
    window: std::ops::Range<u64>,
) -> ((String, String), Vec<(u32, u32)>) {
    let frames = r.frames_sent(kind, window);
    ((r.participant_id.clone(), kind.to_owned()), frames)
}

fn aiortc_got(r: &harness::aiortc::PeerReport) -> Got {
    let mut got = Got::new();
    for (pid, kinds) in &r.received {
        for (kind, frames) in kinds {
            got.insert((pid.clone(), kind.clone()), frames.clone());
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aiortc_and_webrtc_rs_subscribers_get_every_frame_in_as_many_packets_as_it_was_sent() {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "frames" })).await;

    // Once both publishers' media arrives, media settles for 2 s, then 10 s are counted.
    // The aiortc peers stay long enough to cover that window.
    const SETTLE: u64 = 2_000;
    const WINDOW: u64 = 10_000;
    let subscribers = aiortc_subscribers(&base, &meeting, 3, 28.0);
    let mut bot_subs = Vec::new();
    for i in 0..3 {
        bot_subs.push(bot(&base, &meeting, &format!("bot-sub-{i}"), false).await);
    }
    let aiortc_pub = AiortcPeer::spawn(
        &base,
        &meeting,
        &PeerSpec {
            name: "aiortc-pub".into(),
            publish: true,
            seconds: 26.0,
            ..PeerSpec::default()
        },
    )
    .unwrap();
    let bot_pub = bot(&base, &meeting, "bot-pub", true).await;
    eventually(
        Duration::from_secs(20),
        "media from both publishers",
        || async {
            let got = bot_got(&bot_subs[0]);
            (got.len() >= 4).then_some(())
        },
    )
    .await
    .unwrap();
    let from = unix_ms() + SETTLE;
    let to = from + WINDOW;
    tokio::time::sleep(Duration::from_millis(
        to + 2_000 - unix_ms().min(to + 2_000),
    ))
    .await;

    let bot_sent = bot_pub.sent_frames();
    let mut got: Vec<(String, Got)> = bot_subs
        .iter()
        .map(|b| (b.participant_id.clone(), bot_got(b)))
        .collect();
    let pub_report = aiortc_pub.report().await.unwrap();
    for s in subscribers {
        let r = s.report().await.unwrap();
        got.push((r.participant_id.clone(), aiortc_got(&r)));
    }
    // What each publisher sent in the window: (publisher, kind) -> [(timestamp, packets)].
    let mut sent: Sent = Vec::new();
    for kind in ["audio", "video"] {
        let of_kind = |f: &&bot::SentFrame| f.kind == kind && (from..to).contains(&f.unix_ms);
        sent.push((
            (bot_pub.participant_id.clone(), kind.into()),
            bot_sent
                .iter()
                .filter(of_kind)
                .map(|f| (f.timestamp, f.packets))
                .collect(),
        ));
        sent.push(aiortc_sent(&pub_report, kind, from..to));
    }
    // Each publisher also subscribes to the other: count them too.
    got.push((bot_pub.participant_id.clone(), bot_got(&bot_pub)));
    got.push((pub_report.participant_id.clone(), aiortc_got(&pub_report)));

    let failures = frame_failures(&sent, &got, 120);
    assert!(failures.is_empty(), "{failures:#?}");
    bot_pub.leave().await;
    for b in bot_subs {
        b.leave().await;
    }
}

/// Subscribers that send no transport-wide congestion feedback (aiortc answers with REMB
/// and NACK, no transport-cc) get every frame of two publishers whose encoders spend
/// their whole bitrate (1 Mbit/s each, twice aiortc's default), and promptly: the node
/// does not pace them at an estimate that no feedback ever moves (str0m's initial one,
/// 1 Mbit/s, which queued their media up to the pacer's limit: 1.4 s of delay, then
/// frames too late to use).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_without_transport_cc_get_every_frame_of_two_high_bitrate_publishers() {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "no twcc" })).await;
    const SETTLE: u64 = 3_000;
    const WINDOW: u64 = 10_000;
    let subscribers = aiortc_subscribers(&base, &meeting, 6, 32.0);
    // A listening bot tells when both publishers' media flows (the aiortc peers report
    // only at their end).
    let sensor = bot(&base, &meeting, "sensor", false).await;
    let publishers: Vec<AiortcPeer> = (0..2)
        .map(|i| {
            let spec = PeerSpec {
                name: format!("aiortc-pub-{i}"),
                publish: true,
                noise: true,
                bitrate_kbps: Some(1_000),
                seconds: 28.0,
                ..PeerSpec::default()
            };
            AiortcPeer::spawn(&base, &meeting, &spec).unwrap()
        })
        .collect();
    eventually(
        Duration::from_secs(20),
        "media from both publishers",
        || async { (bot_got(&sensor).len() >= 4).then_some(()) },
    )
    .await
    .unwrap();
    let from = unix_ms() + SETTLE;
    let to = from + WINDOW;
    let mut sent: Sent = Vec::new();
    let mut got: Vec<(String, Got)> = Vec::new();
    // When each video frame left its publisher (Unix ms of its first packet).
    let mut left: HashMap<(String, u32), u64> = HashMap::new();
    for p in publishers {
        let r = p.report().await.unwrap();
        for &(ts, _, at) in &r.sent["video"] {
            left.insert((r.participant_id.clone(), ts), at);
        }
        for kind in ["audio", "video"] {
            sent.push(aiortc_sent(&r, kind, from..to));
        }
        got.push((r.participant_id.clone(), aiortc_got(&r)));
    }
    // How long each frame of the window took from its publisher to each subscriber.
    let mut delays = Vec::new();
    for s in subscribers {
        let r = s.report().await.unwrap();
        for (publisher, kinds) in &r.completed {
            for (&ts, &at) in kinds.get("video").into_iter().flatten() {
                if let Some(&sent_at) = left.get(&(publisher.clone(), ts))
                    && (from..to).contains(&sent_at)
                {
                    delays.push(at.saturating_sub(sent_at));
                }
            }
        }
        got.push((r.participant_id.clone(), aiortc_got(&r)));
    }
    got.push((sensor.participant_id.clone(), bot_got(&sensor)));
    delays.sort_unstable();
    let p95 = delays
        .get(delays.len() * 95 / 100)
        .copied()
        .unwrap_or(u64::MAX);
    eprintln!(
        "video frames through the node: {} measured, p50 {} ms, p95 {p95} ms, max {} ms",
        delays.len(),
        delays.get(delays.len() / 2).copied().unwrap_or(0),
        delays.last().copied().unwrap_or(0),
    );
    // The load is real: each encoder spends its 1 Mbit/s, > 60 packets a second.
    for ((publisher, _), frames) in sent.iter().filter(|((_, k), _)| k == "video") {
        let packets: u32 = frames.iter().map(|f| f.1).sum();
        assert!(
            packets as u64 * 1_000 > 60 * WINDOW,
            "{publisher} sent only {packets} video packets in {WINDOW} ms: no high-bitrate load"
        );
    }
    let failures = frame_failures(&sent, &got, 120);
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        delays.len() > 6 * 2 * 120 && p95 < 500,
        "{} frames timed, p95 {p95} ms from publisher to subscriber: media queued in the node",
        delays.len()
    );
    sensor.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_answering_inactive_gets_no_rtp_while_others_get_media() {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "inactive" })).await;
    // It publishes (so it is offered the bot's tracks) and answers every offered m-line
    // `inactive`.
    let inactive = AiortcPeer::spawn(
        &base,
        &meeting,
        &PeerSpec {
            name: "inactive".into(),
            publish: true,
            answer_inactive: true,
            seconds: 10.0,
            ..PeerSpec::default()
        },
    )
    .unwrap();
    let publisher = bot(&base, &meeting, "bot-pub", true).await;
    let listener = bot(&base, &meeting, "bot-sub", false).await;
    let report = inactive.report().await.unwrap();
    // Media did flow to whoever receives: the listener got both publishers.
    let got = listener.received();
    for who in [&publisher.participant_id, &report.participant_id] {
        for kind in ["audio", "video"] {
            let n = got.get(&(who.clone(), kind)).map_or(0, |c| c.packets);
            assert!(n > 50, "the listener got {n} {kind} packets of {who}");
        }
    }
    assert_eq!(
        report.rtp_received, 0,
        "RTP reached m-lines answered inactive"
    );
    publisher.leave().await;
    listener.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_first_offer_is_refused_then_a_valid_one_joins_and_media_flows() {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "bad offer" })).await;
    let listener = bot(&base, &meeting, "bot-sub", false).await;
    let peer = AiortcPeer::spawn(
        &base,
        &meeting,
        &PeerSpec {
            name: "retry".into(),
            publish: true,
            bad_first_offer: true,
            seconds: 6.0,
            ..PeerSpec::default()
        },
    )
    .unwrap();
    let report = peer.report().await.unwrap();
    assert_eq!(report.errors.len(), 1, "errors: {:?}", report.errors);
    assert_eq!(
        report.errors[0]["in_reply_to"], "offer",
        "{:?}",
        report.errors
    );
    let sent_video = report.sent["video"].len();
    assert!(sent_video > 30, "the peer sent {sent_video} video frames");
    let got = listener.received();
    let video = got
        .get(&(report.participant_id.clone(), "video"))
        .cloned()
        .unwrap_or_default();
    assert!(
        video.frames > 30 && video.keyframes > 0,
        "the listener got {video:?} of the peer's video"
    );
    listener.leave().await;
}

/// Lean peers on `server`: 2 publishers of a small clip (320×240, 15 fps) and
/// `subscribers` subscribers.
fn small_lean(server: bot::lean::Server, subscribers: usize) -> bot::lean::LeanSpec {
    bot::lean::LeanSpec {
        server,
        publishers: 2,
        subscribers,
        clip: bot::ClipSpec {
            width: 320,
            height: 240,
            fps: 15,
            ..bot::ClipSpec::default()
        },
        join_concurrency: 4,
    }
}

/// The lean load generator (str0m peers in RTP mode, for the benchmarks) must load the
/// node for real: every subscriber gets every publisher's audio and video frames, and the
/// node's forwarded packets add up to what the peers received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lean_load_generators_peers_get_every_publishers_frames_from_the_node() {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "lean" })).await;
    let load = bot::lean::LeanLoad::start(small_lean(
        bot::lean::Server::Fjord {
            controller: base.clone(),
            meeting,
            region: Some("oslo".into()),
        },
        3,
    ))
    .await
    .unwrap();
    assert!(load.failures.is_empty(), "{:?}", load.failures);
    // Let every subscriber start on a keyframe (the clip has one a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = load.measure(Duration::from_secs(3)).await;
    load.stop().await;
    eprint!("{}", bot::lean::summary(&r));
    assert_eq!(r.peers, 5);
    // 2 publishers x 4 receivers each, 15 video frames and 50 audio frames a second.
    assert!(r.video_expected >= 2 * 4 * 15 * 2, "{r:?}");
    assert!(r.audio_expected >= 2 * 4 * 50 * 2, "{r:?}");
    let got = |got: u64, expected: u64| got as f64 >= expected as f64 * 0.95;
    assert!(got(r.video_frames, r.video_expected), "video: {r:?}");
    assert!(got(r.audio_frames, r.audio_expected), "audio: {r:?}");
    // Every frame is at least one packet. The counters are read one after another while
    // packets arrive, so a frame whose packets straddle the window's edge may count on
    // one side and its packets on the other: 1 % of slack for the edges.
    let frames = r.video_frames + r.audio_frames;
    assert!(
        r.bytes > 0 && r.packets as f64 >= frames as f64 * 0.99,
        "{} packets for {frames} frames: {r:?}",
        r.packets
    );
    // The node measured how long its forwarding took (the bench prints its quantiles).
    // It observes once per drain of its shard, and a busy shard drains several
    // datagrams at once, so the count is bounded below by the drains, not the
    // datagrams: over the 4.5 s since the joins, the two publishers' audio alone
    // (100 frames a second, 20 ms apart) came in far more than 100 separate drains.
    let http = reqwest::Client::new();
    let (mut count, mut sum) = (0.0, 0.0);
    for m in &c.media {
        let text = http
            .get(format!("http://127.0.0.1:{}/metrics", m.http))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        count += harness::metric_value(&text, "fjord_media_forward_latency_seconds_count")
            .unwrap_or(0.0);
        sum +=
            harness::metric_value(&text, "fjord_media_forward_latency_seconds_sum").unwrap_or(0.0);
    }
    assert!(count >= 100.0, "forward latency observed {count} times");
    let mean = sum / count;
    assert!(
        mean > 0.0 && mean < 0.1,
        "mean forwarding latency {mean} s over {count} drains"
    );
}

/// Runs `body` on a two-worker runtime inside a private network namespace (Janus gathers
/// no ICE candidates on loopback): outside it, re-runs the test `here` (its path in this
/// binary) inside one, which must pass.
fn in_private_network<F: std::future::Future<Output = ()>>(here: &str, body: impl FnOnce() -> F) {
    if let harness::netns::Place::RanInside = harness::netns::enter(here).unwrap() {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(body());
}

/// A cluster of one media node (in `oslo`) and a meeting titled `title`: the cluster,
/// its controller's URL and the meeting's id.
async fn one_node_meeting(title: &str) -> (harness::Cluster, String, String) {
    let c = harness::Cluster::start(harness::ClusterSpec {
        media: vec![crate::node("media-oslo-1", "oslo")],
        ..crate::spec()
    })
    .await
    .unwrap();
    let base = c.controllers[0].url();
    let meeting = Api::new(&c).create(&base, json!({ "title": title })).await;
    (c, base, meeting)
}

/// The Janus comparison of the SFU benchmark (`fjord-bench-sfu --against janus`) at a
/// small size: the same lean load, 2 publishers × 4 subscribers for 5 s, against a Fjord
/// media node and then against Janus's VideoRoom (Debian's `janus`), in a private
/// network namespace (Janus gathers no candidates on loopback). Both servers must have
/// forwarded every publisher's media to every other peer, so that the comparison cannot
/// silently measure an idle or broken server.
#[test]
fn fjord_and_janus_under_the_same_lean_load_both_forward_every_publishers_media() {
    use bot::lean::Server;
    use harness::compare;
    let here =
        "media::fjord_and_janus_under_the_same_lean_load_both_forward_every_publishers_media";
    in_private_network(here, || async {
        let spec = |server| small_lean(server, 4);
        let (settle, window) = (Duration::from_millis(1500), Duration::from_secs(5));
        let (c, base, meeting) = one_node_meeting("vs janus").await;
        let fjord = spec(Server::Fjord {
            controller: base,
            meeting,
            region: Some("oslo".into()),
        });
        let fjord = compare::run(fjord, c.media[0].proc.pid(), settle, window)
            .await
            .unwrap();
        drop(c);
        let dir = tempfile::tempdir().unwrap();
        let janus = compare::run_on_janus(spec, dir.path(), settle, window)
            .await
            .unwrap();
        eprint!("{}", compare::table(&fjord, &janus));
        for (server, run) in [("fjord", &fjord), ("janus", &janus)] {
            let r = &run.report;
            eprint!("{server}:\n{}", bot::lean::summary(r));
            assert_eq!((r.peers, r.join_failures), (6, 0), "{server}: {r:?}");
            // 2 publishers × 5 receivers each, 15 video and 50 audio frames a second.
            assert!(r.video_expected >= 2 * 5 * 15 * 4, "{server}: {r:?}");
            assert!(r.audio_expected >= 2 * 5 * 50 * 4, "{server}: {r:?}");
            assert!(r.video_loss() <= 0.05, "{server} lost video: {r:?}");
            assert!(r.audio_loss() <= 0.05, "{server} lost audio: {r:?}");
            assert!(run.cpu > 0.0, "{server} used no CPU");
        }
    });
}

/// The comparison of `fjord-bench-aiortc` at a small size: aiortc publishers at
/// 1 Mbit/s and aiortc subscribers, in a Fjord meeting and then in a Janus VideoRoom (in
/// a private network namespace: Janus gathers no candidates on loopback). Through either
/// server the subscribers get ≥ 99 % of the frames whole, once the Janus peers'
/// rewritten timestamps are matched to the publishers' (the bench's count would
/// otherwise compare Fjord with a miscounted Janus).
#[test]
fn aiortc_peers_get_their_frames_whole_through_fjord_and_through_janus() {
    use harness::aiortc::{Load, Room};
    let here = "media::aiortc_peers_get_their_frames_whole_through_fjord_and_through_janus";
    in_private_network(here, || async {
        let load = Load {
            publishers: 2,
            subscribers: 2,
            bitrate_kbps: 1_000,
            settle: Duration::from_secs(4),
            window: Duration::from_secs(4),
        };
        let (c, controller, meeting) = one_node_meeting("aiortc vs janus").await;
        let fjord = load
            .run(&Room::Fjord {
                controller,
                meeting,
            })
            .await
            .unwrap();
        drop(c);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("janus.log");
        let janus = harness::janus::Janus::start(dir.path(), &log)
            .await
            .unwrap();
        let room = Room::Janus {
            api: janus.url.clone(),
            room: janus.room,
            publishers: load.publishers,
        };
        let on_janus = load.run(&room).await.unwrap();
        for (server, tally) in [("fjord", &fjord), ("janus", &on_janus)] {
            for (kind, t) in ["audio", "video"].iter().zip(tally) {
                eprintln!("{server} {kind}: {t:?}");
                // 2 publishers × 2 subscribers × 4 s: 15 video, 50 audio frames a second.
                let per_second = if *kind == "video" { 15 } else { 50 };
                assert!(
                    t.expected >= 2 * 2 * 4 * per_second * 9 / 10,
                    "{server} {kind}: {t:?}"
                );
                assert!(t.share() >= 0.99, "{server} {kind}: {t:?}");
            }
        }
    });
}

/// A meeting at its `max_participants_per_meeting` refuses a newcomer's signaling with
/// 409 `meeting_full` and a message that says so; a participant already in it can still
/// reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_meeting_refuses_a_newcomer_with_409_and_lets_a_participant_reconnect() {
    let mut c = harness::Cluster::start(harness::ClusterSpec {
        media: vec![],
        ..crate::spec()
    })
    .await
    .unwrap();
    c.media_extra = json!({ "max_participants_per_meeting": 2 });
    c.start_media(crate::node("media-oslo-1", "oslo")).unwrap();
    c.wait_ready(Duration::from_secs(20)).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api.create(&base, json!({ "title": "two seats" })).await;
    let ws_url = |joined: &serde_json::Value| {
        format!(
            "{}?token={}",
            joined["signal_url"].as_str().unwrap(),
            joined["token"].as_str().unwrap()
        )
    };
    let (a, b) = (
        api.join_from(&base, &meeting, "oslo").await,
        api.join_from(&base, &meeting, "oslo").await,
    );
    let (mut a_ws, _) = tokio_tungstenite::connect_async(ws_url(&a)).await.unwrap();
    let (_b_ws, _) = tokio_tungstenite::connect_async(ws_url(&b)).await.unwrap();
    // Both are in (the welcome comes once the session has its place).
    let welcome = bot::client::next_msg(&mut a_ws).await.unwrap();
    assert!(
        matches!(welcome, signaling::ServerMsg::Welcome { .. }),
        "{welcome:?}"
    );

    let c_joined = api.join_from(&base, &meeting, "oslo").await;
    let http_url = ws_url(&c_joined).replacen("ws", "http", 1);
    let (st, v) = api.send(api.http.get(http_url)).await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error"], "meeting_full", "{v}");
    assert!(v["message"].as_str().unwrap().contains("is full"), "{v}");
    match tokio_tungstenite::connect_async(ws_url(&c_joined)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 409, "{resp:?}")
        }
        Ok(_) => panic!("a third participant got in"),
        Err(e) => panic!("unexpected: {e}"),
    }

    // a reconnects with its token: it keeps its place.
    let (mut again, _) = tokio_tungstenite::connect_async(ws_url(&a)).await.unwrap();
    let welcome = bot::client::next_msg(&mut again).await.unwrap();
    let welcome = bot::client::welcome_of(welcome).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(welcome.participant_id, a["participant_id"], "{welcome:?}");
}
