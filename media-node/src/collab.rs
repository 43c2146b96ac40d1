//! Polls and Q&A: meeting-wide, in one etcd record per meeting,
//! `/fjord/meetings/{m}/collab` (`MeetingCollabRecord`), that every media node of the
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
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ids::MeetingId;
use proto::{
    MeetingCollabRecord, PollAnswerRecord, PollKind, PollRecord, PollState, QuestionRecord,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use signaling::{Poll, PollAnswer, PollResults, Question, Role, ServerMsg};

use crate::store::{MeetingStore, Seen, StoreError};

pub const MAX_POLLS: usize = 100;
pub const MAX_QUESTIONS: usize = 1000;
pub const MAX_OPTIONS: usize = 10;
pub const MAX_OPTION_CHARS: usize = 200;
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

fn poll_mut(rec: &mut MeetingCollabRecord, id: u32) -> Result<&mut PollRecord, String> {
    rec.polls
        .iter_mut()
        .find(|p| p.id == id)
        .ok_or_else(|| format!("there is no poll {id}"))
}

fn question_mut(rec: &mut MeetingCollabRecord, id: u32) -> Result<&mut QuestionRecord, String> {
    rec.questions
        .iter_mut()
        .find(|q| q.id == id)
        .ok_or_else(|| format!("there is no question {id}"))
}

fn next_id(rec: &mut MeetingCollabRecord) -> u32 {
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
pub fn apply(
    rec: &mut MeetingCollabRecord,
    who: &Who,
    op: &Op,
    now_ms: i64,
) -> Result<u32, String> {
    if op.for_hosts() && !who.role.is_host() {
        return Err("only hosts and co-hosts can do this".into());
    }
    match op {
        Op::PollCreate {
            question,
            kind,
            options,
            anonymous,
        } => {
            if rec.polls.len() >= MAX_POLLS {
                return Err(format!("a meeting has at most {MAX_POLLS} polls"));
            }
            let question =
                chars_within(question, MAX_TEXT_CHARS).map_err(|e| format!("question: {e}"))?;
            let options = match kind {
                PollKind::Text => {
                    if !options.is_empty() {
                        return Err("a free-text poll has no options".into());
                    }
                    vec![]
                }
                PollKind::Single | PollKind::Multiple => {
                    if !(2..=MAX_OPTIONS).contains(&options.len()) {
                        return Err(format!("options: 2 to {MAX_OPTIONS}"));
                    }
                    options
                        .iter()
                        .map(|o| {
                            chars_within(o, MAX_OPTION_CHARS).map_err(|e| format!("option: {e}"))
                        })
                        .collect::<Result<Vec<_>, _>>()?
                }
                PollKind::Unspecified => return Err("kind: single, multiple or text".into()),
            };
            let id = next_id(rec);
            rec.polls.push(PollRecord {
                id,
                question,
                kind: *kind as i32,
                tally: vec![0; options.len()],
                options,
                anonymous: *anonymous,
                state: PollState::Draft as i32,
                created_by_name: who.name.clone(),
                created_unix_ms: now_ms,
                ..PollRecord::default()
            });
            Ok(id)
        }
        Op::PollLaunch(id) => {
            let p = poll_mut(rec, *id)?;
            if p.state() != PollState::Draft {
                return Err(format!("poll {id} was launched already"));
            }
            p.state = PollState::Open as i32;
            p.launched_unix_ms = now_ms;
            Ok(*id)
        }
        Op::PollEnd(id) => {
            let p = poll_mut(rec, *id)?;
            if p.state() != PollState::Open {
                return Err(format!("poll {id} is not open"));
            }
            p.state = PollState::Ended as i32;
            p.ended_unix_ms = now_ms;
            Ok(*id)
        }
        Op::PollShare(id) => {
            let p = poll_mut(rec, *id)?;
            if p.state() != PollState::Ended {
                return Err(format!("poll {id} has not ended: end it first"));
            }
            p.shared = true;
            Ok(*id)
        }
        Op::PollAnswer {
            poll,
            choices,
            text,
        } => {
            let p = poll_mut(rec, *poll)?;
            if p.state() != PollState::Open {
                return Err(format!("poll {poll} is not open"));
            }
            if p.voters.binary_search(&who.id).is_ok() {
                return Err(format!("you answered poll {poll} already"));
            }
            let n = p.options.len() as u32;
            let (choices, text) = match p.kind() {
                PollKind::Text => {
                    if !choices.is_empty() {
                        return Err("a free-text poll takes text, not choices".into());
                    }
                    (
                        vec![],
                        chars_within(text, MAX_TEXT_CHARS).map_err(|e| format!("text: {e}"))?,
                    )
                }
                kind => {
                    let mut c = choices.clone();
                    c.sort_unstable();
                    c.dedup();
                    let ok = match kind {
                        PollKind::Single => c.len() == 1,
                        _ => !c.is_empty(),
                    } && c.len() == choices.len()
                        && c.iter().all(|i| *i < n);
                    if !ok || !text.is_empty() {
                        return Err(if kind == PollKind::Single {
                            format!("choose one option (0 to {})", n - 1)
                        } else {
                            format!("choose one or more different options (0 to {})", n - 1)
                        });
                    }
                    (c, String::new())
                }
            };
            insert_sorted(&mut p.voters, &who.id);
            for c in &choices {
                p.tally[*c as usize] += 1;
            }
            if p.anonymous {
                if !text.is_empty() {
                    let at = p.texts.partition_point(|t| *t < text);
                    p.texts.insert(at, text);
                }
            } else {
                p.answers.push(PollAnswerRecord {
                    participant_id: who.id.clone(),
                    name: who.name.clone(),
                    choices,
                    text,
                    unix_ms: now_ms,
                });
            }
            Ok(*poll)
        }
        Op::Ask { text, anonymous } => {
            if rec.questions.len() >= MAX_QUESTIONS {
                return Err(format!("a meeting takes at most {MAX_QUESTIONS} questions"));
            }
            let text = chars_within(text, MAX_TEXT_CHARS).map_err(|e| format!("question: {e}"))?;
            let id = next_id(rec);
            let (author_id, author_name) = if *anonymous {
                (String::new(), String::new())
            } else {
                (who.id.clone(), who.name.clone())
            };
            rec.questions.push(QuestionRecord {
                id,
                text,
                author_id,
                author_name,
                asked_unix_ms: now_ms,
                ..QuestionRecord::default()
            });
            Ok(id)
        }
        Op::Upvote(id) => {
            let q = question_mut(rec, *id)?;
            if q.dismissed {
                return Err(format!("question {id} was dismissed"));
            }
            if !insert_sorted(&mut q.voters, &who.id) {
                return Err(format!("you upvoted question {id} already"));
            }
            Ok(*id)
        }
        Op::Answer {
            question,
            text,
            live,
        } => {
            let text = if *live {
                String::new()
            } else {
                chars_within(text, MAX_TEXT_CHARS).map_err(|e| format!("answer: {e}"))?
            };
            let q = question_mut(rec, *question)?;
            if *live {
                q.answered_live = true;
            } else {
                q.answer = text;
            }
            q.answered_by_name = who.name.clone();
            Ok(*question)
        }
        Op::Dismiss(id) => {
            question_mut(rec, *id)?.dismissed = true;
            Ok(*id)
        }
    }
}

fn kind_name(k: PollKind) -> &'static str {
    match k {
        PollKind::Single => "single",
        PollKind::Multiple => "multiple",
        PollKind::Text => "text",
        PollKind::Unspecified => "unknown",
    }
}

pub fn kind_named(name: &str) -> Option<PollKind> {
    match name {
        "single" => Some(PollKind::Single),
        "multiple" => Some(PollKind::Multiple),
        "text" => Some(PollKind::Text),
        _ => None,
    }
}

fn state_name(s: PollState) -> &'static str {
    match s {
        PollState::Draft => "draft",
        PollState::Open => "open",
        PollState::Ended => "ended",
        PollState::Unspecified => "unknown",
    }
}

