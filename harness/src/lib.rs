//! Runs a real Fjord cluster on loopback: etcd from Debian's `etcd-server` on free ports
//! with its own data dir, a cluster CA and certificates made with rcgen, and the Fjord
//! binaries as child processes (so tests can `kill -9` them). Used by the local-cluster
//! command, the join benchmark and the integration tests. Everything it starts is
//! stopped when its handle drops.
#![forbid(unsafe_code)]

pub mod aiortc;
pub mod compare;
pub mod drill;
pub mod janus;
pub mod lossy;
pub mod netns;
pub mod oidc;
pub mod partition;
pub mod pki;
pub mod process;
pub mod prometheus;
pub mod turn;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

pub use crate::pki::Pki;
pub use crate::process::{Etcd, Proc};

/// The repository this harness was built from.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv the tests' Python tools live in (`scripts/test.sh` makes it):
/// `$FJORD_PY_TOOLS`, else `target/py-tools`.
pub fn py_tools() -> PathBuf {
    std::env::var_os("FJORD_PY_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/py-tools"))
}

/// A free TCP port on 127.0.0.1, reserved for this process (see [`reserve_port`]).
pub fn free_port() -> u16 {
    reserve_port()
}

/// A free UDP port on 127.0.0.1, reserved for this process (see [`reserve_port`]).
pub fn free_udp_port() -> u16 {
    reserve_port()
}

/// A loopback port that is free for both TCP and UDP and reserved for this process.
///
/// Port 0 would hand out ports from the kernel's ephemeral range, where the outgoing
/// connections of every concurrently running test (browsers, HTTP clients, etcd) take
/// theirs too: between picking the port and the child process binding it, one of those
/// could grab it. So ports come from below the ephemeral range, and each is reserved with
/// an exclusive lock on a file that the other test processes respect; the lock goes with
/// the process.
fn reserve_port() -> u16 {
    use std::sync::Mutex;
    const FIRST: u16 = 20_000;
    const LAST: u16 = 32_000;
    static HELD: Mutex<(u16, Vec<std::fs::File>)> = Mutex::new((0, Vec::new()));
    let dir = std::env::temp_dir().join("fjord-test-ports");
    std::fs::create_dir_all(&dir).expect("create the port lock dir");
    let mut held = HELD.lock().expect("port reservations");
    if held.0 == 0 {
        // Start somewhere that depends on the process, so that concurrent tests rarely
        // even try the same ports.
        held.0 = FIRST + (std::process::id() % 120) as u16 * 100;
    }
    for _ in FIRST..=LAST {
        let port = held.0;
        held.0 = if port >= LAST { FIRST } else { port + 1 };
        let Ok(lock) = std::fs::File::create(dir.join(port.to_string())) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue;
        }
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            held.1.push(lock);
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {LAST}");
}

/// Where the workspace's binaries are: `FJORD_BIN_DIR`, else the target dir this test or
/// tool was built into. Build them first with `cargo build --workspace --bins`.
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var_os("FJORD_BIN_DIR") {
        Some(d) => vec![PathBuf::from(d)],
        None => {
            let exe = std::env::current_exe()?;
            exe.ancestors()
                .skip(1)
                .take(2)
                .map(Path::to_path_buf)
                .collect()
        }
    };
    for d in &dirs {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "binary {name} not found in {dirs:?}: run `cargo build --workspace --bins` first (or set FJORD_BIN_DIR)"
    )
}

/// `Some(())` if `url` answers a GET with a 2xx status.
pub async fn http_ok(http: &reqwest::Client, url: &str) -> Option<()> {
    let r = http.get(url).send().await.ok()?;
    r.status().is_success().then_some(())
}

/// Polls `f` every 100 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= until {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A media or recording node of the cluster.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: String,
    pub region: String,
    pub capacity: u32,
}

