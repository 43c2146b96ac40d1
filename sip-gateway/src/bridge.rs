//! One call's media between the caller and the meeting. The caller's audio goes into the
//! meeting as the gateway participant's: Opus as it comes, G.711 decoded here and
//! encoded to Opus (`transcode`). The meeting's audio comes back as one stream, the
//! participant speaking now (a switch when another starts after 200 ms of quiet from the
//! current one): Opus passed through with our own SSRC, sequence and timestamps so that
//! the caller hears one continuous stream, or decoded and sent in G.711 packets of 20 ms.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot::{LiveFrame, Tapped};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::sdp::{Choice, Codec};
use crate::transcode::{FromOpus, ToOpus};
use crate::{g711, rtp};

/// How long the current speaker may be quiet before another takes over.
const SWITCH_AFTER: Duration = Duration::from_millis(200);
/// An Opus frame's length when timestamps cannot tell (the first packet, a jump).
const DEFAULT_FRAME: Duration = Duration::from_millis(20);
/// Samples in a G.711 packet: 20 ms at 8 kHz.
const G711_FRAME: usize = 160;

/// What the caller's Opus packets say about their loudness without decoding them: an
/// Opus packet of a few bytes is silence or comfort noise (DTX), a larger one speech.
/// An estimate for the node's choice of the loudest speakers (RFC 6464 levels: 0
/// loudest, 127 silence); G.711, which is decoded here, is measured instead.
fn level_of(payload_len: usize) -> u8 {
    match payload_len {
        0..=12 => 127,
        13..=40 => 60,
        41..=80 => 45,
        _ => 35,
    }
}

/// Counters of one call's media, for its log line and the metrics.
#[derive(Default, Debug, Clone, Copy)]
pub struct Counts {
    pub from_caller: u64,
    pub to_caller: u64,
    pub not_rtp: u64,
    /// The caller's packets that never came (by sequence numbers).
    pub lost: u64,
    /// The caller's interarrival jitter at the end, in seconds (RFC 3550 §6.4.1).
    pub jitter_secs: f64,
}

/// The receive statistics of the caller's stream, as RFC 3550 (A.1, A.8) keeps them.
#[derive(Default, Debug)]
struct Reception {
    /// The first extended sequence number, and the highest.
    base: Option<u64>,
    max: u64,
    received: u64,
    /// In timestamp units.
    jitter: f64,
    transit: Option<i64>,
}

impl Reception {
    /// A packet with `seq` and `timestamp` that arrived at `arrival` (timestamp units
    /// on our clock).
    fn update(&mut self, seq: u16, timestamp: u32, arrival: i64) {
        self.received += 1;
        if self.base.is_none() {
            // Far from zero, so that an earlier packet's number is no underflow.
            let first = (1 << 32) + u64::from(seq);
            self.base = Some(first);
            self.max = first;
        } else {
            // The extended number nearest the highest so far.
            let cycle = self.max & !0xffff;
            let ext = [cycle - 0x10000, cycle, cycle + 0x10000]
                .iter()
                .map(|c| c + u64::from(seq))
                .min_by_key(|e| e.abs_diff(self.max))
                .expect("three candidates");
            self.max = self.max.max(ext);
        }
        let transit = arrival - i64::from(timestamp);
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    fn lost(&self) -> u64 {
        self.base
            .map_or(0, |b| (self.max - b + 1).saturating_sub(self.received))
    }
}

/// A call's transcoders, made before it is answered (a call we cannot transcode is
/// refused, not answered and left silent).
pub struct Media {
    choice: Choice,
    to_meeting: mpsc::Sender<LiveFrame>,
    transcoders: Option<(ToOpus, FromOpus, mpsc::Receiver<Vec<i16>>)>,
}

impl Media {
    pub fn new(choice: Choice, to_meeting: mpsc::Sender<LiveFrame>) -> anyhow::Result<Self> {
        let transcoders = match choice.codec {
            Codec::Opus => None,
            Codec::Pcmu | Codec::Pcma => {
                let (pcm_tx, pcm_rx) = mpsc::channel(64);
                Some((
                    ToOpus::new(to_meeting.clone())?,
                    FromOpus::new(pcm_tx)?,
                    pcm_rx,
                ))
            }
        };
        Ok(Self {
            choice,
            to_meeting,
            transcoders,
        })
    }
}

fn decode(codec: Codec, payload: &[u8]) -> Vec<i16> {
    match codec {
        Codec::Pcma => payload.iter().map(|&b| g711::alaw_decode(b)).collect(),
        _ => payload.iter().map(|&b| g711::ulaw_decode(b)).collect(),
    }
}

fn encode(codec: Codec, pcm: &[i16], out: &mut Vec<u8>) {
    match codec {
        Codec::Pcma => out.extend(pcm.iter().map(|&s| g711::alaw_encode(s))),
        _ => out.extend(pcm.iter().map(|&s| g711::ulaw_encode(s))),
    }
}

/// Our outgoing RTP stream: its SSRC and next sequence number.
struct Outgoing {
    ssrc: u32,
    seq: u16,
    buf: Vec<u8>,
}

impl Outgoing {
    fn new() -> Self {
        Self {
            ssrc: rand::random(),
            seq: rand::random(),
            buf: Vec::with_capacity(1500),
        }
    }

