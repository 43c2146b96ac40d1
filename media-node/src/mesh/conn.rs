//! One QUIC connection to another media node, shared by every meeting the two have in
//! common: media datagrams out (our track ids on it are unique per connection and
//! direction), and a reader that hands each datagram in to the meeting link that
//! announced its track, keeping the connection's RTT and loss in the metrics.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::ids::NodeId;
use prometheus::IntCounter;
use relay::wire::MediaPacket;
use tokio::sync::mpsc;

use super::MeshMetrics;
use crate::sfu::driver::{Handed, LinkMedia};

/// One connection to another media node: its datagrams go to the meeting links that
/// announced their track ids; our own track ids on it are unique per connection.
pub struct PeerConn {
    pub(super) peer: NodeId,
    pub(super) connection: quinn::Connection,
    /// The peer's region, as it registered it: read at most once per connection.
    pub(super) region: tokio::sync::OnceCell<String>,
    routes: mpsc::UnboundedSender<Route>,
    next_track: AtomicU32,
    sent: (IntCounter, IntCounter),
}

enum Route {
    Add(u32, LinkMedia),
    Remove(u32),
}

impl PeerConn {
    pub(super) fn start(peer: NodeId, connection: quinn::Connection, m: MeshMetrics) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let p = peer.as_str();
        let conn = Arc::new(Self {
            peer: peer.clone(),
            connection: connection.clone(),
            region: tokio::sync::OnceCell::new(),
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

    /// A fresh id on this connection for one of our tracks.
    pub(super) fn track_id(&self) -> u32 {
        self.next_track.fetch_add(1, Ordering::Relaxed) & relay::wire::MAX_TRACK_ID
    }

    /// Datagrams of the far node's track `track_id` go to `link` from now on.
    pub(super) fn route(&self, track_id: u32, link: LinkMedia) {
        let _ = self.routes.send(Route::Add(track_id, link));
    }

    /// Datagrams of the far node's track `track_id` are dropped from now on.
    pub(super) fn unroute(&self, track_id: u32) {
        let _ = self.routes.send(Route::Remove(track_id));
    }

    /// Sends one RTP packet of our track `track_id` (layer `layer`) as it is, without
    /// copying it into a datagram; false when the connection is gone.
    pub(super) fn send(
        &self,
        track_id: u32,
        layer: u8,
        packet: MediaPacket,
        dropped: &IntCounter,
    ) -> bool {
        let len = (relay::wire::MEDIA_ID_LEN + packet.rtp().len()) as u64;
        let id = relay::wire::media_id(track_id, layer);
        match relay::send_packet(&self.connection, id, packet) {
            Ok(()) => {
                self.sent.0.inc();
                self.sent.1.inc_by(len);
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
                let Some(link) = table.get(&track) else { continue };
                match link.packet(track, layer, d.slice(4..)) {
                    Handed::Queued => {}
                    // The shard is behind: drop, as a lossy link would, and never wait.
                    Handed::Full => m.dropped_in.inc(),
                    Handed::Gone => { table.remove(&track); }
                }
            }
            r = routes.recv() => match r {
                Some(Route::Add(track, link)) => { table.insert(track, link); }
                Some(Route::Remove(track)) => { table.remove(&track); }
                // Nobody routes for this connection any more (it was replaced): a closed
                // channel would be ready at once, for ever.
                None => break,
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
