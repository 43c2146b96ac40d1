//! The thin async shell around [`Sfu`]: one UDP socket for every peer, meetings sharded
//! across tasks (and so across cores), signaling messages routed back to sessions.
//!
//! ```text
//!                    ┌────────────► shard 0: Sfu (meetings whose id hashes to 0) ──┐
//!  UDP socket ─ demux┤                                                             ├─ send_to (same socket)
//!                    └────────────► shard N-1: Sfu                                  ─┘
//! ```
//!
//! A meeting lives in one shard (forwarding never crosses shards). The demux task reads
//! every datagram and picks the shard without asking anyone: a STUN binding request names
//! our ICE ufrag, whose first two hex digits are the shard (see [`Sfu::new`]), and teaches
//! the demux the sender's address; every other datagram goes by its source address. The
//! demux owns that table alone, so the per-packet path takes no lock; a full shard queue
//! drops the datagram (counted) rather than stalling the others. RTP from relay links to
//! other media nodes enters its shard through a bounded queue too ([`LinkMedia`]).
mod demux;
mod handle;
mod metrics;
mod outbox;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use common::ids::{MeetingId, ParticipantId};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use self::demux::stun_shard;
pub use self::handle::{
    Handed, LinkMedia, LinkSession, SfuHandle, SfuSession, ShardReport, SinkSession, shard_of,
};
pub use self::metrics::{DriverMetrics, set_gauges};

use self::demux::{Inbound, demux};
use self::handle::{DriverCommand, LinkRtp};
use self::metrics::{Tally, update_metrics};
use self::outbox::Outbox;
use super::{
    LinkKey, PeerKey, RelayEvent, Sfu, SfuCommand, SfuOutput, SfuStats, SignalOut, SinkKey,
};

/// Datagrams queued per shard before the demux starts dropping them.
const SHARD_QUEUE: usize = 4096;
/// Packets from relay links queued per shard before they are dropped (a second or so of
/// a busy meeting's remote tracks; at most ~5 MB of datagrams held per shard).
pub const LINK_QUEUE: usize = 4096;

/// Datagrams (or relayed packets) fed to the core, at most, before it is drained: every
/// one already queued when the first is taken, so that a subscriber which several of
/// them reach is driven once for all of them (its packets are then sent in one drive).
const DATAGRAM_BATCH: usize = 32;

/// Hands `first` to `feed`, then every item already queued on `rx`, up to
/// [`DATAGRAM_BATCH`] in all.
fn with_queued<T>(first: T, rx: &mut mpsc::Receiver<T>, mut feed: impl FnMut(T)) {
    feed(first);
    for _ in 1..DATAGRAM_BATCH {
        match rx.try_recv() {
            Ok(item) => feed(item),
            Err(_) => return,
        }
    }
}

/// Where the SFU's active-speaker changes go (the meeting's room, in the node).
pub type SpeakerOut = Arc<dyn Fn(&MeetingId, &ParticipantId) + Send + Sync>;

/// How the SFU runs (from the node's configuration).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Shards, each a task with its own core (clamped to 1–255).
    pub shards: usize,
    /// Cap each subscriber's simulcast layer by its bandwidth estimate.
    pub bandwidth_cap: bool,
    /// Send runs of equal-size datagrams to one peer as UDP GSO sends, where the kernel
    /// has them.
    pub udp_gso: bool,
}

/// Starts the SFU on `socket`, advertising `advertised` as the host candidate; active-
/// speaker changes go to `speakers`.
pub fn spawn(
    socket: UdpSocket,
    advertised: SocketAddr,
    settings: Settings,
    speakers: SpeakerOut,
    metrics: DriverMetrics,
    shutdown: CancellationToken,
) -> (SfuHandle, tokio::task::JoinHandle<()>) {
    let Settings {
        shards,
        bandwidth_cap,
        udp_gso,
    } = settings;
    let shards = shards.clamp(1, 255);
    let socket = Arc::new(socket);
    let gso = udp_gso && outbox::gso_supported(&socket);
    match (udp_gso, gso) {
        (true, true) => tracing::info!("media socket: runs of datagrams go as UDP GSO sends"),
        (true, false) => tracing::warn!(
            "media socket: the kernel has no UDP GSO (UDP_SEGMENT); datagrams go in sendmmsg batches"
        ),
        (false, _) => tracing::info!("media socket: UDP GSO off by configuration"),
    }
    let mut commands = Vec::new();
    let mut stats = Vec::new();
    let mut datagrams = Vec::new();
    let mut link_media = Vec::new();
    for i in 0..shards {
        let (tx, rx) = mpsc::unbounded_channel();
        let (dgram_tx, dgram_rx) = mpsc::channel(SHARD_QUEUE);
        let (media_tx, media_rx) = mpsc::channel(LINK_QUEUE);
        link_media.push(media_tx);
        let (stats_tx, stats_rx) = watch::channel(ShardReport::default());
        commands.push(tx);
        stats.push(stats_rx);
        datagrams.push(dgram_tx);
        tokio::spawn(run_shard(
            socket.clone(),
            {
                let mut sfu = Sfu::new(advertised, i as u8);
                sfu.set_bandwidth_cap(bandwidth_cap);
                sfu
            },
            gso,
            rx,
            dgram_rx,
            media_rx,
            speakers.clone(),
            metrics.clone(),
            stats_tx,
            shutdown.clone(),
        ));
    }
    let handle = SfuHandle {
        shards: commands.into(),
        link_media: link_media.into(),
        next_key: Arc::new(AtomicU64::new(1)),
        stats: stats.into(),
    };
    let task = tokio::spawn(demux(socket, datagrams, metrics, shutdown));
    (handle, task)
}

