//! Receive slots with every stack: webrtc-rs bots that say what they show get exactly
//! those videos, an aiortc peer that says nothing still gets everyone's media on m-lines
//! of its own, and the recording still has every participant's audio file.
use std::collections::BTreeSet;
use std::time::Duration;

use harness::aiortc::{AiortcPeer, PeerSpec};
use signaling::{ServerMsg, View};

use crate::recording::{audio_with_tone, meeting_to_record, start, stop, written};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bots_on_slots_get_their_views_an_aiortc_peer_gets_everyone_and_the_recording_every_voice()
{
    let (c, api, base, meeting, host_key) = meeting_to_record(1, "slots").await;
    let tones = [330, 440, 550, 660];
    let mut publishers = Vec::new();
    for (i, hz) in tones.iter().enumerate() {
        let clip = bot::ClipSpec {
            tone_hz: *hz,
            width: 320,
            height: 180,
            ..bot::ClipSpec::default()
        };
        let mut cfg = crate::bot_config(
            &base,
            &meeting,
            &format!("Pub {i}"),
            Some("oslo"),
            Some(clip),
        );
        // Publishers show one small tile each: they are on slots too.
        cfg.view = Some(View {
            video_slots: 1,
            ..View::default_for_client()
        });
        publishers.push(bot::Bot::join(cfg, Duration::from_secs(20)).await.unwrap());
    }
    // The viewer pins the second and the fourth publisher into its two tiles.
    let pinned = [
        publishers[1].participant_id.clone(),
        publishers[3].participant_id.clone(),
    ];
    let mut cfg = crate::bot_config(&base, &meeting, "Viewer", Some("oslo"), None);
    cfg.view = Some(View {
        video_slots: 2,
        pinned: pinned.to_vec(),
        ..View::default_for_client()
    });
    let viewer = bot::Bot::join(cfg, Duration::from_secs(20)).await.unwrap();
    let aiortc = AiortcPeer::spawn(
        &base,
        &meeting,
        &PeerSpec {
            name: "aiortc-sub".into(),
            seconds: 14.0,
            ..PeerSpec::default()
        },
    )
    .unwrap();
    let videos_from = |b: &bot::Bot| -> BTreeSet<String> {
        b.received()
            .iter()
            .filter(|((_, kind), t)| *kind == "video" && t.frames > 10)
            .map(|((p, _), _)| p.clone())
            .collect()
    };
    let want: BTreeSet<String> = pinned.iter().cloned().collect();
    harness::eventually(Duration::from_secs(20), "the pinned videos", || async {
        (videos_from(&viewer) == want).then_some(())
    })
    .await
    .unwrap();
    let rec = start(&api, &base, &meeting, &host_key).await;
    let rid = rec["recording_id"].as_str().unwrap().to_owned();
    // A window of its own: only what arrives from now on counts.
    viewer.clear_received();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop(&api, &base, &rid, &host_key).await;

    assert_eq!(
        videos_from(&viewer),
        want,
        "the viewer gets the videos it shows, no other"
    );
    let voices = viewer
        .received()
        .iter()
        .filter(|((_, kind), t)| *kind == "audio" && t.packets > 50)
        .count();
    assert!(
        (1..=3).contains(&voices),
        "the viewer hears the loudest speakers, at most its 3 audio slots: {voices}"
    );
    // Its tiles are labelled with the pinned participants.
    let labelled: BTreeSet<String> = viewer
        .events("slots")
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::Slots { slots } => Some(slots),
            _ => None,
        })
        .next_back()
        .unwrap()
        .into_iter()
        .filter(|s| s.kind == signaling::MediaKind::Video && !s.screen)
        .filter_map(|s| s.participant_id)
        .collect();
    assert_eq!(labelled, want);

    // The third stack, without a view: an m-line per track, everyone's media.
    let r = aiortc.report().await.unwrap();
    for p in &publishers {
        for kind in ["audio", "video"] {
            let frames: u32 = r
                .received
                .get(&p.participant_id)
                .and_then(|k| k.get(kind))
                .map_or(0, |f| f.values().sum());
            assert!(
                frames > 20,
                "aiortc got {frames} {kind} packets of {}",
                p.participant_id
            );
        }
    }

    // The recording has every participant's voice, whoever the slots carried.
    let (dir, manifest) = written(&c, &rid);
    for (p, hz) in publishers.iter().zip(tones) {
        let a = audio_with_tone(&dir, &manifest, &p.participant_id, hz);
        assert!(
            a.duration >= Duration::from_secs(4),
            "{hz} Hz: {:?}",
            a.duration
        );
    }
}

