//! Child processes: etcd, and the Fjord binaries. Dropping a handle kills the process.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub struct Proc {
    pub name: String,
    // A mutex so that liveness checks need only `&self`.
    child: Mutex<Child>,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, bin: &Path, config: &Path, log: &Path) -> anyhow::Result<Self> {
        let args = vec!["--config".to_string(), config.display().to_string()];
        Self::spawn_args(name, bin, args, log)
    }

    pub fn spawn_args(
        name: &str,
        bin: &Path,
        args: Vec<String>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let child = Self::launch(bin, &args, log)?;
        Ok(Self {
            name: name.into(),
            child: Mutex::new(child),
            bin: bin.into(),
            args,
            log: log.into(),
        })
    }

    fn launch(bin: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        Command::new(bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pid(&self) -> u32 {
        self.child().id()
    }
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn is_running(&self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let mut c = self.child();
        let _ = c.kill();
        let _ = c.wait();
    }

    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid() as i32), sig);
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let until = Instant::now() + timeout;
        loop {
            let done = self.child().try_wait();
            if let Ok(Some(st)) = done {
                return Some(st.code().unwrap_or(-1));
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the same command again (after it exited or was killed).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{} is still running", self.name);
        }
        *self.child() = Self::launch(&self.bin, &self.args, &self.log)?;
        Ok(())
    }

    /// SIGINT, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        self.signal(Signal::SIGINT);
        if self.wait_exit(grace).await.is_none() {
            self.kill9();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let mut c = self.child();
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A real etcd (Debian `etcd-server`) of one or more members on free loopback ports,
/// each with its own data dir.
pub struct Etcd {
    pub members: Vec<EtcdMember>,
}

pub struct EtcdMember {
    pub name: String,
    pub proc: Proc,
    pub client_port: u16,
}

impl EtcdMember {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}

/// A real etcd for one test: a member on a free loopback port with a temporary data dir
/// (gone with it), and a config of the cluster's state under `prefix` in it.
pub struct TestEtcd {
    pub config: common::config::EtcdConfig,
    pub etcd: Etcd,
    _dir: tempfile::TempDir,
}

impl TestEtcd {
    pub async fn start(prefix: &str) -> anyhow::Result<TestEtcd> {
        let dir = tempfile::tempdir()?;
        let etcd = Etcd::start(&dir.path().join("data"), &dir.path().join("etcd.log")).await?;
        let config = common::config::EtcdConfig {
            endpoints: vec![etcd.endpoint()],
            prefix: prefix.into(),
            ..Default::default()
        };
        Ok(TestEtcd {
            config,
            etcd,
            _dir: dir,
        })
    }
}

impl Etcd {
    /// One member.
    pub async fn start(data_dir: &Path, log: &Path) -> anyhow::Result<Self> {
        Self::start_members(1, data_dir, log).await
    }

    /// A cluster of `n` members: member `i` keeps its data in `data_dir/member-i` (just
    /// `data_dir` when alone) and logs to `log` with `-i` before its extension.
    pub async fn start_members(n: usize, data_dir: &Path, log: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(n >= 1, "an etcd cluster needs a member");
        let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context("etcd not found: install Debian's etcd-server (scripts/test.sh does)")?;
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| (crate::free_port(), crate::free_port()))
            .collect();
        let name = |i: usize| {
            if n == 1 {
                "fjord".to_owned()
            } else {
                format!("fjord-{}", i + 1)
            }
        };
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("{}=http://127.0.0.1:{peer}", name(i)))
            .collect();
        let mut members = Vec::new();
        for (i, (client_port, peer_port)) in ports.iter().enumerate() {
            let (dir, log) = if n == 1 {
                (data_dir.to_path_buf(), log.to_path_buf())
            } else {
                let stem = log.file_stem().and_then(|s| s.to_str()).unwrap_or("etcd");
                (
                    data_dir.join(format!("member-{}", i + 1)),
                    log.with_file_name(format!("{stem}-{}.log", i + 1)),
                )
            };
            let client = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let args: Vec<String> = [
                "--name",
                &name(i),
                "--data-dir",
                &dir.display().to_string(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--log-level",
                "warn",
                "--logger",
                "zap",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            members.push(EtcdMember {
                name: name(i),
                proc: Proc::spawn_args(&name(i), &bin, args, &log)?,
                client_port: *client_port,
            });
        }
        let mut etcd = Self { members };
        for i in 0..n {
            etcd.wait_member(i, Duration::from_secs(20)).await?;
        }
        Ok(etcd)
    }

    /// The first member's client URL.
    pub fn endpoint(&self) -> String {
        self.members[0].endpoint()
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::endpoint).collect()
    }

    /// A client of the whole cluster.
    pub async fn client(&self) -> anyhow::Result<etcd_client::Client> {
        Self::client_of(self.endpoints()).await
    }

    async fn client_of(endpoints: Vec<String>) -> anyhow::Result<etcd_client::Client> {
        let opts = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(2));
        Ok(etcd_client::Client::connect(endpoints, Some(opts)).await?)
    }

    /// Waits until member `i` answers a status request.
    async fn wait_member(&mut self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + timeout;
        let m = &self.members[i];
        loop {
            if let Ok(mut c) = Self::client_of(vec![m.endpoint()]).await
                && c.status().await.is_ok()
            {
                return Ok(());
            }
            if !m.proc.is_running() || Instant::now() >= until {
                bail!(
                    "etcd member {} did not start; see {}",
                    m.name,
                    m.proc.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the member that is the raft leader now.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        let mut c = self.client().await?;
        let id = c.status().await?.leader();
        for (i, m) in self.members.iter().enumerate() {
            if !m.proc.is_running() {
                continue;
            }
            let mut one = Self::client_of(vec![m.endpoint()]).await?;
            if one.status().await?.header().map(|h| h.member_id()) == Some(id) {
                return Ok(i);
            }
        }
        bail!("no running etcd member is the leader {id:x}")
    }

    /// `kill -9` of member `i`.
    pub fn kill_member(&mut self, i: usize) {
        self.members[i].proc.kill9();
    }

    /// Starts member `i` again on its ports and data, and waits until it answers.
    pub async fn restart_member(&mut self, i: usize) -> anyhow::Result<()> {
        self.members[i].proc.restart()?;
        self.wait_member(i, Duration::from_secs(20)).await
    }

    /// Stops every member (SIGKILL, as an outage would).
    pub fn stop(&mut self) {
        for m in &mut self.members {
            m.proc.kill9();
        }
    }

    /// Starts every member again on the same ports and data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        for m in &mut self.members {
            m.proc.restart()?;
        }
        for i in 0..self.members.len() {
            self.wait_member(i, Duration::from_secs(20)).await?;
        }
        Ok(())
    }
}
