//! When a meeting takes place: its first start as wall-clock time in its time zone, its
//! length, an optional daily or weekly recurrence, and how long before a start joins
//! are let in. Pure: the join check, the next occurrence and the meeting's iCalendar
//! invitation (RFC 5545) are worked out here from the schedule and the time.
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

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
    fn parse(s: &str) -> Option<Self> {
        match s {
            "daily" => Some(Frequency::Daily),
            "weekly" => Some(Frequency::Weekly),
            _ => None,
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

/// A schedule as a request gives it (strings, checked by [`Schedule::parse`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// `YYYY-MM-DDTHH:MM`, wall-clock time in `time_zone`.
    pub start: String,
    /// An IANA time zone (`Europe/Oslo`); default UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
    pub duration_minutes: u32,
    #[serde(default)]
    pub recurrence: Option<RecurrenceInput>,
    #[serde(default)]
    pub join_before_minutes: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecurrenceInput {
    /// `daily` or `weekly`.
    pub frequency: String,
    #[serde(default)]
    pub interval: Option<u32>,
    #[serde(default)]
    pub count: Option<u32>,
    /// `YYYY-MM-DD`: the last day an occurrence may fall on.
    #[serde(default)]
    pub until: Option<String>,
}

pub const MAX_DURATION_MINUTES: u32 = 24 * 60;
pub const DEFAULT_JOIN_BEFORE_MINUTES: u32 = 10;
pub const MAX_COUNT: u32 = 1000;
pub const MAX_INTERVAL: u32 = 52;
/// A recurring meeting's occurrence can be joined until this long after its end.
pub const OVERRUN_MINUTES: i64 = 60;
/// How far a series may reach.
const MAX_YEARS: u32 = 10;

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
    /// Checks a requested schedule; errors name the field and say what is expected.
    pub fn parse(input: &ScheduleInput) -> Result<Schedule, String> {
        let start =
            NaiveDateTime::parse_from_str(input.start.trim(), "%Y-%m-%dT%H:%M").map_err(|_| {
                format!(
                    "schedule.start: {:?} is not a wall-clock time like 2026-12-05T10:00",
                    crate::lengths::truncate(&input.start, 40)
                )
            })?;
        if !(2000..=2100).contains(&chrono::Datelike::year(&start)) {
            return Err("schedule.start: a year between 2000 and 2100".into());
        }
        let zone = input.time_zone.as_deref().unwrap_or("UTC").trim();
        let tz: Tz = zone.parse().map_err(|_| {
            format!(
                "schedule.time_zone: {:?} is not an IANA time zone like Europe/Oslo",
                crate::lengths::truncate(zone, 40)
            )
        })?;
        if !(1..=MAX_DURATION_MINUTES).contains(&input.duration_minutes) {
            return Err(format!(
                "schedule.duration_minutes: 1 to {MAX_DURATION_MINUTES}"
            ));
        }
        let join_before_minutes = input
            .join_before_minutes
            .unwrap_or(DEFAULT_JOIN_BEFORE_MINUTES);
        if join_before_minutes > MAX_DURATION_MINUTES {
            return Err(format!(
                "schedule.join_before_minutes: 0 to {MAX_DURATION_MINUTES}"
            ));
        }
        let recurrence = input
            .recurrence
            .as_ref()
            .map(|r| Self::parse_recurrence(r, start.date()))
            .transpose()?;
        Ok(Schedule {
            start,
            tz,
            duration_minutes: input.duration_minutes,
            recurrence,
            join_before_minutes,
        })
    }

    fn parse_recurrence(r: &RecurrenceInput, first: NaiveDate) -> Result<Recurrence, String> {
        let frequency = Frequency::parse(r.frequency.trim()).ok_or_else(|| {
            format!(
                "schedule.recurrence.frequency: {:?}: expected \"daily\" or \"weekly\"",
                crate::lengths::truncate(&r.frequency, 20)
            )
        })?;
        let interval = r.interval.unwrap_or(1);
        if !(1..=MAX_INTERVAL).contains(&interval) {
            return Err(format!("schedule.recurrence.interval: 1 to {MAX_INTERVAL}"));
        }
        if r.count.is_some() && r.until.is_some() {
            return Err("schedule.recurrence: give count or until, not both".into());
        }
        if let Some(c) = r.count
            && !(1..=MAX_COUNT).contains(&c)
        {
            return Err(format!("schedule.recurrence.count: 1 to {MAX_COUNT}"));
        }
        let until = r
            .until
            .as_deref()
            .map(|u| {
                NaiveDate::parse_from_str(u.trim(), "%Y-%m-%d")
                    .map_err(|_| "schedule.recurrence.until: a day like 2027-06-30".to_owned())
            })
            .transpose()?;
        if let Some(u) = until {
            let latest = first
                .checked_add_months(chrono::Months::new(12 * MAX_YEARS))
                .ok_or("schedule.recurrence.until: out of range")?;
            if u < first || u > latest {
                return Err(format!(
                    "schedule.recurrence.until: between the first day and {MAX_YEARS} years after it"
                ));
            }
        }
        Ok(Recurrence {
            frequency,
            interval,
            count: r.count,
            until,
        })
    }

    /// Back to the request's shape (what the API shows).
    pub fn input(&self) -> ScheduleInput {
        ScheduleInput {
            start: self.start.format("%Y-%m-%dT%H:%M").to_string(),
            time_zone: Some(self.tz.name().to_owned()),
            duration_minutes: self.duration_minutes,
            recurrence: self.recurrence.as_ref().map(|r| RecurrenceInput {
                frequency: r.frequency.as_str().into(),
                interval: Some(r.interval),
                count: r.count,
                until: r.until.map(|u| u.format("%Y-%m-%d").to_string()),
            }),
            join_before_minutes: Some(self.join_before_minutes),
        }
    }

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

/// What an invitation says about the meeting besides its schedule.
pub struct Invitation<'a> {
    pub meeting_id: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    /// Where one joins it.
    pub url: &'a str,
    pub organizer: Option<(&'a str, &'a str)>,
}

/// The meeting as an iCalendar object (RFC 5545): one event, with its time zone's
/// rules for the years the series spans, its recurrence, and the join link.
pub fn ics(s: &Schedule, inv: &Invitation<'_>, now: DateTime<Utc>) -> String {
    ics_events(std::slice::from_ref(&(s, inv)), now)
}

/// Several meetings in one calendar (a host's feed).
pub fn ics_events(events: &[(&Schedule, &Invitation<'_>)], now: DateTime<Utc>) -> String {
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".into(),
        "PRODID:-//Fjord//Fjord meetings//EN".into(),
        "CALSCALE:GREGORIAN".into(),
        "METHOD:PUBLISH".into(),
    ];
    let mut zones: Vec<(Tz, i32, i32)> = Vec::new();
    for (s, _) in events {
        let first = chrono::Datelike::year(&s.start);
        let last = match s.last_index() {
            Some(k) => s
                .occurrence(k)
                .map_or(first, |t| chrono::Datelike::year(&t.with_timezone(&s.tz))),
            None => first + 5,
        };
        match zones.iter_mut().find(|z| z.0 == s.tz) {
            Some(z) => (z.1, z.2) = (z.1.min(first), z.2.max(last)),
            None => zones.push((s.tz, first, last)),
        }
    }
    for (tz, from, to) in zones {
        lines.extend(vtimezone(tz, from, to));
    }
    for (s, inv) in events {
        lines.push("BEGIN:VEVENT".into());
        lines.push(format!("UID:{}@fjord", inv.meeting_id));
        lines.push(format!("DTSTAMP:{}", now.format("%Y%m%dT%H%M%SZ")));
        lines.push(format!(
            "DTSTART;TZID={}:{}",
            s.tz.name(),
            s.start.format("%Y%m%dT%H%M%S")
        ));
        lines.push(format!("DURATION:PT{}M", s.duration_minutes));
        if let Some(r) = &s.recurrence {
            let mut rule = format!(
                "RRULE:FREQ={};INTERVAL={}",
                r.frequency.as_str().to_uppercase(),
                r.interval
            );
            if let Some(c) = r.count {
                rule += &format!(";COUNT={c}");
            }
            if let Some(u) = r.until {
                // With a zoned DTSTART, UNTIL is in UTC: the end of that day there.
                let end = to_utc(s.tz, u.and_hms_opt(23, 59, 59).unwrap_or_default());
                rule += &format!(";UNTIL={}", end.format("%Y%m%dT%H%M%SZ"));
            }
            lines.push(rule);
        }
        lines.push(format!("SUMMARY:{}", text(inv.title)));
        let mut description = inv.description.to_owned();
        if !description.is_empty() {
            description += "\n\n";
        }
        description += &format!("Join: {}", inv.url);
        lines.push(format!("DESCRIPTION:{}", text(&description)));
        lines.push(format!("URL:{}", inv.url));
        lines.push(format!("LOCATION:{}", text(inv.url)));
        if let Some((name, email)) = inv.organizer {
            lines.push(format!("ORGANIZER;CN={}:mailto:{email}", param(name)));
        }
        lines.push("END:VEVENT".into());
    }
    lines.push("END:VCALENDAR".into());
    let mut out = String::new();
    for l in lines {
        fold(&l, &mut out);
    }
    out
}

/// The time zone's observances from the start of year `from` to the end of `to`: the
/// one in effect at the start, then one per change of offset.
fn vtimezone(tz: Tz, from: i32, to: i32) -> Vec<String> {
    let begin = Utc
        .with_ymd_and_hms(from, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let end = Utc
        .with_ymd_and_hms(to + 1, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc());
    let mut out = vec!["BEGIN:VTIMEZONE".to_owned(), format!("TZID:{}", tz.name())];
    let mut observance = |at: DateTime<Utc>, before: i32| {
        let o = offset(at);
        let after = o.fix().local_minus_utc();
        let kind = if o.dst_offset().is_zero() {
            "STANDARD"
        } else {
            "DAYLIGHT"
        };
        // DTSTART is local time in the offset in effect before the change.
        let local = at.naive_utc() + Duration::seconds(i64::from(before));
        out.push(format!("BEGIN:{kind}"));
        out.push(format!("DTSTART:{}", local.format("%Y%m%dT%H%M%S")));
        out.push(format!("TZOFFSETFROM:{}", utc_offset(before)));
        out.push(format!("TZOFFSETTO:{}", utc_offset(after)));
        if let Some(name) = o
            .abbreviation()
            .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            out.push(format!("TZNAME:{name}"));
        }
        out.push(format!("END:{kind}"));
    };
    let mut current = offset(begin).fix().local_minus_utc();
    observance(begin, current);
    // Offsets change at most a few times a year and never twice within an hour: step
    // by hours, then find the minute.
    let mut t = begin;
    while t < end {
        let next = t + Duration::hours(1);
        let o = offset(next).fix().local_minus_utc();
        if o != current {
            let mut lo = t;
            while offset(lo + Duration::minutes(1)).fix().local_minus_utc() == current {
                lo += Duration::minutes(1);
            }
            let change = lo + Duration::minutes(1);
            observance(change, current);
            current = o;
        }
        t = next;
    }
    out.push("END:VTIMEZONE".into());
    out
}

fn utc_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    format!("{sign}{:02}{:02}", a / 3600, a % 3600 / 60)
}

/// A TEXT value (RFC 5545 §3.3.11): backslash, semicolon, comma and newline escaped,
/// other control characters dropped.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A parameter value: quoted, without the characters a quoted value cannot hold.
fn param(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control() && *c != '"').collect();
    format!("\"{clean}\"")
}