/// The participant ids of the tiles of `page` that show video now (not its own).
async fn tiles_with_video(page: &harness::webdriver::Browser) -> BTreeSet<String> {
    const JS: &str = r#"
const me = 'tile-' + window.fjord.joined.participant_id;
return [...document.querySelectorAll('.tile')]
  .filter((t) => t.id !== me && t.querySelector('video').videoWidth > 0 && t.dataset.slot)
  .map((t) => [t.id.replace(/^tile-/, ''), window.fjord.midToParticipant.get(t.dataset.slot) || null]);
"#;
    let v = page
        .eval(JS, serde_json::json!([]))
        .await
        .unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| {
            let (tile, named) = (pair[0].as_str()?, pair[1].as_str()?);
            // A tile shows its slot's video only while the slot names its participant.
            (tile == named).then(|| tile.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_on_slots_shows_nine_labelled_tiles_pages_pins_and_speaker_view_without_freezing_or_renegotiating()
 {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let api = crate::Api::new(&c);
    let base = c.controllers[0].url();
    let meeting = api
        .create(&base, serde_json::json!({ "title": "slots page" }))
        .await;
    let camera = |name: &str| {
        let clip = bot::ClipSpec {
            width: 160,
            height: 90,
            ..bot::ClipSpec::default()
        };
        let mut cfg = crate::bot_config(&base, &meeting, name, Some("oslo"), Some(clip));
        cfg.view = Some(View {
            video_slots: 1,
            audio_slots: 1,
            ..View::default_for_client()
        });
        cfg
    };
    let mut bots = Vec::new();
    for i in 0..12 {
        bots.push(
            bot::Bot::join(camera(&format!("Cam {i}")), Duration::from_secs(20))
                .await
                .unwrap(),
        );
    }
    let (page, _) =
        crate::browser::join_page_with(&c, &base, &meeting, "Host", "&slots=1&camera=off&muted=1")
            .await;
    let first = harness::eventually(Duration::from_secs(30), "nine tiles with video", || async {
        let shown = tiles_with_video(&page).await;
        (shown.len() == 9).then_some(shown)
    })
    .await
    .unwrap();
    let offers = || async {
        page.eval("return window.fjord.offers", serde_json::json!([]))
            .await
            .unwrap()
            .as_u64()
            .unwrap()
    };
    let before = offers().await;
    assert_eq!(before, 1, "one offer: the slots");

    // The next page shows the three others.
    page.eval(
        "document.getElementById('page-next').click()",
        serde_json::json!([]),
    )
    .await
    .unwrap();
    let second = harness::eventually(Duration::from_secs(20), "the second page", || async {
        let shown = tiles_with_video(&page).await;
        (shown.len() == 3 && shown.is_disjoint(&first)).then_some(shown)
    })
    .await
    .unwrap();
    let everyone: BTreeSet<String> = bots.iter().map(|b| b.participant_id.clone()).collect();
    assert_eq!(
        first.union(&second).cloned().collect::<BTreeSet<_>>(),
        everyone,
        "two pages show the twelve cameras"
    );

    // Back on the first page, the host pins someone of the second: they come into view.
    page.eval(
        "document.getElementById('page-prev').click()",
        serde_json::json!([]),
    )
    .await
    .unwrap();
    let star = second.iter().next().unwrap().clone();
    harness::eventually(Duration::from_secs(20), "the first page again", || async {
        let shown = tiles_with_video(&page).await;
        (shown.len() == 9 && !shown.contains(&star)).then_some(())
    })
    .await
    .unwrap();
    // A slot changes source for the pin: no video may freeze for it (slots left empty
    // by the short second page, and filled again, count their pause as a freeze: the
    // count starts once the first page runs again).
    const FREEZES: &str = r#"
const done = arguments[arguments.length - 1];
window.fjord.pc.getStats().then((r) => {
  let s = 0;
  r.forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'video') s += x.totalFreezesDuration || 0; });
  done(s);
});
"#;
    let frozen = || async {
        page.eval_async(FREEZES, serde_json::json!([]))
            .await
            .unwrap()
            .as_f64()
            .unwrap()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frozen_before = frozen().await;
    page.eval(
        "document.getElementById('tile-' + arguments[0]).dispatchEvent(new MouseEvent('dblclick'))",
        serde_json::json!([star]),
    )
    .await
    .unwrap();
    harness::eventually(
        Duration::from_secs(20),
        "the pinned participant in view",
        || async {
            let shown = tiles_with_video(&page).await;
            (shown.contains(&star) && shown.len() == 9).then_some(())
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let froze = frozen().await - frozen_before;
    assert!(
        froze < 1.0,
        "videos froze for {froze:.2} s across the pin's slot change"
    );
    // Speaker view: the stage (the large tile, the one who speaks or is pinned) shows
    // its participant's video.
    page.eval(
        "document.getElementById('layout').click()",
        serde_json::json!([]),
    )
    .await
    .unwrap();
    harness::eventually(Duration::from_secs(20), "the stage's video", || async {
        let main = page
            .eval(
                "const t = document.querySelector('.tile.main'); return t && t.id.replace(/^tile-/, '')",
                serde_json::json!([]),
            )
            .await
            .ok()?;
        let main = main.as_str()?.to_owned();
        tiles_with_video(&page).await.contains(&main).then_some(())
    })
    .await
    .unwrap();
    // Three more join: their tiles come, its SDP does not change.
    for i in 12..15 {
        bots.push(
            bot::Bot::join(camera(&format!("Cam {i}")), Duration::from_secs(20))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(offers().await, before, "joins renegotiated nothing");
}
