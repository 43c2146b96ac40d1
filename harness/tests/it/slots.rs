//! Receive slots with every stack: webrtc-rs bots that say what they show get exactly
//! those videos, an aiortc peer that says nothing still gets everyone's media on m-lines
//! of its own, and the recording still has every participant's audio file.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::aiortc::{AiortcPeer, PeerSpec};
use signaling::{ServerMsg, View};

use crate::recording::{audio_with_tone, meeting_to_record, start, stop, written};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bots_on_slots_get_their_views_an_aiortc_peer_on_default_slots_every_camera_and_the_recording_every_voice()
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

    // The third stack, without a view: the default view's slots (a 3×3 gallery, three
    // voices), labelled by `slots` — every camera, and the voices its slots carry.
    let r = aiortc.report().await.unwrap();
    let got = |p: &bot::Bot, kind: &str| -> u32 {
        r.received
            .get(&p.participant_id)
            .and_then(|k| k.get(kind))
            .map_or(0, |f| f.values().sum())
    };
    for p in &publishers {
        let packets = got(p, "video");
        assert!(
            packets > 20,
            "aiortc got {packets} video packets of {}",
            p.participant_id
        );
    }
    let heard = publishers.iter().filter(|p| got(p, "audio") > 20).count();
    assert!(
        (1..=3).contains(&heard),
        "aiortc hears {heard} of the 4 publishers: its 3 audio slots"
    );

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

/// The participant ids of the tiles of `page` that show video now (not its own), with the
/// width of the frames each tile shows.
async fn tiles_with_video(page: &harness::webdriver::Browser) -> BTreeMap<String, u64> {
    const JS: &str = r#"
const me = 'tile-' + window.fjord.joined.participant_id;
return [...document.querySelectorAll('.tile')]
  .filter((t) => t.id !== me && t.querySelector('video').videoWidth > 0 && t.dataset.slot)
  .map((t) => [t.id.replace(/^tile-/, ''), window.fjord.midToParticipant.get(t.dataset.slot) || null,
               t.querySelector('video').videoWidth]);
"#;
    let v = page
        .eval(JS, serde_json::json!([]))
        .await
        .unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| {
            let (tile, named, width) = (row[0].as_str()?, row[1].as_str()?, row[2].as_u64()?);
            // A tile shows its slot's video only while the slot names its participant.
            (tile == named).then(|| (tile.to_owned(), width))
        })
        .collect()
}