/// Appends `line` folded at 75 octets (never inside a UTF-8 character), CRLF-ended.
fn fold(line: &str, out: &mut String) {
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly_oslo() -> Schedule {
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

    fn utc(s: &str) -> DateTime<Utc> {
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

    #[test]
    fn bad_schedules_are_refused_naming_the_field() {
        let base = ScheduleInput {
            start: "2026-12-05T10:00".into(),
            duration_minutes: 30,
            ..ScheduleInput::default()
        };
        let cases = [
            (
                ScheduleInput {
                    start: "tomorrow".into(),
                    ..base.clone()
                },
                "schedule.start",
            ),
            (
                ScheduleInput {
                    time_zone: Some("Mars/Olympus".into()),
                    ..base.clone()
                },
                "schedule.time_zone",
            ),
            (
                ScheduleInput {
                    duration_minutes: 0,
                    ..base.clone()
                },
                "schedule.duration_minutes",
            ),
            (
                ScheduleInput {
                    recurrence: Some(RecurrenceInput {
                        frequency: "hourly".into(),
                        ..RecurrenceInput::default()
                    }),
                    ..base.clone()
                },
                "frequency",
            ),
            (
                ScheduleInput {
                    recurrence: Some(RecurrenceInput {
                        frequency: "daily".into(),
                        count: Some(3),
                        until: Some("2027-01-01".into()),
                        ..RecurrenceInput::default()
                    }),
                    ..base.clone()
                },
                "not both",
            ),
            (
                ScheduleInput {
                    recurrence: Some(RecurrenceInput {
                        frequency: "daily".into(),
                        until: Some("2026-01-01".into()),
                        ..RecurrenceInput::default()
                    }),
                    ..base.clone()
                },
                "until",
            ),
        ];
        for (input, says) in cases {
            let e = Schedule::parse(&input).unwrap_err();
            assert!(e.contains(says), "{input:?}: {e}");
        }
    }

    #[test]
    fn the_invitation_has_the_zone_rules_the_recurrence_and_folded_escaped_lines() {
        let s = weekly_oslo();
        let inv = Invitation {
            meeting_id: "abc-defg-hij",
            title: "Seminar; part 1, intro",
            description: "Bring notes.\nAnd tea.",
            url: "https://meet.example.org/m/abc-defg-hij",
            organizer: None,
        };
        let text = ics(&s, &inv, utc("2026-10-01T00:00:00Z"));
        assert!(text.ends_with("END:VCALENDAR\r\n"));
        assert!(text.lines().all(|l| l.len() <= 76), "{text}");
        let unfolded = text.replace("\r\n ", "");
        for want in [
            "DTSTART;TZID=Europe/Oslo:20261019T100000",
            "DURATION:PT90M",
            "RRULE:FREQ=WEEKLY;INTERVAL=1;COUNT=4",
            "SUMMARY:Seminar\\; part 1\\, intro",
            "DESCRIPTION:Bring notes.\\nAnd tea.\\n\\nJoin: https://meet.example.org/m/abc-defg-hij",
            // Summer time ends on 25 October 2026 at 03:00 local (01:00 UTC).
            "BEGIN:STANDARD\r\nDTSTART:20261025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET",
        ] {
            assert!(unfolded.contains(want), "missing {want:?} in\n{unfolded}");
        }
    }
}
