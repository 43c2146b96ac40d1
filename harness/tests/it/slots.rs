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
