//! A meeting link at work: its control stream ↔ the room and the SFU. What the SFU has
//! for the far node (our tracks, their packets, subscriptions and keyframe requests for
//! theirs) and what our participants do (join, leave, mute, chat, react, draw) goes out;
//! what the far node says comes in, and its participants and tracks are shown here as
//! if they were local. When the link ends they leave.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::ids::{MeetingId, NodeId};
use proto::v1::relay_control::Msg;
use proto::v1::{
    KeyframeRequest, LayerRequest, ParticipantGone, RelayControl, RemoteBoardClear,
    RemoteBoardUndo, RemoteChat, RemoteReaction, RemoveTrack, Unsubscribe,
};
use signaling::limits::bounded_name;
use tokio_util::sync::CancellationToken;

use super::conn::PeerConn;
use super::convert::{self, control};
use super::{LinkError, Mesh};

use crate::room::{Participant, ServerMsg};
use crate::sfu::driver::{LinkMedia, LinkSession};
use crate::sfu::{RelayEvent, SfuCommand};

/// Runs one meeting's link to `peer` until either side ends it or `stop`: our tracks
/// and participants go out, theirs come in and are shown here as local ones.
pub(super) async fn run_link(
    mesh: &Arc<Mesh>,
    conn: &Arc<PeerConn>,
    meeting: &MeetingId,
    peer: &NodeId,
    mut writer: relay::ControlWriter,
    mut reader: relay::ControlReader,
    stop: &CancellationToken,
) -> Result<(), LinkError> {
    let (session, mut events) = mesh.sfu.attach_link(meeting);
    let metrics = &mesh.metrics;
    let links_up = metrics.links.with_label_values(&[peer.as_str()]);
    links_up.inc();
    tracing::info!(%meeting, %peer, "relay link up");
    let (locals, drawn, mut room) = mesh.rooms.watch(meeting);
    let mut link = Adapter {
        mesh,
        conn,
        meeting,
        origin: session.key.0,
        media: session.media(),
        session,
        told: HashMap::new(),
        ours: HashMap::new(),
        by_conn: HashMap::new(),
        theirs: HashSet::new(),
    };
    let result: Result<(), LinkError> = async {
        for p in locals {
            writer.send(&convert::participant_msg(&p)).await?;
            link.told.insert(p.participant_id.clone(), p);
        }
        for op in drawn {
            writer
                .send(&control(Msg::BoardOp(convert::board_op_msg(op))))
                .await?;
        }
        loop {
            let out = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                e = events.recv() => match e {
                    None => return Ok(()),
                    Some(e) => link.sfu_event(e)?,
                },
                m = reader.recv() => {
                    let Some(m) = m? else { return Ok(()) };
                    if let Some(msg) = m.msg {
                        link.far(msg);
                    }
                    None
                }
                ev = room.recv() => match ev {
                    Ok(ev) => link.room_event(Arc::unwrap_or_clone(ev)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        return Err(LinkError::Lagged(n));
                    }
                    Err(_) => return Ok(()),
                },
            };
            if let Some(out) = out {
                writer.send(&out).await?;
            }
        }
    }
    .await;
    metrics.remote_tracks.sub(link.theirs.len() as i64);
    for id in link.theirs {
        conn.unroute(id);
    }
    mesh.rooms.remote_forget(meeting, link.origin);
    links_up.dec();
    drop(link.session);
    tracing::info!(%meeting, peer = %conn.peer, "relay link down");
    result
}

/// What one meeting link knows: who and what it told the far node, and which of the far
/// node's tracks it routes here.
struct Adapter<'a> {
    mesh: &'a Mesh,
    conn: &'a PeerConn,
    meeting: &'a MeetingId,
    session: LinkSession,
    media: LinkMedia,
    /// The far node, as `Rooms` knows the participants it brought.
    origin: u64,
    /// Our participants as told to the far node, by id.
    told: HashMap<String, Participant>,
    /// Our tracks: the SFU's track id -> the connection's, and back.
    ours: HashMap<u32, u32>,
    by_conn: HashMap<u32, u32>,
    /// Their tracks we route datagrams of.
    theirs: HashSet<u32>,
}

