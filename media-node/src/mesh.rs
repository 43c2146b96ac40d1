//! Cascading (DESIGN §4 step 4, §6): one meeting across media nodes. Every node a
//! meeting is placed on links to every other one over the QUIC relay, and each shows its
//! own participants' tracks, names, mute state and chat to the others, which show them
//! to their participants as if they were local.
//!
//! - **Who is in the mesh.** Each node follows the placements of the meetings prepared
//!   on it in etcd (`/meetings/{m}/placement/…`, one watch per meeting): every other
//!   node named there is a peer. Membership comes from the cluster state rather than
//!   from the controller because the placements are already the one truth every
//!   controller replica writes through a transaction, a node restarted or re-placed is
//!   seen without the controller replaying anything, and a controller outage does not
//!   stop links from healing.
//! - **Who dials.** The node whose id sorts first dials; the other accepts. Both check
//!   the peer against the placements, its certificate against the id it claims, and the
//!   meeting's residency pin against the peer's region.
//! - **One connection per node pair**, shared by every meeting the two have in common:
//!   one control stream per meeting (hello first), media as datagrams whose track ids
//!   are unique per connection and direction ([`PeerConn`]).
//! - **Failure.** A stream or connection that fails (idle for [`relay::IDLE_TIMEOUT`])
//!   ends the meeting's link: the SFU drops the far node's tracks, the room its
//!   participants. The dialling side dials again with backoff while the peer stays in
//!   the placements; a peer that leaves them is unlinked.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ids::{MeetingId, NodeId, ParticipantId};
use common::keyspace::Keyspace;
use common::token::Role;
use etcd_client::{GetOptions, WatchOptions};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use prost::Message;
use proto::v1::relay_control::Msg;
use proto::v1::{
    AnnounceTrack, KeyframeRequest, LayerRequest, MediaNodeRecord, MeetingRecord, ParticipantGone,
    PlacementRecord, RelayControl, RelayHello, RemoteBoardClear, RemoteBoardOp, RemoteBoardUndo,
    RemoteChat, RemoteParticipant, RemoteReaction, RemoveTrack, TrackKind, Unsubscribe,
};
use relay::Codec;

use crate::board::BoardOp;
use str0m::media::MediaKind;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Node;
use crate::room::{Participant, ServerMsg};
use crate::sfu::driver::LinkMedia;
use crate::sfu::{RelayEvent, SfuCommand};
use signaling::limits::{MAX_CHAT_CHARS, REACTION_EMOJI, bounded_name};

/// The first pause before dialling a peer again; it doubles up to [`REDIAL_MAX`].
const REDIAL_FIRST: Duration = Duration::from_millis(200);
const REDIAL_MAX: Duration = Duration::from_secs(5);
/// How long an accepted link waits for its dialler to appear in our placements.
const PEER_GRACE: Duration = Duration::from_secs(1);

/// Why a relay link to another media node could not be made or ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("no etcd connection (the node is shutting down)")]
    NoEtcd,
    #[error("media node {0} is not registered")]
    NotRegistered(NodeId),
    #[error("meeting {0} does not exist")]
    NoMeeting(MeetingId),
    #[error("{0} in etcd does not decode: {1}")]
    Corrupt(String, prost::DecodeError),
    #[error("meeting {meeting} is pinned to {pin}: no link to {peer} in {region}")]
    Residency {
        meeting: MeetingId,
        pin: String,
        peer: String,
        region: String,
    },
    #[error("no relay here (no TLS)")]
    NoRelay,
    #[error(transparent)]
    Config(#[from] common::config::ConfigError),
    #[error("relay connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("relay connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
    #[error("link refused: {0}")]
    Refused(String),
    #[error("placement watch: {0}")]
    Watch(String),
    #[error("the link fell {0} room events behind")]
    Lagged(u64),
}

/// Prometheus series of the relay links between media nodes.
#[derive(Clone)]
pub struct MeshMetrics {
    /// Meeting links up, by peer node.
    pub links: IntGaugeVec,
    /// Datagrams and bytes by peer node and direction (`in`, `out`).
    pub packets: IntCounterVec,
    pub bytes: IntCounterVec,
    /// Datagrams for a link that could not take them (its buffers were full).
    pub dropped: IntCounter,
    pub rtt: prometheus::GaugeVec,
    /// QUIC packets the connection to a peer lost.
    pub lost: IntCounterVec,
    /// Tracks of participants on other nodes that this node receives.
    pub remote_tracks: IntGauge,
}

