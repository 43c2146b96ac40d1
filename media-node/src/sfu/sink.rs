//! Relay sinks and links, sans-IO: a recording node that subscribes
//! to a meeting gets every published track as RTP — the audio, and one layer of each
//! video (the highest until it says the size of the track's tile, then the layer that
//! fits it, switching only on keyframes). Sinks get the publishers' packets
//! as they arrived, renumbered into one stream per track by a [`Forwarder`]: never
//! reassembled into frames and split again.
//!
//! A sink is not a browser subscriber: there are one or two per meeting, not dozens, so
//! the packets it sends are fresh buffers (quinn takes owned datagrams anyway), written
//! behind room for the relay's media id so that they go out as they are.
use relay::Codec;
use relay::wire::MediaPacket;
use str0m::media::Rid;

use super::api::Source;
use super::rtp::{ARRIVAL_EXT_ID, Forwarder, LEVEL_EXT_ID, PacketIn, Verdict, patch_vp8};

pub struct SinkTrack {
    pub track_id: u32,
    pub source: Source,
    pub codec: Codec,
    /// The simulcast layer the sink wants: `h` until it says its tile's size.
    pub want: Rid,
    ssrc: u32,
    forwarder: Forwarder,
}

impl SinkTrack {
    /// Stops the stream until its next start (a keyframe, for video); it runs on from
    /// where it stopped.
    pub fn pause(&mut self) {
        self.forwarder.pause();
    }

    pub fn new(track_id: u32, source: Source, codec: Codec) -> Self {
        Self {
            track_id,
            source,
            codec,
            want: Rid::from("h"),
            ssrc: 0x4650_0000 ^ track_id,
            forwarder: Forwarder::default(),
        }
    }

    /// The layer forwarded now, if any.
    pub fn layer(&self) -> Option<Rid> {
        self.forwarder.layer()
    }

    /// The RTP packet to send for `p` (payload `payload`, marker `marker`), if this
    /// track forwards it; `Err(true)` when the track waits for a keyframe of its layer.
    pub fn packet(
        &mut self,
        p: &PacketIn,
        marker: bool,
        payload: &[u8],
    ) -> Result<MediaPacket, bool> {
        // The layer it wants when it comes, whatever came first.
        let want = p.rid.map(|_| self.want);
        let out = match self.forwarder.handle(p, want) {
            Verdict::Forward(out) => out,
            Verdict::Drop => return Err(false),
            Verdict::WaitKeyframe => return Err(true),
        };
        let mut rtp = MediaPacket::with_capacity(12 + payload.len());
        rtp.push(0x80);
        rtp.push(u8::from(marker) << 7 | self.codec.payload_type());
        rtp.extend_from_slice(&(out.seq as u16).to_be_bytes());
        rtp.extend_from_slice(&out.timestamp.to_be_bytes());
        rtp.extend_from_slice(&self.ssrc.to_be_bytes());
        rtp.extend_from_slice(payload);
        if let (Some(to), Some(fields)) = (out.vp8, p.vp8) {
            patch_vp8(&mut rtp.rtp_mut()[12..], &fields, to);
        }
        Ok(rtp)
    }
}

/// What a link packet says besides the publisher's payload.
pub struct LinkMeta {
    pub track_id: u32,
    pub layer: u8,
    pub marker: bool,
    /// The audio level (RFC 6464, -127..=0), if the publisher sent one.
    pub level: Option<i8>,
    /// When the packet arrived here, Unix microseconds.
    pub arrived_unix_us: u64,
}

/// The RTP packet a relay link to another media node carries for `p`: the publisher's
/// sequence number and RTP time, one SSRC per track and layer, and one-byte header
/// extensions: when it arrived here ([`ARRIVAL_EXT_ID`], so that the far node measures
/// the hop) and its audio level ([`LEVEL_EXT_ID`], so that the far node can tell who
/// speaks).
pub fn link_packet(codec: Codec, p: &PacketIn, m: &LinkMeta, payload: &[u8]) -> MediaPacket {
    // The header (12 bytes) and its extensions (4 + 12), then the payload.
    let mut rtp = MediaPacket::with_capacity(28 + payload.len());
    rtp.push(0x90);
    rtp.push(u8::from(m.marker) << 7 | codec.payload_type());
    rtp.extend_from_slice(&(p.seq as u16).to_be_bytes());
    rtp.extend_from_slice(&p.timestamp.to_be_bytes());
    let ssrc = 0x4651_0000 ^ (u32::from(m.layer) << 24) ^ m.track_id;
    rtp.extend_from_slice(&ssrc.to_be_bytes());
    // Three words: arrival (1 + 8 bytes), level (1 + 1), padding.
    rtp.extend_from_slice(&[0xbe, 0xde, 0, 3, ARRIVAL_EXT_ID << 4 | 7]);
    rtp.extend_from_slice(&m.arrived_unix_us.to_be_bytes());
    match m.level {
        Some(level) => {
            rtp.extend_from_slice(&[LEVEL_EXT_ID << 4, level.clamp(-127, 0).unsigned_abs(), 0])
        }
        None => rtp.extend_from_slice(&[0, 0, 0]),
    }
    rtp.extend_from_slice(payload);
    rtp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::rtp::RtpView;

    #[test]
    fn link_packets_keep_the_publishers_numbers_and_level() {
        let p = PacketIn {
            rid: None,
            seq: (3 << 16) + 65_535,
            timestamp: 48_000,
            at: std::time::Instant::now(),
            clock_rate: 48_000,
            keyframe_start: false,
            video: false,
            vp8: None,
        };
        let meta = |layer, marker, level| LinkMeta {
            track_id: 7,
            layer,
            marker,
            level,
            arrived_unix_us: 1_700_000_000_123_456,
        };
        let d = link_packet(Codec::Opus, &p, &meta(0, true, Some(-30)), b"tone");
        let d = d.into_datagram(0);
        assert_eq!(
            d.len(),
            d.capacity(),
            "written to the length it was made for"
        );
        let d = &d[relay::wire::MEDIA_ID_LEN..];
        let v = RtpView::parse(d).unwrap();
        assert_eq!(
            (v.marker, v.payload_type, v.seq, v.timestamp, v.audio_level),
            (true, 111, 65_535, 48_000, Some(-30))
        );
        assert_eq!(v.arrived_unix_us, Some(1_700_000_000_123_456));
        assert_eq!(&d[v.payload], b"tone");
        let d = link_packet(Codec::Vp8, &p, &meta(2, false, None), b"frame");
        let d = d.rtp();
        let v = RtpView::parse(d).unwrap();
        assert_eq!(
            (v.audio_level, &d[v.payload.clone()]),
            (None, &b"frame"[..])
        );
        assert_eq!(v.arrived_unix_us, Some(1_700_000_000_123_456));
    }
}
