//! A shard's datagrams on their way out: a run of equal-size datagrams to one
//! destination (a subscriber's share of a drive, the packets of a video frame) as one
//! UDP GSO send where the kernel takes it, the rest in batches with `sendmmsg`.
use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, getsockopt, sendmmsg, sendmsg, sockopt,
};
use tokio::net::UdpSocket;

/// Datagrams on their way out of a shard: queued while the shard's state machine has
/// more, then written with as few system calls as the kernel allows: one `sendmmsg`
/// per [`SEND_BATCH`] (a packet's copies for a whole meeting in one call, not one
/// each), and with GSO (`UDP_SEGMENT`) a run of datagrams of one size to one
/// destination as one send that the kernel cuts into datagrams further down its stack.
pub(super) struct Outbox {
    queue: Vec<(SocketAddr, Vec<u8>)>,
    /// Runs go as one GSO send: asked for, and the kernel has `UDP_SEGMENT` and has not
    /// refused a send with it (a device without checksum offload answers EIO).
    gso: bool,
    /// GSO sends so far, and the datagrams they carried.
    pub(super) gso_sends: u64,
    pub(super) gso_datagrams: u64,
}

const SEND_BATCH: usize = 64;
/// The most datagrams one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;
/// The most bytes one GSO send may carry: one UDP datagram's payload before the cut.
const MAX_GSO_BYTES: usize = 65_507;

impl Outbox {
    /// An outbox for `socket`; with `gso`, runs go as GSO sends if the kernel has them.
    pub(super) fn new(socket: &UdpSocket, gso: bool) -> Self {
        let gso = gso && gso_supported(socket);
        Self {
            queue: Vec::with_capacity(SEND_BATCH),
            gso,
            gso_sends: 0,
            gso_datagrams: 0,
        }
    }

    /// Whether runs go as GSO sends.
    #[cfg(test)]
    pub(super) fn gso(&self) -> bool {
        self.gso
    }

    /// Queues one datagram; a full batch is sent at once.
    pub(super) async fn push(&mut self, socket: &UdpSocket, to: SocketAddr, contents: Vec<u8>) {
        self.queue.push((to, contents));
        if self.queue.len() >= SEND_BATCH {
            self.flush(socket).await;
        }
    }

    /// Sends everything queued, in order. A datagram the kernel refuses (its
    /// destination is unreachable, say) is dropped, as a failed `send_to` would be; the
    /// rest go on. A GSO send the kernel refuses as unsupported turns GSO off for good
    /// (logged once) and its datagrams go one by one.
    pub(super) async fn flush(&mut self, socket: &UdpSocket) {
        let mut at = 0;
        while at < self.queue.len() {
            let rest = &self.queue[at..];
            let run = if self.gso { run_len(rest) } else { 1 };
            let result = if run > 1 {
                send_run(socket, &rest[..run]).map(|()| run)
            } else {
                // Every datagram up to the next run, in one `sendmmsg`.
                let singles = if self.gso {
                    (1..rest.len().min(SEND_BATCH))
                        .find(|&i| run_len(&rest[i..]) > 1)
                        .unwrap_or(rest.len().min(SEND_BATCH))
                } else {
                    rest.len().min(SEND_BATCH)
                };
                send_batch(socket, &rest[..singles])
            };
            match result {
                Ok(n) => {
                    if run > 1 {
                        self.gso_sends += 1;
                        self.gso_datagrams += run as u64;
                    }
                    at += n.max(1);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(e)
                    if run > 1
                        && [Errno::EIO, Errno::EINVAL]
                            .iter()
                            .any(|&n| e.raw_os_error() == Some(n as i32)) =>
                {
                    tracing::warn!(error = %e, "the kernel refuses UDP GSO on the media socket: sending datagram by datagram");
                    self.gso = false;
                }
                Err(e) => {
                    tracing::debug!(destination = %self.queue[at].0, error = %e, "UDP send failed");
                    at += if run > 1 { run } else { 1 };
                }
            }
        }
        self.queue.clear();
    }
}

/// Whether the kernel has UDP GSO for `socket` (`UDP_SEGMENT`, Linux 4.18 and later).
pub(super) fn gso_supported(socket: &UdpSocket) -> bool {
    getsockopt(socket, sockopt::UdpGsoSegment).is_ok()
}

/// How many datagrams from the front of `queue` one GSO send carries: those to the
/// first one's destination, each as long as the first (the kernel cuts at that size),
/// the last possibly shorter, within the kernel's limits.
fn run_len(queue: &[(SocketAddr, Vec<u8>)]) -> usize {
    let Some((to, first)) = queue.first() else {
        return 0;
    };
    let size = first.len();
    let mut bytes = size;
    let mut n = 1;
    for (dest, d) in &queue[1..] {
        if n == MAX_SEGMENTS || dest != to || d.len() > size || d.is_empty() {
            break;
        }
        if bytes + d.len() > MAX_GSO_BYTES {
            break;
        }
        bytes += d.len();
        n += 1;
        if d.len() < size {
            break;
        }
    }
    n
}

/// Sends a run (see [`run_len`]) as one GSO send.
fn send_run(socket: &UdpSocket, run: &[(SocketAddr, Vec<u8>)]) -> std::io::Result<()> {
    let mut iov = [IoSlice::new(&[]); MAX_SEGMENTS];
    for (slot, (_, d)) in iov.iter_mut().zip(run) {
        *slot = IoSlice::new(d);
    }
    let segment = run[0].1.len() as u16;
    let to = SockaddrStorage::from(run[0].0);
    socket.try_io(tokio::io::Interest::WRITABLE, || {
        sendmsg(
            socket.as_raw_fd(),
            &iov[..run.len()],
            &[ControlMessage::UdpGsoSegments(&segment)],
            MsgFlags::empty(),
            Some(&to),
        )
        .map(drop)
        .map_err(std::io::Error::from)
    })
}

/// Writes up to [`SEND_BATCH`] of `batch` with one `sendmmsg`: how many went.
fn send_batch(socket: &UdpSocket, batch: &[(SocketAddr, Vec<u8>)]) -> std::io::Result<usize> {
    let batch = &batch[..batch.len().min(SEND_BATCH)];
    let slices: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = batch
        .iter()
        .map(|(a, _)| Some(SockaddrStorage::from(*a)))
        .collect();
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
        let mut outbox = Outbox::new(&socket, false);
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

    /// Sends `datagrams` (receiver index, length, first byte) through an outbox and
    /// returns what each receiver got: (length, first byte, every byte the same).
    async fn through(
        gso: bool,
        datagrams: &[(usize, usize, u8)],
    ) -> (Vec<Vec<(usize, u8, bool)>>, Outbox) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let receivers = [
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        ];
        let mut outbox = Outbox::new(&socket, gso);
        for &(r, len, byte) in datagrams {
            let to = receivers[r].local_addr().unwrap();
            outbox.push(&socket, to, vec![byte; len]).await;
        }
        outbox.flush(&socket).await;
        let mut got = vec![Vec::new(), Vec::new()];
        let mut buf = [0u8; 65_536];
        for (r, receiver) in receivers.iter().enumerate() {
            let expected = datagrams.iter().filter(|d| d.0 == r).count();
            for _ in 0..expected {
                let (len, _) =
                    tokio::time::timeout(Duration::from_secs(2), receiver.recv_from(&mut buf))
                        .await
                        .expect("every datagram arrives")
                        .unwrap();
                got[r].push((len, buf[0], buf[..len].iter().all(|&b| b == buf[0])));
            }
            // Nothing more: a run was not delivered as one datagram plus leftovers.
            assert!(
                tokio::time::timeout(Duration::from_millis(50), receiver.recv_from(&mut buf))
                    .await
                    .is_err(),
                "receiver {r} got more datagrams than were sent"
            );
        }
        (got, outbox)
    }

