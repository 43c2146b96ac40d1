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
//!
//! By concern: `watch` follows the placements, `link` makes a meeting's link (the
//! connection, the hello, the checks), `conn` is the connection to a peer node and its
//! datagrams, `adapter` runs a link between its control stream and the room and the SFU,
//! and `convert` turns relay messages into ours and back (for the relay server's sinks
//! too).
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use common::ids::{MeetingId, NodeId};
use common::keyspace::Keyspace;
use proto::v1::RelayHello;
use tokio_util::sync::CancellationToken;

use crate::room::Rooms;
use crate::sfu::driver::SfuHandle;
use crate::store::{EtcdStore, MeetingStore};

mod adapter;
mod conn;
pub(crate) mod convert;
mod link;
mod metrics;
mod watch;

pub use conn::PeerConn;
pub use metrics::MeshMetrics;

/// Why a relay link to another media node could not be made or ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("no etcd connection (the node is shutting down)")]
    NoEtcd,
    #[error("the meeting store: {0}")]
    Store(#[from] crate::store::StoreError),
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
    #[error("the link fell {0} room events behind")]
    Lagged(u64),
}

/// The media node's side of the mesh: which meetings it follows, and its connections to
/// other media nodes.
pub struct Mesh {
    /// This node.
    id: NodeId,
    keyspace: Keyspace,
    etcd: Arc<EtcdStore>,
    /// Where the placements are followed.
    store: Arc<dyn MeetingStore>,
    /// The meetings placed here (a link only serves those).
    prepared: tokio::sync::watch::Receiver<HashSet<MeetingId>>,
    rooms: Arc<Rooms>,
    sfu: SfuHandle,
    shutdown: CancellationToken,
    /// The endpoint we dial from; None without TLS (then there is no relay at all).
    client: Option<quinn::Endpoint>,
    conns: tokio::sync::Mutex<HashMap<NodeId, Arc<PeerConn>>>,
    meetings: Mutex<HashMap<MeetingId, Followed>>,
    pub metrics: MeshMetrics,
}

/// A meeting we follow: the peers its placements name, and the links to them.
struct Followed {
    stop: CancellationToken,
    /// The region the meeting is pinned to (None inside: not pinned), as the controller
    /// said when it prepared the meeting here; None: not said, read from its record.
    residency: Option<Option<String>>,
    peers: HashSet<NodeId>,
    links: HashMap<NodeId, CancellationToken>,
}

/// What the mesh works with: this node's id, etcd (placements and node records), the
/// meetings placed here, the rooms (whose participants it shows the far nodes and whose
/// far participants it shows ours), the SFU (whose tracks it relays) and the node's end.
pub struct MeshDeps {
    pub id: NodeId,
    pub etcd: Arc<EtcdStore>,
    pub store: Arc<dyn MeetingStore>,
    pub prepared: tokio::sync::watch::Receiver<HashSet<MeetingId>>,
    pub rooms: Arc<Rooms>,
    pub sfu: SfuHandle,
    pub shutdown: CancellationToken,
}

impl Mesh {
    pub fn new(deps: MeshDeps, client: Option<quinn::Endpoint>, metrics: MeshMetrics) -> Self {
        Self {
            keyspace: Keyspace::new(deps.etcd.prefix()),
            id: deps.id,
            etcd: deps.etcd,
            store: deps.store,
            prepared: deps.prepared,
            rooms: deps.rooms,
            sfu: deps.sfu,
            shutdown: deps.shutdown,
            client,
            conns: tokio::sync::Mutex::new(HashMap::new()),
            meetings: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Starts following `meeting`'s placements (idempotent): links to the other nodes
    /// it is placed on come and go with them. `residency`: the region it is pinned to
    /// (None inside: none) if the controller said so.
    pub fn follow(mesh: &Arc<Mesh>, meeting: &MeetingId, residency: Option<Option<String>>) {
        if mesh.client.is_none() {
            return;
        }
        let stop = {
            let mut meetings = mesh.meetings.lock().expect("meetings");
            if let Some(f) = meetings.get_mut(meeting) {
                if residency.is_some() {
                    f.residency = residency;
                }
                return;
            }
            let stop = mesh.shutdown.child_token();
            meetings.insert(
                meeting.clone(),
                Followed {
                    stop: stop.clone(),
                    residency,
                    peers: HashSet::new(),
                    links: HashMap::new(),
                },
            );
            stop
        };
        tokio::spawn(watch::watch_placements(mesh.clone(), meeting.clone(), stop));
    }

    /// Stops following `meeting`: its links end.
    pub fn unfollow(&self, meeting: &MeetingId) {
        if let Some(f) = self.meetings.lock().expect("meetings").remove(meeting) {
            f.stop.cancel();
        }
    }

    /// The placements of `meeting` now name `peers` (besides us): links to peers that
    /// left end, and we dial the new ones whose id sorts after ours.
    fn set_peers(mesh: &Arc<Mesh>, meeting: &MeetingId, peers: HashSet<NodeId>) {
        let mut meetings = mesh.meetings.lock().expect("meetings");
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
            if mesh.id < *peer && !f.links.contains_key(peer) {
                let stop = f.stop.child_token();
                f.links.insert(peer.clone(), stop.clone());
                tokio::spawn(link::dial_loop(
                    mesh.clone(),
                    meeting.clone(),
                    peer.clone(),
                    stop,
                ));
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

    /// Whether the controller placed `meeting` here (and has not closed it).
    fn hosts_meeting(&self, meeting: &MeetingId) -> bool {
        self.prepared.borrow().contains(meeting)
    }

    /// Takes a connection another media node dialled (its first control stream is the
    /// hello `hello`), and serves every meeting it opens a stream for.
    pub async fn serve_connection(mesh: Arc<Mesh>, connection: relay::Link, hello: RelayHello) {
        link::serve_connection(mesh, connection, hello).await;
    }
}
