//! The webrtc-rs side of a session: the peer connection (Opus with the audio level
//! extension, VP8, loopback candidates) and what it reports: ICE gathering, the
//! connection's state, and each remote track, whose packets go to [`Received`].
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpHeaderExtensionCapability, RtpCodecKind};
use tokio::sync::watch;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, Registry, SettingEngineBuilder,
    register_default_interceptors,
};

use super::receive::{AUDIO_KEPT, Received, VIDEO_KEPT};

const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Where the peer connection reports: ICE gathering done, its state, and every remote
/// track, whose packets it counts into `received`.
pub(super) struct Handler {
    pub(super) gathered: watch::Sender<bool>,
    pub(super) state: watch::Sender<RTCPeerConnectionState>,
    pub(super) received: Arc<Mutex<Received>>,
    pub(super) slots: Arc<Mutex<Slots>>,
}

/// Receive slots as the node told them: which m-line each slot's msid stream is (from
/// its offers) and whom each slot's m-line carries now (from `slots`).
#[derive(Default)]
pub(super) struct Slots {
    pub(super) mid_of_stream: std::collections::HashMap<String, String>,
    pub(super) carries: std::collections::HashMap<String, String>,
    /// Each slot's kind (`audio`, `video`), by mid.
    pub(super) kinds: std::collections::HashMap<String, String>,
}

impl Slots {
    /// Notes the msid stream of every m-line of an offer of the node's.
    pub(super) fn read_offer(&mut self, sdp: &str) {
        let mut mid = None;
        for line in sdp.lines() {
            if line.starts_with("m=") {
                mid = None;
            } else if let Some(m) = line.strip_prefix("a=mid:") {
                mid = Some(m.trim().to_owned());
            } else if let (Some(stream), Some(m)) = (
                line.strip_prefix("a=msid:")
                    .and_then(|v| v.split_whitespace().next()),
                &mid,
            ) {
                self.mid_of_stream.insert(stream.to_owned(), m.clone());
            }
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // The media node names a receive slot's stream after the slot, whose participant
        // changes (`slots`); a stream it does not know of is counted under its name.
        let publisher = track.stream_id().await.to_string();
        let slot_mid = self
            .slots
            .lock()
            .expect("slots")
            .mid_of_stream
            .get(&publisher)
            .cloned();
        let slots = self.slots.clone();
        let kind = match track.kind().await {
            RtpCodecKind::Audio => "audio",
            _ => "video",
        };
        let received = self.received.clone();
        let main = track.ssrcs().await;
        tokio::spawn(async move {
            // Packets that came on a slot before `slots` named whom it carries (signaling
            // and media take different paths, and under load `slots` may come second):
            // counted as that participant's once it is named, as a client that shows
            // what it receives at once would.
            let mut held: Vec<(Packet, Vec<u8>)> = Vec::new();
            // Only before the slot's first carrier: a slot that carried someone and now
            // carries nobody drops what still comes (the old carrier's late packets).
            let mut named = false;
            while let Some(ev) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(p) = ev else {
                    continue;
                };
                // A retransmission (RTX, RFC 4588) comes on its own SSRC with the
                // original sequence number first: it counts as that packet.
                let (seq, payload) = if main.contains(&p.header.ssrc) {
                    (p.header.sequence_number, &p.payload[..])
                } else if p.payload.len() > 2 {
                    (
                        u16::from_be_bytes([p.payload[0], p.payload[1]]),
                        &p.payload[2..],
                    )
                } else {
                    continue; // padding
                };
                let packet = Packet {
                    seq,
                    timestamp: p.header.timestamp,
                    marker: p.header.marker,
                    at: Instant::now(),
                };
                let from = match &slot_mid {
                    None => publisher.clone(),
                    Some(mid) => match slots.lock().expect("slots").carries.get(mid) {
                        Some(p) => {
                            named = true;
                            p.clone()
                        }
                        None => {
                            if !named && held.len() < HELD_MAX {
                                held.push((packet, payload.to_vec()));
                            }
                            continue;
                        }
                    },
                };
                let mut received = received.lock().expect("counters");
                let counts = received.entry((from, kind)).or_default();
                for (h, payload) in held.drain(..) {
                    count(counts, kind, &h, &payload);
                }
                count(counts, kind, &packet, payload);
            }
        });
    }
}

/// Packets held at most on a slot not yet named (a few seconds of video).
const HELD_MAX: usize = 1_000;

/// What is counted of a received packet besides its payload.
struct Packet {
    seq: u16,
    timestamp: u32,
    marker: bool,
    at: Instant,
}

/// Counts `p`, a packet of a `kind` track carrying `payload`, into `counts`.
fn count(counts: &mut super::receive::TrackCounts, kind: &str, p: &Packet, payload: &[u8]) {
    let video = kind == "video";
    let keyframe = video && common::vp8::keyframe_start(payload);
    let end = !video || p.marker;
    let clock_rate = if video { 90_000 } else { 48_000 };
    if !video && counts.audio.len() < AUDIO_KEPT {
        counts.audio.push(payload.to_vec());
    }
    if video && (keyframe || !counts.video.is_empty()) && counts.video.len() < VIDEO_KEPT {
        counts.video.push((payload.to_vec(), p.marker));
    }
    counts.add(
        p.seq,
        p.timestamp,
        clock_rate,
        p.at,
        payload.len(),
        end,
        keyframe,
    );
}

/// A peer connection that reports to `handler`.
pub(super) async fn peer_connection(
    handler: Arc<Handler>,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    let mut engine = MediaEngine::default();
    engine.register_default_codecs()?;
    engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.into(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    let settings = SettingEngineBuilder::new()
        .with_include_loopback_candidate(true)
        .build();
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_media_engine(engine)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
            .build()
            .await
            .context("create the peer connection")?,
    );
    Ok(pc)
}
