//! `fjord-bench-sfu`: one media node, webrtc-rs bots in one meeting (P publishers × S
//! subscribers by default 5 × 50), measured over a window. Prints packets the node
//! forwarded per second, its CPU seconds (from /proc), and forwarded packets per
//! CPU-second, plus what the bots received.
//! Build in release first: `cargo build --release --workspace --bins`.
use std::time::Duration;

use anyhow::Context;
use bot::{ClipSpec, LoadSpec};
use clap::Parser;
use harness::{Cluster, ClusterSpec, NodeSpec};

#[derive(Parser)]
#[command(name = "fjord-bench-sfu")]
struct Args {
    #[arg(long, default_value_t = 5)]
    publishers: usize,
    #[arg(long, default_value_t = 50)]
    subscribers: usize,
    /// Seconds to measure once everyone has joined.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Video size the publishers send.
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 360)]
    height: u32,
}

async fn packets_out(http: &reqwest::Client, base: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    harness::metric_value(&text, "fjord_media_packets_out_total")
        .context("fjord_media_packets_out_total missing")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
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
    let meeting = bot::create_meeting(
        &http,
        &base,
        &cluster.operator_key,
        &serde_json::json!({ "title": "sfu bench" }),
    )
    .await?;
    let node = &cluster.media[0];
    let node_base = format!("http://127.0.0.1:{}", node.http);
    let pid = node.proc.pid();

    eprintln!(
        "joining {} publishers and {} subscribers…",
        a.publishers, a.subscribers
    );
    let load = harness::bench_load(LoadSpec {
        controller: base,
        meeting,
        password: None,
        region: Some("oslo".into()),
        subscriber_region: None,
        publishers: a.publishers,
        subscribers: a.subscribers,
        clip: ClipSpec {
            width: a.width,
            height: a.height,
            ..ClipSpec::default()
        },
        join_concurrency: 8,
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("measuring for {} s…", a.duration);
    let (cpu0, out0) = (
        harness::cpu_seconds(pid)?,
        packets_out(&http, &node_base).await?,
    );
    let report = load.measure(Duration::from_secs(a.duration)).await;
    let (cpu1, out1) = (
        harness::cpu_seconds(pid)?,
        packets_out(&http, &node_base).await?,
    );
    load.stop().await;

    let secs = report.window.as_secs_f64();
    let forwarded = out1 - out0;
    let cpu = cpu1 - cpu0;
    println!(
        "sfu: {} publishers x {} subscribers, {:.1} s",
        a.publishers, a.subscribers, secs
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
    print!("{}", bot::load::summary(&report));
    Ok(())
}
