//! `fjord-media-node`: SIGTERM drains (exit when idle or at the drain deadline); SIGINT
//! stops at once. `--drain-and-wait` drains a running node (a Kubernetes preStop hook).
use std::time::Duration;

use clap::Parser;
use common::node::{DrainTarget, NodeProgram};
use media_node::config::MediaNodeConfig;
use proto::v1::DrainRequest;
use proto::v1::media_node_control_client::MediaNodeControlClient;

/// Fjord media node (SFU).
///
/// Configuration: defaults < --config file (TOML) < environment variables
/// FJORD_MEDIA_NODE__<KEY>[__<SUBKEY>] (for example FJORD_MEDIA_NODE__REGION=oslo).
#[derive(Parser)]
#[command(name = "fjord-media-node", version)]
struct Args {
    #[command(flatten)]
    node: common::node::NodeArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let program = NodeProgram {
        name: "fjord-media-node",
        env_prefix: "FJORD_MEDIA_NODE__",
        validate: MediaNodeConfig::validate,
        listeners: |c: &MediaNodeConfig| {
            [
                ("http_listen", c.http_listen.clone()),
                ("grpc_listen", c.grpc_listen.clone()),
            ]
        },
        run: media_node::run,
        drain_target: |c: &MediaNodeConfig| DrainTarget {
            tls: c.tls.clone(),
            grpc_listen: c.grpc_listen.clone(),
            grpc_advertise: c.grpc_advertise(),
            deadline: Duration::from_secs(c.drain_deadline_secs),
        },
        ask_drain: |channel| async move {
            let r = MediaNodeControlClient::new(channel)
                .drain(DrainRequest::default())
                .await?
                .into_inner();
            Ok((r.participants, "participants"))
        },
    };
    common::node::program_main(&args.node, program).await
}