#[allow(clippy::too_many_arguments)]
async fn run_shard(
    socket: Arc<UdpSocket>,
    mut sfu: Sfu,
    gso: bool,
    mut rx: mpsc::UnboundedReceiver<DriverCommand>,
    mut datagrams: mpsc::Receiver<Inbound>,
    mut link_media: mpsc::Receiver<LinkRtp>,
    speakers: SpeakerOut,
    m: DriverMetrics,
    stats_tx: watch::Sender<ShardReport>,
    shutdown: CancellationToken,
) {
    let mut sessions: HashMap<PeerKey, mpsc::UnboundedSender<SignalOut>> = HashMap::new();
    let mut sinks: HashMap<SinkKey, mpsc::UnboundedSender<RelayEvent>> = HashMap::new();
    let mut links: HashMap<LinkKey, mpsc::UnboundedSender<RelayEvent>> = HashMap::new();
    let mut last_stats = SfuStats::default();
    let mut next_stats = Instant::now();
    let mut out = Tally::default();
    // Observed here, added to the shared histogram once a second.
    let latency = m.forward_latency.local();
    // The arrival of the oldest datagram the next drain finishes with.
    let mut arrived: Option<Instant> = None;
    let mut outbox = Outbox::new(gso);
    loop {
        if Instant::now() >= next_stats {
            // The core reads no clock: it is told the wall clock (to the microsecond:
            // relay hops are timed with it) once a second.
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            sfu.set_wall_clock(Instant::now(), unix.as_micros() as u64);
            let now = sfu.stats();
            update_metrics(&m, &last_stats, &now);
            out.flush_out(&m);
            m.gso_datagrams_out
                .inc_by(std::mem::take(&mut outbox.gso_datagrams));
            latency.flush();
            last_stats = now;
            stats_tx.send_replace(ShardReport {
                stats: now,
                quality: Arc::new(sfu.quality()),
            });
            next_stats = Instant::now() + Duration::from_secs(1);
        }
        let deadline = loop {
            match sfu.poll_output(Instant::now()) {
                SfuOutput::Transmit {
                    destination,
                    contents,
                    ..
                } => {
                    out.packets += 1;
                    out.bytes += contents.len() as u64;
                    outbox.push(&socket, destination, contents).await;
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
                } => speakers(&meeting, &participant),
                SfuOutput::Sink { key, event } => {
                    if let Some(tx) = sinks.get(&key) {
                        let _ = tx.send(event);
                    }
                }
                SfuOutput::Link { link, event } => {
                    if let Some(tx) = links.get(&link) {
                        let _ = tx.send(event);
                    }
                }
                SfuOutput::Timeout(t) => break t.min(next_stats),
            }
        };
        outbox.flush(&socket).await;
        for hop in sfu.take_hop_latency() {
            m.hop_latency.observe(hop);
        }
        if let Some(at) = arrived.take() {
            latency.observe(at.elapsed().as_secs_f64());
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            d = datagrams.recv() => match d {
                Some(d) => {
                    arrived.get_or_insert(d.at);
                    with_queued(d, &mut datagrams, |d| {
                        if !sfu.handle_datagram(d.at, d.source, &d.data) {
                            // Routed here by address, but no peer of ours wants it (it left).
                            out.unknown += 1;
                        }
                    });
                }
                None => return,
            },
            p = link_media.recv() => match p {
                // As datagrams, so that relayed media gets the same share of a busy
                // shard's turns.
                Some(p) => with_queued(p, &mut link_media, |LinkRtp { link, track_id, layer, rtp }| {
                    sfu.handle_command(
                        Instant::now(),
                        SfuCommand::RemotePacket { link, track_id, layer, rtp },
                    );
                }),
                None => return,
            },
            cmd = rx.recv() => match cmd {
                Some(DriverCommand::Register { key, tx }) => { sessions.insert(key, tx); }
                Some(DriverCommand::RegisterSink { key, meeting, tx }) => {
                    sinks.insert(key, tx);
                    sfu.handle_command(Instant::now(), SfuCommand::SinkAttach { key, meeting });
                }
                Some(DriverCommand::RegisterLink { link, meeting, tx }) => {
                    links.insert(link, tx);
                    sfu.handle_command(Instant::now(), SfuCommand::LinkAttach { link, meeting });
                }
                Some(DriverCommand::Sfu(c)) => {
                    if let SfuCommand::Leave { key } = &c {
                        sessions.remove(key);
                    }
                    if let SfuCommand::LinkDown { link } = &c {
                        links.remove(link);
                    }
                    if let SfuCommand::SinkDetach { key } = &c {
                        sinks.remove(key);
                    }
                    sfu.handle_command(Instant::now(), c);
                }
                None => return,
            },
            _ = tokio::time::sleep_until(deadline.into()) => sfu.handle_timeout(Instant::now()),
        }
    }
}
