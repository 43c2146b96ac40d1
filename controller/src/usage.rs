//! Usage statistics for an organisation's administrators and the operators: per day,
//! week or month, the meetings held, participant-minutes, unique participants, the peak
//! of concurrent participants and joins, in all and by region and media node. Computed
//! on request from the attendance records the media nodes write (no data of its own), so
//! it covers what is still kept: a meeting's attendance goes with the meeting when its
//! retention runs out.
use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use serde::Serialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::lengths::truncate;
use crate::model::{Attendance, Meeting};
use crate::service::Service;

/// At most this many periods in one answer.
const MAX_PERIODS: usize = 400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "" | "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            _ => Err(ApiError::BadRequest(format!(
                "period: {:?} is not one: expected \"day\", \"week\" or \"month\"",
                truncate(s, 20)
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The first day of the period `d` is in (weeks start on Monday, ISO 8601).
    fn start_of(self, d: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => d,
            Self::Week => d - Days::new(u64::from(d.weekday().num_days_from_monday())),
            Self::Month => d.with_day(1).expect("every month has a first day"),
        }
    }

    fn next(self, d: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => d + Days::new(1),
            Self::Week => d + Days::new(7),
            Self::Month => d + Months::new(1),
        }
    }

    /// How far back an answer reaches when it is not told (with today's period).
    fn default_span(self) -> u32 {
        match self {
            Self::Day => 30,
            Self::Week => 12,
            Self::Month => 12,
        }
    }
}

/// What a caller asks for.
#[derive(Clone, Debug, Default)]
pub struct UsageQuery {
    /// The organisation (administrators: their own, the default; operators: required).
    pub org: Option<String>,
    pub period: String,
    /// First and last day, inclusive (`YYYY-MM-DD`, in `time_zone`).
    pub from: Option<String>,
    pub to: Option<String>,
    /// IANA time zone the days are in (default UTC).
    pub time_zone: Option<String>,
}

/// Figures of one period, or of one region or node in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Meetings someone was in during the period.
    pub meetings: u32,
    pub participant_minutes: f64,
    /// Distinct participants: by registration where they registered, else by name.
    pub unique_participants: u32,
    /// The most participants in the organisation's meetings at one moment.
    pub peak_concurrent: u32,
    /// Joins (a rejoin counts again).
    pub joins: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct RegionFigures {
    pub region: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeFigures {
    pub node_id: String,
    pub region: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Clone, Debug, Serialize)]
pub struct PeriodUsage {
    /// Its first day.
    pub start: String,
    #[serde(flatten)]
    pub figures: Figures,
    pub regions: Vec<RegionFigures>,
    pub nodes: Vec<NodeFigures>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    pub org: String,
    pub period: &'static str,
    pub time_zone: String,
    pub from: String,
    pub to: String,
    pub periods: Vec<PeriodUsage>,
    /// The whole span.
    pub total: Figures,
}

/// One stretch of someone's time in a meeting.
struct Stay<'a> {
    meeting: usize,
    who: String,
    region: &'a str,
    node: &'a str,
    from: i64,
    to: i64,
}

/// The figures of `stays` within [start, end) (milliseconds).
fn figures<'a>(stays: impl Iterator<Item = &'a Stay<'a>>, start: i64, end: i64) -> Figures {
    let mut meetings = HashSet::new();
    let mut who = HashSet::new();
    let mut edges = Vec::new();
    let mut ms = 0i64;
    let mut joins = 0;
    for s in stays {
        let (a, b) = (s.from.max(start), s.to.min(end));
        // Outside the period (a stay of no length counts where it began).
        if a > b || (a == b && !(start..end).contains(&s.from)) {
            continue;
        }
        meetings.insert(s.meeting);
        who.insert(s.who.as_str());
        ms += b - a;
        if (start..end).contains(&s.from) {
            joins += 1;
        }
        edges.push((a, 1i32));
        edges.push((b, -1));
    }
    // Leaves before joins at the same moment: a handover is not an overlap.
    edges.sort_unstable();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    Figures {
        meetings: meetings.len() as u32,
        participant_minutes: (ms as f64 / 6_000.0).round() / 10.0,
        unique_participants: who.len() as u32,
        peak_concurrent: peak as u32,
        joins,
    }
}

/// Midnight at the start of local day `d` in `tz`, in Unix milliseconds.
fn midnight(tz: Tz, d: NaiveDate) -> i64 {
    let local = d.and_hms_opt(0, 0, 0).expect("midnight exists");
    // A zone whose clocks skip midnight: the first moment of the day that exists.
    tz.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                .earliest()
        })
        .map_or_else(
            || local.and_utc().timestamp_millis(),
            |t| t.timestamp_millis(),
        )
}

fn day(field: &str, s: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        ApiError::BadRequest(format!(
            "{field}: {:?} is not a date (YYYY-MM-DD)",
            truncate(s, 20)
        ))
    })
}

