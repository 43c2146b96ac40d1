//! A running cluster: etcd, the cluster's PKI, and the controllers, media and recording
//! nodes as child processes, each with the config file written for it. `spec` says what
//! to run, `status` what the running cluster says of itself.
mod spec;
mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

pub use self::spec::{ClusterSpec, LOCAL_ADMIN, NodeSpec, OPERATOR_KEY, no_join_limits};
use crate::{Etcd, Pki, Proc, bin_path, free_port, free_udp_port, partition};

pub struct Node {
    pub spec: NodeSpec,
    pub http: u16,
    pub grpc: u16,
    /// The media node's WebRTC UDP port (0 for recording nodes).
    pub udp: u16,
    /// The media node's relay (QUIC) port (0 for recording nodes).
    pub relay: u16,
    pub proc: Proc,
}

pub struct Controller {
    pub id: String,
    pub port: u16,
    pub proc: Proc,
}

impl Controller {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    _etcd_tmp: Option<tempfile::TempDir>,
    pub spec: ClusterSpec,
    pub etcd: Etcd,
    pub pki: Pki,
    pub controllers: Vec<Controller>,
    pub media: Vec<Node>,
    pub recording: Vec<Node>,
    pub operator_key: String,
    /// Config keys added to every media node started from now on (a JSON object).
    pub media_extra: serde_json::Value,
    /// With `spec.gated`: each process's way to etcd, by its id.
    gates: std::collections::HashMap<String, partition::Gate>,
}

