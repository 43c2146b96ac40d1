//! Network partitions between one process and etcd, on loopback: the process reaches
//! every etcd member through its own [`Gate`] (a TCP relay in the harness), and cutting
//! the gate cuts that process off from etcd, and only from etcd: its clients, its peers
//! and the controllers still reach it.
//!
//! A cut gate behaves like a link that drops every packet, not like one that refuses
//! them: bytes in flight stay where they are (the TCP connections stay open, as they do
//! when a cable is pulled), and new connections are accepted but get no further. So the
//! process notices the way it would in a real partition, through its own request
//! deadlines and HTTP/2 keep-alives, never through a reset. When the gate heals, held
//! bytes flow on (as TCP retransmission would deliver them).
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct Gate {
    cut: watch::Sender<bool>,
    /// What the process is given instead of the etcd members' client URLs, in order.
    pub endpoints: Vec<String>,
    stop: CancellationToken,
}

impl Gate {
    /// A gate in front of each of `upstreams` (open).
    pub fn start(upstreams: &[SocketAddr]) -> anyhow::Result<Self> {
        let (cut, _) = watch::channel(false);
        let stop = CancellationToken::new();
        let mut endpoints = Vec::new();
        for &up in upstreams {
            let port = crate::free_port();
            let std = std::net::TcpListener::bind(("127.0.0.1", port))?;
            std.set_nonblocking(true)?;
            let listener = TcpListener::from_std(std)?;
            endpoints.push(format!("http://127.0.0.1:{port}"));
            tokio::spawn(accept(listener, up, cut.subscribe(), stop.clone()));
        }
        Ok(Self {
            cut,
            endpoints,
            stop,
        })
    }

    /// Cuts the process off from etcd.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets the process reach etcd again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    up: SocketAddr,
    cut: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((down, _)) = conn else { continue };
        let (cut, stop) = (cut.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = relay(down, up, cut) => {}
            }
        });
    }
}

/// Waits while the gate is cut.
async fn open(cut: &mut watch::Receiver<bool>) {
    // An error means the gate is gone: the connection ends with the harness.
    let _ = cut.wait_for(|c| !*c).await;
}

async fn relay(down: TcpStream, up: SocketAddr, mut cut: watch::Receiver<bool>) {
    open(&mut cut).await;
    let Ok(upstream) = TcpStream::connect(up).await else {
        return;
    };
    let _ = (down.set_nodelay(true), upstream.set_nodelay(true));
    let (dr, dw) = down.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::select! {
        _ = pipe(dr, uw, cut.clone()) => {}
        _ = pipe(ur, dw, cut) => {}
    }
}

/// Copies one direction, holding what it read while the gate is cut.
async fn pipe(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        open(&mut cut).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        open(&mut cut).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
