//! The rig: the SFU core, str0m clients on a virtual clock, and what the core told them.
//! The core's tests use it, and so does `fjord-bench-forward` (feature `rig`), which
//! counts the core's instructions per forwarded packet under callgrind.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ids::{MeetingId, ParticipantId};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec as StrCodec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::{LinkKey, PeerKey, RelayEvent, Sfu, SfuCommand, SfuOutput, SignalOut, SinkKey};

pub const SFU: &str = "127.0.0.1:5000";

pub struct Client {
    pub key: PeerKey,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub pending: Option<SdpPendingOffer>,
    /// Our send-only m-line, if we publish.
    pub sending: Option<Mid>,
    /// Payloads of the frames received, in order.
    pub received: Vec<Vec<u8>>,
    /// The frames received, with the m-line each came on, in order.
    pub frames: Vec<Got>,
    /// Every m-line it sends on (the first is `sending`).
    pub sends: Vec<(MediaKind, Mid)>,
    /// Its video goes in three simulcast layers.
    pub simulcast: bool,
    /// The simulcast layers the SFU asked this publisher for a keyframe of, in order.
    pub keyframe_requests: Vec<Option<str0m::media::Rid>>,
}

/// A frame a client received.
#[derive(Clone, Debug)]
pub struct Got {
    pub mid: Mid,
    pub data: Vec<u8>,
    /// str0m: nothing is missing between this frame and the previous one on the m-line.
    pub contiguous: bool,
    /// Its RTP time, and when it arrived.
    pub time: MediaTime,
    pub at: Instant,
}

/// How a rig participant joins.
#[derive(Clone, Default)]
pub struct As {
    pub audio: bool,
    pub camera: bool,
    pub simulcast: bool,
    /// Declared before its first offer: it receives on slots.
    pub view: Option<signaling::View>,
}

