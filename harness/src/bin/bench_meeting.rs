//! `fjord-bench-meeting`: one large meeting on receive slots, as a lecture fills. P
//! participants (default 300) join at R a second (default 20), C of them with cameras
//! on (default 25, simulcast), all with microphones (3 speaking, the rest silent), every
//! one showing a 3×3 gallery of small tiles. The load is the lean str0m peers of
//! `bot::lean` in this one process, beside the node (as `fjord-bench-sfu`).
//!
//! It prints the join-to-first-media times over the whole ramp, the node's offers per
//! participant, signaling messages per participant per second during the ramp and
//! after, packets forwarded per second, packets each receiver got (audio and video
//! apart) and how many streams, the node's CPU and memory per participant, and frames
//! received against those the views ask for.
//!
//! `--webinar`: a webinar of 2 panelists and 1,000 attendees over two media nodes of one
//! region (spill-over), each attendee showing the panel (two small tiles).
//!
//! Build in release first: `cargo build --release --workspace --bins`.
use std::time::Duration;

use anyhow::Context;
use bot::ClipSpec;
use bot::lean::{MeetingLoad, MeetingSpec, Server};
use clap::Parser;
use harness::{Cluster, ClusterSpec, NodeSpec};
use signaling::{TileSize, View};

#[derive(Parser)]
#[command(name = "fjord-bench-meeting")]
struct Args {
    /// Participants (attendees and panelists with --webinar).
    #[arg(long)]
    participants: Option<usize>,
    /// Joins a second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Participants with cameras on.
    #[arg(long, default_value_t = 25)]
    cameras: usize,
    /// Participants speaking (their microphones loud; the others silent).
    #[arg(long, default_value_t = 3)]
    speakers: usize,
    /// Tiles each participant shows.
    #[arg(long, default_value_t = 9)]
    tiles: u32,
    /// Seconds to measure once everyone has joined (after 3 s to settle).
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Camera size (the `h` layer; `m` and `l` are a half and a quarter).
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 360)]
    height: u32,
    /// A webinar of 2 panelists and (by default) 1,000 attendees on two media nodes.
    #[arg(long)]
    webinar: bool,
}

/// The node processes' CPU seconds and resident memory (bytes), summed.
fn sample(pids: &[u32]) -> anyhow::Result<(f64, u64)> {
    let mut cpu = 0.0;
    let mut rss = 0;
    for pid in pids {
        cpu += harness::cpu_seconds(*pid)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        rss += kb * 1024;
    }
    Ok((cpu, rss))
}

async fn forwarded(http: &reqwest::Client, bases: &[String]) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for base in bases {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        sum += harness::metric_value(&text, "fjord_media_packets_out_total")
            .context("fjord_media_packets_out_total missing")?;
    }
    Ok(sum)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    tokio::runtime::Runtime::new()?.block_on(run(a))
}

async fn run(a: Args) -> anyhow::Result<()> {
    let participants = a
        .participants
        .unwrap_or(if a.webinar { 1_002 } else { 300 });
    let nodes = if a.webinar { 2 } else { 1 };
    // A webinar's half on each node, with room for placement's headroom (the
    // controller leaves some of each node free); the rest spill over to the second.
    let capacity = if a.webinar {
        (participants as u32).div_ceil(2) * 5 / 4 + 10
    } else {
        participants as u32 + 10
    };
    let spec = ClusterSpec {
        controllers: 1,
        media: (1..=nodes)
            .map(|i| NodeSpec {
                id: format!("media-oslo-{i}"),
                region: "oslo".into(),
                capacity,
            })
            .collect(),
        recording: vec![],
        join_limits: harness::no_join_limits(),
        ..ClusterSpec::local()
    };
    eprintln!("starting etcd, a controller and {nodes} media node(s)…");
    let cluster = Cluster::start(spec).await?;
    let base = cluster.controllers[0].url();
    let http = reqwest::Client::new();
    let body = if a.webinar {
        serde_json::json!({ "title": "webinar bench", "kind": "webinar" })
    } else {
        serde_json::json!({ "title": "meeting bench" })
    };
    let created = bot::create_meeting_answer(&http, &base, &cluster.operator_key, &body).await?;
    let meeting = created["id"].as_str().context("no meeting id")?.to_owned();
    let panelist_key = created["panelist_key"].as_str().map(str::to_owned);
    let view = View {
        video_slots: if a.webinar { 2 } else { a.tiles },
        tiles: vec![TileSize {
            width: 320,
            height: 180,
        }],
        ..View::default_for_client()
    };
    let spec = MeetingSpec {
        server: Server::Fjord {
            controller: base.clone(),
            meeting,
            region: Some("oslo".into()),
        },
        participants,
        rate: a.rate,
        cameras: a.cameras,
        speakers: a.speakers,
        view,
        clip: ClipSpec {
            width: a.width,
            height: a.height,
            ..ClipSpec::default()
        },
        panelist_key: panelist_key.filter(|_| a.webinar),
        panelists: if a.webinar { 2 } else { 0 },
    };
    let pids: Vec<u32> = cluster.media.iter().map(|n| n.proc.pid()).collect();
    let bases: Vec<String> = cluster
        .media
        .iter()
        .map(|n| format!("http://127.0.0.1:{}", n.http))
        .collect();
    let (_, idle_rss) = sample(&pids)?;
    eprintln!(
        "{} participants joining at {}/s ({})…",
        participants,
        a.rate,
        if a.webinar {
            "webinar: 2 panelists".to_owned()
        } else {
            format!("{} cameras, {} speaking", a.cameras, a.speakers)
        }
    );
    let load = MeetingLoad::start(spec).await?;
    for f in load.failures.iter().take(5) {
        eprintln!("join failed: {f}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("measuring for {} s…", a.duration);
    let (cpu0, _) = sample(&pids)?;
    let fwd0 = forwarded(&http, &bases).await?;
    let report = load.measure(Duration::from_secs(a.duration)).await;
    let (cpu1, rss) = sample(&pids)?;
    let fwd1 = forwarded(&http, &bases).await?;
    load.stop().await;
    drop(cluster);

    let secs = report.window.as_secs_f64();
    let n = report.participants.max(1) as f64;
    let cpu = cpu1 - cpu0;
    println!(
        "meeting: {} participants on {nodes} node(s), {:.1} s measured, lean load",
        participants, secs
    );
    println!("packets forwarded per second: {:.0}", (fwd1 - fwd0) / secs);
    println!(
        "node cpu: {:.0} % of one core, {:.2} ms of cpu per participant per second",
        cpu / secs * 100.0,
        cpu / secs / n * 1000.0
    );
    println!(
        "node memory: {:.0} MB resident, {:.3} MB per participant over the idle node's {:.0} MB",
        rss as f64 / 1e6,
        rss.saturating_sub(idle_rss) as f64 / 1e6 / n,
        idle_rss as f64 / 1e6
    );
    print!("{}", report.summary());
    Ok(())
}
