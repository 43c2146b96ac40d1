//! One participant's audio track as an Ogg Opus file (RFC 7845), written here rather
//! than by a GStreamer pipeline: an Opus RTP payload is one Opus packet, so a file is
//! the packets in order, with granule positions from their RTP timestamps. A pipeline
//! per file (and its jitter buffer's threads, woken for every packet) held a core to
//! about 450 files; this is a few microseconds a packet on the caller's thread.
//!
//! Packets arriving out of order are put back in order within a small window
//! ([`REORDER`] packets); one later than that is dropped. A gap (lost packets, a
//! participant who stopped sending) is filled with empty Opus packets, which decoders
//! conceal as silence, so that the file's time runs with the meeting's. Pages go to the
//! file four times a second: a crash loses at most that, and the packets held back.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ogg::{PacketWriteEndInfo, PacketWriter};

use crate::error::{RecordingError, io};
use crate::spec::{Codec, TrackSpec};

/// Packets held back to put late ones in order (20 ms each: 160 ms).
const REORDER: usize = 8;
/// Opus's clock: RTP timestamps and granule positions count 48 kHz samples.
const RATE: u64 = 48_000;
/// A page ends, and goes to the file, after this many samples (a quarter of a second).
const PAGE_SAMPLES: u64 = RATE / 4;
/// A gap longer than this (in samples) is not filled packet by packet (10 minutes:
/// beyond it the stream restarts its timing instead).
const MAX_FILL: u64 = 600 * RATE;

/// One participant's audio track, written as an Ogg Opus file.
pub struct AudioFile {
    w: Mutex<Writer>,
    pub path: PathBuf,
}

struct Writer {
    out: Option<PacketWriter<'static, BufWriter<File>>>,
    serial: u32,
    /// Packets waiting to be written, by extended sequence number.
    held: BTreeMap<u64, (u32, Vec<u8>)>,
    /// The highest extended sequence number seen, and the next to write.
    highest: Option<u64>,
    next: Option<u64>,
    /// The first packet's RTP timestamp (granule 0) and the extended timestamp of the
    /// last written packet's end.
    base_ts: Option<u32>,
    ts_ext: u64,
    /// Granule position after the last packet written, and where the current page
    /// began.
    granule: u64,
    page_start: u64,
    /// The TOC byte of the last packet (an empty packet repeats it to fill a gap).
    last_toc: u8,
    error: Option<String>,
}

impl AudioFile {
    pub fn start(track: &TrackSpec, dir: &Path, segment: u32) -> Result<Self, RecordingError> {
        if track.codec != Codec::Opus {
            return Err(RecordingError::Invalid(format!(
                "participant audio files are Opus, not {:?}",
                track.codec
            )));
        }
        let path = dir.join(track.audio_file_name(segment));
        let file = File::create(&path).map_err(io(format!("creating {}", path.display())))?;
        Ok(Self {
            w: Mutex::new(Writer {
                out: Some(PacketWriter::new(BufWriter::new(file))),
                serial: track.track_id.wrapping_mul(2_654_435_761) | 1,
                held: BTreeMap::new(),
                highest: None,
                next: None,
                base_ts: None,
                ts_ext: 0,
                granule: 0,
                page_start: 0,
                last_toc: 0xf8,
                error: None,
            }),
            path,
        })
    }

    /// Hands one RTP packet to the file; false when it is not taken (not RTP, or the
    /// file failed).
    pub fn push(&self, rtp: &[u8]) -> bool {
        let Some((seq, ts, payload)) = parse_rtp(rtp) else {
            return false;
        };
        let mut w = self.w.lock().unwrap_or_else(|e| e.into_inner());
        if w.error.is_some() {
            return false;
        }
        w.take(seq, ts, payload);
        w.error.is_none()
    }

    /// Why the file stopped taking packets, if it did.
    pub fn error(&self) -> Option<String> {
        self.w
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .error
            .clone()
    }

    /// Writes what is held, ends the stream (its last page) and returns the path.
    pub fn finish(self) -> Result<PathBuf, RecordingError> {
        let mut w = self.w.into_inner().unwrap_or_else(|e| e.into_inner());
        while let Some((_, (ts, p))) = w.held.pop_first() {
            w.write(ts, p);
        }
        w.end();
        if let Some(e) = w.error {
            return Err(RecordingError::Invalid(format!(
                "{}: {e}",
                self.path.display()
            )));
        }
        Ok(self.path)
    }
}

