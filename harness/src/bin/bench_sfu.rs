//! `fjord-bench-sfu`: one media node, M meetings of P publishers × S subscribers (by
//! default 1 × 5 × 50), measured over a window. Prints packets the node forwarded per
//! second, its CPU seconds (from /proc), and forwarded packets per CPU-second, plus what
//! the peers received.
//!
//! `--load lean` (the default) drives the node with the lean str0m peers of
//! `bot::lean`, many per thread, cheap enough that the node can be saturated on this
//! machine; `--load webrtc` with the webrtc-rs bots, the interop reference (they cost
//! more CPU than the node they load). Build in release first:
//! `cargo build --release --workspace --bins`.
use std::time::Duration;

use anyhow::Context;
use bot::lean::{LeanLoad, LeanReport, LeanSpec};
use bot::{ClipSpec, LoadSpec};
use clap::{Parser, ValueEnum};
use harness::{Cluster, ClusterSpec, NodeSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LoadKind {
    Lean,
    Webrtc,
}

#[derive(Parser)]
#[command(name = "fjord-bench-sfu")]
struct Args {
    #[arg(long, default_value_t = 5)]
    publishers: usize,
    #[arg(long, default_value_t = 50)]
    subscribers: usize,
    /// Meetings, each of `publishers` × `subscribers` (lean load only).
    #[arg(long, default_value_t = 1)]
    meetings: usize,
    /// Seconds to measure once everyone has joined.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Video size the publishers send.
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 360)]
    height: u32,
    /// The peers that load the node.
    #[arg(long, value_enum, default_value_t = LoadKind::Lean)]
    load: LoadKind,
}

/// The node's CPU seconds, forwarded packets and forwarding latency buckets now.
struct Sample {
    cpu: f64,
    forwarded: f64,
    latency: Vec<(f64, f64)>,
}

async fn sample(http: &reqwest::Client, base: &str, pid: u32) -> anyhow::Result<Sample> {
    let cpu = harness::cpu_seconds(pid)?;
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(Sample {
        cpu,
        forwarded: harness::metric_value(&text, "fjord_media_packets_out_total")
            .context("fjord_media_packets_out_total missing")?,
        latency: harness::histogram_buckets(&text, "fjord_media_forward_latency_seconds"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.meetings > 1 && a.load == LoadKind::Webrtc {
        anyhow::bail!("--meetings takes the lean load only (--load lean)");
    }
    let spec = ClusterSpec {
        controllers: 1,
        media: vec![NodeSpec {
            id: "media-oslo-1".into(),
            region: "oslo".into(),
            capacity: 10_000,
        }],
        recording: vec![],
        ..ClusterSpec::local()
    };
    eprintln!("starting etcd, a controller and one media node…");
    let cluster = Cluster::start(spec).await?;
    let base = cluster.controllers[0].url();
    let http = reqwest::Client::new();
    let mut meetings = Vec::new();
    for i in 0..a.meetings {
        let title = format!("sfu bench {i}");
        meetings.push(
            bot::create_meeting(
                &http,
                &base,
                &cluster.operator_key,
                &serde_json::json!({ "title": title }),
            )
            .await?,
        );
    }
    let node = &cluster.media[0];
    let node_base = format!("http://127.0.0.1:{}", node.http);
    let pid = node.proc.pid();
    let clip = ClipSpec {
        width: a.width,
        height: a.height,
        ..ClipSpec::default()
    };
    let window = Duration::from_secs(a.duration);
    eprintln!(
        "joining {} meeting(s) of {} publishers and {} subscribers ({:?} load)…",
        a.meetings, a.publishers, a.subscribers, a.load
    );

    let (before, after, summary, secs) = match a.load {
        LoadKind::Webrtc => {
            let load = harness::bench_load(LoadSpec {
                controller: base,
                meeting: meetings[0].clone(),
                password: None,
                region: Some("oslo".into()),
                subscriber_region: None,
                publishers: a.publishers,
                subscribers: a.subscribers,
                clip,
                join_concurrency: 8,
            })
            .await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            eprintln!("measuring for {} s…", a.duration);
            let before = sample(&http, &node_base, pid).await?;
            let report = load.measure(window).await;
            let after = sample(&http, &node_base, pid).await?;
            load.stop().await;
            let secs = report.window.as_secs_f64();
            (before, after, bot::load::summary(&report), secs)
        }
        LoadKind::Lean => {
            let mut loads = Vec::new();
            for m in &meetings {
                loads.push(
                    LeanLoad::start(LeanSpec {
                        controller: base.clone(),
                        meeting: m.clone(),
                        region: Some("oslo".into()),
                        publishers: a.publishers,
                        subscribers: a.subscribers,
                        clip: clip.clone(),
                        join_concurrency: 8,
                    })
                    .await?,
                );
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            eprintln!("measuring for {} s…", a.duration);
            let before = sample(&http, &node_base, pid).await?;
            let reports = futures::future::join_all(loads.iter().map(|l| l.measure(window))).await;
            let after = sample(&http, &node_base, pid).await?;
            for l in loads {
                l.stop().await;
            }
            let report = merge(reports);
            let secs = report.window.as_secs_f64();
            (before, after, bot::lean::summary(&report), secs)
        }
    };

    let forwarded = after.forwarded - before.forwarded;
    let cpu = after.cpu - before.cpu;
    println!(
        "sfu: {} meeting(s) of {} publishers x {} subscribers, {:.1} s, {:?} load",
        a.meetings, a.publishers, a.subscribers, secs, a.load
    );
    println!("packets forwarded per second: {:.0}", forwarded / secs);
    println!(
        "sfu cpu seconds: {cpu:.2} ({:.0} % of one core)",
        cpu / secs * 100.0
    );
    println!(
        "forwarded packets per sfu cpu-second: {:.0}",
        forwarded / cpu.max(1e-9)
    );
    let q = |q| {
        harness::histogram_quantile(&before.latency, &after.latency, q)
            .map_or_else(|| "-".to_owned(), |s| format!("{:.2}", s * 1000.0))
    };
    println!(
        "inside the node, arrival to copies sent: p50 {} ms, p99 {} ms",
        q(0.5),
        q(0.99)
    );
    print!("{summary}");
    Ok(())
}

/// The meetings' reports as one (their windows overlap: the longest counts).
fn merge(reports: Vec<LeanReport>) -> LeanReport {
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
