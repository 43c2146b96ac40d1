//! A UDP relay for tests that loses packets on purpose: clients talk to `front`, which
//! relays to `target` from one upstream socket per client, and drops every n-th packet
//! on the way back to the clients (a deterministic loss rate of 1/n).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;

pub struct LossyProxy {
    pub front: SocketAddr,
    pub dropped: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    /// Relays to `target`, dropping every `drop_every`-th packet towards clients.
    pub async fn start(target: SocketAddr, drop_every: u64) -> std::io::Result<Self> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(relay(front, target, drop_every.max(1), dropped.clone()));
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

async fn relay(
    front: Arc<UdpSocket>,
    target: SocketAddr,
    drop_every: u64,
    dropped: Arc<AtomicU64>,
) {
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
                let (u2, f2, c2, d2) = (u.clone(), front.clone(), counter.clone(), dropped.clone());
                tasks.spawn(async move {
                    let mut b = vec![0u8; 2048];
                    while let Ok((n, _)) = u2.recv_from(&mut b).await {
                        if c2.fetch_add(1, Ordering::Relaxed) % drop_every == drop_every - 1 {
                            d2.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let _ = f2.send_to(&b[..n], client).await;
                    }
                });
                u
            }
        };
        let _ = up.send_to(&buf[..n], target).await;
    }
}
