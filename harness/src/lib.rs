//! Runs a real Fjord cluster on loopback: etcd from Debian's `etcd-server` on free ports
//! with its own data dir, a cluster CA and certificates made with rcgen, and the Fjord
//! binaries as child processes (so tests can `kill -9` them). Used by the local-cluster
//! command, the join benchmark and the integration tests. Everything it starts is
//! stopped when its handle drops.
//!
//! `cluster` runs one ([`Cluster`], [`ClusterSpec`], re-exported here) and `metrics`
//! reads the Prometheus text its processes serve; here are the ports, paths and polling
//! that everything shares.
#![forbid(unsafe_code)]

pub mod aiortc;
mod cluster;
pub mod compare;
pub mod drill;
pub mod janus;
pub mod lossy;
mod metrics;
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

pub use crate::cluster::{
    Cluster, ClusterSpec, Controller, LOCAL_ADMIN, Node, NodeSpec, OPERATOR_KEY, no_join_limits,
};
pub use crate::metrics::{histogram_buckets, histogram_quantile, metric_sum, metric_value};
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

/// A store's contract suite: one test per store for each case, `mod on_memory` running
/// `case(memory())` and `mod on_etcd` running `case(etcd().await)`, where `memory`,
/// `etcd` and the cases are functions of the calling module (the controller's
/// `ClusterStore` and the media node's `MeetingStore` keep their contracts so).
#[macro_export]
macro_rules! store_contract {
    ($($case:ident),* $(,)?) => {
        mod on_memory {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::memory()).await
            })*
        }
        mod on_etcd {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::etcd().await).await
            })*
        }
    };
}
