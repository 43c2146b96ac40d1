//! Relay sinks, sans-IO: a recording node (later a cascaded media node) that subscribes
//! to a meeting gets every published track as RTP — the audio, and one layer of each
//! video (the highest, switching only on keyframes) — packetised here from the frames
//! str0m hands the SFU, since the SFU works on frames rather than packets.
//!
//! A sink is not a browser subscriber: there are one or two per meeting, not dozens, so
//! the packets it sends are fresh buffers (quinn takes owned datagrams anyway).
use std::time::{Duration, Instant};

use str0m::format::Codec as StrCodec;
use str0m::media::{MediaData, MediaKind, Mid, Rid};
use str0m::unversioned::{H264Packetizer, OpusPacketizer, Packetizer, Vp8Packetizer};

use super::core::PeerKey;

/// RTP payload types on the relay, by codec (the announcement carries them too).
pub fn payload_type(codec: &str) -> u8 {
    match codec {
        "opus" => 111,
        "vp8" => 96,
        _ => 102,
    }
}

/// What a datagram may carry of RTP payload: below QUIC's smallest datagram size with
/// the track id and RTP header.
const MTU: usize = 1100;
/// A layer that sent nothing for this long is given up for another.
const LAYER_STALE: Duration = Duration::from_secs(2);

/// The video layer sinks prefer.
fn preferred() -> Rid {
    Rid::from("h")
}

pub struct SinkTrack {
    pub track_id: u32,
    pub origin: PeerKey,
    pub mid: Mid,
    pub kind: MediaKind,
    pub codec: &'static str,
    ssrc: u32,
    seq: u16,
    packetizer: Box<dyn Packetizer + Send>,
    /// The layer forwarded now (None: none yet, or no simulcast).
    rid: Option<Rid>,
    started: bool,
    /// Last forwarded (time in ticks, when), to run on smoothly across layer switches.
    last_out: Option<(u64, Instant)>,
    offset: i64,
}

/// The codec name we announce for a frame's codec, if sinks take it.
pub fn codec_name(c: StrCodec) -> Option<&'static str> {
    match c {
        StrCodec::Opus => Some("opus"),
        StrCodec::Vp8 => Some("vp8"),
        StrCodec::H264 => Some("h264"),
        _ => None,
    }
}

impl SinkTrack {
    pub fn new(
        track_id: u32,
        origin: PeerKey,
        mid: Mid,
        kind: MediaKind,
        codec: &'static str,
    ) -> Self {
        let packetizer: Box<dyn Packetizer + Send> = match codec {
            "opus" => Box::new(OpusPacketizer),
            "vp8" => Box::new(Vp8Packetizer::default()),
            _ => Box::new(H264Packetizer::default()),
        };
        Self {
            track_id,
            origin,
            mid,
            kind,
            codec,
            ssrc: 0x4650_0000 ^ track_id,
            seq: 0,
            packetizer,
            rid: None,
            started: kind == MediaKind::Audio,
            last_out: None,
            offset: 0,
        }
    }

    /// Packetises `data` into `out` if this track forwards it. Returns true when the
    /// track waits for a keyframe (the caller asks the publisher for one).
    pub fn packetize(&mut self, data: &MediaData, out: &mut Vec<Vec<u8>>) -> bool {
        if data.rid.is_some() && data.rid != self.rid {
            let stale = self.last_out.is_none_or(|(_, at)| {
                data.network_time.saturating_duration_since(at) > LAYER_STALE
            });
            let better = self.rid != Some(preferred()) && data.rid == Some(preferred());
            if !(self.rid.is_none() || better || stale) {
                return false;
            }
            if !data.is_keyframe() {
                return true;
            }
            self.rid = data.rid;
            if let Some((last, at)) = self.last_out {
                let hz = u64::from(data.time.denom());
                let gap = data.network_time.saturating_duration_since(at);
                let ticks = (gap.as_micros() as u64 * hz / 1_000_000).max(1);
                self.offset = (last + ticks) as i64 - data.time.numer() as i64;
            }
        } else if !self.started && !data.is_keyframe() {
            return true;
        }
        self.started = true;
        let ticks = (data.time.numer() as i64 + self.offset).max(0) as u64;
        self.last_out = Some((ticks, data.network_time));
        let Ok(chunks) = self.packetizer.packetize(MTU, &data.data) else {
            return false;
        };
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let marker = self.kind == MediaKind::Video && i + 1 == n;
            let mut p = Vec::with_capacity(12 + chunk.len());
            p.push(0x80);
            p.push(u8::from(marker) << 7 | payload_type(self.codec));
            p.extend_from_slice(&self.seq.to_be_bytes());
            p.extend_from_slice(&(ticks as u32).to_be_bytes());
            p.extend_from_slice(&self.ssrc.to_be_bytes());
            p.extend_from_slice(&chunk);
            self.seq = self.seq.wrapping_add(1);
            out.push(p);
        }
        false
    }
}
