//! Connecting to etcd with deadlines, so that an unreachable etcd turns into a prompt error
//! (and a 503 at the API) rather than a hung request.
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio_util::sync::CancellationToken;

use crate::config::EtcdConfig;

/// HTTP/2 pings on a connection with streams open, to notice a dead etcd: every 6 s,
/// with 3 s to answer. etcd closes the connection of a client that pings more often than
/// every 5 s (`--grpc-keepalive-min-time`; `too_many_pings` after two strikes), or that
/// pings with no stream open: that broke every watch every few seconds, as
/// "h2 protocol error: … broken pipe", when we pinged every 2 s.
const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(6), Duration::from_secs(3));

pub fn options(cfg: &EtcdConfig) -> ConnectOptions {
    ConnectOptions::new()
        .with_timeout(cfg.request_timeout())
        .with_connect_timeout(cfg.request_timeout())
        .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
        .with_keep_alive_while_idle(false)
}

/// Options for calls that legitimately block for long (an election campaign): no
/// per-request deadline, but HTTP/2 keep-alives still notice a dead etcd.
pub fn blocking_options(cfg: &EtcdConfig) -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(cfg.request_timeout())
        .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
        .with_keep_alive_while_idle(false)
}

/// Connects, retrying with backoff until etcd answers or `shutdown` fires (then `None`).
pub async fn connect(cfg: &EtcdConfig, shutdown: &CancellationToken) -> Option<Client> {
    connect_with(cfg, options(cfg), shutdown).await
}

/// [`connect`] with the given options.
pub async fn connect_with(
    cfg: &EtcdConfig,
    opts: ConnectOptions,
    shutdown: &CancellationToken,
) -> Option<Client> {
    let mut delay = Duration::from_millis(200);
    loop {
        match Client::connect(cfg.endpoints.clone(), Some(opts.clone())).await {
            Ok(mut c) => match c.status().await {
                Ok(_) => return Some(c),
                Err(e) => {
                    tracing::warn!(endpoints = ?cfg.endpoints, error = %e, "etcd not answering; retrying")
                }
            },
            Err(e) => {
                tracing::warn!(endpoints = ?cfg.endpoints, error = %e, "cannot reach etcd; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
