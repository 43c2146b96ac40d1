//! Fjord's media node: registration and load in etcd, the control gRPC service
//! (prepare/close meeting, drain), the signaling WebSocket (join token checked first) and
//! the SFU on one UDP socket (str0m, sans-IO core in `sfu`).
#![forbid(unsafe_code)]

pub mod attendance;
pub mod board;
pub mod collab;
pub mod config;
pub mod control;
pub mod hosts;
pub mod meeting;
pub mod mesh;
pub mod metrics;
pub mod relay_server;
pub mod room;
pub mod session;
pub mod sfu;
pub mod store;
pub mod webinar;
pub mod wss;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::ids::{MeetingId, NodeId};
use common::node::{CpuSampler, Drain};
use common::registration::{NodeRecord, Registration};
use common::token::TokenVerifier;
use proto::v1::{Capacity, MediaNodeRecord, NodeLoad, NodeState};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::MediaNodeConfig;

pub use metrics::Metrics;

/// State shared by the control service, signaling and the load reporter.
pub struct Node {
    pub id: NodeId,
    pub verifier: TokenVerifier,
    pub registration: Registration,
    pub drain: Drain,
    pub drain_deadline: Duration,
    /// Most participants a meeting may have (all nodes), and a webinar.
    pub max_participants: usize,
    pub max_webinar_participants: usize,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub rooms: Arc<room::Rooms>,
    pub sfu: sfu::driver::SfuHandle,
    /// Links to the other media nodes of our meetings.
    pub mesh: Arc<mesh::Mesh>,
    /// What the meeting layer keeps in the cluster's state (etcd, here).
    pub store: Arc<dyn store::MeetingStore>,
    /// What the hosts of our meetings decided (lock, waiting room, roles, …).
    pub hosts: hosts::Hosts,
    /// The polls and Q&A of our meetings.
    pub collab: collab::Collab,
    /// The meetings the controller placed here (and has not closed); sessions wait on it
    /// for a meeting being prepared. Who is in them is the rooms' to count.
    meetings: watch::Sender<HashSet<MeetingId>>,
}

