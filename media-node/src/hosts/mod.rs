//! What a meeting's hosts decide, and where it lives (DESIGN §6, meeting-wide state).
//!
//! The lock, the waiting room, who was admitted, turned away or removed, the roles and
//! names hosts gave, whether participants may unmute themselves and an end for everyone
//! are one record in etcd, `/fjord/meetings/{m}/room` (`MeetingRoomRecord`). The media
//! node a host is connected to writes it, with a compare-and-swap on the key's revision
//! so that hosts on different nodes never overwrite each other; every media node of the
//! meeting watches it and acts on its own participants; the controllers read it (a
//! locked meeting refuses joins). One-off actions (mute one or all, ask to unmute, stop
//! a video, lower a hand) are entries in the same record's action log, which is also
//! the meeting's audit trail: who did what to whom, and when.
//!
//! *Why etcd:* it is already the one place every node and controller of a meeting sees;
//! a decision survives the node that took it; and the relay between nodes carries only
//! what changes many times a second (participants' mute and hands, chat, media).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ids::{MeetingId, ParticipantId};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{self, MeetingSettings, MeetingStore, RoomRecord, Seen, StoreError};

mod actions;
mod state;
#[cfg(test)]
mod tests;

pub use actions::{Action, Actor, MAX_ACTIONS, MAX_LISTED, apply};
pub use state::{DENIED, ENDED, News, REMOVED, Refusal, RoomState};

struct Followed {
    state: watch::Sender<RoomState>,
    stop: CancellationToken,
}

/// Where a meeting's breakout rooms go when they change: participant → room (0: the
/// main room). The SFU, in production.
pub type GroupsOut = Arc<dyn Fn(&MeetingId, HashMap<ParticipantId, u32>) + Send + Sync>;

/// The rooms of the meetings this node hosts: followed in the store, written by host
/// actions.
pub struct Hosts {
    store: Arc<dyn MeetingStore>,
    groups: GroupsOut,
    shutdown: CancellationToken,
    clock: Clock,
    meetings: Mutex<HashMap<MeetingId, Followed>>,
}

/// The wall clock in Unix milliseconds (a fake one in tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

impl Hosts {
    pub fn new(
        store: Arc<dyn MeetingStore>,
        groups: GroupsOut,
        shutdown: CancellationToken,
    ) -> Self {
        Self::with_clock(store, groups, shutdown, Arc::new(common::unix_ms))
    }

    /// As [`Hosts::new`], on `clock` (actions are logged at its time, and breakout
    /// countdowns run on it).
    pub fn with_clock(
        store: Arc<dyn MeetingStore>,
        groups: GroupsOut,
        shutdown: CancellationToken,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            groups,
            shutdown,
            clock,
            meetings: Mutex::default(),
        }
    }

    /// Starts following `meeting`'s room (idempotent) and returns its state, which
    /// changes whenever a host of the meeting, on any node, decides something.
    pub fn follow(&self, meeting: &MeetingId) -> watch::Receiver<RoomState> {
        self.follow_told(meeting, None)
    }

    /// As [`Hosts::follow`], with the meeting's settings as the controller told them
    /// when it prepared the meeting here (None: read them from the store).
    pub fn follow_told(
        &self,
        meeting: &MeetingId,
        told: Option<MeetingSettings>,
    ) -> watch::Receiver<RoomState> {
        let mut meetings = self.meetings.lock().expect("hosts");
        if let Some(f) = meetings.get(meeting) {
            if let Some(settings) = told {
                settle(&f.state, settings);
            }
            return f.state.subscribe();
        }
        let (tx, rx) = watch::channel(RoomState::default());
        let stop = self.shutdown.child_token();
        meetings.insert(
            meeting.clone(),
            Followed {
                state: tx.clone(),
                stop: stop.clone(),
            },
        );
        let read = told.is_none();
        if let Some(settings) = told {
            settle(&tx, settings);
        }
        tokio::spawn(follow_room(
            self.store.clone(),
            meeting.clone(),
            read,
            tx,
            stop.clone(),
        ));
        tokio::spawn(apply_groups(
            self.groups.clone(),
            self.clock.clone(),
            meeting.clone(),
            rx.clone(),
            stop,
        ));
        rx
    }

    /// Stops following `meeting` (it closed here).
    pub fn unfollow(&self, meeting: &MeetingId) {
        if let Some(f) = self.meetings.lock().expect("hosts").remove(meeting) {
            f.stop.cancel();
        }
    }

    /// Records `actions` by `actor` in `meeting`'s room, as one write that no concurrent
    /// one overwrites (compare-and-swap on the record's revision, retried).
    pub async fn act(
        &self,
        meeting: &MeetingId,
        actor: &Actor,
        actions: &[Action],
    ) -> Result<(), StoreError> {
        let (rec, revision) = self
            .store
            .update_room(meeting, &mut |rec| {
                let now = (self.clock)();
                for a in actions {
                    apply(rec, actor, a, now);
                }
            })
            .await?;
        if let Some(f) = self.meetings.lock().expect("hosts").get(meeting) {
            publish(&f.state, Some(rec), revision);
        }
        Ok(())
    }
}

