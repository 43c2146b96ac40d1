//! `fjord-drill`: fault drills under load (`harness::drill`) for as long as asked. Each
//! round makes one fault, in turn: `kill -9` of the oslo media node that hosts the most
//! participants, of the recording node that holds the most recordings (with recordings
//! running), of the controller leader and of the etcd raft leader; a partition from etcd
//! of that media node and of the controller leader. It measures what the participants,
//! the recordings and a prober's joins saw, restores the process (restart, or heal) and
//! pauses; at the end it prints, for each kind of fault, the worst of its rounds. Build
//! first: `cargo build --release --workspace --bins`.
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use harness::drill::{Drill, DrillSpec, FaultReport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Fault {
    KillMedia,
    KillRecording,
    KillLeader,
    KillEtcd,
    PartitionMedia,
    PartitionController,
}

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
    /// Seconds between a process's restart (or a heal) and the next fault.
    #[arg(long, default_value_t = 10)]
    pause: u64,
    /// Meetings recorded (on two recording nodes); 0 leaves recording nodes out.
    #[arg(long, default_value_t = 2)]
    recordings: usize,
    /// The faults to make, in turn (comma-separated); all of them by default.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<Fault>,
    /// Lease time-to-live of nodes and controllers (the chart's default is 10).
    #[arg(long, default_value_t = 10)]
    lease_ttl_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut faults = if a.faults.is_empty() {
        Fault::value_variants().to_vec()
    } else {
        a.faults.clone()
    };
    if a.recordings == 0 {
        faults.retain(|f| *f != Fault::KillRecording);
    }
    anyhow::ensure!(!faults.is_empty(), "no fault to make");
    eprintln!(
        "starting a cluster (3-member etcd, 2 controllers, 3 media nodes in 2 regions, {} recording nodes) and {} meetings of {} + {} bots…",
        if a.recordings > 0 { 2 } else { 0 },
        a.meetings,
        a.publishers,
        a.subscribers
    );
    let mut drill = Drill::start(DrillSpec {
        meetings: a.meetings,
        publishers: a.publishers,
        subscribers: a.subscribers,
        recordings: a.recordings.min(a.meetings),
        lease_ttl_secs: a.lease_ttl_secs,
        ..DrillSpec::default()
    })
    .await?;
    let end = Instant::now() + Duration::from_secs_f64(a.minutes * 60.0);
    let mut rounds: Vec<(Fault, FaultReport)> = Vec::new();
    while Instant::now() < end {
        let fault = faults[rounds.len() % faults.len()];
        eprintln!("round {}: {fault:?}…", rounds.len() + 1);
        let r = match fault {
            Fault::KillMedia => drill.kill_media_node().await?,
            Fault::KillRecording => drill.kill_recording_node().await?,
            Fault::KillLeader => drill.kill_controller_leader().await?,
            Fault::KillEtcd => drill.kill_etcd_member().await?,
            Fault::PartitionMedia => drill.partition_media_node().await?,
            Fault::PartitionController => drill.partition_controller().await?,
        };
        r.print();
        match fault {
            Fault::KillMedia => drill.restart_media_node(&r.dead_node).await?,
            Fault::KillRecording => drill.restart_recording_node(&r.dead_node).await?,
            Fault::KillLeader => drill.restart_controller(&r.dead_node).await?,
            Fault::KillEtcd => drill.restart_etcd_member(&r.dead_node).await?,
            Fault::PartitionMedia | Fault::PartitionController => {}
        }
        rounds.push((fault, r));
        tokio::time::sleep(Duration::from_secs(a.pause)).await;
    }
    println!(
        "--- summary: {} rounds in {:.1} minutes",
        rounds.len(),
        a.minutes
    );
    for f in &faults {
        let of: Vec<FaultReport> = rounds
            .iter()
            .filter(|(k, _)| k == f)
            .map(|(_, r)| r.clone())
            .collect();
        if of.is_empty() {
            continue;
        }
        FaultReport::merge(format!("{f:?}, {} rounds", of.len()), &of).print();
    }
    Ok(())
}
