//! What the node said to a session after `welcome`, read back typed: every message of
//! one `type`, or the fields tests read most (participants, chat, the room's settings,
//! refusals, why the session closed, polls).
use signaling::{CloseCode, Participant, Poll, RoomSettings, ServerMsg};

use super::Bot;

/// `msg`'s `type` on the wire, as serde writes it (so never out of step with the
/// `signaling` crate's names).
fn type_of(msg: &ServerMsg) -> String {
    let v = serde_json::to_value(msg).expect("signaling messages always serialise");
    v["type"].as_str().unwrap_or_default().to_owned()
}

impl Bot {
    /// What `pick` takes out of each message the node sent since the media connection
    /// came up, in order; e.g. every breakout state:
    /// `bot.pick_events(|m| match m { ServerMsg::Breakout(b) => Some(b.clone()), _ => None })`.
    /// Panics if the session ended on a message it could not read: what it kept is then
    /// cut short, and a check that something never came would pass for nothing.
    pub fn pick_events<T>(&self, pick: impl FnMut(&ServerMsg) -> Option<T>) -> Vec<T> {
        if let Some(why) = self.ended.borrow().as_deref()
            && why.contains("not a ServerMsg")
        {
            panic!("the bot's session ended on an unreadable message: {why}");
        }
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter_map(pick)
            .collect()
    }

    /// The messages of `type` `kind` (e.g. `"breakout"`) the node sent since the media
    /// connection came up, in order. Offers, answers and `track`s are not kept here.
    /// Panics if the node sends no message of that type (a misspelt kind would
    /// otherwise always read as nothing received).
    pub fn events(&self, kind: &str) -> Vec<ServerMsg> {
        assert!(
            signaling::server_types().iter().any(|t| t == kind),
            "the node sends no message of type {kind:?}"
        );
        self.pick_events(|m| (type_of(m) == kind).then(|| m.clone()))
    }

    /// The participant of every `participant_joined`, in order.
    pub fn participants_joined(&self) -> Vec<Participant> {
        self.pick_events(|m| match m {
            ServerMsg::ParticipantJoined { participant } => Some(participant.clone()),
            _ => None,
        })
    }

    /// The participant of every `participant_updated`, in order.
    pub fn participants_updated(&self) -> Vec<Participant> {
        self.pick_events(|m| match m {
            ServerMsg::ParticipantUpdated { participant } => Some(participant.clone()),
            _ => None,
        })
    }

    /// The participant id of every `participant_left`, in order.
    pub fn participants_left(&self) -> Vec<String> {
        self.pick_events(|m| match m {
            ServerMsg::ParticipantLeft { participant_id } => Some(participant_id.clone()),
            _ => None,
        })
    }

    /// The text of every `chat`, in order.
    pub fn chat_texts(&self) -> Vec<String> {
        self.pick_events(|m| match m {
            ServerMsg::Chat { text, .. } => Some(text.clone()),
            _ => None,
        })
    }

    /// Every `room` (the meeting's settings), in order: the last is the current one.
    pub fn rooms(&self) -> Vec<RoomSettings> {
        self.pick_events(|m| match m {
            ServerMsg::Room(r) => Some(r.clone()),
            _ => None,
        })
    }

    /// Every `polls` (the whole list, as this participant is shown it), in order.
    pub fn polls(&self) -> Vec<Vec<Poll>> {
        self.pick_events(|m| match m {
            ServerMsg::Polls { polls } => Some(polls.clone()),
            _ => None,
        })
    }

    /// The `message` of every `error` that answers our messages of type `in_reply_to`
    /// (a [`signaling::ClientMsg::kind`]), in order.
    pub fn errors(&self, in_reply_to: &str) -> Vec<String> {
        self.all_errors()
            .into_iter()
            .filter(|(to, _)| to == in_reply_to)
            .map(|(_, message)| message)
            .collect()
    }

    /// Every `error`: what it answers and what it says, in order.
    pub(super) fn all_errors(&self) -> Vec<(String, String)> {
        self.pick_events(|m| match m {
            ServerMsg::Error {
                in_reply_to,
                message,
            } => Some((in_reply_to.clone(), message.clone())),
            _ => None,
        })
    }

    /// The node's `closed`, once it sent one: why the session ended, and the reason as
    /// told to a person.
    pub fn closed(&self) -> Option<(CloseCode, String)> {
        self.pick_events(|m| match m {
            ServerMsg::Closed { code, reason } => Some((*code, reason.clone())),
            _ => None,
        })
        .pop()
    }
}
