//! Fjord's recording node: registration (storage classes, slots) and load in etcd, and
//! the control gRPC service. StartRecording subscribes to the meeting on its media node
//! over the relay and records it (`recorder`, `pipeline`); StopRecording finishes the
//! files and writes the manifest.
#![forbid(unsafe_code)]

pub mod audio_file;
pub mod config;
pub mod error;
pub mod files;
pub mod manifest;
pub mod pipeline;
pub mod probe;
pub mod recorder;
pub mod retention;
pub mod spec;
pub mod synth;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ids::NodeId;
use common::node::{CpuSampler, Drain};
use common::registration::{NodeRecord, Registration};
use proto::v1::recording_node_control_server::{RecordingNodeControl, RecordingNodeControlServer};
use proto::v1::{
    DeleteRecordingRequest, DeleteRecordingResponse, DrainRequest, DrainResponse, NodeLoad,
    NodeState, PauseRecordingRequest, PauseRecordingResponse, RecordingNodeRecord,
    StartRecordingRequest, StartRecordingResponse, StopRecordingRequest, StopRecordingResponse,
    WatchRequest,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::config::RecordingNodeConfig;
pub use crate::error::RecordingError;

/// Why a recording node could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] common::config::ConfigError),
    #[error("invalid config key `node_id`")]
    Id(#[from] common::ids::InvalidId),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config key `download_key_file`: {0}")]
    DownloadKey(String),
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("relay client")]
    Relay(#[from] relay::RelayError),
    #[error("gRPC server")]
    Grpc(#[from] tonic::transport::Error),
    #[error("gRPC task")]
    Task(#[from] tokio::task::JoinError),
}

impl NodeError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

struct Node {
    id: NodeId,
    registration: Registration,
    drain: Drain,
    drain_deadline: Duration,
    draining_metric: prometheus::IntGauge,
    slots: u32,
    storage: std::collections::BTreeMap<String, std::path::PathBuf>,
    composite: spec::CompositeSpec,
    /// For subscribing to meetings over the relay (None without TLS: no recording).
    relay: Option<quinn::Endpoint>,
    recordings: Mutex<HashMap<String, Running>>,
    /// Recordings that ended by themselves (their media node went away), kept for the
    /// controller's StopRecording to collect.
    ended: Mutex<HashMap<String, Result<manifest::Manifest, String>>>,
    metrics: Metrics,
}

struct Running {
    stop: CancellationToken,
    /// Some(why) while a host has it paused.
    paused: watch::Sender<Option<String>>,
    done: tokio::sync::watch::Receiver<Option<Result<manifest::Manifest, String>>>,
}

#[derive(Clone)]
struct Metrics {
    slots_free: prometheus::IntGauge,
    active: prometheus::IntGauge,
    failures: prometheus::IntCounter,
    retention_deleted: prometheus::IntCounter,
    recorder: recorder::RecorderMetrics,
}

impl Node {
    /// Stops taking recordings; the node exits once the running ones have stopped (or
    /// at the drain deadline).
    fn start_drain(self: &Arc<Self>) {
        tracing::info!(recordings = self.running(), "draining: no new recordings");
        let n = self.clone();
        self.drain
            .start(&self.registration, self.drain_deadline, move || {
                n.running() as u32
            });
        self.draining_metric.set(1);
    }

    fn running(&self) -> usize {
        self.recordings.lock().expect("recordings").len()
    }

    fn set_gauges(&self) {
        let n = self.running() as i64;
        self.metrics.active.set(n);
        self.metrics.slots_free.set(i64::from(self.slots) - n);
    }
}

struct Control {
    node: Arc<Node>,
}

/// A recording id as the controller makes them (the directory it names is under our
/// storage, so nothing else is taken).
fn recording_id(id: &str) -> Result<common::ids::RecordingId, Status> {
    common::ids::RecordingId::parse(id)
        .map_err(|e| Status::invalid_argument(format!("recording_id: {e}")))
}

/// StopRecording's answer for a finished recording: its manifest, or why it failed.
fn stopped(
    res: Result<manifest::Manifest, String>,
) -> Result<Response<StopRecordingResponse>, Status> {
    let m = res.map_err(|e| Status::internal(format!("recording failed: {e}")))?;
    Ok(Response::new(StopRecordingResponse {
        manifest_json: serde_json::to_string(&m).map_err(|e| Status::internal(e.to_string()))?,
    }))
}

#[tonic::async_trait]
impl RecordingNodeControl for Control {
    async fn start_recording(
        &self,
        r: Request<StartRecordingRequest>,
    ) -> Result<Response<StartRecordingResponse>, Status> {
        let r = r.into_inner();
        let node = &self.node;
        if node.drain.is_draining() {
            return Err(Status::unavailable("draining: not taking recordings"));
        }
        let Some(endpoint) = node.relay.clone() else {
            return Err(Status::failed_precondition(
                "this node has no TLS, so no relay: it cannot record",
            ));
        };
        common::ids::MeetingId::parse(&r.meeting_id)
            .map_err(|e| Status::invalid_argument(format!("meeting_id: {e}")))?;
        recording_id(&r.recording_id)?;
        let Some(storage) = node.storage.get(&r.classification) else {
            return Err(Status::invalid_argument(format!(
                "no storage for classification {:?} on this node",
                r.classification
            )));
        };
        let addr = r
            .media_relay_addr
            .parse()
            .map_err(|_| Status::invalid_argument("media_relay_addr must be host:port"))?;
        let paused = r
            .paused
            .then(|| common::cloud_recording::PAUSED_GAP.to_owned());
        let (paused_tx, paused_rx) = watch::channel(paused);
        let req = recorder::RecordingRequest {
            recording_id: r.recording_id.clone(),
            meeting_id: r.meeting_id.clone(),
            node_id: node.id.to_string(),
            dir: storage.join(&r.recording_id),
            media_node_id: r.media_node_id.clone(),
            media_relay_addr: addr,
            composite: node.composite,
            segment: r.segment.max(1),
            recording_started_unix_ms: r.recording_started_unix_ms,
            gaps: r.gaps.clone(),
            earlier_nodes: r.earlier_nodes.clone(),
            paused: paused_rx,
        };
        let stop = CancellationToken::new();
        let (done_tx, done_rx) = watch::channel(None);
        {
            let mut recs = node.recordings.lock().expect("recordings");
            if recs.contains_key(&r.recording_id) {
                return Ok(Response::new(StartRecordingResponse::default()));
            }
            if recs.len() >= node.slots as usize {
                return Err(Status::resource_exhausted("every recording slot is busy"));
            }
            recs.insert(
                r.recording_id.clone(),
                Running {
                    stop: stop.clone(),
                    paused: paused_tx,
                    done: done_rx,
                },
            );
        }
        node.set_gauges();
        let n = node.clone();
        tokio::spawn(async move {
            let id = req.recording_id.clone();
            tracing::info!(recording = %id, meeting = %req.meeting_id, "recording started");
            let res = recorder::record(req, endpoint, n.metrics.recorder.clone(), stop).await;
            match &res {
                Ok(m) => {
                    tracing::info!(recording = %id, files = m.files.len(), "recording finished")
                }
                Err(e) => {
                    n.metrics.failures.inc();
                    tracing::error!(recording = %id, error = %format!("{e:#}"), "recording failed");
                }
            }
            let res = res.map_err(|e| format!("{e:#}"));
            // Whoever stops it gets the result through `done`; one that ended by
            // itself leaves it in `ended` for the next StopRecording.
            let stopped = n
                .recordings
                .lock()
                .expect("recordings")
                .get(&id)
                .is_some_and(|r| r.stop.is_cancelled());
            if !stopped {
                n.ended
                    .lock()
                    .expect("ended")
                    .insert(id.clone(), res.clone());
            }
            // Gone from the running ones before the stopper hears of it, so that a start
            // of its next segment right after the stop is not taken for this one.
            n.recordings.lock().expect("recordings").remove(&id);
            let _ = done_tx.send(Some(res));
            n.set_gauges();
        });
        Ok(Response::new(StartRecordingResponse::default()))
    }

    async fn stop_recording(
        &self,
        r: Request<StopRecordingRequest>,
    ) -> Result<Response<StopRecordingResponse>, Status> {
        let id = r.into_inner().recording_id;
        let Some((stop, mut done)) = self
            .node
            .recordings
            .lock()
            .expect("recordings")
            .get(&id)
            .map(|r| (r.stop.clone(), r.done.clone()))
        else {
            return match self.node.ended.lock().expect("ended").remove(&id) {
                Some(res) => stopped(res),
                None => Err(Status::not_found(format!(
                    "recording {id} is not running here"
                ))),
            };
        };
        stop.cancel();
        // Finishing writes the last fragments, measures the files and writes the manifest.
        let finished =
            tokio::time::timeout(Duration::from_secs(120), done.wait_for(Option::is_some))
                .await
                .map_err(|_| Status::deadline_exceeded("the recording did not finish in 120 s"))?
                .map_err(|_| Status::internal("the recording task ended without a result"))?
                .clone();
        match finished {
            Some(res) => stopped(res),
            None => Err(Status::internal(
                "the recording task ended without a result",
            )),
        }
    }

    async fn pause_recording(
        &self,
        r: Request<PauseRecordingRequest>,
    ) -> Result<Response<PauseRecordingResponse>, Status> {
        let r = r.into_inner();
        let recs = self.node.recordings.lock().expect("recordings");
        let Some(running) = recs.get(&r.recording_id) else {
            return Err(Status::not_found(format!(
                "recording {} is not running here",
                r.recording_id
            )));
        };
        let why = r.paused.then(|| {
            if r.reason.trim().is_empty() {
                common::cloud_recording::PAUSED_GAP.to_owned()
            } else {
                r.reason.chars().take(200).collect()
            }
        });
        // Pausing a paused recording (or resuming a running one) changes nothing.
        running.paused.send_if_modified(|p| {
            if p.is_some() == why.is_some() {
                return false;
            }
            *p = why;
            true
        });
        Ok(Response::new(PauseRecordingResponse::default()))
    }

    async fn delete_recording(
        &self,
        r: Request<DeleteRecordingRequest>,
    ) -> Result<Response<DeleteRecordingResponse>, Status> {
        let r = r.into_inner();
        recording_id(&r.recording_id)?;
        if self
            .node
            .recordings
            .lock()
            .expect("recordings")
            .contains_key(&r.recording_id)
        {
            return Err(Status::failed_precondition(
                "the recording is running: stop it first",
            ));
        }
        let Some(storage) = self.node.storage.get(&r.classification) else {
            return Err(Status::invalid_argument(format!(
                "no storage for classification {:?}",
                r.classification
            )));
        };
        let dir = storage.join(&r.recording_id);
        let files = match std::fs::read_dir(&dir) {
            Ok(d) => d.count() as u32,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Status::internal(format!("{}: {e}", dir.display()))),
        };
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Status::internal(format!("removing {}: {e}", dir.display()))),
        }
        tracing::info!(recording = %r.recording_id, files, "recording deleted");
        Ok(Response::new(DeleteRecordingResponse { files }))
    }
    type WatchStream = common::node::Heartbeats;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        common::node::watch(
            self.node.id.to_string(),
            req,
            self.node.drain.shutdown(),
            self.node.registration.fenced(),
        )
    }

    async fn drain(&self, _r: Request<DrainRequest>) -> Result<Response<DrainResponse>, Status> {
        self.node.start_drain();
        Ok(Response::new(DrainResponse {
            recordings: self.node.running() as u32,
            ..Default::default()
        }))
    }
}