    fn expected(datagrams: &[(usize, usize, u8)]) -> Vec<Vec<(usize, u8, bool)>> {
        (0..2)
            .map(|r| {
                datagrams
                    .iter()
                    .filter(|d| d.0 == r)
                    .map(|&(_, len, byte)| (len, byte, true))
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn runs_of_equal_datagrams_to_one_destination_go_as_gso_sends_and_arrive_one_by_one() {
        let mut datagrams = Vec::new();
        // A frame of five full packets and a short last one to receiver 0: one run.
        datagrams.extend((0..5).map(|i| (0, 1_200, i)));
        datagrams.push((0, 700, 5));
        // Three to receiver 1: a run of its own.
        datagrams.extend((6..9).map(|i| (1, 1_200, i)));
        // A short one, then longer ones: the short one goes alone, the two after it
        // are a run.
        datagrams.push((0, 100, 9));
        datagrams.extend((10..12).map(|i| (0, 1_200, i)));
        // 70 equal ones: more than one send may carry.
        datagrams.extend((0..70).map(|i| (1, 1_000, 100 + i)));
        let (got, outbox) = through(true, &datagrams).await;
        assert!(
            outbox.gso(),
            "loopback takes UDP GSO (Linux 4.18 and later)"
        );
        assert_eq!(got, expected(&datagrams), "every datagram whole, in order");
        // 6, 3, 2, and the 70 as 64 + 6 (the batch of 64 flushed at the 64th push may
        // cut the run earlier, never later).
        assert!(outbox.gso_sends >= 5, "{} GSO sends", outbox.gso_sends);
        assert!(
            outbox.gso_datagrams >= (datagrams.len() - 1 - 2) as u64,
            "{} of {} datagrams went in GSO sends",
            outbox.gso_datagrams,
            datagrams.len()
        );
    }

    #[tokio::test]
    async fn without_gso_the_same_datagrams_arrive_the_same() {
        let datagrams: Vec<_> = (0..40)
            .map(|i| (i % 3 / 2, if i % 7 == 6 { 300 } else { 1_100 }, i as u8))
            .collect();
        let (got, outbox) = through(false, &datagrams).await;
        assert!(!outbox.gso());
        assert_eq!(got, expected(&datagrams));
        assert_eq!(outbox.gso_sends, 0);
    }
}
