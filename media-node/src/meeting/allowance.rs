//! How fast one session may ask for what costs the meeting: host actions and poll
//! requests are writes to the store that every node reads; reactions and whiteboard
//! messages go to everyone. Token buckets on the time given.
use std::time::Instant;

use common::rate::TokenBucket;

/// Host actions a session may take in a burst, and how fast the allowance comes back.
pub const HOST_ACTIONS: (f64, f64) = (20.0, 2.0);
/// Poll and Q&A requests (each goes into a write to the store, batched per node).
pub const COLLAB_REQUESTS: (f64, f64) = (20.0, 4.0);
/// Reactions: every participant of the meeting is shown each.
pub const REACTIONS: (f64, f64) = (5.0, 1.0);
/// Whiteboard messages: a stroke goes in segments, a few a second while drawing.
pub const BOARD_MESSAGES: (f64, f64) = (60.0, 30.0);
/// View changes (each refills the sender's receive slots): a resize sends a few.
pub const VIEWS: (f64, f64) = (10.0, 5.0);
/// Pages of the roster (each lists up to a hundred participants): paging through the
/// participant panel.
pub const ROSTER_PAGES: (f64, f64) = (10.0, 5.0);

/// One session's allowances.
pub struct Allowances {
    pub host_actions: TokenBucket,
    pub collab: TokenBucket,
    pub reactions: TokenBucket,
    pub board: TokenBucket,
    pub views: TokenBucket,
    pub roster_pages: TokenBucket,
}

fn bucket((burst, per_second): (f64, f64), now: Instant) -> TokenBucket {
    TokenBucket::new(burst, per_second, now)
}

impl Allowances {
    pub fn new(now: Instant) -> Self {
        Allowances {
            host_actions: bucket(HOST_ACTIONS, now),
            collab: bucket(COLLAB_REQUESTS, now),
            reactions: bucket(REACTIONS, now),
            board: bucket(BOARD_MESSAGES, now),
            views: bucket(VIEWS, now),
            roster_pages: bucket(ROSTER_PAGES, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_actions_come_in_bursts_of_twenty_then_two_a_second() {
        let start = Instant::now();
        let mut a = Allowances::new(start);
        assert!((0..20).all(|_| a.host_actions.take(start).is_ok()));
        assert!(a.host_actions.take(start).is_err(), "the burst is spent");
        let later = start + std::time::Duration::from_millis(500);
        assert!(
            a.host_actions.take(later).is_ok(),
            "one more half a second later"
        );
        assert!(a.host_actions.take(later).is_err());
        // The others are buckets of their own.
        assert!(a.reactions.take(later).is_ok());
    }
}