/// A poll's results: counts per option, answers with names (named polls, for hosts),
/// free-text answers.
fn results(p: &PollRecord, with_names: bool) -> PollResults {
    let texts: Vec<String> = if p.anonymous {
        p.texts.clone()
    } else {
        let mut t: Vec<String> = p
            .answers
            .iter()
            .filter(|a| !a.text.is_empty())
            .map(|a| a.text.clone())
            .collect();
        t.sort_unstable();
        t
    };
    PollResults {
        answered: p.voters.len(),
        tally: p.tally.clone(),
        texts,
        answers: (with_names && !p.anonymous).then(|| {
            p.answers
                .iter()
                .map(|a| PollAnswer {
                    participant_id: a.participant_id.clone(),
                    name: a.name.clone(),
                    choices: a.choices.clone(),
                    text: a.text.clone(),
                })
                .collect()
        }),
    }
}

/// The `polls` message for participant `me` (`host`: a host or co-host, who sees drafts
/// and live results; others see launched polls, and results once shared).
pub fn polls_message(rec: &MeetingCollabRecord, me: &str, host: bool) -> ServerMsg {
    let polls = rec
        .polls
        .iter()
        .filter(|p| host || p.state() != PollState::Draft)
        .map(|p| Poll {
            poll_id: p.id,
            question: p.question.clone(),
            kind: kind_name(p.kind()).to_owned(),
            options: p.options.clone(),
            anonymous: p.anonymous,
            state: state_name(p.state()).to_owned(),
            shared: p.shared,
            answered_by_me: p.voters.binary_search_by(|v| v.as_str().cmp(me)).is_ok(),
            results: (host || p.shared).then(|| results(p, host)),
        })
        .collect();
    ServerMsg::Polls { polls }
}

