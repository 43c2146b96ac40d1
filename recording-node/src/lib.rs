//! Fjord's recording node. In this version: registration (storage classes, slots) and load
//! in etcd, and the control gRPC service with drain; StartRecording and StopRecording
//! answer `unimplemented` until the recording issue brings the GStreamer pipelines.
#![forbid(unsafe_code)]

pub mod config;
pub mod pipeline;
pub mod probe;
pub mod spec;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::ids::NodeId;
use common::node::{CpuSampler, Drain};
use common::registration::{NodeRecord, Registration};
use proto::v1::recording_node_control_server::{RecordingNodeControl, RecordingNodeControlServer};
use proto::v1::{
    DrainRequest, DrainResponse, NodeLoad, NodeState, RecordingNodeRecord, StartRecordingRequest,
    StartRecordingResponse, StopRecordingRequest, StopRecordingResponse,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::config::RecordingNodeConfig;

struct Node {
    registration: Registration,
    drain: Drain,
    drain_deadline: Duration,
    draining_metric: prometheus::IntGauge,
}

impl Node {
    fn start_drain(&self) {
        // No recordings run yet, so there is never work to wait for.
        self.drain
            .start(&self.registration, self.drain_deadline, || 0);
        self.draining_metric.set(1);
    }
}

struct Control {
    node: Arc<Node>,
}

#[tonic::async_trait]
impl RecordingNodeControl for Control {
    async fn start_recording(
        &self,
        _r: Request<StartRecordingRequest>,
    ) -> Result<Response<StartRecordingResponse>, Status> {
        Err(Status::unimplemented(
            "recording is not implemented in this version",
        ))
    }
    async fn stop_recording(
        &self,
        _r: Request<StopRecordingRequest>,
    ) -> Result<Response<StopRecordingResponse>, Status> {
        Err(Status::unimplemented(
            "recording is not implemented in this version",
        ))
    }
    async fn drain(&self, _r: Request<DrainRequest>) -> Result<Response<DrainResponse>, Status> {
        self.node.start_drain();
        Ok(Response::new(DrainResponse::default()))
    }
}

pub async fn run(
    cfg: RecordingNodeConfig,
    http: TcpListener,
    grpc: TcpListener,
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let id = NodeId::parse(&cfg.node_id)?;
    let tls = cfg.tls.load("tls")?;
    for (class, dir) in &cfg.storage {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("storage.{class}: cannot create {}", dir.display()))?;
    }
    let registry = common::ops::registry(&cfg.node_id, &cfg.region);
    let slots_free =
        prometheus::IntGauge::new("fjord_recording_slots_free", "Free recording slots")
            .expect("metric");
    let draining_metric =
        prometheus::IntGauge::new("fjord_node_draining", "1 while the node drains")
            .expect("metric");
    registry
        .register(Box::new(slots_free.clone()))
        .expect("register");
    registry
        .register(Box::new(draining_metric.clone()))
        .expect("register");
    slots_free.set(i64::from(cfg.slots));

    let record = RecordingNodeRecord {
        node_id: cfg.node_id.clone(),
        region: cfg.region.clone(),
        grpc_addr: cfg
            .grpc_advertise
            .clone()
            .unwrap_or_else(|| cfg.grpc_listen.clone()),
        storage_classes: cfg.storage.keys().cloned().collect(),
        slots: cfg.slots,
        version: env!("CARGO_PKG_VERSION").into(),
        state: NodeState::Active as i32,
        lease_id: 0,
    };
    let (load_tx, load_rx) = watch::channel(NodeLoad::default());
    let registration = Registration::spawn(
        cfg.etcd.clone(),
        id.clone(),
        NodeRecord::Recording(record),
        load_rx,
        shutdown.clone(),
    );
    let node = Arc::new(Node {
        registration,
        drain: Drain::new(shutdown.clone()),
        drain_deadline: Duration::from_secs(cfg.drain_deadline_secs),
        draining_metric,
    });
    let sd = shutdown.clone();
    tokio::spawn(async move {
        let mut cpu = CpuSampler::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !sd.is_cancelled() {
            tick.tick().await;
            let _ = load_tx.send(NodeLoad {
                cpu_cores: cpu.sample(),
                ..Default::default()
            });
        }
    });
    let (n, sd) = (node.clone(), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = drain.cancelled() => n.start_drain(),
            _ = sd.cancelled() => {}
        }
    });

    let mut server = tonic::transport::Server::builder();
    if let Some(t) = &tls {
        server = server.tls_config(t.server()).context("gRPC TLS")?;
    }
    let sd = shutdown.clone();
    let grpc_task = tokio::spawn(
        server
            .add_service(RecordingNodeControlServer::new(Control {
                node: node.clone(),
            }))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc),
                async move { sd.cancelled().await },
            ),
    );
    let n = node.clone();
    let ready: common::ops::ReadinessFn = Arc::new(move || {
        n.registration.check()?;
        if n.drain.is_draining() {
            Err("draining".into())
        } else {
            Ok(())
        }
    });
    tracing::info!(http = %http.local_addr()?, node = %id, "recording node serving");
    let sd = shutdown.clone();
    axum::serve(http, common::ops::router(registry, ready))
        .with_graceful_shutdown(async move { sd.cancelled().await })
        .await?;
    grpc_task
        .await
        .context("gRPC task")?
        .context("gRPC server")?;
    match Arc::try_unwrap(node) {
        Ok(n) => n.registration.join().await,
        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
    }
    Ok(())
}
