//! `fjord-bot`: puts publishing and listening bots into a meeting and reports what they
//! received.
use std::time::Duration;

use anyhow::{Context, bail};
use bot::{ClipSpec, Load, LoadSpec};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "fjord-bot",
    about = "Joins webrtc-rs bots to a Fjord meeting: publishers send an Opus tone and a VP8 test pattern, everyone counts what arrives.",
    after_help = "Example: fjord-bot --controller http://127.0.0.1:8080 --create --operator-key \"$KEY\" --publishers 5 --subscribers 50 --duration 30"
)]
struct Args {
    /// The controller's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    controller: String,
    /// The meeting to join.
    #[arg(long, required_unless_present = "create")]
    meeting: Option<String>,
    /// Create a meeting first (needs --operator-key or FJORD_OPERATOR_KEY).
    #[arg(long)]
    create: bool,
    #[arg(long, env = "FJORD_OPERATOR_KEY", hide_env_values = true)]
    operator_key: Option<String>,
    #[arg(long)]
    password: Option<String>,
    /// Region the bots say they are in.
    #[arg(long)]
    region: Option<String>,
    /// Region the subscribers say they are in, if not --region (a meeting across
    /// regions: the media nodes cascade).
    #[arg(long)]
    subscriber_region: Option<String>,
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    #[arg(long, default_value_t = 2)]
    subscribers: usize,
    /// Seconds to measure once everyone has joined.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 8)]
    join_concurrency: usize,
    /// The publishers' tone in Hz.
    #[arg(long, default_value_t = 440)]
    tone_hz: u32,
    /// Video size, e.g. 640x360.
    #[arg(long, default_value = "640x360")]
    video_size: String,
    /// A CA certificate file (PEM) to trust for wss:// signaling besides the system's
    /// (a cluster whose media nodes' certificates a private CA signs).
    #[arg(long)]
    signal_ca: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rtc_dtls=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let (width, height) = a
        .video_size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .context("--video-size must look like 640x360")?;
    if a.publishers + a.subscribers == 0 {
        bail!("no bots: give --publishers and/or --subscribers");
    }
    let controller = a.controller.trim_end_matches('/').to_owned();
    let meeting = match (&a.meeting, a.create) {
        (Some(m), _) => m.clone(),
        (None, _) => {
            let key = a
                .operator_key
                .as_deref()
                .context("--create needs --operator-key (or FJORD_OPERATOR_KEY)")?;
            let body = serde_json::json!({ "title": "fjord-bot", "password": a.password });
            bot::create_meeting(&reqwest::Client::new(), &controller, key, &body).await?
        }
    };
    eprintln!(
        "meeting {meeting}: {} publishers, {} subscribers",
        a.publishers, a.subscribers
    );
    let signal_ca = match &a.signal_ca {
        Some(p) => Some(std::sync::Arc::new(
            std::fs::read(p).with_context(|| format!("--signal-ca {}", p.display()))?,
        )),
        None => None,
    };
    let spec = LoadSpec {
        signal_ca,
        controller,
        meeting,
        password: a.password.clone(),
        region: a.region.clone(),
        subscriber_region: a.subscriber_region.clone(),
        publishers: a.publishers,
        subscribers: a.subscribers,
        clip: ClipSpec {
            tone_hz: a.tone_hz,
            width,
            height,
            ..ClipSpec::default()
        },
        join_concurrency: a.join_concurrency,
    };
    let load = Load::start(&spec, |done, total| {
        if done % 10 == 0 || done == total {
            eprintln!("joined {done}/{total}");
        }
    })
    .await?;
    for f in load.failures.iter().take(5) {
        eprintln!("join failed: {f}");
    }
    if load.bots.is_empty() {
        bail!("no bot could join");
    }
    // Let renegotiation settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("measuring for {} s", a.duration);
    let r = load.measure(Duration::from_secs(a.duration)).await;
    load.stop().await;
    print!("{}", bot::load::summary(&r));
    Ok(())
}
