//! What a bot received of each remote track: packets, frames and keyframes, losses by
//! sequence number (a packet that came twice, first time and as a retransmission, counts
//! once), timing, and the first payloads, to decode.
use std::collections::BTreeMap;
use std::time::Instant;

/// What arrived of one remote track.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackCounts {
    pub packets: u64,
    pub bytes: u64,
    /// Video: packets that end a frame (RTP marker). Audio: packets.
    pub frames: u64,
    /// Video: frames that begin with a VP8 keyframe.
    pub keyframes: u64,
    /// Packets missing from the received sequence-number range.
    pub lost: u64,
    /// Packets received per RTP timestamp (one timestamp is one frame).
    pub by_timestamp: BTreeMap<u32, u32>,
    /// Audio: the payloads (Opus frames) of the first [`AUDIO_KEPT`] packets, to decode.
    pub audio: Vec<Vec<u8>>,
    /// Video: the payloads of the first [`VIDEO_KEPT`] packets from the first keyframe
    /// on, with their marker bits, to decode.
    pub video: Vec<(Vec<u8>, bool)>,
    /// The largest difference, in milliseconds, between how far the RTP timestamp moved
    /// from one packet to the next in sequence and how much time passed between their
    /// arrivals: a stream whose timestamps jump (at a badly rewritten layer switch) shows
    /// it here.
    pub max_timestamp_jump_ms: f64,
    /// The longest time, in milliseconds, between two packets' arrivals.
    pub max_gap_ms: f64,
    last_arrival: Option<Instant>,
    /// The last packet in sequence: (extended sequence number, timestamp, arrival).
    last_in_sequence: Option<(u64, u32, Instant)>,
    first_seq: Option<u64>,
    highest_seq: u64,
    /// Which of the last [`SEQ_WINDOW`] sequence numbers arrived: a packet that came
    /// twice (first time and as a retransmission) counts once.
    seen: SeqWindow,
    /// After [`Bot::clear_received`](super::Bot::clear_received): the highest sequence
    /// number before it. A packet at or below it is a resend (a NACK's answer, or a
    /// sender's padding made of resent packets) of what arrived before, not new media,
    /// and does not count.
    floor: Option<u16>,
    floor_ext: Option<u64>,
}

/// How many recent sequence numbers a track remembers, for duplicates.
const SEQ_WINDOW: u64 = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
struct SeqWindow([u64; (SEQ_WINDOW / 64) as usize]);

impl Default for SeqWindow {
    fn default() -> Self {
        Self([0; (SEQ_WINDOW / 64) as usize])
    }
}

impl SeqWindow {
    fn slot(ext: u64) -> (usize, u64) {
        ((ext % SEQ_WINDOW / 64) as usize, 1 << (ext % 64))
    }

    fn contains(&self, ext: u64) -> bool {
        let (w, bit) = Self::slot(ext);
        self.0[w] & bit != 0
    }

    fn set(&mut self, ext: u64) {
        let (w, bit) = Self::slot(ext);
        self.0[w] |= bit;
    }

    /// Forgets `from..=to` (the slots the window moves onto).
    fn clear(&mut self, from: u64, to: u64) {
        for ext in from.max(to.saturating_sub(SEQ_WINDOW - 1))..=to {
            let (w, bit) = Self::slot(ext);
            self.0[w] &= !bit;
        }
    }
}

impl TrackCounts {
    /// Empty counts that go on from these: a packet at or below the highest sequence
    /// number counted so far is not counted again.
    pub(super) fn cleared(&self) -> Self {
        Self {
            floor: (self.packets > 0).then_some(self.highest_seq as u16),
            ..Self::default()
        }
    }