/// The tiles that show their own participant's video: each camera sends frames of a
/// width of its own (`widths`), so a tile whose frames are another's is not counted.
async fn tiles_showing_their_own(
    page: &harness::webdriver::Browser,
    widths: &BTreeMap<String, u64>,
) -> BTreeSet<String> {
    tiles_with_video(page)
        .await
        .into_iter()
        .filter(|(pid, width)| widths.get(pid) == Some(width))
        .map(|(pid, _)| pid)
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
    // Camera `i` sends frames 160 + 8·i pixels wide: the width a tile shows says whose
    // video it is.
    let width = |i: u32| 160 + 8 * i;
    let camera = |i: u32| {
        let clip = bot::ClipSpec {
            width: width(i),
            height: 90,
            fps: 15,
            video_kbps: 100,
            ..bot::ClipSpec::default()
        };
        let mut cfg = crate::bot_config(
            &base,
            &meeting,
            &format!("Cam {i}"),
            Some("oslo"),
            Some(clip),
        );
        cfg.view = Some(View {
            video_slots: 1,
            audio_slots: 1,
            ..View::default_for_client()
        });
        cfg
    };
    let mut bots = Vec::new();
    let mut widths = BTreeMap::new();
    for i in 0..20 {
        let b = bot::Bot::join(camera(i), Duration::from_secs(20))
            .await
            .unwrap();
        widths.insert(b.participant_id.clone(), u64::from(width(i)));
        bots.push(b);
    }
    let (page, _) =
        crate::browser::join_page_with(&c, &base, &meeting, "Host", "&camera=off&muted=1").await;
    let first = harness::eventually(
        Duration::from_secs(30),
        "nine tiles with their own video",
        || async {
            let shown = tiles_showing_their_own(&page, &widths).await;
            (shown.len() == 9).then_some(shown)
        },
    )
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
    // The tiles are labelled with their participants' names.
    let labels = page
        .eval(
            "return arguments[0].map((p) => document.querySelector('#tile-' + p + ' .label').textContent)",
            serde_json::json!([first.iter().collect::<Vec<_>>()]),
        )
        .await
        .unwrap();
    for (pid, label) in first.iter().zip(labels.as_array().unwrap()) {
        let i = bots.iter().position(|b| &b.participant_id == pid).unwrap();
        assert!(
            label.as_str().unwrap().starts_with(&format!("Cam {i}")),
            "tile of Cam {i} labelled {label}"
        );
    }

    // The next page shows the next nine, the third the last two.
    let next_page = |want: usize, seen: BTreeSet<String>| {
        let (page, widths) = (&page, &widths);
        async move {
            page.eval(
                "document.getElementById('page-next').click()",
                serde_json::json!([]),
            )
            .await
            .unwrap();
            harness::eventually(
                Duration::from_secs(20),
                &format!("a page of {want}"),
                || async {
                    let shown = tiles_showing_their_own(page, widths).await;
                    (shown.len() == want && shown.is_disjoint(&seen)).then_some(shown)
                },
            )
            .await
            .unwrap()
        }
    };
    let second = next_page(9, first.clone()).await;
    let third = next_page(2, first.union(&second).cloned().collect()).await;
    let everyone: BTreeSet<String> = widths.keys().cloned().collect();
    let paged: BTreeSet<String> = first.iter().chain(&second).chain(&third).cloned().collect();
    assert_eq!(paged, everyone, "three pages show the twenty cameras");

    // Back on the first page, the host pins someone of the second: they come into view.
    for _ in 0..2 {
        page.eval(
            "document.getElementById('page-prev').click()",
            serde_json::json!([]),
        )
        .await
        .unwrap();
    }
    let star = second.iter().next().unwrap().clone();
    harness::eventually(Duration::from_secs(20), "the first page again", || async {
        let shown = tiles_showing_their_own(&page, &widths).await;
        (shown.len() == 9 && !shown.contains(&star)).then_some(())
    })
    .await
    .unwrap();
    // A slot changes source for the pin: no video may freeze for it (slots left empty
    // by the short third page, and filled again, count their pause as a freeze: the
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
    // Off this page the star has no tile: the participant panel pins them.
    let star_name = format!(
        "Cam {}",
        bots.iter().position(|b| b.participant_id == star).unwrap()
    );
    page.eval(
        "document.getElementById('people-toggle').click()",
        serde_json::json!([]),
    )
    .await
    .unwrap();
    let pinned = harness::eventually(Duration::from_secs(5), "the panel's Pin button", || async {
        let clicked = page
            .eval(
                "const b = [...document.querySelectorAll('#people button')].find(e => e.getAttribute('aria-label') === 'Pin ' + arguments[0]); \
                 if (b) b.click(); return !!b;",
                serde_json::json!([star_name]),
            )
            .await
            .ok()?;
        (clicked == true).then_some(true)
    })
    .await
    .is_ok();
    assert!(pinned, "the panel has a Pin button for {star_name}");
    harness::eventually(
        Duration::from_secs(20),
        "the pinned participant in view",
        || async {
            let shown = tiles_showing_their_own(&page, &widths).await;
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
        tiles_showing_their_own(&page, &widths)
            .await
            .contains(&main)
            .then_some(())
    })
    .await
    .unwrap();
    // Ten more join: the roster grows, the page's SDP does not change.
    for i in 20..30 {
        let b = bot::Bot::join(camera(i), Duration::from_secs(20))
            .await
            .unwrap();
        widths.insert(b.participant_id.clone(), u64::from(width(i)));
        bots.push(b);
    }
    harness::eventually(Duration::from_secs(20), "thirty in the roster", || async {
        let n = page
            .eval(
                "return window.fjord.participants.size",
                serde_json::json!([]),
            )
            .await
            .ok()?;
        (n.as_u64()? == 30).then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(offers().await, before, "ten joins renegotiated nothing");
}
