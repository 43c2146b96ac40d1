//! The signaling endpoint, `GET /signal/{meeting}?token=...` (WebSocket). The join token is
//! checked before anything else: a refused token never reaches the upgrade.
//! After the upgrade the session speaks the JSON protocol of `docs/signaling.md`: SDP
//! offer/answer with the SFU, the room's participant list, chat and mute state.
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::ids::MeetingId;
use common::token::{JoinClaims, TokenError};
use serde::Deserialize;

use crate::collab::{self, CollabState};
use crate::hosts::{self, Action, Actor, RoomState};
use crate::meeting::participant::LOCAL_RECORDING_FORBIDDEN;
use crate::meeting::{Output, host_controls};
use crate::room::{Close, Participant, ServerMsg};
use crate::sfu::{SfuCommand, SignalOut};
use crate::webinar;
use signaling::{ClientMsg, CloseCode, MediaKind, Role, parse_client};

use crate::Node;

#[derive(Deserialize)]
pub struct SignalQuery {
    token: Option<String>,
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/signal/{meeting}", get(signal))
        .with_state(node)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": code, "message": message.into() })),
    )
        .into_response()
}

async fn signal(
    State(node): State<Arc<Node>>,
    Path(meeting): Path<String>,
    Query(q): Query<SignalQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // Counted by reason, answered 401.
    let refuse = |reason: &str, message: String| {
        node.metrics
            .tokens_refused
            .with_label_values(&[reason])
            .inc();
        error(StatusCode::UNAUTHORIZED, "unauthorized", message)
    };
    let Some(token) = q.token else {
        return refuse("missing", "a join token is required (?token=...)".into());
    };
    let Ok(meeting) = MeetingId::parse(&meeting) else {
        return refuse("wrong_meeting", TokenError::WrongMeeting.to_string());
    };
    let now = common::unix_ms() as u64 / 1000;
    let claims = match node.verifier.verify(&token, &meeting, now) {
        Ok(c) => c,
        Err(e) => {
            let reason = match e {
                TokenError::Expired => "expired",
                TokenError::WrongNode => "wrong_node",
                TokenError::WrongMeeting => "wrong_meeting",
                TokenError::BadSignature | TokenError::UnknownKey => "forged",
                _ => "malformed",
            };
            return refuse(reason, e.to_string());
        }
    };
    // Self-fencing: a node that cannot renew its lease may already have been replaced.
    if let Err(why) = node.registration.check() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("this media node is fenced: {why}"),
        );
    }
    // Only a meeting the controller placed here and has not closed: a token that outlived
    // its meeting, or a restart of this node, goes back to the controller for a new join.
    // A join that raced its meeting's first join may arrive before the controller's
    // PrepareMeeting: it waits a moment for it.
    let prepared_by = tokio::time::Instant::now() + PREPARE_GRACE;
    while !node.hosts(&meeting) && tokio::time::Instant::now() < prepared_by {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if !node.hosts(&meeting) {
        return error(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "meeting {meeting} is not hosted on this node (it ended or moved): join it again"
            ),
        );
    }
    // What the meeting's hosts decided: read from etcd when the meeting was prepared
    // here, and followed since.
    let mut room = node.hosts.follow(&meeting);
    let loaded = tokio::time::timeout(PREPARE_GRACE, room.wait_for(|r| r.loaded()))
        .await
        .is_ok_and(|r| r.is_ok());
    if !loaded {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this meeting's settings cannot be read right now (cluster state unreachable): try again",
        );
    }
    let refusal = {
        let r = room.borrow_and_update();
        if r.rec.ended {
            Some((StatusCode::CONFLICT, hosts::ENDED))
        } else {
            r.refusal(claims.sub.as_str())
                .map(|why| (StatusCode::FORBIDDEN, why))
        }
    };
    if let Some((status, refusal)) = refusal {
        let (code, why) = (refusal.http_code(), refusal.message);
        tracing::info!(meeting_id = %meeting, participant_id = %claims.sub, reason = why, "session refused");
        return error(status, code, why);
    }
    if !node
        .rooms
        .has_room(&meeting, &claims.sub, node.max_participants)
    {
        return error(
            StatusCode::CONFLICT,
            "meeting_full",
            format!(
                "meeting {meeting} is full: it has its maximum of {} participants",
                node.max_participants
            ),
        );
    }
    match upgrade {
        Ok(up) => {
            use tracing::Instrument;
            // The ids the controller's lines about this join carry too.
            let span = tracing::info_span!(
                "session",
                meeting_id = %claims.mtg,
                participant_id = %claims.sub
            );
            up.on_upgrade(move |ws| session(node, claims, room, ws).instrument(span))
        }
        Err(_) => error(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "token accepted; expected a WebSocket upgrade",
        ),
    }
}

