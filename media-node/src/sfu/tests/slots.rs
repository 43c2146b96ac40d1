//! Receive slots against str0m clients: who feeds a receiver's slots, speaker changes
//! without a gap, no offers as others come and go, and layers nobody needs.
use std::time::Duration;

use signaling::{Slot, View, ViewMode};
use str0m::Rtc;
use str0m::format::Codec as StrCodec;
use str0m::media::Frequency;
use str0m::media::{MediaKind, MediaTime, Rid};

use super::{As, Client, Rig};
use crate::sfu::{PeerKey, SfuCommand};

/// What the others in a rig meeting show: one small tile, one speaker.
fn thumbnail() -> Option<View> {
    Some(View {
        audio_slots: 1,
        tiles: vec![signaling::TileSize {
            width: 320,
            height: 180,
        }],
        ..gallery(1)
    })
}

pub(super) fn gallery(video_slots: u32) -> View {
    View {
        video_slots,
        ..View::default_for_client()
    }
}

impl Rig {
    /// Every publisher sends frame `f` (33 ms apart): a VP8 frame whose second byte
    /// names it (`n`), a keyframe every 3 s or when one was asked for; and an Opus frame
    /// at the level `level(n)` gives (RFC 6464: 0 loudest, 127 silence).
    fn publish(&mut self, f: u64, level: impl Fn(u64) -> u8) {
        let now = self.now;
        let sfu = &mut self.sfu;
        for c in &mut self.clients {
            let n = c.key.0;
            let asked = !c.keyframe_requests.is_empty();
            c.keyframe_requests.clear();
            for (kind, mid) in c.sends.clone() {
                let codec = match kind {
                    MediaKind::Audio => StrCodec::Opus,
                    MediaKind::Video => StrCodec::Vp8,
                };
                let layers: &[Option<&str>] = match kind {
                    MediaKind::Video if c.simulcast => &[Some("l"), Some("m"), Some("h")],
                    _ => &[None],
                };
                for rid in layers {
                    // Not negotiated yet: nothing to send on.
                    let Some(mut w) = c.rtc.writer(mid) else {
                        continue;
                    };
                    if let Some(rid) = rid {
                        w = w.rid(Rid::from(*rid));
                    }
                    let pt = w
                        .payload_params()
                        .find(|p| p.spec().codec == codec)
                        .unwrap()
                        .pt();
                    let (time, data) = match kind {
                        MediaKind::Audio => {
                            w = w.audio_level(-(level(n) as i8), level(n) < 127);
                            (
                                MediaTime::new(f * 1_600, Frequency::FORTY_EIGHT_KHZ),
                                vec![0xfc, n as u8, 0xaa],
                            )
                        }
                        MediaKind::Video => {
                            let key = asked || f.is_multiple_of(90);
                            let mut frame = vec![0x9d; 300];
                            frame[0] = if key { 0x10 } else { 0x11 };
                            frame[1] = n as u8;
                            (MediaTime::from_90khz(f * 3_000), frame)
                        }
                    };
                    w.write(pt, now, time, data).unwrap();
                    // Out at once, as a client drives its connection after each write.
                    flush(&mut c.rtc, sfu, now);
                }
            }
        }
    }

    /// Runs `frames` frames (33 ms each) of everyone publishing at `level`.
    fn play(&mut self, frames: std::ops::Range<u64>, level: impl Fn(u64) -> u8 + Copy) {
        for f in frames {
            self.publish(f, level);
            self.run(Duration::from_millis(33));
        }
    }

