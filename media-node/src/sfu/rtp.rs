//! Packet-level forwarding, pure: where a video frame starts a keyframe (VP8 and H.264,
//! read from the RTP payload; the VP8 descriptor with [`common::vp8`], which the bot
//! shares), and [`Forwarder`], which turns one publisher's RTP stream (one or several
//! simulcast layers) into one continuous outgoing stream for one receiver.
//!
//! Invariant: what a `Forwarder` emits is one RTP stream as a receiver expects it. Its
//! sequence numbers go up by one per forwarded packet of the current layer, its
//! timestamps (and VP8 picture ids and TL0PICIDX) run on across a layer switch as if
//! one encoder had made them, and it starts or switches only on the first packet of a
//! keyframe. Packets are never split, joined or reordered: a forwarded packet keeps its
//! payload and marker bit.
use std::time::{Duration, Instant};

use common::vp8;
use relay::Codec;
use str0m::media::Rid;

/// What a packet of `codec` says for forwarding: its VP8 descriptor (VP8 only) and
/// whether it is the first packet of a keyframe (never, for audio).
pub fn keyframe_fields(codec: Codec, payload: &[u8]) -> (Option<vp8::Descriptor>, bool) {
    match codec {
        Codec::Vp8 => {
            let fields = vp8_fields(payload);
            (fields, fields.is_some_and(|v| v.keyframe_start))
        }
        Codec::H264 => (None, h264_keyframe_start(payload)),
        Codec::Opus => (None, false),
    }
}

/// Reads a VP8 payload descriptor (RFC 7741 §4.2), with the byte offsets of the fields a
/// forwarder may rewrite; None if the payload is too short for the one it announces, or
/// has no VP8 data after it (garbage never panics).
pub fn vp8_fields(payload: &[u8]) -> Option<vp8::Descriptor> {
    vp8::parse(payload).filter(|d| d.len < payload.len())
}

/// H.264 NAL unit types that begin a keyframe: an IDR slice, or the SPS sent before it.
fn h264_key_nal(t: u8) -> bool {
    t == 5 || t == 7
}

/// Whether an H.264 RTP payload (RFC 6184) begins a keyframe: a single SPS or IDR NAL
/// unit, an aggregate (STAP-A) holding one, or the first fragment (FU-A) of one.
pub fn h264_keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        t @ 1..=23 => h264_key_nal(t),
        24 => {
            let mut at = 1;
            while let Some(len) = payload.get(at..at + 2) {
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let Some(&nal) = payload.get(at + 2) else {
                    return false;
                };
                if len > 0 && h264_key_nal(nal & 0x1f) {
                    return true;
                }
                at += 2 + len;
            }
            false
        }
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && h264_key_nal(fu & 0x1f)),
        _ => false,
    }
}

/// The parts of a plain RTP packet (RFC 3550 §5.1) a relay's receiver needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpView {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    /// Where the payload is: after CSRCs and header extensions, before padding.
    pub payload: std::ops::Range<usize>,
    /// The RFC 6464 audio level (-127..=0 dBov) of a one-byte header extension with id
    /// [`LEVEL_EXT_ID`], which relay links between media nodes carry.
    pub audio_level: Option<i8>,
    /// When the packet arrived at its publisher's node (Unix microseconds), from a
    /// one-byte header extension with id [`ARRIVAL_EXT_ID`]: relay links carry it so that
    /// the far node can measure the hop.
    pub arrived_unix_us: Option<u64>,
}

/// The header extension id relay links give the audio level.
pub const LEVEL_EXT_ID: u8 = 1;
/// The header extension id relay links give the arrival time at the publisher's node.
pub const ARRIVAL_EXT_ID: u8 = 2;

/// The audio level and arrival time in one-byte header extensions (RFC 8285) `ext`.
fn link_extensions(ext: &[u8]) -> (Option<i8>, Option<u64>) {
    let (mut level, mut arrived) = (None, None);
    let mut at = 0;
    while at < ext.len() {
        let b = ext[at];
        if b == 0 {
            at += 1;
            continue;
        }
        let (id, len) = (b >> 4, usize::from(b & 0x0f) + 1);
        if id == 15 {
            break;
        }
        let Some(value) = ext.get(at + 1..at + 1 + len) else {
            break;
        };
        match (id, value) {
            (LEVEL_EXT_ID, [v]) => level = Some(-((v & 0x7f) as i8)),
            (ARRIVAL_EXT_ID, v) if v.len() == 8 => {
                arrived = Some(u64::from_be_bytes(v.try_into().expect("8 bytes")));
            }
            _ => {}
        }
        at += 1 + len;
    }
    (level, arrived)
}

