//! What a lean load measured: join times, time to first media, packets, frames and
//! losses against what the publishers sent, and the lines the benches print.
use std::time::Duration;

/// What happened during [`LeanLoad::measure`](super::LeanLoad::measure).
#[derive(Clone, Debug, Default)]
pub struct LeanReport {
    pub window: Duration,
    pub peers: usize,
    pub join_failures: usize,
    /// Join times (controller call to ICE and DTLS connected), sorted.
    pub join_times: Vec<Duration>,
    /// Time from the start of the join to the first media packet received, of the peers
    /// that received any, sorted.
    pub first_media: Vec<Duration>,
    pub packets: u64,
    pub bytes: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    /// What the publishers sent times the peers that receive each of them.
    pub video_expected: u64,
    pub audio_expected: u64,
    pub seq_lost: u64,
}

impl LeanReport {
    pub fn join_percentile(&self, p: f64) -> Duration {
        percentile(&self.join_times, p)
    }

    pub fn first_media_percentile(&self, p: f64) -> Duration {
        percentile(&self.first_media, p)
    }

    /// The share of expected video frames that did not arrive (0..1).
    pub fn video_loss(&self) -> f64 {
        loss(self.video_frames, self.video_expected)
    }

    pub fn audio_loss(&self) -> f64 {
        loss(self.audio_frames, self.audio_expected)
    }

    /// Reports of loads that ran at once, as one (their windows overlap: the longest
    /// counts).
    pub fn merge(reports: impl IntoIterator<Item = LeanReport>) -> LeanReport {
        let mut all = LeanReport::default();
        for r in reports {
            all.window = all.window.max(r.window);
            all.peers += r.peers;
            all.join_failures += r.join_failures;
            all.join_times.extend(r.join_times);
            all.first_media.extend(r.first_media);
            all.packets += r.packets;
            all.bytes += r.bytes;
            all.video_frames += r.video_frames;
            all.audio_frames += r.audio_frames;
            all.video_expected += r.video_expected;
            all.audio_expected += r.audio_expected;
            all.seq_lost += r.seq_lost;
        }
        all.join_times.sort();
        all.first_media.sort();
        all
    }
}

/// The `p` quantile of `sorted` (zero when empty).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn loss(got: u64, expected: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        1.0 - got.min(expected) as f64 / expected as f64
    }
}

/// The report's lines, as the benches print them.
pub fn summary(r: &LeanReport) -> String {
    let secs = r.window.as_secs_f64().max(1e-9);
    format!(
        "peers: {} ({} failed to join)\n\
         join time: p50 {} ms, p99 {} ms\n\
         time to first media: p50 {} ms, p99 {} ms\n\
         received: {:.0} packets/s, {:.1} Mbit/s of payload\n\
         video frames: {} of {} expected (loss {:.2} %)\n\
         audio frames: {} of {} expected (loss {:.2} %)\n\
         rtp sequence gaps: {}\n",
        r.peers,
        r.join_failures,
        r.join_percentile(0.5).as_millis(),
        r.join_percentile(0.99).as_millis(),
        r.first_media_percentile(0.5).as_millis(),
        r.first_media_percentile(0.99).as_millis(),
        r.packets as f64 / secs,
        r.bytes as f64 * 8.0 / secs / 1e6,
        r.video_frames,
        r.video_expected,
        r.video_loss() * 100.0,
        r.audio_frames,
        r.audio_expected,
        r.audio_loss() * 100.0,
        r.seq_lost,
    )
}