    /// The slot table last told to `key`.
    pub(super) fn slots_of(&self, key: PeerKey) -> Vec<Slot> {
        self.slot_tables
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    fn offers_to(&self, key: PeerKey) -> usize {
        self.offers.iter().filter(|k| **k == key).count()
    }
}

/// Hands the SFU whatever `rtc` has to send now.
fn flush(rtc: &mut Rtc, sfu: &mut crate::sfu::Sfu, now: std::time::Instant) {
    rtc.handle_input(str0m::Input::Timeout(now)).unwrap();
    while let Ok(out) = rtc.poll_output() {
        match out {
            str0m::Output::Transmit(t) => {
                sfu.handle_datagram(now, t.source, &t.contents);
            }
            str0m::Output::Timeout(_) => break,
            str0m::Output::Event(_) => {}
        }
    }
}

/// Whose frames `c` got on its video m-lines since frame `from` of its log: the publisher
/// each m-line carried (from the frames' marker byte), per m-line.
fn video_sources(c: &Client, from: usize, video_mids: &[String]) -> Vec<(String, Vec<u8>)> {
    video_mids
        .iter()
        .map(|mid| {
            let mut who: Vec<u8> = c.frames[from..]
                .iter()
                .filter(|g| g.mid.to_string() == *mid && g.data.len() == 300)
                .map(|g| g.data[1])
                .collect();
            who.dedup();
            (mid.clone(), who)
        })
        .collect()
}

fn video_slots(slots: &[Slot]) -> Vec<&Slot> {
    slots
        .iter()
        .filter(|s| s.kind == signaling::MediaKind::Video && !s.screen)
        .collect()
}

#[test]
fn a_receiver_gets_exactly_the_videos_its_view_asks_for_and_no_offer_as_others_come_and_go() {
    let mut rig = Rig::new();
    // Eight participants with cameras and microphones, then the receiver: four tiles.
    for n in 1..=8 {
        rig.join_as(
            n,
            As {
                audio: true,
                camera: true,
                view: thumbnail(),
                ..As::default()
            },
        );
    }
    let receiver = PeerKey(100);
    rig.join_as(
        100,
        As {
            view: Some(gallery(4)),
            ..As::default()
        },
    );
    // Thirty-one more who only listen, so that 40 are in the meeting.
    for n in 200..231 {
        rig.join_as(
            n,
            As {
                view: thumbnail(),
                ..As::default()
            },
        );
    }
    rig.play(0..60, |_| 127);
    assert_eq!(rig.offers_to(receiver), 1, "one offer: its slots");

    let slots = rig.slots_of(receiver);
    let tiles = video_slots(&slots);
    assert_eq!(tiles.len(), 4, "{slots:?}");
    let shown: Vec<&str> = tiles
        .iter()
        .map(|s| s.participant_id.as_deref().expect("every tile filled"))
        .collect();
    assert_eq!(
        shown,
        ["p1", "p2", "p3", "p4"],
        "the first page, in the order they came"
    );
    let c = rig.client(receiver);
    let from = c.frames.len();
    rig.play(60..90, |_| 127);
    let c = rig.client(receiver);
    let mids: Vec<String> = tiles.iter().map(|s| s.mid.clone()).collect();
    let got = video_sources(c, from, &mids);
    for ((mid, who), name) in got.iter().zip(&shown) {
        let n: u8 = name[1..].parse().unwrap();
        assert_eq!(
            who,
            &vec![n],
            "m-line {mid}, labelled {name}, carried {who:?}"
        );
    }
    let videos = c.frames[from..]
        .iter()
        .filter(|g| g.data.len() == 300)
        .map(|g| g.data[1])
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(videos, [1, 2, 3, 4].into(), "no video it does not show");

    // Thirty others come and go: slots change, its SDP does not.
    for n in 300..330 {
        rig.join_as(
            n,
            As {
                audio: true,
                camera: n % 3 == 0,
                view: thumbnail(),
                ..As::default()
            },
        );
    }
    rig.play(90..120, |_| 127);
    for n in 300..330 {
        rig.command(SfuCommand::Leave { key: PeerKey(n) });
    }
    rig.play(120..150, |_| 127);
    assert_eq!(
        rig.offers_to(receiver),
        1,
        "joins and leaves of 30 others: no offer"
    );

    // A participant whose tile is shown leaves: the next one fills the tile.
    rig.command(SfuCommand::Leave { key: PeerKey(2) });
    rig.play(150..180, |_| 127);
    let shown: Vec<String> = video_slots(&rig.slots_of(receiver))
        .iter()
        .map(|s| s.participant_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        shown,
        ["p1", "p5", "p3", "p4"],
        "p5 takes p2's tile; the others stay"
    );
    assert_eq!(rig.offers_to(receiver), 1);
}

#[test]
fn a_speaker_outside_the_view_reaches_the_stage_within_a_second_without_a_gap() {
    let mut rig = Rig::new();
    for n in 1..=8 {
        rig.join_as(
            n,
            As {
                audio: true,
                camera: true,
                view: thumbnail(),
                ..As::default()
            },
        );
    }
    let receiver = PeerKey(100);
    let speaker_view = View {
        mode: ViewMode::Speaker,
        ..gallery(2)
    };
    rig.join_as(
        100,
        As {
            audio: true,
            view: Some(speaker_view),
            ..As::default()
        },
    );
    for n in 200..231 {
        rig.join_as(
            n,
            As {
                view: thumbnail(),
                ..As::default()
            },
        );
    }
    rig.play(0..60, |_| 127);
    let stage = video_slots(&rig.slots_of(receiver))[0].clone();
    assert_eq!(
        stage.participant_id.as_deref(),
        Some("p1"),
        "nobody spoke yet"
    );

    // p7, in no tile, speaks.
    let before = rig.client(receiver).frames.len();
    let started = rig.now;
    let mut reached = None;
    for f in 60..120 {
        rig.publish(f, |n| if n == 7 { 20 } else { 127 });
        rig.run(Duration::from_millis(33));
        let c = rig.client(receiver);
        if reached.is_none()
            && c.frames[before..]
                .iter()
                .any(|g| g.mid.to_string() == stage.mid && g.data.get(1) == Some(&7))
        {
            reached = Some(rig.now - started);
        }
    }
    let reached = reached.expect("p7's video never reached the stage");
    assert!(reached <= Duration::from_secs(1), "took {reached:?}");
    let table = rig.slots_of(receiver);
    assert_eq!(video_slots(&table)[0].participant_id.as_deref(), Some("p7"));
    assert!(
        table
            .iter()
            .any(|s| s.kind == signaling::MediaKind::Audio
                && s.participant_id.as_deref() == Some("p7")),
        "the speaker is heard: {table:?}"
    );

    // The stage's stream ran on across the switch: no gap in sequence numbers, and its
    // RTP time moved as the clock did.
    let c = rig.client(receiver);
    let on_stage: Vec<_> = c
        .frames
        .iter()
        .filter(|g| g.mid.to_string() == stage.mid)
        .collect();
    let switch = on_stage
        .iter()
        .position(|g| g.data.get(1) == Some(&7))
        .unwrap();
    assert!(switch > 0, "the stage showed p1 before");
    for pair in on_stage[switch - 1..=switch].windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(b.contiguous, "the receiver saw a gap at the switch");
        let rtp_ms = (b.time.as_micros() as i64 - a.time.as_micros() as i64) / 1000;
        let wall_ms = (b.at - a.at).as_millis() as i64;
        assert!(
            (rtp_ms - wall_ms).abs() <= 50,
            "RTP time moved {rtp_ms} ms in {wall_ms} ms"
        );
    }
}

