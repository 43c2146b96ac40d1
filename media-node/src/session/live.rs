//! A participant's session in the meeting, after `welcome`: the adapter between its
//! WebSocket and the meeting. What the participant's messages mean is decided by the
//! meeting core (`crate::meeting`); this carries the outputs out (the room, the SFU, the
//! store) and tells the client what the room, the hosts, the polls and the SFU say.
use axum::extract::ws::{Message, WebSocket};
use common::token::JoinClaims;
use signaling::{Participant, Role, ServerMsg, Welcome, parse_client};
use tokio::sync::{broadcast, mpsc, watch};

use super::frames::{
    BROKE, CLIENT_CLOSED, Ending, LEFT, closed_here, closing, error_msg, frame, media_failed,
    refused, shutting_down, signal_msg, tell_changes,
};
use super::roster;
use crate::Node;
use crate::collab::{self, CollabState};
use crate::hosts::{self, Action, Actor, RoomState};
use crate::meeting::news::{self, Effect};
use crate::meeting::participant::LOCAL_RECORDING_FORBIDDEN;
use crate::meeting::{Allowances, Ctx, Output, host_controls};
use crate::room::Membership;
use crate::sfu::driver::SfuSession;
use crate::sfu::{SfuCommand, SignalOut};
use crate::webinar;

/// A step of the session: on, or ended (and why).
type Step = Result<(), Ending>;

async fn send(ws: &mut WebSocket, msg: &ServerMsg) -> Step {
    ws.send(frame(msg)).await.map_err(|_| BROKE)
}

/// What the session keeps between messages.
struct Live<'a> {
    node: &'a Node,
    claims: &'a JoinClaims,
    sfu: SfuSession,
    me: Participant,
    webinar: bool,
    /// Whether the participant may publish (a webinar's attendees may not).
    publishes: bool,
    /// Who the client has been shown (webinars hide attendees from attendees).
    shown: webinar::Shown,
    /// The newest host action seen, and the `room`, `breakout`, `polls` and `questions`
    /// messages as last told (each is sent again when it changes).
    last_seq: u64,
    room_msg: ServerMsg,
    breakout_msg: ServerMsg,
    told_collab: [ServerMsg; 2],
    allowances: Allowances,
    /// Once the client is on receive slots, its roster changes go in batches.
    roster: Option<super::roster::RosterBatch>,
}

/// The session in the meeting, until it ends; why.
pub(super) async fn in_meeting(
    node: &Node,
    claims: &JoinClaims,
    membership: &mut Membership,
    room: &mut watch::Receiver<RoomState>,
    collab: &mut watch::Receiver<CollabState>,
    ws: &mut WebSocket,
) -> Ending {
    let (sfu, mut from_sfu) = node.sfu.register(&claims.mtg);
    let mut live = Live::new(node, claims, sfu, room, collab);
    let why = match live.welcome(ws, membership).await {
        Ok(()) => live.run(ws, membership, room, collab, &mut from_sfu).await,
        Err(why) => why,
    };
    live.sfu.send(SfuCommand::Leave { key: live.sfu.key });
    // A host who went (not one the node closed) hands the role over.
    if live.me.role == Role::Host && matches!(why, Ending::Client(_)) {
        hand_over(node, claims, &live.me).await;
    }
    why
}

impl<'a> Live<'a> {
    fn new(
        node: &'a Node,
        claims: &'a JoinClaims,
        sfu: SfuSession,
        room: &mut watch::Receiver<RoomState>,
        collab: &mut watch::Receiver<CollabState>,
    ) -> Self {
        let (meeting, my_id) = (&claims.mtg, claims.sub.as_str());
        // The first offer makes the peer connection; until one is accepted, every offer
        // is a first one (a refused offer leaves the session usable).
        sfu.send(SfuCommand::Join {
            key: sfu.key,
            meeting: meeting.clone(),
            participant: claims.sub.clone(),
            name: claims.name.clone(),
        });
        let me = node.rooms.member(meeting, my_id).unwrap_or_default();
        // A webinar's attendees publish nothing: refused offers that send, and whatever
        // their client sends anyway is dropped in the SFU (as if muted).
        let webinar = room.borrow().webinar;
        let publishes = webinar::may_publish(webinar, me.role);
        if !publishes {
            sfu.send(SfuCommand::Mute {
                key: sfu.key,
                audio: true,
                video: true,
            });
        }
        let (last_seq, room_msg, breakout_msg) = {
            let r = room.borrow_and_update();
            (
                r.last_seq(),
                r.message(),
                r.breakout_message(my_id, common::unix_ms()),
            )
        };
        let told_collab = collab_msgs(&collab.borrow_and_update(), my_id, me.is_host());
        Live {
            node,
            claims,
            sfu,
            me,
            webinar,
            publishes,
            shown: webinar::Shown::default(),
            last_seq,
            room_msg,
            breakout_msg,
            told_collab,
            allowances: Allowances::new(std::time::Instant::now()),
            roster: None,
        }
    }

