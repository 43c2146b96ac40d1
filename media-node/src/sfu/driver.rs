//! The thin async shell around [`Sfu`]: owns the one UDP socket, takes commands from
//! signaling sessions, sends datagrams and routes signaling messages back to sessions.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{PeerKey, Sfu, SfuCommand, SfuOutput, SfuStats, SignalOut};
use crate::room::{RoomEvent, Rooms};

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
    stats: tokio::sync::watch::Receiver<SfuStats>,
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
    /// The SFU's totals, refreshed every second.
    pub fn stats(&self) -> SfuStats {
        *self.stats.borrow()
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
    pub nacks_received: prometheus::IntCounter,
    pub nacks_sent: prometheus::IntCounter,
    pub plis_received: prometheus::IntCounter,
    pub firs_received: prometheus::IntCounter,
    pub tracks: prometheus::IntGauge,
    pub bitrate_in: prometheus::IntGauge,
    pub bitrate_out: prometheus::IntGauge,
    pub rtt: prometheus::Gauge,
    pub loss: prometheus::Gauge,
}

impl DriverMetrics {
    fn update(&self, prev: &SfuStats, now: &SfuStats) {
        self.nacks_received
            .inc_by(now.nacks_received.saturating_sub(prev.nacks_received));
        self.nacks_sent
            .inc_by(now.nacks_sent.saturating_sub(prev.nacks_sent));
        self.plis_received
            .inc_by(now.plis_received.saturating_sub(prev.plis_received));
        self.firs_received
            .inc_by(now.firs_received.saturating_sub(prev.firs_received));
        self.tracks.set(i64::from(now.tracks_in));
        self.bitrate_in.set(now.bitrate_in_bps as i64);
        self.bitrate_out.set(now.bitrate_out_bps as i64);
        self.rtt.set(now.rtt_seconds);
        self.loss.set(now.egress_loss);
    }
}

/// Starts the SFU on `socket`, advertising `advertised` as the host candidate.
pub fn spawn(
    socket: UdpSocket,
    advertised: SocketAddr,
    rooms: std::sync::Arc<Rooms>,
    metrics: DriverMetrics,
    shutdown: CancellationToken,
) -> (SfuHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stats_tx, stats) = tokio::sync::watch::channel(SfuStats::default());
    let handle = SfuHandle {
        tx,
        next_key: std::sync::Arc::new(AtomicU64::new(1)),
        stats,
    };
    let task = tokio::spawn(run(
        socket,
        Sfu::new(advertised),
        rx,
        rooms,
        metrics,
        stats_tx,
        shutdown,
    ));
    (handle, task)
}

async fn run(
    socket: UdpSocket,
    mut sfu: Sfu,
    mut rx: mpsc::UnboundedReceiver<DriverCommand>,
    rooms: std::sync::Arc<Rooms>,
    m: DriverMetrics,
    stats_tx: tokio::sync::watch::Sender<SfuStats>,
    shutdown: CancellationToken,
) {
    let mut sessions: HashMap<PeerKey, mpsc::UnboundedSender<SignalOut>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut last_stats = SfuStats::default();
    let mut next_stats = Instant::now();
    loop {
        if Instant::now() >= next_stats {
            let now = sfu.stats();
            m.update(&last_stats, &now);
            last_stats = now;
            stats_tx.send_replace(now);
            next_stats = Instant::now() + std::time::Duration::from_secs(1);
        }
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
                SfuOutput::ActiveSpeaker {
                    meeting,
                    participant,
                } => {
                    rooms.publish(
                        &meeting,
                        RoomEvent::ActiveSpeaker {
                            participant_id: participant.to_string(),
                        },
                    );
                }
                SfuOutput::Timeout(t) => break t.min(next_stats),
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
