//! Scheduled meetings: their calendar invitation (`calendar.ics`), read back with an
//! independent RFC 5545 parser (Python's `icalendar`, expanding the rule with
//! `dateutil`), and the join window (too early: refused with a clear message; a host
//! comes in whenever they like).
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Api;

/// Creates a meeting with `body`; its answer.
async fn create(api: &Api, base: &str, body: Value) -> Value {
    let (st, v) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&body),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

/// A weekly series whose first occurrence is the Monday before Europe's summer time
/// starts (the last Sunday of March) next year, so that its second one is in summer time.
struct DstSeries {
    monday: chrono::NaiveDate,
}

impl DstSeries {
    fn next() -> Self {
        use chrono::Datelike;
        let year = chrono::Utc::now().year() + 1;
        let march_31 = chrono::NaiveDate::from_ymd_opt(year, 3, 31).unwrap();
        let last_sunday =
            march_31 - chrono::Duration::days(march_31.weekday().num_days_from_sunday().into());
        DstSeries {
            monday: last_sunday - chrono::Duration::days(6),
        }
    }

    /// The date `days` after the first occurrence, as `YYYY-MM-DD`.
    fn day(&self, days: i64) -> String {
        (self.monday + chrono::Duration::days(days))
            .format("%Y-%m-%d")
            .to_string()
    }

    /// Unix milliseconds of `hour`:00 UTC on the date `days` after the first occurrence.
    fn utc_ms(&self, days: i64, hour: u32) -> i64 {
        (self.monday + chrono::Duration::days(days))
            .and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }
}

