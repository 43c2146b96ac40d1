//! The SFU core against str0m clients on a virtual clock: no sockets, no sleeping. The
//! clients are ordinary (frame-mode) str0m peers; datagrams move between them and the
//! core in memory.
use std::time::Duration;

use common::ids::{MeetingId, ParticipantId};
use relay::Codec;
use str0m::media::MediaKind;
use str0m::{Event, Input, Output};

use super::{
    LinkKey, PeerKey, RelayEvent, RemoteTrackInfo, SfuCommand, SfuOutput, SignalOut, SinkKey,
};

mod slots;

use super::rig::{As, Client, Rig, one_tile};

/// Participant 1 speaks to `receivers` others (2, 3, …): connected, negotiated, 50
/// packets through, each of them past 40.
fn one_speaker_and(receivers: u64) -> Rig {
    let mut rig = Rig::new();
    rig.join(1, true);
    for n in 2..=receivers + 1 {
        rig.join(n, false);
    }
    rig.run(Duration::from_secs(2));
    for n in 0..50 {
        rig.speak(PeerKey(1), &[0xfc, 0xff, 0xfe, n as u8], n);
        rig.run(Duration::from_millis(20));
    }
    for c in &rig.clients[1..] {
        assert!(
            c.received.len() > 40,
            "{:?} got {} frames before the check",
            c.key,
            c.received.len()
        );
    }
    rig
}

/// Participant 1 sends `marker` and the core takes it in and is drained once, with no
/// timeout handled and no virtual time passing; then the receivers read what arrived,
/// at the same instant. Returns the datagrams the drain sent.
fn one_packet_one_drain(rig: &mut Rig, marker: &[u8]) -> usize {
    rig.speak(PeerKey(1), marker, 60);
    let now = rig.now;
    let c = rig.client(PeerKey(1));
    c.rtc.handle_input(Input::Timeout(now)).unwrap();
    let mut datagrams = Vec::new();
    while let Output::Transmit(t) = c.rtc.poll_output().unwrap() {
        datagrams.push((t.source, t.contents.to_vec()));
    }
    assert!(!datagrams.is_empty(), "the publisher sent nothing");
    for (source, d) in datagrams {
        rig.sfu.handle_datagram(now, source, &d);
    }
    let sent = rig.drain_sfu();
    for c in &mut rig.clients[1..] {
        loop {
            match c.rtc.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Event(Event::MediaData(d)) => c.received.push(d.data.to_vec()),
                _ => {}
            }
        }
    }
    sent
}

#[test]
fn a_packet_fed_to_the_core_leaves_for_every_subscriber_in_the_same_drain() {
    let mut rig = one_speaker_and(3);
    let marker = [0xfc, 0x42, 0x42, 0x42];
    let sent = one_packet_one_drain(&mut rig, &marker);
    assert!(
        sent >= 3,
        "the drain sent {sent} datagrams for three subscribers"
    );
    for c in &rig.clients[1..] {
        assert_eq!(
            c.received.last().map(Vec::as_slice),
            Some(&marker[..]),
            "{:?} did not get the packet in the drain that took it in",
            c.key
        );
    }
}

#[test]
fn a_subscriber_moved_in_the_list_by_a_leave_gets_the_next_packet_in_the_same_drain() {
    // Peers are kept in a list and a leave moves the last one into the leaver's place;
    // the routes from each source to its receivers (`Sfu::routes`) name list positions.
    let mut rig = one_speaker_and(4);
    // 2 leaves: 5, the last in the list, takes its place. Then one packet, one drain,
    // before the slots are filled again.
    rig.command(SfuCommand::Leave { key: PeerKey(2) });
    rig.clients.retain(|c| c.key != PeerKey(2));
    let marker = [0xfc, 0x42, 0x42, 0x42];
    one_packet_one_drain(&mut rig, &marker);
    for c in &rig.clients[1..] {
        assert_eq!(
            c.received.last().map(Vec::as_slice),
            Some(&marker[..]),
            "{:?} did not get the packet after another's leave",
            c.key
        );
    }
}

