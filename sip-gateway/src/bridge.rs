//! One call's media between the caller and the meeting: the caller's Opus packets go
//! into the meeting as the gateway participant's audio; the meeting's audio comes back
//! as one stream, the participant speaking now (a switch when another starts after
//! 200 ms of quiet from the current one), with our own SSRC, sequence and timestamps so
//! that the caller hears one continuous stream.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot::{LiveFrame, Tapped};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::rtp;
use crate::sdp::Choice;

/// How long the current speaker may be quiet before another takes over.
const SWITCH_AFTER: Duration = Duration::from_millis(200);
/// An Opus frame's length when timestamps cannot tell (the first packet, a jump).
const DEFAULT_FRAME: Duration = Duration::from_millis(20);

/// What the caller's packets say about their loudness without decoding them: an Opus
/// packet of a few bytes is silence or comfort noise (DTX), a larger one speech. An
/// estimate for the node's choice of the loudest speakers (RFC 6464 levels: 0 loudest,
/// 127 silence); the G.711 step of the gateway, which decodes, measures it.
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
}

/// Runs until `stop` turns true or the meeting's side closes; then says what it moved.
pub async fn run(
    socket: Arc<UdpSocket>,
    choice: Choice,
    to_meeting: mpsc::Sender<LiveFrame>,
    mut from_meeting: mpsc::Receiver<Tapped>,
    mut stop: watch::Receiver<bool>,
) -> Counts {
    let (remote_tx, remote) = watch::channel(choice.remote);
    let from_caller = Arc::new(AtomicU64::new(0));
    let not_rtp = Arc::new(AtomicU64::new(0));
    let inbound = {
        let socket = socket.clone();
        let opus_pt = choice.opus_pt;
        let (from_caller, not_rtp) = (from_caller.clone(), not_rtp.clone());
        tokio::spawn(async move {
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
                if h.pt != opus_pt {
                    continue; // telephone-events: the IVR step reads them
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
                let payload = buf[h.payload].to_vec();
                let level = level_of(payload.len());
                from_caller.fetch_add(1, Ordering::Relaxed);
                if to_meeting
                    .send(LiveFrame {
                        data: payload,
                        duration,
                        level,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };

    let mut counts = Counts::default();
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    // Our timestamp = theirs + offset, the offset set anew at each switch of speaker so
    // that our stream's clock goes on where it was.
    let mut offset: u32 = 0;
    let mut last_out: Option<(u32, Instant)> = None;
    let mut current: Option<(String, Instant)> = None;
    let mut out = Vec::with_capacity(1500);
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
            // Go on from our last timestamp, by the time that passed since.
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
        let ts = p.timestamp.wrapping_add(offset);
        seq = seq.wrapping_add(1);
        rtp::write_header(&mut out, choice.opus_pt, switch, seq, ts, ssrc);
        out.extend_from_slice(&p.payload);
        let to: SocketAddr = *remote.borrow();
        if socket.send_to(&out, to).await.is_ok() {
            counts.to_caller += 1;
        }
        last_out = Some((ts, now));
    }
    inbound.abort();
    counts.from_caller = from_caller.load(Ordering::Relaxed);
    counts.not_rtp = not_rtp.load(Ordering::Relaxed);
    counts
}
