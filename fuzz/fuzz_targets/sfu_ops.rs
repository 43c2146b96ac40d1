//! The SFU core under a sequence of whatever its driver can hand it: joins of real str0m
//! clients (who connect, negotiate and publish), garbage offers and answers, garbage
//! datagrams from a client's address and from a stranger's, layer choices, leaves, time
//! passing, relay sinks and links that attach, subscribe, ask for keyframes, announce
//! tracks and send garbage RTP. Nothing may panic, and the core never sends a datagram to
//! an address that is not one of its clients' (a stranger's garbage gets no answer).
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use common::ids::{MeetingId, ParticipantId};
use libfuzzer_sys::fuzz_target;
use media_node::sfu::{
    LinkKey, PeerKey, RemoteTrackInfo, Sfu, SfuCommand, SfuOutput, SignalOut, SinkKey,
};
use relay::Codec;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SFU: &str = "127.0.0.1:5000";
/// Garbage from an address that never joined.
const STRANGER: &str = "127.0.9.9:4000";
/// Client slots; each join takes a fresh key, as signaling sessions do.
const SLOTS: u8 = 4;
/// A run's virtual time is bounded, so that each input runs in milliseconds.
const MAX_STEPS: u32 = 600;
const STEP: Duration = Duration::from_millis(5);

#[derive(Arbitrary, Debug)]
enum Op {
    Join {
        slot: u8,
        video: bool,
        publish: bool,
        simulcast: bool,
    },
    /// The client adds an m-line and offers again (a screen share, a camera turned on).
    Renegotiate {
        slot: u8,
        video: bool,
    },
    Offer {
        slot: u8,
        sdp: String,
    },
    Answer {
        slot: u8,
        sdp: String,
    },
    Datagram {
        slot: u8,
        bytes: Vec<u8>,
    },
    StrangerDatagram {
        bytes: Vec<u8>,
    },
    /// The client publishes a frame of these bytes on its sending m-line.
    Publish {
        slot: u8,
        payload: Vec<u8>,
        keyframe: bool,
    },
    Layer {
        slot: u8,
        mid: String,
        width: u16,
        height: u16,
    },
    Leave {
        slot: u8,
    },
    Tick {
        steps: u8,
    },
    Sink {
        key: u8,
        attach: bool,
    },
    SinkKeyframe {
        key: u8,
        track_id: u32,
    },
    Link {
        link: u8,
        attach: bool,
    },
    LinkSubscribe {
        link: u8,
        track_id: u32,
        mask: u8,
    },
    LinkKeyframe {
        link: u8,
        track_id: u32,
        layer: u8,
    },
    RemoteTrack {
        link: u8,
        track_id: u32,
        video: bool,
        codec: u8,
        clock_rate: u32,
        layers: u8,
    },
    RemoteTrackEnded {
        link: u8,
        track_id: u32,
    },
    RemotePacket {
        link: u8,
        track_id: u32,
        layer: u8,
        rtp: Vec<u8>,
    },
    /// The client says what it shows: it moves onto receive slots.
    View {
        slot: u8,
        video_slots: u8,
        audio_slots: u8,
        speaker: bool,
        page: u16,
        /// Which other slots' participants it pins (bit set).
        pinned: u8,
        tile: u16,
    },
}

struct Client {
    key: PeerKey,
    addr: SocketAddr,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    sending: Option<(Mid, MediaKind)>,
    frames: u64,
}

struct World {
    now: Instant,
    steps: u32,
    sfu: Sfu,
    slots: Vec<Option<Client>>,
    next_key: u64,
    /// Media frames the clients received.
    received: u64,
}

fn meeting() -> MeetingId {
    MeetingId::parse("fuzz-meeting").expect("a meeting id")
}

impl World {
    fn new() -> Self {
        Self {
            now: Instant::now(),
            steps: 0,
            sfu: Sfu::new(SFU.parse().expect("an address"), 0),
            slots: (0..SLOTS).map(|_| None).collect(),
            next_key: 1,
            received: 0,
        }
    }

    fn command(&mut self, cmd: SfuCommand) {
        self.sfu.handle_command(self.now, cmd);
    }

    fn client(&mut self, slot: u8) -> Option<&mut Client> {
        self.slots[usize::from(slot % SLOTS)].as_mut()
    }