    /// When its last packet arrived.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn add(
        &mut self,
        seq: u16,
        timestamp: u32,
        clock_rate: u32,
        at: Instant,
        bytes: usize,
        end_of_frame: bool,
        keyframe: bool,
    ) {
        if self.packets == 0
            && let Some(floor) = self.floor
            && seq.wrapping_sub(floor) as i16 <= 0
        {
            return;
        }
        let ext = match self.first_seq {
            None => {
                self.first_seq = Some(u64::from(seq) + (1 << 16));
                u64::from(seq) + (1 << 16)
            }
            Some(_) => unwrap_seq(self.highest_seq, seq),
        };
        if self.packets == 0 {
            self.seen.clear(ext, ext);
            self.highest_seq = ext;
            if let Some(floor) = self.floor {
                // From here on the floor is an extended sequence number.
                self.floor_ext = Some(ext - u64::from(seq.wrapping_sub(floor)));
            }
        } else if self.floor_ext.is_some_and(|f| ext <= f) {
            return;
        } else if ext > self.highest_seq {
            self.seen.clear(self.highest_seq + 1, ext);
            self.highest_seq = ext;
        } else if ext + SEQ_WINDOW <= self.highest_seq || self.seen.contains(ext) {
            // Seen already, or too old to tell.
            return;
        }
        self.seen.set(ext);
        if let Some(last) = self.last_arrival {
            let gap = at.saturating_duration_since(last).as_secs_f64() * 1000.0;
            self.max_gap_ms = self.max_gap_ms.max(gap);
        }
        self.last_arrival = Some(at);
        *self.by_timestamp.entry(timestamp).or_default() += 1;
        if let Some((last, last_ts, last_at)) = self.last_in_sequence
            && ext == last + 1
        {
            let moved = f64::from(timestamp.wrapping_sub(last_ts) as i32) * 1000.0
                / f64::from(clock_rate.max(1));
            let passed = at.saturating_duration_since(last_at).as_secs_f64() * 1000.0;
            self.max_timestamp_jump_ms = self.max_timestamp_jump_ms.max((moved - passed).abs());
        }
        if self.last_in_sequence.is_none_or(|(last, _, _)| ext > last) {
            self.last_in_sequence = Some((ext, timestamp, at));
        }
        self.packets += 1;
        self.bytes += bytes as u64;
        self.frames += u64::from(end_of_frame);
        self.keyframes += u64::from(keyframe);
        let span = self.highest_seq - self.first_seq.unwrap_or(ext) + 1;
        self.lost = span.saturating_sub(self.packets);
    }
}

/// Extends a 16-bit sequence number to 64 bits next to the highest one seen.
fn unwrap_seq(highest: u64, seq: u16) -> u64 {
    let base = highest & !0xffff;
    let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
    candidates
        .into_iter()
        .map(|b| b + u64::from(seq))
        .min_by_key(|c| c.abs_diff(highest))
        .expect("three candidates")
}

/// Audio frames a bot keeps of each publisher: 5 s.
pub const AUDIO_KEPT: usize = 250;
pub const VIDEO_KEPT: usize = 600;

/// Remote tracks by (publisher participant id, kind).
pub type Received = BTreeMap<(String, &'static str), TrackCounts>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sequence_numbers_unwrap_across_the_16_bit_boundary() {
        let mut c = TrackCounts::default();
        for seq in [65534u16, 65535, 0, 2] {
            c.add(
                seq,
                u32::from(seq / 2),
                90_000,
                Instant::now(),
                10,
                true,
                false,
            );
        }
        assert_eq!(c.packets, 4);
        assert_eq!(c.lost, 1, "seq 1 is missing");
        // A late, reordered packet fills the hole.
        c.add(1, 0, 90_000, Instant::now(), 10, true, false);
        assert_eq!(c.lost, 0);
        // A packet that comes again (a retransmission) counts once.
        c.add(1, 0, 90_000, Instant::now(), 10, true, false);
        assert_eq!(c.packets, 5);
        // Packets per timestamp: 0 (seq 0 and 1) and 1 (seq 2) among them.
        assert_eq!(c.by_timestamp.get(&0), Some(&2));
        assert_eq!(c.by_timestamp.get(&1), Some(&1));
    }

    #[test]
    fn after_a_clear_resends_of_earlier_packets_do_not_count() {
        let add = |c: &mut TrackCounts, seq: u16| {
            c.add(seq, 0, 48_000, Instant::now(), 10, true, false);
        };
        let mut c = TrackCounts::default();
        for seq in [65530u16, 65531, 65532] {
            add(&mut c, seq);
        }
        let mut c = c.cleared();
        // A resend of 65531 (padding or a NACK's answer) before anything new.
        add(&mut c, 65531);
        assert_eq!(c.packets, 0);
        // New packets across the wrap count; a late resend of 65532 still does not.
        for seq in [65533u16, 65535, 0] {
            add(&mut c, seq);
        }
        add(&mut c, 65532);
        assert_eq!(c.packets, 3);
        assert_eq!(c.lost, 1, "65534 is missing");
        add(&mut c, 65534);
        assert_eq!((c.packets, c.lost), (4, 0));
    }

    #[test]
    fn a_timestamp_that_jumps_against_arrival_time_is_measured() {
        let t0 = Instant::now();
        let mut c = TrackCounts::default();
        // 30 fps: 3000 ticks and 33 ms apart.
        for i in 0..10u16 {
            let at = t0 + Duration::from_millis(33 * u64::from(i));
            c.add(i, 3000 * u32::from(i), 90_000, at, 10, true, false);
        }
        assert!(c.max_timestamp_jump_ms < 1.0, "{}", c.max_timestamp_jump_ms);
        // Then a packet whose timestamp leaps a second ahead.
        c.add(
            10,
            30_000 + 90_000,
            90_000,
            t0 + Duration::from_millis(363),
            10,
            true,
            false,
        );
        assert!(
            c.max_timestamp_jump_ms > 900.0,
            "{}",
            c.max_timestamp_jump_ms
        );
    }
}
