//! `fjord-recording-node`: SIGTERM drains (exit when idle or at the drain deadline);
//! SIGINT stops at once. `--drain-and-wait` drains a running node (a Kubernetes preStop
//! hook).
use std::time::Duration;

use clap::Parser;
use common::node::{DrainTarget, NodeProgram};
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
    #[command(flatten)]
    node: common::node::NodeArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let program = NodeProgram {
        name: "fjord-recording-node",
        env_prefix: "FJORD_RECORDING_NODE__",
        validate: RecordingNodeConfig::validate,
        listeners: |c: &RecordingNodeConfig| {
            [
                ("http_listen", c.http_listen.clone()),
                ("grpc_listen", c.grpc_listen.clone()),
            ]
        },
        run: recording_node::run,
        drain_target: |c: &RecordingNodeConfig| DrainTarget {
            tls: c.tls.clone(),
            grpc_listen: c.grpc_listen.clone(),
            grpc_advertise: c.grpc_advertise(),
            deadline: Duration::from_secs(c.drain_deadline_secs),
        },
        ask_drain: |channel| async move {
            let r = RecordingNodeControlClient::new(channel)
                .drain(DrainRequest::default())
                .await?
                .into_inner();
            Ok((r.recordings, "recordings"))
        },
    };
    common::node::program_main(&args.node, program).await
}
