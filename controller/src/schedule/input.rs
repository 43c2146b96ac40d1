//! A schedule as a request gives it (strings and numbers) and the checks that make it a
//! [`Schedule`]; and back, for what the API shows.
use chrono::{NaiveDate, NaiveDateTime};
use chrono_tz::Tz;

use super::{Frequency, Recurrence, Schedule};

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
/// How far a series may reach.
const MAX_YEARS: u32 = 10;

impl Frequency {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "daily" => Some(Frequency::Daily),
            "weekly" => Some(Frequency::Weekly),
            _ => None,
        }
    }
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