pub async fn run(
    cfg: RecordingNodeConfig,
    http: TcpListener,
    grpc: TcpListener,
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> Result<(), NodeError> {
    cfg.validate()?;
    let id = NodeId::parse(&cfg.node_id)?;
    let tls = cfg.tls.load("tls")?;
    for (class, dir) in &cfg.storage {
        std::fs::create_dir_all(dir).map_err(NodeError::io(format!(
            "storage.{class}: cannot create {}",
            dir.display()
        )))?;
    }
    let registry = common::ops::registry(&cfg.node_id, &cfg.region);
    let metrics = Metrics {
        slots_free: prometheus::IntGauge::new("fjord_recording_slots_free", "Free recording slots")
            .expect("metric"),
        active: prometheus::IntGauge::new("fjord_recordings_active", "Recordings running")
            .expect("metric"),
        failures: prometheus::IntCounter::new(
            "fjord_recording_failures_total",
            "Recordings that failed (pipeline or relay errors)",
        )
        .expect("metric"),
        retention_deleted: prometheus::IntCounter::new(
            "fjord_recording_retention_deleted_total",
            "Recordings deleted because their retention period ended",
        )
        .expect("metric"),
        recorder: recorder::RecorderMetrics {
            packets: prometheus::IntCounter::new(
                "fjord_recording_packets_total",
                "RTP packets received over the relay for recordings",
            )
            .expect("metric"),
            bytes_written: prometheus::IntCounter::new(
                "fjord_recording_bytes_written_total",
                "Bytes of finished recording files",
            )
            .expect("metric"),
        },
    };
    let draining_metric =
        prometheus::IntGauge::new("fjord_node_draining", "1 while the node drains")
            .expect("metric");
    // Capacity: set once, it never changes while the node runs.
    let slots_metric =
        prometheus::IntGauge::new("fjord_recording_slots", "Recording slots (capacity)")
            .expect("metric");
    slots_metric.set(i64::from(cfg.slots));
    for c in [
        Box::new(metrics.slots_free.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(slots_metric),
        Box::new(metrics.active.clone()),
        Box::new(metrics.failures.clone()),
        Box::new(metrics.retention_deleted.clone()),
        Box::new(metrics.recorder.packets.clone()),
        Box::new(metrics.recorder.bytes_written.clone()),
        Box::new(draining_metric.clone()),
    ] {
        registry.register(c).expect("register");
    }
    metrics.slots_free.set(i64::from(cfg.slots));
    pipeline::init()?;
    let relay = match &tls {
        Some(t) => Some(relay::client(([0, 0, 0, 0], 0).into(), t.pem())?),
        None => {
            tracing::warn!("no TLS: no relay, so this node cannot record");
            None
        }
    };

    let record = RecordingNodeRecord {
        node_id: cfg.node_id.clone(),
        region: cfg.region.clone(),
        grpc_addr: cfg.grpc_advertise(),
        storage_classes: cfg.storage.keys().cloned().collect(),
        slots: cfg.slots,
        version: env!("CARGO_PKG_VERSION").into(),
        state: NodeState::Active as i32,
        lease_id: 0,
        download_url: if cfg.download_key_file.is_some() {
            cfg.download_base_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", cfg.http_listen))
        } else {
            String::new()
        },
    };
    let files = match &cfg.download_key_file {
        Some(p) => Some(std::sync::Arc::new(files::Files {
            key: common::download::read_key(p).map_err(NodeError::DownloadKey)?,
            storage: cfg.storage.values().cloned().collect(),
        })),
        None => {
            tracing::warn!("no download_key_file: recordings cannot be downloaded from this node");
            None
        }
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
        id: id.clone(),
        slots: cfg.slots,
        storage: cfg.storage.clone(),
        composite: cfg.composite,
        relay,
        recordings: Mutex::default(),
        ended: Mutex::default(),
        metrics,
        registration,
        drain: Drain::new(shutdown.clone()),
        drain_deadline: Duration::from_secs(cfg.drain_deadline_secs),
        draining_metric,
    });
    // Self-fencing (DESIGN §2): once the lease went unrenewed for its TTL, the leader
    // moves our recordings to another node; ours stop here (their files and manifests
    // stay), so that no recording is written twice.
    let n = node.clone();
    node.registration.on_fenced(shutdown.clone(), move || {
        let recs = n.recordings.lock().expect("recordings");
        if !recs.is_empty() {
            tracing::warn!(
                recordings = recs.len(),
                "fenced: stopping every recording here; the leader moves them"
            );
        }
        recs.values().for_each(|r| r.stop.cancel());
    });
    let sd = shutdown.clone();
    let mut cpu = CpuSampler::registered(&registry);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !sd.is_cancelled() {
            tick.tick().await;
            let _ = load_tx.send(NodeLoad {
                cpu_cores: cpu.sample(),
                ..Default::default()
            });
        }
    });
    if cfg.retention_days > 0 {
        let (n, sd) = (node.clone(), shutdown.clone());
        let retention = Duration::from_secs(u64::from(cfg.retention_days) * 86_400);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            while !sd.is_cancelled() {
                tick.tick().await;
                let n = n.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let running: std::collections::HashSet<String> = n
                        .recordings
                        .lock()
                        .expect("recordings")
                        .keys()
                        .cloned()
                        .collect();
                    let storage: Vec<_> = n.storage.values().cloned().collect();
                    let gone = retention::sweep(
                        &storage,
                        retention,
                        std::time::SystemTime::now(),
                        &running,
                    );
                    n.metrics.retention_deleted.inc_by(gone.len() as u64);
                })
                .await;
            }
        });
    }
    let (n, sd) = (node.clone(), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = drain.cancelled() => n.start_drain(),
            _ = sd.cancelled() => {}
        }
    });

    let mut server = tonic::transport::Server::builder();
    if let Some(t) = &tls {
        server = server.tls_config(t.server())?;
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
    let addr = http
        .local_addr()
        .map_err(NodeError::io("the HTTP listener"))?;
    tracing::info!(http = %addr, node = %id, "recording node serving");
    let sd = shutdown.clone();
    let mut router = common::ops::router(registry, ready);
    if let Some(f) = files {
        router = router.merge(files::router(f));
    }
    axum::serve(http, router)
        .with_graceful_shutdown(async move { sd.cancelled().await })
        .await
        .map_err(NodeError::io("HTTP server"))?;
    grpc_task.await??;
    match Arc::try_unwrap(node) {
        Ok(n) => n.registration.join().await,
        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
    }
    Ok(())
}
