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

    /// The token that stops the node.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
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
/// Made with [`CpuSampler::registered`], each sample is also the `fjord_node_cpu_cores` gauge.
pub struct CpuSampler {
    last: Option<(Instant, f64)>,
    gauge: Option<prometheus::Gauge>,
}

impl Default for CpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSampler {
    pub fn new() -> Self {
        Self {
            last: None,
            gauge: None,
        }
    }

    /// A sampler that also exports what it samples as `fjord_node_cpu_cores` in `registry`.
    pub fn registered(registry: &prometheus::Registry) -> Self {
        let gauge = prometheus::Gauge::new(
            "fjord_node_cpu_cores",
            "CPU cores this node process used over the last second",
        )
        .expect("metric");
        // The name is fixed and registered once per registry, so this cannot fail.
        registry
            .register(Box::new(gauge.clone()))
            .expect("register fjord_node_cpu_cores");
        Self {
            last: None,
            gauge: Some(gauge),
        }
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
        let cores = cores.max(0.0);
        if let Some(g) = &self.gauge {
            g.set(cores);
        }
        cores
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

/// The command line every node binary shares.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// TOML config file.
    #[arg(long, short)]
    pub config: Option<std::path::PathBuf>,
    /// Instead of running a node: tell the node running with this config (on this
    /// machine) to drain, and wait until it holds nothing more or its drain deadline has
    /// passed (a Kubernetes preStop hook).
    #[arg(long)]
    pub drain_and_wait: bool,
    /// Load and check the config (file and environment), say whether it is valid, and
    /// exit without starting.
    #[arg(long)]
    pub check_config: bool,
}

/// The parts of a node binary's `main` that differ between the media and the recording
/// node; [`program_main`] is the rest.
pub struct NodeProgram<C, V, R, A> {
    pub name: &'static str,
    /// Its environment variables' prefix (`FJORD_MEDIA_NODE__`).
    pub env_prefix: &'static str,
    pub validate: V,
    pub listeners: fn(&C) -> [(&'static str, String); 2],
    pub run: R,
    /// Where `--drain-and-wait` finds the running node, and how it asks it to drain.
    pub drain_target: fn(&C) -> DrainTarget,
    pub ask_drain: A,
}

/// The `main` of a node binary (the media and recording nodes give it what differs,
/// [`NodeProgram`]): with `--drain-and-wait`, drain the running node over its own
/// control port and wait; else load and validate config (exit 2
/// naming the key); with `--check-config` stop there; bind the HTTP and gRPC listeners
/// (exit 1 naming the key), install the signal handlers (SIGTERM drains, SIGINT
/// stops), then run.
pub async fn program_main<C, V, R, Fut, E, A, AFut>(
    args: &NodeArgs,
    p: NodeProgram<C, V, R, A>,
) -> std::process::ExitCode
where
    C: serde::de::DeserializeOwned + serde::Serialize + Default + crate::config::Logged,
    V: FnOnce(&C) -> Result<(), crate::config::ConfigError>,
    R: FnOnce(
        C,
        tokio::net::TcpListener,
        tokio::net::TcpListener,
        CancellationToken,
        CancellationToken,
    ) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    A: Fn(tonic::transport::Channel) -> AFut,
    AFut: std::future::Future<Output = Result<(u32, &'static str), tonic::Status>>,
{
    use std::process::ExitCode;
    let NodeProgram {
        name,
        env_prefix,
        validate,
        listeners,
        run,
        drain_target,
        ask_drain,
    } = p;
    if args.drain_and_wait {
        crate::init_tracing(&crate::config::LogConfig::default());
        let config = args.config.as_deref();
        return drain_and_wait(name, env_prefix, config, drain_target, ask_drain).await;
    }
    let loaded = crate::config::load::<C>(args.config.as_deref(), env_prefix)
        .and_then(|c| validate(&c).map(|_| c));
    let cfg: C = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("{name}: the config is valid");
        return ExitCode::SUCCESS;
    }
    crate::init_tracing(cfg.log());
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
            eprintln!("{name}: {}", error_chain(&*e.into()));
            ExitCode::from(1)
        }
    }
}

/// An error and its sources, `outer: inner: innermost`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// A channel to this node's own control gRPC, as a Kubernetes preStop hook in the
/// node's container reaches it: `127.0.0.1` at the port of `grpc_listen`, with mutual
/// TLS from `tls` and the TLS name of `grpc_advertise` (what the certificate names).
pub fn own_control_channel(
    tls: &crate::tls::TlsConfig,
    grpc_listen: &str,
    grpc_advertise: &str,
) -> Result<tonic::transport::Channel, String> {
    let port = grpc_listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .ok_or_else(|| format!("grpc_listen {grpc_listen:?} has no port"))?;
    let material = tls.load("tls").map_err(|e| e.to_string())?;
    let scheme = if material.is_some() { "https" } else { "http" };
    let mut ep = tonic::transport::Endpoint::from_shared(format!("{scheme}://127.0.0.1:{port}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10));
    if let Some(m) = material {
        // The name the certificate carries: grpc_advertise's host (bracketed IPv6 or not).
        let host = grpc_advertise
            .rsplit_once(':')
            .map_or(grpc_advertise, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        ep = ep
            .tls_config(m.client().domain_name(host))
            .map_err(|e| e.to_string())?;
    }
    Ok(ep.connect_lazy())
}

/// What `--drain-and-wait` needs of a node's config.
pub struct DrainTarget {
    pub tls: crate::tls::TlsConfig,
    pub grpc_listen: String,
    pub grpc_advertise: String,
    pub deadline: Duration,
}

/// `--drain-and-wait`: loads the config as the node does, asks the node (on its own
/// control channel) to drain, and waits until it holds nothing more (or has exited,
/// which a drained node does), printing progress; gives up at the drain deadline.
/// `ask` makes one Drain call (draining is idempotent, so it is repeated every 2 s) and
/// answers what is left and what it is.
async fn drain_and_wait<C, A, Fut>(
    name: &str,
    env_prefix: &str,
    config: Option<&std::path::Path>,
    target: fn(&C) -> DrainTarget,
    ask: A,
) -> std::process::ExitCode
where
    C: serde::de::DeserializeOwned + serde::Serialize + Default,
    A: Fn(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = Result<(u32, &'static str), tonic::Status>>,
{
    use std::process::ExitCode;
    let t = match crate::config::load::<C>(config, env_prefix) {
        Ok(c) => target(&c),
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let channel = match own_control_channel(&t.tls, &t.grpc_listen, &t.grpc_advertise) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let until = Instant::now() + t.deadline;
    let mut reached = false;
    loop {
        match ask(channel.clone()).await {
            Ok((0, _)) => {
                eprintln!("{name}: drained: nothing left on the node");
                return ExitCode::SUCCESS;
            }
            Ok((n, what)) => {
                reached = true;
                eprintln!("{name}: draining: {n} {what} left");
            }
            Err(e) if reached => {
                eprintln!(
                    "{name}: drained: the node has stopped answering ({}: {})",
                    e.code(),
                    e.message()
                );
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!(
                    "{name}: cannot ask the node to drain: {}: {}",
                    e.code(),
                    e.message()
                );
                return ExitCode::from(1);
            }
        }
        if Instant::now() >= until {
            eprintln!(
                "{name}: drain deadline of {:?} reached with work left",
                t.deadline
            );
            return ExitCode::SUCCESS;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A node's heartbeat stream.
pub type Heartbeats = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<proto::v1::Heartbeat, tonic::Status>> + Send>,
>;

/// A node's answer to a `Watch` call: a heartbeat naming `node_id` at once, then one
/// every `interval_ms` of the request (clamped to 100 ms – 5 s; 0 means 250 ms), until
/// the caller goes away or `shutdown` (then the stream ends, and the caller learns it at
/// once). A fenced node (`fenced`, see [`Registration::fenced`]) answers as a dead one
/// would: it refuses the call, and a stream it was serving ends with an error.
///
/// [`Registration::fenced`]: crate::registration::Registration::fenced
pub fn watch(
    node_id: String,
    req: tonic::Request<proto::v1::WatchRequest>,
    shutdown: CancellationToken,
    fenced: tokio::sync::watch::Receiver<bool>,
) -> Result<tonic::Response<Heartbeats>, tonic::Status> {
    if *fenced.borrow() {
        return Err(fenced_status());
    }
    Ok(tonic::Response::new(heartbeats(
        node_id,
        req.into_inner().interval_ms,
        shutdown,
        fenced,
    )))
}

fn fenced_status() -> tonic::Status {
    tonic::Status::unavailable("this node is fenced: its lease in etcd was not renewed")
}

fn heartbeats(
    node_id: String,
    interval_ms: u32,
    shutdown: CancellationToken,
    mut fenced: tokio::sync::watch::Receiver<bool>,
) -> Heartbeats {
    let every = match interval_ms {
        0 => Duration::from_millis(250),
        ms => Duration::from_millis(u64::from(ms.clamp(100, 5000))),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Looked at once at the start, then on every change.
        fenced.mark_changed();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tx.closed() => break,
                changed = fenced.changed() => {
                    if changed.is_ok() && !*fenced.borrow_and_update() {
                        continue;
                    }
                    let _ = tx.send(Err(fenced_status())).await;
                    break;
                }
                _ = tick.tick() => {
                    let beat = proto::v1::Heartbeat { node_id: node_id.clone() };
                    if tx.send(Ok(beat)).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn heartbeats_name_the_node_come_every_interval_and_end_with_the_node() {
        use futures::StreamExt;
        let stop = CancellationToken::new();
        let (_fence, fenced) = tokio::sync::watch::channel(false);
        let mut beats = heartbeats("media-oslo-1".into(), 100, stop.clone(), fenced);
        let started = Instant::now();
        let first = beats.next().await.unwrap().unwrap();
        assert_eq!(first.node_id, "media-oslo-1");
        beats.next().await.unwrap().unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(90),
            "then one per interval"
        );
        stop.cancel();
        let end = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(b) = beats.next().await {
                b.unwrap();
            }
        })
        .await;
        assert!(end.is_ok(), "the stream ends when the node stops");
    }

    #[tokio::test]
    async fn a_fenced_node_refuses_the_watch_and_ends_the_streams_it_serves_with_an_error() {
        use futures::StreamExt;
        let stop = CancellationToken::new();
        let (fence, fenced) = tokio::sync::watch::channel(false);
        let req = || tonic::Request::new(proto::v1::WatchRequest { interval_ms: 100 });
        let mut beats = watch("media-oslo-1".into(), req(), stop.clone(), fenced.clone())
            .unwrap()
            .into_inner();
        beats.next().await.unwrap().unwrap();
        fence.send_replace(true);
        let end = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match beats.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return e.code(),
                    None => panic!("the stream ended without saying why"),
                }
            }
        })
        .await
        .expect("the stream ends once the node is fenced");
        assert_eq!(end, tonic::Code::Unavailable);
        let refused = watch("media-oslo-1".into(), req(), stop, fenced)
            .err()
            .unwrap();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(
            refused.message().contains("fenced"),
            "{}",
            refused.message()
        );
    }

    #[test]
    fn parses_proc_stat_with_odd_command_names() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 10";
        assert_eq!(parse_cpu_seconds(line, 100.0), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage", 100.0), None);
        assert!(CpuSampler::process_cpu_seconds().is_some());
    }
}