impl MeshMetrics {
    pub fn new(r: &Registry) -> Self {
        let m = Self {
            links: IntGaugeVec::new(
                Opts::new(
                    "fjord_relay_links",
                    "Relay links to other media nodes that are up, one per meeting in common",
                ),
                &["peer"],
            )
            .expect("metric"),
            packets: IntCounterVec::new(
                Opts::new(
                    "fjord_relay_link_packets_total",
                    "RTP packets over relay links to other media nodes",
                ),
                &["peer", "direction"],
            )
            .expect("metric"),
            bytes: IntCounterVec::new(
                Opts::new(
                    "fjord_relay_link_bytes_total",
                    "Datagram bytes over relay links to other media nodes",
                ),
                &["peer", "direction"],
            )
            .expect("metric"),
            dropped: IntCounter::new(
                "fjord_relay_link_dropped_total",
                "RTP packets for other media nodes dropped because the link could not take them",
            )
            .expect("metric"),
            rtt: prometheus::GaugeVec::new(
                Opts::new(
                    "fjord_relay_link_rtt_seconds",
                    "Round-trip time of the relay connection to a media node",
                ),
                &["peer"],
            )
            .expect("metric"),
            lost: IntCounterVec::new(
                Opts::new(
                    "fjord_relay_link_lost_packets_total",
                    "QUIC packets lost on the relay connection to a media node",
                ),
                &["peer"],
            )
            .expect("metric"),
            remote_tracks: IntGauge::new(
                "fjord_relay_remote_tracks",
                "Tracks of participants on other media nodes received here",
            )
            .expect("metric"),
        };
        for c in [
            Box::new(m.links.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.packets.clone()),
            Box::new(m.bytes.clone()),
            Box::new(m.dropped.clone()),
            Box::new(m.rtt.clone()),
            Box::new(m.lost.clone()),
            Box::new(m.remote_tracks.clone()),
        ] {
            r.register(c).expect("register");
        }
        m
    }
}

/// The media node's side of the mesh: which meetings it follows, and its connections to
/// other media nodes.
pub struct Mesh {
    keyspace: Keyspace,
    /// The endpoint we dial from; None without TLS (then there is no relay at all).
    client: Option<quinn::Endpoint>,
    conns: tokio::sync::Mutex<HashMap<NodeId, Arc<PeerConn>>>,
    meetings: Mutex<HashMap<MeetingId, Followed>>,
    pub metrics: MeshMetrics,
}

/// A meeting we follow: the peers its placements name, and the links to them.
struct Followed {
    stop: CancellationToken,
    peers: HashSet<NodeId>,
    links: HashMap<NodeId, CancellationToken>,
}