#[test]
fn a_refused_first_offer_leaves_the_session_waiting_for_a_good_one() {
    let mut rig = Rig::new();
    let key = PeerKey(9);
    rig.sfu.handle_command(
        rig.now,
        SfuCommand::Join {
            key,
            meeting: MeetingId::parse("rig-meeting").unwrap(),
            participant: ParticipantId::parse("p9").unwrap(),
            name: "P9".into(),
        },
    );
    rig.sfu.handle_command(
        rig.now,
        SfuCommand::Offer {
            key,
            sdp: "v=0 garbage".into(),
        },
    );
    match rig.sfu.poll_output(rig.now) {
        SfuOutput::Signal {
            msg: SignalOut::Error { answers, message },
            ..
        } => {
            assert_eq!(answers, "offer");
            assert!(message.starts_with("invalid offer SDP: "), "{message}");
            assert!(
                !message.contains("PointerOffset") && !message.contains('\n'),
                "{message}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(rig.sfu.peer_count(), 0);
    // A good offer now joins.
    rig.join(9, true);
    rig.run(Duration::from_millis(500));
    assert_eq!(rig.sfu.peer_count(), 1);
    assert!(
        rig.clients[0].rtc.is_connected(),
        "the session never connected"
    );
}

/// An RTP packet as a relay carries it: plain header, payload.
fn rtp(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> bytes::Bytes {
    let mut d = vec![0x80, u8::from(marker) << 7 | pt];
    d.extend(seq.to_be_bytes());
    d.extend(ts.to_be_bytes());
    d.extend(0x5eed_u32.to_be_bytes());
    d.extend(payload);
    d.into()
}

fn remote_track(link: LinkKey, kind: MediaKind, codec: Codec, clock_rate: u32) -> SfuCommand {
    SfuCommand::RemoteTrack(RemoteTrackInfo {
        link,
        meeting: MeetingId::parse("rig-meeting").unwrap(),
        track_id: 7,
        participant: ParticipantId::parse("far-away").unwrap(),
        name: "Far".into(),
        kind,
        codec,
        clock_rate,
        layers: 1,
    })
}

#[test]
fn a_remote_track_reaches_local_subscribers_like_a_local_one_and_ends_with_its_link() {
    let mut rig = Rig::new();
    let link = LinkKey(77);
    rig.join(1, false);
    rig.join(2, false);
    rig.run(Duration::from_secs(1));
    rig.command(remote_track(link, MediaKind::Audio, Codec::Opus, 48_000));
    rig.run(Duration::from_secs(1));
    // 30 packets of 20 ms, sequence numbers across the 16-bit wrap.
    for i in 0..30u16 {
        let seq = 65_520u16.wrapping_add(i);
        rig.relay(
            link,
            rtp(111, seq, 960 * u32::from(i), false, &[0xfc, i as u8, 0xaa]),
        );
        rig.run(Duration::from_millis(20));
    }
    for c in &rig.clients {
        let got: Vec<u8> = c.received.iter().map(|p| p[1]).collect();
        assert_eq!(got, (0..30).collect::<Vec<u8>>(), "{:?} got {got:?}", c.key);
        assert!(c.received.iter().all(|p| p == &[0xfc, p[1], 0xaa]));
    }
    // The link goes: both subscribers are told their slot no longer carries it.
    let far = |rig: &Rig, key| rig.hears(key, "far-away", signaling::MediaKind::Audio);
    assert!(far(&rig, PeerKey(1)) && far(&rig, PeerKey(2)));
    rig.command(SfuCommand::LinkDown { link });
    rig.run(Duration::from_millis(100));
    assert!(!far(&rig, PeerKey(1)) && !far(&rig, PeerKey(2)));
}

#[test]
fn a_subscriber_waiting_for_a_keyframe_of_a_remote_track_asks_its_link_once_per_interval() {
    let mut rig = Rig::new();
    let link = LinkKey(5);
    rig.join(1, false);
    rig.run(Duration::from_secs(1));
    rig.command(remote_track(link, MediaKind::Video, Codec::Vp8, 90_000));
    rig.run(Duration::from_secs(1));
    // Delta frames only (VP8 P bit set): the subscriber cannot start on them.
    for i in 0..20u16 {
        rig.relay(
            link,
            rtp(96, i, 3000 * u32::from(i), true, &[0x10, 0x01, 0, 0]),
        );
        rig.run(Duration::from_millis(50));
    }
    // Asked when the subscriber's m-line opened, and during one second of delta frames
    // every 500 ms: not once per packet.
    let asked = rig.remote_keyframes.len();
    assert!(
        (2..=4).contains(&asked),
        "asked {asked} times: {:?}",
        rig.remote_keyframes
    );
    assert!(rig.remote_keyframes.iter().all(|k| *k == (link, 7)));
}

/// Moves what `from`'s link `out` was handed to `to`'s link `into`, as the relay would:
/// announcements become remote tracks, media remote packets; subscriptions (`Layers`)
/// go the other way. Returns the media packets moved.
fn bridge(from: &mut Rig, out: LinkKey, to: &mut Rig, into: LinkKey) -> usize {
    let mut media = 0;
    for (link, event) in std::mem::take(&mut from.link_events) {
        if link != out {
            from.link_events.push((link, event));
            continue;
        }
        let cmd = match event {
            RelayEvent::Announce {
                track_id,
                participant,
                name,
                kind,
                clock_rate,
                layers,
                ..
            } => SfuCommand::RemoteTrack(RemoteTrackInfo {
                link: into,
                meeting: MeetingId::parse("rig-meeting").unwrap(),
                track_id,
                participant,
                name,
                kind,
                codec: Codec::Opus,
                clock_rate,
                layers,
            }),
            RelayEvent::Media {
                track_id,
                layer,
                packet,
            } => {
                media += 1;
                SfuCommand::RemotePacket {
                    link: into,
                    track_id,
                    layer,
                    rtp: bytes::Bytes::copy_from_slice(packet.rtp()),
                }
            }
            RelayEvent::Remove { track_id } => SfuCommand::RemoteTrackEnded {
                link: into,
                track_id,
            },
            RelayEvent::Layers { track_id, mask } => SfuCommand::LinkSubscribe {
                link: into,
                track_id,
                mask,
            },
            RelayEvent::Keyframe { track_id, layer } => SfuCommand::LinkKeyframe {
                link: into,
                track_id,
                layer,
            },
            // Sinks only.
            RelayEvent::Speaker { .. } => continue,
        };
        to.command(cmd);
    }
    media
}

#[test]
fn a_track_crosses_a_link_once_for_all_far_subscribers_and_only_while_they_subscribe() {
    // Node A: one publisher. Node B: three subscribers. A link between them, both ways.
    let mut a = Rig::at("127.0.0.1:5000");
    let mut b = Rig::at("127.0.0.2:5000");
    let (a_to_b, b_to_a) = (LinkKey(1), LinkKey(2));
    a.command(SfuCommand::LinkAttach {
        link: a_to_b,
        meeting: MeetingId::parse("rig-meeting").unwrap(),
    });
    b.command(SfuCommand::LinkAttach {
        link: b_to_a,
        meeting: MeetingId::parse("rig-meeting").unwrap(),
    });
    a.join(1, true);
    for n in 11..14 {
        b.join(n, false);
    }
    a.run(Duration::from_secs(1));
    b.run(Duration::from_secs(1));
    let mut crossed = 0;
    let step = |a: &mut Rig, b: &mut Rig, i: u64| {
        a.speak(PeerKey(1), &[0xfc, i as u8, 0xaa], i);
        a.run(Duration::from_millis(20));
        let moved = bridge(a, a_to_b, b, b_to_a);
        b.run(Duration::from_millis(20));
        bridge(b, b_to_a, a, a_to_b);
        moved
    };
    for i in 0..100 {
        crossed += step(&mut a, &mut b, i);
    }
    let got: Vec<usize> = b.clients.iter().map(|c| c.received.len()).collect();
    // Once B's subscribers receive, every frame crosses once and reaches all three.
    assert!(got.iter().all(|n| *n > 50), "B's subscribers got {got:?}");
    assert!(
        crossed <= 100 && crossed >= got[0],
        "{crossed} packets crossed for {got:?} received"
    );
    let last: Vec<u8> = b
        .clients
        .iter()
        .map(|c| c.received.last().unwrap()[1])
        .collect();
    assert_eq!(last, vec![99; 3], "the newest frame reached everyone");
    // Nothing of B's (remote) track goes back over B's own link: no echo.
    assert!(
        !b.link_events
            .iter()
            .any(|(_, e)| matches!(e, RelayEvent::Announce { .. } | RelayEvent::Media { .. })),
        "B announced or sent A's track back: {:?}",
        b.link_events
    );
    // B's subscribers leave: B unsubscribes and nothing crosses any more.
    for n in 11..14 {
        b.command(SfuCommand::Leave { key: PeerKey(n) });
    }
    for i in 100..110 {
        step(&mut a, &mut b, i);
    }
    let after: usize = (110..130).map(|i| step(&mut a, &mut b, i)).sum();
    assert_eq!(after, 0, "media crossed the link with nobody subscribed");
}

#[test]
fn a_link_carries_a_tracks_packets_in_sequence_once_subscribed() {
    let mut a = Rig::at("127.0.0.1:5000");
    let link = LinkKey(3);
    a.command(SfuCommand::LinkAttach {
        link,
        meeting: MeetingId::parse("rig-meeting").unwrap(),
    });
    a.join(1, true);
    a.run(Duration::from_secs(1));
    a.speak(PeerKey(1), &[0xfc, 0, 0xaa], 0);
    a.run(Duration::from_millis(20));
    let Some((_, RelayEvent::Announce { track_id, .. })) = a.link_events.first() else {
        panic!("no announcement: {:?}", a.link_events);
    };
    let track_id = *track_id;
    a.command(SfuCommand::LinkSubscribe {
        link,
        track_id,
        mask: 1,
    });
    a.link_events.clear();
    for i in 1..20 {
        a.speak(PeerKey(1), &[0xfc, i as u8, 0xaa], i);
        a.run(Duration::from_millis(20));
    }
    let seqs: Vec<u16> = a
        .link_events
        .iter()
        .filter_map(|(_, e)| match e {
            RelayEvent::Media { packet, .. } => {
                super::rtp::RtpView::parse(packet.rtp()).map(|v| v.seq)
            }
            _ => None,
        })
        .collect();
    assert!(seqs.len() >= 15, "{seqs:?}");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "the link renumbered the publisher's packets: {seqs:?}"
    );
}

/// The layer sets the SFU asked the far node for, in order.
fn layers_asked(rig: &Rig) -> Vec<u8> {
    rig.link_events
        .iter()
        .filter_map(|(_, e)| match e {
            RelayEvent::Layers { mask, .. } => Some(*mask),
            _ => None,
        })
        .collect()
}

#[test]
fn a_far_simulcast_track_is_asked_for_only_the_layers_local_subscribers_need() {
    let mut rig = Rig::new();
    // Layers by tile size only: no bandwidth estimate in the way.
    rig.sfu.set_bandwidth_cap(false);
    let link = LinkKey(9);
    // One large tile: it wants `h`.
    rig.join_as(
        1,
        As {
            view: Some(one_tile(1280, 720)),
            ..As::default()
        },
    );
    rig.run(Duration::from_secs(1));
    let mut track = remote_track(link, MediaKind::Video, Codec::Vp8, 90_000);
    if let SfuCommand::RemoteTrack(t) = &mut track {
        t.layers = 3;
    }
    rig.command(track);
    rig.run(Duration::from_secs(1));
    // The subscriber has not started: every layer, to start on whichever comes first.
    assert_eq!(layers_asked(&rig), vec![0b111]);
    // Keyframes of `h` (the layer its tile wants) arrive: it starts on h, and only h is
    // needed from then on.
    for i in 0..10u16 {
        rig.command(SfuCommand::RemotePacket {
            link,
            track_id: 7,
            layer: 2,
            rtp: rtp(
                96,
                i,
                3000 * u32::from(i),
                true,
                &[0x10, 0x00, 0x9d, 0x01, 0x2a],
            ),
        });
        rig.run(Duration::from_millis(100));
    }
    assert_eq!(
        layers_asked(&rig).last(),
        Some(&0b100),
        "{:?}",
        layers_asked(&rig)
    );
    // The subscriber's tile shrinks: it wants `l`, so l is asked for (beside h, until
    // the switch), with a keyframe of l.
    rig.remote_keyframes.clear();
    rig.command(SfuCommand::View {
        key: PeerKey(1),
        view: one_tile(320, 180),
    });
    rig.run(Duration::from_millis(100));
    assert_eq!(
        layers_asked(&rig).last(),
        Some(&0b101),
        "{:?}",
        layers_asked(&rig)
    );
    assert_eq!(
        rig.remote_keyframes,
        vec![(link, 7)],
        "a keyframe of l was asked for"
    );
    // The subscriber leaves: nothing is needed any more.
    rig.command(SfuCommand::Leave { key: PeerKey(1) });
    rig.run(Duration::from_millis(100));
    assert_eq!(
        layers_asked(&rig).last(),
        Some(&0),
        "{:?}",
        layers_asked(&rig)
    );
}

/// Publisher 1, a simulcast camera, sends frame `n` on its three layers (30 a second): a
/// keyframe every 3 s, or at once on a layer the SFU asked for since the requests
/// already answered (`asked_seen`, which this moves on); then 33 ms pass.
fn simulcast_frame(rig: &mut Rig, asked_seen: &mut usize, n: u64) {
    let asked: Vec<String> = rig.client(PeerKey(1)).keyframe_requests[*asked_seen..]
        .iter()
        .map(|r| r.map_or_else(|| "h".to_owned(), |r| r.to_string()))
        .collect();
    *asked_seen += asked.len();
    rig.send_layers(PeerKey(1), n, |rid| {
        n.is_multiple_of(90) || asked.iter().any(|a| a == rid)
    });
    rig.run(Duration::from_millis(33));
}

#[test]
fn a_subscriber_switches_simulcast_layers_on_a_keyframe_it_asked_the_publisher_for() {
    let mut rig = Rig::new();
    rig.sfu.set_bandwidth_cap(false);
    rig.join_simulcast_publisher(1);
    // One large tile: it wants `h`.
    rig.join_as(
        2,
        As {
            view: Some(one_tile(1280, 720)),
            ..As::default()
        },
    );
    rig.run(Duration::from_secs(1));
    let mut asked_seen = 0;
    let mut frame = |rig: &mut Rig, n: u64| simulcast_frame(rig, &mut asked_seen, n);
    for n in 0..60 {
        frame(&mut rig, n);
    }
    let sizes = |rig: &mut Rig| -> Vec<usize> {
        rig.client(PeerKey(2))
            .received
            .iter()
            .map(Vec::len)
            .collect()
    };
    let before = sizes(&mut rig);
    assert!(before.len() >= 50, "{} frames", before.len());
    // It starts on the first keyframe (of any layer) and moves up to h, the layer its
    // tile wants, on a keyframe of h it asks for.
    let on_h = before.iter().position(|s| *s == 900).expect("reached h");
    assert!(on_h <= 5, "reached h after {on_h} frames: {before:?}");
    assert!(before[on_h..].iter().all(|s| *s == 900), "{before:?}");
    // The subscriber's tile shrinks: it asks for `l`; the SFU asks the publisher for a
    // keyframe of l and switches there.
    let asked_before = rig.client(PeerKey(1)).keyframe_requests.len();
    rig.command(SfuCommand::View {
        key: PeerKey(2),
        view: one_tile(320, 180),
    });
    for n in 60..90 {
        frame(&mut rig, n);
    }
    let asked = &rig.client(PeerKey(1)).keyframe_requests[asked_before..];
    assert!(
        asked.contains(&Some(str0m::media::Rid::from("l"))),
        "no keyframe request for l: {asked:?}"
    );
    let after = sizes(&mut rig)[before.len()..].to_vec();
    let switched = after.iter().position(|s| *s == 200).expect("switched to l");
    // Within a few frames (the request's round trip), with no frame lost or mixed up.
    assert!(switched <= 3, "switched after {switched} frames: {after:?}");
    assert!(after[..switched].iter().all(|s| *s == 900), "{after:?}");
    assert!(after[switched..].iter().all(|s| *s == 200), "{after:?}");
    assert!(
        after.len() >= 28,
        "frames lost around the switch: {}",
        after.len()
    );
    // The publisher leaves: the subscriber's slot no longer carries it.
    assert!(rig.hears(PeerKey(2), "p1", signaling::MediaKind::Video));
    rig.command(SfuCommand::Leave { key: PeerKey(1) });
    rig.run(Duration::from_millis(100));
    assert!(!rig.hears(PeerKey(2), "p1", signaling::MediaKind::Video));
}

#[test]
fn datagrams_reach_their_peer_after_others_leave_and_peers_move_in_the_shard() {
    let mut rig = Rig::new();
    let publisher = PeerKey(1);
    rig.join(1, true);
    for n in 2..=5 {
        rig.join(n, false);
    }
    rig.run(Duration::from_secs(2));
    let mut frame = 0;
    let mut speak = |rig: &mut Rig, frames: u64| {
        for _ in 0..frames {
            rig.speak(publisher, &[0xfc, 0xff, 0xfe, frame as u8], frame);
            rig.run(Duration::from_millis(20));
            frame += 1;
        }
    };
    speak(&mut rig, 20);
    // Peers 2 and 3 leave: the shard's last peers take their places (the SFU keeps its
    // peers in a vector), and every address it learned must follow its peer.
    for gone in [PeerKey(2), PeerKey(3)] {
        rig.command(SfuCommand::Leave { key: gone });
        rig.clients.retain(|c| c.key != gone);
    }
    rig.run(Duration::from_millis(200));
    let before: Vec<usize> = rig.clients[1..].iter().map(|c| c.received.len()).collect();
    speak(&mut rig, 25);
    for (c, before) in rig.clients[1..].iter().zip(before) {
        let got = c.received.len() - before;
        assert!(
            got >= 23,
            "{:?} got {got} of 25 frames after the others left",
            c.key
        );
    }
    // A peer's keep-alives and receiver reports still reach it: nobody was dropped.
    assert_eq!(rig.sfu.peer_count(), 3);
}

#[test]
fn breakout_rooms_and_mutes_decide_who_gets_a_publishers_packets() {
    let mut rig = Rig::new();
    rig.join(1, true);
    rig.join(2, true);
    rig.join(3, false);
    rig.join(4, false);
    rig.run(Duration::from_secs(2));
    let mut n = 0u64;
    let mut speak = |rig: &mut Rig, frames: u64| {
        for _ in 0..frames {
            rig.speak(PeerKey(1), &[0xfc, 1, n as u8], n);
            rig.speak(PeerKey(2), &[0xfc, 2, n as u8], n);
            rig.run(Duration::from_millis(20));
            n += 1;
        }
    };
    // How many frames subscriber `i` (a client index) got from publisher `who`, since
    // the counts were cleared.
    let from = |rig: &Rig, i: usize, who: u8| {
        rig.clients[i]
            .received
            .iter()
            .filter(|d| d.get(1) == Some(&who))
            .count()
    };
    let clear = |rig: &mut Rig| rig.clients.iter_mut().for_each(|c| c.received.clear());
    speak(&mut rig, 30);
    for i in [2, 3] {
        assert!(
            from(&rig, i, 1) > 20 && from(&rig, i, 2) > 20,
            "all hear all at first"
        );
    }

    // P1 and P3 in room 1; P2 and P4 stay in the main room.
    let meeting = MeetingId::parse("rig-meeting").unwrap();
    let id = |n: u32| ParticipantId::parse(&format!("p{n}")).unwrap();
    rig.command(SfuCommand::Groups {
        meeting: meeting.clone(),
        groups: [(id(1), 1), (id(3), 1)].into_iter().collect(),
    });
    clear(&mut rig);
    speak(&mut rig, 40);
    assert!(from(&rig, 2, 1) > 30, "P3 hears P1 in their room");
    assert_eq!(from(&rig, 2, 2), 0, "P3 does not hear the main room");
    assert!(from(&rig, 3, 2) > 30, "P4 hears P2 in the main room");
    assert_eq!(from(&rig, 3, 1), 0, "P4 does not hear room 1");

    // P1 muted: nobody gets its audio, whatever it sends.
    rig.command(SfuCommand::Mute {
        key: PeerKey(1),
        audio: true,
        video: false,
    });
    clear(&mut rig);
    speak(&mut rig, 30);
    assert_eq!(from(&rig, 2, 1), 0, "a muted publisher's audio is dropped");

    // The rooms close and P1 unmutes: all hear all again.
    rig.command(SfuCommand::Groups {
        meeting,
        groups: Default::default(),
    });
    rig.command(SfuCommand::Mute {
        key: PeerKey(1),
        audio: false,
        video: false,
    });
    clear(&mut rig);
    speak(&mut rig, 40);
    for i in [2, 3] {
        assert!(
            from(&rig, i, 1) > 30 && from(&rig, i, 2) > 30,
            "all hear all again: {i} got {} and {}",
            from(&rig, i, 1),
            from(&rig, i, 2)
        );
    }
}

/// A single-layer camera above what a subscriber's estimate covers (it starts at
/// `INITIAL_ESTIMATE_KBPS`, before any feedback) goes out as it comes, not held in the
/// subscriber's pacer queue: the estimate chooses layers, a single layer has no lower
/// one, and pacing (`PACING_FACTOR` over the estimate) only smooths bursts.
#[test]
fn a_single_layer_above_the_subscribers_estimate_is_not_queued_behind_it() {
    let mut rig = Rig::new();
    rig.join_as(
        1,
        As {
            camera: true,
            ..As::default()
        },
    );
    rig.join_as(
        2,
        As {
            view: Some(one_tile(1280, 720)),
            ..As::default()
        },
    );
    rig.run(Duration::from_secs(1));
    // 1.14 Mbit/s: a frame of 5,000 bytes (5 packets) every 35 ms (the rig's 33 ms run
    // is seven 5 ms steps), each naming itself in its second and third bytes; a
    // keyframe a second or when asked for. The subscriber's estimate stays at or below
    // 1 Mbit/s (checked below); at str0m's own pacing factor (1.1) the frames fell
    // behind by over a second.
    let mut sent_at = Vec::new();
    for n in 0..90u16 {
        let now = rig.now;
        let c = rig.client(PeerKey(1));
        let asked = !c.keyframe_requests.is_empty();
        c.keyframe_requests.clear();
        let mid = c.sending.expect("a camera");
        let mut frame = vec![0x9d; 5_000];
        frame[0] = if asked || n % 30 == 0 { 0x10 } else { 0x11 };
        frame[1..3].copy_from_slice(&n.to_be_bytes());
        let w = c.rtc.writer(mid).unwrap();
        let pt = w
            .payload_params()
            .find(|p| p.spec().codec == str0m::format::Codec::Vp8)
            .unwrap()
            .pt();
        w.write(
            pt,
            now,
            str0m::media::MediaTime::from_90khz(u64::from(n) * 3_000),
            frame,
        )
        .unwrap();
        sent_at.push(now);
        rig.run(Duration::from_millis(33));
    }
    rig.run(Duration::from_millis(500));
    let got: Vec<(u16, Duration)> = rig
        .client(PeerKey(2))
        .frames
        .iter()
        .filter(|g| g.data.len() == 5_000)
        .map(|g| {
            let n = u16::from_be_bytes([g.data[1], g.data[2]]);
            (n, g.at - sent_at[usize::from(n)])
        })
        .collect();
    // The premise: the camera is above what the estimate covers.
    let estimate = rig
        .sfu
        .peers
        .iter()
        .find(|p| p.key == PeerKey(2))
        .unwrap()
        .estimate_bps;
    assert!(
        estimate.is_some_and(|e| e <= 1_000_000),
        "the subscriber's estimate: {estimate:?}"
    );
    assert!(got.len() >= 85, "{} of 90 frames: {got:?}", got.len());
    let worst = got.iter().map(|(_, d)| *d).max().unwrap();
    assert!(
        worst < Duration::from_millis(150),
        "a frame took {worst:?} through the node: {got:?}"
    );
}

/// The payload sizes of the video packets the SFU handed sink `key` (the rig's layers
/// send 200, 500 and 900 bytes of VP8 a frame: the size tells which layer came).
fn sink_layers_seen(rig: &Rig, key: SinkKey) -> Vec<&'static str> {
    rig.sink_events
        .iter()
        .filter_map(|(k, e)| match e {
            RelayEvent::Media { packet, .. } if *k == key => {
                let n = packet.rtp().len() - 12;
                Some(match n {
                    0..300 => "l",
                    300..700 => "m",
                    _ => "h",
                })
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_recording_sink_gets_the_highest_layer_until_it_says_its_tile_then_the_layer_that_fits() {
    let mut rig = Rig::new();
    rig.join_simulcast_publisher(1);
    let sink = SinkKey(5);
    rig.command(SfuCommand::SinkAttach {
        key: sink,
        meeting: MeetingId::parse("rig-meeting").unwrap(),
    });
    rig.run(Duration::from_secs(1));
    let mut asked_seen = 0;
    let mut frame = |rig: &mut Rig, n: u64| simulcast_frame(rig, &mut asked_seen, n);
    for n in 0..30 {
        frame(&mut rig, n);
    }
    let before = sink_layers_seen(&rig, sink);
    assert!(before.len() >= 25, "{before:?}");
    // It starts on the first keyframe of any layer and moves to h on h's next one.
    let on_h = before.iter().position(|l| *l == "h").expect("reached h");
    assert!(on_h <= 3, "reached h after {on_h} frames: {before:?}");
    assert!(before[on_h..].iter().all(|l| *l == "h"), "{before:?}");
    let track_id = rig
        .sink_events
        .iter()
        .find_map(|(_, e)| match e {
            RelayEvent::Media { track_id, .. } => Some(*track_id),
            _ => None,
        })
        .unwrap();

    // Four participants now: the track's tile is 640x360, which the middle layer fits.
    // A keyframe of m is asked for, and the sink switches on it, losing no frame.
    let asked_before = rig.client(PeerKey(1)).keyframe_requests.len();
    rig.command(SfuCommand::SinkLayer {
        key: sink,
        track_id,
        rid: crate::sfu::layer_for_size(640, 360),
    });
    for n in 30..60 {
        frame(&mut rig, n);
    }
    let asked = &rig.client(PeerKey(1)).keyframe_requests[asked_before..];
    assert!(
        asked.contains(&Some(str0m::media::Rid::from("m"))),
        "no keyframe of m asked for: {asked:?}"
    );
    let after = sink_layers_seen(&rig, sink)[before.len()..].to_vec();
    let switched = after.iter().position(|l| *l == "m").expect("switched to m");
    assert!(switched <= 3, "switched after {switched} frames: {after:?}");
    assert!(after[switched..].iter().all(|l| *l == "m"), "{after:?}");
    assert!(
        after.len() >= 28,
        "frames lost around the switch: {after:?}"
    );
    // The publisher is told the layers someone needs: m for the sink, no longer h.
    let told = rig
        .publish_layers
        .iter()
        .rev()
        .find(|(k, _, _)| *k == PeerKey(1))
        .map(|(_, _, l)| l.clone());
    assert_eq!(told, Some(vec!["l".to_owned(), "m".to_owned()]));
}
