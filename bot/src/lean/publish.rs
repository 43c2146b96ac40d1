//! What lean publishers send: the clip packetised once up front ([`Packets`], shared by
//! every publisher), and each publisher's place in it, written to its streams as frames
//! fall due ([`Publish`]).
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};

use super::Counters;
use crate::media::Clip;

/// Largest VP8 payload per packet (descriptor included), as browsers packetise.
const VP8_MTU: usize = 1_100;

/// The clip as RTP payloads, made once and shared by every publisher.
pub(super) struct Packets {
    /// One payload per 20 ms Opus frame.
    audio: Vec<Arc<[u8]>>,
    /// Per video frame: its payloads (the last one carries the marker bit).
    video: Vec<Vec<Arc<[u8]>>>,
    /// RTP time per video frame (90 kHz).
    video_ticks: u32,
    video_period: Duration,
    audio_level: u8,
}

impl Packets {
    pub(super) fn of(clip: &Clip, fps: u32) -> Self {
        let audio = clip.audio.iter().map(|f| Arc::from(&f.data[..])).collect();
        let video = clip
            .video
            .iter()
            .map(|f| {
                f.data
                    .chunks(VP8_MTU - 1)
                    .enumerate()
                    .map(|(i, chunk)| {
                        // RFC 7741 §4.2: S (start of partition) on the first packet only.
                        let mut p = Vec::with_capacity(chunk.len() + 1);
                        p.push(if i == 0 { 0x10 } else { 0x00 });
                        p.extend_from_slice(chunk);
                        Arc::from(p)
                    })
                    .collect()
            })
            .collect();
        Self {
            audio,
            video,
            video_ticks: 90_000 / fps.max(1),
            video_period: Duration::from_secs(1) / fps.max(1),
            audio_level: clip.audio_level,
        }
    }
}

/// A publisher's place in the clip and its outgoing streams.
pub(super) struct Publish {
    packets: Arc<Packets>,
    /// (kind, mid) of our send-only m-lines; their SSRCs and payload types once known.
    mids: Vec<(MediaKind, Mid)>,
    streams: Vec<(MediaKind, Ssrc, Pt)>,
    audio_at: usize,
    video_at: usize,
    audio_seq: u64,
    video_seq: u64,
    audio_time: u32,
    video_time: u32,
    next_audio: tokio::time::Instant,
    next_video: tokio::time::Instant,
}

impl Publish {
    pub(super) fn new(packets: Arc<Packets>, mids: Vec<(MediaKind, Mid)>) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            packets,
            mids,
            streams: Vec::new(),
            audio_at: 0,
            video_at: 0,
            audio_seq: u64::from(rand::random::<u16>()),
            video_seq: u64::from(rand::random::<u16>()),
            audio_time: rand::random(),
            video_time: rand::random(),
            next_audio: now,
            next_video: now,
        }
    }

    pub(super) fn due(&self) -> tokio::time::Instant {
        self.next_audio.min(self.next_video)
    }

    /// Looks up our streams (once negotiation made them).
    fn streams(&mut self, rtc: &mut Rtc) -> bool {
        if self.streams.len() == self.mids.len() {
            return true;
        }
        self.streams.clear();
        for (kind, mid) in &self.mids {
            let codec = if *kind == MediaKind::Audio {
                Codec::Opus
            } else {
                Codec::Vp8
            };
            let Some(pt) = rtc
                .codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                return false;
            };
            let Some(ssrc) = rtc
                .direct_api()
                .stream_tx_by_mid(*mid, None)
                .map(|s| s.ssrc())
            else {
                return false;
            };
            self.streams.push((*kind, ssrc, pt));
        }
        true
    }

    /// Writes the frames that are due.
    pub(super) fn write_due(&mut self, rtc: &mut Rtc, counters: &Counters) {
        let now = tokio::time::Instant::now();
        if !self.streams(rtc) {
            self.next_audio = now + Duration::from_millis(20);
            self.next_video = now + self.packets.video_period;
            return;
        }
        let wall = Instant::now();
        let streams = self.streams.clone();
        for (kind, ssrc, pt) in streams {
            let mut direct = rtc.direct_api();
            let Some(tx) = direct.stream_tx(&ssrc) else {
                continue;
            };
            if kind == MediaKind::Audio {
                while self.next_audio <= now {
                    let p = &self.packets.audio[self.audio_at % self.packets.audio.len()];
                    let ext = ExtensionValues {
                        audio_level: Some(-(self.packets.audio_level as i8)),
                        voice_activity: Some(true),
                        ..Default::default()
                    };
                    let w =
                        RtpWrite::new(pt, self.audio_seq.into(), self.audio_time, wall, p.clone())
                            .marker(true)
                            .ext_vals(ext);
                    tx.write_rtp(w);
                    self.audio_seq += 1;
                    self.audio_time = self.audio_time.wrapping_add(960);
                    self.audio_at += 1;
                    self.next_audio += Duration::from_millis(20);
                    counters.sent_audio_frames.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                while self.next_video <= now {
                    let frame = &self.packets.video[self.video_at % self.packets.video.len()];
                    for (i, p) in frame.iter().enumerate() {
                        let w = RtpWrite::new(
                            pt,
                            self.video_seq.into(),
                            self.video_time,
                            wall,
                            p.clone(),
                        )
                        .marker(i + 1 == frame.len())
                        .nackable(true);
                        tx.write_rtp(w);
                        self.video_seq += 1;
                    }
                    self.video_time = self.video_time.wrapping_add(self.packets.video_ticks);
                    self.video_at += 1;
                    self.next_video += self.packets.video_period;
                    counters.sent_video_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