impl RtpView {
    /// None for anything that is not an RTP packet with a payload (garbage never panics).
    pub fn parse(d: &[u8]) -> Option<Self> {
        if d.len() < 12 || d[0] >> 6 != 2 {
            return None;
        }
        let mut start = 12 + 4 * usize::from(d[0] & 0x0f);
        let (mut audio_level, mut arrived_unix_us) = (None, None);
        if d[0] & 0x10 != 0 {
            let head = d.get(start..start + 4)?;
            let body = start + 4;
            start = body + 4 * usize::from(u16::from_be_bytes([head[2], head[3]]));
            if head[..2] == [0xbe, 0xde] {
                (audio_level, arrived_unix_us) = link_extensions(d.get(body..start)?);
            }
        }
        let mut end = d.len();
        if d[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*d.last()?))?;
        }
        (start < end).then(|| Self {
            marker: d[1] & 0x80 != 0,
            payload_type: d[1] & 0x7f,
            seq: u16::from_be_bytes([d[2], d[3]]),
            timestamp: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            payload: start..end,
            audio_level,
            arrived_unix_us,
        })
    }
}

/// Extends a 16-bit sequence number to 64 bits next to the highest one so far (the
/// first is put one cycle up, so that older packets after it stay positive).
pub fn extend_seq(highest: Option<u64>, seq: u16) -> u64 {
    let Some(highest) = highest else {
        return (1 << 16) + u64::from(seq);
    };
    let base = highest & !0xffff;
    [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
        .into_iter()
        .map(|b| b.wrapping_add(u64::from(seq)))
        .min_by_key(|c| c.abs_diff(highest))
        .expect("three candidates")
}

/// One incoming RTP packet, as a forwarder needs to see it.
#[derive(Clone, Copy, Debug)]
pub struct PacketIn {
    /// The simulcast layer it belongs to (None: no simulcast).
    pub rid: Option<Rid>,
    /// Extended sequence number (no wrap-around).
    pub seq: u64,
    pub timestamp: u32,
    /// When it arrived.
    pub at: Instant,
    pub clock_rate: u32,
    /// Video: whether it is the first packet of a keyframe. Audio: always false.
    pub keyframe_start: bool,
    pub video: bool,
    pub vp8: Option<vp8::Descriptor>,
}

/// Where a forwarded packet goes in the outgoing stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketOut {
    /// Extended outgoing sequence number (starts below 2^16).
    pub seq: u64,
    pub timestamp: u32,
    /// Rewritten VP8 (picture id, TL0PICIDX), when a layer switch moved them.
    pub vp8: Option<(Option<u16>, Option<u8>)>,
}

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward(PacketOut),
    /// Not for this receiver.
    Drop,
    /// Not forwarded: the receiver waits for a keyframe of this packet's layer.
    WaitKeyframe,
}

/// A layer that forwarded nothing for this long may be replaced by any layer that has
/// a keyframe (the publisher may have stopped sending it).
pub const LAYER_STALE: Duration = Duration::from_millis(500);

/// The last packet forwarded: what the next layer continues from.
#[derive(Clone, Copy, Debug)]
struct Last {
    seq: u64,
    timestamp: u32,
    at: Instant,
    picture_id: Option<u16>,
    tl0: Option<u8>,
}

/// One receiver's view of one published track. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Forwarder {
    started: bool,
    /// The layer forwarded now.
    rid: Option<Rid>,
    /// Outgoing = incoming + offset, per field, for the current layer.
    seq_offset: i64,
    ts_offset: u32,
    pic_offset: u16,
    tl0_offset: u8,
    /// Packets of the current layer before this sequence number are not forwarded
    /// (they belong before the keyframe we started on).
    floor: u64,
    last: Option<Last>,
}

impl Forwarder {
    /// The layer forwarded now, if any.
    pub fn layer(&self) -> Option<Rid> {
        self.rid
    }

    /// Stops forwarding until the next start (a keyframe, for video): the publisher was
    /// muted, or moved out of the receiver's room. The stream then runs on from where it
    /// stopped, as across a layer switch, so the receiver sees no hole to ask for.
    pub fn pause(&mut self) {
        self.started = false;
        self.rid = None;
    }