/// The `questions` message for participant `me`: most votes first (then oldest);
/// dismissed ones for hosts only.
pub fn questions_message(rec: &MeetingCollabRecord, me: &str, host: bool) -> ServerMsg {
    let mut qs: Vec<&QuestionRecord> = rec
        .questions
        .iter()
        .filter(|q| host || !q.dismissed)
        .collect();
    qs.sort_by(|a, b| {
        b.voters
            .len()
            .cmp(&a.voters.len())
            .then(a.asked_unix_ms.cmp(&b.asked_unix_ms))
            .then(a.id.cmp(&b.id))
    });
    let some = |s: &String| (!s.is_empty()).then(|| s.clone());
    let questions = qs
        .into_iter()
        .map(|q| {
            let anonymous = q.author_id.is_empty();
            Question {
                question_id: q.id,
                text: q.text.clone(),
                anonymous,
                author_name: (!anonymous).then(|| q.author_name.clone()),
                mine: !anonymous && q.author_id == me,
                votes: q.voters.len(),
                voted_by_me: q.voters.binary_search_by(|v| v.as_str().cmp(me)).is_ok(),
                answer: some(&q.answer),
                answered_live: q.answered_live,
                answered_by_name: some(&q.answered_by_name),
                dismissed: q.dismissed,
                asked_unix_ms: q.asked_unix_ms,
            }
        })
        .collect();
    ServerMsg::Questions { questions }
}

