//! `fjord-recording-node`: SIGTERM drains (exit when idle or at the drain deadline); SIGINT stops at once.
use std::path::PathBuf;

use clap::Parser;
use recording_node::config::RecordingNodeConfig;

/// Fjord recording node.
///
/// Configuration: defaults < --config file (TOML) < environment variables
/// FJORD_RECORDING_NODE__<KEY>[__<SUBKEY>] (for example FJORD_RECORDING_NODE__SLOTS=4).
#[derive(Parser)]
#[command(name = "fjord-recording-node", version)]
struct Args {
    /// TOML config file.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::init_tracing();
    let args = Args::parse();
    common::node::node_main(
        "fjord-recording-node",
        "FJORD_RECORDING_NODE__",
        args.config.as_deref(),
        RecordingNodeConfig::validate,
        |c: &RecordingNodeConfig| {
            [
                ("http_listen", c.http_listen.clone()),
                ("grpc_listen", c.grpc_listen.clone()),
            ]
        },
        recording_node::run,
    )
    .await
}
