//! Roster changes in batches: a client on receive slots (one that sent `view`) gets the
//! meeting's joins, leaves, updates and mutes as `roster` messages, at most one every
//! [`ROSTER_EVERY`]; the first change after a quiet spell goes at once. A lecture that
//! fills at 20 joins a second is then four messages a second per session, not twenty.
//! Within a batch a newer `participant_updated` or `mute` of someone replaces an older
//! one of the same kind; everything else keeps its order.
use std::time::Duration;

use signaling::{Participant, ROSTER_PAGE, Role, ServerMsg};
use tokio::time::Instant;

/// How often a session is sent a batch at most.
pub(super) const ROSTER_EVERY: Duration = Duration::from_millis(250);

/// The changes not sent yet, and when the last batch went.
#[derive(Default)]
pub(super) struct RosterBatch {
    pending: Vec<ServerMsg>,
    last_sent: Option<Instant>,
}

/// The roster in the order `welcome` and `roster_page` list it: hosts and co-hosts, then
/// panelists, then everyone else, each in the order they joined.
pub(super) fn in_order(mut others: Vec<Participant>) -> Vec<Participant> {
    let rank = |p: &Participant| match p.role {
        Role::Host | Role::CoHost => 0,
        Role::Panelist => 1,
        Role::Attendee => 2,
    };
    others.sort_by(|a, b| {
        (rank(a), a.joined_unix_ms, &a.participant_id).cmp(&(
            rank(b),
            b.joined_unix_ms,
            &b.participant_id,
        ))
    });
    others
}

/// The page of `ordered` from the `from`-th participant on: at most [`ROSTER_PAGE`],
/// none past the end.
pub(super) fn page(ordered: &[Participant], from: u32) -> Vec<Participant> {
    ordered
        .iter()
        .skip(from as usize)
        .take(ROSTER_PAGE)
        .cloned()
        .collect()
}

/// Whether `ev` is a roster change.
pub(super) fn is_roster(ev: &ServerMsg) -> bool {
    matches!(
        ev,
        ServerMsg::ParticipantJoined { .. }
            | ServerMsg::ParticipantUpdated { .. }
            | ServerMsg::ParticipantLeft { .. }
            | ServerMsg::Mute { .. }
    )
}

/// Who a `participant_updated` or `mute` is about, and which kind it is.
fn replaceable(ev: &ServerMsg) -> Option<(&str, bool)> {
    match ev {
        ServerMsg::ParticipantUpdated { participant } => {
            Some((participant.participant_id.as_str(), true))
        }
        ServerMsg::Mute { participant_id, .. } => Some((participant_id.as_str(), false)),
        _ => None,
    }
}

impl RosterBatch {
    /// Adds a change; returns a batch to send now when the last one went long enough ago
    /// and nothing waits.
    pub(super) fn add(&mut self, ev: ServerMsg, now: Instant) -> Option<ServerMsg> {
        if let Some(key) = replaceable(&ev) {
            self.pending.retain(|p| replaceable(p) != Some(key));
        }
        self.pending.push(ev);
        if self.pending.len() == 1 && self.last_sent.is_none_or(|t| now >= t + ROSTER_EVERY) {
            return self.take(now);
        }
        None
    }

    /// When the waiting changes are due, if any wait.
    pub(super) fn due(&self) -> Option<Instant> {
        if self.pending.is_empty() {
            return None;
        }
        Some(
            self.last_sent
                .map_or_else(Instant::now, |t| t + ROSTER_EVERY),
        )
    }

    /// The waiting changes as one `roster` message.
    pub(super) fn take(&mut self, now: Instant) -> Option<ServerMsg> {
        if self.pending.is_empty() {
            return None;
        }
        self.last_sent = Some(now);
        Some(ServerMsg::Roster {
            events: std::mem::take(&mut self.pending),
        })
    }
}

#[cfg(test)]
mod tests {
    use signaling::Participant;

    use super::*;

    fn joined(id: &str) -> ServerMsg {
        ServerMsg::ParticipantJoined {
            participant: Participant {
                participant_id: id.into(),
                ..Participant::default()
            },
        }
    }

    fn mute(id: &str, audio: bool) -> ServerMsg {
        ServerMsg::Mute {
            participant_id: id.into(),
            audio_muted: audio,
            video_muted: false,
        }
    }

    #[test]
    fn a_join_storm_is_a_batch_every_quarter_second_with_the_latest_of_each_change() {
        let t0 = Instant::now();
        let mut b = RosterBatch::default();
        // The first change after a quiet spell goes at once.
        assert!(
            matches!(b.add(joined("a"), t0), Some(ServerMsg::Roster { events }) if events.len() == 1)
        );
        // Then they wait for the quarter second.
        for (i, id) in ["b", "c", "d"].iter().enumerate() {
            assert!(
                b.add(joined(id), t0 + Duration::from_millis(10 * i as u64))
                    .is_none()
            );
        }
        assert!(b.add(mute("b", true), t0).is_none());
        assert!(b.add(mute("b", false), t0).is_none());
        assert_eq!(b.due(), Some(t0 + ROSTER_EVERY));
        let Some(ServerMsg::Roster { events }) = b.take(t0 + ROSTER_EVERY) else {
            panic!("a batch")
        };
        assert_eq!(
            events.len(),
            4,
            "three joins and b's latest mute: {events:?}"
        );
        assert_eq!(events[3], mute("b", false));
        assert_eq!(b.due(), None);
        // Quiet for longer than the interval: the next change goes at once again.
        let later = t0 + ROSTER_EVERY * 3;
        assert!(b.add(joined("e"), later).is_some());
    }
}