/// The usage of `meetings` (with their attendance) over the periods from `first` to
/// `last` (days, inclusive), at `now_ms`.
pub fn compute(
    org: &str,
    period: Period,
    tz: Tz,
    first: NaiveDate,
    last: NaiveDate,
    meetings: &[(Meeting, Vec<Attendance>)],
    now_ms: i64,
) -> Usage {
    let stays: Vec<Stay> = meetings
        .iter()
        .enumerate()
        .flat_map(|(i, (m, list))| {
            list.iter().map(move |a| {
                // Still in: until the meeting ended, else until now.
                let to = a
                    .left_unix_ms
                    .or(m.ended_unix_ms)
                    .unwrap_or(now_ms)
                    .max(a.joined_unix_ms);
                let who = match &a.registrant_id {
                    Some(r) => format!("r:{r}"),
                    None => format!("n:{}", a.name.trim().to_lowercase()),
                };
                Stay {
                    meeting: i,
                    who,
                    region: &a.region,
                    node: &a.node_id,
                    from: a.joined_unix_ms,
                    to,
                }
            })
        })
        .collect();
    let mut periods = Vec::new();
    let mut d = period.start_of(first);
    let end_day = period.next(period.start_of(last));
    while d < end_day && periods.len() < MAX_PERIODS {
        let next = period.next(d);
        let (start, end) = (midnight(tz, d), midnight(tz, next));
        let mut regions: BTreeMap<&str, ()> = BTreeMap::new();
        let mut nodes: BTreeMap<(&str, &str), ()> = BTreeMap::new();
        for s in stays.iter().filter(|s| s.from < end && s.to >= start) {
            regions.insert(s.region, ());
            nodes.insert((s.node, s.region), ());
        }
        let by_region = regions
            .keys()
            .map(|r| RegionFigures {
                region: (*r).to_owned(),
                figures: figures(stays.iter().filter(|s| s.region == *r), start, end),
            })
            .filter(|r| r.figures != Figures::default())
            .collect();
        let by_node = nodes
            .keys()
            .map(|(n, r)| NodeFigures {
                node_id: (*n).to_owned(),
                region: (*r).to_owned(),
                figures: figures(stays.iter().filter(|s| s.node == *n), start, end),
            })
            .filter(|n| n.figures != Figures::default())
            .collect();
        periods.push(PeriodUsage {
            start: d.to_string(),
            figures: figures(stays.iter(), start, end),
            regions: by_region,
            nodes: by_node,
        });
        d = next;
    }
    let first_day = period.start_of(first);
    let total = figures(stays.iter(), midnight(tz, first_day), midnight(tz, d));
    Usage {
        org: org.to_owned(),
        period: period.as_str(),
        time_zone: tz.name().to_owned(),
        from: first_day.to_string(),
        to: (d - Days::new(1)).to_string(),
        periods,
        total,
    }
}

