//! A meeting participant on webrtc-rs: joins through the controller, speaks the media
//! node's signaling protocol (docs/signaling.md), publishes a [`Clip`] and counts what it
//! receives from everyone else.
//!
//! By concern: `signaling` (the controller's calls, the signaling WebSocket and its
//! messages, typed by the `signaling` crate), `join` (a session's setup, until media
//! flows), `peer` (the webrtc-rs peer connection and the remote tracks it reports),
//! `receive` (what arrived, per remote track), `publish` (sending the clip) and `events`
//! (what the node said, read back typed). Here: [`Bot`], a session's public face.
mod events;
mod join;
mod live;
mod peer;
mod publish;
mod receive;
mod signaling;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::signaling::{ClientMsg, ServerMsg};
use anyhow::Context;
use rtc::peer_connection::sdp::RTCSessionDescription;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::peer_connection::PeerConnection;

use crate::media::Clip;

pub use self::live::{Live, LiveFrame, Tapped};
pub use self::publish::SentFrame;
use self::publish::{add_tracks, start_sending};
pub use self::receive::{AUDIO_KEPT, Received, TrackCounts, VIDEO_KEPT};
pub use self::signaling::{Refused, create_meeting, create_meeting_answer, next_msg, welcome_of};
pub(crate) use self::signaling::{Ws, frame, open_signaling};
pub use ::signaling::{Waiting, Welcome};

/// How to join.
#[derive(Clone, Debug)]
pub struct BotConfig {
    /// The controller's base URL, e.g. `http://127.0.0.1:8080`.
    pub controller: String,
    pub meeting: String,
    pub name: String,
    pub password: Option<String>,
    /// The meeting's host key: join as its host.
    pub host_key: Option<String>,
    /// A webinar's panelist key: join as a panelist.
    pub panelist_key: Option<String>,
    /// A registrant's personal join key (meetings that require registration).
    pub registrant_key: Option<String>,
    pub region: Option<String>,
    /// What to publish; `None` joins as a listener only.
    pub publish: Option<Arc<Clip>>,
    /// CA certificates (PEM) trusted for `wss://` signaling besides the system's.
    pub signal_ca: Option<Arc<Vec<u8>>>,
    /// What it shows, said before its offer (None: the node's default view). It receives
    /// on slots either way, and counts what each slot carries as the participant the
    /// node's `slots` names at the time.
    pub view: Option<::signaling::View>,
}