#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub controllers: usize,
    pub media: Vec<NodeSpec>,
    pub recording: Vec<NodeSpec>,
    /// Regions with their neighbours, nearest first.
    pub regions: Vec<(String, Vec<String>)>,
    pub default_region: String,
    pub lease_ttl_secs: u64,
    pub allow_region_override: bool,
    pub token_ttl_secs: u64,
    /// Every binary's `log.format`: `text` or `json`.
    pub log_format: &'static str,
    /// The controllers' `join_limits` (None: their defaults); see [`no_join_limits`].
    pub join_limits: Option<serde_json::Value>,
    /// The controllers' `[turn]` (None: no TURN servers); see [`turn::Coturn`].
    pub turn: Option<serde_json::Value>,
    /// The controllers' `[oidc]` (None: no sign-in); see [`oidc::Provider`].
    pub oidc: Option<serde_json::Value>,
    /// More keys of the controllers' config (an object), e.g. `retention_secs`.
    pub controller_extra: Option<serde_json::Value>,
    /// Members of the etcd cluster.
    pub etcd_members: usize,
    /// Each controller and node reaches etcd through its own [`partition::Gate`], so that
    /// a test can cut it off from etcd ([`Cluster::gate`]).
    pub gated: bool,
}

/// Join limits that limit nothing: for tests and benchmarks that join many peers from
/// one address.
pub fn no_join_limits() -> Option<serde_json::Value> {
    let off = json!({ "per_minute": 0, "burst": 0 });
    Some(json!({ "per_address": off, "per_meeting": off }))
}

impl ClusterSpec {
    /// Two controllers, media nodes in `oslo` (two) and `stockholm` (one), one recording node.
    pub fn local() -> Self {
        let node = |id: &str, region: &str| NodeSpec {
            id: id.into(),
            region: region.into(),
            capacity: 200,
        };
        Self {
            controllers: 2,
            media: vec![
                node("media-oslo-1", "oslo"),
                node("media-oslo-2", "oslo"),
                node("media-stockholm-1", "stockholm"),
            ],
            recording: vec![node("recording-oslo-1", "oslo")],
            regions: vec![
                ("oslo".into(), vec!["stockholm".into()]),
                ("stockholm".into(), vec!["oslo".into()]),
            ],
            default_region: "oslo".into(),
            lease_ttl_secs: 5,
            allow_region_override: true,
            token_ttl_secs: 120,
            log_format: "text",
            join_limits: None,
            turn: None,
            oidc: None,
            controller_extra: None,
            etcd_members: 1,
            gated: false,
        }
    }
}

pub const OPERATOR_KEY: &str = "local-operator-key-0123456789";

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
    /// candidate (for example a [`lossy::LossyProxy`] in front of it).
    pub fn start_media_on(
        &mut self,
        spec: NodeSpec,
        udp: u16,
        advertise: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<()> {
        self.start_media_at(spec, ([127, 0, 0, 1], udp).into(), advertise)
    }

    /// Starts a media node whose UDP socket listens on `udp_listen` (for example on a
    /// [`netns`] interface).
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

    /// Waits until every running process answers `/readyz` and every running controller
    /// lists every running media node.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let mut urls: Vec<(String, String)> = Vec::new();
        for c in self.controllers.iter().filter(|c| c.proc.is_running()) {
            urls.push((c.id.clone(), format!("{}/readyz", c.url())));
        }
        for n in self
            .media
            .iter()
            .chain(self.recording.iter())
            .filter(|n| n.proc.is_running())
        {
            urls.push((
                n.spec.id.clone(),
                format!("http://127.0.0.1:{}/readyz", n.http),
            ));
        }
        for (name, url) in urls {
            eventually(
                timeout,
                &format!(
                    "{name} to be ready ({url}); see {}/logs/{name}.log",
                    self.dir.display()
                ),
                || http_ok(&http, &url),
            )
            .await?;
        }
        let expected = self.media.iter().filter(|n| n.proc.is_running()).count();
        for c in self.controllers.iter().filter(|c| c.proc.is_running()) {
            let url = format!("{}/v1/nodes", c.url());
            let key = self.operator_key.clone();
            eventually(
                timeout,
                &format!("{} to see {expected} media nodes", c.id),
                || {
                    let (h, url, key) = (http.clone(), url.clone(), key.clone());
                    async move {
                        let v: serde_json::Value = h
                            .get(&url)
                            .bearer_auth(key)
                            .send()
                            .await
                            .ok()?
                            .json()
                            .await
                            .ok()?;
                        let n = v["nodes"]
                            .as_array()?
                            .iter()
                            .filter(|n| n["kind"] == "media")
                            .count();
                        (n >= expected).then_some(())
                    }
                },
            )
            .await?;
        }
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

    /// The indexes of the running controllers that say they lead (their
    /// `fjord_controller_is_leader` metric): one, none during a handover, two would be a
    /// split brain.
    pub async fn leaders(&self) -> Vec<usize> {
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        for (i, c) in self.controllers.iter().enumerate() {
            if !c.proc.is_running() {
                continue;
            }
            let Ok(r) = http.get(format!("{}/metrics", c.url())).send().await else {
                continue;
            };
            let text = r.text().await.unwrap_or_default();
            if metric_value(&text, "fjord_controller_is_leader") == Some(1.0) {
                out.push(i);
            }
        }
        out
    }

    /// The placements of `meeting` in etcd: slot → media node.
    pub async fn placements(
        &self,
        meeting: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        use prost::Message;
        let mut client = self.etcd.client().await?;
        let ks = common::keyspace::Keyspace::new("/fjord");
        let prefix = ks.placements_of(&common::ids::MeetingId::parse(meeting)?);
        let resp = client
            .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
            .await?;
        let mut out = std::collections::BTreeMap::new();
        for kv in resp.kvs() {
            let common::keyspace::Key::Placement(_, slot) = ks.parse(kv.key_str()?) else {
                anyhow::bail!("not a placement key: {:?}", kv.key_str());
            };
            let rec = proto::v1::PlacementRecord::decode(kv.value())?;
            out.insert(slot.to_string(), rec.node_id);
        }
        Ok(out)
    }
}