    /// Decides on `p`. `want` is the layer the receiver should get; a simulcast stream
    /// moves to it on its next keyframe, or to any layer with a keyframe once the
    /// current one has gone quiet.
    pub fn handle(&mut self, p: &PacketIn, want: Option<Rid>) -> Verdict {
        let switching = self.started && p.rid.is_some() && p.rid != self.rid;
        if switching || !self.started {
            let stale = self
                .last
                .is_none_or(|l| p.at.saturating_duration_since(l.at) > LAYER_STALE);
            let wanted = p.rid.is_none() || want.is_none() || p.rid == want;
            if switching && !(wanted || stale) {
                return Verdict::Drop;
            }
            if p.video && !p.keyframe_start {
                return if wanted || stale {
                    Verdict::WaitKeyframe
                } else {
                    Verdict::Drop
                };
            }
            self.begin(p);
        } else if p.seq < self.floor {
            return Verdict::Drop;
        }
        let out = PacketOut {
            seq: (p.seq as i64 + self.seq_offset) as u64,
            timestamp: p.timestamp.wrapping_add(self.ts_offset),
            vp8: self.vp8_out(p),
        };
        if self.last.is_none_or(|l| out.seq > l.seq) {
            let (picture_id, tl0) = match out.vp8 {
                Some(v) => v,
                None => (
                    p.vp8.and_then(|v| v.picture_id).map(|id| id.value),
                    p.vp8.and_then(|v| v.tl0).map(|t| t.value),
                ),
            };
            self.last = Some(Last {
                seq: out.seq,
                timestamp: out.timestamp,
                at: p.at,
                picture_id,
                tl0,
            });
        }
        Verdict::Forward(out)
    }

    /// Starts a run of packets at `p`: the first of the stream, or of a new layer.
    fn begin(&mut self, p: &PacketIn) {
        self.started = true;
        self.rid = p.rid;
        self.floor = p.seq;
        let Some(last) = self.last else {
            // The first packet keeps its 16-bit sequence number, with a rollover count
            // of zero (the receiver assumes one); timestamps and picture ids pass as are.
            self.seq_offset = -((p.seq & !0xffff) as i64);
            return;
        };
        self.seq_offset = last.seq as i64 + 1 - p.seq as i64;
        // Continue from the last forwarded packet, advanced by the wall-clock gap.
        let gap = p.at.saturating_duration_since(last.at);
        let ticks = (gap.as_micros() as u64 * u64::from(p.clock_rate) / 1_000_000).max(1);
        self.ts_offset = last
            .timestamp
            .wrapping_add(ticks as u32)
            .wrapping_sub(p.timestamp);
        if let Some(v) = p.vp8 {
            if let (Some(id), Some(last_id)) = (v.picture_id, last.picture_id) {
                self.pic_offset = last_id.wrapping_add(1).wrapping_sub(id.value);
            }
            if let (Some(t), Some(last_t)) = (v.tl0, last.tl0) {
                self.tl0_offset = last_t.wrapping_add(1).wrapping_sub(t.value);
            }
        }
    }

    fn vp8_out(&self, p: &PacketIn) -> Option<(Option<u16>, Option<u8>)> {
        let v = p.vp8?;
        if self.pic_offset == 0 && self.tl0_offset == 0 {
            return None;
        }
        let id = v.picture_id.map(|id| {
            let mask = if id.wide { 0x7fff } else { 0x7f };
            id.value.wrapping_add(self.pic_offset) & mask
        });
        let tl0 = v.tl0.map(|t| t.value.wrapping_add(self.tl0_offset));
        Some((id, tl0))
    }
}