impl Cluster {
    /// Starts everything in a temporary directory and waits until all of it is ready.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("fjord-cluster-")
            .tempdir()?;
        let dir = tmp.path().to_path_buf();
        // FJORD_KEEP_TEST_DIRS=1 keeps logs and configs for a look after a failure.
        if std::env::var_os("FJORD_KEEP_TEST_DIRS").is_some() {
            eprintln!("cluster files kept in {}", dir.display());
            let _ = tmp.keep();
            return Self::start_in(spec, dir, None).await;
        }
        Self::start_in(spec, dir, Some(tmp)).await
    }

    /// Starts everything with its files under `dir`.
    pub async fn start_in(
        spec: ClusterSpec,
        dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("logs"))?;
        // A throwaway cluster keeps etcd's data in memory (/dev/shm) where there is one:
        // on a busy machine, etcd's fsyncs to disk took longer than the controllers'
        // request timeout and turned joins into 503s.
        let etcd_tmp = match (&tmp, Path::new("/dev/shm").is_dir()) {
            (Some(_), true) => Some(
                tempfile::Builder::new()
                    .prefix("fjord-etcd-")
                    .tempdir_in("/dev/shm")?,
            ),
            _ => None,
        };
        let etcd_dir = etcd_tmp
            .as_ref()
            .map_or_else(|| dir.join("etcd"), |t| t.path().to_path_buf());
        let etcd =
            Etcd::start_members(spec.etcd_members, &etcd_dir, &dir.join("logs/etcd.log")).await?;
        let mut names: Vec<String> = (0..spec.controllers)
            .map(|i| format!("controller-{}", i + 1))
            .collect();
        names.extend(
            spec.media
                .iter()
                .chain(&spec.recording)
                .map(|n| n.id.clone()),
        );
        let pki = Pki::generate(&dir.join("pki"), &names)?;
        let mut c = Cluster {
            dir,
            _tmp: tmp,
            _etcd_tmp: etcd_tmp,
            spec: spec.clone(),
            etcd,
            pki,
            controllers: vec![],
            media: vec![],
            recording: vec![],
            operator_key: OPERATOR_KEY.into(),
            media_extra: json!({}),
            gates: Default::default(),
        };
        for i in 0..spec.controllers {
            c.start_controller(&format!("controller-{}", i + 1))?;
        }
        for n in &spec.media {
            c.start_media(n.clone())?;
        }
        for n in &spec.recording {
            c.start_recording(n.clone())?;
        }
        c.wait_ready(Duration::from_secs(30)).await?;
        Ok(c)
    }

    /// The `[etcd]` settings of process `name`: every member, through its own gate when
    /// the cluster is gated (the gate is made the first time, and kept for restarts).
    fn etcd_json(&mut self, name: &str) -> anyhow::Result<serde_json::Value> {
        let endpoints = if self.spec.gated {
            if !self.gates.contains_key(name) {
                let members: Vec<std::net::SocketAddr> = self
                    .etcd
                    .members
                    .iter()
                    .map(|m| ([127, 0, 0, 1], m.client_port).into())
                    .collect();
                self.gates
                    .insert(name.to_owned(), partition::Gate::start(&members)?);
            }
            self.gates[name].endpoints.clone()
        } else {
            self.etcd.endpoints()
        };
        Ok(
            json!({ "endpoints": endpoints, "lease_ttl_secs": self.spec.lease_ttl_secs, "request_timeout_ms": 2000 }),
        )
    }

    /// The way process `name` (a controller or node id) reaches etcd, in a gated cluster.
    pub fn gate(&self, name: &str) -> anyhow::Result<&partition::Gate> {
        self.gates
            .get(name)
            .with_context(|| format!("{name} has no gate to etcd (is the cluster gated?)"))
    }

    /// TLS settings of `name`, issuing its certificate if it is new to the cluster.
    fn tls_json(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        let (cert, key) = self.pki.files(name);
        if !cert.exists() {
            self.pki.issue(name)?;
        }
        Ok(json!({ "ca_file": self.pki.ca_file(), "cert_file": cert, "key_file": key }))
    }

    /// The config file the cluster wrote for process `name` (a node id or controller id).
    pub fn config_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    fn write_config(&self, name: &str, v: serde_json::Value) -> anyhow::Result<PathBuf> {
        let path = self.config_path(name);
        let t: toml::Value = toml::Value::try_from(v)?;
        std::fs::write(&path, toml::to_string(&t)?)?;
        Ok(path)
    }

    pub fn start_controller(&mut self, id: &str) -> anyhow::Result<()> {
        let port = free_port();
        let regions: Vec<_> = self
            .spec
            .regions
            .iter()
            .map(|(n, ns)| json!({ "name": n, "neighbours": ns }))
            .collect();
        let mut cfg = json!({
            "id": id,
            "listen": format!("127.0.0.1:{port}"),
            "operator_keys": [self.operator_key],
            "etcd": self.etcd_json(id)?,
            "tls": self.tls_json(id)?,
            "token": { "signing_key_file": self.pki.token_key_file(), "kid": "k1", "ttl_secs": self.spec.token_ttl_secs },
            "download_key_file": self.pki.download_key_file(),
            "regions": regions,
            "default_region": self.spec.default_region,
            "allow_region_override": self.spec.allow_region_override,
            "log": { "format": self.spec.log_format },
        });
        if let Some(turn) = &self.spec.turn {
            cfg["turn"] = turn.clone();
        }
        if let Some(limits) = &self.spec.join_limits {
            cfg["join_limits"] = limits.clone();
        }
        if let Some(oidc) = &self.spec.oidc {
            cfg["oidc"] = oidc.clone();
        }
        if let Some(serde_json::Value::Object(extra)) = &self.spec.controller_extra {
            for (k, v) in extra {
                cfg[k] = v.clone();
            }
        }
        let path = self.write_config(id, cfg)?;
        let proc = Proc::spawn(
            id,
            &bin_path("fjord-controller")?,
            &path,
            &self.dir.join(format!("logs/{id}.log")),
        )?;
        self.controllers.push(Controller {
            id: id.into(),
            port,
            proc,
        });
        Ok(())
    }

    pub fn start_media(&mut self, spec: NodeSpec) -> anyhow::Result<()> {
        self.start_media_on(spec, free_udp_port(), None)
    }

    /// Starts a media node on UDP port `udp` that advertises `advertise` as its ICE
    /// candidate (for example a [`lossy::LossyProxy`](crate::lossy::LossyProxy) in
    /// front of it).
    pub fn start_media_on(
        &mut self,
        spec: NodeSpec,
        udp: u16,
        advertise: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<()> {
        self.start_media_at(spec, ([127, 0, 0, 1], udp).into(), advertise)
    }

    /// Starts a media node whose UDP socket listens on `udp_listen` (for example on a
    /// [`netns`](crate::netns) interface).
    pub fn start_media_at(
        &mut self,
        spec: NodeSpec,
        udp_listen: std::net::SocketAddr,
        advertise: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<()> {
        let udp = udp_listen.port();
        let (http, grpc, relay) = (free_port(), free_port(), free_udp_port());
        let mut cfg = json!({
            "node_id": spec.id,
            "region": spec.region,
            "http_listen": format!("127.0.0.1:{http}"),
            "grpc_listen": format!("127.0.0.1:{grpc}"),
            "udp_listen": udp_listen.to_string(),
            "relay_listen": format!("127.0.0.1:{relay}"),
            "capacity": { "participants": spec.capacity },
            "etcd": self.etcd_json(&spec.id)?,
            "tls": self.tls_json(&spec.id)?,
            "token_keys": [{ "kid": "k1", "public_key_file": self.pki.token_public_file() }],
            "drain_deadline_secs": 60,
            "log": { "format": self.spec.log_format },
        });
        if let Some(a) = advertise {
            cfg["udp_advertise"] = json!(a.to_string());
        }
        if let Some(extra) = self.media_extra.as_object() {
            for (k, v) in extra {
                cfg[k] = v.clone();
            }
        }
        let path = self.write_config(&spec.id, cfg)?;
        let log = self.dir.join(format!("logs/{}.log", spec.id));
        let proc = Proc::spawn(&spec.id, &bin_path("fjord-media-node")?, &path, &log)?;
        self.media.push(Node {
            spec,
            http,
            grpc,
            udp,
            relay,
            proc,
        });
        Ok(())
    }

    /// Where recording node `id` keeps its files (a directory per classification in it).
    pub fn recording_storage(&self, id: &str) -> PathBuf {
        self.dir.join(format!("recordings/{id}"))
    }

    pub fn start_recording(&mut self, spec: NodeSpec) -> anyhow::Result<()> {
        let (http, grpc) = (free_port(), free_port());
        let storage = self.recording_storage(&spec.id);
        let cfg = json!({
            "node_id": spec.id,
            "region": spec.region,
            "http_listen": format!("127.0.0.1:{http}"),
            "grpc_listen": format!("127.0.0.1:{grpc}"),
            "slots": spec.capacity.clamp(1, 16),
            "storage": { "internal": storage.join("internal") },
            // Small, so that tests (several at once) keep up in real time.
            "composite": { "width": 640, "height": 360, "fps": 15, "video_kbps": 600 },
            "download_key_file": self.pki.download_key_file(),
            "etcd": self.etcd_json(&spec.id)?,
            "tls": self.tls_json(&spec.id)?,
            "log": { "format": self.spec.log_format },
        });
        let path = self.write_config(&spec.id, cfg)?;
        let log = self.dir.join(format!("logs/{}.log", spec.id));
        let proc = Proc::spawn(&spec.id, &bin_path("fjord-recording-node")?, &path, &log)?;
        self.recording.push(Node {
            spec,
            http,
            grpc,
            udp: 0,
            relay: 0,
            proc,
        });
        Ok(())
    }

    pub fn media_node(&mut self, id: &str) -> anyhow::Result<&mut Node> {
        self.media
            .iter_mut()
            .find(|n| n.spec.id == id)
            .context("no such media node")
    }

    pub fn recording_node(&mut self, id: &str) -> anyhow::Result<&mut Node> {
        self.recording
            .iter_mut()
            .find(|n| n.spec.id == id)
            .context("no such recording node")
    }
}