impl Writer {
    fn take(&mut self, seq: u16, ts: u32, payload: &[u8]) {
        let ext = extend(self.highest, seq);
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        if self.next.is_some_and(|n| ext < n) || payload.is_empty() {
            return; // too late (its place was written), or nothing to write
        }
        self.held
            .entry(ext)
            .or_insert_with(|| (ts, payload.to_vec()));
        while self.held.len() > REORDER {
            if let Some((seq, (ts, p))) = self.held.pop_first() {
                self.next = Some(seq + 1);
                self.write(ts, p);
            }
        }
    }

    /// Writes one Opus packet of RTP timestamp `ts`, after the headers (first) and the
    /// empty packets that fill a gap before it.
    fn write(&mut self, ts: u32, packet: Vec<u8>) {
        let base = match self.base_ts {
            Some(b) => b,
            None => {
                self.write_headers(packet[0]);
                self.base_ts = Some(ts);
                ts
            }
        };
        let since = u64::from(ts.wrapping_sub(base));
        // The extended position of this packet's start (RTP timestamps wrap at 2^32).
        let at = (self.ts_ext & !0xffff_ffff) | since;
        let at = if at + (1 << 31) < self.ts_ext {
            at + (1 << 32)
        } else {
            at
        };
        if at < self.granule {
            return; // overlaps what is written (a duplicate)
        }
        let samples = packet_samples(&packet);
        let mut gap = at - self.granule;
        if gap > MAX_FILL {
            // A stream that restarted its timing: go on from here.
            gap = 0;
        }
        // Fill the gap with empty packets of the last packet's frame size (20 ms when
        // it cannot say), which decoders conceal.
        let fill = packet_samples(&[self.last_toc]).max(1);
        while gap >= fill {
            self.granule += fill;
            gap -= fill;
            let toc = [self.last_toc & !0x03];
            self.emit(toc.to_vec());
        }
        self.granule += gap + samples;
        self.ts_ext = at + samples;
        self.last_toc = packet[0];
        self.emit(packet);
    }

    /// The two header packets, each on its own page (RFC 7845 §3): OpusHead (channels
    /// from the first packet's TOC, 48 kHz, no pre-skip: the RTP stream started before
    /// us), then OpusTags.
    fn write_headers(&mut self, toc: u8) {
        let channels = if toc & 0x04 != 0 { 2 } else { 1 };
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, channels]);
        head.extend_from_slice(&0u16.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes());
        head.push(0);
        let vendor = b"Fjord";
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        let serial = self.serial;
        let Some(out) = &mut self.out else { return };
        let written = out
            .write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)
            .and_then(|()| out.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0));
        if let Err(e) = written {
            self.error = Some(e.to_string());
            self.out = None;
        }
    }

    fn emit(&mut self, packet: Vec<u8>) {
        let end = if self.granule - self.page_start >= PAGE_SAMPLES {
            self.page_start = self.granule;
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        let flush = matches!(end, PacketWriteEndInfo::EndPage);
        let (serial, granule) = (self.serial, self.granule);
        let Some(out) = &mut self.out else { return };
        // A page ended: to the file at once, so that a crash loses little.
        let written = out
            .write_packet(packet, serial, end, granule)
            .and_then(|()| {
                if flush {
                    out.inner_mut().flush()
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            self.error = Some(e.to_string());
            self.out = None;
        }
    }

    /// Ends the stream: its last page, flushed to the file.
    fn end(&mut self) {
        let (serial, granule) = (self.serial, self.granule);
        let Some(mut out) = self.out.take() else {
            return;
        };
        if self.base_ts.is_none() {
            return; // nothing was ever written: an empty file
        }
        // An empty packet closes the stream at the granule reached.
        let closed = out
            .write_packet(Vec::new(), serial, PacketWriteEndInfo::EndStream, granule)
            .and_then(|()| out.inner_mut().flush());
        if let Err(e) = closed {
            self.error = Some(e.to_string());
        }
    }
}

/// `seq` extended to 64 bits next to the highest seen so far.
fn extend(highest: Option<u64>, seq: u16) -> u64 {
    let Some(h) = highest else {
        return u64::from(seq) + (1 << 16);
    };
    let cycle = h & !0xffff;
    let candidates = [cycle.wrapping_sub(1 << 16), cycle, cycle + (1 << 16)];
    candidates
        .into_iter()
        .map(|c| c.wrapping_add(u64::from(seq)))
        .min_by_key(|c| c.abs_diff(h))
        .unwrap_or(h)
}

/// The sequence number, timestamp and payload of an RTP packet; None when it is not one.
fn parse_rtp(p: &[u8]) -> Option<(u16, u32, &[u8])> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let csrcs = usize::from(p[0] & 0x0f);
    let mut start = 12 + 4 * csrcs;
    if p[0] & 0x10 != 0 {
        let ext = p.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*p.last()?))?;
    }
    let payload = p.get(start..end)?;
    let seq = u16::from_be_bytes([p[2], p[3]]);
    let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    Some((seq, ts, payload))
}

