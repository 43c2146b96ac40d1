//! `fjord-drill`: fault drills under load (`harness::drill`) for as long as asked. Each
//! round kills, with `kill -9`, the oslo media node that hosts the most participants (and
//! every other round, with recordings running, the recording node that holds the most
//! recordings), measures what the participants and the recordings saw, starts the node
//! again and pauses; at the end it prints the worst of all rounds. Build first:
//! `cargo build --release --workspace --bins`.
use std::time::{Duration, Instant};

use clap::Parser;
use harness::drill::{Drill, DrillSpec, FaultReport};

#[derive(Parser)]
#[command(name = "fjord-drill")]
struct Args {
    #[arg(long, default_value_t = 4)]
    meetings: usize,
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Per meeting; they join from oslo and stockholm in turn (the meetings cascade).
    #[arg(long, default_value_t = 3)]
    subscribers: usize,
    /// How long to keep making faults.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seconds between a node's restart and the next fault.
    #[arg(long, default_value_t = 10)]
    pause: u64,
    /// Meetings recorded (on two recording nodes); 0 leaves recording nodes out.
    #[arg(long, default_value_t = 2)]
    recordings: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    eprintln!(
        "starting a cluster (etcd, 2 controllers, 3 media nodes in 2 regions) and {} meetings of {} + {} bots…",
        a.meetings, a.publishers, a.subscribers
    );
    let mut drill = Drill::start(DrillSpec {
        meetings: a.meetings,
        publishers: a.publishers,
        subscribers: a.subscribers,
        recordings: a.recordings.min(a.meetings),
        ..DrillSpec::default()
    })
    .await?;
    let end = Instant::now() + Duration::from_secs_f64(a.minutes * 60.0);
    let mut rounds: Vec<FaultReport> = Vec::new();
    while Instant::now() < end {
        eprintln!("round {}…", rounds.len() + 1);
        let recording_round = a.recordings > 0 && rounds.len() % 2 == 1;
        let r = if recording_round {
            let r = drill.kill_recording_node().await?;
            r.print();
            drill.restart_recording_node(&r.dead_node).await?;
            r
        } else {
            let r = drill.kill_media_node().await?;
            r.print();
            drill.restart_media_node(&r.dead_node).await?;
            r
        };
        rounds.push(r);
        tokio::time::sleep(Duration::from_secs(a.pause)).await;
    }
    let all = FaultReport {
        fault: format!("{} rounds of kill -9 of a node", rounds.len()),
        dead_node: String::new(),
        meetings: a.meetings,
        participants: rounds.first().map_or(0, |r| r.participants),
        rejoined: rounds.iter().map(|r| r.rejoined).sum(),
        failed_rejoins: rounds.iter().map(|r| r.failed_rejoins).sum(),
        meetings_lost: rounds.iter().map(|r| r.meetings_lost).sum(),
        media_back: rounds.iter().flat_map(|r| r.media_back.clone()).collect(),
        stale_placements: rounds.iter().map(|r| r.stale_placements).sum(),
        recordings_hit: rounds.iter().map(|r| r.recordings_hit).sum(),
        recordings_lost: rounds.iter().map(|r| r.recordings_lost).sum(),
        recording_gaps: rounds
            .iter()
            .flat_map(|r| r.recording_gaps.clone())
            .collect(),
    };
    println!("--- summary");
    all.print();
    Ok(())
}
