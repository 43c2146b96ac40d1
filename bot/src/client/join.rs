//! Setting up a session: from the controller's join until media flows.
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use signaling::{ClientMsg, ServerMsg};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::RTCPeerConnectionState;
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

use super::peer::{Handler, Slots, peer_connection};
use super::publish::{add_kinds, add_tracks, start_sending};
use super::receive::Received;
use super::signaling::{
    Negotiation, Opened, frame, negotiate, next_text, open_signaling, read_msg,
};
use super::{Bot, BotConfig, Ended, mark_ended};

impl Bot {
    /// Joins through the controller, opens signaling, makes the peer connection and
    /// offers; once media is connected, leaves the tasks that keep the session running
    /// (signaling, the media connection's watch, sending) to the returned [`Bot`].
    pub(super) async fn join_inner(
        cfg: BotConfig,
        lost_node: Option<&str>,
        live: Option<super::Live>,
    ) -> anyhow::Result<Bot> {
        let started = Instant::now();
        let Opened {
            joined,
            welcome,
            waited,
            ws,
        } = open_signaling(&cfg, lost_node).await?;
        let field = |k: &str| -> anyhow::Result<String> {
            joined[k]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("join response without {k}"))
        };
        let (mut ws_tx, mut ws_rx) = ws.split();

        let received = Arc::new(Mutex::new(Received::new()));
        let slots = Arc::new(Mutex::new(Slots::default()));
        let (gathered_tx, mut gathered) = watch::channel(false);
        let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
        let handler = Arc::new(Handler {
            gathered: gathered_tx,
            state: state_tx,
            received: received.clone(),
            slots: slots.clone(),
            tap: live.as_ref().map(|l| l.tap.clone()),
        });
        let pc = peer_connection(handler).await?;

        let mut senders = Vec::new();
        if live.is_some() {
            senders = add_kinds(&*pc, &cfg.name, false, &[RtpCodecKind::Audio]).await?;
        } else if cfg.publish.is_some() {
            senders = add_tracks(&*pc, &cfg.name, false).await?;
        } else {
            // Something to negotiate, so that the connection comes up before anyone
            // else's tracks are offered to us.
            pc.add_transceiver_from_kind(
                RtpCodecKind::Audio,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await?;
        }

        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        gathered.wait_for(|g| *g).await.context("ICE gathering")?;
        let local = pc
            .local_description()
            .await
            .context("no local description")?;
        if let Some(view) = &cfg.view {
            ws_tx.send(frame(&ClientMsg::View(view.clone()))).await?;
        }
        ws_tx
            .send(frame(&ClientMsg::Offer { sdp: local.sdp }))
            .await?;

        let (to_node, mut outbox) = mpsc::unbounded_channel::<String>();
        let events = Arc::new(Mutex::new(Vec::new()));
        let (end, ended) = watch::channel(None::<String>);
        let end = Arc::new(end);
        let signaling = {
            let pc = pc.clone();
            let slots = slots.clone();
            let events = events.clone();
            let end = end.clone();
            tokio::spawn(async move {
                let _ended = Ended(end.clone(), "signaling closed");
                loop {
                    tokio::select! {
                        out = outbox.recv() => {
                            let Some(out) = out else { break };
                            if ws_tx.send(Message::Text(out.into())).await.is_err() {
                                break;
                            }
                        }
                        text = next_text(&mut ws_rx) => {
                            // Closed or failed: the session ends as "signaling closed".
                            let Ok(text) = text else { break };
                            // Something that is not a ServerMsg ends the session too,
                            // and the reason names it.
                            let msg = match read_msg(&text) {
                                Ok(msg) => msg,
                                Err(e) => {
                                    let why = format!("{e:#}");
                                    tracing::error!(error = %why, "unreadable signaling message");
                                    mark_ended(&end, why);
                                    break;
                                }
                            };
                            // The node's m-lines are receive slots.
                            if let ServerMsg::Offer { sdp } = &msg {
                                slots.lock().expect("slots").read_offer(sdp);
                            }
                            match negotiate(&*pc, &msg).await {
                                Ok(Negotiation::Reply(answer)) => {
                                    if ws_tx.send(frame(&answer)).await.is_err() {
                                        break;
                                    }
                                }
                                Ok(Negotiation::Other) => match msg {
                                    ServerMsg::Slots { slots: table } => {
                                        let mut s = slots.lock().expect("slots");
                                        for slot in &table {
                                            s.kinds.insert(slot.mid.clone(), slot.kind.as_str().to_owned());
                                            match &slot.participant_id {
                                                Some(p) => s.carries.insert(slot.mid.clone(), p.clone()),
                                                None => s.carries.remove(&slot.mid),
                                            };
                                        }
                                        drop(s);
                                        events.lock().expect("events").push(ServerMsg::Slots { slots: table });
                                    }
                                    // A batch of roster changes (a bot that sent a view
                                    // gets them so): each kept as if it came alone.
                                    ServerMsg::Roster { events: batch } => {
                                        events.lock().expect("events").extend(batch);
                                    }
                                    msg => events.lock().expect("events").push(msg),
                                },
                                Ok(Negotiation::Applied) => {}
                                Err(e) => tracing::warn!(error = %e, "renegotiation failed"),
                            }
                        }
                    }
                }
            })
        };

        let connected = state
            .wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            })
            .await
            .map(|s| *s)
            .context("peer connection state")?;
        if connected != RTCPeerConnectionState::Connected {
            signaling.abort();
            bail!("media connection {connected}");
        }
        let join_time = started.elapsed();
        // The media connection failing ends the session too.
        let media_watch = {
            let end = end.clone();
            tokio::spawn(async move {
                let failed = state
                    .wait_for(|s| {
                        matches!(
                            s,
                            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                        )
                    })
                    .await
                    .map(|s| *s);
                let why = match failed {
                    Ok(s) => format!("media connection {s}"),
                    Err(_) => "media connection gone".to_owned(),
                };
                mark_ended(&end, why);
            })
        };

        let (sent_audio, sent_video) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let sent_frames = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = vec![signaling, media_watch];
        let live_audio = live.is_some();
        if let Some(live) = live {
            let audio = senders.pop().context("no audio track to send on")?;
            tasks.push(super::live::start_live(audio, live.audio).await?);
        } else if let Some(clip) = &cfg.publish {
            let sent = [sent_audio.clone(), sent_video.clone()];
            tasks.extend(start_sending(clip, senders, sent, &sent_frames).await?);
        }
        Ok(Bot {
            participant_id: field("participant_id")?,
            node_id: field("node_id")?,
            join_time,
            publishing: cfg.publish.is_some() || live_audio,
            pc,
            received,
            sent_audio,
            sent_video,
            sent_frames,
            slots,
            events,
            welcome,
            waited,
            signal_url: field("signal_url")?,
            token: field("token")?,
            to_node,
            ended,
            tasks,
        })
    }
}