/// Takes `rec` (None: the record was deleted) at `revision` unless what we have is newer.
fn publish(tx: &watch::Sender<RoomState>, rec: Option<RoomRecord>, revision: i64) {
    tx.send_if_modified(|s| {
        if s.room_read && revision <= s.revision {
            return false;
        }
        s.room_read = true;
        s.revision = revision;
        s.rec = rec.unwrap_or_default();
        true
    });
}

/// Keeps the breakout rooms of `meeting` (`out`: the SFU's) as the room record says,
/// including when a closing countdown runs out.
async fn apply_groups(
    out: GroupsOut,
    clock: Clock,
    meeting: MeetingId,
    mut rx: watch::Receiver<RoomState>,
    stop: CancellationToken,
) {
    let mut told: HashMap<String, u32> = HashMap::new();
    loop {
        let now = clock();
        let (groups, closing) = {
            let s = rx.borrow_and_update();
            (s.groups(now), s.closing_at().filter(|c| *c > now))
        };
        if groups != told {
            let by_id = groups
                .iter()
                .filter_map(|(p, g)| ParticipantId::parse(p).ok().map(|p| (p, *g)))
                .collect();
            out(&meeting, by_id);
            tracing::info!(%meeting, moved = groups.len(), "breakout rooms changed");
            told = groups;
        }
        let until_close = closing.map(|c| Duration::from_millis((c - now).max(0) as u64));
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
            _ = async {
                match until_close {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Keeps `tx` up to date with `meeting`'s room record, and reads the settings of the
/// meeting it needs (title, waiting room) if `read`, until `stop`.
async fn follow_room(
    store: Arc<dyn MeetingStore>,
    meeting: MeetingId,
    read: bool,
    tx: watch::Sender<RoomState>,
    stop: CancellationToken,
) {
    // Unless the controller told them when it prepared the meeting here.
    let settings = async {
        if read {
            read_settings(&*store, &meeting, &tx, &stop).await;
        }
    };
    let take = tx.clone();
    let room = store.follow_room(
        &meeting,
        stop.clone(),
        Box::new(move |seen: Seen<RoomRecord>| match seen {
            // A fresh read is the truth, even against a newer revision we wrote.
            Seen::Read(rec, revision) => {
                take.send_modify(|s| {
                    s.room_read = true;
                    s.revision = s.revision.max(revision);
                    if let Some(rec) = rec
                        && s.rec.next_seq <= rec.next_seq
                    {
                        s.rec = rec;
                    }
                });
            }
            Seen::Changed(rec, revision) => publish(&take, rec, revision),
        }),
    );
    tokio::join!(settings, room);
}

/// Takes the meeting's own settings (they do not change) into `tx`.
fn settle(tx: &watch::Sender<RoomState>, m: MeetingSettings) {
    tx.send_modify(|s| {
        s.title = m.title;
        s.meeting_waiting_room = m.waiting_room;
        s.webinar = m.webinar;
        s.cloud_refusal = m.cloud_recording_refusal;
        s.meeting_read = true;
    });
}

/// Reads the meeting's title and waiting-room setting (they do not change) into `tx`,
/// trying again until it can or `stop`.
async fn read_settings(
    store: &dyn MeetingStore,
    meeting: &MeetingId,
    tx: &watch::Sender<RoomState>,
    stop: &CancellationToken,
) {
    let mut delay = store::RETRY_FIRST;
    loop {
        match store.meeting(meeting).await {
            Ok(m) => {
                settle(tx, m.unwrap_or_default());
                return;
            }
            Err(e) => {
                tracing::warn!(%meeting, error = %e, "reading the meeting's settings failed; retrying");
            }
        }
        if !store::back_off(stop, &mut delay).await {
            return;
        }
    }
}
