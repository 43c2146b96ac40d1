//! Q&A: participants ask (by name or anonymously) and upvote; hosts answer in writing
//! or out loud, or dismiss. What participants see of it is the `questions` message.
use crate::store::{CollabRecord, QuestionEntry};
use signaling::{Question, ServerMsg};

use super::{MAX_TEXT_CHARS, Who, chars_within, insert_sorted, next_id};

pub const MAX_QUESTIONS: usize = 1000;

fn question_mut(rec: &mut CollabRecord, id: u32) -> Result<&mut QuestionEntry, String> {
    rec.questions
        .iter_mut()
        .find(|q| q.id == id)
        .ok_or_else(|| format!("there is no question {id}"))
}

/// A new question: its id. An anonymous one keeps no author.
pub(super) fn ask(
    rec: &mut CollabRecord,
    who: &Who,
    text: &str,
    anonymous: bool,
    now_ms: i64,
) -> Result<u32, String> {
    if rec.questions.len() >= MAX_QUESTIONS {
        return Err(format!("a meeting takes at most {MAX_QUESTIONS} questions"));
    }
    let text = chars_within(text, MAX_TEXT_CHARS).map_err(|e| format!("question: {e}"))?;
    let id = next_id(rec);
    let (author_id, author_name) = if anonymous {
        (String::new(), String::new())
    } else {
        (who.id.clone(), who.name.clone())
    };
    rec.questions.push(QuestionEntry {
        id,
        text,
        author_id,
        author_name,
        asked_unix_ms: now_ms,
        ..QuestionEntry::default()
    });
    Ok(id)
}

pub(super) fn upvote(rec: &mut CollabRecord, who: &Who, id: u32) -> Result<u32, String> {
    let q = question_mut(rec, id)?;
    if q.dismissed {
        return Err(format!("question {id} was dismissed"));
    }
    if !insert_sorted(&mut q.voters, &who.id) {
        return Err(format!("you upvoted question {id} already"));
    }
    Ok(id)
}

/// A host answers `question` in writing, or (`live`) marks it answered out loud.
pub(super) fn answer(
    rec: &mut CollabRecord,
    who: &Who,
    question: u32,
    text: &str,
    live: bool,
) -> Result<u32, String> {
    let text = if live {
        String::new()
    } else {
        chars_within(text, MAX_TEXT_CHARS).map_err(|e| format!("answer: {e}"))?
    };
    let q = question_mut(rec, question)?;
    if live {
        q.answered_live = true;
    } else {
        q.answer = text;
    }
    q.answered_by_name = who.name.clone();
    Ok(question)
}

pub(super) fn dismiss(rec: &mut CollabRecord, id: u32) -> Result<u32, String> {
    question_mut(rec, id)?.dismissed = true;
    Ok(id)
}

/// The `questions` message for participant `me`: most votes first (then oldest);
/// dismissed ones for hosts only.
pub fn questions_message(rec: &CollabRecord, me: &str, host: bool) -> ServerMsg {
    let mut qs: Vec<&QuestionEntry> = rec
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::collab::{Op, apply, who};

    /// The message as its JSON, as clients read it.
    fn questions_message(rec: &CollabRecord, me: &str, host: bool) -> Value {
        serde_json::to_value(super::questions_message(rec, me, host)).unwrap()
    }

    #[test]
    fn questions_are_ordered_by_votes_and_an_anonymous_authors_name_is_nowhere() {
        let mut rec = CollabRecord::default();
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