/// How long a session waits for its meeting to be prepared here before it is refused.
const PREPARE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// A message as its text frame.
fn frame(msg: &ServerMsg) -> Message {
    Message::Text(msg.to_json().into())
}

/// An `error` message; `answers` is the type of the client message it refuses.
fn error_msg(answers: &str, message: impl Into<String>) -> Message {
    frame(&ServerMsg::error(answers, message))
}

/// What the SFU says to a session's client, as its message (a closed peer connection
/// is the session's end, handled apart).
fn signal_msg(msg: SignalOut) -> ServerMsg {
    match msg {
        SignalOut::Answer(sdp) => ServerMsg::Answer { sdp },
        SignalOut::Offer(sdp) => ServerMsg::Offer { sdp },
        SignalOut::Track {
            mid,
            participant,
            kind,
        } => ServerMsg::Track {
            mid,
            participant_id: participant.as_str().to_owned(),
            kind: if kind == "audio" {
                MediaKind::Audio
            } else {
                MediaKind::Video
            },
        },
        SignalOut::TrackRemoved { mid } => ServerMsg::TrackRemoved { mid },
        SignalOut::Error { answers, message } => ServerMsg::error(answers, message),
        SignalOut::Closed(why) => media_failed(why).message(),
    }
}

/// The session's end when its peer connection failed or closed.
fn media_failed(why: String) -> Close {
    Close::new(CloseCode::MediaFailed, why)
}

/// Sends each message of `now` that differs from the one last told (`last`, updated);
/// false when the connection broke.
async fn tell_changes<const N: usize>(
    ws: &mut WebSocket,
    last: [&mut ServerMsg; N],
    now: [ServerMsg; N],
) -> bool {
    for (last, now) in last.into_iter().zip(now) {
        if now != *last {
            *last = now;
            if ws.send(frame(last)).await.is_err() {
                return false;
            }
        }
    }
    true
}

/// Why a session ended.
#[derive(Clone, Debug)]
enum Ending {
    /// The client left, closed signaling, or its connection broke (says which).
    Client(&'static str),
    /// The node ended it and told the client why.
    Closed(Close),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Client(how) => f.write_str(how),
            Ending::Closed(c) => write!(f, "{:?}: {}", c.code, c.reason),
        }
    }
}

const LEFT: Ending = Ending::Client("the client left");
const CLIENT_CLOSED: Ending = Ending::Client("the client closed signaling");
const BROKE: Ending = Ending::Client("the client's connection broke");

/// Sends `closed` saying `why`, and returns it.
async fn closing(ws: &mut WebSocket, why: Close) -> Ending {
    let _ = ws.send(frame(&why.message())).await;
    Ending::Closed(why)
}

fn shutting_down() -> Close {
    Close::new(CloseCode::Shutdown, "media node shutting down")
}

fn closed_here() -> Close {
    Close::new(
        CloseCode::ClosedHere,
        "the meeting closed on this media node: join again",
    )
}

/// A host's refusal (removed, denied, ended) as the session's end.
fn refused(r: hosts::Refusal) -> Close {
    Close::new(r.code, r.message)
}

