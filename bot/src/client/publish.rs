//! Publishing: an audio (Opus) and a video (VP8) track on the peer connection, and a
//! task per track that sends a [`Clip`]'s frames in a loop, packetised here so that every
//! frame sent is counted and logged with its RTP timestamp and packet count.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::task::JoinHandle;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::PeerConnection;
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpSender};

use crate::media::{Clip, Frame};

/// One frame a publishing bot sent: its RTP timestamp, how many packets it took, and
/// when (Unix milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentFrame {
    pub kind: &'static str,
    pub timestamp: u32,
    pub packets: u32,
    pub unix_ms: u64,
}

/// A track we publish, and the sender negotiation made for it.
pub(super) type Sender = (Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>);

/// Adds an audio (Opus) and a video (VP8) track to `pc`, to publish. `fresh`: each on
/// a new send-only transceiver (a session under way has receiving ones, which
/// `add_track` would take over instead of adding m-lines).
pub(super) async fn add_tracks(
    pc: &dyn PeerConnection,
    name: &str,
    fresh: bool,
) -> anyhow::Result<Vec<Sender>> {
    add_kinds(pc, name, fresh, &[RtpCodecKind::Audio, RtpCodecKind::Video]).await
}

/// [`add_tracks`] of the given kinds only.
pub(super) async fn add_kinds(
    pc: &dyn PeerConnection,
    name: &str,
    fresh: bool,
    kinds: &[RtpCodecKind],
) -> anyhow::Result<Vec<Sender>> {
    let mut senders = Vec::new();
    for (kind, codec) in [(RtpCodecKind::Audio, opus()), (RtpCodecKind::Video, vp8())] {
        if !kinds.contains(&kind) {
            continue;
        }
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("fjord-bot-{name}"),
            format!("{kind}"),
            format!("{name} {kind}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(rand::random::<u32>()),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        let sender = if fresh {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                ..Default::default()
            };
            pc.add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, Some(init))
                .await
                .context("add a transceiver")?
                .sender()
                .await?
                .context("a new transceiver without a sender")?
        } else {
            pc.add_track(track.clone() as Arc<dyn TrackLocal>)
                .await
                .context("add a track")?
        };
        senders.push((track, sender));
    }
    Ok(senders)
}

/// Sends `clip` on the negotiated tracks of [`add_tracks`], counting audio and video
/// frames in `sent` and logging each in `log`: one task per track.
pub(super) async fn start_sending(
    clip: &Clip,
    senders: Vec<Sender>,
    sent: [Arc<AtomicU64>; 2],
    log: &Arc<Mutex<Vec<SentFrame>>>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let [sent_audio, sent_video] = sent;
    let mut tasks = Vec::new();
    for ((track, sender), (frames, count, level, codec)) in senders.into_iter().zip([
        (
            clip.audio.clone(),
            sent_audio,
            Some(clip.audio_level),
            opus(),
        ),
        (clip.video.clone(), sent_video, None, vp8()),
    ]) {
        let packetizer = packetizer(&track, &sender, &codec).await?;
        tasks.push(tokio::spawn(send_loop(
            track,
            Box::new(packetizer),
            codec.clock_rate,
            frames,
            Sent {
                frames: count,
                log: log.clone(),
                kind: if level.is_some() { "audio" } else { "video" },
            },
            level,
        )));
    }
    Ok(tasks)
}

pub(super) fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// A packetizer of `codec` for the negotiated track: its payload type and SSRC, a
/// random first sequence number.
pub(super) async fn packetizer(
    track: &TrackLocalStaticRTP,
    sender: &Arc<dyn RtpSender>,
    codec: &RTCRtpCodec,
) -> anyhow::Result<impl rtc::rtp::packetizer::Packetizer + use<>> {
    let pt = payload_type(sender).await?;
    let ssrc = *track.ssrcs().await.first().context("track without SSRC")?;
    Ok(rtc::rtp::packetizer::new_packetizer(
        Instant::now(),
        RTP_MTU,
        pt,
        ssrc,
        codec.payloader()?,
        Box::new(rtc::rtp::sequence::new_random_sequencer()),
        codec.clock_rate,
    ))
}

/// The payload type negotiated for the sender's codec.
pub(super) async fn payload_type(sender: &Arc<dyn RtpSender>) -> anyhow::Result<u8> {
    let params = sender.get_parameters().await?;
    let mime = sender
        .track()
        .codings()
        .await
        .first()
        .map(|c| c.codec.mime_type.to_lowercase())
        .unwrap_or_default();
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.to_lowercase() == mime)
        .map(|c| c.payload_type)
        .with_context(|| format!("{mime} was not negotiated"))
}

/// The largest RTP packet the bot sends (as webrtc-rs's sample writer does).
pub(super) const RTP_MTU: usize = 1200;

/// Where a send loop counts what it sent.
struct Sent {
    frames: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<SentFrame>>>,
    kind: &'static str,
}

/// Sends `frames` in a loop at their own pace until the task is aborted, packetized
/// here so that every packet and timestamp sent is counted.
async fn send_loop(
    track: Arc<TrackLocalStaticRTP>,
    mut packetizer: Box<dyn rtc::rtp::packetizer::Packetizer + Send>,
    clock_rate: u32,
    frames: Vec<Frame>,
    sent: Sent,
    audio_level: Option<u8>,
) {
    let Some(period) = frames.first().map(|f| f.duration) else {
        return;
    };
    let extensions: Vec<_> = audio_level
        .map(|level| HeaderExtension::AudioLevel(AudioLevelExtension { level, voice: true }))
        .into_iter()
        .collect();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for f in frames.iter().cycle() {
        tick.tick().await;
        let samples = (f.duration.as_secs_f64() * f64::from(clock_rate)) as u32;
        let Ok(packets) = packetizer.packetize(Instant::now(), &f.data, samples) else {
            return;
        };
        let Some(timestamp) = packets.first().map(|p| p.header.timestamp) else {
            continue;
        };
        let n = packets.len() as u32;
        for p in packets {
            if track
                .write_rtp_with_extensions(p, &extensions)
                .await
                .is_err()
            {
                return;
            }
        }
        sent.frames.fetch_add(1, Ordering::Relaxed);
        sent.log.lock().expect("sent log").push(SentFrame {
            kind: sent.kind,
            timestamp,
            packets: n,
            unix_ms: unix_ms(),
        });
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
