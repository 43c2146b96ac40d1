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
//! drops the datagram (counted) rather than stalling the others.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::ids::MeetingId;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{
    LinkKey, PeerKey, PeerQuality, RelayEvent, Sfu, SfuCommand, SfuOutput, SfuStats, SignalOut,
    SinkKey,
};
use crate::room::{Rooms, ServerMsg};

enum DriverCommand {
    Register {
        key: PeerKey,
        tx: mpsc::UnboundedSender<SignalOut>,
    },
    RegisterSink {
        key: SinkKey,
        meeting: MeetingId,
        tx: mpsc::UnboundedSender<RelayEvent>,
    },
    RegisterLink {
        link: LinkKey,
        meeting: MeetingId,
        tx: mpsc::UnboundedSender<RelayEvent>,
    },
    Sfu(SfuCommand),
}

/// A relay link's line to the shard of its meeting (one meeting on a connection to
/// another media node); the link goes down when it is dropped.
pub struct LinkSession {
    pub key: LinkKey,
    tx: mpsc::UnboundedSender<DriverCommand>,
}

impl LinkSession {
    pub fn send(&self, cmd: SfuCommand) {
        let _ = self.tx.send(DriverCommand::Sfu(cmd));
    }

    /// A cloneable sender of this link's media, for the connection's datagram reader.
    pub fn media(&self) -> LinkMedia {
        LinkMedia {
            key: self.key,
            tx: self.tx.clone(),
        }
    }
}

impl Drop for LinkSession {
    fn drop(&mut self) {
        let _ = self
            .tx
            .send(DriverCommand::Sfu(SfuCommand::LinkDown { link: self.key }));
    }
}

/// Feeds one link's incoming RTP into its shard.
#[derive(Clone)]
pub struct LinkMedia {
    key: LinkKey,
    tx: mpsc::UnboundedSender<DriverCommand>,
}

impl LinkMedia {
    /// False once the shard is gone.
    pub fn packet(&self, track_id: u32, layer: u8, rtp: Bytes) -> bool {
        self.tx
            .send(DriverCommand::Sfu(SfuCommand::RemotePacket {
                link: self.key,
                track_id,
                layer,
                rtp,
            }))
            .is_ok()
    }
}

/// A relay sink's line to the shard of its meeting; detaches when dropped.
pub struct SinkSession {
    pub key: SinkKey,
    tx: mpsc::UnboundedSender<DriverCommand>,
}

impl SinkSession {
    pub fn keyframe(&self, track_id: u32) {
        let _ = self.tx.send(DriverCommand::Sfu(SfuCommand::SinkKeyframe {
            key: self.key,
            track_id,
        }));
    }
}

impl Drop for SinkSession {
    fn drop(&mut self) {
        let _ = self
            .tx
            .send(DriverCommand::Sfu(SfuCommand::SinkDetach { key: self.key }));
    }
}

/// A datagram for a shard.
struct Inbound {
    source: SocketAddr,
    at: Instant,
    data: Bytes,
}

/// Datagrams queued per shard before the demux starts dropping them.
const SHARD_QUEUE: usize = 4096;
/// Forget a source address whose STUN checks stopped this long ago.
const ROUTE_IDLE: Duration = Duration::from_secs(60);

/// Cheap, cloneable handle that signaling sessions use to reach the SFU.
#[derive(Clone)]
pub struct SfuHandle {
    shards: Arc<[mpsc::UnboundedSender<DriverCommand>]>,
    next_key: Arc<AtomicU64>,
    stats: Arc<[watch::Receiver<ShardReport>]>,
}

/// What a shard reports once a second: its totals and each peer's quality.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    pub stats: SfuStats,
    pub quality: Arc<Vec<PeerQuality>>,
}

/// One session's line to the shard that hosts its meeting.
pub struct SfuSession {
    pub key: PeerKey,
    tx: mpsc::UnboundedSender<DriverCommand>,
}

impl SfuSession {
    pub fn send(&self, cmd: SfuCommand) {
        let _ = self.tx.send(DriverCommand::Sfu(cmd));
    }
}

