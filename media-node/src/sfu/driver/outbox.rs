//! A shard's datagrams on their way out, sent in batches with `sendmmsg`.
use std::net::SocketAddr;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use tokio::net::UdpSocket;

/// Datagrams on their way out of a shard: queued while the shard's state machine has
/// more, then written with one `sendmmsg` per [`SEND_BATCH`] (a packet's copies for a
/// whole meeting in one system call, not one each).
pub(super) struct Outbox {
    queue: Vec<(SockaddrStorage, Vec<u8>)>,
}

const SEND_BATCH: usize = 64;

impl Outbox {
    pub(super) fn new() -> Self {
        Self {
            queue: Vec::with_capacity(SEND_BATCH),
        }
    }

    /// Queues one datagram; a full batch is sent at once.
    pub(super) async fn push(&mut self, socket: &UdpSocket, to: SocketAddr, contents: Vec<u8>) {
        self.queue.push((SockaddrStorage::from(to), contents));
        if self.queue.len() >= SEND_BATCH {
            self.flush(socket).await;
        }
    }

    /// Sends everything queued. A datagram the kernel refuses (its destination is
    /// unreachable, say) is dropped, as a failed `send_to` would be; the rest go on.
    pub(super) async fn flush(&mut self, socket: &UdpSocket) {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
}