/// A meeting's polls and Q&A as this node knows them.
#[derive(Clone, Debug, Default)]
pub struct CollabState {
    pub revision: i64,
    pub rec: Arc<MeetingCollabRecord>,
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
            let take = move |seen: Seen<MeetingCollabRecord>| {
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
fn publish(tx: &watch::Sender<CollabState>, rec: MeetingCollabRecord, revision: i64, fresh: bool) {
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
                .update_collab(&meeting, &mut |rec: &mut MeetingCollabRecord| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn who(id: &str, role: &str) -> Who {
        Who {
            id: id.into(),
            name: format!("Name of {id}"),
            role: Role::parse(role).unwrap(),
        }
    }

    /// The messages as their JSON, as clients read them.
    fn polls_message(rec: &MeetingCollabRecord, me: &str, host: bool) -> Value {
        serde_json::to_value(super::polls_message(rec, me, host)).unwrap()
    }

    fn questions_message(rec: &MeetingCollabRecord, me: &str, host: bool) -> Value {
        serde_json::to_value(super::questions_message(rec, me, host)).unwrap()
    }

    fn poll(kind: PollKind, options: &[&str], anonymous: bool) -> Op {
        Op::PollCreate {
            question: "Which?".into(),
            kind,
            options: options.iter().map(|o| (*o).to_owned()).collect(),
            anonymous,
        }
    }

    fn answer(poll: u32, choices: &[u32], text: &str) -> Op {
        Op::PollAnswer {
            poll,
            choices: choices.to_vec(),
            text: text.into(),
        }
    }

    #[test]
    fn a_poll_is_made_launched_answered_once_each_ended_and_shared() {
        let mut rec = MeetingCollabRecord::default();
        let (host, a, b) = (who("h", "host"), who("a", "attendee"), who("b", "attendee"));
        assert!(apply(&mut rec, &a, &poll(PollKind::Single, &["x", "y"], false), 1).is_err());
        let id = apply(
            &mut rec,
            &host,
            &poll(PollKind::Single, &["x", "y"], false),
            1,
        )
        .unwrap();
        assert!(
            apply(&mut rec, &a, &answer(id, &[0], ""), 2).is_err(),
            "a draft takes no answers"
        );
        assert!(
            polls_message(&rec, "a", false)["polls"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert!(apply(&mut rec, &a, &Op::PollLaunch(id), 2).is_err());
        apply(&mut rec, &host, &Op::PollLaunch(id), 2).unwrap();
        apply(&mut rec, &a, &answer(id, &[1], ""), 3).unwrap();
        assert!(
            apply(&mut rec, &a, &answer(id, &[0], ""), 3).is_err(),
            "once each"
        );
        assert!(
            apply(&mut rec, &b, &answer(id, &[0, 1], ""), 3).is_err(),
            "one choice"
        );
        assert!(
            apply(&mut rec, &b, &answer(id, &[2], ""), 3).is_err(),
            "no such option"
        );
        apply(&mut rec, &b, &answer(id, &[1], ""), 3).unwrap();
        assert!(
            apply(&mut rec, &a, &Op::PollEnd(id), 4).is_err(),
            "attendees cannot end it"
        );
        let seen = polls_message(&rec, "a", false);
        assert_eq!(seen["polls"][0]["answered_by_me"], true);
        assert!(seen["polls"][0].get("results").is_none(), "not shared yet");
        let hosts = polls_message(&rec, "h", true);
        assert_eq!(hosts["polls"][0]["results"]["tally"], json!([0, 2]));
        assert_eq!(
            hosts["polls"][0]["results"]["answers"][0]["name"],
            "Name of a"
        );
        assert!(
            apply(&mut rec, &host, &Op::PollShare(id), 4).is_err(),
            "end it first"
        );
        apply(&mut rec, &host, &Op::PollEnd(id), 4).unwrap();
        assert!(
            apply(&mut rec, &b, &answer(id, &[0], ""), 5).is_err(),
            "ended"
        );
        apply(&mut rec, &host, &Op::PollShare(id), 5).unwrap();
        let seen = polls_message(&rec, "b", false);
        assert_eq!(seen["polls"][0]["results"]["tally"], json!([0, 2]));
        assert!(
            seen["polls"][0]["results"].get("answers").is_none(),
            "no names for attendees"
        );
    }

    #[test]
    fn an_anonymous_poll_keeps_no_link_between_answer_and_participant() {
        let mut rec = MeetingCollabRecord::default();
        let host = who("h", "co-host");
        let id = apply(&mut rec, &host, &poll(PollKind::Text, &[], true), 1).unwrap();
        apply(&mut rec, &host, &Op::PollLaunch(id), 1).unwrap();
        for (p, text) in [("zed", "apples"), ("amy", "pears"), ("bob", "figs")] {
            apply(&mut rec, &who(p, "attendee"), &answer(id, &[], text), 2).unwrap();
        }
        let p = &rec.polls[0];
        assert!(p.answers.is_empty());
        assert_eq!(p.voters, ["amy", "bob", "zed"]);
        assert_eq!(p.texts, ["apples", "figs", "pears"]);
        let encoded = prost::Message::encode_to_vec(&rec);
        for id in ["zed", "amy", "bob"] {
            let shown = polls_message(&rec, "h", true).to_string();
            assert!(!shown.contains(id), "{id} in {shown}");
            assert!(!shown.contains(&format!("Name of {id}")));
            assert!(
                !encoded
                    .windows(9)
                    .any(|w| w == format!("Name of {id}").as_bytes()),
                "no names stored"
            );
        }
        // Multiple choice: several different options, each counted.
        let m = apply(
            &mut rec,
            &host,
            &poll(PollKind::Multiple, &["a", "b", "c"], true),
            3,
        )
        .unwrap();
        apply(&mut rec, &host, &Op::PollLaunch(m), 3).unwrap();
        apply(
            &mut rec,
            &who("amy", "attendee"),
            &answer(m, &[2, 0], ""),
            4,
        )
        .unwrap();
        assert!(
            apply(
                &mut rec,
                &who("bob", "attendee"),
                &answer(m, &[1, 1], ""),
                4
            )
            .is_err()
        );
        assert_eq!(rec.polls[1].tally, [1, 0, 1]);
    }

    #[test]
    fn questions_are_ordered_by_votes_and_an_anonymous_authors_name_is_nowhere() {
        let mut rec = MeetingCollabRecord::default();
        let (host, a, b, c) = (
            who("h", "host"),
            who("a", "attendee"),
            who("b", "attendee"),
            who("c", "panelist"),
        );
        let first = apply(
            &mut rec,
            &a,
            &Op::Ask {
                text: "First?".into(),
                anonymous: false,
            },
            1,
        )
        .unwrap();
        let second = apply(
            &mut rec,
            &b,
            &Op::Ask {
                text: "Second?".into(),
                anonymous: true,
            },
            2,
        )
        .unwrap();
        apply(&mut rec, &a, &Op::Upvote(second), 3).unwrap();
        apply(&mut rec, &c, &Op::Upvote(second), 3).unwrap();
        assert!(
            apply(&mut rec, &c, &Op::Upvote(second), 3).is_err(),
            "one vote each"
        );
        apply(&mut rec, &c, &Op::Upvote(first), 3).unwrap();
        let seen = questions_message(&rec, "a", false);
        assert_eq!(seen["questions"][0]["question_id"], second);
        assert_eq!(seen["questions"][0]["votes"], 2);
        assert_eq!(seen["questions"][0]["voted_by_me"], true);
        assert_eq!(seen["questions"][1]["mine"], true);
        let all = format!("{} {:?}", questions_message(&rec, "h", true), rec.questions);
        assert!(
            !all.contains("Name of b") && !all.contains("\"b\""),
            "{all}"
        );
        assert!(apply(&mut rec, &a, &Op::Dismiss(first), 4).is_err());
        apply(
            &mut rec,
            &host,
            &Op::Answer {
                question: first,
                text: String::new(),
                live: true,
            },
            4,
        )
        .unwrap();
        apply(&mut rec, &host, &Op::Dismiss(second), 4).unwrap();
        let seen = questions_message(&rec, "a", false);
        assert_eq!(
            seen["questions"].as_array().unwrap().len(),
            1,
            "dismissed: hosts only"
        );
        assert_eq!(seen["questions"][0]["answered_live"], true);
        assert!(
            apply(
                &mut rec,
                &a,
                &Op::Ask {
                    text: " ".into(),
                    anonymous: false
                },
                5
            )
            .is_err()
        );
    }
}