pub struct Rig {
    pub now: Instant,
    pub sfu: Sfu,
    pub clients: Vec<Client>,
    /// Keyframe requests the SFU sent back over relay links.
    pub remote_keyframes: Vec<(LinkKey, u32)>,
    /// Everything else the SFU handed relay links, in order.
    pub link_events: Vec<(LinkKey, RelayEvent)>,
    /// What the SFU handed relay sinks, in order.
    pub sink_events: Vec<(SinkKey, RelayEvent)>,
    /// Offers the SFU made, by client.
    pub offers: Vec<PeerKey>,
    /// Slot tables told to clients, in order.
    pub slot_tables: Vec<(PeerKey, Vec<signaling::Slot>)>,
    /// Layers publishers were told someone needs: (client, mid, layers).
    pub publish_layers: Vec<(PeerKey, String, Vec<String>)>,
    /// Datagrams the SFU sent, in all.
    pub datagrams_out: u64,
    /// Drain the SFU after each datagram it is fed, as the node does when its datagrams
    /// come one at a time (a node that keeps up); otherwise once per step, after every
    /// client's datagrams of the step (a node that fell behind by a step).
    pub drain_each: bool,
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

impl Rig {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            now,
            sfu: Sfu::new(SFU.parse().unwrap(), 0),
            clients: Vec::new(),
            remote_keyframes: Vec::new(),
            link_events: Vec::new(),
            sink_events: Vec::new(),
            offers: Vec::new(),
            slot_tables: Vec::new(),
            publish_layers: Vec::new(),
            datagrams_out: 0,
            drain_each: false,
        }
    }

    /// A rig whose SFU listens on `sfu` (two rigs are two media nodes).
    pub fn at(sfu: &str) -> Self {
        let mut rig = Self::new();
        rig.sfu = Sfu::new(sfu.parse().unwrap(), 0);
        rig
    }

    /// A participant joins with one audio m-line: send-only if it publishes, else
    /// receive-only (so that it has something to negotiate).
    pub fn join(&mut self, n: u64, publish: bool) {
        self.join_as(
            n,
            As {
                audio: publish,
                ..As::default()
            },
        );
    }

    /// A participant joins publishing one VP8 video m-line in three simulcast layers.
    pub fn join_simulcast_publisher(&mut self, n: u64) {
        self.join_as(
            n,
            As {
                camera: true,
                simulcast: true,
                ..As::default()
            },
        );
    }

    /// Participant `n` joins: send-only audio and/or camera m-lines (a receive-only
    /// audio m-line when it sends nothing), its view (if any) said before its offer.
    pub fn join_as(&mut self, n: u64, how: As) {
        let key = PeerKey(n);
        let addr = format!("127.0.{}.{}:4000", n / 200, n % 200 + 1)
            .parse()
            .unwrap();
        let mut rtc = Rtc::builder().build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut change = rtc.sdp_api();
        let mut sends = Vec::new();
        if how.audio {
            let mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            sends.push((MediaKind::Audio, mid));
        }
        if how.camera {
            let simulcast = how.simulcast.then(|| {
                let mut s = Simulcast::new();
                for rid in ["l", "m", "h"] {
                    s.add_send_layer(SimulcastLayer::new(rid));
                }
                s
            });
            let mid =
                change.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
            sends.push((MediaKind::Video, mid));
        }
        if sends.is_empty() {
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = change.apply().unwrap();
        self.clients.push(Client {
            key,
            addr,
            rtc,
            pending: Some(pending),
            sending: sends.first().map(|(_, m)| *m),
            received: Vec::new(),
            frames: Vec::new(),
            sends,
            simulcast: how.simulcast,
            keyframe_requests: Vec::new(),
        });
        self.command(SfuCommand::Join {
            key,
            meeting: MeetingId::parse("rig-meeting").unwrap(),
            participant: ParticipantId::parse(&format!("p{n}")).unwrap(),
            name: format!("P{n}"),
        });
        if let Some(view) = how.view {
            self.command(SfuCommand::View { key, view });
        }
        self.command(SfuCommand::Offer {
            key,
            sdp: offer.to_sdp_string(),
        });
    }

    /// Publisher `key` sends frame `n` on each simulcast layer: some bytes of VP8 on
    /// layer `rid` (its size tells the layers apart), a keyframe when `key_on` says so.
    pub fn send_layers(&mut self, key: PeerKey, n: u64, key_on: impl Fn(&str) -> bool) {
        let now = self.now;
        let c = self.client(key);
        let mid = c
            .sends
            .iter()
            .find(|(kind, _)| *kind == MediaKind::Video)
            .map(|(_, mid)| *mid)
            .expect("a camera");
        // One packet a frame: the rig's clients are not paced for more.
        for (rid, size) in [("l", 200), ("m", 500), ("h", 900)] {
            // VP8 payload header: bit 0 clear for a keyframe.
            let mut frame = vec![0x9d; size];
            frame[0] = if key_on(rid) { 0x10 } else { 0x11 };
            let w = c.rtc.writer(mid).unwrap().rid(rid.into());
            let pt = w
                .payload_params()
                .find(|p| p.spec().codec == StrCodec::Vp8)
                .unwrap()
                .pt();
            w.write(pt, now, MediaTime::from_90khz(n * 3_000), frame)
                .unwrap();
        }
    }

    pub fn command(&mut self, cmd: SfuCommand) {
        let now = self.now;
        self.sfu.handle_command(now, cmd);
    }

    /// Relay link `link` delivers one RTP packet of remote track 7.
    pub fn relay(&mut self, link: LinkKey, rtp: bytes::Bytes) {
        self.command(SfuCommand::RemotePacket {
            link,
            track_id: 7,
            layer: 0,
            rtp,
        });
    }

    pub fn client(&mut self, key: PeerKey) -> &mut Client {
        self.clients.iter_mut().find(|c| c.key == key).unwrap()
    }

    /// Drains the SFU until it says `Timeout`: datagrams go to the clients (handled at
    /// once), signaling is answered. Returns the datagrams it sent.
    pub fn drain_sfu(&mut self) -> usize {
        let mut sent = 0;
        loop {
            match self.sfu.poll_output(self.now) {
                SfuOutput::Timeout(_) => return sent,
                SfuOutput::Transmit {
                    destination,
                    source,
                    contents,
                } => {
                    sent += 1;
                    self.datagrams_out += 1;
                    let now = self.now;
                    let Some(c) = self.clients.iter_mut().find(|c| c.addr == destination) else {
                        continue;
                    };
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination,
                            contents: contents.as_slice().try_into().unwrap(),
                        },
                    );
                    c.rtc.handle_input(input).unwrap();
                }
                SfuOutput::Signal { key, msg } => self.signal(key, msg),
                SfuOutput::Link {
                    link,
                    event: RelayEvent::Keyframe { track_id, .. },
                } => self.remote_keyframes.push((link, track_id)),
                SfuOutput::Link { link, event } => self.link_events.push((link, event)),
                SfuOutput::Sink { key, event } => self.sink_events.push((key, event)),
                SfuOutput::ActiveSpeaker { .. } => {}
            }
        }
    }

    pub fn signal(&mut self, key: PeerKey, msg: SignalOut) {
        let c = self.client(key);
        match msg {
            SignalOut::Answer(sdp) => {
                let pending = c.pending.take().expect("an offer of ours");
                c.rtc
                    .sdp_api()
                    .accept_answer(pending, SdpAnswer::from_sdp_string(&sdp).unwrap())
                    .unwrap();
            }
            SignalOut::Offer(sdp) => {
                self.offers.push(key);
                let c = self.client(key);
                let answer = c
                    .rtc
                    .sdp_api()
                    .accept_offer(SdpOffer::from_sdp_string(&sdp).unwrap())
                    .unwrap();
                let now = self.now;
                self.sfu.handle_command(
                    now,
                    SfuCommand::Answer {
                        key,
                        sdp: answer.to_sdp_string(),
                    },
                );
            }
            SignalOut::Error { answers, message } => panic!("{answers} refused: {message}"),
            SignalOut::Slots(slots) => self.slot_tables.push((key, slots)),
            SignalOut::PublishLayers { mid, layers } => {
                self.publish_layers.push((key, mid, layers))
            }
            _ => {}
        }
    }

    /// Polls every client at `now`: its datagrams reach the SFU, its media is counted.
    pub fn poll_clients(&mut self) {
        let now = self.now;
        let mut one_by_one = Vec::new();
        for c in &mut self.clients {
            c.rtc.handle_input(Input::Timeout(now)).unwrap();
            // Its pacer releases one queue per timeout: a client that sends on several
            // m-lines has those due handled at once, so that each gets its turn.
            let mut immediate = if c.sends.len() > 1 { 0 } else { 8 };
            loop {
                match c.rtc.poll_output().unwrap() {
                    Output::Timeout(t) if t <= now && immediate < 8 => {
                        immediate += 1;
                        c.rtc.handle_input(Input::Timeout(now)).unwrap();
                    }
                    Output::Timeout(_) => break,
                    Output::Transmit(t) if self.drain_each => {
                        one_by_one.push((t.source, t.contents.to_vec()));
                    }
                    Output::Transmit(t) => {
                        self.sfu.handle_datagram(now, t.source, &t.contents);
                    }
                    Output::Event(Event::MediaData(d)) => {
                        c.frames.push(Got {
                            mid: d.mid,
                            data: d.data.to_vec(),
                            contiguous: d.contiguous,
                            time: d.time,
                            at: now,
                        });
                        c.received.push(d.data.to_vec());
                    }
                    Output::Event(Event::KeyframeRequest(r)) => c.keyframe_requests.push(r.rid),
                    Output::Event(_) => {}
                }
            }
        }
        for (source, contents) in one_by_one {
            self.sfu.handle_datagram(now, source, &contents);
            self.drain_sfu();
        }
    }

    /// Runs everything for `d` of virtual time in 5 ms steps.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(5);
            self.poll_clients();
            self.sfu.handle_timeout(self.now);
            self.drain_sfu();
        }
    }

    /// The publisher `key` sends one Opus frame.
    pub fn speak(&mut self, key: PeerKey, payload: &[u8], n: u64) {
        let now = self.now;
        let c = self.client(key);
        let mid = c.sending.unwrap();
        let w = c.rtc.writer(mid).unwrap();
        let pt = w
            .payload_params()
            .find(|p| p.spec().codec == StrCodec::Opus)
            .unwrap()
            .pt();
        w.write(pt, now, MediaTime::from_90khz(n * 1800), payload.to_vec())
            .unwrap();
    }
}

/// A view of one tile of `width` × `height` (its layer: `simulcast::layer_for_size`).
pub fn one_tile(width: u32, height: u32) -> signaling::View {
    signaling::View {
        tiles: vec![signaling::TileSize { width, height }],
        video_slots: 1,
        ..signaling::View::default_for_client()
    }
}