/// Writes the rewritten VP8 fields into a copy of the payload (for receivers that take
/// owned packets; str0m applies the same patch itself while it encrypts).
pub fn patch_vp8(payload: &mut [u8], fields: &vp8::Descriptor, to: (Option<u16>, Option<u8>)) {
    if let (Some(pic), Some(id)) = (fields.picture_id, to.0) {
        let at = pic.offset;
        if pic.wide {
            payload[at] = 0x80 | (id >> 8) as u8;
            payload[at + 1] = id as u8;
        } else {
            payload[at] = id as u8 & 0x7f;
        }
    }
    if let (Some(tl0), Some(t)) = (fields.tl0, to.1) {
        payload[tl0.offset] = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vp8(start: bool, key: bool, pic: u16, tl0: u8) -> Vec<u8> {
        common::vp8::example(start, key, pic, tl0)
    }

    fn packet(rid: &str, seq: u64, ts: u32, at: Instant, payload: &[u8]) -> PacketIn {
        let fields = vp8_fields(payload).unwrap();
        PacketIn {
            rid: Some(Rid::from(rid)),
            seq,
            timestamp: ts,
            at,
            clock_rate: 90_000,
            keyframe_start: fields.keyframe_start,
            video: true,
            vp8: Some(fields),
        }
    }

    #[test]
    fn vp8_fields_are_read_only_of_packets_with_vp8_data() {
        // The descriptor's own cases are common::vp8's tests; here, what the SFU adds.
        let (f, key) = keyframe_fields(Codec::Vp8, &vp8(true, true, 0x1234, 7));
        let f = f.unwrap();
        assert_eq!(
            f.picture_id.map(|p| (p.value, p.wide, p.offset)),
            Some((0x1234, true, 2))
        );
        assert_eq!(f.tl0.map(|t| (t.value, t.offset)), Some((7, 4)));
        assert!(key && f.keyframe_start);
        assert!(!keyframe_fields(Codec::Vp8, &vp8(true, false, 1, 1)).1);
        // A whole descriptor with nothing after it is not read.
        assert!(vp8::parse(&[0x10]).is_some());
        assert_eq!(vp8_fields(&[0x10]), None);
        assert_eq!(vp8_fields(&[]), None);
        assert_eq!(keyframe_fields(Codec::Opus, &[0x10, 0x00]), (None, false));
    }

    #[test]
    fn h264_keyframes_are_found_in_single_aggregate_and_fragment_packets() {
        assert!(h264_keyframe_start(&[0x67, 1, 2])); // SPS
        assert!(h264_keyframe_start(&[0x65, 1, 2])); // IDR
        assert!(!h264_keyframe_start(&[0x41, 1, 2])); // non-IDR slice
        // STAP-A: SPS (3 bytes), PPS (2 bytes).
        assert!(h264_keyframe_start(&[
            0x78, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 1
        ]));
        assert!(!h264_keyframe_start(&[0x78, 0, 2, 0x41, 1]));
        // FU-A: start of an IDR, and a middle fragment of one.
        assert!(h264_keyframe_start(&[0x7c, 0x85, 1]));
        assert!(!h264_keyframe_start(&[0x7c, 0x05, 1]));
        assert!(!h264_keyframe_start(&[]));
        assert!(!h264_keyframe_start(&[0x78, 0xff, 0xff]));
    }

    proptest! {
        #[test]
        fn garbage_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = vp8_fields(&bytes);
            let _ = h264_keyframe_start(&bytes);
            let _ = RtpView::parse(&bytes);
        }
    }

    #[test]
    fn rtp_headers_are_read_past_csrcs_extensions_and_padding() {
        // V=2, P, X, CC=1; M, PT 96; seq 0x1234; ts 7; SSRC; one CSRC; an extension of
        // one word (an audio level); payload "ab"; two bytes of padding.
        let mut d = vec![0xb1, 0xe0, 0x12, 0x34, 0, 0, 0, 7, 1, 2, 3, 4, 9, 9, 9, 9];
        d.extend([0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
        d.extend(b"ab");
        d.extend([0, 2]);
        let v = RtpView::parse(&d).unwrap();
        assert_eq!(
            (v.marker, v.payload_type, v.seq, v.timestamp),
            (true, 96, 0x1234, 7)
        );
        assert_eq!(&d[v.payload.clone()], b"ab");
        // The extension is an audio level (id 1): -127 dBov, voice bit set.
        assert_eq!(v.audio_level, Some(-127));
        assert_eq!(RtpView::parse(&d[..11]), None);
        assert_eq!(RtpView::parse(&[0x80; 12]), None, "no payload");
    }

    #[test]
    fn sequence_numbers_extend_across_the_16_bit_boundary() {
        let first = extend_seq(None, 65_535);
        assert_eq!(first, 131_071);
        assert_eq!(extend_seq(Some(first), 0), 131_072);
        assert_eq!(
            extend_seq(Some(131_072), 65_534),
            131_070,
            "a late one stays behind"
        );
    }

    #[test]
    fn a_stream_starts_on_a_keyframe_and_keeps_its_numbers() {
        let t0 = Instant::now();
        let mut f = Forwarder::default();
        let h = Some(Rid::from("h"));
        let delta = packet("h", 70_000, 1000, t0, &vp8(true, false, 10, 1));
        assert_eq!(f.handle(&delta, h), Verdict::WaitKeyframe);
        let key = packet("h", 70_001, 4000, t0, &vp8(true, true, 11, 2));
        // Rollover count dropped, low 16 bits kept; nothing else rewritten.
        let Verdict::Forward(out) = f.handle(&key, h) else {
            panic!("keyframe not forwarded")
        };
        assert_eq!(
            (out.seq, out.timestamp, out.vp8),
            (70_001 - 65_536, 4000, None)
        );
        // An older packet (from before the keyframe) arriving late is not forwarded.
        assert_eq!(f.handle(&delta, h), Verdict::Drop);
    }

    #[test]
    fn a_layer_switch_continues_sequence_numbers_timestamps_and_picture_ids() {
        let t0 = Instant::now();
        let (l, h) = (Some(Rid::from("l")), Some(Rid::from("h")));
        let mut f = Forwarder::default();
        // The low layer runs; its frames are 3000 ticks (33 ms) apart.
        let mut last = None;
        for i in 0..5u64 {
            let at = t0 + Duration::from_millis(33 * i);
            let p = packet(
                "l",
                100 + i,
                3000 * i as u32,
                at,
                &vp8(true, i == 0, 500 + i as u16, 9),
            );
            last = Some(f.handle(&p, l));
        }
        let Some(Verdict::Forward(last)) = last else {
            panic!("low layer not forwarded")
        };
        // The receiver now wants h: a delta frame of h waits, a low packet still goes.
        let later = t0 + Duration::from_millis(33 * 5);
        let h_delta = packet("h", 9_000, 777_000, later, &vp8(true, false, 30_000, 200));
        assert_eq!(f.handle(&h_delta, h), Verdict::WaitKeyframe);
        let l_next = packet("l", 105, 15_000, later, &vp8(true, false, 505, 9));
        let Verdict::Forward(l_out) = f.handle(&l_next, h) else {
            panic!("current layer stops before the switch")
        };
        assert_eq!(l_out.seq, last.seq + 1);
        // h's keyframe: the switch. Everything continues from the last packet sent.
        let h_key = packet("h", 9_001, 780_000, later, &vp8(true, true, 30_001, 201));
        let Verdict::Forward(out) = f.handle(&h_key, h) else {
            panic!("no switch on the keyframe")
        };
        assert_eq!(f.layer(), h);
        assert_eq!(out.seq, l_out.seq + 1, "sequence numbers run on");
        assert_eq!(
            out.timestamp,
            l_out.timestamp + 1,
            "same instant: one tick on"
        );
        assert_eq!(
            out.vp8,
            Some((Some(506), Some(10))),
            "picture id and TL0PICIDX run on"
        );
        // Later packets of h follow on; l's are dropped now.
        let h_next = packet("h", 9_002, 783_000, later, &vp8(false, false, 30_001, 201));
        let Verdict::Forward(next) = f.handle(&h_next, h) else {
            panic!("h not forwarded")
        };
        assert_eq!(
            (next.seq, next.timestamp),
            (out.seq + 1, out.timestamp + 3000)
        );
        assert_eq!(f.handle(&l_next, h), Verdict::Drop);
    }

    #[test]
    fn a_quiet_layer_is_replaced_by_any_layer_with_a_keyframe() {
        let t0 = Instant::now();
        let (m, h) = (Some(Rid::from("m")), Some(Rid::from("h")));
        let mut f = Forwarder::default();
        let p = packet("h", 1, 0, t0, &vp8(true, true, 1, 1));
        assert!(matches!(f.handle(&p, h), Verdict::Forward(_)));
        // m is not wanted: ignored while h flows...
        let soon = t0 + Duration::from_millis(100);
        assert_eq!(
            f.handle(&packet("m", 50, 0, soon, &vp8(true, true, 1, 1)), h),
            Verdict::Drop
        );
        // ...but taken at its next keyframe once h has been quiet.
        let late = t0 + LAYER_STALE + Duration::from_millis(100);
        assert_eq!(
            f.handle(&packet("m", 51, 0, late, &vp8(true, false, 2, 1)), h),
            Verdict::WaitKeyframe
        );
        assert!(matches!(
            f.handle(&packet("m", 52, 0, late, &vp8(true, true, 3, 1)), h),
            Verdict::Forward(_)
        ));
        assert_eq!(f.layer(), m);
    }

    #[test]
    fn patched_copies_carry_the_new_picture_id_and_tl0() {
        let mut p = vp8(true, true, 0x1234, 7);
        let fields = vp8_fields(&p).unwrap();
        patch_vp8(&mut p, &fields, (Some(0x0042), Some(9)));
        let again = vp8_fields(&p).unwrap();
        assert_eq!(
            again.picture_id.map(|p| (p.value, p.wide, p.offset)),
            Some((0x0042, true, 2))
        );
        assert_eq!(again.tl0.map(|t| (t.value, t.offset)), Some((9, 4)));
        assert!(again.keyframe_start);
    }
}