impl Mesh {
    pub fn new(keyspace: Keyspace, client: Option<quinn::Endpoint>, metrics: MeshMetrics) -> Self {
        Self {
            keyspace,
            client,
            conns: tokio::sync::Mutex::new(HashMap::new()),
            meetings: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Starts following `meeting`'s placements (idempotent): links to the other nodes
    /// it is placed on come and go with them.
    pub fn follow(node: &Arc<Node>, meeting: &MeetingId) {
        if node.mesh.client.is_none() {
            return;
        }
        let stop = {
            let mut meetings = node.mesh.meetings.lock().expect("meetings");
            if meetings.contains_key(meeting) {
                return;
            }
            let stop = node.shutdown.child_token();
            meetings.insert(
                meeting.clone(),
                Followed {
                    stop: stop.clone(),
                    peers: HashSet::new(),
                    links: HashMap::new(),
                },
            );
            stop
        };
        tokio::spawn(watch_placements(node.clone(), meeting.clone(), stop));
    }

    /// Stops following `meeting`: its links end.
    pub fn unfollow(&self, meeting: &MeetingId) {
        if let Some(f) = self.meetings.lock().expect("meetings").remove(meeting) {
            f.stop.cancel();
        }
    }

    /// The placements of `meeting` now name `peers` (besides us): links to peers that
    /// left end, and we dial the new ones whose id sorts after ours.
    fn set_peers(node: &Arc<Node>, meeting: &MeetingId, peers: HashSet<NodeId>) {
        let mut meetings = node.mesh.meetings.lock().expect("meetings");
        let Some(f) = meetings.get_mut(meeting) else {
            return;
        };
        f.links.retain(|peer, stop| {
            let keep = peers.contains(peer) && !stop.is_cancelled();
            if !keep {
                tracing::info!(%meeting, %peer, "node left the meeting's placements: unlinking");
                stop.cancel();
            }
            keep
        });
        for peer in &peers {
            if node.id < *peer && !f.links.contains_key(peer) {
                let stop = f.stop.child_token();
                f.links.insert(peer.clone(), stop.clone());
                tokio::spawn(dial_loop(node.clone(), meeting.clone(), peer.clone(), stop));
            }
        }
        f.peers = peers;
    }

    /// Registers a link `peer` dialled for `meeting`, if the peer is in its placements:
    /// the token ends it when the peer leaves them (or a newer link replaces it).
    fn accept_link(&self, meeting: &MeetingId, peer: &NodeId) -> Option<CancellationToken> {
        let mut meetings = self.meetings.lock().expect("meetings");
        let f = meetings.get_mut(meeting)?;
        if !f.peers.contains(peer) {
            return None;
        }
        let stop = f.stop.child_token();
        if let Some(old) = f.links.insert(peer.clone(), stop.clone()) {
            old.cancel();
        }
        Some(stop)
    }

    /// The connection to `peer` (registered as `record`), dialled if there is none alive.
    async fn connection(
        &self,
        peer: &NodeId,
        record: &MediaNodeRecord,
    ) -> Result<Arc<PeerConn>, LinkError> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(peer)
            && c.connection.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let addr = common::config::socket_addr("relay_addr", &record.relay_addr)?;
        let client = self.client.as_ref().ok_or(LinkError::NoRelay)?;
        let connection = client.connect(addr, peer.as_str())?.await?;
        tracing::info!(%peer, %addr, "relay connection to media node up");
        let c = PeerConn::start(peer.clone(), connection, self.metrics.clone());
        conns.insert(peer.clone(), c.clone());
        Ok(c)
    }

    /// Takes a connection another media node dialled (its first control stream is the
    /// hello `first`), and serves every meeting it opens a stream for.
    pub async fn serve_connection(node: Arc<Node>, link: relay::Link, hello: RelayHello) {
        let peer = match NodeId::parse(&hello.node_id) {
            Ok(p) if relay::peer_is(&link.connection, p.as_str()) => p,
            _ => {
                tracing::warn!(
                    claimed = hello.node_id,
                    "relay peer's certificate does not name the node it claims to be"
                );
                link.connection
                    .close(2u32.into(), b"certificate does not match the hello");
                return;
            }
        };
        let conn = PeerConn::start(
            peer.clone(),
            link.connection.clone(),
            node.mesh.metrics.clone(),
        );
        node.mesh
            .conns
            .lock()
            .await
            .insert(peer.clone(), conn.clone());
        tracing::info!(%peer, "relay connection from media node up");
        let (mut writer, mut reader) = (link.writer, link.reader);
        let mut hello = hello;
        loop {
            let n = node.clone();
            let c = conn.clone();
            let p = peer.clone();
            tokio::spawn(async move {
                if let Err(e) = accepted(n, c, p.clone(), hello, writer, reader).await {
                    tracing::info!(peer = %p, error = %e, "relay link refused or ended");
                }
            });
            match relay::accept_stream(&conn.connection).await {
                Ok((w, r, first)) => {
                    let Some(Msg::Hello(h)) = first.msg else {
                        break;
                    };
                    (writer, reader, hello) = (w, r, h);
                }
                Err(e) => {
                    tracing::info!(%peer, error = %e, "relay connection from media node ended");
                    break;
                }
            }
        }
    }

    async fn node_record(&self, node: &Node, id: &NodeId) -> Result<MediaNodeRecord, LinkError> {
        let mut etcd = node.etcd_client().await.ok_or(LinkError::NoEtcd)?;
        let key = self.keyspace.media_node(id);
        let r = etcd.get(key.as_str(), None).await?;
        let kv = r
            .kvs()
            .first()
            .ok_or_else(|| LinkError::NotRegistered(id.clone()))?;
        MediaNodeRecord::decode(kv.value()).map_err(|e| LinkError::Corrupt(key, e))
    }

    /// Err when `meeting` is pinned to a region and `peer` is outside it.
    async fn check_residency(
        &self,
        node: &Node,
        meeting: &MeetingId,
        peer: &MediaNodeRecord,
    ) -> Result<(), LinkError> {
        let mut etcd = node.etcd_client().await.ok_or(LinkError::NoEtcd)?;
        let key = self.keyspace.meeting(meeting);
        let r = etcd.get(key.as_str(), None).await?;
        let Some(kv) = r.kvs().first() else {
            return Err(LinkError::NoMeeting(meeting.clone()));
        };
        let record = MeetingRecord::decode(kv.value()).map_err(|e| LinkError::Corrupt(key, e))?;
        if !record.residency.is_empty() && record.residency != peer.region {
            return Err(LinkError::Residency {
                meeting: meeting.clone(),
                pin: record.residency,
                peer: peer.node_id.clone(),
                region: peer.region.clone(),
            });
        }
        Ok(())
    }
}

/// Follows the placements of `meeting` until `stop`: a full read, then a watch; both
/// again after a lost watch.
async fn watch_placements(node: Arc<Node>, meeting: MeetingId, stop: CancellationToken) {
    let prefix = node.mesh.keyspace.placements_of(&meeting);
    let mut delay = REDIAL_FIRST;
    while !stop.is_cancelled() {
        // A watch that was up and then broke is followed again at once (after the first
        // pause): only failures to set it up back off, so that a node whose watch breaks
        // now and then never sleeps through a placement change for long.
        let mut watching = false;
        let result = async {
            let mut etcd = node.etcd_client().await.ok_or(LinkError::NoEtcd)?;
            let r = etcd
                .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
                .await?;
            let revision = r.header().map_or(0, |h| h.revision());
            let mut placed: HashMap<String, NodeId> = HashMap::new();
            for kv in r.kvs() {
                if let Some(n) = placement_node(kv.value()) {
                    placed.insert(String::from_utf8_lossy(kv.key()).into_owned(), n);
                }
            }
            Mesh::set_peers(&node, &meeting, peers_of(&placed, &node.id));
            let mut stream = etcd
                .watch(
                    prefix.as_str(),
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(revision + 1),
                    ),
                )
                .await?;
            watching = true;
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    m = stream.message() => m?,
                };
                let Some(resp) = msg else {
                    return Err(LinkError::Watch("the watch ended".into()));
                };
                if resp.canceled() {
                    return Err(LinkError::Watch(format!(
                        "cancelled: {}",
                        resp.cancel_reason()
                    )));
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    match (ev.event_type(), placement_node(kv.value())) {
                        (etcd_client::EventType::Put, Some(n)) => {
                            placed.insert(key, n);
                        }
                        _ => {
                            placed.remove(&key);
                        }
                    }
                }
                Mesh::set_peers(&node, &meeting, peers_of(&placed, &node.id));
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%meeting, error = %e, "following the meeting's placements failed; retrying");
            if watching {
                delay = REDIAL_FIRST;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(REDIAL_MAX);
        } else {
            delay = REDIAL_FIRST;
        }
    }
}

