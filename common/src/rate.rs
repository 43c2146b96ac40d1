//! A token bucket: a burst at once, then so many a second. Pure: time is passed in. The
//! controller's join limits and a media node session's allowances (host actions, polls,
//! reactions, whiteboard) are made of it; a [`Limiter`] keeps one per key (the
//! controller's joins per address and meeting, the SIP gateway's INVITEs per address).
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

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

/// A rate: `per_minute` on average, up to `burst` at once; `per_minute = 0` turns it off.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

/// Token buckets by key. A bucket that would be full again is forgotten, so memory
/// stays bounded by the keys active within one refill time.
pub struct Limiter<K> {
    rate: Rate,
    buckets: HashMap<K, TokenBucket>,
    last_prune: Option<Instant>,
}

impl<K: Hash + Eq> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: HashMap::new(),
            last_prune: None,
        }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.rate.per_minute) / 60.0
    }

    /// Takes one token of `key`'s bucket at `now`; `Err(wait)` if there is none, with
    /// the time until there is.
    pub fn check(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        if self.rate.per_minute == 0 {
            return Ok(());
        }
        self.prune(now);
        let (burst, per_second) = (f64::from(self.rate.burst), self.per_second());
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(burst, per_second, now))
            .take(now)
    }

    /// How long until `key` has a token again (None: it has one), without taking it.
    pub fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        if self.rate.per_minute == 0 {
            return None;
        }
        self.buckets.get(key)?.wait(now)
    }

    /// Forgets the buckets that have refilled (at most once a second).
    fn prune(&mut self, now: Instant) {
        if self
            .last_prune
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_prune = Some(now);
        self.buckets.retain(|_, b| !b.full_at(now));
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
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
