//! `fjord-media-node`: SIGTERM drains (exit when idle or at the drain deadline); SIGINT stops at once.
use std::path::PathBuf;

use clap::Parser;
use media_node::config::MediaNodeConfig;

/// Fjord media node (SFU).
///
/// Configuration: defaults < --config file (TOML) < environment variables
/// FJORD_MEDIA_NODE__<KEY>[__<SUBKEY>] (for example FJORD_MEDIA_NODE__REGION=oslo).
#[derive(Parser)]
#[command(name = "fjord-media-node", version)]
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
        "fjord-media-node",
        "FJORD_MEDIA_NODE__",
        args.config.as_deref(),
        MediaNodeConfig::validate,
        |c: &MediaNodeConfig| {
            [
                ("http_listen", c.http_listen.clone()),
                ("grpc_listen", c.grpc_listen.clone()),
            ]
        },
        media_node::run,
    )
    .await
}
