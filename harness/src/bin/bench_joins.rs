//! `fjord-bench-joins`: one controller, N media nodes (real processes) registered in a real
//! etcd, M meetings, J joins from two regions with bounded concurrency. Prints joins per
//! second and join latency percentiles, as seen by the HTTP client.
//! Build in release first: `cargo build --release --workspace --bins`.
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use harness::{Cluster, ClusterSpec, NodeSpec};

#[derive(Parser)]
#[command(name = "fjord-bench-joins")]
struct Args {
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    #[arg(long, default_value_t = 1000)]
    meetings: usize,
    #[arg(long, default_value_t = 10_000)]
    joins: usize,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let media: Vec<NodeSpec> = (0..a.nodes)
        .map(|i| {
            let region = if i % 2 == 0 { "oslo" } else { "stockholm" };
            NodeSpec {
                id: format!("media-{region}-{i}"),
                region: region.into(),
                capacity: 10_000,
            }
        })
        .collect();
    let spec = ClusterSpec {
        controllers: 1,
        media,
        recording: vec![],
        // The bench joins its peers from one address, faster than a client would.
        join_limits: harness::no_join_limits(),
        ..ClusterSpec::local()
    };
    eprintln!("starting etcd, 1 controller and {} media nodes…", a.nodes);
    let cluster = Cluster::start(spec).await?;
    let base = cluster.controllers[0].url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;

    eprintln!("creating {} meetings…", a.meetings);
    let ids: Vec<String> = futures::stream::iter(0..a.meetings)
        .map(|i| {
            let (http, base, key) = (http.clone(), base.clone(), cluster.operator_key.clone());
            async move {
                let body = serde_json::json!({ "title": format!("bench {i}") });
                bot::create_meeting(&http, &base, &key, &body).await
            }
        })
        .buffer_unordered(a.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    eprintln!("running {} joins, {} in flight…", a.joins, a.concurrency);
    let started = Instant::now();
    let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(0..a.joins)
        .map(|i| {
            let (http, base) = (http.clone(), base.clone());
            let id = ids[i % ids.len()].clone();
            let region = if (i / ids.len()).is_multiple_of(2) {
                "oslo"
            } else {
                "stockholm"
            };
            async move {
                let t = Instant::now();
                http.post(format!("{base}/v1/meetings/{id}/join"))
                    .json(&serde_json::json!({ "name": "bench", "region": region }))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(t.elapsed())
            }
        })
        .buffer_unordered(a.concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let errors = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("first error: {e:#}");
    }
    let mut lat: Vec<Duration> = results.into_iter().filter_map(Result::ok).collect();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "nodes={} meetings={} joins={} concurrency={} errors={errors}",
        a.nodes, a.meetings, a.joins, a.concurrency
    );
    println!(
        "joins/s={:.0} wall={:.2}s",
        lat.len() as f64 / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!(
        "latency p50={:.2}ms p99={:.2}ms max={:.2}ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    if errors > 0 {
        anyhow::bail!("{errors} joins failed");
    }
    Ok(())
}
