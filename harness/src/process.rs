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

/// A real etcd (Debian `etcd-server`) on free loopback ports with its own data dir.
pub struct Etcd {
    pub proc: Proc,
    pub client_port: u16,
}

impl Etcd {
    pub async fn start(data_dir: &Path, log: &Path) -> anyhow::Result<Self> {
        let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context("etcd not found: install Debian's etcd-server (scripts/test.sh does)")?;
        let (client_port, peer_port) = (crate::free_port(), crate::free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let args: Vec<String> = [
            "--name",
            "fjord",
            "--data-dir",
            &data_dir.display().to_string(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("fjord={peer}"),
            "--log-level",
            "warn",
            "--logger",
            "zap",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let proc = Proc::spawn_args("etcd", &bin, args, log)?;
        let mut etcd = Self { proc, client_port };
        etcd.wait_up(Duration::from_secs(15)).await?;
        Ok(etcd)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub async fn client(&self) -> anyhow::Result<etcd_client::Client> {
        let opts = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(2));
        Ok(etcd_client::Client::connect([self.endpoint()], Some(opts)).await?)
    }

    async fn wait_up(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(mut c) = self.client().await
                && c.status().await.is_ok()
            {
                return Ok(());
            }
            if !self.proc.is_running() || Instant::now() >= until {
                bail!("etcd did not start; see {}", self.proc.log_path().display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops etcd (SIGKILL, as an outage would).
    pub fn stop(&mut self) {
        self.proc.kill9();
    }

    /// Starts it again on the same ports and data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.proc.restart()?;
        self.wait_up(Duration::from_secs(15)).await
    }
}
