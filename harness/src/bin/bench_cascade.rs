//! `fjord-bench-cascade`: one meeting across two media nodes. P webrtc-rs publishers join
//! in oslo (node A) and S subscribers in stockholm (node B), so that every packet takes
//! one relay hop. Measured over a window: the relay packets A sends B per second and
//! their bitrate against the publishers' own, both nodes' CPU seconds, the packets B
//! forwards to its subscribers per CPU-second of both nodes, and the latency the hop
//! adds (a packet's arrival at A to its copies being written for B's subscribers).
//! Build in release first: `cargo build --release --workspace --bins`.
use std::time::Duration;

use anyhow::Context;
use bot::{ClipSpec, LoadSpec};
use clap::Parser;
use harness::{Cluster, ClusterSpec, NodeSpec, histogram_buckets, histogram_quantile, metric_sum};

#[derive(Parser)]
#[command(name = "fjord-bench-cascade")]
struct Args {
    /// Publishers on node A (oslo).
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Subscribers on node B (stockholm).
    #[arg(long, default_value_t = 20)]
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

const HOP: &str = "fjord_relay_hop_latency_seconds";

/// What the two nodes' counters say at one moment.
struct Reading {
    cpu_a: f64,
    cpu_b: f64,
    relay_packets: f64,
    relay_bytes: f64,
    published_bytes: f64,
    b_packets_out: f64,
    hop: Vec<(f64, f64)>,
}

async fn text(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

async fn read(http: &reqwest::Client, c: &Cluster) -> anyhow::Result<Reading> {
    let (a, b) = (&c.media[0], &c.media[1]);
    let ta = text(http, &format!("http://127.0.0.1:{}", a.http)).await?;
    let tb = text(http, &format!("http://127.0.0.1:{}", b.http)).await?;
    let to_b = [("peer", b.spec.id.as_str()), ("direction", "out")];
    Ok(Reading {
        cpu_a: harness::cpu_seconds(a.proc.pid())?,
        cpu_b: harness::cpu_seconds(b.proc.pid())?,
        relay_packets: metric_sum(&ta, "fjord_relay_link_packets_total", &to_b),
        relay_bytes: metric_sum(&ta, "fjord_relay_link_bytes_total", &to_b),
        published_bytes: metric_sum(&ta, "fjord_media_bytes_in_total", &[]),
        b_packets_out: metric_sum(&tb, "fjord_media_packets_out_total", &[]),
        hop: histogram_buckets(&tb, HOP),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let node = |id: &str, region: &str| NodeSpec {
        id: id.into(),
        region: region.into(),
        capacity: 10_000,
    };
    let spec = ClusterSpec {
        controllers: 1,
        media: vec![
            node("media-oslo-1", "oslo"),
            node("media-stockholm-1", "stockholm"),
        ],
        recording: vec![],
        // The bench joins its peers from one address, faster than a client would.
        join_limits: harness::no_join_limits(),
        ..ClusterSpec::local()
    };
    eprintln!("starting etcd, a controller and media nodes in oslo and stockholm…");
    let cluster = Cluster::start(spec).await?;
    let base = cluster.controllers[0].url();
    let http = reqwest::Client::new();
    let meeting = bot::create_meeting(
        &http,
        &base,
        &cluster.operator_key,
        &serde_json::json!({ "title": "cascade bench" }),
    )
    .await?;
    eprintln!(
        "joining {} publishers in oslo and {} subscribers in stockholm…",
        a.publishers, a.subscribers
    );
    let load = harness::bench_load(LoadSpec {
        controller: base,
        meeting,
        password: None,
        region: Some("oslo".into()),
        subscriber_region: Some("stockholm".into()),
        publishers: a.publishers,
        subscribers: a.subscribers,
        clip: ClipSpec {
            width: a.width,
            height: a.height,
            ..ClipSpec::default()
        },
        join_concurrency: 8,
        signal_ca: None,
    })
    .await?;
    let on_b = load
        .bots
        .iter()
        .filter(|b| !b.is_publisher() && b.node_id == cluster.media[1].spec.id)
        .count();
    anyhow::ensure!(
        on_b == a.subscribers,
        "only {on_b} of {} subscribers were placed on {}",
        a.subscribers,
        cluster.media[1].spec.id
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("measuring for {} s…", a.duration);
    let before = read(&http, &cluster).await?;
    let report = load.measure(Duration::from_secs(a.duration)).await;
    let after = read(&http, &cluster).await?;
    load.stop().await;

    let secs = report.window.as_secs_f64();
    let (cpu_a, cpu_b) = (after.cpu_a - before.cpu_a, after.cpu_b - before.cpu_b);
    let relay = after.relay_packets - before.relay_packets;
    let relay_bytes = after.relay_bytes - before.relay_bytes;
    let published = after.published_bytes - before.published_bytes;
    let forwarded = after.b_packets_out - before.b_packets_out;
    let ms = |q| {
        histogram_quantile(&before.hop, &after.hop, q)
            .map(|s| format!("{:.3}", s * 1000.0))
            .context("no relayed packet was observed")
    };
    println!(
        "cascade: {} publishers on {} x {} subscribers on {}, {secs:.1} s",
        a.publishers, cluster.media[0].spec.id, a.subscribers, cluster.media[1].spec.id
    );
    println!("relay packets per second (a -> b): {:.0}", relay / secs);
    println!(
        "relay bitrate: {:.0} kbit/s for the publishers' {:.0} kbit/s into a (ratio {:.2})",
        relay_bytes * 8.0 / secs / 1000.0,
        published * 8.0 / secs / 1000.0,
        relay_bytes / published.max(1.0)
    );
    println!(
        "cpu seconds: a {cpu_a:.2} ({:.0} % of one core), b {cpu_b:.2} ({:.0} % of one core)",
        cpu_a / secs * 100.0,
        cpu_b / secs * 100.0
    );
    println!(
        "packets b forwarded per cpu-second of a and b: {:.0}",
        forwarded / (cpu_a + cpu_b).max(1e-9)
    );
    println!("hop latency p50: {} ms", ms(0.5)?);
    println!("hop latency p99: {} ms", ms(0.99)?);
    print!("{}", bot::load::summary(&report));
    Ok(())
}