/// A joined participant. Drop or [`Bot::leave`] ends it.
pub struct Bot {
    pub participant_id: String,
    pub node_id: String,
    /// From asking the controller to join until the media connection was up.
    pub join_time: Duration,
    publishing: bool,
    pc: Arc<dyn PeerConnection>,
    received: Arc<Mutex<Received>>,
    sent_audio: Arc<AtomicU64>,
    sent_video: Arc<AtomicU64>,
    sent_frames: Arc<Mutex<Vec<SentFrame>>>,
    /// Our receive slots: their m-lines, and whom each carries (the node's `slots`).
    slots: Arc<Mutex<peer::Slots>>,
    /// Every other message the node sent after `welcome` (participants, chat, mute,
    /// active speaker; not offers or answers; a `roster` batch as its events), in order.
    events: Arc<Mutex<Vec<ServerMsg>>>,
    /// The `welcome` message.
    pub welcome: Welcome,
    /// The `waiting` message, when we waited in the waiting room first.
    pub waited: Option<Waiting>,
    /// The signaling URL and join token the controller gave us.
    pub signal_url: String,
    pub token: String,
    /// Text frames for the node.
    to_node: mpsc::UnboundedSender<String>,
    /// Why the session ended (signaling closed, media failed, the node sent something
    /// that is not a `ServerMsg`), once it has.
    ended: watch::Receiver<Option<String>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Bot {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Bot {
    /// Joins the meeting and waits until media can flow (at most `timeout`).
    pub async fn join(cfg: BotConfig, timeout: Duration) -> anyhow::Result<Bot> {
        Self::rejoin(cfg, None, timeout).await
    }

    /// Joins again after losing media node `lost_node` (the join names it, so that the
    /// controller checks that node before placing anyone there again).
    pub async fn rejoin(
        cfg: BotConfig,
        lost_node: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<Bot> {
        tokio::time::timeout(timeout, Self::join_inner(cfg, lost_node, None))
            .await
            .context("timed out joining")?
    }

    /// Joins with live media instead of a clip (`cfg.publish` is not used): sends the
    /// Opus frames of `live.audio` as they come, and hands every packet it receives to
    /// `live.tap` (dropped when the tap is full).
    pub async fn join_live(cfg: BotConfig, live: Live, timeout: Duration) -> anyhow::Result<Bot> {
        tokio::time::timeout(timeout, Self::join_inner(cfg, None, Some(live)))
            .await
            .context("timed out joining")?
    }

    /// A receiver that sees the session end, and why (signaling closed, media failed).
    pub fn ended_watch(&self) -> watch::Receiver<Option<String>> {
        self.ended.clone()
    }

    pub fn is_publisher(&self) -> bool {
        self.publishing
    }

    /// Starts publishing `clip` in a session that joined without (renegotiating: our
    /// offer adds an audio and a video track). Fails with the node's refusal when it
    /// refuses the offer, or when no answer comes within `timeout`.
    pub async fn publish(&mut self, clip: Arc<Clip>, timeout: Duration) -> anyhow::Result<()> {
        anyhow::ensure!(!self.publishing, "already publishing");
        let refusals = self.all_errors().len();
        let senders = add_tracks(&*self.pc, &self.participant_id, true).await?;
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        let local = self
            .pc
            .local_description()
            .await
            .context("no local description")?;
        let offer = ClientMsg::Offer { sdp: local.sdp };
        let kind = offer.kind();
        self.send(offer)?;
        let until = Instant::now() + timeout;
        let failed = loop {
            if let Some((_, message)) = self
                .all_errors()
                .into_iter()
                .skip(refusals)
                .find(|(in_reply_to, _)| in_reply_to == kind)
            {
                break anyhow::anyhow!("offer refused: {message}");
            }
            // The answer applied: no offer of ours pending any more.
            if self.pc.pending_local_description().await.is_none() {
                let sent = [self.sent_audio.clone(), self.sent_video.clone()];
                let tasks = start_sending(&clip, senders, sent, &self.sent_frames).await?;
                self.tasks.extend(tasks);
                self.publishing = true;
                return Ok(());
            }
            if Instant::now() >= until {
                break anyhow::anyhow!("no answer to our offer in {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Back to where we were, so that the node's later offers still apply.
        self.pc
            .set_local_description(RTCSessionDescription::rollback(None)?)
            .await?;
        for (_, sender) in &senders {
            self.pc.remove_track(sender).await?;
        }
        Err(failed)
    }

    /// What has arrived so far from each remote participant.
    pub fn received(&self) -> Received {
        self.received.lock().expect("counters").clone()
    }

    /// Forgets what arrived so far: counting starts again from the next new packet (a
    /// resend of one that arrived before does not count).
    pub fn clear_received(&self) {
        for counts in self.received.lock().expect("counters").values_mut() {
            *counts = counts.cleared();
        }
    }

    /// Audio and video frames sent so far.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.sent_audio.load(Ordering::Relaxed),
            self.sent_video.load(Ordering::Relaxed),
        )
    }

    /// Every frame sent so far, with its RTP timestamp and packet count.
    pub fn sent_frames(&self) -> Vec<SentFrame> {
        self.sent_frames.lock().expect("sent log").clone()
    }

    /// The slot (its m-line) that carries `publisher`'s `kind` track to us now, if any.
    pub fn mid_of(&self, publisher: &str, kind: &str) -> Option<String> {
        let slots = self.slots.lock().expect("slots");
        slots
            .carries
            .iter()
            .find(|(mid, p)| *p == publisher && slots.kinds.get(*mid).is_some_and(|k| k == kind))
            .map(|(mid, _)| mid.clone())
    }

    /// Sends a signaling message (e.g. `ClientMsg::Chat { text: "hi".into() }`).
    pub fn send(&self, msg: ClientMsg) -> anyhow::Result<()> {
        let text = serde_json::to_string(&msg).expect("a ClientMsg always serialises");
        self.to_node
            .send(text)
            .map_err(|_| anyhow::anyhow!("signaling connection closed"))
    }

    /// Leaves the meeting and closes the connection.
    pub async fn leave(self) {
        let _ = self.send(ClientMsg::Leave {});
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = self.pc.close().await;
    }
}

/// Marks a session ended with its reason when dropped (its signaling task ended or was
/// aborted), unless something else ended it first.
struct Ended(Arc<watch::Sender<Option<String>>>, &'static str);

impl Drop for Ended {
    fn drop(&mut self) {
        mark_ended(&self.0, self.1.to_owned());
    }
}

/// The first reason a session ended is the one kept.
fn mark_ended(end: &watch::Sender<Option<String>>, why: String) {
    end.send_if_modified(|e| {
        if e.is_some() {
            return false;
        }
        *e = Some(why);
        true
    });
}