#[test]
fn audio_slots_carry_the_loudest_speakers_and_layers_nobody_needs_are_reported_unwanted() {
    let mut rig = Rig::new();
    // Layers as tiles ask, whatever the rig's estimates.
    rig.sfu.set_bandwidth_cap(false);
    for n in 1..=6 {
        rig.join_as(
            n,
            As {
                audio: true,
                camera: true,
                simulcast: true,
                view: thumbnail(),
            },
        );
    }
    let receiver = PeerKey(100);
    let view = View {
        audio_slots: 2,
        tiles: vec![signaling::TileSize {
            width: 320,
            height: 180,
        }],
        ..gallery(3)
    };
    rig.join_as(
        100,
        As {
            view: Some(view),
            ..As::default()
        },
    );
    // 3 and 5 speak, 4 murmurs: the two loudest are heard.
    let level = |n: u64| match n {
        3 => 10,
        5 => 20,
        4 => 90,
        _ => 127,
    };
    rig.play(0..60, level);
    let heard: std::collections::BTreeSet<String> = rig
        .slots_of(receiver)
        .iter()
        .filter(|s| s.kind == signaling::MediaKind::Audio)
        .filter_map(|s| s.participant_id.clone())
        .collect();
    assert_eq!(heard, ["p3".to_owned(), "p5".to_owned()].into());
    let c = rig.client(receiver);
    let from = c.frames.len();
    rig.play(60..90, level);
    let audio_from: std::collections::BTreeSet<u8> = rig.client(receiver).frames[from..]
        .iter()
        .filter(|g| g.data.len() == 3)
        .map(|g| g.data[1])
        .collect();
    assert_eq!(
        audio_from,
        [3, 5].into(),
        "only the loudest two are forwarded"
    );

    // Everyone watches small tiles: nobody needs anyone's `h` or `m`.
    let told = |rig: &Rig, n: u64| {
        rig.publish_layers
            .iter()
            .rev()
            .find(|(k, _, _)| *k == PeerKey(n))
            .map(|(_, _, l)| l.clone())
    };
    for n in 1..=6 {
        assert_eq!(told(&rig, n), Some(vec!["l".to_owned()]), "publisher p{n}");
    }
    // Someone pins p1 and shows it large: p1 is told that its `h` is needed.
    let big = View {
        tiles: vec![signaling::TileSize {
            width: 1280,
            height: 720,
        }],
        pinned: vec!["p1".into()],
        ..gallery(1)
    };
    rig.join_as(
        101,
        As {
            view: Some(big),
            ..As::default()
        },
    );
    rig.play(90..120, level);
    let p1 = told(&rig, 1).unwrap();
    assert!(p1.contains(&"h".to_owned()), "{p1:?}");
    assert_eq!(told(&rig, 2), Some(vec!["l".to_owned()]));
}

