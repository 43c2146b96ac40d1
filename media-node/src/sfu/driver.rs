//! The thin async shell around [`Sfu`]: owns the one UDP socket, takes commands from
//! signaling sessions, sends datagrams and routes signaling messages back to sessions.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{PeerKey, Sfu, SfuCommand, SfuOutput, SignalOut};

enum DriverCommand {
    Register {
        key: PeerKey,
        tx: mpsc::UnboundedSender<SignalOut>,
    },
    Sfu(SfuCommand),
}

/// Cheap, cloneable handle that signaling sessions use to talk to the SFU.
#[derive(Clone)]
pub struct SfuHandle {
    tx: mpsc::UnboundedSender<DriverCommand>,
    next_key: std::sync::Arc<AtomicU64>,
}

impl SfuHandle {
    /// Registers a new session; its signaling messages arrive on the returned receiver.
    pub fn register(&self) -> (PeerKey, mpsc::UnboundedReceiver<SignalOut>) {
        let key = PeerKey(self.next_key.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.tx.send(DriverCommand::Register { key, tx });
        (key, rx)
    }
    pub fn send(&self, cmd: SfuCommand) {
        let _ = self.tx.send(DriverCommand::Sfu(cmd));
    }
}

/// Counters the driver keeps for `/metrics`.
#[derive(Clone)]
pub struct DriverMetrics {
    pub datagrams_in: prometheus::IntCounter,
    pub datagrams_out: prometheus::IntCounter,
    pub bytes_in: prometheus::IntCounter,
    pub bytes_out: prometheus::IntCounter,
    pub unknown_datagrams: prometheus::IntCounter,
}

/// Starts the SFU on `socket`, advertising `advertised` as the host candidate.
pub fn spawn(
    socket: UdpSocket,
    advertised: SocketAddr,
    metrics: DriverMetrics,
    shutdown: CancellationToken,
) -> (SfuHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = SfuHandle {
        tx,
        next_key: std::sync::Arc::new(AtomicU64::new(1)),
    };
    let task = tokio::spawn(run(socket, Sfu::new(advertised), rx, metrics, shutdown));
    (handle, task)
}

async fn run(
    socket: UdpSocket,
    mut sfu: Sfu,
    mut rx: mpsc::UnboundedReceiver<DriverCommand>,
    m: DriverMetrics,
    shutdown: CancellationToken,
) {
    let mut sessions: HashMap<PeerKey, mpsc::UnboundedSender<SignalOut>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = loop {
            match sfu.poll_output(Instant::now()) {
                SfuOutput::Transmit {
                    destination,
                    contents,
                    ..
                } => {
                    m.datagrams_out.inc();
                    m.bytes_out.inc_by(contents.len() as u64);
                    if let Err(e) = socket.send_to(&contents, destination).await {
                        tracing::debug!(%destination, error = %e, "UDP send failed");
                    }
                }
                SfuOutput::Signal { key, msg } => {
                    let closed = matches!(msg, SignalOut::Closed(_));
                    if let Some(tx) = sessions.get(&key) {
                        let _ = tx.send(msg);
                    }
                    if closed {
                        sessions.remove(&key);
                    }
                }
                SfuOutput::Timeout(t) => break t,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    m.datagrams_in.inc();
                    m.bytes_in.inc_by(n as u64);
                    if !sfu.handle_datagram(Instant::now(), source, &buf[..n]) {
                        m.unknown_datagrams.inc();
                    }
                }
                Err(e) => tracing::debug!(error = %e, "UDP receive failed"),
            },
            cmd = rx.recv() => match cmd {
                Some(DriverCommand::Register { key, tx }) => { sessions.insert(key, tx); }
                Some(DriverCommand::Sfu(c)) => {
                    if let SfuCommand::Leave { key } = &c {
                        sessions.remove(key);
                    }
                    sfu.handle_command(Instant::now(), c);
                }
                None => return,
            },
            _ = tokio::time::sleep_until(deadline.into()) => sfu.handle_timeout(Instant::now()),
        }
    }
}