async fn session(
    node: Arc<Node>,
    claims: JoinClaims,
    mut room: tokio::sync::watch::Receiver<RoomState>,
    mut ws: WebSocket,
) {
    let (me, waits) = {
        let r = room.borrow_and_update();
        let id = claims.sub.as_str();
        let role = r.role_of(id, claims.role);
        let waits = r.waiting_room() && !role.is_host() && !r.admitted(id);
        let me = Participant {
            participant_id: id.to_owned(),
            name: r.name_of(id, &claims.name).to_owned(),
            role,
            waiting: waits,
            joined_unix_ms: common::unix_ms(),
            ..Participant::default()
        };
        (me, waits)
    };
    // Checked before the upgrade too; this catches joins that raced for the last place.
    let mut membership =
        match node
            .rooms
            .try_join(&claims.mtg, &claims.sub, me.clone(), node.max_participants)
        {
            Ok(m) => m,
            Err(max) => {
                let why = format!("the meeting is full: it has its maximum of {max} participants");
                tracing::info!(reason = %why, "session refused");
                let _ = closing(&mut ws, Close::new(CloseCode::Full, why)).await;
                let _ = ws.send(Message::Close(None)).await;
                return;
            }
        };
    node.participant_joined(&claims.mtg);
    let waited = if waits {
        wait_for_host(&node, &me, &mut membership, &mut room, &mut ws).await
    } else {
        None
    };
    let why = match waited {
        Some(why) => why,
        None => {
            let mut collab = node.collab.follow(&claims.mtg);
            let present = crate::attendance::Present::arrived(
                node.store.clone(),
                &node.id,
                node.shutdown.clone(),
                &claims,
                &me.name,
                me.role,
            );
            let why = in_meeting(
                &node,
                &claims,
                &mut membership,
                &mut room,
                &mut collab,
                &mut ws,
            )
            .await;
            present.left();
            why
        }
    };
    node.rooms.leave(&membership);
    node.participant_left(&claims.mtg);
    let _ = ws.send(Message::Close(None)).await;
    tracing::info!(reason = %why, "session ended");
}

/// A participant in the waiting room: told so (`waiting`), given no media and no one's
/// news, until a host admits them (None: go on into the meeting) or turns them away, or
/// the session ends otherwise (why).
async fn wait_for_host(
    node: &Node,
    me: &Participant,
    membership: &mut crate::room::Membership,
    room: &mut tokio::sync::watch::Receiver<RoomState>,
    ws: &mut WebSocket,
) -> Option<Ending> {
    let hello = ServerMsg::Waiting {
        version: signaling::VERSION,
        meeting_id: membership.meeting.as_str().to_owned(),
        participant_id: me.participant_id.clone(),
        name: me.name.clone(),
        title: room.borrow().title.clone(),
    };
    if ws.send(frame(&hello)).await.is_err() {
        return Some(BROKE);
    }
    tracing::info!("waiting for a host to let them in");
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => return Some(closing(ws, shutting_down()).await),
            why = membership.session.ended() => return Some(closing(ws, why).await),
            changed = room.changed() => {
                if changed.is_err() {
                    return Some(closing(ws, closed_here()).await);
                }
                let (ended, refusal, admitted) = {
                    let r = room.borrow_and_update();
                    let id = me.participant_id.as_str();
                    (r.rec.ended, r.refusal(id), r.admitted(id) || !r.waiting_room())
                };
                if ended {
                    return Some(closing(ws, refused(hosts::ENDED)).await);
                }
                if let Some(why) = refusal {
                    return Some(closing(ws, refused(why)).await);
                }
                if admitted {
                    node.rooms.update(&membership.meeting, &me.participant_id, |p| p.waiting = false);
                    tracing::info!("admitted from the waiting room");
                    return None;
                }
            }
            msg = ws.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let refusal = match parse_client(&t) {
                        Ok(ClientMsg::Leave {}) => return Some(LEFT),
                        Ok(m) => error_msg(m.kind(), "you are in the waiting room: a host has not let you in yet"),
                        Err(e) => error_msg(&e.answers, e.message),
                    };
                    if ws.send(refusal).await.is_err() {
                        return Some(BROKE);
                    }
                }
                Some(Ok(Message::Close(_))) => return Some(CLIENT_CLOSED),
                Some(Err(_)) | None => return Some(BROKE),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// A participant's session in the meeting: media, the room's news, host actions; ends
