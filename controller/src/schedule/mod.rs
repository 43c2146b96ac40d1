//! When a meeting takes place: its first start as wall-clock time in its time zone, its
//! length, an optional daily or weekly recurrence, and how long before a start joins
//! are let in. Pure: everything is worked out from the schedule and the time.
//!
//! Here: the checked schedule, its occurrences and the join window. `input`: the
//! schedule as a request gives it, and its checks. `ical`: the meeting's iCalendar
//! invitation (RFC 5545) with its time zone's rules.
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

mod ical;
mod input;

pub use ical::{Invitation, ics, ics_events};
pub use input::{
    DEFAULT_JOIN_BEFORE_MINUTES, MAX_COUNT, MAX_DURATION_MINUTES, MAX_INTERVAL, RecurrenceInput,
    ScheduleInput,
};

/// A meeting's schedule, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// The first occurrence's start, wall-clock time in `tz`.
    pub start: NaiveDateTime,
    pub tz: Tz,
    pub duration_minutes: u32,
    pub recurrence: Option<Recurrence>,
    /// Joins are let in this long before an occurrence's start.
    pub join_before_minutes: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frequency {
    Daily,
    Weekly,
}

impl Frequency {
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Recurrence {
    pub frequency: Frequency,
    /// Every `interval` days or weeks.
    pub interval: u32,
    /// How many occurrences in all; None: no limit but `until`.
    pub count: Option<u32>,
    /// The last day an occurrence may fall on (in the meeting's time zone).
    pub until: Option<NaiveDate>,
}

/// A recurring meeting's occurrence can be joined until this long after its end.
pub const OVERRUN_MINUTES: i64 = 60;

/// Whether a join may happen now, by the schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum Window {
    Open,
    /// The next occurrence opens for joins at this time.
    TooEarly {
        opens: DateTime<Utc>,
    },
    /// A series whose last occurrence is over.
    Over {
        ended: DateTime<Utc>,
    },
}

impl Schedule {
    fn period_days(&self) -> Option<i64> {
        self.recurrence.as_ref().map(|r| {
            i64::from(r.interval)
                * match r.frequency {
                    Frequency::Daily => 1,
                    Frequency::Weekly => 7,
                }
        })
    }

    /// The index of the last occurrence (None: the series has no end).
    fn last_index(&self) -> Option<i64> {
        let Some(r) = &self.recurrence else {
            return Some(0);
        };
        let period = self.period_days().unwrap_or(1);
        match (r.count, r.until) {
            (Some(c), _) => Some(i64::from(c) - 1),
            (None, Some(u)) => Some((u - self.start.date()).num_days() / period),
            (None, None) => None,
        }
    }

    /// Occurrence `k`'s start (None past the series' end).
    pub fn occurrence(&self, k: i64) -> Option<DateTime<Utc>> {
        if k < 0 || self.last_index().is_some_and(|last| k > last) {
            return None;
        }
        let local = self.start + Duration::days(k * self.period_days().unwrap_or(0));
        Some(to_utc(self.tz, local))
    }

    fn length(&self) -> Duration {
        Duration::minutes(i64::from(self.duration_minutes))
    }

    /// The occurrence at or before `t` (by start), if any.
    fn index_at(&self, t: DateTime<Utc>) -> Option<i64> {
        let first = self.occurrence(0)?;
        if t < first {
            return None;
        }
        let Some(period) = self.period_days() else {
            return Some(0);
        };
        // Daylight saving moves an occurrence by an hour at most: look around the guess.
        // Past the series' end: its last occurrence, not a walk down to it.
        let guess = (t - first).num_days() / period;
        let mut k = (guess + 1).min(self.last_index().unwrap_or(i64::MAX));
        while k > 0 && self.occurrence(k).is_none_or(|s| s > t) {
            k -= 1;
        }
        Some(k)
    }

    /// Whether a join is let in at `now`: from `join_before_minutes` before an
    /// occurrence's start; a one-off meeting stays open after it (until a host ends
    /// it), an occurrence of a series until an hour after its end.
    pub fn window(&self, now: DateTime<Utc>) -> Window {
        let early = Duration::minutes(i64::from(self.join_before_minutes));
        let Some(k) = self.index_at(now + early) else {
            let opens = self.occurrence(0).unwrap_or(now) - early;
            return Window::TooEarly { opens };
        };
        if self.recurrence.is_none() {
            return Window::Open;
        }
        let start = self.occurrence(k).unwrap_or(now);
        if now <= start + self.length() + Duration::minutes(OVERRUN_MINUTES) {
            return Window::Open;
        }
        match self.occurrence(k + 1) {
            Some(next) => Window::TooEarly {
                opens: next - early,
            },
            None => Window::Over {
                ended: start + self.length(),
            },
        }
    }