/// The shard a meeting lives in: a stable hash of its id.
pub fn shard_of(meeting: &MeetingId, shards: usize) -> usize {
    // FNV-1a: stable across processes and releases, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in meeting.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards as u64) as usize
}

impl SfuHandle {
    /// Registers a new session of `meeting`; its signaling messages arrive on the receiver.
    /// Sends `cmd` to the shard that hosts `meeting`.
    pub fn command(&self, meeting: &MeetingId, cmd: SfuCommand) {
        let _ = self.shards[shard_of(meeting, self.shards.len())].send(DriverCommand::Sfu(cmd));
    }

    pub fn register(
        &self,
        meeting: &MeetingId,
    ) -> (SfuSession, mpsc::UnboundedReceiver<SignalOut>) {
        let key = PeerKey(self.next_key.fetch_add(1, Ordering::Relaxed));
        let tx = self.shards[shard_of(meeting, self.shards.len())].clone();
        let (sig_tx, sig_rx) = mpsc::unbounded_channel();
        let _ = tx.send(DriverCommand::Register { key, tx: sig_tx });
        (SfuSession { key, tx }, sig_rx)
    }

    /// Attaches a relay sink to `meeting`: every track published in it arrives on the
    /// receiver, announced first, as RTP.
    pub fn attach_sink(
        &self,
        meeting: &MeetingId,
    ) -> (SinkSession, mpsc::UnboundedReceiver<RelayEvent>) {
        let key = SinkKey(self.next_key.fetch_add(1, Ordering::Relaxed));
        let tx = self.shards[shard_of(meeting, self.shards.len())].clone();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let _ = tx.send(DriverCommand::RegisterSink {
            key,
            meeting: meeting.clone(),
            tx: ev_tx,
        });
        (SinkSession { key, tx }, ev_rx)
    }

    /// Attaches a relay link to another media node for `meeting`: the meeting's local
    /// tracks are announced on the receiver, and the layers the far node subscribes to
    /// arrive there as RTP; the far node's tracks go in through the session.
    pub fn attach_link(
        &self,
        meeting: &MeetingId,
    ) -> (LinkSession, mpsc::UnboundedReceiver<RelayEvent>) {
        let key = LinkKey(self.next_key.fetch_add(1, Ordering::Relaxed));
        let tx = self.shards[shard_of(meeting, self.shards.len())].clone();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let _ = tx.send(DriverCommand::RegisterLink {
            link: key,
            meeting: meeting.clone(),
            tx: ev_tx,
        });
        (LinkSession { key, tx }, ev_rx)
    }

    /// The SFU's totals over all shards, refreshed every second.
    pub fn stats(&self) -> SfuStats {
        let all: Vec<SfuStats> = self.stats.iter().map(|s| s.borrow().stats).collect();
        SfuStats::merge(&all)
    }