/// A client that declares no view (another WebRTC stack, a bot) gets the default slots
/// in one offer after its first negotiation; a later view with fewer tiles uses the
/// slots it has (no offer), one with more gets the new ones in one offer.
#[test]
fn a_client_without_a_view_gets_the_default_slots_in_one_offer_and_later_views_fit_them() {
    let mut rig = Rig::new();
    for n in 1..=3 {
        rig.join_as(
            n,
            As {
                audio: true,
                camera: true,
                view: thumbnail(),
                ..As::default()
            },
        );
    }
    let receiver = PeerKey(100);
    rig.join_as(100, As::default());
    rig.play(0..30, |_| 127);
    assert_eq!(
        rig.offers_to(receiver),
        1,
        "the default slots, in one offer"
    );
    let slots = rig.slots_of(receiver);
    let default = View::default_for_client();
    let count = |kind: signaling::MediaKind, screen: bool| {
        slots
            .iter()
            .filter(|s| s.kind == kind && s.screen == screen)
            .count()
    };
    assert_eq!(
        count(signaling::MediaKind::Audio, false),
        default.audio_slots as usize
    );
    assert_eq!(
        count(signaling::MediaKind::Video, false),
        default.video_slots as usize
    );
    assert_eq!(count(signaling::MediaKind::Video, true), 1);
    let tiles = |rig: &Rig| -> Vec<Option<String>> {
        video_slots(&rig.slots_of(receiver))
            .iter()
            .map(|s| s.participant_id.clone())
            .collect()
    };
    let mut expected: Vec<Option<String>> = ["p1", "p2", "p3"]
        .iter()
        .map(|p| Some((*p).to_owned()))
        .collect();
    expected.resize(default.video_slots as usize, None);
    assert_eq!(tiles(&rig), expected);
    // The three voices fill its three audio slots, silent or not.
    let mut heard: Vec<String> = rig
        .slots_of(receiver)
        .iter()
        .filter(|s| s.kind == signaling::MediaKind::Audio)
        .filter_map(|s| s.participant_id.clone())
        .collect();
    heard.sort();
    assert_eq!(heard, ["p1", "p2", "p3"]);

    rig.command(SfuCommand::View {
        key: receiver,
        view: gallery(2),
    });
    rig.play(30..60, |_| 127);
    assert_eq!(rig.offers_to(receiver), 1, "fewer tiles: the slots it has");
    let shown: Vec<Option<String>> = tiles(&rig).into_iter().take(3).collect();
    assert_eq!(shown, [Some("p1".to_owned()), Some("p2".to_owned()), None]);

    rig.command(SfuCommand::View {
        key: receiver,
        view: gallery(12),
    });
    rig.play(60..90, |_| 127);
    assert_eq!(
        rig.offers_to(receiver),
        2,
        "more tiles: one offer of the new slots"
    );
    assert_eq!(tiles(&rig).len(), 12);
}

