//! Many bots in one meeting: publishers and listeners, joined a few at a time, then
//! measured over a window.
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::client::{Bot, BotConfig, Received};
use crate::media::{Clip, ClipSpec};

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub controller: String,
    pub meeting: String,
    pub password: Option<String>,
    pub region: Option<String>,
    /// Where the subscribers join from, if not `region` (a meeting across regions).
    pub subscriber_region: Option<String>,
    pub publishers: usize,
    pub subscribers: usize,
    pub clip: ClipSpec,
    /// How many joins run at once.
    pub join_concurrency: usize,
    /// CA certificates (PEM) trusted for `wss://` signaling besides the system's.
    pub signal_ca: Option<Arc<Vec<u8>>>,
}

/// Bots in a meeting.
pub struct Load {
    pub bots: Vec<Bot>,
    /// Joins that failed, with why.
    pub failures: Vec<String>,
}

/// What happened during [`Load::measure`].
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub window: Duration,
    pub bots: usize,
    pub join_failures: usize,
    /// Join times of the bots, sorted.
    pub join_times: Vec<Duration>,
    /// RTP packets all bots received in the window.
    pub packets: u64,
    /// Audio frames received, and the number the publishers sent that should have
    /// arrived (each publisher's frames times the bots that subscribe to it).
    pub audio_received: u64,
    pub audio_expected: u64,
    pub video_frames: u64,
    pub video_expected: u64,
    /// Packets missing from received sequence ranges (RTP-level loss).
    pub seq_lost: u64,
}

impl LoadReport {
    pub fn audio_loss(&self) -> f64 {
        loss(self.audio_received, self.audio_expected)
    }

    pub fn video_loss(&self) -> f64 {
        loss(self.video_frames, self.video_expected)
    }

    pub fn join_percentile(&self, p: f64) -> Duration {
        if self.join_times.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.join_times.len() - 1) as f64 * p).round() as usize;
        self.join_times[i]
    }
}

fn loss(got: u64, expected: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        1.0 - (got.min(expected) as f64 / expected as f64)
    }
}

impl Load {
    /// Encodes the clip once and joins every bot; `progress` hears each join.
    pub async fn start(
        spec: &LoadSpec,
        mut progress: impl FnMut(usize, usize),
    ) -> anyhow::Result<Load> {
        let clip: Arc<Clip> = Arc::new({
            let c = spec.clip.clone();
            tokio::task::spawn_blocking(move || crate::media::encode(&c)).await??
        });
        let total = spec.publishers + spec.subscribers;
        let configs: Vec<BotConfig> = (0..total)
            .map(|i| BotConfig {
                controller: spec.controller.clone(),
                meeting: spec.meeting.clone(),
                name: if i < spec.publishers {
                    format!("pub-{i}")
                } else {
                    format!("sub-{}", i - spec.publishers)
                },
                password: spec.password.clone(),
                host_key: None,
                panelist_key: None,
                registrant_key: None,
                region: if i < spec.publishers {
                    spec.region.clone()
                } else {
                    spec.subscriber_region
                        .clone()
                        .or_else(|| spec.region.clone())
                },
                publish: (i < spec.publishers).then(|| clip.clone()),
                signal_ca: spec.signal_ca.clone(),
                view: None,
            })
            .collect();
        // Publishers first, so that listeners' first offers already carry their tracks.
        let mut bots = Vec::new();
        let mut failures = Vec::new();
        let mut joins = futures::stream::iter(configs)
            .map(|c| Bot::join(c, Duration::from_secs(20)))
            .buffered(spec.join_concurrency.max(1));
        let mut done = 0;
        while let Some(r) = joins.next().await {
            done += 1;
            match r {
                Ok(b) => bots.push(b),
                Err(e) => failures.push(format!("{e:#}")),
            }
            progress(done, total);
        }
        Ok(Load { bots, failures })
    }

    /// Counts what arrives during `window`.
    pub async fn measure(&self, window: Duration) -> LoadReport {
        let before = self.snapshot();
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let after = self.snapshot();
        let window = started.elapsed();
        let mut r = LoadReport {
            window,
            bots: self.bots.len(),
            join_failures: self.failures.len(),
            join_times: {
                let mut t: Vec<Duration> = self.bots.iter().map(|b| b.join_time).collect();
                t.sort();
                t
            },
            ..LoadReport::default()
        };
        for (i, bot) in self.bots.iter().enumerate() {
            let (b, a) = (&before.received[i], &after.received[i]);
            for (key, now) in a {
                let was = b.get(key).cloned().unwrap_or_default();
                r.packets += now.packets - was.packets;
                r.seq_lost += now.lost.saturating_sub(was.lost);
                if key.1 == "audio" {
                    r.audio_received += now.frames - was.frames;
                } else {
                    r.video_frames += now.frames - was.frames;
                }
            }
            if bot.is_publisher() {
                // Everyone else subscribes to this publisher.
                let others = (self.bots.len() - 1) as u64;
                let (a0, v0) = before.sent[i];
                let (a1, v1) = after.sent[i];
                r.audio_expected += (a1 - a0) * others;
                r.video_expected += (v1 - v0) * others;
            }
        }
        r
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.bots.iter().map(Bot::received).collect(),
            sent: self.bots.iter().map(Bot::sent).collect(),
        }
    }

    pub async fn stop(self) {
        futures::future::join_all(self.bots.into_iter().map(Bot::leave)).await;
    }
}

struct Snapshot {
    received: Vec<Received>,
    sent: Vec<(u64, u64)>,
}

/// The report as lines of `key: value` for people and scripts.
pub fn summary(r: &LoadReport) -> String {
    let secs = r.window.as_secs_f64().max(1e-9);
    format!(
        "bots: {} ({} failed to join)\n\
         join time: p50 {} ms, p99 {} ms, max {} ms\n\
         window: {:.1} s\n\
         packets received: {} ({:.0}/s)\n\
         audio frames: {} of {} expected (loss {:.2} %)\n\
         video frames: {} of {} expected (loss {:.2} %)\n\
         rtp sequence gaps: {}\n",
        r.bots,
        r.join_failures,
        r.join_percentile(0.5).as_millis(),
        r.join_percentile(0.99).as_millis(),
        r.join_times.last().copied().unwrap_or_default().as_millis(),
        secs,
        r.packets,
        r.packets as f64 / secs,
        r.audio_received,
        r.audio_expected,
        r.audio_loss() * 100.0,
        r.video_frames,
        r.video_expected,
        r.video_loss() * 100.0,
        r.seq_lost,
    )
}