/// The value of an unlabelled-or-any-labels metric sample in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of the samples of metric `name` in Prometheus text whose labels include all of
/// `labels` (`[("peer", "media-oslo-1")]`); 0 when there is none.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The benchmarks' bots: joins `spec`'s publishers and subscribers, saying
/// how far it got every ten joins and why the first few that failed did.
pub async fn bench_load(spec: bot::LoadSpec) -> anyhow::Result<bot::Load> {
    let load = bot::Load::start(&spec, |done, total| {
        if done % 10 == 0 || done == total {
            eprintln!("  joined {done}/{total}");
        }
    })
    .await?;
    for f in load.failures.iter().take(5) {
        eprintln!("join failed: {f}");
    }
    Ok(load)
}

/// User plus system CPU time of process `pid` so far, in seconds (/proc/<pid>/stat).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 of `rest`.
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("no CLK_TCK")? as f64;
    Ok(ticks as f64 / hz)
}

/// The buckets of histogram `name` in Prometheus text: (upper bound, cumulative count),
/// by bound, summed over label sets.
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = Vec::new();
    for l in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = l.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let Some(n) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        match out.iter_mut().find(|(b, _)| *b == bound) {
            Some(e) => e.1 += n,
            None => out.push((bound, n)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile (0..1) of the observations between two readings of a histogram's
/// buckets, interpolated linearly inside its bucket (as Prometheus does); None if
/// nothing was observed.
pub fn histogram_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(b, n)| {
            let was = before.iter().find(|(x, _)| x == b).map_or(0.0, |x| x.1);
            (*b, n - was)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let want = q * total;
    let mut lower = (0.0, 0.0);
    for (bound, count) in delta {
        if count >= want {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let inside = (count - lower.1).max(1e-9);
            return Some(lower.0 + (bound - lower.0) * (want - lower.1) / inside);
        }
        lower = (bound, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_come_from_the_buckets_filled_between_two_readings() {
        let text = |a: u32, b: u32, c: u32| {
            format!(
                "# TYPE h histogram\n\
                 h_bucket{{node=\"x\",le=\"0.001\"}} {a}\n\
                 h_bucket{{node=\"x\",le=\"0.002\"}} {b}\n\
                 h_bucket{{node=\"x\",le=\"+Inf\"}} {c}\n\
                 h_sum{{node=\"x\"}} 1\nh_count{{node=\"x\"}} {c}\n"
            )
        };
        let before = histogram_buckets(&text(10, 10, 10), "h");
        assert_eq!(
            before,
            vec![(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 10.0)]
        );
        // 100 new observations: 50 below 1 ms, 50 between 1 and 2 ms.
        let after = histogram_buckets(&text(60, 110, 110), "h");
        let p50 = histogram_quantile(&before, &after, 0.5).unwrap();
        assert!((p50 - 0.001).abs() < 1e-9, "{p50}");
        let p99 = histogram_quantile(&before, &after, 0.99).unwrap();
        assert!((p99 - 0.001_98).abs() < 1e-9, "{p99}");
        assert_eq!(histogram_quantile(&after, &after, 0.5), None);
        assert_eq!(metric_sum(&text(1, 2, 3), "h_count", &[("node", "x")]), 3.0);
    }
}
