//! The meeting's invitation as an iCalendar object (RFC 5545): the event, its RRULE,
//! and a VTIMEZONE with the zone's observances for the years the series spans, from
//! chrono-tz's embedded tz database.
use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

use super::{Schedule, to_utc};

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
    use crate::schedule::tests::{utc, weekly_oslo};

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
