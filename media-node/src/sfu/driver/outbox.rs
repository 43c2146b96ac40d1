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
    /// GSO sends refused in a row with EIO or EINVAL.
    gso_refusals: u32,
    /// GSO sends so far, and the datagrams they carried.
    pub(super) gso_sends: u64,
    pub(super) gso_datagrams: u64,
}

const SEND_BATCH: usize = 64;
/// The most datagrams one GSO send carries. The kernel's `UDP_MAX_SEGMENTS` is 64, but
/// kernels before the fixes of December 2021 counted the headers against it and refused
/// 64 full segments.
const MAX_SEGMENTS: usize = 32;
/// The most bytes one GSO send may carry: one UDP datagram's payload before the cut.
const MAX_GSO_BYTES: usize = 65_507;
/// The fewest datagrams that go as one GSO send: a run ends the `sendmmsg` batch around
/// it, so a shorter one would cost system calls rather than save them.
const MIN_RUN: usize = 4;
/// GSO sends refused in a row with EIO or EINVAL (an old kernel, a device without
/// checksum offload) after which the outbox stops trying.
const GSO_REFUSALS: u32 = 8;

impl Outbox {
    /// An outbox; with `gso` (asked for, and the kernel has it: [`gso_supported`]), runs
    /// go as GSO sends.
    pub(super) fn new(gso: bool) -> Self {
        Self {
            queue: Vec::with_capacity(SEND_BATCH),
            gso,
            gso_refusals: 0,
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
    /// rest go on. A run the kernel refuses as one send (a path MTU below its segment
    /// size answers EMSGSIZE; an old kernel or a device without checksum offload EIO
    /// or EINVAL) goes datagram by datagram; after [`GSO_REFUSALS`] EIO or EINVAL in a
    /// row the outbox stops trying GSO (logged).
    pub(super) async fn flush(&mut self, socket: &UdpSocket) {
        self.flush_with(socket, send_run).await;
    }

    /// [`Self::flush`], with `send_run` sending each run (the tests refuse runs).
    async fn flush_with(&mut self, socket: &UdpSocket, send_run: SendRun) {
        let mut at = 0;
        // Datagrams before this index go one by one: a run the kernel refused.
        let mut singles_until = 0;
        while at < self.queue.len() {
            let rest = &self.queue[at..];
            let gso_from = |i: usize| self.gso && at + i >= singles_until;
            let run = if gso_from(0) { gso_run(rest) } else { 1 };
            let result = if run > 1 {
                send_run(socket, &rest[..run]).map(|()| run)
            } else {
                // Every datagram up to the next run, in one `sendmmsg`.
                let limit = rest.len().min(SEND_BATCH);
                let singles = (1..limit)
                    .find(|&i| gso_from(i) && gso_run(&rest[i..]) > 1)
                    .unwrap_or(limit);
                send_batch(socket, &rest[..singles])
            };
            match result {
                Ok(n) => {
                    if run > 1 {
                        self.gso_sends += 1;
                        self.gso_datagrams += run as u64;
                        self.gso_refusals = 0;
                    }
                    at += n.max(1);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(e) if run > 1 => {
                    tracing::debug!(destination = %self.queue[at].0, error = %e, "a UDP GSO send was refused: its datagrams go one by one");
                    singles_until = at + run;
                    let unsupported = [Errno::EIO, Errno::EINVAL]
                        .iter()
                        .any(|&n| e.raw_os_error() == Some(n as i32));
                    if unsupported {
                        self.gso_refusals += 1;
                        if self.gso_refusals >= GSO_REFUSALS {
                            tracing::warn!(error = %e, "the kernel refuses UDP GSO sends on the media socket: sending datagram by datagram from now on");
                            self.gso = false;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(destination = %self.queue[at].0, error = %e, "UDP send failed");
                    at += 1;
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

/// How many datagrams from the front of `queue` go as one GSO send: a run of at least
/// [`MIN_RUN`] (see [`run_len`]), else 1.
fn gso_run(queue: &[(SocketAddr, Vec<u8>)]) -> usize {
    match run_len(queue) {
        n if n >= MIN_RUN => n,
        _ => 1,
    }
}

/// How many datagrams from the front of `queue` one GSO send could carry: those to the
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

/// Sends a run as one GSO send.
type SendRun = fn(&UdpSocket, &[(SocketAddr, Vec<u8>)]) -> std::io::Result<()>;

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
        let mut outbox = Outbox::new(false);
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
        let mut outbox = Outbox::new(gso && gso_supported(&socket));
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

    fn queue(datagrams: &[(u16, usize)]) -> Vec<(SocketAddr, Vec<u8>)> {
        datagrams
            .iter()
            .map(|&(port, len)| (SocketAddr::from(([127, 0, 0, 1], port)), vec![0; len]))
            .collect()
    }

    #[test]
    fn a_run_is_equal_datagrams_to_one_destination_the_last_possibly_shorter_within_the_limits() {
        // A frame: full packets and a shorter last one; what follows is not the run's.
        assert_eq!(
            run_len(&queue(&[(1, 1_200), (1, 1_200), (1, 700), (1, 1_200)])),
            3
        );
        // A shorter datagram ends a run: the kernel would cut a longer one after it.
        assert_eq!(run_len(&queue(&[(1, 1_200), (1, 700), (1, 1_200)])), 2);
        // A longer one does not join, nor one to another destination.
        assert_eq!(run_len(&queue(&[(1, 700), (1, 1_200)])), 1);
        assert_eq!(run_len(&queue(&[(1, 1_200), (2, 1_200), (1, 1_200)])), 1);
        // At most MAX_SEGMENTS datagrams, and at most MAX_GSO_BYTES.
        assert_eq!(run_len(&queue(&[(1, 1_150); 40])), MAX_SEGMENTS);
        assert_eq!(run_len(&queue(&[(1, 2_500); 30])), 26);
        // Runs shorter than MIN_RUN go in the sendmmsg batch.
        assert_eq!(gso_run(&queue(&[(1, 1_200); 3])), 1);
        assert_eq!(gso_run(&queue(&[(1, 1_200); 4])), 4);
        assert_eq!(run_len(&[]), 0);
    }

    #[tokio::test]
    async fn runs_of_equal_datagrams_to_one_destination_go_as_gso_sends_and_arrive_one_by_one() {
        let mut datagrams = Vec::new();
        // A frame of five full packets and a short last one to receiver 0: one run.
        datagrams.extend((0..5).map(|i| (0, 1_200, i)));
        datagrams.push((0, 700, 5));
        // Three to receiver 1: too few for a run.
        datagrams.extend((6..9).map(|i| (1, 1_200, i)));
        // A longer one after a shorter one: each alone.
        datagrams.extend([(0, 100, 9), (0, 1_200, 10), (0, 700, 11), (0, 1_200, 12)]);
        // 70 equal ones: more than one send carries.
        datagrams.extend((0..70).map(|i| (1, 1_000, 100 + i)));
        let (got, outbox) = through(true, &datagrams).await;
        assert!(
            outbox.gso(),
            "loopback takes UDP GSO (UDP_SEGMENT, Linux 4.18 and later)"
        );
        assert_eq!(got, expected(&datagrams), "every datagram whole, in order");
        // The outbox flushes at its 64th datagram: the run of 6, then 51 of the 70
        // (at most 32 a send: 32 + 19), then the other 19 (one send).
        assert_eq!((outbox.gso_sends, outbox.gso_datagrams), (4, 76));
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

    #[tokio::test]
    async fn runs_the_kernel_refuses_go_datagram_by_datagram_and_repeated_eio_turns_gso_off() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = receiver.local_addr().unwrap();
        let refuse = |errno: Errno| -> SendRun {
            match errno {
                Errno::EMSGSIZE => {
                    |_, _| Err(std::io::Error::from_raw_os_error(Errno::EMSGSIZE as i32))
                }
                _ => |_, _| Err(std::io::Error::from_raw_os_error(Errno::EIO as i32)),
            }
        };
        let mut buf = [0u8; 2_048];
        for (errno, flushes, gso_after) in [
            // A path MTU below the segment size: that run goes one by one, GSO stays.
            (Errno::EMSGSIZE, GSO_REFUSALS + 2, true),
            // A device or kernel that refuses GSO: off after GSO_REFUSALS in a row.
            (Errno::EIO, GSO_REFUSALS, false),
        ] {
            let mut outbox = Outbox::new(gso_supported(&socket));
            assert!(outbox.gso());
            for f in 0..flushes {
                for i in 0..5u8 {
                    outbox.queue.push((to, vec![i; 1_000]));
                }
                outbox.flush_with(&socket, refuse(errno)).await;
                for i in 0..5u8 {
                    let (len, _) =
                        tokio::time::timeout(Duration::from_secs(2), receiver.recv_from(&mut buf))
                            .await
                            .unwrap_or_else(|_| panic!("{errno}, flush {f}: datagram {i} lost"))
                            .unwrap();
                    assert_eq!((len, buf[0]), (1_000, i), "{errno}: in order, whole");
                }
            }
            assert_eq!(outbox.gso(), gso_after, "{errno}");
            assert_eq!(outbox.gso_sends, 0);
        }
    }
}
