//! What media and recording nodes share around their work: the drain state machine
//! (active -> draining -> exit when idle or at the deadline) and process CPU sampling
//! for the load report.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::registration::Registration;

/// Starts draining once: marks the registration draining (so placement stops choosing
/// the node), then stops the node via `shutdown` as soon as `busy()` reports no work, or
/// at `deadline`, whichever comes first.
#[derive(Clone)]
pub struct Drain {
    started: Arc<AtomicBool>,
    shutdown: CancellationToken,
}

impl Drain {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            started: Arc::default(),
            shutdown,
        }
    }
    pub fn is_draining(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// Begins the drain; later calls do nothing. `busy` returns the work left (for logs).
    pub fn start(
        &self,
        registration: &Registration,
        deadline: Duration,
        busy: impl Fn() -> u32 + Send + 'static,
    ) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        registration.update(|r| r.set_state(proto::v1::NodeState::Draining));
        tracing::info!(
            deadline_secs = deadline.as_secs(),
            "draining: no new meetings; exiting when idle"
        );
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let until = Instant::now() + deadline;
            // Give the draining state a moment to reach etcd before we possibly leave.
            tokio::time::sleep(Duration::from_millis(300)).await;
            loop {
                let left = busy();
                if left == 0 {
                    tracing::info!("drained: idle, exiting");
                    break;
                }
                if Instant::now() >= until {
                    tracing::warn!(left, "drain deadline reached, exiting with work left");
                    break;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
            shutdown.cancel();
        });
    }
}

/// CPU used by this process, in cores, averaged between calls (Linux `/proc/self/stat`).
pub struct CpuSampler {
    last: Option<(Instant, f64)>,
}

impl Default for CpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSampler {
    pub fn new() -> Self {
        Self { last: None }
    }

    /// Seconds of CPU (user + system) this process has used.
    pub fn process_cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        parse_cpu_seconds(&stat, 100.0)
    }

    pub fn sample(&mut self) -> f64 {
        let Some(cpu) = Self::process_cpu_seconds() else {
            return 0.0;
        };
        let now = Instant::now();
        let cores = match self.last {
            Some((t, c)) if now > t => (cpu - c) / now.duration_since(t).as_secs_f64(),
            _ => 0.0,
        };
        self.last = Some((now, cpu));
        cores.max(0.0)
    }
}

/// utime + stime from a `/proc/<pid>/stat` line, in seconds (`ticks` per second).
pub fn parse_cpu_seconds(stat: &str, ticks: f64) -> Option<f64> {
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// The `main` of a node binary: load and validate config (exit 2 naming the key), bind
/// the HTTP and gRPC listeners (exit 1 naming the key), install the signal handlers
/// (SIGTERM drains, SIGINT stops), then run.
pub async fn node_main<C, V, R, Fut>(
    name: &str,
    env_prefix: &str,
    config: Option<&std::path::Path>,
    validate: V,
    listeners: fn(&C) -> [(&'static str, String); 2],
    run: R,
) -> std::process::ExitCode
where
    C: serde::de::DeserializeOwned + serde::Serialize + Default,
    V: FnOnce(&C) -> Result<(), crate::config::ConfigError>,
    R: FnOnce(
        C,
        tokio::net::TcpListener,
        tokio::net::TcpListener,
        CancellationToken,
        CancellationToken,
    ) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use std::process::ExitCode;
    let cfg: C =
        match crate::config::load::<C>(config, env_prefix).and_then(|c| validate(&c).map(|_| c)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{name}: {e}");
                return ExitCode::from(2);
            }
        };
    let mut bound = Vec::new();
    for (key, addr) in listeners(&cfg) {
        match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => bound.push(l),
            Err(e) => {
                eprintln!("{name}: cannot listen on {addr} (key `{key}`): {e}");
                return ExitCode::from(1);
            }
        }
    }
    let (Some(grpc), Some(http)) = (bound.pop(), bound.pop()) else {
        unreachable!("two listeners were bound")
    };
    let (shutdown, drain) = (crate::shutdown::token(), crate::shutdown::token());
    crate::shutdown::spawn_node_signals(shutdown.clone(), drain.clone());
    match run(cfg, http, grpc, shutdown, drain).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_odd_command_names() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 10";
        assert_eq!(parse_cpu_seconds(line, 100.0), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage", 100.0), None);
        assert!(CpuSampler::process_cpu_seconds().is_some());
    }
}
