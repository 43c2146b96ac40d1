//! The webrtc-rs side of a session: the peer connection (Opus with the audio level
//! extension, VP8, loopback candidates) and what it reports: ICE gathering, the
//! connection's state, and each remote track, whose packets go to [`Received`].
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
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
    /// Live participants: where every received packet also goes.
    pub(super) tap: Option<tokio::sync::mpsc::Sender<super::Tapped>>,
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
        let tap = self.tap.clone();
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
            let mut asks = KeyframeAsk::default();
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
                if kind == "video"
                    && let Some(media_ssrc) = asks.due(payload, Instant::now(), main.first())
                {
                    let pli = PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc,
                    };
                    // The track ends with the connection: nothing left to ask then.
                    let _ = track.write_rtcp(vec![Box::new(pli)]).await;
                }
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
                if let Some(tap) = &tap {
                    // A tap that cannot keep up loses packets, as a late receiver does.
                    let _ = tap.try_send(super::Tapped {
                        from: from.clone(),
                        kind,
                        seq: packet.seq,
                        timestamp: packet.timestamp,
                        marker: packet.marker,
                        payload: payload.to_vec(),
                    });
                }
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

/// How long a video track goes without a keyframe before the bot asks for one, and
/// then between its asks.
const KEYFRAME_PATIENCE: Duration = Duration::from_secs(1);

/// A browser's decoder asks (RTCP PLI) for a keyframe while it has none to start from;
/// so does the bot, until a video track's first keyframe. The node asks the publisher
/// for one when a subscriber starts, but that keyframe can come before the bot's end of
/// DTLS is up and be dropped, and a camera sends the next only when asked.
#[derive(Default)]
struct KeyframeAsk {
    keyframe_seen: bool,
    first_packet: Option<Instant>,
    last_ask: Option<Instant>,
}

impl KeyframeAsk {
    /// The SSRC to ask a keyframe of, when a packet with `payload` arriving `now`
    /// leaves the track waiting too long for its first keyframe.
    fn due(&mut self, payload: &[u8], now: Instant, ssrc: Option<&u32>) -> Option<u32> {
        if self.keyframe_seen || common::vp8::keyframe_start(payload) {
            self.keyframe_seen = true;
            return None;
        }
        let since = *self.first_packet.get_or_insert(now);
        let waited = now.saturating_duration_since(self.last_ask.unwrap_or(since));
        if waited < KEYFRAME_PATIENCE {
            return None;
        }
        self.last_ask = Some(now);
        ssrc.copied()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_video_track_asks_for_a_keyframe_each_second_until_its_first_one_and_then_never() {
        let delta = common::vp8::example(true, false, 1, 0);
        let key = common::vp8::example(true, true, 2, 0);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut asks = KeyframeAsk::default();
        assert_eq!(asks.due(&delta, at(0), Some(&7)), None, "not at once");
        assert_eq!(asks.due(&delta, at(900), Some(&7)), None);
        assert_eq!(
            asks.due(&delta, at(1_000), Some(&7)),
            Some(7),
            "after a second"
        );
        assert_eq!(
            asks.due(&delta, at(1_500), Some(&7)),
            None,
            "not again at once"
        );
        assert_eq!(
            asks.due(&delta, at(2_000), Some(&7)),
            Some(7),
            "a second later"
        );
        assert_eq!(asks.due(&key, at(2_100), Some(&7)), None);
        assert_eq!(
            asks.due(&delta, at(9_000), Some(&7)),
            None,
            "never after a keyframe"
        );

        let mut lucky = KeyframeAsk::default();
        assert_eq!(lucky.due(&key, at(0), Some(&7)), None);
        assert_eq!(lucky.due(&delta, at(5_000), Some(&7)), None);
    }
}
