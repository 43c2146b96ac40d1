//! The demux task: reads every datagram of the one UDP socket and hands it to the shard
//! of its peer, learnt from the ufrag of a STUN binding request, then by source address.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::metrics::{DriverMetrics, Tally};

/// A datagram for a shard.
pub(super) struct Inbound {
    pub(super) source: SocketAddr,
    pub(super) at: Instant,
    pub(super) data: Bytes,
}

/// Forget a source address whose STUN checks stopped this long ago.
const ROUTE_IDLE: Duration = Duration::from_secs(60);

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

pub(super) async fn demux(
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
}