    /// The quality of `meeting`'s peers on this node, as of the last second.
    pub fn quality(&self, meeting: &MeetingId) -> Vec<PeerQuality> {
        self.stats
            .iter()
            .flat_map(|s| {
                s.borrow()
                    .quality
                    .iter()
                    .filter(|q| q.meeting == *meeting)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
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
    pub dropped_datagrams: prometheus::IntCounter,
    pub nacks_received: prometheus::IntCounter,
    pub nacks_sent: prometheus::IntCounter,
    pub plis_received: prometheus::IntCounter,
    pub firs_received: prometheus::IntCounter,
    pub tracks: prometheus::IntGauge,
    pub bitrate_in: prometheus::IntGauge,
    pub bitrate_out: prometheus::IntGauge,
    pub estimate: prometheus::IntGauge,
    pub rtt: prometheus::Gauge,
    pub loss: prometheus::Gauge,
    /// From a packet's arrival at its publisher's node to its copies being written to
    /// our subscribers, for packets of participants on other nodes.
    pub hop_latency: prometheus::Histogram,
    /// From a datagram's arrival (read from the socket) to the end of the drain that sent
    /// what it caused: its copies to every subscriber that the pacer lets go at once.
    pub forward_latency: prometheus::Histogram,
}

/// Per-packet counts kept locally by a task and added to the shared counters once a
/// second, so that tasks do not contend on them per packet.
#[derive(Default)]
struct Tally {
    packets: u64,
    bytes: u64,
    unknown: u64,
    dropped: u64,
}

impl Tally {
    fn flush_in(&mut self, m: &DriverMetrics) {
        let t = std::mem::take(self);
        m.datagrams_in.inc_by(t.packets);
        m.bytes_in.inc_by(t.bytes);
        m.unknown_datagrams.inc_by(t.unknown);
        m.dropped_datagrams.inc_by(t.dropped);
    }

    fn flush_out(&mut self, m: &DriverMetrics) {
        let t = std::mem::take(self);
        m.datagrams_out.inc_by(t.packets);
        m.bytes_out.inc_by(t.bytes);
        m.unknown_datagrams.inc_by(t.unknown);
    }
}

/// Starts the SFU with `shards` shards on `socket`, advertising `advertised` as the host
/// candidate.
pub fn spawn(
    socket: UdpSocket,
    advertised: SocketAddr,
    shards: usize,
    bandwidth_cap: bool,
    rooms: Arc<Rooms>,
    metrics: DriverMetrics,
    shutdown: CancellationToken,
) -> (SfuHandle, tokio::task::JoinHandle<()>) {
    let shards = shards.clamp(1, 255);
    let socket = Arc::new(socket);
    let mut commands = Vec::new();
    let mut stats = Vec::new();
    let mut datagrams = Vec::new();
    for i in 0..shards {
        let (tx, rx) = mpsc::unbounded_channel();
        let (dgram_tx, dgram_rx) = mpsc::channel(SHARD_QUEUE);
        let (stats_tx, stats_rx) = watch::channel(ShardReport::default());
        commands.push(tx);
        stats.push(stats_rx);
        datagrams.push(dgram_tx);
        tokio::spawn(run_shard(
            socket.clone(),
            {
                let mut sfu = Sfu::new(advertised, i as u8);
                sfu.set_bandwidth_cap(bandwidth_cap);
                sfu.set_hop_histogram(metrics.hop_latency.clone());
                sfu
            },
            rx,
            dgram_rx,
            rooms.clone(),
            metrics.clone(),
            stats_tx,
            shutdown.clone(),
        ));
    }
    let handle = SfuHandle {
        shards: commands.into(),
        next_key: Arc::new(AtomicU64::new(1)),
        stats: stats.into(),
    };
    let task = tokio::spawn(demux(socket, datagrams, metrics, shutdown));
    (handle, task)
}

/// The shard a STUN binding request is for, from the first two hex digits of our ufrag
/// in its USERNAME (`ours:theirs`); None if it is not such a request.
pub fn stun_shard(d: &[u8]) -> Option<usize> {
    // STUN: first two bits zero, magic cookie, length a multiple of 4 that fits.
    if d.len() < 20 || d[0] >= 2 || d[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    let attrs = d.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= attrs.len() {
        let kind = u16::from_be_bytes([attrs[at], attrs[at + 1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[at + 2], attrs[at + 3]]));
        let value = attrs.get(at + 4..at + 4 + alen)?;
        if kind == 0x0006 {
            let hex = std::str::from_utf8(value.get(..2)?).ok()?;
            return usize::from_str_radix(hex, 16).ok();
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

async fn demux(
    socket: Arc<UdpSocket>,
    shards: Vec<mpsc::Sender<Inbound>>,
    m: DriverMetrics,
    shutdown: CancellationToken,
) {
    // Source address -> (shard, last STUN seen).
    let mut routes: HashMap<SocketAddr, (usize, Instant)> = HashMap::new();
    // Datagrams are read into one arena and handed out as `Bytes` slices of it; once
    // the shards have dropped them, `reserve` gets the same memory back.
    let mut arena = BytesMut::with_capacity(256 * 1024);
    let mut tally = Tally::default();
    let mut next_flush = Instant::now() + Duration::from_secs(1);
    loop {
        if arena.capacity() - arena.len() < 2048 {
            arena.reserve(256 * 1024);
        }
        let r = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_buf_from(&mut arena) => r,
        };
        let now = Instant::now();
        let (n, source) = match r {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let data = arena.split_to(n).freeze();
        tally.packets += 1;
        tally.bytes += n as u64;
        let shard = match stun_shard(&data) {
            Some(s) if s < shards.len() => {
                routes.insert(source, (s, now));
                Some(s)
            }
            _ => routes.get(&source).map(|r| r.0),
        };
        match shard {
            Some(s) => {
                let msg = Inbound {
                    source,
                    at: now,
                    data,
                };
                if shards[s].try_send(msg).is_err() {
                    tally.dropped += 1;
                }
            }
            None => tally.unknown += 1,
        }
        if now >= next_flush {
            tally.flush_in(&m);
            routes.retain(|_, (_, seen)| now.duration_since(*seen) < ROUTE_IDLE);
            next_flush = now + Duration::from_secs(1);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_shard(
    socket: Arc<UdpSocket>,
    mut sfu: Sfu,
    mut rx: mpsc::UnboundedReceiver<DriverCommand>,
    mut datagrams: mpsc::Receiver<Inbound>,
    rooms: Arc<Rooms>,
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
    let mut outbox = Outbox::new();
    loop {
        if Instant::now() >= next_stats {
            let now = sfu.stats();
            update_metrics(&m, &last_stats, &now);
            out.flush_out(&m);
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
                } => {
                    rooms.publish(
                        &meeting,
                        ServerMsg::ActiveSpeaker {
                            participant_id: participant.to_string(),
                        },
                    );
                }
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
        if let Some(at) = arrived.take() {
            latency.observe(at.elapsed().as_secs_f64());
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            d = datagrams.recv() => match d {
                Some(d) => {
                    arrived.get_or_insert(d.at);
                    if !sfu.handle_datagram(d.at, d.source, &d.data) {
                        // Routed here by address, but no peer of ours wants it (it left).
                        out.unknown += 1;
                    }
                }
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

/// Datagrams on their way out of a shard: queued while the shard's state machine has
/// more, then written with one `sendmmsg` per [`SEND_BATCH`] (a packet's copies for a
/// whole meeting in one system call, not one each).
struct Outbox {
    queue: Vec<(SockaddrStorage, Vec<u8>)>,
}

const SEND_BATCH: usize = 64;

impl Outbox {
    fn new() -> Self {
        Self {
            queue: Vec::with_capacity(SEND_BATCH),
        }
    }

    /// Queues one datagram; a full batch is sent at once.
    async fn push(&mut self, socket: &UdpSocket, to: SocketAddr, contents: Vec<u8>) {
        self.queue.push((SockaddrStorage::from(to), contents));
        if self.queue.len() >= SEND_BATCH {
            self.flush(socket).await;
        }
    }

    /// Sends everything queued. A datagram the kernel refuses (its destination is
    /// unreachable, say) is dropped, as a failed `send_to` would be; the rest go on.
    async fn flush(&mut self, socket: &UdpSocket) {
        let mut sent = 0;
        while sent < self.queue.len() {
            match send_batch(socket, &self.queue[sent..]) {
                Ok(n) => sent += n.max(1),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(destination = ?self.queue[sent].0, error = %e, "UDP send failed");
                    sent += 1;
                }
            }
        }
        self.queue.clear();
    }
}

/// Writes up to [`SEND_BATCH`] of `batch` with one `sendmmsg`: how many went.
fn send_batch(socket: &UdpSocket, batch: &[(SockaddrStorage, Vec<u8>)]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let batch = &batch[..batch.len().min(SEND_BATCH)];
    let slices: Vec<[std::io::IoSlice<'_>; 1]> = batch
        .iter()
        .map(|(_, d)| [std::io::IoSlice::new(d)])
        .collect();
    let addrs: Vec<Option<SockaddrStorage>> = batch.iter().map(|(a, _)| Some(*a)).collect();
    let mut headers = MultiHeaders::preallocate(batch.len(), None);
    socket.try_io(tokio::io::Interest::WRITABLE, || {
        sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            [],
            MsgFlags::empty(),
        )
        .map(|done| done.count())
        .map_err(std::io::Error::from)
    })
}

fn update_metrics(m: &DriverMetrics, prev: &SfuStats, now: &SfuStats) {
    m.nacks_received
        .inc_by(now.nacks_received.saturating_sub(prev.nacks_received));
    m.nacks_sent
        .inc_by(now.nacks_sent.saturating_sub(prev.nacks_sent));
    m.plis_received
        .inc_by(now.plis_received.saturating_sub(prev.plis_received));
    m.firs_received
        .inc_by(now.firs_received.saturating_sub(prev.firs_received));
}

/// Gauges are totals over shards: set from the handle's merged stats.
pub fn set_gauges(m: &DriverMetrics, s: &SfuStats) {
    m.tracks.set(i64::from(s.tracks_in));
    m.bitrate_in.set(s.bitrate_in_bps as i64);
    m.bitrate_out.set(s.bitrate_out_bps as i64);
    m.estimate.set(s.estimate_bps as i64);
    m.rtt.set(s.rtt_seconds);
    m.loss.set(s.egress_loss);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN binding request with USERNAME `user`.
    fn binding(user: &str) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend((user.len() as u16).to_be_bytes());
        attr.extend(user.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut d = vec![0x00, 0x01];
        d.extend((attr.len() as u16).to_be_bytes());
        d.extend([0x21, 0x12, 0xa4, 0x42]);
        d.extend([7u8; 12]);
        d.extend(attr);
        d
    }

    #[test]
    fn stun_binding_requests_name_their_shard_and_garbage_names_none() {
        assert_eq!(stun_shard(&binding("03abcdef:theirs")), Some(3));
        assert_eq!(stun_shard(&binding("1aXYZ:t")), Some(26));
        assert_eq!(stun_shard(&binding("zz:t")), None);
        assert_eq!(stun_shard(&binding("")), None);
        // DTLS and RTP are not STUN.
        assert_eq!(stun_shard(&[22, 254, 253, 0, 0]), None);
        assert_eq!(stun_shard(&[0x80; 40]), None);
        // A length that runs past the end, and random bytes, never panic.
        let mut bad = binding("03abcdef:theirs");
        bad[3] = 0xff;
        assert_eq!(stun_shard(&bad), None);
        let mut x: u32 = 1;
        for len in 0..600 {
            let d: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = stun_shard(&d);
        }
    }

    #[tokio::test]
    async fn an_outbox_sends_every_datagram_to_its_own_destination_in_batches() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut outbox = Outbox::new();
        // More than a batch, alternating between two receivers.
        let n = SEND_BATCH + 10;
        for i in 0..n {
            let to = if i % 2 == 0 { &a } else { &b };
            let to = to.local_addr().unwrap();
            outbox.push(&socket, to, vec![i as u8; 100 + i]).await;
        }
        outbox.flush(&socket).await;
        let mut buf = [0u8; 2048];
        for (r, parity) in [(&a, 0), (&b, 1)] {
            for i in (parity..n).step_by(2) {
                let (len, from) =
                    tokio::time::timeout(Duration::from_secs(2), r.recv_from(&mut buf))
                        .await
                        .expect("every datagram arrives")
                        .unwrap();
                assert_eq!(from, socket.local_addr().unwrap());
                assert_eq!((len, buf[0]), (100 + i, i as u8), "in order, whole");
            }
        }
    }

    #[test]
    fn a_meeting_always_lands_in_the_same_shard() {
        let m = MeetingId::parse("abc-defg-hij").unwrap();
        let s = shard_of(&m, 4);
        assert!(s < 4);
        assert_eq!(s, shard_of(&m, 4));
        assert_eq!(shard_of(&m, 1), 0);
        // Meetings spread over shards.
        let used: std::collections::BTreeSet<usize> = (0..64)
            .map(|i| shard_of(&MeetingId::parse(&format!("m{i}")).unwrap(), 4))
            .collect();
        assert_eq!(used.len(), 4);
    }
}