/// with why.
async fn in_meeting(
    node: &Node,
    claims: &JoinClaims,
    membership: &mut crate::room::Membership,
    room: &mut tokio::sync::watch::Receiver<RoomState>,
    collab: &mut tokio::sync::watch::Receiver<CollabState>,
    ws: &mut WebSocket,
) -> Ending {
    let meeting = &claims.mtg;
    let my_id = claims.sub.as_str();
    let (sfu, mut from_sfu) = node.sfu.register(meeting);
    let key = sfu.key;
    // The first offer makes the peer connection; until one is accepted, every offer is
    // a first one (a refused offer leaves the session usable).
    sfu.send(SfuCommand::Join {
        key,
        meeting: meeting.clone(),
        participant: claims.sub.clone(),
        name: claims.name.clone(),
    });
    let mut me = node.rooms.member(meeting, my_id).unwrap_or_default();
    // A webinar's attendees publish nothing: refused offers that send, and whatever
    // their client sends anyway is dropped in the SFU (as if muted).
    let webinar = room.borrow().webinar;
    let mut publishes = webinar::may_publish(webinar, me.role);
    if !publishes {
        sfu.send(SfuCommand::Mute {
            key,
            audio: true,
            video: true,
        });
    }
    // The `room` and `breakout` messages as last told: sent again when they change.
    let (mut last_seq, mut room_msg, mut breakout_msg, breakouts) = {
        let r = room.borrow_and_update();
        (
            r.last_seq(),
            r.message(),
            r.breakout_message(my_id, common::unix_ms()),
            !r.rec.breakout_rooms.is_empty(),
        )
    };
    let others: Vec<Participant> = node
        .rooms
        .members(meeting)
        .into_iter()
        .filter(|p| p.participant_id != my_id && webinar::visible(webinar, &me, p))
        .collect();
    let mut shown = webinar::Shown::new(&others);
    let welcome = ServerMsg::Welcome {
        version: signaling::VERSION,
        meeting_id: meeting.as_str().to_owned(),
        participant_id: my_id.to_owned(),
        name: me.name.clone(),
        role: me.role,
        node_id: node.id.as_str().to_owned(),
        participants: others,
        active_speaker: membership.active_speaker.clone(),
    };
    tracing::info!(role = %me.role, "session started");
    let mut ok = ws.send(frame(&welcome)).await.is_ok() && ws.send(frame(&room_msg)).await.is_ok();
    if breakouts {
        ok &= ws.send(frame(&breakout_msg)).await.is_ok();
    }
    // The `polls` and `questions` messages as last told (what a host sees differs).
    let collab_msgs = |c: &CollabState, host: bool| {
        [
            collab::polls_message(&c.rec, my_id, host),
            collab::questions_message(&c.rec, my_id, host),
        ]
    };
    let mut told_collab = collab_msgs(&collab.borrow_and_update(), me.is_host());
    for m in &told_collab {
        ok &= ws.send(frame(m)).await.is_ok();
    }
    let board = ServerMsg::Board {
        ops: node.rooms.board(meeting),
    };
    ok &= ws.send(frame(&board)).await.is_ok();
    let mut collab_live = true;
    let mut why = BROKE;
    let mut allowances = crate::meeting::Allowances::new(std::time::Instant::now());
    // Mutes (by the participant or a host) take effect in the SFU too, and so does not
    // being allowed to publish (`publishes`).
    let set_muted = |audio: bool, video: bool, publishes: bool| {
        node.rooms.update(meeting, my_id, |p| {
            p.audio_muted = audio;
            p.video_muted = video;
        });
        sfu.send(SfuCommand::Mute {
            key,
            audio: audio || !publishes,
            video: video || !publishes,
        });
    };
    while ok {
        // Breakout rooms closing: tell the client when the countdown runs out.
        let closes_in = room
            .borrow()
            .closing_at()
            .map(|c| c - common::unix_ms())
            .filter(|ms| *ms >= 0)
            .map(|ms| std::time::Duration::from_millis(ms as u64 + 1));
        tokio::select! {
            _ = node.shutdown.cancelled() => {
                why = closing(ws, shutting_down()).await;
                break;
            }
            ended = membership.session.ended() => {
                why = closing(ws, ended).await;
                break;
            }
            _ = async {
                match closes_in {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = room.borrow().breakout_message(my_id, common::unix_ms());
                ok = tell_changes(ws, [&mut breakout_msg], [now]).await;
            }
            changed = room.changed() => {
                if changed.is_err() {
                    why = closing(ws, closed_here()).await;
                    break;
                }
                let news = room.borrow_and_update().news_for(
                    my_id,
                    claims.role,
                    &claims.name,
                    last_seq,
                    common::unix_ms(),
                );
                if news.ended {
                    why = closing(ws, refused(hosts::ENDED)).await;
                    break;
                }
                if let Some(removed) = news.refusal {
                    why = closing(ws, refused(removed)).await;
                    break;
                }
                if news.role != me.role || news.name != me.name {
                    let (role, name) = (news.role, news.name.clone());
                    if let Some(now) = node.rooms.update(meeting, my_id, |p| { p.role = role; p.name = name; }) {
                        me = now;
                    }
                    // A new host sees drafts and results; one no more does not.
                    let now = collab_msgs(&collab.borrow(), me.is_host());
                    ok &= tell_changes(ws, told_collab.each_mut(), now).await;
                    // A webinar's attendee made panelist publishes (and sees the other
                    // attendees); a panelist made attendee stops.
                    if webinar::may_publish(webinar, me.role) != publishes {
                        publishes = !publishes;
                        set_muted(me.audio_muted, me.video_muted, publishes);
                        tracing::info!(role = %me.role, publishes, "webinar role changed");
                    }
                    for ev in shown.resync(webinar, &me, &node.rooms.members(meeting)) {
                        ok &= ws.send(frame(&ev)).await.is_ok();
                    }
                }
                for logged in &news.actions {
                    let Some(action) = Action::from_record(logged) else { continue };
                    let by_name = logged.by_name.clone();
                    let mine = action.target() == Some(my_id);
                    let muted = (me.audio_muted, me.video_muted);
                    let to = match &action {
                        Action::Mute { audio, video, .. } if mine => Some((muted.0 || *audio, muted.1 || *video)),
                        Action::MuteAll if !me.is_host() => Some((true, muted.1)),
                        _ => None,
                    };
                    if let Some((audio, video)) = to.filter(|t| *t != muted) {
                        set_muted(audio, video, publishes);
                        (me.audio_muted, me.video_muted) = (audio, video);
                        let told = ServerMsg::MutedByHost { audio_muted: audio, video_muted: video, by_name: by_name.clone() };
                        ok &= ws.send(frame(&told)).await.is_ok();
                    }
                    match action {
                        Action::BreakoutBroadcast(text) => {
                            ok &= ws.send(frame(&ServerMsg::Broadcast { text, by_name })).await.is_ok();
                        }
                        Action::AskUnmute(_) if mine => {
                            ok &= ws.send(frame(&ServerMsg::UnmuteRequest { by_name })).await.is_ok();
                        }
                        Action::LowerHand(_) if mine => {
                            node.rooms.update(meeting, my_id, |p| p.hand_raised_unix_ms = None);
                        }
                        _ => {}
                    }
                }
                // Hosts forbade recording on participants' computers: one who records
                // is told to stop, and everyone is shown they stopped.
                if me.local_recording && !me.is_host() && !room.borrow().local_recording_allowed() {
                    if let Some(now) = node.rooms.update(meeting, my_id, |p| p.local_recording = false) {
                        me = now;
                    }
                    let told = ServerMsg::LocalRecordingStop { reason: LOCAL_RECORDING_FORBIDDEN.to_owned() };
                    ok &= ws.send(frame(&told)).await.is_ok();
                }
                last_seq = news.last_seq;
                ok &= tell_changes(ws, [&mut breakout_msg, &mut room_msg], [news.breakout_msg, news.room_msg]).await;
            }
            changed = collab.changed(), if collab_live => {
                if changed.is_err() {
                    collab_live = false;
                    continue;
                }
                let now = collab_msgs(&collab.borrow_and_update(), me.is_host());
                ok &= tell_changes(ws, told_collab.each_mut(), now).await;
            }
            ev = membership.events.recv() => match ev {
                Ok(ServerMsg::ParticipantJoined { participant }) if participant.participant_id == my_id => {}
                Ok(ev) => {
                    if let ServerMsg::ParticipantUpdated { participant } = &ev
                        && participant.participant_id == my_id
                    {
                        me = participant.clone();
                    }
                    // Chat and reactions stay in their breakout room.
                    let other_room = match &ev {
                        ServerMsg::Chat { from, .. } | ServerMsg::Reaction { from, .. } => {
                            let r = room.borrow();
                            let now = common::unix_ms();
                            r.group_of(from, now) != r.group_of(my_id, now)
                        }
                        _ => false,
                    };
                    if other_room {
                        continue;
                    }
                    let chat_everyone = room.borrow().attendee_chat_everyone();
                    if let Some(ev) = shown.filter(webinar, chat_everyone, &me, &ev) {
                        ok = ws.send(frame(&ev)).await.is_ok();
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "signaling session fell behind its room's events");
                }
                Err(_) => break,
            },
            sig = from_sfu.recv() => match sig {
                Some(SignalOut::Closed(reason)) => {
                    why = closing(ws, media_failed(reason)).await;
                    break;
                }
                Some(msg) => ok = ws.send(frame(&signal_msg(msg))).await.is_ok(),
                None => break,
            },
            msg = ws.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) => {
                        why = CLIENT_CLOSED;
                        break;
                    }
                    Some(Err(_)) | None => break,
                    Some(Ok(Message::Binary(_))) => {
                        ok = ws.send(error_msg("binary", "binary messages are not part of the protocol")).await.is_ok();
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                let parsed = match parse_client(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        ok = ws.send(error_msg(&e.answers, e.message)).await.is_ok();
                        continue;
                    }
                };
                let outputs = {
                    let room = room.borrow();
                    let members = || node.rooms.members(meeting);
                    let ctx = crate::meeting::Ctx {
                        me: &me,
                        publishes,
                        room: &room,
                        members: &members,
                        now_ms: common::unix_ms(),
                        now: std::time::Instant::now(),
                    };
                    crate::meeting::handle(&ctx, &mut allowances, parsed)
                };
                let mut leaving = false;
                for out in outputs {
                    match out {
                        Output::Refuse { answers, message } => {
                            tracing::info!(message = %message, request = answers, "request refused");
                            ok &= ws.send(error_msg(answers, message)).await.is_ok();
                        }
                        Output::Publish(ev) => node.rooms.publish(meeting, ev),
                        Output::Mute { audio, video } => {
                            set_muted(audio, video, publishes);
                            (me.audio_muted, me.video_muted) = (audio, video);
                        }
                        Output::RaiseHand(at) => {
                            node.rooms.update(meeting, my_id, |p| {
                                p.hand_raised_unix_ms.get_or_insert(at);
                            });
                        }
                        Output::LowerHand => {
                            node.rooms.update(meeting, my_id, |p| p.hand_raised_unix_ms = None);
                        }
                        Output::LocalRecording(recording) => {
                            if let Some(now) = node.rooms.update(meeting, my_id, |p| p.local_recording = recording) {
                                me = now;
                            }
                            tracing::info!(recording, "local recording");
                        }
                        Output::Offer(sdp) => sfu.send(SfuCommand::Offer { key, sdp }),
                        Output::Answer(sdp) => sfu.send(SfuCommand::Answer { key, sdp }),
                        Output::Layer { mid, width, height } => sfu.send(SfuCommand::Layer {
                            key,
                            mid,
                            rid: crate::sfu::layer_for_size(width, height),
                        }),
                        Output::Draw(mut op) => {
                            // Unique, and exact as a JavaScript number (below 2^53).
                            op.op_id = rand::random::<u64>() >> 11;
                            if let Err(message) = node.rooms.board_draw(meeting, op, true) {
                                ok &= ws.send(error_msg("board_draw", message)).await.is_ok();
                            }
                        }
                        Output::Undo(stroke_id) => {
                            if !node.rooms.board_undo(meeting, my_id, stroke_id) {
                                let message = format!("you have no stroke {stroke_id} on the whiteboard");
                                ok &= ws.send(error_msg("board_undo", message)).await.is_ok();
                            }
                        }
                        Output::ClearBoard => node.rooms.board_clear(meeting, my_id, &me.name),
                        Output::Act { answers, actions } => {
                            let actor = Actor { id: my_id.to_owned(), name: me.name.clone(), role: me.role };
                            if let Err(e) = node.hosts.act(meeting, &actor, &actions).await {
                                tracing::info!(message = %e, action = answers, "host action refused");
                                ok &= ws.send(error_msg(answers, e.to_string())).await.is_ok();
                            }
                        }
                        Output::Collab { answers, op } => {
                            let who = collab::Who { id: my_id.to_owned(), name: me.name.clone(), role: me.role };
                            if let Err(message) = node.collab.submit(meeting, who, op).await {
                                tracing::info!(message = %message, request = answers, "poll or Q&A request refused");
                                ok &= ws.send(error_msg(answers, message)).await.is_ok();
                            }
                        }
                        Output::Leave => leaving = true,
                    }
                }
                if leaving {
                    why = LEFT;
                    break;
                }
            }
        }
    }
    sfu.send(SfuCommand::Leave { key });
    // A host who went (not one the node closed) hands the role over.
    if me.role == Role::Host && matches!(why, Ending::Client(_)) {
        hand_over(node, meeting, &me).await;
    }
    why
}

/// A host leaves: the host role goes to their heir ([`host_controls::heir`]), if any.
async fn hand_over(node: &Node, meeting: &common::ids::MeetingId, me: &Participant) {
    let members = node.rooms.members(meeting);
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
    match node.hosts.act(meeting, &actor, &[give]).await {
        Ok(()) => {
            tracing::info!(heir = %heir.participant_id, "the host left: handed the host role over")
        }
        Err(e) => {
            tracing::warn!(error = %e, "the host left but the host role could not be handed over")
        }
    }
}