impl Node {
    /// The participants connected here (the rooms count them: one place).
    pub fn participants(&self) -> u32 {
        self.rooms.participants() as u32
    }
    /// Whether the controller has placed `m` here (and not closed it).
    pub fn hosts(&self, m: &MeetingId) -> bool {
        self.meetings.borrow().contains(m)
    }
    /// Waits (at most `grace`) until `m` is placed here; whether it is.
    pub async fn prepared(&self, m: &MeetingId, grace: Duration) -> bool {
        let mut rx = self.meetings.subscribe();
        tokio::time::timeout(grace, rx.wait_for(|s| s.contains(m)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn meeting_count(&self) -> u32 {
        self.meetings.borrow().len() as u32
    }
    pub fn prepare(&self, m: MeetingId) {
        self.meetings.send_if_modified(|s| s.insert(m));
    }
    /// Ends meeting `m` here: its sessions (their clients are told `why`) and its links.
    pub fn close(&self, m: &MeetingId, why: &room::Close) {
        self.meetings.send_if_modified(|s| s.remove(m));
        self.mesh.unfollow(m);
        self.hosts.unfollow(m);
        self.collab.unfollow(m);
        self.rooms.close(m, why);
    }
    /// Ends every session and relay of every meeting here: the node is fenced, so its
    /// lease is gone or about to go and the meetings are being placed elsewhere. The
    /// participants rejoin through the controller and land on a live node.
    pub fn fence(&self) {
        let meetings: Vec<MeetingId> = self.meetings.borrow().iter().cloned().collect();
        if !meetings.is_empty() {
            tracing::warn!(
                meetings = meetings.len(),
                participants = self.participants(),
                "fenced: ending every session here so that the meetings move"
            );
        }
        for m in &meetings {
            self.close(m, &fenced());
        }
    }

    pub fn start_drain(self: &Arc<Self>) {
        let me = self.clone();
        self.drain
            .start(&self.registration, self.drain_deadline, move || {
                me.participants()
            });
        self.metrics.draining.set(1);
    }
}

/// What the clients of a fenced node are told: their session ended, and a fresh join
/// through the controller lands them on a live node.
pub fn fenced() -> room::Close {
    room::Close::new(
        signaling::CloseCode::Fenced,
        "this media node lost contact with the cluster (fenced): join again",
    )
}

/// Why the media node could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] common::config::ConfigError),
    #[error("invalid config key `node_id`")]
    Id(#[from] common::ids::InvalidId),
    #[error("token key")]
    TokenKey(#[from] common::token::KeyError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Relay {
        what: String,
        #[source]
        source: relay::RelayError,
    },
    #[error("signal_tls")]
    SignalTls(#[from] wss::SignalTlsError),
    #[error("gRPC server")]
    Grpc(#[from] tonic::transport::Error),
    #[error("gRPC task")]
    Task(#[from] tokio::task::JoinError),
}

impl NodeError {
    fn io(what: String, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }
}

/// Runs the node until `shutdown`; cancelling `drain` starts a graceful drain instead.
pub async fn run(
    cfg: MediaNodeConfig,
    http: TcpListener,
    grpc: TcpListener,
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> Result<(), NodeError> {
    cfg.validate()?;
    let id = NodeId::parse(&cfg.node_id)?;
    let tls = cfg.tls.load("tls")?;
    // Signaling over TLS: the certificate is checked and the port bound before the node
    // registers, so that a bad file fails the start, not the first browser.
    let signal_tls = match &cfg.signal_tls {
        Some(t) => {
            let cert = Arc::new(wss::Certificate::load(&t.cert_file, &t.key_file)?);
            let tcp = TcpListener::bind(&t.listen).await.map_err(|e| {
                NodeError::io(
                    format!("cannot listen on {} (key `signal_tls.listen`)", t.listen),
                    e,
                )
            })?;
            Some((tcp, cert))
        }
        None => None,
    };
    let mut verifier = TokenVerifier::new(id.clone());
    for k in &cfg.token_keys {
        verifier.add_key_file(&k.kid, &k.public_key_file)?;
    }
    let registry = common::ops::registry(&cfg.node_id, &cfg.region);
    let metrics = Metrics::new(&registry, cfg.capacity.participants);
    let mesh_metrics = mesh::MeshMetrics::new(&registry);

    let record = MediaNodeRecord {
        node_id: cfg.node_id.clone(),
        region: cfg.region.clone(),
        zone: cfg.zone.clone(),
        signal_url: cfg.signal_url(),
        grpc_addr: cfg.grpc_advertise(),
        relay_addr: if tls.is_some() {
            cfg.relay_advertise()
        } else {
            String::new()
        },
        capacity: Some(Capacity {
            participants: cfg.capacity.participants,
            bitrate_kbps: cfg.capacity.bitrate_kbps,
            cpu_cores: cfg.capacity.cpu_cores,
        }),
        version: env!("CARGO_PKG_VERSION").into(),
        state: NodeState::Active as i32,
        lease_id: 0,
    };
    let udp = tokio::net::UdpSocket::bind(&cfg.udp_listen)
        .await
        .map_err(|e| {
            NodeError::io(
                format!("cannot bind UDP {} (key `udp_listen`)", cfg.udp_listen),
                e,
            )
        })?;
    let advertised = match &cfg.udp_advertise {
        Some(a) => common::config::socket_addr("udp_advertise", a)?,
        None => udp
            .local_addr()
            .map_err(|e| NodeError::io("the UDP socket's address".into(), e))?,
    };
    let rooms = Arc::new(room::Rooms::default());
    let shards = match cfg.sfu_shards {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let (sfu_handle, _sfu_task) = sfu::driver::spawn(
        udp,
        advertised,
        sfu::driver::Settings {
            shards,
            bandwidth_cap: cfg.simulcast_bandwidth_cap,
            udp_gso: cfg.udp_gso,
        },
        {
            // The SFU's active-speaker changes go to the meeting's room (everyone there
            // is told, and a late joiner's welcome names the speaker).
            let rooms = rooms.clone();
            Arc::new(
                move |meeting: &MeetingId, participant: &common::ids::ParticipantId| {
                    rooms.publish(
                        meeting,
                        signaling::ServerMsg::ActiveSpeaker {
                            participant_id: participant.to_string(),
                        },
                    )
                },
            )
        },
        metrics.driver.clone(),
        shutdown.clone(),
    );
    tracing::info!(%advertised, shards, "SFU listening for WebRTC on one UDP port");
    let (load_tx, load_rx) = watch::channel(NodeLoad::default());
    let registration = Registration::spawn(
        cfg.etcd.clone(),
        id.clone(),
        NodeRecord::Media(record),
        load_rx,
        shutdown.clone(),
    );
    // The relay needs TLS (QUIC has no plaintext): without it, no recordings and no
    // cascading between media nodes.
    let (relay_server, relay_client) = match &tls {
        Some(t) => {
            let addr = common::config::socket_addr("relay_listen", &cfg.relay_listen)?;
            let server = relay::server(addr, t.pem()).map_err(|source| NodeError::Relay {
                what: format!("relay endpoint on {addr} (key `relay_listen`)"),
                source,
            })?;
            let bind = std::net::SocketAddr::new(addr.ip(), 0);
            let client = relay::client(bind, t.pem()).map_err(|source| NodeError::Relay {
                what: format!("relay client endpoint on {bind}"),
                source,
            })?;
            (Some(server), Some(client))
        }
        None => (None, None),
    };
    let etcd = Arc::new(store::EtcdStore::new(cfg.etcd.clone(), shutdown.clone()));
    let meeting_store: Arc<dyn store::MeetingStore> = etcd.clone();
    let groups_sfu = sfu_handle.clone();
    let groups: hosts::GroupsOut = Arc::new(move |meeting, groups| {
        groups_sfu.command(
            meeting,
            sfu::SfuCommand::Groups {
                meeting: meeting.clone(),
                groups,
            },
        );
    });
    let meetings = watch::Sender::new(HashSet::new());
    let mesh = Arc::new(mesh::Mesh::new(
        mesh::MeshDeps {
            id: id.clone(),
            etcd: etcd.clone(),
            store: meeting_store.clone(),
            prepared: meetings.subscribe(),
            rooms: rooms.clone(),
            sfu: sfu_handle.clone(),
            shutdown: shutdown.clone(),
        },
        relay_client,
        mesh_metrics,
    ));
    let node = Arc::new(Node {
        id,
        verifier,
        registration,
        drain: Drain::new(shutdown.clone()),
        drain_deadline: Duration::from_secs(cfg.drain_deadline_secs),
        max_participants: cfg.max_participants_per_meeting,
        max_webinar_participants: cfg.max_participants_per_webinar,
        metrics,
        shutdown: shutdown.clone(),
        rooms,
        sfu: sfu_handle,
        mesh,
        hosts: hosts::Hosts::new(meeting_store.clone(), groups, shutdown.clone()),
        collab: collab::Collab::new(meeting_store.clone(), shutdown.clone()),
        store: meeting_store,
        meetings,
    });

    // Load report: the registration publishes the latest value every second.
    let n = node.clone();
    let sd = shutdown.clone();
    let mut cpu = CpuSampler::registered(&registry);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !sd.is_cancelled() {
            tick.tick().await;
            let sfu = n.sfu.stats();
            sfu::driver::set_gauges(&n.metrics.driver, &sfu);
            let load = NodeLoad {
                participants: n.participants(),
                meetings: n.meeting_count(),
                tracks: sfu.tracks_in,
                bitrate_in_kbps: sfu.bitrate_in_bps / 1000,
                bitrate_out_kbps: sfu.bitrate_out_bps / 1000,
                cpu_cores: cpu.sample(),
                ..Default::default()
            };
            n.metrics.participants.set(i64::from(load.participants));
            n.metrics.meetings.set(i64::from(load.meetings));
            let _ = load_tx.send(load);
        }
    });
    let n = node.clone();
    let sd = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = drain.cancelled() => n.start_drain(),
            _ = sd.cancelled() => {}
        }
    });
    // Self-fencing (DESIGN §2): once the lease went unrenewed for its TTL, another node
    // may host our meetings; ours end, and the participants rejoin there.
    let n = node.clone();
    node.registration
        .on_fenced(shutdown.clone(), move || n.fence());

    match relay_server {
        Some(endpoint) => {
            let relay_addr = endpoint
                .local_addr()
                .map_err(|e| NodeError::io("the relay endpoint's address".into(), e))?;
            tracing::info!(relay = %relay_addr, "relay listening (QUIC)");
            tokio::spawn(relay_server::serve(
                endpoint,
                node.clone(),
                shutdown.clone(),
            ));
        }
        None => tracing::warn!(
            "no TLS: the relay is off, so meetings here cannot be recorded or span nodes"
        ),
    }

    let grpc_addr = grpc
        .local_addr()
        .map_err(|e| NodeError::io("the gRPC listener's address".into(), e))?;
    let mut server = tonic::transport::Server::builder();
    if let Some(t) = &tls {
        server = server.tls_config(t.server())?;
    }
    let sd = shutdown.clone();
    let grpc_task = tokio::spawn(
        server
            .add_service(
                proto::v1::media_node_control_server::MediaNodeControlServer::new(
                    control::Control { node: node.clone() },
                ),
            )
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
    let wss_task = signal_tls.map(|(tcp, cert)| {
        let addr = tcp.local_addr().ok();
        tracing::info!(wss = ?addr, "signaling over TLS");
        tokio::spawn(wss::serve(
            tcp,
            cert,
            session::router(node.clone()),
            shutdown.clone(),
        ))
    });
    let app = session::router(node.clone()).merge(common::ops::router(registry, ready));
    let http_addr = http
        .local_addr()
        .map_err(|e| NodeError::io("the HTTP listener's address".into(), e))?;
    tracing::info!(http = %http_addr, grpc = %grpc_addr, node = %node.id, "media node serving");
    let sd = shutdown.clone();
    axum::serve(http, app)
        .with_graceful_shutdown(async move { sd.cancelled().await })
        .await
        .map_err(|e| NodeError::io("the HTTP server".into(), e))?;
    if let Some(t) = wss_task {
        t.await?
            .map_err(|e| NodeError::io("the signaling TLS server".into(), e))?;
    }
    grpc_task.await??;
    // Unwrap the Arc only to wait for the lease revocation; other holders are gone or idle.
    match Arc::try_unwrap(node) {
        Ok(n) => n.registration.join().await,
        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
    }
    Ok(())
}
