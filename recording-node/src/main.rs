//! `fjord-recording-node`: loads and validates config, binds, runs. SIGTERM drains (exit when
//! idle or at the drain deadline); SIGINT stops at once.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

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
async fn main() -> ExitCode {
    common::init_tracing();
    let args = Args::parse();
    let cfg: recording_node::config::RecordingNodeConfig =
        match common::config::load(args.config.as_deref(), "FJORD_RECORDING_NODE__")
            .and_then(|c: recording_node::config::RecordingNodeConfig| c.validate().map(|_| c))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("fjord-recording-node: {e}");
                return ExitCode::from(2);
            }
        };
    let bind = |key: &'static str, addr: String| async move {
        tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (key `{key}`): {e}"))
    };
    let (http, grpc) = match (
        bind("http_listen", cfg.http_listen.clone()).await,
        bind("grpc_listen", cfg.grpc_listen.clone()).await,
    ) {
        (Ok(h), Ok(g)) => (h, g),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("fjord-recording-node: {e}");
            return ExitCode::from(1);
        }
    };
    let shutdown = common::shutdown::token();
    let drain = common::shutdown::token();
    common::shutdown::spawn_node_signals(shutdown.clone(), drain.clone());
    match recording_node::run(cfg, http, grpc, shutdown, drain).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord-recording-node: {e:#}");
            ExitCode::from(1)
        }
    }
}