/// A tile that grows asks a keyframe of the larger layer of a simulcast camera it
/// shows, and none of a single-stream camera (forwarded whatever layer is asked for).
#[test]
fn a_view_that_asks_another_layer_asks_a_keyframe_of_simulcast_sources_only() {
    let mut rig = Rig::new();
    rig.sfu.set_bandwidth_cap(false);
    for (n, simulcast) in [(1, false), (2, true)] {
        rig.join_as(
            n,
            As {
                camera: true,
                simulcast,
                view: thumbnail(),
                ..As::default()
            },
        );
    }
    let receiver = PeerKey(100);
    let tiles = |width, height| View {
        tiles: vec![signaling::TileSize { width, height }; 2],
        ..gallery(2)
    };
    rig.join_as(
        100,
        As {
            view: Some(tiles(320, 180)),
            ..As::default()
        },
    );
    // Every keyframe request each publisher got, frame by frame (publishing consumes
    // them).
    let play = |rig: &mut Rig, asked: &mut [Vec<Option<Rid>>; 2], frames: std::ops::Range<u64>| {
        for f in frames {
            for (i, key) in [PeerKey(1), PeerKey(2)].into_iter().enumerate() {
                asked[i].extend(rig.client(key).keyframe_requests.iter().copied());
            }
            rig.publish(f, |_| 127);
            rig.run(Duration::from_millis(33));
        }
    };
    // Both shown, on `l`, and the start's keyframe requests older than the SFU's
    // limit of one per source and layer in 500 ms.
    let mut asked: [Vec<Option<Rid>>; 2] = Default::default();
    play(&mut rig, &mut asked, 0..60);
    let shown: Vec<Option<String>> = video_slots(&rig.slots_of(receiver))
        .iter()
        .map(|s| s.participant_id.clone())
        .collect();
    assert_eq!(shown, [Some("p1".to_owned()), Some("p2".to_owned())]);
    let before = [asked[0].len(), asked[1].len()];

    rig.command(SfuCommand::View {
        key: receiver,
        view: tiles(1280, 720),
    });
    play(&mut rig, &mut asked, 60..63);
    assert_eq!(
        &asked[0][before[0]..],
        &[] as &[Option<Rid>],
        "a single-stream camera was asked for a keyframe"
    );
    assert!(
        asked[1][before[1]..].contains(&Some(Rid::from("h"))),
        "no keyframe of h asked of the simulcast camera: {:?}",
        &asked[1][before[1]..]
    );
}

impl Rig {
    /// Whether the slots last told to `key` carry `participant`'s media of `kind`.
    pub(super) fn hears(
        &self,
        key: PeerKey,
        participant: &str,
        kind: signaling::MediaKind,
    ) -> bool {
        self.slots_of(key)
            .iter()
            .any(|s| s.kind == kind && s.participant_id.as_deref() == Some(participant))
    }
}

/// The speakers the SFU told relay sink `key`, in order.
fn speakers_told(rig: &Rig, key: crate::sfu::SinkKey) -> Vec<String> {
    rig.sink_events
        .iter()
        .filter_map(|(k, e)| match e {
            crate::sfu::RelayEvent::Speaker { participant } if *k == key => {
                Some(participant.to_string())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_recording_sink_is_told_each_new_speaker_and_one_that_attaches_later_who_speaks_now() {
    let mut rig = Rig::new();
    for n in 1..=3 {
        rig.join_as(
            n,
            As {
                audio: true,
                view: thumbnail(),
                ..As::default()
            },
        );
    }
    let meeting = common::ids::MeetingId::parse("rig-meeting").unwrap();
    let early = crate::sfu::SinkKey(1);
    rig.command(SfuCommand::SinkAttach {
        key: early,
        meeting: meeting.clone(),
    });
    // Silence (level 127), then p2 speaks, then p3.
    rig.play(0..30, |_| 127);
    assert_eq!(
        speakers_told(&rig, early),
        Vec::<String>::new(),
        "nobody spoke"
    );
    rig.play(30..90, |n| if n == 2 { 20 } else { 127 });
    assert_eq!(speakers_told(&rig, early), ["p2"]);
    rig.play(90..150, |n| if n == 3 { 20 } else { 127 });
    assert_eq!(speakers_told(&rig, early), ["p2", "p3"]);

    let late = crate::sfu::SinkKey(2);
    rig.command(SfuCommand::SinkAttach { key: late, meeting });
    rig.run(Duration::from_millis(50));
    assert_eq!(speakers_told(&rig, late), ["p3"], "who speaks now, at once");
}
