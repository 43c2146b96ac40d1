//! Polls and Q&A: meeting-wide, in one etcd record per meeting,
//! `/fjord/meetings/{m}/collab` (`CollabRecord`), that every media node of the
//! meeting follows and shows its own participants.
//!
//! Many participants answer a poll within seconds, and one compare-and-swap per answer
//! would make them retry against each other. So each node queues what its participants
//! send and writes the queue in one compare-and-swap (a batch): writers contend per
//! node, not per participant. Each sender gets its own answer (done, or why not).
//!
//! An anonymous poll keeps who answered (to refuse a second answer) apart from what
//! was answered (counts per option, and free-text answers sorted), so that nothing
//! links the two; an anonymous question keeps no author at all.
mod polls;
mod questions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{CollabRecord, PollKind};
use common::ids::MeetingId;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use signaling::Role;

use crate::store::{MeetingStore, Seen, StoreError};

pub use self::polls::{MAX_OPTION_CHARS, MAX_OPTIONS, MAX_POLLS, kind_named, polls_message};
pub use self::questions::{MAX_QUESTIONS, questions_message};

pub const MAX_TEXT_CHARS: usize = 500;
/// What one batch (one write) takes from the queue at most.
const MAX_BATCH: usize = 500;
/// How long a participant's request waits for its batch to be written.
const SUBMIT_WAIT: Duration = Duration::from_secs(5);

/// A participant's request.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A new poll, as a draft (hosts).
    PollCreate {
        question: String,
        kind: PollKind,
        options: Vec<String>,
        anonymous: bool,
    },
    /// Shows a draft poll to everyone, to answer (hosts).
    PollLaunch(u32),
    /// Ends an open poll: no more answers (hosts).
    PollEnd(u32),
    /// Shows an ended poll's results to everyone (hosts).
    PollShare(u32),
    PollAnswer {
        poll: u32,
        choices: Vec<u32>,
        text: String,
    },
    Ask {
        text: String,
        anonymous: bool,
    },
    Upvote(u32),
    /// A host answers a question in writing, or (`live`) marks it answered out loud.
    Answer {
        question: u32,
        text: String,
        live: bool,
    },
    Dismiss(u32),
}

impl Op {
    fn for_hosts(&self) -> bool {
        matches!(
            self,
            Op::PollCreate { .. }
                | Op::PollLaunch(_)
                | Op::PollEnd(_)
                | Op::PollShare(_)
                | Op::Answer { .. }
                | Op::Dismiss(_)
        )
    }
}

/// Who sends it.
#[derive(Clone, Debug)]
pub struct Who {
    pub id: String,
    pub name: String,
    pub role: Role,
}

fn chars_within(text: &str, max: usize) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > max || t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("1 to {max} printable characters"));
    }
    Ok(t.to_owned())
}

fn next_id(rec: &mut CollabRecord) -> u32 {
    let id = rec.next_id.max(1);
    rec.next_id = id + 1;
    id
}

/// Inserts `x` into the sorted `list`; false if it was there.
fn insert_sorted(list: &mut Vec<String>, x: &str) -> bool {
    match list.binary_search_by(|v| v.as_str().cmp(x)) {
        Ok(_) => false,
        Err(at) => {
            list.insert(at, x.to_owned());
            true
        }
    }
}

/// Applies `op` by `who` to `rec` at `now_ms`: the id of the poll or question it made
/// or changed, or why it was refused (`rec` unchanged then).
pub fn apply(rec: &mut CollabRecord, who: &Who, op: &Op, now_ms: i64) -> Result<u32, String> {
    if op.for_hosts() && !who.role.is_host() {
        return Err("only hosts and co-hosts can do this".into());
    }
    match op {
        Op::PollCreate {
            question,
            kind,
            options,
            anonymous,
        } => polls::create(rec, who, question, *kind, options, *anonymous, now_ms),
        Op::PollLaunch(id) => polls::launch(rec, *id, now_ms),
        Op::PollEnd(id) => polls::end(rec, *id, now_ms),
        Op::PollShare(id) => polls::share(rec, *id),
        Op::PollAnswer {
            poll,
            choices,
            text,
        } => polls::answer(rec, who, *poll, choices, text, now_ms),
        Op::Ask { text, anonymous } => questions::ask(rec, who, text, *anonymous, now_ms),
        Op::Upvote(id) => questions::upvote(rec, who, *id),
        Op::Answer {
            question,
            text,
            live,
        } => questions::answer(rec, who, *question, text, *live),
        Op::Dismiss(id) => questions::dismiss(rec, *id),
    }
}

/// A meeting's polls and Q&A as this node knows them.
#[derive(Clone, Debug, Default)]
pub struct CollabState {
    pub revision: i64,
    pub rec: Arc<CollabRecord>,
}

struct Pending {
    who: Who,
    op: Op,
    done: oneshot::Sender<Result<u32, String>>,
}

struct Followed {
    state: watch::Sender<CollabState>,
    queue: mpsc::UnboundedSender<Pending>,
    stop: CancellationToken,
}

