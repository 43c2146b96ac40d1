//! Polls: a host drafts one, launches it, ends it and shares its results; each
//! participant answers once. What participants see of them is the `polls` message.
use crate::store::{CollabRecord, PollAnswerEntry, PollEntry, PollKind, PollState};
use signaling::{Poll, PollAnswer, PollResults, ServerMsg};

use super::{MAX_TEXT_CHARS, Who, chars_within, insert_sorted, next_id};

pub const MAX_POLLS: usize = 100;
pub const MAX_OPTIONS: usize = 10;
pub const MAX_OPTION_CHARS: usize = 200;

fn poll_mut(rec: &mut CollabRecord, id: u32) -> Result<&mut PollEntry, String> {
    rec.polls
        .iter_mut()
        .find(|p| p.id == id)
        .ok_or_else(|| format!("there is no poll {id}"))
}

/// A new poll, as a draft: its id.
pub(super) fn create(
    rec: &mut CollabRecord,
    who: &Who,
    question: &str,
    kind: PollKind,
    options: &[String],
    anonymous: bool,
    now_ms: i64,
) -> Result<u32, String> {
    if rec.polls.len() >= MAX_POLLS {
        return Err(format!("a meeting has at most {MAX_POLLS} polls"));
    }
    let question = chars_within(question, MAX_TEXT_CHARS).map_err(|e| format!("question: {e}"))?;
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
                .map(|o| chars_within(o, MAX_OPTION_CHARS).map_err(|e| format!("option: {e}")))
                .collect::<Result<Vec<_>, _>>()?
        }
        PollKind::Unknown(_) => return Err("kind: single, multiple or text".into()),
    };
    let id = next_id(rec);
    rec.polls.push(PollEntry {
        id,
        question,
        kind,
        tally: vec![0; options.len()],
        options,
        anonymous,
        state: PollState::Draft,
        created_by_name: who.name.clone(),
        created_unix_ms: now_ms,
        ..PollEntry::default()
    });
    Ok(id)
}

pub(super) fn launch(rec: &mut CollabRecord, id: u32, now_ms: i64) -> Result<u32, String> {
    let p = poll_mut(rec, id)?;
    if p.state != PollState::Draft {
        return Err(format!("poll {id} was launched already"));
    }
    p.state = PollState::Open;
    p.launched_unix_ms = now_ms;
    Ok(id)
}

pub(super) fn end(rec: &mut CollabRecord, id: u32, now_ms: i64) -> Result<u32, String> {
    let p = poll_mut(rec, id)?;
    if p.state != PollState::Open {
        return Err(format!("poll {id} is not open"));
    }
    p.state = PollState::Ended;
    p.ended_unix_ms = now_ms;
    Ok(id)
}

pub(super) fn share(rec: &mut CollabRecord, id: u32) -> Result<u32, String> {
    let p = poll_mut(rec, id)?;
    if p.state != PollState::Ended {
        return Err(format!("poll {id} has not ended: end it first"));
    }
    p.shared = true;
    Ok(id)
}

/// `who`'s answer to `poll`: its choices, or its text for a free-text poll.
pub(super) fn answer(
    rec: &mut CollabRecord,
    who: &Who,
    poll: u32,
    choices: &[u32],
    text: &str,
    now_ms: i64,
) -> Result<u32, String> {
    let p = poll_mut(rec, poll)?;
    if p.state != PollState::Open {
        return Err(format!("poll {poll} is not open"));
    }
    if p.voters.binary_search(&who.id).is_ok() {
        return Err(format!("you answered poll {poll} already"));
    }
    let n = p.options.len() as u32;
    let (choices, text) = match p.kind {
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
            let mut c = choices.to_vec();
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
        p.answers.push(PollAnswerEntry {
            participant_id: who.id.clone(),
            name: who.name.clone(),
            choices,
            text,
            unix_ms: now_ms,
        });
    }
    Ok(poll)
}

fn kind_name(k: PollKind) -> &'static str {
    match k {
        PollKind::Single => "single",
        PollKind::Multiple => "multiple",
        PollKind::Text => "text",
        PollKind::Unknown(_) => "unknown",
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
        PollState::Unknown(_) => "unknown",
    }
}

/// A poll's results: counts per option, answers with names (named polls, for hosts),
/// free-text answers.
fn results(p: &PollEntry, with_names: bool) -> PollResults {
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
pub fn polls_message(rec: &CollabRecord, me: &str, host: bool) -> ServerMsg {
    let polls = rec
        .polls
        .iter()
        .filter(|p| host || p.state != PollState::Draft)
        .map(|p| Poll {
            poll_id: p.id,
            question: p.question.clone(),
            kind: kind_name(p.kind).to_owned(),
            options: p.options.clone(),
            anonymous: p.anonymous,
            state: state_name(p.state).to_owned(),
            shared: p.shared,
            answered_by_me: p.voters.binary_search_by(|v| v.as_str().cmp(me)).is_ok(),
            results: (host || p.shared).then(|| results(p, host)),
        })
        .collect();
    ServerMsg::Polls { polls }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::collab::{Op, apply, who};

    /// The message as its JSON, as clients read it.
    fn polls_message(rec: &CollabRecord, me: &str, host: bool) -> Value {
        serde_json::to_value(super::polls_message(rec, me, host)).unwrap()
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
        let mut rec = CollabRecord::default();
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
        let mut rec = CollabRecord::default();
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
        let encoded = crate::store::collab_bytes(&rec);
        for id in ["zed", "amy", "bob"] {
            let shown = polls_message(&rec, "h", true).to_string();
            assert!(!shown.contains(id), "{id} in {shown}");
            let name = format!("Name of {id}");
            assert!(!shown.contains(&name));
            assert!(
                !encoded.windows(name.len()).any(|w| w == name.as_bytes()),
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
}