impl Service {
    /// Usage of an organisation's meetings: for its administrators and operators.
    pub async fn usage(&self, caller: &Caller, q: UsageQuery) -> Result<Usage, ApiError> {
        let org = match (&caller.user, q.org.as_deref()) {
            (Some(u), asked) if u.admin => {
                let own = u.org().to_ascii_lowercase();
                match asked {
                    Some(o) if !o.eq_ignore_ascii_case(&own) => {
                        return Err(ApiError::Forbidden(format!(
                            "you administer {own}, not {}",
                            truncate(o, 60)
                        )));
                    }
                    _ => own,
                }
            }
            (Some(_), _) => {
                return Err(ApiError::Forbidden(
                    "usage statistics are for the organisation's administrators".into(),
                ));
            }
            (None, asked) => {
                self.require_operator(caller)?;
                asked
                    .map(str::to_ascii_lowercase)
                    .filter(|o| crate::org::valid_org(o))
                    .ok_or_else(|| {
                        ApiError::BadRequest("org: the organisation (a domain name)".into())
                    })?
            }
        };
        let period = Period::parse(&q.period)?;
        let tz: Tz = match q.time_zone.as_deref() {
            None | Some("") => Tz::UTC,
            Some(z) => z.parse().map_err(|_| {
                ApiError::BadRequest(format!(
                    "time_zone: {:?} is not an IANA time zone",
                    truncate(z, 40)
                ))
            })?,
        };
        let now: DateTime<Utc> = Utc::now();
        let today = now.with_timezone(&tz).date_naive();
        let last =
            q.to.as_deref()
                .map(|s| day("to", s))
                .transpose()?
                .unwrap_or(today);
        let first = match q.from.as_deref() {
            Some(s) => day("from", s)?,
            None => {
                let mut d = period.start_of(last);
                for _ in 1..period.default_span() {
                    d = period.start_of(d - Days::new(1));
                }
                d
            }
        };
        if first > last {
            return Err(ApiError::BadRequest("from: after to".into()));
        }
        let mut count = 0;
        let mut d = period.start_of(first);
        while d <= last {
            count += 1;
            d = period.next(d);
        }
        if count > MAX_PERIODS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_PERIODS} periods at once: a shorter span or a longer period"
            )));
        }
        let since = midnight(tz, period.start_of(first));
        let ours: Vec<Meeting> = self.view.read(|v| {
            v.meetings
                .values()
                .filter(|m| {
                    m.owner
                        .as_ref()
                        .is_some_and(|o| o.org().eq_ignore_ascii_case(&org))
                        && m.ended_unix_ms.is_none_or(|e| e >= since)
                })
                .cloned()
                .collect()
        });
        let store = &self.store;
        let with_attendance: Vec<(Meeting, Vec<Attendance>)> = futures::stream::iter(ours)
            .map(|m| async move {
                let list = store.attendance(&m.id).await?;
                Ok::<_, ApiError>((m, list))
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(compute(
            &org,
            period,
            tz,
            first,
            last,
            &with_attendance,
            now.timestamp_millis(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> i64 {
        NaiveDate::from_ymd_opt(2026, 11, 2)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    fn stay(name: &str, region: &str, from: i64, to: Option<i64>) -> Attendance {
        Attendance {
            participant_id: format!("p-{name}-{from}"),
            name: name.into(),
            registrant_id: None,
            role: "attendee".into(),
            region: region.into(),
            node_id: format!("{region}-1"),
            joined_unix_ms: from,
            left_unix_ms: to,
        }
    }

    #[test]
    fn a_day_of_two_meetings_gives_exact_minutes_peaks_people_and_regions() {
        let day = 24 * 3_600_000;
        let meetings = vec![
            (
                crate::testing::meeting("aaa-aaaa-aaa"),
                vec![
                    stay("Ada", "oslo", at(10, 0), Some(at(11, 0))),
                    stay("Bo", "oslo", at(10, 30), Some(at(11, 30))),
                    stay(" ada ", "stockholm", at(12, 0), Some(at(12, 15))),
                ],
            ),
            (
                crate::testing::meeting("bbb-bbbb-bbb"),
                vec![
                    stay("Cy", "oslo", at(10, 45), Some(at(11, 15))),
                    // Over midnight: half in each day.
                    stay("Dag", "oslo", at(23, 30), Some(at(0, 30) + day)),
                    // Still in at "now": counted to now.
                    stay("Eli", "oslo", at(0, 0) + day + 3_600_000, None),
                ],
            ),
        ];
        let d = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let now = at(0, 0) + day + 2 * 3_600_000;
        let u = compute(
            "uni.no",
            Period::Day,
            Tz::UTC,
            d,
            d + Days::new(1),
            &meetings,
            now,
        );
        assert_eq!(u.periods.len(), 2);
        let first = &u.periods[0];
        assert_eq!(
            first.figures,
            Figures {
                meetings: 2,
                participant_minutes: 195.0,
                unique_participants: 4,
                peak_concurrent: 3,
                joins: 5,
            }
        );
        let oslo = &first.regions[0];
        assert_eq!(
            (
                oslo.region.as_str(),
                oslo.figures.participant_minutes,
                oslo.figures.peak_concurrent
            ),
            ("oslo", 180.0, 3)
        );
        assert_eq!(first.regions[1].figures.participant_minutes, 15.0);
        assert_eq!(first.nodes.len(), 2);
        let second = &u.periods[1];
        assert_eq!(
            (
                second.figures.participant_minutes,
                second.figures.meetings,
                second.figures.joins,
                second.figures.peak_concurrent
            ),
            (90.0, 1, 1, 1),
            "Dag's last half hour and Eli's hour until now"
        );
        assert_eq!(u.total.participant_minutes, 285.0);
        // The week and the month hold the same.
        for p in [Period::Week, Period::Month] {
            let u = compute("uni.no", p, Tz::UTC, d, d, &meetings, now);
            assert_eq!(u.periods.len(), 1);
            assert_eq!(u.periods[0].figures.participant_minutes, 285.0, "{p:?}");
            assert_eq!(
                u.periods[0].start,
                if p == Period::Week {
                    "2026-11-02"
                } else {
                    "2026-11-01"
                }
            );
        }
        // In Oslo (UTC+1 in November) the day starts an hour earlier: Dag's stay from
        // 00:30 to 01:30 local falls in the next day wholly.
        let oslo_day = compute(
            "uni.no",
            Period::Day,
            "Europe/Oslo".parse().unwrap(),
            d,
            d,
            &meetings,
            now,
        );
        assert_eq!(oslo_day.periods[0].figures.participant_minutes, 165.0);
    }

    #[test]
    fn handovers_are_not_overlaps_and_the_periods_are_bounded() {
        let m = vec![(
            crate::testing::meeting("aaa-aaaa-aaa"),
            vec![
                stay("A", "oslo", at(10, 0), Some(at(11, 0))),
                stay("B", "oslo", at(11, 0), Some(at(12, 0))),
            ],
        )];
        let d = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let u = compute("x.no", Period::Day, Tz::UTC, d, d, &m, at(13, 0));
        assert_eq!(u.periods[0].figures.peak_concurrent, 1);
        let far = compute(
            "x.no",
            Period::Day,
            Tz::UTC,
            d,
            d + Days::new(5000),
            &m,
            at(13, 0),
        );
        assert_eq!(far.periods.len(), MAX_PERIODS);
        assert!(Period::parse("year").is_err());
    }
}
