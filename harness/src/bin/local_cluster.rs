//! `fjord-local-cluster`: etcd, two controllers, two media nodes in `oslo`, one in
//! `stockholm` and a recording node, all on loopback with mutual TLS from a fresh CA.
//! Prints the URLs; Ctrl-C stops everything.
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use harness::{Cluster, ClusterSpec};

/// Runs a local Fjord cluster on 127.0.0.1 until Ctrl-C.
#[derive(Parser)]
#[command(name = "fjord-local-cluster")]
struct Args {
    /// Directory for etcd data, certificates, configs and logs (wiped at start).
    #[arg(long, default_value = ".local-cluster")]
    dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    eprintln!(
        "starting etcd, 2 controllers, 3 media nodes (oslo ×2, stockholm ×1) and a recording node…"
    );
    let (spec, admin_password) = ClusterSpec::local().with_local_admin(&dir)?;
    let mut cluster = Cluster::start_in(spec, dir.clone(), None).await?;

    let http = reqwest::Client::new();
    let api = cluster.controllers[0].url();
    let created = bot::create_meeting_answer(
        &http,
        &api,
        &cluster.operator_key,
        &serde_json::json!({ "title": "Fjord demo" }),
    )
    .await?;
    let id = created["id"].as_str().unwrap_or_default();
    let host_key = created["host_key"].as_str().unwrap_or_default();

    println!();
    println!("Fjord local cluster is up.");
    println!("  etcd:           {}", cluster.etcd.endpoint());
    for c in &cluster.controllers {
        println!(
            "  {}:   {}   (HTTP/JSON + gRPC, /metrics, /healthz, /readyz)",
            c.id,
            c.url()
        );
    }
    for n in cluster.media.iter().chain(&cluster.recording) {
        println!(
            "  {:<18} region {:<10} http://127.0.0.1:{}  gRPC(mTLS) 127.0.0.1:{}",
            n.spec.id, n.spec.region, n.http, n.grpc
        );
    }
    println!("  operator key:   {}", cluster.operator_key);
    println!("  portal:         {api}/portal");
    println!(
        "    sign in as the administrator: {} / {admin_password} (also in {})",
        harness::LOCAL_ADMIN,
        dir.join("admin-password").display()
    );
    println!("  files and logs: {}", dir.display());
    println!();
    println!("A meeting was created for you: {id}");
    println!("  join in a browser (Chromium; Firefox refuses 127.0.0.1 candidates): {api}/m/{id}");
    println!(
        "  join as its host (waiting room, lock, mute all, breakout rooms): {api}/m/{id}?host_key={host_key}"
    );
    println!("  join via the API:");
    println!(
        "    curl -s -X POST {api}/v1/meetings/{id}/join -H 'content-type: application/json' -d '{{\"name\":\"Ada\"}}'"
    );
    println!("  list nodes:");
    println!(
        "    curl -s {api}/v1/nodes -H 'authorization: Bearer {}'",
        cluster.operator_key
    );
    println!();
    println!("Ctrl-C (or SIGTERM) stops everything.");

    common::shutdown::wait_for_signal().await;
    eprintln!("stopping…");
    for n in cluster.media.iter_mut().chain(cluster.recording.iter_mut()) {
        n.proc.stop(Duration::from_secs(3)).await;
    }
    for c in cluster.controllers.iter_mut() {
        c.proc.stop(Duration::from_secs(3)).await;
    }
    cluster.etcd.stop();
    eprintln!("stopped.");
    Ok(())
}
