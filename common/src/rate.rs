//! A token bucket: a burst at once, then so many a second. Pure: time is passed in. The
//! controller's join limits and a media node session's allowances (host actions, polls,
//! reactions, whiteboard) are made of it.
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` (at least one) that refills `per_second`.
    pub fn new(burst: f64, per_second: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            tokens: burst,
            burst,
            per_second,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = self.at.max(now);
    }

    /// Takes one token at `now`; `Err(wait)` if there is none, with the time until there
    /// is one.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.per_second <= 0.0 {
            return Err(Duration::MAX);
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.per_second,
        ))
    }

    /// How long until there is a token at `now` (None: there is one), without taking it.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if tokens >= 1.0 {
            return None;
        }
        if self.per_second <= 0.0 {
            return Some(Duration::MAX);
        }
        Some(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
    }

    /// Whether the bucket is full again at `now` (a keyed limiter may forget it).
    pub fn full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.per_second >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_so_many_a_second_and_never_more_than_a_burst() {
        let start = Instant::now();
        let mut b = TokenBucket::new(20.0, 2.0, start);
        assert!((0..20).all(|_| b.take(start).is_ok()));
        let wait = b.take(start).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 0.5).abs() < 1e-6,
            "the next in half a second: {wait:?}"
        );
        let later = start + Duration::from_millis(500);
        assert!(b.take(later).is_ok(), "one more half a second later");
        assert!(b.take(later).is_err());
        assert!(!b.full_at(later));
        assert!(
            b.wait(later).is_some_and(|w| w > Duration::ZERO),
            "empty: a wait"
        );
        assert_eq!(
            b.wait(later + Duration::from_millis(500)),
            None,
            "a token again"
        );
        let much_later = start + Duration::from_secs(60);
        assert!(b.full_at(much_later));
        assert!(
            (0..20).all(|_| b.take(much_later).is_ok()) && b.take(much_later).is_err(),
            "never more than a burst"
        );
        // Time that runs backwards (another thread's older instant) adds nothing.
        assert!(b.take(start).is_err());
    }
}
