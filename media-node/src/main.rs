//! `fjord-media-node`: SIGTERM drains (exit when idle or at the drain deadline); SIGINT
//! stops at once. `--drain-and-wait` drains a running node (a Kubernetes preStop hook).
use std::time::Duration;

use clap::Parser;
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

const NAME: &str = "fjord-media-node";
const ENV: &str = "FJORD_MEDIA_NODE__";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.node.drain_and_wait {
        common::init_tracing(&common::config::LogConfig::default());
        return drain_and_wait(args.node.config.as_deref()).await;
    }
    common::node::node_main(
        NAME,
        ENV,
        &args.node,
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

async fn drain_and_wait(config: Option<&std::path::Path>) -> std::process::ExitCode {
    common::node::drain_and_wait(
        NAME,
        ENV,
        config,
        |c: &MediaNodeConfig| common::node::DrainTarget {
            tls: c.tls.clone(),
            grpc_listen: c.grpc_listen.clone(),
            grpc_advertise: c.grpc_advertise(),
            deadline: Duration::from_secs(c.drain_deadline_secs),
        },
        |channel| async move {
            let r = MediaNodeControlClient::new(channel)
                .drain(DrainRequest::default())
                .await?
                .into_inner();
            Ok((r.participants, "participants"))
        },
    )
    .await
}