    /// The first occurrence that has not ended at `now` (its start).
    pub fn next_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let k = self.index_at(now).unwrap_or(0);
        (k..k + 2)
            .filter_map(|k| self.occurrence(k))
            .find(|s| *s + self.length() > now)
    }

    /// `t` as wall-clock time in the meeting's time zone, for messages.
    pub fn local(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string()
    }
}

/// Wall-clock time `local` in `tz`: the earlier of two when clocks go back, and the
/// first valid minute after it when they skip ahead over it.
fn to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut t = local;
    for _ in 0..=180 {
        if let Some(d) = tz.from_local_datetime(&t).earliest() {
            return d.with_timezone(&Utc);
        }
        t += Duration::minutes(1);
    }
    Utc.from_utc_datetime(&local)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn weekly_oslo() -> Schedule {
        Schedule::parse(&ScheduleInput {
            start: "2026-10-19T10:00".into(),
            time_zone: Some("Europe/Oslo".into()),
            duration_minutes: 90,
            recurrence: Some(RecurrenceInput {
                frequency: "weekly".into(),
                count: Some(4),
                ..RecurrenceInput::default()
            }),
            join_before_minutes: Some(15),
        })
        .unwrap()
    }

    pub(super) fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn occurrences_keep_their_wall_clock_time_across_daylight_saving() {
        let s = weekly_oslo();
        // 10:00 in Oslo is 08:00 UTC in summer time and 09:00 after 25 October.
        assert_eq!(s.occurrence(0), Some(utc("2026-10-19T08:00:00Z")));
        assert_eq!(s.occurrence(1), Some(utc("2026-10-26T09:00:00Z")));
        assert_eq!(s.occurrence(3), Some(utc("2026-11-09T09:00:00Z")));
        assert_eq!(s.occurrence(4), None, "four occurrences");
    }

    #[test]
    fn joins_open_before_each_occurrence_and_close_an_hour_after_it() {
        let s = weekly_oslo();
        let opens = utc("2026-10-19T07:45:00Z");
        assert_eq!(
            s.window(utc("2026-10-19T07:44:00Z")),
            Window::TooEarly { opens }
        );
        assert_eq!(s.window(opens), Window::Open);
        assert_eq!(
            s.window(utc("2026-10-19T10:30:00Z")),
            Window::Open,
            "until an hour after its end"
        );
        assert_eq!(
            s.window(utc("2026-10-19T10:31:00Z")),
            Window::TooEarly {
                opens: utc("2026-10-26T08:45:00Z")
            }
        );
        assert_eq!(s.window(utc("2026-10-26T08:50:00Z")), Window::Open);
        assert_eq!(
            s.window(utc("2026-12-01T00:00:00Z")),
            Window::Over {
                ended: utc("2026-11-09T10:30:00Z")
            }
        );
        assert_eq!(
            s.next_start(utc("2026-10-20T00:00:00Z")),
            Some(utc("2026-10-26T09:00:00Z"))
        );
        assert_eq!(s.next_start(utc("2026-12-20T00:00:00Z")), None);
    }

    #[test]
    fn a_one_off_meeting_opens_before_its_start_and_stays_open() {
        let s = Schedule::parse(&ScheduleInput {
            start: "2026-12-05T10:00".into(),
            duration_minutes: 30,
            ..ScheduleInput::default()
        })
        .unwrap();
        assert_eq!(s.join_before_minutes, DEFAULT_JOIN_BEFORE_MINUTES);
        assert!(matches!(
            s.window(utc("2026-12-05T09:49:00Z")),
            Window::TooEarly { .. }
        ));
        assert_eq!(s.window(utc("2026-12-05T09:50:00Z")), Window::Open);
        assert_eq!(s.window(utc("2027-01-05T09:50:00Z")), Window::Open);
    }

    #[test]
    fn an_unbounded_series_and_one_until_a_day_find_their_occurrences() {
        let mut s = weekly_oslo();
        s.recurrence = Some(Recurrence {
            frequency: Frequency::Daily,
            interval: 2,
            count: None,
            until: None,
        });
        assert_eq!(
            s.next_start(utc("2030-01-01T12:00:00Z")),
            Some(utc("2030-01-03T09:00:00Z")),
            "1172 days on, an even number"
        );
        s.recurrence = Some(Recurrence {
            frequency: Frequency::Weekly,
            interval: 1,
            count: None,
            until: Some(NaiveDate::from_ymd_opt(2026, 11, 2).unwrap()),
        });
        assert_eq!(s.occurrence(2), Some(utc("2026-11-02T09:00:00Z")));
        assert_eq!(s.occurrence(3), None);
    }
}
