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
//!
//! `--against janus` then runs the same lean scenario against Janus's VideoRoom (Debian's
//! `janus`, started with a configuration the bench writes), one after the other, and
//! prints both side by side: what the subscribers received (frames, payload bytes and
//! packets) per CPU-second of each server process, loss and time to first media, and the
//! ratio Fjord/Janus.
use std::time::Duration;

use anyhow::Context;
use bot::lean::{LeanLoad, LeanReport, LeanSpec, Server};
use bot::{ClipSpec, LoadSpec};
use clap::{Parser, ValueEnum};
use harness::{Cluster, ClusterSpec, NodeSpec, compare};

/// How long the peers run before the window, so that every subscriber is past its first
/// keyframe.
const SETTLE: Duration = Duration::from_secs(3);

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
    /// Runs the same scenario against this server too, after Fjord, and compares.
    #[arg(long, value_enum)]
    against: Option<Peer>,
    /// The node sends without UDP GSO (`udp_gso = false`), datagrams in `sendmmsg`
    /// batches only: to compare.
    #[arg(long)]
    no_gso: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Peer {
    Janus,
}

/// The node's CPU seconds, forwarded packets and forwarding latency buckets now.
struct Sample {
    cpu: f64,
    forwarded: f64,
    /// Of `forwarded`, those sent in UDP GSO sends.
    gso: f64,
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
        gso: harness::metric_value(&text, "fjord_media_gso_packets_out_total").unwrap_or(0.0),
        latency: harness::histogram_buckets(&text, "fjord_media_forward_latency_seconds"),
    })
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    // Janus gathers no candidates on loopback: the comparison runs inside a private
    // network namespace (both servers, so that they are measured alike).
    if a.against == Some(Peer::Janus) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if let harness::netns::Place::RanInside =
            harness::netns::rerun_inside("fjord-bench-sfu --against janus", &args)?
        {
            return Ok(());
        }
    }
    tokio::runtime::Runtime::new()?.block_on(run(a))
}

async fn run(a: Args) -> anyhow::Result<()> {
    if a.meetings > 1 && a.load == LoadKind::Webrtc {
        anyhow::bail!("--meetings takes the lean load only (--load lean)");
    }
    if a.against.is_some() && (a.load != LoadKind::Lean || a.meetings != 1) {
        anyhow::bail!(
            "--against compares one meeting under the lean load (--load lean --meetings 1)"
        );
    }
    let spec = ClusterSpec {
        controllers: 1,
        media: vec![],
        recording: vec![],
        // The bench joins its peers from one address, faster than a client would.
        join_limits: harness::no_join_limits(),
        ..ClusterSpec::local()
    };
    eprintln!("starting etcd, a controller and one media node…");
    let mut cluster = Cluster::start(spec).await?;
    cluster.media_extra = serde_json::json!({ "udp_gso": !a.no_gso });
    cluster.start_media(NodeSpec {
        id: "media-oslo-1".into(),
        region: "oslo".into(),
        capacity: 10_000,
    })?;
    cluster.wait_ready(Duration::from_secs(20)).await?;
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

    let lean = |server: Server| LeanSpec {
        server,
        publishers: a.publishers,
        subscribers: a.subscribers,
        clip: clip.clone(),
        join_concurrency: 8,
    };
    let fjord = match a.load {
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
                signal_ca: None,
            })
            .await?;
            tokio::time::sleep(SETTLE).await;
            eprintln!("measuring for {} s…", a.duration);
            let before = sample(&http, &node_base, pid).await?;
            let report = load.measure(window).await;
            let after = sample(&http, &node_base, pid).await?;
            load.stop().await;
            let secs = report.window.as_secs_f64();
            print_node(&a, secs, &before, &after);
            print!("{}", bot::load::summary(&report));
            return Ok(());
        }
        LoadKind::Lean => {
            let mut loads = Vec::new();
            for m in &meetings {
                loads.push(
                    LeanLoad::start(lean(Server::Fjord {
                        controller: base.clone(),
                        meeting: m.clone(),
                        region: Some("oslo".into()),
                    }))
                    .await?,
                );
            }
            tokio::time::sleep(SETTLE).await;
            eprintln!("measuring for {} s…", a.duration);
            let before = sample(&http, &node_base, pid).await?;
            let reports = futures::future::join_all(loads.iter().map(|l| l.measure(window))).await;
            let after = sample(&http, &node_base, pid).await?;
            for l in loads {
                l.stop().await;
            }
            let report = LeanReport::merge(reports);
            print_node(&a, report.window.as_secs_f64(), &before, &after);
            print!("{}", bot::lean::summary(&report));
            compare::Run {
                cpu: after.cpu - before.cpu,
                report,
            }
        }
    };
    drop(cluster);

    let Some(Peer::Janus) = a.against else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let janus = compare::run_on_janus(lean, dir.path(), SETTLE, window).await?;
    println!(
        "janus: 1 room of {} publishers x {} subscribers, {:.1} s, lean load",
        a.publishers,
        a.subscribers,
        janus.report.window.as_secs_f64()
    );
    println!(
        "janus cpu seconds: {:.2} ({:.0} % of one core)",
        janus.cpu,
        janus.cpu_percent()
    );
    print!("{}", bot::lean::summary(&janus.report));
    print!("{}", compare::table(&fjord, &janus));
    Ok(())
}

/// The node's figures over the window.
fn print_node(a: &Args, secs: f64, before: &Sample, after: &Sample) {
    let forwarded = after.forwarded - before.forwarded;
    let cpu = after.cpu - before.cpu;
    println!(
        "sfu: {} meeting(s) of {} publishers x {} subscribers, {:.1} s, {:?} load",
        a.meetings, a.publishers, a.subscribers, secs, a.load
    );
    println!("packets forwarded per second: {:.0}", forwarded / secs);
    println!(
        "of them in UDP GSO sends: {:.1} %",
        (after.gso - before.gso) / forwarded.max(1.0) * 100.0
    );
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
}