    fn join(&mut self, slot: u8, video: bool, publish: bool, simulcast: bool) {
        let i = usize::from(slot % SLOTS);
        if self.slots[i].is_some() {
            return;
        }
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let addr: SocketAddr = format!("127.0.1.{}:4000", i + 1)
            .parse()
            .expect("an address");
        let mut rtc = Rtc::builder().build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("a candidate"));
        let kind = if video {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        let dir = if publish {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let layers = (video && publish && simulcast).then(|| {
            let mut s = Simulcast::new();
            for rid in ["l", "m", "h"] {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let mut change = rtc.sdp_api();
        let mid = change.add_media(kind, dir, None, None, layers);
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        self.slots[i] = Some(Client {
            key,
            addr,
            rtc,
            pending: Some(pending),
            sending: publish.then_some((mid, kind)),
            frames: 0,
        });
        self.command(SfuCommand::Join {
            key,
            meeting: meeting(),
            participant: ParticipantId::parse(&format!("p{}", key.0)).expect("an id"),
            name: format!("P{}", key.0),
        });
        self.command(SfuCommand::Offer {
            key,
            sdp: offer.to_sdp_string(),
        });
    }

    fn renegotiate(&mut self, slot: u8, video: bool) {
        let Some(c) = self.client(slot) else { return };
        if c.pending.is_some() {
            return;
        }
        let kind = if video {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        let mut change = c.rtc.sdp_api();
        change.add_media(kind, Direction::SendOnly, None, None, None);
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        c.pending = Some(pending);
        let key = c.key;
        self.command(SfuCommand::Offer {
            key,
            sdp: offer.to_sdp_string(),
        });
    }

    fn publish(&mut self, slot: u8, payload: Vec<u8>, keyframe: bool) {
        let now = self.now;
        let Some(c) = self.client(slot) else { return };
        let Some((mid, kind)) = c.sending else { return };
        let Some(w) = c.rtc.writer(mid) else { return };
        let want = if kind == MediaKind::Audio {
            str0m::format::Codec::Opus
        } else {
            str0m::format::Codec::Vp8
        };
        let Some(pt) = w
            .payload_params()
            .find(|p| p.spec().codec == want)
            .map(|p| p.pt())
        else {
            return;
        };
        let mut frame = payload;
        frame.truncate(4000);
        if frame.is_empty() {
            return;
        }
        if kind == MediaKind::Video {
            // The VP8 payload header's bit 0 tells a keyframe.
            frame[0] = (frame[0] & !1) | u8::from(!keyframe);
        }
        c.frames += 1;
        let at = MediaTime::from_90khz(c.frames * 3_000);
        let _ = w.write(pt, now, at, frame);
    }

    /// Moves everything that is ready between the core and the clients, at this instant.
    fn settle(&mut self) {
        for _ in 0..8 {
            let mut moved = self.drain_sfu();
            moved |= self.poll_clients();
            if !moved {
                break;
            }
        }
    }

    fn drain_sfu(&mut self) -> bool {
        let mut moved = false;
        loop {
            match self.sfu.poll_output(self.now) {
                SfuOutput::Timeout(_) => return moved,
                SfuOutput::Transmit {
                    destination,
                    source,
                    contents,
                } => {
                    moved = true;
                    let now = self.now;
                    let known = (0..SLOTS)
                        .any(|i| destination == format!("127.0.1.{}:4000", i + 1).parse().unwrap());
                    assert!(
                        known,
                        "the SFU sent a datagram to {destination}, no client of it"
                    );
                    let Some(c) = self
                        .slots
                        .iter_mut()
                        .flatten()
                        .find(|c| c.addr == destination)
                    else {
                        continue;
                    };
                    let Ok(contents) = contents.as_slice().try_into() else {
                        continue;
                    };
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination,
                            contents,
                        },
                    );
                    let _ = c.rtc.handle_input(input);
                }
                SfuOutput::Signal { key, msg } => {
                    moved = true;
                    self.signal(key, msg);
                }
                SfuOutput::Sink { .. }
                | SfuOutput::Link { .. }
                | SfuOutput::ActiveSpeaker { .. } => {}
            }
        }
    }

    fn signal(&mut self, key: PeerKey, msg: SignalOut) {
        let Some(c) = self.slots.iter_mut().flatten().find(|c| c.key == key) else {
            return;
        };
        match msg {
            SignalOut::Answer(sdp) => {
                let (Some(pending), Ok(answer)) =
                    (c.pending.take(), SdpAnswer::from_sdp_string(&sdp))
                else {
                    return;
                };
                let _ = c.rtc.sdp_api().accept_answer(pending, answer);
            }
            SignalOut::Offer(sdp) => {
                if c.pending.is_some() {
                    return; // glare: the client's own offer is out; the core answers it first
                }
                let Ok(offer) = SdpOffer::from_sdp_string(&sdp) else {
                    return;
                };
                let Ok(answer) = c.rtc.sdp_api().accept_offer(offer) else {
                    return;
                };
                let now = self.now;
                self.sfu.handle_command(
                    now,
                    SfuCommand::Answer {
                        key,
                        sdp: answer.to_sdp_string(),
                    },
                );
            }
            _ => {}
        }
    }

    fn poll_clients(&mut self) -> bool {
        let now = self.now;
        let mut moved = false;
        for c in self.slots.iter_mut().flatten() {
            if !c.rtc.is_alive() || c.rtc.handle_input(Input::Timeout(now)).is_err() {
                continue;
            }
            loop {
                match c.rtc.poll_output() {
                    Ok(Output::Timeout(_)) | Err(_) => break,
                    Ok(Output::Transmit(t)) => {
                        moved = true;
                        self.sfu.handle_datagram(now, t.source, &t.contents);
                    }
                    Ok(Output::Event(Event::MediaData(_))) => self.received += 1,
                    Ok(Output::Event(_)) => {}
                }
            }
        }
        moved
    }

    fn tick(&mut self, steps: u8) {
        for _ in 0..steps {
            if self.steps >= MAX_STEPS {
                return;
            }
            self.steps += 1;
            self.now += STEP;
            self.sfu.handle_timeout(self.now);
            self.settle();
        }
    }

    fn apply(&mut self, op: Op) {
        let live = |w: &mut World, slot: u8| w.client(slot).map(|c| c.key);
        match op {
            Op::Join {
                slot,
                video,
                publish,
                simulcast,
            } => self.join(slot, video, publish, simulcast),
            Op::Renegotiate { slot, video } => self.renegotiate(slot, video),
            Op::Offer { slot, sdp } => {
                if let Some(key) = live(self, slot) {
                    self.command(SfuCommand::Offer { key, sdp });
                }
            }
            Op::Answer { slot, sdp } => {
                if let Some(key) = live(self, slot) {
                    self.command(SfuCommand::Answer { key, sdp });
                }
            }
            Op::Datagram { slot, bytes } => {
                if let Some(addr) = self.client(slot).map(|c| c.addr) {
                    self.sfu.handle_datagram(self.now, addr, &bytes);
                }
            }
            Op::StrangerDatagram { bytes } => {
                let from: SocketAddr = STRANGER.parse().expect("an address");
                self.sfu.handle_datagram(self.now, from, &bytes);
            }
            Op::Publish {
                slot,
                payload,
                keyframe,
            } => self.publish(slot, payload, keyframe),
            Op::Layer {
                slot,
                mid,
                width,
                height,
            } => {
                // Signaling refuses a longer mid before the core sees it.
                if let Some(key) = live(self, slot).filter(|_| mid.len() <= 16) {
                    let rid = media_node::sfu::layer_for_size(width.into(), height.into());
                    self.command(SfuCommand::Layer { key, mid, rid });
                }
            }
            Op::Leave { slot } => {
                if let Some(c) = self.slots[usize::from(slot % SLOTS)].take() {
                    self.command(SfuCommand::Leave { key: c.key });
                }
            }
            Op::Tick { steps } => self.tick(steps % 64),
            Op::Sink { key, attach } => {
                let key = SinkKey(u64::from(key % 2));
                self.command(if attach {
                    SfuCommand::SinkAttach {
                        key,
                        meeting: meeting(),
                    }
                } else {
                    SfuCommand::SinkDetach { key }
                });
            }
            Op::SinkKeyframe { key, track_id } => self.command(SfuCommand::SinkKeyframe {
                key: SinkKey(u64::from(key % 2)),
                track_id,
            }),
            Op::Link { link, attach } => {
                let link = LinkKey(u64::from(link % 2));
                self.command(if attach {
                    SfuCommand::LinkAttach {
                        link,
                        meeting: meeting(),
                    }
                } else {
                    SfuCommand::LinkDown { link }
                });
            }
            Op::LinkSubscribe {
                link,
                track_id,
                mask,
            } => self.command(SfuCommand::LinkSubscribe {
                link: LinkKey(u64::from(link % 2)),
                track_id,
                mask,
            }),
            Op::LinkKeyframe {
                link,
                track_id,
                layer,
            } => self.command(SfuCommand::LinkKeyframe {
                link: LinkKey(u64::from(link % 2)),
                track_id,
                // As the mesh passes it on.
                layer: layer.min(2),
            }),
            Op::RemoteTrack {
                link,
                track_id,
                video,
                codec,
                clock_rate,
                layers,
            } => {
                // What the mesh lets through of an announcement.
                if track_id > relay::wire::MAX_TRACK_ID || !(1_000..=192_000).contains(&clock_rate)
                {
                    return;
                }
                let codec = Codec::ALL[usize::from(codec) % Codec::ALL.len()];
                self.command(SfuCommand::RemoteTrack(RemoteTrackInfo {
                    link: LinkKey(u64::from(link % 2)),
                    meeting: meeting(),
                    track_id,
                    participant: ParticipantId::parse(&format!("far-{}", track_id % 4))
                        .expect("an id"),
                    name: "Far".into(),
                    kind: if video {
                        MediaKind::Video
                    } else {
                        MediaKind::Audio
                    },
                    codec,
                    clock_rate,
                    layers: layers.min(3),
                }));
            }
            Op::RemoteTrackEnded { link, track_id } => self.command(SfuCommand::RemoteTrackEnded {
                link: LinkKey(u64::from(link % 2)),
                track_id,
            }),
            Op::RemotePacket {
                link,
                track_id,
                layer,
                mut rtp,
            } => {
                // What the relay's datagram decoding lets through: RTP version 2, a whole header.
                if rtp.len() < 12 {
                    return;
                }
                rtp[0] = (rtp[0] & 0x3f) | 0x80;
                self.command(SfuCommand::RemotePacket {
                    link: LinkKey(u64::from(link % 2)),
                    track_id: track_id & relay::wire::MAX_TRACK_ID,
                    layer,
                    rtp: bytes::Bytes::from(rtp),
                });
            }
            Op::View {
                slot,
                video_slots,
                audio_slots,
                speaker,
                page,
                pinned,
                tile,
            } => {
                let view = signaling::View {
                    mode: if speaker {
                        signaling::ViewMode::Speaker
                    } else {
                        signaling::ViewMode::Gallery
                    },
                    video_slots: video_slots.into(),
                    audio_slots: audio_slots.into(),
                    page: page.into(),
                    tiles: vec![signaling::TileSize {
                        width: tile.into(),
                        height: u32::from(tile) * 9 / 16,
                    }],
                    // Participants by the rig's naming, present or not.
                    pinned: (0..8u8)
                        .filter(|b| pinned & (1 << b) != 0)
                        .map(|b| format!("p{b}"))
                        .collect(),
                };
                // Signaling refuses a view outside the limits before the core sees it.
                if let (Some(key), Ok(())) = (live(self, slot), view.check()) {
                    self.command(SfuCommand::View { key, view });
                }
            }
        }
        self.settle();
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut world = World::new();
    // Three participants connected and two publishing before the fuzzer's own operations,
    // so that every input starts from a meeting whose media flows.
    world.join(0, true, true, true);
    world.join(1, false, true, false);
    world.join(2, true, false, false);
    world.tick(50);
    for n in 0..6 {
        world.publish(0, vec![0x9d; 300], n == 0);
        world.publish(1, vec![0xfc, 0xff, 0xfe], false);
        world.tick(4);
    }
    assert!(
        world.received > 0,
        "no media reached a subscriber before the operations"
    );
    for op in ops.into_iter().take(64) {
        world.apply(op);
    }
    world.tick(20);
});
