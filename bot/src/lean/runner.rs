//! A lean peer at work: its `Rtc` driven one input at a time (datagrams, the node's
//! offers on signaling, timeouts, frames due), counting what it receives.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::SinkExt;
use signaling::{ClientMsg, ServerMsg};
use str0m::change::SdpOffer;
use str0m::media::MediaKind;
use str0m::net::{Protocol, Receive};
use str0m::rtp::Ssrc;
use str0m::{Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::publish::Publish;
use super::{Counters, Peer};

pub(super) use crate::client::Ws;

/// One lean peer: its `Rtc`, socket and signaling, driven one input at a time.
pub(super) struct Runner {
    /// When the join began.
    started: Instant,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    /// Fjord's signaling, on which the node offers new tracks (Janus's subscriptions are
    /// negotiated once, at the join).
    ws: Option<Ws>,
    counters: Arc<Counters>,
    /// Per incoming SSRC: the highest extended sequence number seen, and whether it is
    /// audio.
    highest: HashMap<Ssrc, (u64, bool)>,
    connected: bool,
    publish: Option<Publish>,
}

impl Runner {
    pub(super) fn new(
        started: Instant,
        (socket, local, rtc): (UdpSocket, SocketAddr, Rtc),
        ws: Option<Ws>,
        counters: Arc<Counters>,
        publish: Option<Publish>,
    ) -> Self {
        Runner {
            started,
            rtc,
            socket,
            local,
            ws,
            counters,
            highest: HashMap::new(),
            connected: false,
            publish,
        }
    }

    /// Drives the peer here until the connection is up (ICE and DTLS), then leaves it
    /// running in a task of its own; returns the peer (its join time is from `started`
    /// to connected) and its task.
    pub(super) async fn connect(
        mut self,
        stop: CancellationToken,
    ) -> anyhow::Result<(Peer, tokio::task::JoinHandle<()>)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !self.connected {
            if tokio::time::Instant::now() > deadline {
                bail!("no ICE and DTLS connection within 15 s");
            }
            self.step(&stop).await?;
        }
        let peer = Peer {
            publishing: self.publish.is_some(),
            join_time: self.started.elapsed(),
            counters: self.counters.clone(),
        };
        let task = tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Err(e) = self.step(&stop).await {
                    tracing::debug!(error = %e, "lean peer ended");
                    break;
                }
            }
        });
        Ok((peer, task))
    }
}

impl Runner {
    /// Sends what the `Rtc` has to send, then waits for one input (a datagram, a
    /// signaling message, a timeout, a frame due) and feeds it.
    async fn step(&mut self, stop: &CancellationToken) -> anyhow::Result<()> {
        let timeout = loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(e) => self.event(e),
            }
        };
        let mut due = tokio::time::Instant::from_std(timeout);
        if let Some(p) = &self.publish
            && self.connected
        {
            due = due.min(p.due());
        }
        let mut buf = [0u8; 2048];
        tokio::select! {
            _ = stop.cancelled() => {}
            r = self.socket.recv_from(&mut buf) => {
                let (n, source) = r?;
                if let Ok(rx) = Receive::new(Protocol::Udp, source, self.local, &buf[..n]) {
                    self.rtc.handle_input(Input::Receive(Instant::now(), rx))?;
                }
            }
            msg = next_signal(&mut self.ws) => {
                // A lean peer answers the node's offers and sends the layers it is told
                // anyone needs: the rest of the meeting (participants, chat, the room)
                // does not concern it, but is counted. A message that is not a
                // ServerMsg at all is an error, and ends the peer.
                self.counters.signals.fetch_add(1, Ordering::Relaxed);
                match msg? {
                    ServerMsg::Offer { sdp } => {
                        self.counters.offers.fetch_add(1, Ordering::Relaxed);
                        if let Some(ws) = &mut self.ws {
                            let offer = SdpOffer::from_sdp_string(&sdp)?;
                            let answer = self.rtc.sdp_api().accept_offer(offer)?;
                            send(ws, &ClientMsg::Answer { sdp: answer.to_sdp_string() }).await?;
                        }
                    }
                    ServerMsg::PublishLayers { layers, .. } => {
                        if let Some(p) = &mut self.publish {
                            p.set_layers(&layers);
                        }
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(due) => {
                if let Some(p) = &mut self.publish && self.connected {
                    p.write_due(&mut self.rtc, &self.counters);
                }
                self.rtc.handle_input(Input::Timeout(Instant::now()))?;
            }
        }
        Ok(())
    }

    fn event(&mut self, e: Event) {
        match e {
            // DTLS is up: media can flow (ICE says `Completed` on our, controlling, side).
            Event::Connected => self.connected = true,
            Event::RtpPacket(p) => {
                let c = &self.counters;
                if c.first_media_ms.load(Ordering::Relaxed) == 0 {
                    let ms = self.started.elapsed().as_millis().max(1) as u64;
                    c.first_media_ms.store(ms, Ordering::Relaxed);
                }
                c.packets.fetch_add(1, Ordering::Relaxed);
                c.bytes.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                let seq = *p.seq_no;
                let ssrc = p.header.ssrc;
                let (highest, audio) = match self.highest.get_mut(&ssrc) {
                    Some(h) => h,
                    None => {
                        let audio = self
                            .rtc
                            .direct_api()
                            .stream_rx(&ssrc)
                            .map(|s| s.mid())
                            .and_then(|mid| self.rtc.media(mid).map(|m| m.kind()))
                            == Some(MediaKind::Audio);
                        self.highest
                            .entry(ssrc)
                            .or_insert((seq.saturating_sub(1), audio))
                    }
                };
                if seq > *highest {
                    c.seq_lost.fetch_add(seq - *highest - 1, Ordering::Relaxed);
                    *highest = seq;
                }
                c.streams
                    .lock()
                    .expect("stream counts")
                    .entry(*ssrc)
                    .or_insert((*audio, 0))
                    .1 += 1;
                // Audio packets are whole frames; a video frame ends on the marker bit.
                if *audio {
                    c.audio_frames.fetch_add(1, Ordering::Relaxed);
                } else if p.header.marker {
                    c.video_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
}

/// The next signaling message, if the peer has signaling; never, if not.
async fn next_signal(ws: &mut Option<Ws>) -> anyhow::Result<ServerMsg> {
    match ws {
        Some(ws) => crate::client::next_msg(ws).await,
        None => std::future::pending().await,
    }
}

/// Sends a signaling message.
pub(super) async fn send(ws: &mut Ws, msg: &ClientMsg) -> anyhow::Result<()> {
    ws.send(crate::client::frame(msg)).await?;
    Ok(())
}