    fn my_id(&self) -> &'a str {
        self.claims.sub.as_str()
    }

    /// Everyone in the meeting its participant may be shown, in the roster's order.
    fn others(&self) -> Vec<Participant> {
        let my_id = self.my_id();
        let visible = self
            .node
            .rooms
            .members(&self.claims.mtg)
            .into_iter()
            .filter(|p| p.participant_id != my_id && webinar::visible(self.webinar, &self.me, p))
            .collect();
        roster::in_order(visible)
    }

    /// `welcome` and what comes with it: the room, the breakout rooms (if any), the
    /// polls and questions, the whiteboard.
    async fn welcome(&mut self, ws: &mut WebSocket, membership: &Membership) -> Step {
        let (node, meeting, my_id) = (self.node, &self.claims.mtg, self.my_id());
        let others = self.others();
        // Every participant the client may be shown is known to be shown (their changes
        // reach it), though the welcome lists only the first page of them.
        self.shown = webinar::Shown::new(&others);
        let participant_count = u32::try_from(others.len()).unwrap_or(u32::MAX);
        let welcome = ServerMsg::Welcome(Welcome {
            version: signaling::VERSION,
            meeting_id: meeting.as_str().to_owned(),
            participant_id: my_id.to_owned(),
            name: self.me.name.clone(),
            role: self.me.role,
            node_id: node.id.as_str().to_owned(),
            participants: roster::page(&others, 0),
            participant_count,
            active_speaker: membership.active_speaker.clone(),
        });
        tracing::info!(role = %self.me.role, "session started");
        send(ws, &welcome).await?;
        send(ws, &self.room_msg).await?;
        if matches!(&self.breakout_msg, ServerMsg::Breakout(b) if !b.rooms.is_empty()) {
            send(ws, &self.breakout_msg).await?;
        }
        for m in &self.told_collab {
            send(ws, m).await?;
        }
        let board = ServerMsg::Board {
            ops: node.rooms.board(meeting),
        };
        send(ws, &board).await
    }

    async fn run(
        &mut self,
        ws: &mut WebSocket,
        membership: &mut Membership,
        room: &mut watch::Receiver<RoomState>,
        collab: &mut watch::Receiver<CollabState>,
        from_sfu: &mut mpsc::UnboundedReceiver<SignalOut>,
    ) -> Ending {
        let mut collab_live = true;
        loop {
            let roster_due = self.roster.as_ref().and_then(|r| r.due());
            // Breakout rooms closing: tell the client when the countdown runs out — at
            // once if it ran out while this loop handled something else (a media node
            // fills everyone's slots anew right then), unless it was told already.
            let closes_in = {
                let room = room.borrow();
                room.closing_at()
                    .map(|c| c - common::unix_ms())
                    .and_then(|ms| match ms {
                        0.. => Some(std::time::Duration::from_millis(ms as u64 + 1)),
                        _ => (room.breakout_message(self.my_id(), common::unix_ms())
                            != self.breakout_msg)
                            .then_some(std::time::Duration::ZERO),
                    })
            };
            // Biased: when the node ends the session (fenced, closed here) the room's
            // events end too, and the client must be told the code, not a broken link.
            let step = tokio::select! {
                biased;
                _ = self.node.shutdown.cancelled() => Err(closing(ws, shutting_down()).await),
                ended = membership.session.ended() => Err(closing(ws, ended).await),
                _ = async {
                    match closes_in {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = room.borrow().breakout_message(self.my_id(), common::unix_ms());
                    tell_changes(ws, [&mut self.breakout_msg], [now]).await
                }
                changed = room.changed() => match changed {
                    Err(_) => Err(closing(ws, closed_here()).await),
                    Ok(()) => self.on_room(ws, room, collab).await,
                },
                changed = collab.changed(), if collab_live => match changed {
                    Err(_) => {
                        collab_live = false;
                        Ok(())
                    }
                    Ok(()) => {
                        let now = collab_msgs(&collab.borrow_and_update(), self.my_id(), self.me.is_host());
                        tell_changes(ws, self.told_collab.each_mut(), now).await
                    }
                },
                ev = membership.events.recv() => match ev {
                    Ok(ev) => self.on_event(ws, room, std::sync::Arc::unwrap_or_clone(ev)).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "signaling session fell behind its room's events");
                        Ok(())
                    }
                    Err(_) => Err(BROKE),
                },
                sig = from_sfu.recv() => match sig {
                    Some(SignalOut::Closed(reason)) => Err(closing(ws, media_failed(reason)).await),
                    Some(msg) => send(ws, &signal_msg(msg)).await,
                    None => Err(BROKE),
                },
                msg = ws.recv() => self.on_client(ws, room, msg).await,
                _ = async {
                    match roster_due {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => match self.roster.as_mut().and_then(|r| r.take(tokio::time::Instant::now())) {
                    Some(batch) => send(ws, &batch).await,
                    None => Ok(()),
                },
            };
            if let Err(why) = step {
                return why;
            }
        }
    }

    /// Our own mute state, here and in the SFU (which also mutes whoever may not
    /// publish).
    fn set_muted(&mut self, audio: bool, video: bool) {
        let (meeting, my_id) = (&self.claims.mtg, self.my_id());
        self.node.rooms.update(meeting, my_id, |p| {
            p.audio_muted = audio;
            p.video_muted = video;
        });
        (self.me.audio_muted, self.me.video_muted) = (audio, video);
        self.sfu.send(SfuCommand::Mute {
            key: self.sfu.key,
            audio: audio || !self.publishes,
            video: video || !self.publishes,
        });
    }

    /// The meeting's hosts decided something (here or on another node).
    async fn on_room(
        &mut self,
        ws: &mut WebSocket,
        room: &mut watch::Receiver<RoomState>,
        collab: &watch::Receiver<CollabState>,
    ) -> Step {
        let (node, meeting, my_id) = (self.node, &self.claims.mtg, self.my_id());
        let (news, recording_allowed) = {
            let r = room.borrow_and_update();
            let news = r.news_for(
                my_id,
                self.claims.role,
                &self.claims.name,
                self.last_seq,
                common::unix_ms(),
            );
            (news, r.local_recording_allowed())
        };
        if news.ended {
            return Err(closing(ws, refused(hosts::ENDED)).await);
        }
        if let Some(removed) = news.refusal {
            return Err(closing(ws, refused(removed)).await);
        }
        if news.role != self.me.role || news.name != self.me.name {
            let (role, name) = (news.role, news.name.clone());
            if let Some(now) = node.rooms.update(meeting, my_id, |p| {
                p.role = role;
                p.name = name;
            }) {
                self.me = now;
            }
            // A new host sees drafts and results; one no more does not.
            let now = collab_msgs(&collab.borrow(), my_id, self.me.is_host());
            tell_changes(ws, self.told_collab.each_mut(), now).await?;
            // A webinar's attendee made panelist publishes (and sees the other
            // attendees); a panelist made attendee stops.
            if webinar::may_publish(self.webinar, self.me.role) != self.publishes {
                self.publishes = !self.publishes;
                self.set_muted(self.me.audio_muted, self.me.video_muted);
                tracing::info!(role = %self.me.role, publishes = self.publishes, "webinar role changed");
            }
            let members = node.rooms.members(meeting);
            for ev in self.shown.resync(self.webinar, &self.me, &members) {
                send(ws, &ev).await?;
            }
        }
        for logged in &news.actions {
            let Some(action) = Action::from_record(logged) else {
                continue;
            };
            for effect in news::effects(&self.me, action, logged.by_name.clone()) {
                match effect {
                    Effect::MutedByHost {
                        audio,
                        video,
                        by_name,
                    } => {
                        self.set_muted(audio, video);
                        let told = ServerMsg::MutedByHost {
                            audio_muted: audio,
                            video_muted: video,
                            by_name,
                        };
                        send(ws, &told).await?;
                    }
                    Effect::Tell(msg) => send(ws, &msg).await?,
                    Effect::LowerHand => {
                        node.rooms
                            .update(meeting, my_id, |p| p.hand_raised_unix_ms = None);
                    }
                }
            }
        }
        // Hosts forbade recording on participants' computers: one who records is told to
        // stop, and everyone is shown they stopped.
        if self.me.local_recording && !self.me.is_host() && !recording_allowed {
            if let Some(now) = node
                .rooms
                .update(meeting, my_id, |p| p.local_recording = false)
            {
                self.me = now;
            }
            let told = ServerMsg::LocalRecordingStop {
                reason: LOCAL_RECORDING_FORBIDDEN.to_owned(),
            };
            send(ws, &told).await?;
        }
        self.last_seq = news.last_seq;
        tell_changes(
            ws,
            [&mut self.breakout_msg, &mut self.room_msg],
            [news.breakout_msg, news.room_msg],
        )
        .await
    }

    /// Something everyone in the meeting hears about (a join, chat, a mute…).
    async fn on_event(
        &mut self,
        ws: &mut WebSocket,
        room: &watch::Receiver<RoomState>,
        ev: ServerMsg,
    ) -> Step {
        let my_id = self.my_id();
        match &ev {
            ServerMsg::ParticipantJoined { participant } if participant.participant_id == my_id => {
                return Ok(());
            }
            ServerMsg::ParticipantUpdated { participant }
                if participant.participant_id == my_id =>
            {
                self.me = participant.clone();
            }
            _ => {}
        }
        let (other_room, chat_everyone) = {
            let r = room.borrow();
            // Chat and reactions stay in their breakout room.
            let other_room = match &ev {
                ServerMsg::Chat { from, .. } | ServerMsg::Reaction { from, .. } => {
                    let now = common::unix_ms();
                    r.group_of(from, now) != r.group_of(my_id, now)
                }
                _ => false,
            };
            (other_room, r.attendee_chat_everyone())
        };
        if other_room {
            return Ok(());
        }
        match self
            .shown
            .filter(self.webinar, chat_everyone, &self.me, &ev)
        {
            Some(ev) if super::roster::is_roster(&ev) && self.roster.is_some() => {
                let now = tokio::time::Instant::now();
                match self.roster.as_mut().and_then(|r| r.add(ev, now)) {
                    Some(batch) => send(ws, &batch).await,
                    None => Ok(()),
                }
            }
            Some(ev) => send(ws, &ev).await,
            None => Ok(()),
        }
    }

    /// What the client sent.
    async fn on_client(
        &mut self,
        ws: &mut WebSocket,
        room: &watch::Receiver<RoomState>,
        msg: Option<Result<Message, axum::Error>>,
    ) -> Step {
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) => return Err(CLIENT_CLOSED),
            Some(Err(_)) | None => return Err(BROKE),
            Some(Ok(Message::Binary(_))) => {
                let refusal = error_msg("binary", "binary messages are not part of the protocol");
                return ws.send(refusal).await.map_err(|_| BROKE);
            }
            Some(Ok(_)) => return Ok(()),
        };
        let parsed = match parse_client(&text) {
            Ok(m) => m,
            Err(e) => {
                return ws
                    .send(error_msg(&e.answers, e.message))
                    .await
                    .map_err(|_| BROKE);
            }
        };
        let outputs = {
            let room = room.borrow();
            let members = || self.node.rooms.members(&self.claims.mtg);
            let ctx = Ctx {
                me: &self.me,
                publishes: self.publishes,
                room: &room,
                members: &members,
                now_ms: common::unix_ms(),
                now: std::time::Instant::now(),
            };
            crate::meeting::handle(&ctx, &mut self.allowances, parsed)
        };
        for out in outputs {
            self.carry_out(ws, out).await?;
        }
        Ok(())
    }

    /// Carries out what the meeting core decided.
    async fn carry_out(&mut self, ws: &mut WebSocket, out: Output) -> Step {
        let (node, meeting, my_id) = (self.node, &self.claims.mtg, self.my_id());
        let key = self.sfu.key;
        let refusal = match out {
            Output::Refuse { answers, message } => {
                // Refusals of host actions and polls are rare; of chat, reactions and
                // whiteboard segments a flood would be a line each: debug.
                tracing::debug!(message = %message, request = answers, "request refused");
                Some((answers, message))
            }
            Output::Publish(ev) => {
                node.rooms.publish(meeting, ev);
                None
            }
            Output::Mute { audio, video } => {
                self.set_muted(audio, video);
                None
            }
            Output::RaiseHand(at) => {
                node.rooms.update(meeting, my_id, |p| {
                    p.hand_raised_unix_ms.get_or_insert(at);
                });
                None
            }
            Output::LowerHand => {
                node.rooms
                    .update(meeting, my_id, |p| p.hand_raised_unix_ms = None);
                None
            }
            Output::LocalRecording(recording) => {
                if let Some(now) = node
                    .rooms
                    .update(meeting, my_id, |p| p.local_recording = recording)
                {
                    self.me = now;
                }
                tracing::info!(recording, "local recording");
                None
            }
            Output::Offer(sdp) => {
                self.sfu.send(SfuCommand::Offer { key, sdp });
                None
            }
            Output::Answer(sdp) => {
                self.sfu.send(SfuCommand::Answer { key, sdp });
                None
            }
            Output::View(view) => {
                self.sfu.send(SfuCommand::View { key, view });
                // A client on slots takes its roster in batches.
                self.roster.get_or_insert_with(Default::default);
                None
            }
            Output::RosterPage(from) => {
                let others = self.others();
                let page = ServerMsg::RosterPage {
                    from,
                    total: u32::try_from(others.len()).unwrap_or(u32::MAX),
                    participants: roster::page(&others, from),
                };
                send(ws, &page).await?;
                None
            }
            Output::Layer { mid, width, height } => {
                let rid = crate::sfu::layer_for_size(width, height);
                self.sfu.send(SfuCommand::Layer { key, mid, rid });
                None
            }
            Output::Draw(mut op) => {
                // Unique, and exact as a JavaScript number (below 2^53).
                op.op_id = rand::random::<u64>() >> 11;
                node.rooms
                    .board_draw(meeting, op, true)
                    .err()
                    .map(|m| ("board_draw", m.to_owned()))
            }
            Output::Undo(stroke_id) => {
                (!node.rooms.board_undo(meeting, my_id, stroke_id)).then(|| {
                    let message = format!("you have no stroke {stroke_id} on the whiteboard");
                    ("board_undo", message)
                })
            }
            Output::ClearBoard => {
                node.rooms.board_clear(meeting, my_id, &self.me.name);
                None
            }
            Output::Act { answers, actions } => {
                let actor = self.actor();
                match node.hosts.act(meeting, &actor, &actions).await {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::info!(message = %e, action = answers, "host action refused");
                        Some((answers, e.to_string()))
                    }
                }
            }
            Output::Collab { answers, op } => {
                let who = collab::Who {
                    id: my_id.to_owned(),
                    name: self.me.name.clone(),
                    role: self.me.role,
                };
                match node.collab.submit(meeting, who, op).await {
                    Ok(_) => None,
                    Err(message) => {
                        tracing::info!(message = %message, request = answers, "poll or Q&A request refused");
                        Some((answers, message))
                    }
                }
            }
            Output::Leave => return Err(LEFT),
        };
        match refusal {
            Some((answers, message)) => ws
                .send(error_msg(answers, message))
                .await
                .map_err(|_| BROKE),
            None => Ok(()),
        }
    }

    fn actor(&self) -> Actor {
        Actor {
            id: self.my_id().to_owned(),
            name: self.me.name.clone(),
            role: self.me.role,
        }
    }
}

/// The `polls` and `questions` messages for `me` (what a host sees differs).
fn collab_msgs(c: &CollabState, me: &str, host: bool) -> [ServerMsg; 2] {
    [
        collab::polls_message(&c.rec, me, host),
        collab::questions_message(&c.rec, me, host),
    ]
}

/// A host leaves: the host role goes to their heir ([`host_controls::heir`]), if any.
async fn hand_over(node: &Node, claims: &JoinClaims, me: &Participant) {
    let members = node.rooms.members(&claims.mtg);
    let Some(heir) = host_controls::heir(&members, &me.participant_id) else {
        return;
    };
    let actor = Actor {
        id: me.participant_id.clone(),
        name: me.name.clone(),
        role: me.role,
    };
    let give = Action::SetRole {
        target: heir.participant_id.clone(),
        role: Role::Host,
    };
    match node.hosts.act(&claims.mtg, &actor, &[give]).await {
        Ok(()) => {
            tracing::info!(heir = %heir.participant_id, "the host left: handed the host role over")
        }
        Err(e) => {
            tracing::warn!(error = %e, "the host left but the host role could not be handed over")
        }
    }
}
