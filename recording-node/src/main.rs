//! `fjord-recording-node`: SIGTERM drains (exit when idle or at the drain deadline);
//! SIGINT stops at once. `--drain-and-wait` drains a running node (a Kubernetes preStop
//! hook).
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use proto::v1::DrainRequest;
use proto::v1::recording_node_control_client::RecordingNodeControlClient;
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
    /// Instead of running a node: tell the node running with this config (on this
    /// machine) to drain, and wait until its recordings have stopped or its drain
    /// deadline has passed.
    #[arg(long)]
    drain_and_wait: bool,
    /// Load and check the config (file and environment), say whether it is valid, and
    /// exit without starting.
    #[arg(long)]
    check_config: bool,
}

const NAME: &str = "fjord-recording-node";
const ENV: &str = "FJORD_RECORDING_NODE__";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::init_tracing();
    let args = Args::parse();
    if args.drain_and_wait {
        return drain_and_wait(args.config.as_deref()).await;
    }
    if args.check_config {
        return common::node::check_config(
            NAME,
            ENV,
            args.config.as_deref(),
            RecordingNodeConfig::validate,
        );
    }
    common::node::node_main(
        NAME,
        ENV,
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

async fn drain_and_wait(config: Option<&std::path::Path>) -> std::process::ExitCode {
    common::node::drain_main(
        NAME,
        ENV,
        config,
        |c: &RecordingNodeConfig| common::node::DrainTarget {
            tls: c.tls.clone(),
            grpc_listen: c.grpc_listen.clone(),
            grpc_advertise: c
                .grpc_advertise
                .clone()
                .unwrap_or_else(|| c.grpc_listen.clone()),
            deadline: Duration::from_secs(c.drain_deadline_secs),
        },
        |channel| async move {
            let r = RecordingNodeControlClient::new(channel)
                .drain(DrainRequest::default())
                .await?
                .into_inner();
            Ok((r.recordings, "recordings"))
        },
    )
    .await
}
