//! Join rate limits: a token bucket per client address and per meeting, so that one
//! client (or a script) cannot flood the controller or a meeting with joins. Each
//! controller replica counts its own joins; behind a load balancer the limit a client
//! sees is at most the replicas times the configured one. Pure: time is passed in.
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use common::ids::MeetingId;
pub use common::rate::{Limiter, Rate};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JoinLimitsConfig {
    /// Joins from one client address (a NAT can put a whole campus behind one).
    pub per_address: Rate,
    /// Joins to one meeting.
    pub per_meeting: Rate,
}

impl Default for JoinLimitsConfig {
    fn default() -> Self {
        Self {
            per_address: Rate {
                per_minute: 120,
                burst: 60,
            },
            per_meeting: Rate {
                per_minute: 600,
                burst: 200,
            },
        }
    }
}

/// The controller's join limits.
pub struct JoinLimits {
    by_address: Mutex<Limiter<IpAddr>>,
    by_meeting: Mutex<Limiter<MeetingId>>,
}

impl JoinLimits {
    pub fn new(cfg: &JoinLimitsConfig) -> Self {
        Self {
            by_address: Mutex::new(Limiter::new(cfg.per_address)),
            by_meeting: Mutex::new(Limiter::new(cfg.per_meeting)),
        }
    }

    /// Counts a join from `addr` (if known) to `meeting`; refuses it with how long to
    /// wait if either is over its rate.
    pub fn check(
        &self,
        addr: Option<IpAddr>,
        meeting: &MeetingId,
        now: Instant,
    ) -> Result<(), ApiError> {
        if let Some(addr) = addr
            && let Err(wait) = self.by_address.lock().expect("limits").check(addr, now)
        {
            return Err(ApiError::TooManyRequests {
                message: "too many joins from this address; try again later".into(),
                retry_after: wait,
            });
        }
        if let Err(wait) = self
            .by_meeting
            .lock()
            .expect("limits")
            .check(meeting.clone(), now)
        {
            return Err(ApiError::TooManyRequests {
                message: format!("too many joins to meeting {meeting} at once; try again shortly"),
                retry_after: wait,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_joins_wait_for_the_rate_and_say_how_long() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Rate {
            per_minute: 60,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(l.check("a", t0).is_ok());
        }
        let wait = l.check("a", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert!(l.check("b", t0).is_ok());
        // One token a second comes back.
        assert!(l.check("a", t0 + Duration::from_millis(500)).is_err());
        assert!(l.check("a", t0 + Duration::from_millis(1001)).is_ok());
        assert!(l.check("a", t0 + Duration::from_millis(1002)).is_err());
    }

    #[test]
    fn full_buckets_are_forgotten_and_a_zero_rate_limits_nothing() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Rate {
            per_minute: 600,
            burst: 10,
        });
        for i in 0..1000u32 {
            l.check(i, t0).unwrap();
        }
        assert_eq!(l.len(), 1000);
        // 10 tokens at 10 a second: full again after a second.
        l.check(5000, t0 + Duration::from_millis(1100)).unwrap();
        assert_eq!(l.len(), 1, "only the newest bucket is left");

        let mut off = Limiter::new(Rate {
            per_minute: 0,
            burst: 0,
        });
        for _ in 0..10_000 {
            off.check("a", t0).unwrap();
        }
        assert!(off.is_empty());
    }

    #[test]
    fn joins_are_limited_per_address_and_per_meeting() {
        let t0 = Instant::now();
        let limits = JoinLimits::new(&JoinLimitsConfig {
            per_address: Rate {
                per_minute: 60,
                burst: 2,
            },
            per_meeting: Rate {
                per_minute: 60,
                burst: 3,
            },
        });
        let (m1, m2) = (MeetingId::random(), MeetingId::random());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        limits.check(Some(a), &m1, t0).unwrap();
        limits.check(Some(a), &m2, t0).unwrap();
        let e = limits.check(Some(a), &m2, t0).unwrap_err();
        assert!(matches!(e, ApiError::TooManyRequests { .. }), "{e}");
        assert!(e.to_string().contains("this address"), "{e}");
        // m1 has had one join; two more from other addresses fill it.
        limits.check(Some(b), &m1, t0).unwrap();
        limits.check(None, &m1, t0).unwrap();
        let e = limits.check(None, &m1, t0).unwrap_err();
        assert!(e.to_string().contains("to meeting"), "{e}");
    }
}
