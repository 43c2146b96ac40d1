//! Fjord and Janus side by side under one load generator (the lean str0m peers): the
//! same scenario against each server, one after the other, and what the subscribers
//! received per CPU-second of each server process.
use std::path::Path;
use std::time::Duration;

use bot::lean::{LeanLoad, LeanReport, LeanSpec, Server};

use crate::janus::Janus;

/// What one server did under the lean load: the peers' report, and the CPU seconds of
/// the server process over the same window.
pub struct Run {
    pub report: LeanReport,
    pub cpu: f64,
}

impl Run {
    /// What the subscribers received per CPU-second of the server: frames (video and
    /// audio), payload bytes, packets.
    pub fn per_cpu_second(&self) -> [f64; 3] {
        let r = &self.report;
        let cpu = self.cpu.max(1e-9);
        [
            (r.video_frames + r.audio_frames) as f64 / cpu,
            r.bytes as f64 / cpu,
            r.packets as f64 / cpu,
        ]
    }

    /// The server's CPU as a share of one core over the window, in %.
    pub fn cpu_percent(&self) -> f64 {
        self.cpu / self.report.window.as_secs_f64().max(1e-9) * 100.0
    }
}

/// Joins `spec`'s peers, lets them settle for `settle` (so that every subscriber is past
/// its first keyframe), then measures over `window` the peers and the CPU of process
/// `pid`, the server.
pub async fn run(
    spec: LeanSpec,
    pid: u32,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<Run> {
    let load = LeanLoad::start(spec).await?;
    for f in load.failures.iter().take(5) {
        eprintln!("join failed: {f}");
    }
    tokio::time::sleep(settle).await;
    eprintln!("measuring for {} s…", window.as_secs_f64());
    let before = crate::cpu_seconds(pid)?;
    let report = load.measure(window).await;
    let after = crate::cpu_seconds(pid)?;
    load.stop().await;
    Ok(Run {
        report,
        cpu: after - before,
    })
}

/// Starts Janus (configuration and log in `dir`) and runs the scenario `spec` makes for
/// a server in its room, as [`run`] does. Call inside the private network namespace
/// ([`crate::netns`]).
pub async fn run_on_janus(
    spec: impl FnOnce(Server) -> LeanSpec,
    dir: &Path,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<Run> {
    let log = dir.join("janus.log");
    eprintln!(
        "starting Janus (Debian's janus, VideoRoom over HTTP; log in {})…",
        log.display()
    );
    let janus = Janus::start(dir, &log).await?;
    let spec = spec(Server::Janus {
        api: janus.url.clone(),
        room: janus.room,
        peers_at: crate::netns::ADDR,
    });
    eprintln!(
        "joining {} publishers and {} subscribers to a Janus room…",
        spec.publishers, spec.subscribers
    );
    run(spec, janus.proc.pid(), settle, window).await
}

/// The side-by-side table, Fjord first, with the ratio Fjord/Janus of what the
/// subscribers received per server CPU-second.
pub fn table(fjord: &Run, janus: &Run) -> String {
    let (f, j) = (fjord.per_cpu_second(), janus.per_cpu_second());
    let mut out = format!(
        "{:<40} {:>12} {:>12} {:>12}\n",
        "received by subscribers", "fjord", "janus", "fjord/janus"
    );
    for (i, what) in [
        "frames per server cpu-second",
        "payload bytes per server cpu-second",
        "packets per server cpu-second",
    ]
    .into_iter()
    .enumerate()
    {
        out += &format!(
            "{what:<40} {:>12.0} {:>12.0} {:>12.2}\n",
            f[i],
            j[i],
            f[i] / j[i].max(1e-9)
        );
    }
    let row = |what: &str, f: f64, j: f64| format!("{what:<40} {f:>12.2} {j:>12.2}\n");
    out += &row(
        "server cpu, % of one core",
        fjord.cpu_percent(),
        janus.cpu_percent(),
    );
    out += &row(
        "video frame loss, %",
        fjord.report.video_loss() * 100.0,
        janus.report.video_loss() * 100.0,
    );
    out += &row(
        "audio frame loss, %",
        fjord.report.audio_loss() * 100.0,
        janus.report.audio_loss() * 100.0,
    );
    let first = |r: &Run| r.report.first_media_percentile(0.5).as_secs_f64() * 1000.0;
    out += &row("time to first media p50, ms", first(fjord), first(janus));
    out
}
