//! `fjord-bench-aiortc`: what one independent client stack, aiortc, gets through Fjord
//! and through Janus's VideoRoom under the same high-bitrate load: P publishers (default
//! 2) whose VP8 encoders spend their whole target (default 1 Mbit/s, a moving block of
//! noise) and S listening subscribers (default 6), first in a meeting on one Fjord media
//! node, then in a Janus room. For each server it prints, per kind, the frames the
//! publishers sent in the window times the subscribers, how many reached a subscriber at
//! all, how many whole (every packet), and Fjord's share of whole frames over Janus's.
//!
//! aiortc sends no transport-wide congestion feedback (REMB and NACK only), so this is
//! also the case in which a server must not pace subscribers at an estimate nothing
//! moves. Janus gathers no ICE candidates on loopback: both runs happen inside a private
//! network namespace. Build in release first: `cargo build --release --workspace --bins`.
use std::time::Duration;

use clap::Parser;
use harness::aiortc::{Load, Room};
use harness::{Cluster, ClusterSpec, NodeSpec};

#[derive(Parser)]
#[command(name = "fjord-bench-aiortc")]
struct Args {
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    #[arg(long, default_value_t = 6)]
    subscribers: usize,
    /// Each publisher's VP8 target, kbps.
    #[arg(long, default_value_t = 1_000)]
    bitrate: u32,
    /// The measured window, seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.publishers >= 1 && a.subscribers >= 1,
        "--publishers and --subscribers must be at least 1"
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let harness::netns::Place::RanInside =
        harness::netns::rerun_inside("fjord-bench-aiortc", &args)?
    {
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(run(a))
}

async fn run(a: Args) -> anyhow::Result<()> {
    eprintln!("starting etcd, a controller and one media node…");
    let spec = ClusterSpec {
        controllers: 1,
        media: vec![],
        recording: vec![],
        ..ClusterSpec::local()
    };
    let mut cluster = Cluster::start(spec).await?;
    cluster.start_media(NodeSpec {
        id: "media-oslo-1".into(),
        region: "oslo".into(),
        capacity: 1_000,
    })?;
    cluster.wait_ready(Duration::from_secs(20)).await?;
    let controller = cluster.controllers[0].url();
    let meeting = bot::create_meeting(
        &reqwest::Client::new(),
        &controller,
        &cluster.operator_key,
        &serde_json::json!({ "title": "aiortc bench" }),
    )
    .await?;
    eprintln!(
        "fjord: {} aiortc publishers at {} kbps, {} subscribers…",
        a.publishers, a.bitrate, a.subscribers
    );
    let load = Load {
        publishers: a.publishers,
        subscribers: a.subscribers,
        bitrate_kbps: a.bitrate,
        settle: Duration::from_secs(6),
        window: Duration::from_secs(a.duration),
    };
    let fjord = load
        .run(&Room::Fjord {
            controller,
            meeting,
        })
        .await?;
    drop(cluster);

    let dir = tempfile::tempdir()?;
    let log = dir.path().join("janus.log");
    eprintln!("starting Janus (log in {})…", log.display());
    let janus = harness::janus::Janus::start(dir.path(), &log).await?;
    eprintln!("janus: the same peers in a VideoRoom…");
    let room = Room::Janus {
        api: janus.url.clone(),
        room: janus.room,
        publishers: a.publishers,
    };
    let on_janus = load.run(&room).await?;
    drop(janus);

    println!(
        "aiortc: {} publishers at {} kbps x {} subscribers, {} s window",
        a.publishers, a.bitrate, a.subscribers, a.duration
    );
    println!(
        "{:<6} {:<8} {:>10} {:>10} {:>10} {:>9}",
        "kind", "server", "expected", "arrived", "whole", "whole %"
    );
    for (i, kind) in ["audio", "video"].into_iter().enumerate() {
        for (server, t) in [("fjord", &fjord[i]), ("janus", &on_janus[i])] {
            println!(
                "{kind:<6} {server:<8} {:>10} {:>10} {:>10} {:>9.2}",
                t.expected,
                t.arrived,
                t.whole,
                t.share() * 100.0
            );
        }
        let (f, j) = (&fjord[i], &on_janus[i]);
        println!(
            "{kind:<6} whole share fjord/janus {:.4} (goal: within 0.5 % of 1)",
            f.share() / j.share().max(1e-9)
        );
    }
    Ok(())
}