    async fn send(
        &mut self,
        socket: &UdpSocket,
        to: SocketAddr,
        pt: u8,
        marker: bool,
        ts: u32,
        payload: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        self.seq = self.seq.wrapping_add(1);
        rtp::write_header(&mut self.buf, pt, marker, self.seq, ts, self.ssrc);
        payload(&mut self.buf);
        socket.send_to(&self.buf, to).await.is_ok()
    }
}

/// Runs until `stop` turns true or the meeting's side closes; then says what it moved.
pub async fn run(
    socket: Arc<UdpSocket>,
    media: Media,
    mut from_meeting: mpsc::Receiver<Tapped>,
    mut stop: watch::Receiver<bool>,
) -> Counts {
    let Media {
        choice,
        to_meeting,
        transcoders,
    } = media;
    let (to_opus, from_opus, pcm_rx) = match transcoders {
        Some((t, f, r)) => (Some(t), Some(f), Some(r)),
        None => (None, None, None),
    };
    let (remote_tx, remote) = watch::channel(choice.remote);
    let from_caller = Arc::new(AtomicU64::new(0));
    let to_caller = Arc::new(AtomicU64::new(0));
    let not_rtp = Arc::new(AtomicU64::new(0));
    let reception = Arc::new(std::sync::Mutex::new(Reception::default()));
    let clock = f64::from(choice.codec.clock_rate());
    let mut tasks = Vec::new();

    // From the caller.
    tasks.push({
        let socket = socket.clone();
        let (pt, codec) = (choice.pt, choice.codec);
        let (from_caller, not_rtp) = (from_caller.clone(), not_rtp.clone());
        let reception = reception.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut buf = vec![0u8; 2048];
            let mut last_ts: Option<u32> = None;
            let mut latched = false;
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    break;
                };
                let Some(h) = rtp::parse(&buf[..n]) else {
                    not_rtp.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                // Symmetric RTP: the caller's packets come from where it listens, also
                // behind a NAT its SDP does not know of.
                if !latched {
                    latched = true;
                    let _ = remote_tx.send(from);
                }
                if h.pt != pt {
                    continue; // telephone-events: the IVR step reads them
                }
                from_caller.fetch_add(1, Ordering::Relaxed);
                let arrival = (started.elapsed().as_secs_f64() * clock) as i64;
                reception
                    .lock()
                    .expect("reception")
                    .update(h.seq, h.timestamp, arrival);
                let payload = &buf[h.payload];
                if let Some(t) = &to_opus {
                    if t.push(&decode(codec, payload)).is_err() {
                        break;
                    }
                    continue;
                }
                let duration = match last_ts {
                    Some(t) => {
                        let ms = h.timestamp.wrapping_sub(t) / 48;
                        if (2..=120).contains(&ms) {
                            Duration::from_millis(u64::from(ms))
                        } else {
                            DEFAULT_FRAME
                        }
                    }
                    None => DEFAULT_FRAME,
                };
                last_ts = Some(h.timestamp);
                let frame = LiveFrame {
                    data: payload.to_vec(),
                    duration,
                    level: level_of(payload.len()),
                };
                if to_meeting.send(frame).await.is_err() {
                    break;
                }
            }
        })
    });

    // The meeting's audio decoded for a G.711 caller: 20 ms packets on our own clock.
    if let Some(mut pcm_rx) = pcm_rx {
        let socket = socket.clone();
        let remote = remote.clone();
        let to_caller = to_caller.clone();
        let (pt, codec) = (choice.pt, choice.codec);
        tasks.push(tokio::spawn(async move {
            let mut out = Outgoing::new();
            let mut ts: u32 = rand::random();
            let mut pending: Vec<i16> = Vec::new();
            let mut first = true;
            while let Some(pcm) = pcm_rx.recv().await {
                pending.extend_from_slice(&pcm);
                while pending.len() >= G711_FRAME {
                    let frame: Vec<i16> = pending.drain(..G711_FRAME).collect();
                    let to = *remote.borrow();
                    if out
                        .send(&socket, to, pt, first, ts, |b| encode(codec, &frame, b))
                        .await
                    {
                        to_caller.fetch_add(1, Ordering::Relaxed);
                    }
                    first = false;
                    ts = ts.wrapping_add(G711_FRAME as u32);
                }
            }
        }));
    }

    // The meeting's audio: the speaker of the moment, passed through or decoded.
    let mut out = Outgoing::new();
    // Opus passed through: our timestamp = theirs + offset, the offset set anew at each
    // switch of speaker so that our stream's clock goes on where it was.
    let mut offset: u32 = 0;
    let mut last_out: Option<(u32, Instant)> = None;
    let mut current: Option<(String, Instant)> = None;
    loop {
        let p = tokio::select! {
            p = from_meeting.recv() => match p { Some(p) => p, None => break },
            _ = stop.changed() => break,
        };
        if p.kind != "audio" {
            continue;
        }
        let now = Instant::now();
        let switch = match &current {
            Some((who, _)) if *who == p.from => false,
            Some((_, at)) => now.duration_since(*at) > SWITCH_AFTER,
            None => true,
        };
        if switch {
            let next = last_out.map_or(p.timestamp, |(ts, at)| {
                ts.wrapping_add((now.duration_since(at).as_millis() as u32).max(20) * 48)
            });
            offset = next.wrapping_sub(p.timestamp);
            current = Some((p.from.clone(), now));
        } else if current.as_ref().is_some_and(|(who, _)| *who != p.from) {
            continue; // someone else speaks now
        }
        if let Some((_, at)) = &mut current {
            *at = now;
        }
        if let Some(f) = &from_opus {
            if f.push(&p.payload).is_err() {
                break;
            }
            continue;
        }
        let ts = p.timestamp.wrapping_add(offset);
        let to: SocketAddr = *remote.borrow();
        if out
            .send(&socket, to, choice.pt, switch, ts, |b| {
                b.extend_from_slice(&p.payload)
            })
            .await
        {
            to_caller.fetch_add(1, Ordering::Relaxed);
        }
        last_out = Some((ts, now));
    }
    for t in tasks {
        t.abort();
    }
    let r = reception.lock().expect("reception");
    Counts {
        from_caller: from_caller.load(Ordering::Relaxed),
        to_caller: to_caller.load(Ordering::Relaxed),
        not_rtp: not_rtp.load(Ordering::Relaxed),
        lost: r.lost(),
        jitter_secs: r.jitter / clock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counts_the_gaps_across_a_wrap_and_steady_packets_have_no_jitter() {
        let mut r = Reception::default();
        // 20 ms packets at 48 kHz, seq from 65530 over the wrap, 3 of 20 missing.
        for i in 0u32..20 {
            if [4, 7, 8].contains(&i) {
                continue;
            }
            let seq = 65_530u16.wrapping_add(i as u16);
            r.update(seq, i * 960, i64::from(i * 960) + 5_000);
        }
        assert_eq!(r.lost(), 3);
        assert!(r.jitter < 1e-9, "{}", r.jitter);
        // One packet 10 ms late: the jitter rises by 1/16 of it.
        r.update(65_530u16.wrapping_add(20), 20 * 960, 20 * 960 + 5_000 + 480);
        assert!((r.jitter - 30.0).abs() < 1e-9, "{}", r.jitter);
        // A missing packet that comes late is no loss any more.
        r.update(65_530u16.wrapping_add(4), 4 * 960, 30 * 960);
        assert_eq!(r.lost(), 2);
    }
}
