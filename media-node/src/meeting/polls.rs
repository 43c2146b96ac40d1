//! Polls and Q&A as a session asks for them: the request a client message is. The
//! requests are checked and applied where the record is (`collab/`), in the store's
//! compare-and-swap.
use signaling::ClientMsg;

use crate::collab;

/// The poll or Q&A request `m` is, if it is one (`Err`: a poll kind we do not know).
pub fn collab_op(m: &ClientMsg) -> Option<Result<collab::Op, String>> {
    use collab::Op;
    Some(Ok(match m {
        ClientMsg::PollCreate {
            question,
            kind,
            options,
            anonymous,
        } => {
            let Some(kind) = collab::kind_named(kind) else {
                return Some(Err(format!(
                    "kind {:?}: expected single, multiple or text",
                    kind.chars().take(32).collect::<String>()
                )));
            };
            Op::PollCreate {
                question: question.clone(),
                kind,
                options: options.clone(),
                anonymous: *anonymous,
            }
        }
        ClientMsg::PollLaunch { poll_id } => Op::PollLaunch(*poll_id),
        ClientMsg::PollEnd { poll_id } => Op::PollEnd(*poll_id),
        ClientMsg::PollShare { poll_id } => Op::PollShare(*poll_id),
        ClientMsg::PollAnswer {
            poll_id,
            choices,
            text,
        } => Op::PollAnswer {
            poll: *poll_id,
            choices: choices.clone(),
            text: text.clone(),
        },
        ClientMsg::QuestionAsk { text, anonymous } => Op::Ask {
            text: text.clone(),
            anonymous: *anonymous,
        },
        ClientMsg::QuestionUpvote { question_id } => Op::Upvote(*question_id),
        ClientMsg::QuestionAnswer {
            question_id,
            text,
            live,
        } => Op::Answer {
            question: *question_id,
            text: text.clone(),
            live: *live,
        },
        ClientMsg::QuestionDismiss { question_id } => Op::Dismiss(*question_id),
        _ => return None,
    }))
}