/// What `icalendar` reads in `ics`.
fn read_ics(ics: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meeting.ics");
    std::fs::write(&path, ics).unwrap();
    let out = std::process::Command::new(harness::py_tools().join("bin/python"))
        .arg(harness::repo_root().join("tests/calendar/read_ics.py"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "icalendar could not read the invitation: {}\n{ics}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_meetings_invitation_parses_with_its_start_length_and_recurrence_and_early_joins_are_refused()
 {
    let c = harness::Cluster::start(crate::spec()).await.unwrap();
    let api = Api::new(&c);
    let base = c.controllers[0].url();

    // Weekly at 10:00 in Oslo, three times, across the start of summer time next year:
    // the first is at 09:00 UTC, the others at 08:00 UTC. Computed from today, so the
    // series is always ahead of us.
    let series = DstSeries::next();
    let m = create(
        &api,
        &base,
        json!({
            "title": "Seminar, spring; part 2",
            "description": "Reading: chapter 3.\nBring questions.",
            "waiting_room": false,
            "schedule": {
                "start": format!("{}T10:00", series.day(0)),
                "time_zone": "Europe/Oslo",
                "duration_minutes": 90,
                "recurrence": { "frequency": "weekly", "count": 3 },
                "join_before_minutes": 15,
            },
        }),
    )
    .await;
    let id = m["id"].as_str().unwrap();
    assert_eq!(m["schedule"]["time_zone"], "Europe/Oslo", "{m}");
    assert_eq!(m["next_start_unix_ms"], json!(series.utc_ms(0, 9)), "{m}");
    let resp = api
        .http
        .get(format!("{base}/v1/meetings/{id}/calendar.ics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/calendar")
    );
    let ics = resp.text().await.unwrap();
    let ev = read_ics(&ics);
    eprintln!("{ev}");
    assert_eq!(ev["tzid"], "Europe/Oslo");
    assert_eq!(ev["start"], format!("{}T10:00:00+01:00", series.day(0)));
    assert_eq!(ev["duration_seconds"], 5400.0);
    assert_eq!(ev["rrule"]["FREQ"], json!(["WEEKLY"]));
    assert_eq!(ev["rrule"]["COUNT"], json!(["3"]));
    assert_eq!(
        ev["occurrences_utc"],
        json!([
            format!("{}T09:00:00+00:00", series.day(0)),
            format!("{}T08:00:00+00:00", series.day(7)),
            format!("{}T08:00:00+00:00", series.day(14)),
        ])
    );
    assert_eq!(ev["summary"], "Seminar, spring; part 2");
    assert_eq!(ev["url"], format!("{base}/m/{id}"));
    assert!(
        ev["description"]
            .as_str()
            .unwrap()
            .starts_with("Reading: chapter 3.\nBring questions.")
    );
    assert_eq!(ev["timezones"], json!(["Europe/Oslo"]));

    // Too early: refused, saying from when; the host gets in.
    let join = |body: Value| {
        let req = api
            .http
            .post(format!("{base}/v1/meetings/{id}/join"))
            .json(&body);
        api.send(req)
    };
    let (st, e) = join(json!({ "name": "Early Eva" })).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"], "too_early", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("you can join from {} 09:45 CET", series.day(0))),
        "{message}"
    );
    let (st, j) = join(json!({ "name": "Hanne Host", "host_key": m["host_key"] })).await;
    assert_eq!(st, StatusCode::OK, "{j}");

    // A meeting that opened a minute ago (it starts in 9 minutes, joins from 10 before)
    // lets anyone in; one that opens in two minutes does not yet.
    let in_minutes = |m: i64| {
        (chrono::Utc::now() + chrono::Duration::minutes(m))
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    for (starts_in, open) in [(9, true), (12, false)] {
        let m = create(
            &api,
            &base,
            json!({
                "title": "Soon",
                "waiting_room": false,
                "schedule": { "start": in_minutes(starts_in), "duration_minutes": 30 },
            }),
        )
        .await;
        let (st, v) = api
            .send(
                api.http
                    .post(format!(
                        "{base}/v1/meetings/{}/join",
                        m["id"].as_str().unwrap()
                    ))
                    .json(&json!({ "name": "Punctual Per" })),
            )
            .await;
        let expected = if open {
            StatusCode::OK
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(st, expected, "starts in {starts_in} min: {v}");
    }

    // Its host moves it and renames it: the invitation follows; without a schedule it has
    // none; an ended meeting is not edited.
    let edit = |body: Value| {
        let req = api
            .http
            .patch(format!("{base}/v1/meetings/{id}"))
            .bearer_auth(m["host_key"].as_str().unwrap())
            .json(&body);
        api.send(req)
    };
    let moved = format!("{}T14:00", series.day(1));
    let (st, e) = edit(json!({ "title": "Seminar, moved", "schedule": { "start": moved, "time_zone": "Europe/Oslo", "duration_minutes": 45 } })).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    assert_eq!(e["title"], "Seminar, moved", "{e}");
    let ics = api
        .http
        .get(format!("{base}/v1/meetings/{id}/calendar.ics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ev = read_ics(&ics);
    assert_eq!(
        (ev["start"].as_str(), ev["duration_seconds"].as_f64()),
        (
            Some(format!("{}T14:00:00+01:00", series.day(1)).as_str()),
            Some(2700.0)
        ),
        "{ev}"
    );
    assert_eq!(ev["rrule"], json!({}), "no recurrence any more: {ev}");
    let (st, e) = edit(json!({ "schedule": null })).await;
    assert_eq!((st, e["schedule"].is_null()), (StatusCode::OK, true), "{e}");
    let (st, e) = edit(json!({ "title": "" })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let resp = api
        .http
        .delete(format!("{base}/v1/meetings/{id}"))
        .bearer_auth(&api.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (st, e) = edit(json!({ "title": "After the end" })).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");

    // Bad schedules are refused naming the field; a meeting without one has no invitation.
    let (st, e) = api
        .send(
            api.http
                .post(format!("{base}/v1/meetings"))
                .bearer_auth(&api.key)
                .json(&json!({ "title": "x", "schedule": { "start": "2027-01-01T10:00", "time_zone": "Mars/Olympus", "duration_minutes": 30 } })),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("schedule.time_zone"),
        "{e}"
    );
    let plain = create(&api, &base, json!({ "title": "Any time" })).await;
    let resp = api
        .http
        .get(format!(
            "{base}/v1/meetings/{}/calendar.ics",
            plain["id"].as_str().unwrap()
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