/// How many 48 kHz samples an Opus packet holds (RFC 6716 §3.1), from its TOC byte and,
/// for code 3, its frame count.
fn packet_samples(packet: &[u8]) -> u64 {
    let Some(&toc) = packet.first() else {
        return 0;
    };
    let config = toc >> 3;
    let frame: u64 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => packet.get(1).map_or(0, |c| u64::from(c & 0x3f)),
    };
    frame * frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 111];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn opus_packets_say_how_long_they_are() {
        // 20 ms SILK, 20 ms CELT, 10 ms CELT two frames, 60 ms of three 20 ms frames.
        assert_eq!(packet_samples(&[0x08]), 960);
        assert_eq!(packet_samples(&[0xf8]), 960);
        assert_eq!(packet_samples(&[0xf0 | 0x01]), 960);
        assert_eq!(packet_samples(&[0xfb, 3]), 2880);
        assert_eq!(packet_samples(&[]), 0);
    }

    #[test]
    fn sequence_numbers_extend_across_their_wrap_either_way() {
        let a = extend(None, 65_535);
        let b = extend(Some(a), 0);
        assert_eq!(b, a + 1);
        assert_eq!(extend(Some(b), 65_534), a - 1);
    }

    #[test]
    fn rtp_that_is_not_rtp_or_whose_lengths_lie_is_refused() {
        assert!(parse_rtp(&[0u8; 11]).is_none());
        assert!(parse_rtp(&rtp(1, 2, &[0xf8])[..]).is_some());
        let mut padded = rtp(1, 2, &[0xf8]);
        padded[0] |= 0x20;
        padded.push(200); // padding longer than the packet
        assert!(parse_rtp(&padded).is_none());
        let mut ext = rtp(1, 2, &[]);
        ext[0] |= 0x10;
        ext.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff]); // an extension past the end
        assert!(parse_rtp(&ext).is_none());
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8 | 0x80).collect();
            let _ = parse_rtp(&junk);
        }
    }

    /// Packets out of order within the window are written in order; a gap is filled up
    /// to the next packet's time; a duplicate and one too late are left out.
    #[test]
    fn packets_are_written_in_order_with_their_gaps_filled() {
        let dir = tempfile::tempdir().unwrap();
        let track = TrackSpec {
            track_id: 1,
            participant_id: "p1".into(),
            participant_name: "Ada".into(),
            codec: Codec::Opus,
            payload_type: 111,
        };
        let f = AudioFile::start(&track, dir.path(), 1).unwrap();
        let pkt = |i: u16| rtp(1000 + i, 50_000 + u32::from(i) * 960, &[0xfc, i as u8]);
        for i in [0u16, 2, 1, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11] {
            assert!(f.push(&pkt(i)));
        }
        // 12 and 13 lost; 14 on.
        for i in 14..30u16 {
            assert!(f.push(&pkt(i)));
        }
        assert!(f.push(&pkt(0)), "taken, and left out: far too late");
        let path = f.finish().unwrap();
        let mut r = ogg::PacketReader::new(std::fs::File::open(&path).unwrap());
        let mut packets = Vec::new();
        while let Some(p) = r.read_packet().unwrap() {
            let at = p.absgp_page();
            packets.push((p.data, at));
        }
        assert!(packets[0].0.starts_with(b"OpusHead") && packets[1].0.starts_with(b"OpusTags"));
        let audio: Vec<&Vec<u8>> = packets[2..]
            .iter()
            .map(|(d, _)| d)
            .filter(|d| !d.is_empty())
            .collect();
        // 30 places: 28 packets in order, and 2 empty fillers where 12 and 13 were.
        assert_eq!(audio.len(), 30, "{audio:?}");
        let numbers: Vec<Option<u8>> = audio.iter().map(|d| d.get(1).copied()).collect();
        let want: Vec<Option<u8>> = (0..30u8)
            .map(|i| (i != 12 && i != 13).then_some(i))
            .collect();
        assert_eq!(numbers, want);
        assert_eq!(
            packets.last().unwrap().1,
            30 * 960,
            "the last granule: 30 packets of 20 ms"
        );
    }
}
