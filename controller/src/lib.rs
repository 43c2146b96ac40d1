//! Fjord's controller: the meetings API (HTTP/JSON and gRPC on one port), join tokens,
//! placement, leader election and reconciliation. Stateless: all state is in the cluster
//! store (etcd), behind `store::ClusterStore`.
//!
//! Layers, outside in: the edges (`http/`, `grpc/`; `node_rpc` towards the nodes; the
//! store's `convert`) translate; the service layer (`service` and its calls by concern:
//! `meetings`, `join`, `nodes`, `recordings`, `downloads`, `auth`) speaks the domain types
//! of `model`; `placement` and `leader::plan` decide, without I/O.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_types)]

pub mod accounts;
pub mod auth;
pub mod capacity;
pub mod config;
pub mod dashboard;
pub mod downloads;
pub mod error;
pub mod grpc;
pub mod http;
pub mod join;
pub mod leader;
pub mod lengths;
pub mod limits;
pub mod meetings;
pub mod metrics;
pub mod model;
pub mod node_rpc;
pub mod nodes;
pub mod oidc;
pub mod org;
pub mod placement;
pub mod recordings;
pub mod registration;
pub mod schedule;
pub mod secrets;
pub mod service;
pub mod sessions;
pub mod store;
pub mod turn;
pub mod usage;
pub mod view;

#[cfg(test)]
mod testing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::token::TokenSigner;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ControllerConfig;
use crate::service::Service;
use crate::view::SharedView;

/// Why a controller could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    #[error(transparent)]
    Config(#[from] common::config::ConfigError),
    #[error(
        "invalid config key `token.signing_key_file`: the controller signs join tokens and needs its key"
    )]
    NoSigningKey,
    #[error("token signing key")]
    SigningKey(#[from] common::token::KeyError),
    #[error("invalid config key `download_key_file`: {0}")]
    DownloadKey(String),
    #[error("invalid config key `oidc.client_secret_file`: {0}")]
    OidcSecret(String),
    #[error("invalid config key `token.signing_key_file` (sessions derive their key from it): {0}")]
    SessionKey(String),
    #[error("cluster state store")]
    Store(#[from] store::StoreError),
    #[error("HTTP server")]
    Serve(#[source] std::io::Error),
}

/// Runs a controller on `listener` until `shutdown`. The config must have been validated.
pub async fn run(
    cfg: ControllerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ControllerError> {
    let regions = cfg.validate()?;
    let tls = cfg.tls.load("tls")?.map(|m| m.client());
    let key_file = cfg
        .token
        .signing_key_file
        .clone()
        .ok_or(ControllerError::NoSigningKey)?;
    let signer = TokenSigner::from_file(
        &key_file,
        &cfg.token.kid,
        Duration::from_secs(cfg.token.ttl_secs),
    )?;
    let registry = common::ops::registry(&cfg.id, regions.default.as_str());
    let metrics = metrics::Metrics::new(&registry);

    let store: Arc<dyn store::ClusterStore> = Arc::new(store::EtcdStore::connect(&cfg.etcd).await?);
    let view = SharedView::default();
    let nodes = node_rpc::NodeClients::new(tls, Duration::from_millis(cfg.node_call_timeout_ms));
    let downloads = match &cfg.download_key_file {
        Some(p) => Some((
            common::download::read_key(p).map_err(ControllerError::DownloadKey)?,
            Duration::from_secs(cfg.download_link_ttl_secs),
        )),
        None => None,
    };
    let mut service = Service::new(
        store.clone(),
        view.clone(),
        nodes,
        signer,
        regions,
        cfg.all_operator_keys()?,
        cfg.allow_region_override,
        Duration::from_secs(cfg.join_correction_secs),
        metrics.clone(),
    );
    service.downloads = downloads;
    service.join_limits = limits::JoinLimits::new(&cfg.join_limits);
    service.turn = cfg.turn.as_ref().map(turn::Turn::load).transpose()?;
    service.oidc = match &cfg.oidc {
        Some(o) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p)
                    .map_err(|e| ControllerError::OidcSecret(format!("{}: {e}", p.display())))
            };
            let secret = String::from_utf8_lossy(&read(&o.client_secret_file)?)
                .trim()
                .to_owned();
            if secret.is_empty() {
                return Err(ControllerError::OidcSecret("the file is empty".into()));
            }
            let signing_key = read(&key_file)?;
            Some(Arc::new(oidc::Oidc::new(o.clone(), secret, &signing_key)))
        }
        None => None,
    };
    if cfg.accounts.enabled {
        service.accounts = Some(Arc::new(accounts::Accounts::new(cfg.accounts.clone())));
    }
    if service.oidc.is_some() || service.accounts.is_some() {
        let signing_key = std::fs::read(&key_file)
            .map_err(|e| ControllerError::SessionKey(format!("{}: {e}", key_file.display())))?;
        service.sessions = Some(Arc::new(sessions::Sessions::new(&signing_key)));
    }
    service.retention = Duration::from_secs(cfg.retention_secs);
    service.public_url = cfg
        .public_url
        .as_ref()
        .map(|u| u.trim_end_matches('/').to_owned());
    let service = Arc::new(service);

    let watcher = tokio::spawn(view.clone().run_watcher(store, shutdown.clone()));
    if service.accounts.is_some() {
        // The first administrator, once etcd answers (every replica tries; one makes it).
        let (service, sd) = (service.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                match service.ensure_initial_admin().await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not make the first administrator; trying again")
                    }
                }
                tokio::select! {
                    _ = sd.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        });
    }
    let leader = tokio::spawn(leader::run(
        service.clone(),
        cfg.id.clone(),
        leader::Leases {
            election: Duration::from_secs(cfg.election_ttl_secs),
            nodes: Duration::from_secs(cfg.etcd.lease_ttl_secs),
        },
        shutdown.clone(),
    ));
    let mut synced = view.subscribe_synced();
    let synced_metric = metrics.view_synced.clone();
    tokio::spawn(async move {
        while synced.changed().await.is_ok() {
            synced_metric.set(i64::from(*synced.borrow()));
        }
    });

    let ready_view = view.clone();
    let ready: common::ops::ReadinessFn = Arc::new(move || {
        if ready_view.is_synced() {
            Ok(())
        } else {
            Err("cluster view not synced with etcd".into())
        }
    });
    let grpc = proto::v1::controller_server::ControllerServer::new(grpc::GrpcApi {
        service: service.clone(),
    });
    let state = http::HttpState {
        service: service.clone(),
        region_header: cfg.region_header.clone(),
        client_address_header: cfg.client_address_header.clone(),
    };
    let app = http::router(state)
        .merge(common::ops::router(registry, ready))
        .route_service("/fjord.v1.Controller/{*method}", grpc);

    let addr = listener.local_addr().map_err(ControllerError::Serve)?;
    tracing::info!(%addr, id = %cfg.id, "controller serving HTTP/JSON and gRPC");
    let sd = shutdown.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { sd.cancelled().await })
    .await
    .map_err(ControllerError::Serve)?;
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        let _ = leader.await;
        let _ = watcher.await;
    })
    .await;
    Ok(())
}
