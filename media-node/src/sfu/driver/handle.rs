//! The handle other tasks reach the SFU through: sessions, sinks and links each get a
//! line to the shard of their meeting; the handle also reads the shards' reports.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::ids::MeetingId;
use tokio::sync::{mpsc, watch};

use crate::sfu::{
    LinkKey, PeerKey, PeerQuality, RelayEvent, SfuCommand, SfuStats, SignalOut, SinkKey,
};

pub(super) enum DriverCommand {
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
    media: mpsc::Sender<LinkRtp>,
}

impl LinkSession {
    pub fn send(&self, cmd: SfuCommand) {
        let _ = self.tx.send(DriverCommand::Sfu(cmd));
    }

    /// A cloneable sender of this link's media, for the connection's datagram reader.
    pub fn media(&self) -> LinkMedia {
        LinkMedia {
            key: self.key,
            tx: self.media.clone(),
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

/// Feeds one link's incoming RTP into its shard, through the shard's bounded queue of
/// link packets ([`LINK_QUEUE`](super::LINK_QUEUE)): a shard that falls behind drops
/// them rather than stalling the connection's reader or piling them up.
#[derive(Clone)]
pub struct LinkMedia {
    key: LinkKey,
    tx: mpsc::Sender<LinkRtp>,
}

/// What became of a packet handed to a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handed {
    Queued,
    /// Dropped: the shard's queue was full.
    Full,
    /// Dropped: the shard is gone.
    Gone,
}

impl LinkMedia {
    pub fn packet(&self, track_id: u32, layer: u8, rtp: Bytes) -> Handed {
        let p = LinkRtp {
            link: self.key,
            track_id,
            layer,
            rtp,
        };
        match self.tx.try_send(p) {
            Ok(()) => Handed::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Handed::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Handed::Gone,
        }
    }
}

/// One RTP packet of a remote track, for the shard of its link
/// ([`SfuCommand::RemotePacket`]).
pub(super) struct LinkRtp {
    pub link: LinkKey,
    pub track_id: u32,
    pub layer: u8,
    pub rtp: Bytes,
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

    /// The sink shows its track `track_id` at `width` x `height` pixels: it gets the
    /// simulcast layer that fits.
    pub fn show_at(&self, track_id: u32, width: u32, height: u32) {
        let rid = crate::sfu::layer_for_size(width, height);
        let _ = self.tx.send(DriverCommand::Sfu(SfuCommand::SinkLayer {
            key: self.key,
            track_id,
            rid,
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

/// Cheap, cloneable handle that signaling sessions use to reach the SFU.
#[derive(Clone)]
pub struct SfuHandle {
    pub(super) shards: Arc<[mpsc::UnboundedSender<DriverCommand>]>,
    /// Each shard's queue of packets from relay links.
    pub(super) link_media: Arc<[mpsc::Sender<LinkRtp>]>,
    pub(super) next_key: Arc<AtomicU64>,
    pub(super) stats: Arc<[watch::Receiver<ShardReport>]>,
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
        let shard = shard_of(meeting, self.shards.len());
        let tx = self.shards[shard].clone();
        let media = self.link_media[shard].clone();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let _ = tx.send(DriverCommand::RegisterLink {
            link: key,
            meeting: meeting.clone(),
            tx: ev_tx,
        });
        (LinkSession { key, tx, media }, ev_rx)
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

#[cfg(test)]
mod tests {
    use super::*;

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
