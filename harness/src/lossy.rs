//! A UDP relay for tests that degrades the path back to the clients on purpose: clients
//! talk to `front`, which relays to `target` from one upstream socket per client. On the
//! way back it can drop every n-th packet (a deterministic loss rate of 1/n) and limit
//! each client's downlink to a bitrate, queueing up to a delay and dropping beyond it
//! (a drop-tail bottleneck, the way a congested access link behaves).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the path towards each client does to packets.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Drop every n-th packet (0: none).
    pub drop_every: u64,
    /// The downlink's capacity in bit/s (None: unlimited).
    pub rate_bps: Option<u64>,
    /// The most a packet may wait in the bottleneck's queue before it is dropped.
    pub max_queue: Duration,
}

impl Link {
    pub fn lossy(drop_every: u64) -> Self {
        Self {
            drop_every,
            rate_bps: None,
            max_queue: Duration::ZERO,
        }
    }

    pub fn limited(rate_bps: u64) -> Self {
        Self {
            drop_every: 0,
            rate_bps: Some(rate_bps),
            max_queue: Duration::from_millis(200),
        }
    }
}

pub struct LossyProxy {
    pub front: SocketAddr,
    /// Packets towards clients dropped by loss or by a full queue.
    pub dropped: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    /// Relays to `target`, dropping every `drop_every`-th packet towards clients.
    pub async fn start(target: SocketAddr, drop_every: u64) -> std::io::Result<Self> {
        Self::with_link(target, Link::lossy(drop_every)).await
    }

    /// Relays to `target` through `link` towards clients.
    pub async fn with_link(target: SocketAddr, link: Link) -> std::io::Result<Self> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(relay(front, target, link, dropped.clone()));
        Ok(Self {
            front: addr,
            dropped,
            task,
        })
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(front: Arc<UdpSocket>, target: SocketAddr, link: Link, dropped: Arc<AtomicU64>) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    // Dropped with this future (the proxy aborts it), which aborts the relays back too.
    let mut tasks = tokio::task::JoinSet::new();
    let counter = Arc::new(AtomicU64::new(0));
    let mut buf = vec![0u8; 2048];
    while let Ok((n, client)) = front.recv_from(&mut buf).await {
        let up = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let Ok(u) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                let u = Arc::new(u);
                upstreams.insert(client, u.clone());
                let (tx, rx) = mpsc::unbounded_channel();
                tasks.spawn(downlink(
                    u.clone(),
                    link,
                    counter.clone(),
                    dropped.clone(),
                    tx,
                ));
                tasks.spawn(deliver(front.clone(), client, rx));
                u
            }
        };
        let _ = up.send_to(&buf[..n], target).await;
    }
}

/// Receives what the target sends one client, drops what the link loses and stamps the
/// rest with the time it leaves the bottleneck.
async fn downlink(
    up: Arc<UdpSocket>,
    link: Link,
    counter: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<(Instant, Vec<u8>)>,
) {
    let mut b = vec![0u8; 2048];
    // When the bottleneck has sent everything queued so far.
    let mut free_at = Instant::now();
    while let Ok((n, _)) = up.recv_from(&mut b).await {
        if link.drop_every > 0
            && counter.fetch_add(1, Ordering::Relaxed) % link.drop_every == link.drop_every - 1
        {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let now = Instant::now();
        let leaves = match link.rate_bps {
            None => now,
            Some(rate) => {
                let start = free_at.max(now);
                if start - now > link.max_queue {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                free_at = start + Duration::from_secs_f64(n as f64 * 8.0 / rate as f64);
                free_at
            }
        };
        if tx.send((leaves, b[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// Sends the packets to the client when they leave the bottleneck, in order.
async fn deliver(
    front: Arc<UdpSocket>,
    client: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
) {
    while let Some((at, packet)) = rx.recv().await {
        tokio::time::sleep_until(at).await;
        let _ = front.send_to(&packet, client).await;
    }
}