impl Adapter<'_> {
    /// What the far node is told of something the SFU has for it (a packet is sent
    /// here, as a datagram); Err when the connection is gone.
    fn sfu_event(&mut self, e: RelayEvent) -> Result<Option<RelayControl>, LinkError> {
        let msg = match e {
            RelayEvent::Media {
                track_id,
                layer,
                packet,
            } => {
                let dropped = &self.mesh.metrics.dropped_out;
                if let Some(id) = self.ours.get(&track_id)
                    && !self.conn.send(*id, layer, packet, dropped)
                {
                    return Err(LinkError::Connection(quinn::ConnectionError::LocallyClosed));
                }
                return Ok(None);
            }
            RelayEvent::Announce {
                track_id,
                participant,
                name,
                kind,
                codec,
                clock_rate,
                layers,
            } => {
                let id = self.conn.track_id();
                self.ours.insert(track_id, id);
                self.by_conn.insert(id, track_id);
                return Ok(Some(convert::announce(
                    id,
                    &participant,
                    name,
                    kind,
                    codec,
                    clock_rate,
                    layers,
                )));
            }
            // Each media node finds the speaker from the levels it gets; only sinks are told.
            RelayEvent::Speaker { .. } => return Ok(None),
            RelayEvent::Remove { track_id } => {
                let Some(id) = self.ours.remove(&track_id) else {
                    return Ok(None);
                };
                self.by_conn.remove(&id);
                Msg::Remove(RemoveTrack { track_id: id })
            }
            RelayEvent::Keyframe { track_id, layer } => Msg::Keyframe(KeyframeRequest {
                track_id,
                layer: u32::from(layer),
            }),
            RelayEvent::Layers { track_id, mask } => {
                if mask == 0 {
                    Msg::Unsubscribe(Unsubscribe { track_id })
                } else {
                    Msg::Layer(LayerRequest {
                        track_id,
                        layer: 0,
                        layers: u32::from(mask),
                        ..LayerRequest::default()
                    })
                }
            }
        };
        Ok(Some(control(msg)))
    }

    /// What the far node is told of an event of our room: what our own participants do.
    fn room_event(&mut self, ev: ServerMsg) -> Option<RelayControl> {
        let told = &mut self.told;
        let msg = match ev {
            ServerMsg::ParticipantJoined { participant } => {
                if !self
                    .mesh
                    .rooms
                    .is_local(self.meeting, &participant.participant_id)
                {
                    return None;
                }
                let msg = convert::participant_msg(&participant);
                told.insert(participant.participant_id.clone(), participant);
                return Some(msg);
            }
            ServerMsg::ParticipantLeft { participant_id } => {
                told.remove(&participant_id)?;
                Msg::ParticipantLeft(ParticipantGone { participant_id })
            }
            ServerMsg::ParticipantUpdated { participant } => {
                let p = told.get_mut(&participant.participant_id)?;
                *p = participant;
                return Some(convert::participant_msg(p));
            }
            ServerMsg::Mute {
                participant_id,
                audio_muted,
                video_muted,
            } => {
                let p = told.get_mut(&participant_id)?;
                (p.audio_muted, p.video_muted) = (audio_muted, video_muted);
                return Some(convert::participant_msg(p));
            }
            ServerMsg::Chat {
                from,
                name,
                text,
                unix_ms,
            } if told.contains_key(&from) => Msg::Chat(RemoteChat {
                from,
                name,
                text,
                unix_ms,
            }),
            ServerMsg::Reaction {
                from,
                name,
                emoji,
                unix_ms,
            } if told.contains_key(&from) => Msg::Reaction(RemoteReaction {
                from,
                name,
                emoji,
                unix_ms,
            }),
            ServerMsg::BoardDraw(op) if told.contains_key(&op.author) => {
                Msg::BoardOp(convert::board_op_msg(op))
            }
            ServerMsg::BoardUndo { author, stroke_id } if told.contains_key(&author) => {
                Msg::BoardUndo(RemoteBoardUndo { author, stroke_id })
            }
            ServerMsg::BoardClear { by, by_name } if told.contains_key(&by) => {
                Msg::BoardClear(RemoteBoardClear { by, by_name })
            }
            // The rest is not a room event, or each node works it out itself.
            _ => return None,
        };
        Some(control(msg))
    }

    /// One control message from the far node.
    fn far(&mut self, msg: Msg) {
        let (mesh, meeting, link) = (self.mesh, self.meeting, self.session.key);
        let subscribe = |track_id: u32, mask: u32| {
            if let Some(&track_id) = self.by_conn.get(&track_id) {
                self.session.send(SfuCommand::LinkSubscribe {
                    link,
                    track_id,
                    mask: (mask & 0xff) as u8,
                });
            }
        };
        match msg {
            Msg::Announce(a) => {
                let track_id = a.track_id;
                let Some(track) = convert::remote_track(a, link, meeting) else {
                    return;
                };
                if !self.theirs.insert(track_id) {
                    return;
                }
                self.conn.route(track_id, self.media.clone());
                mesh.metrics.remote_tracks.inc();
                self.session.send(track);
            }
            Msg::Remove(r) => {
                if self.theirs.remove(&r.track_id) {
                    self.conn.unroute(r.track_id);
                    mesh.metrics.remote_tracks.dec();
                    self.session.send(SfuCommand::RemoteTrackEnded {
                        link,
                        track_id: r.track_id,
                    });
                }
            }
            Msg::Subscribe(s) => {
                subscribe(s.track_id, if s.layers == 0 { 0b111 } else { s.layers })
            }
            Msg::Layer(l) => subscribe(l.track_id, l.layers),
            Msg::Unsubscribe(u) => subscribe(u.track_id, 0),
            Msg::Keyframe(k) => {
                if let Some(&track_id) = self.by_conn.get(&k.track_id) {
                    self.session.send(SfuCommand::LinkKeyframe {
                        link,
                        track_id,
                        layer: k.layer.min(2) as u8,
                    });
                }
            }
            Msg::Participant(p) => {
                mesh.rooms
                    .remote_upsert(meeting, self.origin, convert::participant(p))
            }
            Msg::ParticipantLeft(p) => {
                mesh.rooms
                    .remote_leave(meeting, self.origin, &p.participant_id)
            }
            Msg::Chat(c) => {
                if !mesh.rooms.is_local(meeting, &c.from)
                    && let Some(chat) = convert::chat(c)
                {
                    mesh.rooms.publish(meeting, chat);
                }
            }
            Msg::Reaction(r) => {
                if !mesh.rooms.is_local(meeting, &r.from)
                    && let Some(reaction) = convert::reaction(r)
                {
                    mesh.rooms.publish(meeting, reaction);
                }
            }
            Msg::BoardOp(o) => {
                if !mesh.rooms.is_local(meeting, &o.author)
                    && let Some(op) = convert::board_op(o)
                {
                    // A full board here refuses it as it would our own participants'.
                    let _ = mesh.rooms.board_draw(meeting, op, false);
                }
            }
            Msg::BoardUndo(u) => {
                if !mesh.rooms.is_local(meeting, &u.author) {
                    mesh.rooms.board_undo(meeting, &u.author, u.stroke_id);
                }
            }
            Msg::BoardClear(c) => {
                if !mesh.rooms.is_local(meeting, &c.by) {
                    mesh.rooms
                        .board_clear(meeting, &c.by, &bounded_name(c.by_name));
                }
            }
            // For sinks; a media node finds the speaker itself.
            Msg::Hello(_) | Msg::Speaker(_) => {}
        }
    }
}
