//! Making a meeting's link to a peer node: the connection to it (dialled once per node
//! pair, or accepted), the hello that opens the meeting's control stream, and the checks
//! before a link runs — the peer's certificate against the id it claims, the meeting's
//! placements and its residency pin against the peer's region.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::ids::{MeetingId, NodeId};
use prost::Message;
use proto::v1::relay_control::Msg;
use proto::v1::{MediaNodeRecord, RelayHello};
use tokio_util::sync::CancellationToken;

use super::adapter::run_link;
use super::conn::PeerConn;
use super::convert::control;
use super::{LinkError, Mesh};

use crate::store::{RETRY_FIRST, back_off};

/// How long an accepted link waits for its dialler to appear in our placements.
const PEER_GRACE: Duration = Duration::from_secs(1);
/// A link that stayed up this long is dialled again after the first pause, not the last.
const LINK_STABLE: Duration = Duration::from_secs(10);

impl Mesh {
    /// The connection to `peer`, dialled (at the address it registered) if there is none
    /// alive.
    async fn connection(&self, peer: &NodeId) -> Result<Arc<PeerConn>, LinkError> {
        let live = |conns: &HashMap<NodeId, Arc<PeerConn>>| {
            conns
                .get(peer)
                .filter(|c| c.connection.close_reason().is_none())
                .cloned()
        };
        if let Some(c) = live(&*self.conns.lock().await) {
            return Ok(c);
        }
        // Read outside the lock, which every dial of every meeting takes.
        let record = self.node_record(peer).await?;
        let mut conns = self.conns.lock().await;
        if let Some(c) = live(&conns) {
            return Ok(c);
        }
        let addr = common::config::socket_addr("relay_addr", &record.relay_addr)?;
        let client = self.client.as_ref().ok_or(LinkError::NoRelay)?;
        let connection = client.connect(addr, peer.as_str())?.await?;
        tracing::info!(%peer, %addr, "relay connection to media node up");
        let c = PeerConn::start(peer.clone(), connection, self.metrics.clone());
        let _ = c.region.set(record.region);
        conns.insert(peer.clone(), c.clone());
        Ok(c)
    }

    async fn node_record(&self, id: &NodeId) -> Result<MediaNodeRecord, LinkError> {
        let mut etcd = self.etcd.client().await.ok_or(LinkError::NoEtcd)?;
        let key = self.keyspace.media_node(id);
        let r = etcd.get(key.as_str(), None).await?;
        let kv = r
            .kvs()
            .first()
            .ok_or_else(|| LinkError::NotRegistered(id.clone()))?;
        MediaNodeRecord::decode(kv.value()).map_err(|e| LinkError::Corrupt(key, e))
    }

    /// Err when `meeting` is pinned to a region and the peer at the other end of `conn`
    /// is outside it. Neither is read per link where known: the pin is what the
    /// controller said when it prepared the meeting here, the peer's region is read once
    /// per connection, and only for a pinned meeting.
    async fn check_residency(&self, meeting: &MeetingId, conn: &PeerConn) -> Result<(), LinkError> {
        let said = self
            .meetings
            .lock()
            .expect("meetings")
            .get(meeting)
            .and_then(|f| f.residency.clone());
        let residency = match said {
            Some(residency) => residency,
            None => {
                self.store
                    .meeting(meeting)
                    .await?
                    .ok_or_else(|| LinkError::NoMeeting(meeting.clone()))?
                    .residency
            }
        };
        let Some(pin) = residency else {
            return Ok(());
        };
        let region = conn
            .region
            .get_or_try_init(|| async {
                Ok::<_, LinkError>(self.node_record(&conn.peer).await?.region)
            })
            .await?;
        if pin != *region {
            return Err(LinkError::Residency {
                meeting: meeting.clone(),
                pin,
                peer: conn.peer.to_string(),
                region: region.clone(),
            });
        }
        Ok(())
    }
}

/// Keeps a link to `peer` for `meeting` up until `stop`, dialling again with backoff.
pub(super) async fn dial_loop(
    mesh: Arc<Mesh>,
    meeting: MeetingId,
    peer: NodeId,
    stop: CancellationToken,
) {
    let mut delay = RETRY_FIRST;
    while !stop.is_cancelled() {
        let started = tokio::time::Instant::now();
        match dial_once(&mesh, &meeting, &peer, &stop).await {
            Ok(()) => tracing::info!(%meeting, %peer, "relay link ended"),
            Err(e) => {
                tracing::warn!(%meeting, %peer, error = %e, "relay link to media node failed")
            }
        }
        if started.elapsed() > LINK_STABLE {
            delay = RETRY_FIRST;
        }
        if !back_off(&stop, &mut delay).await {
            return;
        }
    }
}

async fn dial_once(
    mesh: &Arc<Mesh>,
    meeting: &MeetingId,
    peer: &NodeId,
    stop: &CancellationToken,
) -> Result<(), LinkError> {
    let conn = mesh.connection(peer).await?;
    mesh.check_residency(meeting, &conn).await?;
    let hello = control(Msg::Hello(RelayHello {
        node_id: mesh.id.to_string(),
        meeting_id: meeting.to_string(),
        sink_only: false,
    }));
    let (writer, reader) = relay::open(&conn.connection, &hello).await?;
    run_link(mesh, &conn, meeting, peer, writer, reader, stop).await
}

/// Takes a connection another media node dialled (its first control stream is the
/// hello `hello`), and serves every meeting it opens a stream for.
pub(super) async fn serve_connection(mesh: Arc<Mesh>, link: relay::Link, hello: RelayHello) {
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
    let conn = PeerConn::start(peer.clone(), link.connection.clone(), mesh.metrics.clone());
    mesh.conns.lock().await.insert(peer.clone(), conn.clone());
    tracing::info!(%peer, "relay connection from media node up");
    let (mut writer, mut reader) = (link.writer, link.reader);
    let mut hello = hello;
    loop {
        let n = mesh.clone();
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

/// A meeting link another node dialled: checked, then run like our own.
async fn accepted(
    mesh: Arc<Mesh>,
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
    if !mesh.hosts_meeting(&meeting) {
        return refused(format!(
            "{peer} asked for meeting {meeting}, not hosted here"
        ));
    }
    // The dialler saw the placement that names us both; our watch may see it a moment
    // later. Waiting for it here costs less than the dialler's backoff.
    let until = tokio::time::Instant::now() + PEER_GRACE;
    let stop = loop {
        if let Some(stop) = mesh.accept_link(&meeting, &peer) {
            break stop;
        }
        if tokio::time::Instant::now() >= until {
            return refused(format!(
                "{peer} is not in the placements of meeting {meeting} (yet)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    mesh.check_residency(&meeting, &conn).await?;
    run_link(&mesh, &conn, &meeting, &peer, writer, reader, &stop).await
}