/// The polls and Q&A of the meetings this node hosts.
pub struct Collab {
    store: Arc<dyn MeetingStore>,
    shutdown: CancellationToken,
    meetings: Mutex<HashMap<MeetingId, Followed>>,
}

impl Collab {
    pub fn new(store: Arc<dyn MeetingStore>, shutdown: CancellationToken) -> Self {
        Self {
            store,
            shutdown,
            meetings: Mutex::default(),
        }
    }

    /// Starts following `meeting`'s polls and Q&A (idempotent) and returns them as they
    /// change.
    pub fn follow(&self, meeting: &MeetingId) -> watch::Receiver<CollabState> {
        let mut meetings = self.meetings.lock().expect("collab");
        if let Some(f) = meetings.get(meeting) {
            return f.state.subscribe();
        }
        let (tx, rx) = watch::channel(CollabState::default());
        let (queue, pending) = mpsc::unbounded_channel();
        let stop = self.shutdown.child_token();
        meetings.insert(
            meeting.clone(),
            Followed {
                state: tx.clone(),
                queue,
                stop: stop.clone(),
            },
        );
        let taker = tx.clone();
        let (store, m, s) = (self.store.clone(), meeting.clone(), stop.clone());
        tokio::spawn(async move {
            let take = move |seen: Seen<CollabRecord>| {
                let (rec, revision, fresh) = match seen {
                    Seen::Read(rec, revision) => (rec, revision, true),
                    Seen::Changed(rec, revision) => (rec, revision, false),
                };
                publish(&taker, rec.unwrap_or_default(), revision, fresh);
            };
            store.follow_collab(&m, s, Box::new(take)).await;
        });
        tokio::spawn(write_batches(
            self.store.clone(),
            meeting.clone(),
            tx,
            pending,
            stop,
        ));
        rx
    }

    /// Stops following `meeting` (it closed here).
    pub fn unfollow(&self, meeting: &MeetingId) {
        if let Some(f) = self.meetings.lock().expect("collab").remove(meeting) {
            f.stop.cancel();
        }
    }

    /// Does `op` for `who` in `meeting` (with other requests of this node's participants
    /// in one write): the id of the poll or question, or why not.
    pub async fn submit(&self, meeting: &MeetingId, who: Who, op: Op) -> Result<u32, String> {
        let (done, answer) = oneshot::channel();
        let queued = self
            .meetings
            .lock()
            .expect("collab")
            .get(meeting)
            .is_some_and(|f| f.queue.send(Pending { who, op, done }).is_ok());
        if !queued {
            return Err("the meeting closed on this media node".into());
        }
        // A slow or unreachable etcd must not hold the participant's session.
        match tokio::time::timeout(SUBMIT_WAIT, answer).await {
            Ok(done) => {
                done.unwrap_or_else(|_| Err("the meeting closed on this media node".into()))
            }
            Err(_) => Err(format!(
                "the cluster state did not confirm it within {} s: it may still be recorded; \
                 look before trying again",
                SUBMIT_WAIT.as_secs()
            )),
        }
    }
}

/// Takes `rec` at `revision` unless what we have is newer (a fresh read always).
fn publish(tx: &watch::Sender<CollabState>, rec: CollabRecord, revision: i64, fresh: bool) {
    tx.send_if_modified(|s| {
        if !fresh && revision <= s.revision {
            return false;
        }
        s.revision = s.revision.max(revision);
        s.rec = Arc::new(rec);
        true
    });
}

/// Writes what this node's participants ask, a queue at a time, and tells each the
/// outcome.
async fn write_batches(
    store: Arc<dyn MeetingStore>,
    meeting: MeetingId,
    tx: watch::Sender<CollabState>,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            p = pending.recv() => match p { Some(p) => p, None => return },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // Nodes of the meeting write at once only now and then: a few attempts, each
        // after a short pause, settle it.
        let mut outcome = Err(StoreError::Contended);
        let mut results = Vec::new();
        for attempt in 0..4u32 {
            outcome = store
                .update_collab(&meeting, &mut |rec: &mut CollabRecord| {
                    let now = common::unix_ms();
                    results = batch
                        .iter()
                        .map(|p| apply(rec, &p.who, &p.op, now))
                        .collect::<Vec<_>>();
                })
                .await;
            if !matches!(outcome, Err(StoreError::Contended)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
        }
        match outcome {
            Ok((rec, revision)) => {
                publish(&tx, rec, revision, false);
                for (p, r) in batch.into_iter().zip(results) {
                    let _ = p.done.send(r);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, requests = batch.len(), "could not store polls and Q&A");
                for p in batch {
                    let _ = p.done.send(Err(format!("{e}: try again")));
                }
            }
        }
    }
}

/// A participant of the tests: `id`, named after it, with `role`.
#[cfg(test)]
fn who(id: &str, role: &str) -> Who {
    Who {
        id: id.into(),
        name: format!("Name of {id}"),
        role: Role::parse(role).unwrap(),
    }
}