fn placement_node(value: &[u8]) -> Option<NodeId> {
    let p = PlacementRecord::decode(value).ok()?;
    NodeId::parse(&p.node_id).ok()
}

fn peers_of(placed: &HashMap<String, NodeId>, me: &NodeId) -> HashSet<NodeId> {
    placed.values().filter(|n| *n != me).cloned().collect()
}

/// Keeps a link to `peer` for `meeting` up until `stop`, dialling again with backoff.
async fn dial_loop(node: Arc<Node>, meeting: MeetingId, peer: NodeId, stop: CancellationToken) {
    let mut delay = REDIAL_FIRST;
    while !stop.is_cancelled() {
        let started = tokio::time::Instant::now();
        match dial_once(&node, &meeting, &peer, &stop).await {
            Ok(()) => tracing::info!(%meeting, %peer, "relay link ended"),
            Err(e) => {
                tracing::warn!(%meeting, %peer, error = %e, "relay link to media node failed")
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            delay = REDIAL_FIRST;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(REDIAL_MAX);
    }
}

async fn dial_once(
    node: &Arc<Node>,
    meeting: &MeetingId,
    peer: &NodeId,
    stop: &CancellationToken,
) -> Result<(), LinkError> {
    let record = node.mesh.node_record(node, peer).await?;
    node.mesh.check_residency(node, meeting, &record).await?;
    let conn = node.mesh.connection(peer, &record).await?;
    let hello = RelayControl {
        msg: Some(Msg::Hello(RelayHello {
            node_id: node.id.to_string(),
            meeting_id: meeting.to_string(),
            sink_only: false,
        })),
    };
    let (writer, reader) = relay::open(&conn.connection, &hello).await?;
    run_link(node, &conn, meeting, peer, writer, reader, stop).await
}

/// A meeting link another node dialled: checked, then run like our own.
async fn accepted(
    node: Arc<Node>,
    conn: Arc<PeerConn>,
    peer: NodeId,
    hello: RelayHello,
    writer: relay::ControlWriter,
    reader: relay::ControlReader,
) -> Result<(), LinkError> {
    let refused = |why: String| Err(LinkError::Refused(why));
    let Ok(meeting) = MeetingId::parse(&hello.meeting_id) else {
        return refused(format!("{peer} sent a malformed meeting id"));
    };
    if hello.node_id != peer.as_str() {
        return refused(format!(
            "hello from {} on {peer}'s connection",
            hello.node_id
        ));
    }
    if !node.hosts(&meeting) {
        return refused(format!(
            "{peer} asked for meeting {meeting}, not hosted here"
        ));
    }
    // The dialler saw the placement that names us both; our watch may see it a moment
    // later. Waiting for it here costs less than the dialler's backoff.
    let until = tokio::time::Instant::now() + PEER_GRACE;
    let stop = loop {
        if let Some(stop) = node.mesh.accept_link(&meeting, &peer) {
            break stop;
        }
        if tokio::time::Instant::now() >= until {
            return refused(format!(
                "{peer} is not in the placements of meeting {meeting} (yet)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let record = node.mesh.node_record(&node, &peer).await?;
    node.mesh.check_residency(&node, &meeting, &record).await?;
    run_link(&node, &conn, &meeting, &peer, writer, reader, &stop).await
}

/// One connection to another media node: its datagrams go to the meeting links that
/// announced their track ids; our own track ids on it are unique per connection.
pub struct PeerConn {
    peer: NodeId,
    connection: quinn::Connection,
    routes: mpsc::UnboundedSender<Route>,
    next_track: AtomicU32,
    sent: (IntCounter, IntCounter),
}

enum Route {
    Add(u32, LinkMedia),
    Remove(u32),
}

impl PeerConn {
    fn start(peer: NodeId, connection: quinn::Connection, m: MeshMetrics) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let p = peer.as_str();
        let conn = Arc::new(Self {
            peer: peer.clone(),
            connection: connection.clone(),
            routes: tx,
            next_track: AtomicU32::new(1),
            sent: (
                m.packets.with_label_values(&[p, "out"]),
                m.bytes.with_label_values(&[p, "out"]),
            ),
        });
        tokio::spawn(read_datagrams(peer, connection, rx, m));
        conn
    }

    /// Sends one RTP packet of our track `track_id` (layer `layer`); false when the
    /// connection is gone.
    fn send(&self, track_id: u32, layer: u8, packet: &[u8], dropped: &IntCounter) -> bool {
        match relay::send_media(
            &self.connection,
            relay::wire::media_id(track_id, layer),
            packet,
        ) {
            Ok(()) => {
                self.sent.0.inc();
                self.sent.1.inc_by(4 + packet.len() as u64);
                true
            }
            Err(relay::RelayError::Datagram(quinn::SendDatagramError::ConnectionLost(_))) => false,
            Err(_) => {
                dropped.inc();
                true
            }
        }
    }
}

/// Hands each datagram of a connection to the link of its track, and keeps the
/// connection's RTT and loss in the metrics.
async fn read_datagrams(
    peer: NodeId,
    connection: quinn::Connection,
    mut routes: mpsc::UnboundedReceiver<Route>,
    m: MeshMetrics,
) {
    let p = peer.as_str();
    let (packets, bytes) = (
        m.packets.with_label_values(&[p, "in"]),
        m.bytes.with_label_values(&[p, "in"]),
    );
    let (rtt, lost) = (
        m.rtt.with_label_values(&[p]),
        m.lost.with_label_values(&[p]),
    );
    let mut lost_before = 0;
    let mut table: HashMap<u32, LinkMedia> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            d = connection.read_datagram() => {
                let Ok(d) = d else { break };
                packets.inc();
                bytes.inc_by(d.len() as u64);
                let Ok((id, _)) = relay::wire::decode_datagram(&d) else { continue };
                let (track, layer) = relay::wire::split_media_id(id);
                if let Some(link) = table.get(&track)
                    && !link.packet(track, layer, d.slice(4..))
                {
                    table.remove(&track);
                }
            }
            r = routes.recv() => match r {
                Some(Route::Add(track, link)) => { table.insert(track, link); }
                Some(Route::Remove(track)) => { table.remove(&track); }
                None => {}
            },
            _ = tick.tick() => {
                let s = connection.stats();
                rtt.set(s.path.rtt.as_secs_f64());
                lost.inc_by(s.path.lost_packets.saturating_sub(lost_before));
                lost_before = s.path.lost_packets;
            }
        }
    }
    let _ = m.rtt.remove_label_values(&[p]);
}

fn participant_msg(p: &Participant) -> RelayControl {
    RelayControl {
        msg: Some(Msg::Participant(RemoteParticipant {
            participant_id: p.participant_id.clone(),
            name: p.name.clone(),
            role: p.role.as_str().to_owned(),
            audio_muted: p.audio_muted,
            video_muted: p.video_muted,
            hand_raised_unix_ms: p.hand_raised_unix_ms.unwrap_or(0),
            waiting: p.waiting,
            joined_unix_ms: p.joined_unix_ms,
            local_recording: p.local_recording,
        })),
    }
}

fn control(msg: Msg) -> RelayControl {
    RelayControl { msg: Some(msg) }
}

/// Runs one meeting's link to `peer` until either side ends it or `stop`: our tracks
/// and participants go out, theirs come in and are shown here as local ones.
async fn run_link(
    node: &Arc<Node>,
    conn: &Arc<PeerConn>,
    meeting: &MeetingId,
    peer: &NodeId,
    mut writer: relay::ControlWriter,
    mut reader: relay::ControlReader,
    stop: &CancellationToken,
) -> Result<(), LinkError> {
    let (session, mut events) = node.sfu.attach_link(meeting);
    let origin = session.key.0;
    let media = session.media();
    let metrics = &node.mesh.metrics;
    let links_up = metrics.links.with_label_values(&[peer.as_str()]);
    links_up.inc();
    tracing::info!(%meeting, %peer, "relay link up");
    // Our participants as told to the far node, by id.
    let (locals, drawn, mut room) = node.rooms.watch(meeting);
    let mut told: HashMap<String, Participant> = HashMap::new();
    // Our tracks: the SFU's track id -> the connection's, and back.
    let mut ours: HashMap<u32, u32> = HashMap::new();
    let mut by_conn: HashMap<u32, u32> = HashMap::new();
    // Their tracks we route datagrams of.
    let mut theirs: HashSet<u32> = HashSet::new();
    let result: Result<(), LinkError> = async {
        for p in locals {
            writer.send(&participant_msg(&p)).await?;
            told.insert(p.participant_id.clone(), p);
        }
        for op in drawn {
            writer.send(&control(Msg::BoardOp(board_op_msg(op)))).await?;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                e = events.recv() => match e {
                    None => return Ok(()),
                    Some(RelayEvent::Media { track_id, layer, packet }) => {
                        if let Some(id) = ours.get(&track_id)
                            && !conn.send(*id, layer, &packet, &metrics.dropped)
                        {
                            return Err(LinkError::Connection(quinn::ConnectionError::LocallyClosed));
                        }
                    }
                    Some(RelayEvent::Announce { track_id, participant, name, kind, codec, clock_rate, layers }) => {
                        let id = conn.next_track.fetch_add(1, Ordering::Relaxed) & relay::wire::MAX_TRACK_ID;
                        ours.insert(track_id, id);
                        by_conn.insert(id, track_id);
                        writer.send(&control(Msg::Announce(AnnounceTrack {
                            track_id: id,
                            participant_id: participant.to_string(),
                            participant_name: name,
                            kind: if kind == MediaKind::Audio { TrackKind::Audio } else { TrackKind::Video } as i32,
                            codec: codec.name().into(),
                            clock_rate,
                            layers: u32::from(layers),
                            payload_type: u32::from(codec.payload_type()),
                        }))).await?;
                    }
                    Some(RelayEvent::Remove { track_id }) => {
                        if let Some(id) = ours.remove(&track_id) {
                            by_conn.remove(&id);
                            writer.send(&control(Msg::Remove(RemoveTrack { track_id: id }))).await?;
                        }
                    }
                    Some(RelayEvent::Keyframe { track_id, layer }) => {
                        writer.send(&control(Msg::Keyframe(KeyframeRequest { track_id, layer: u32::from(layer) }))).await?;
                    }
                    Some(RelayEvent::Layers { track_id, mask }) => {
                        let msg = if mask == 0 {
                            Msg::Unsubscribe(Unsubscribe { track_id })
                        } else {
                            Msg::Layer(LayerRequest { track_id, layer: 0, layers: u32::from(mask) })
                        };
                        writer.send(&control(msg)).await?;
                    }
                },
                m = reader.recv() => {
                    let Some(m) = m? else { return Ok(()) };
                    let Some(msg) = m.msg else { continue };
                    handle_far(node, &session, &media, conn, meeting, origin, &by_conn, &mut theirs, msg);
                }
                ev = room.recv() => match ev {
                    Ok(ServerMsg::ParticipantJoined { participant }) => {
                        if node.rooms.is_local(meeting, &participant.participant_id) {
                            writer.send(&participant_msg(&participant)).await?;
                            told.insert(participant.participant_id.clone(), participant);
                        }
                    }
                    Ok(ServerMsg::ParticipantLeft { participant_id }) => {
                        if told.remove(&participant_id).is_some() {
                            writer.send(&control(Msg::ParticipantLeft(ParticipantGone { participant_id }))).await?;
                        }
                    }
                    Ok(ServerMsg::ParticipantUpdated { participant }) => {
                        if let Some(p) = told.get_mut(&participant.participant_id) {
                            *p = participant;
                            writer.send(&participant_msg(p)).await?;
                        }
                    }
                    Ok(ServerMsg::Mute { participant_id, audio_muted, video_muted }) => {
                        if let Some(p) = told.get_mut(&participant_id) {
                            (p.audio_muted, p.video_muted) = (audio_muted, video_muted);
                            writer.send(&participant_msg(p)).await?;
                        }
                    }
                    Ok(ServerMsg::Chat { from, name, text, unix_ms }) => {
                        if told.contains_key(&from) {
                            writer.send(&control(Msg::Chat(RemoteChat { from, name, text, unix_ms }))).await?;
                        }
                    }
                    Ok(ServerMsg::Reaction { from, name, emoji, unix_ms }) => {
                        if told.contains_key(&from) {
                            writer.send(&control(Msg::Reaction(RemoteReaction { from, name, emoji, unix_ms }))).await?;
                        }
                    }
                    Ok(ServerMsg::BoardDraw(op)) => {
                        if told.contains_key(&op.author) {
                            writer.send(&control(Msg::BoardOp(board_op_msg(op)))).await?;
                        }
                    }
                    Ok(ServerMsg::BoardUndo { author, stroke_id }) => {
                        if told.contains_key(&author) {
                            writer.send(&control(Msg::BoardUndo(RemoteBoardUndo { author, stroke_id }))).await?;
                        }
                    }
                    Ok(ServerMsg::BoardClear { by, by_name }) => {
                        if told.contains_key(&by) {
                            writer.send(&control(Msg::BoardClear(RemoteBoardClear { by, by_name }))).await?;
                        }
                    }
                    // The rest is not a room event, or each node works it out itself.
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        return Err(LinkError::Lagged(n));
                    }
                    Err(_) => return Ok(()),
                },
            }
        }
    }
    .await;
    metrics.remote_tracks.sub(theirs.len() as i64);
    for id in theirs {
        let _ = conn.routes.send(Route::Remove(id));
    }
    node.rooms.remote_forget(meeting, origin);
    links_up.dec();
    drop(session);
    tracing::info!(%meeting, peer = %conn.peer, "relay link down");
    result
}

/// One control message from the far node of a meeting link.
#[allow(clippy::too_many_arguments)]
fn handle_far(
    node: &Node,
    session: &crate::sfu::driver::LinkSession,
    media: &LinkMedia,
    conn: &PeerConn,
    meeting: &MeetingId,
    origin: u64,
    by_conn: &HashMap<u32, u32>,
    theirs: &mut HashSet<u32>,
    msg: Msg,
) {
    let link = session.key;
    let subscribe = |track_id: u32, mask: u32| {
        if let Some(&track_id) = by_conn.get(&track_id) {
            session.send(SfuCommand::LinkSubscribe {
                link,
                track_id,
                mask: (mask & 0xff) as u8,
            });
        }
    };
    match msg {
        Msg::Announce(a) => {
            let (Some(codec), Ok(participant)) = (
                Codec::parse(&a.codec),
                ParticipantId::parse(&a.participant_id),
            ) else {
                tracing::debug!(
                    codec = a.codec,
                    "far track ignored: codec or participant id not ours"
                );
                return;
            };
            let kind = match TrackKind::try_from(a.kind) {
                Ok(TrackKind::Audio) => MediaKind::Audio,
                Ok(TrackKind::Video) => MediaKind::Video,
                _ => return,
            };
            if a.track_id > relay::wire::MAX_TRACK_ID
                || !(1_000..=192_000).contains(&a.clock_rate)
                || !theirs.insert(a.track_id)
            {
                return;
            }
            let _ = conn.routes.send(Route::Add(a.track_id, media.clone()));
            node.mesh.metrics.remote_tracks.inc();
            session.send(SfuCommand::RemoteTrack {
                link,
                meeting: meeting.clone(),
                track_id: a.track_id,
                participant,
                name: bounded_name(a.participant_name),
                kind,
                codec,
                clock_rate: a.clock_rate,
                layers: a.layers.min(3) as u8,
            });
        }
        Msg::Remove(r) => {
            if theirs.remove(&r.track_id) {
                let _ = conn.routes.send(Route::Remove(r.track_id));
                node.mesh.metrics.remote_tracks.dec();
                session.send(SfuCommand::RemoteTrackEnded {
                    link,
                    track_id: r.track_id,
                });
            }
        }
        Msg::Subscribe(s) => subscribe(s.track_id, if s.layers == 0 { 0b111 } else { s.layers }),
        Msg::Layer(l) => subscribe(l.track_id, l.layers),
        Msg::Unsubscribe(u) => subscribe(u.track_id, 0),
        Msg::Keyframe(k) => {
            if let Some(&track_id) = by_conn.get(&k.track_id) {
                session.send(SfuCommand::LinkKeyframe {
                    link,
                    track_id,
                    layer: k.layer.min(2) as u8,
                });
            }
        }
        Msg::Participant(p) => node.rooms.remote_upsert(
            meeting,
            origin,
            Participant {
                participant_id: p.participant_id,
                name: bounded_name(p.name),
                role: Role::parse(&p.role).unwrap_or_default(),
                audio_muted: p.audio_muted,
                video_muted: p.video_muted,
                hand_raised_unix_ms: (p.hand_raised_unix_ms > 0).then_some(p.hand_raised_unix_ms),
                waiting: p.waiting,
                joined_unix_ms: p.joined_unix_ms,
                local_recording: p.local_recording,
            },
        ),
        Msg::ParticipantLeft(p) => node.rooms.remote_leave(meeting, origin, &p.participant_id),
        Msg::Chat(c) => {
            let ok = !c.text.trim().is_empty() && c.text.chars().count() <= MAX_CHAT_CHARS;
            if ok && !node.rooms.is_local(meeting, &c.from) {
                node.rooms.publish(
                    meeting,
                    ServerMsg::Chat {
                        from: c.from,
                        name: bounded_name(c.name),
                        text: c.text,
                        unix_ms: c.unix_ms,
                    },
                );
            }
        }
        Msg::Reaction(r) => {
            let ok = REACTION_EMOJI.contains(&r.emoji.as_str());
            if ok && !node.rooms.is_local(meeting, &r.from) {
                node.rooms.publish(
                    meeting,
                    ServerMsg::Reaction {
                        from: r.from,
                        name: bounded_name(r.name),
                        emoji: r.emoji,
                        unix_ms: r.unix_ms,
                    },
                );
            }
        }
        Msg::BoardOp(o) => {
            let op = BoardOp {
                op_id: o.op_id,
                author: o.author,
                stroke_id: o.stroke_id,
                tool: o.tool,
                color: o.color,
                width: o.width,
                points: o.points,
                text: o.text,
            };
            if op.check().is_ok() && !node.rooms.is_local(meeting, &op.author) {
                // A full board here refuses it as it would our own participants'.
                let _ = node.rooms.board_draw(meeting, op, false);
            }
        }
        Msg::BoardUndo(u) => {
            if !node.rooms.is_local(meeting, &u.author) {
                node.rooms.board_undo(meeting, &u.author, u.stroke_id);
            }
        }
        Msg::BoardClear(c) => {
            if !node.rooms.is_local(meeting, &c.by) {
                node.rooms
                    .board_clear(meeting, &c.by, &bounded_name(c.by_name));
            }
        }
        Msg::Hello(_) => {}
    }
}

fn board_op_msg(op: BoardOp) -> RemoteBoardOp {
    RemoteBoardOp {
        op_id: op.op_id,
        author: op.author,
        stroke_id: op.stroke_id,
        tool: op.tool,
        color: op.color,
        width: op.width,
        points: op.points,
        text: op.text,
    }
}
