//! A meeting's exports for its hosts and operators, as JSON or CSV (`?format=csv`):
//! polls and Q&A (`GET /v1/meetings/{id}/polls`, `/questions`; an anonymous poll's
//! answers and an anonymous question come without any participant), registrants
//! (`/registrants`, with their approval state) and participants (`/participants`: who
//! attended, from when to when, from where).
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{HttpState, Json};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::model::{Attendance, Poll, Question};

pub(super) fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/meetings/{id}/polls", get(export::<false>))
        .route("/v1/meetings/{id}/questions", get(export::<true>))
        .route("/v1/meetings/{id}/registrants", get(registrants))
        .route("/v1/meetings/{id}/participants", get(participants))
        .route("/v1/participants", get(participants_between))
        .route("/v1/usage", get(usage))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageParams {
    org: Option<String>,
    #[serde(default)]
    period: String,
    from: Option<String>,
    to: Option<String>,
    time_zone: Option<String>,
    format: Option<String>,
}

/// An organisation's usage statistics (`usage.rs`), as JSON or as CSV: a row per
/// period for the whole, then one per region and one per media node.
async fn usage(
    State(s): State<HttpState>,
    caller: Caller,
    q: Result<Query<UsageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let format = format(Ok(Query(ExportQuery {
        format: q.format.clone(),
    })))?;
    let u = s
        .service
        .usage(
            &caller,
            crate::usage::UsageQuery {
                org: q.org,
                period: q.period,
                from: q.from,
                to: q.to,
                time_zone: q.time_zone,
            },
        )
        .await?;
    if format == Format::Json {
        return Ok(Json(u).into_response());
    }
    let mut rows = vec![
        [
            "period_start",
            "scope",
            "region",
            "node_id",
            "meetings",
            "participant_minutes",
            "unique_participants",
            "peak_concurrent",
            "joins",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let row = |start: &str, scope: &str, region: &str, node: &str, f: &crate::usage::Figures| {
        vec![
            start.to_owned(),
            scope.to_owned(),
            region.to_owned(),
            node.to_owned(),
            f.meetings.to_string(),
            f.participant_minutes.to_string(),
            f.unique_participants.to_string(),
            f.peak_concurrent.to_string(),
            f.joins.to_string(),
        ]
    };
    for p in &u.periods {
        rows.push(row(&p.start, "all", "", "", &p.figures));
        for r in &p.regions {
            rows.push(row(&p.start, "region", &r.region, "", &r.figures));
        }
        for n in &p.nodes {
            rows.push(row(&p.start, "node", &n.region, &n.node_id, &n.figures));
        }
    }
    Ok(csv(&u.org, &format!("usage-{}", u.period), &rows))
}

type ExportQueryResult = Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>;

async fn registrants(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
    q: ExportQueryResult,
) -> Result<Response, ApiError> {
    let format = format(q)?;
    let (meeting, list) = s.service.registrants(&caller, &id).await?;
    let deleted_after = s.service.deleted_after(&meeting);
    let questions = meeting
        .registration
        .map(|r| r.questions)
        .unwrap_or_default();
    let meeting = meeting.id.to_string();
    Ok(match format {
        Format::Json => Json(json!({
            "meeting_id": meeting,
            "personal_data_deleted_after_unix_ms": deleted_after,
            "questions": questions,
            "registrants": list.iter().map(|r| json!({
                "registrant_id": r.id,
                "name": r.name,
                "email": r.email,
                "answers": r.answers,
                "state": r.state.as_str(),
                "registered_unix_ms": r.registered_unix_ms,
                "decided_unix_ms": r.decided_unix_ms,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Format::Csv => {
            let mut head: Vec<String> = [
                "registrant_id",
                "name",
                "email",
                "state",
                "registered_unix_ms",
                "decided_unix_ms",
            ]
            .map(str::to_owned)
            .into();
            head.extend(questions.iter().cloned());
            let rows = std::iter::once(head)
                .chain(list.iter().map(|r| {
                    let mut row = vec![
                        r.id.clone(),
                        r.name.clone(),
                        r.email.clone(),
                        r.state.as_str().to_owned(),
                        r.registered_unix_ms.to_string(),
                        r.decided_unix_ms.map(|t| t.to_string()).unwrap_or_default(),
                    ];
                    row.extend(r.answers.iter().cloned());
                    row
                }))
                .collect::<Vec<_>>();
            csv(&meeting, "registrants", &rows)
        }
    })
}

/// Whole minutes between two instants (rounded to a tenth).
fn minutes(from_ms: i64, to_ms: i64) -> f64 {
    ((to_ms - from_ms).max(0) as f64 / 60_000.0 * 10.0).round() / 10.0
}

/// The columns of one participant's attendance (CSV), after any of the export's own.
const ATTENDANCE_COLUMNS: [&str; 9] = [
    "participant_id",
    "name",
    "registrant_id",
    "role",
    "region",
    "node_id",
    "joined_unix_ms",
    "left_unix_ms",
    "minutes",
];

/// One participant's attendance as JSON; the minutes of one still in count until `now`.
fn attendance_json(a: &Attendance, now: i64) -> Value {
    json!({
        "participant_id": a.participant_id,
        "name": a.name,
        "registrant_id": a.registrant_id,
        "role": a.role,
        "region": a.region,
        "node_id": a.node_id,
        "joined_unix_ms": a.joined_unix_ms,
        "left_unix_ms": a.left_unix_ms,
        "minutes": minutes(a.joined_unix_ms, a.left_unix_ms.unwrap_or(now)),
    })
}

/// One participant's attendance as the fields of [`ATTENDANCE_COLUMNS`].
fn attendance_row(a: &Attendance, now: i64) -> Vec<String> {
    vec![
        a.participant_id.clone(),
        a.name.clone(),
        a.registrant_id.clone().unwrap_or_default(),
        a.role.clone(),
        a.region.clone(),
        a.node_id.clone(),
        a.joined_unix_ms.to_string(),
        a.left_unix_ms.map(|t| t.to_string()).unwrap_or_default(),
        minutes(a.joined_unix_ms, a.left_unix_ms.unwrap_or(now)).to_string(),
    ]
}

async fn participants(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
    q: ExportQueryResult,
) -> Result<Response, ApiError> {
    let format = format(q)?;
    let (meeting, list) = s.service.participants(&caller, &id).await?;
    let deleted_after = s.service.deleted_after(&meeting);
    let now = common::unix_ms();
    let meeting = meeting.id.to_string();
    Ok(match format {
        Format::Json => Json(json!({
            "meeting_id": meeting,
            "personal_data_deleted_after_unix_ms": deleted_after,
            "participants": list.iter().map(|a| attendance_json(a, now)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Format::Csv => {
            let head = ATTENDANCE_COLUMNS.map(str::to_owned).to_vec();
            let rows = std::iter::once(head)
                .chain(list.iter().map(|a| attendance_row(a, now)))
                .collect::<Vec<_>>();
            csv(&meeting, "participants", &rows)
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    format: Option<String>,
    /// Unix ms.
    from: i64,
    to: i64,
}

/// Who attended the caller's meetings between `from` and `to`: one row per participant
/// and meeting.
async fn participants_between(
    State(s): State<HttpState>,
    caller: Caller,
    q: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        q.map_err(|e| ApiError::BadRequest(format!("{} (from and to: Unix ms)", e.body_text())))?;
    let format = format(Ok(Query(ExportQuery { format: q.format })))?;
    let all = s
        .service
        .participants_between(&caller, q.from, q.to)
        .await?;
    let now = common::unix_ms();
    Ok(match format {
        Format::Csv => {
            let mut head = vec!["meeting_id".to_owned(), "title".to_owned()];
            head.extend(ATTENDANCE_COLUMNS.map(str::to_owned));
            let rows = std::iter::once(head)
                .chain(all.iter().flat_map(|(m, list)| {
                    list.iter().map(move |a| {
                        let mut row = vec![m.id.to_string(), m.title.clone()];
                        row.extend(attendance_row(a, now));
                        row
                    })
                }))
                .collect::<Vec<_>>();
            csv("all", "participants", &rows)
        }
        Format::Json => Json(json!({
            "from_unix_ms": q.from,
            "to_unix_ms": q.to,
            "meetings": all.iter().map(|(m, list)| json!({
                "meeting_id": m.id.to_string(),
                "title": m.title,
                "personal_data_deleted_after_unix_ms": s.service.deleted_after(m),
                "participants": list.iter().map(|a| attendance_json(a, now)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    format: Option<String>,
}

#[derive(PartialEq)]
enum Format {
    Json,
    Csv,
}

fn format(
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Format, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(ApiError::BadRequest(format!(
            "format: expected \"json\" or \"csv\", got {:?}",
            other.chars().take(20).collect::<String>()
        ))),
    }
}

/// The export of polls (`QUESTIONS` false) or of questions.
async fn export<const QUESTIONS: bool>(
    State(s): State<HttpState>,
    caller: Caller,
    Path(id): Path<String>,
    q: ExportQueryResult,
) -> Result<Response, ApiError> {
    let format = format(q)?;
    let named = if QUESTIONS { "questions" } else { "polls" };
    let (meeting, collab) = s
        .service
        .collab(&caller, &id, &format!("the {named}"))
        .await?;
    let meeting = meeting.to_string();
    let (json, rows) = if QUESTIONS {
        let mut qs = collab.questions;
        qs.sort_by(|a, b| {
            b.votes
                .cmp(&a.votes)
                .then(a.asked_unix_ms.cmp(&b.asked_unix_ms))
        });
        (qs.iter().map(question_json).collect(), questions_csv(&qs))
    } else {
        (
            collab.polls.iter().map(poll_json).collect::<Vec<_>>(),
            polls_csv(&collab.polls),
        )
    };
    Ok(match format {
        Format::Json => Json(json!({ "meeting_id": meeting, named: json })).into_response(),
        Format::Csv => csv(&meeting, named, &rows),
    })
}

fn poll_json(p: &Poll) -> Value {
    json!({
        "poll_id": p.id,
        "question": p.question,
        "kind": p.kind,
        "options": p.options,
        "anonymous": p.anonymous,
        "state": p.state,
        "shared": p.shared,
        "created_by_name": p.created_by_name,
        "created_unix_ms": p.created_unix_ms,
        "launched_unix_ms": p.launched_unix_ms,
        "ended_unix_ms": p.ended_unix_ms,
        "answered": p.answered,
        "tally": p.tally,
        "texts": p.texts,
        "answers": p.answers.iter().map(|a| json!({
            "participant_id": a.participant_id,
            "name": a.name,
            "choices": a.choices,
            "text": a.text,
            "unix_ms": a.unix_ms,
        })).collect::<Vec<_>>(),
    })
}

fn question_json(q: &Question) -> Value {
    json!({
        "question_id": q.id,
        "text": q.text,
        "anonymous": q.author.is_none(),
        "author_id": q.author.as_ref().map(|a| &a.0),
        "author_name": q.author.as_ref().map(|a| &a.1),
        "asked_unix_ms": q.asked_unix_ms,
        "votes": q.votes,
        "answer": q.answer,
        "answered_live": q.answered_live,
        "answered_by_name": q.answered_by_name,
        "dismissed": q.dismissed,
    })
}

/// One row per option (its count), per named answer and per anonymous text answer.
fn polls_csv(polls: &[Poll]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "poll_id",
            "question",
            "kind",
            "anonymous",
            "state",
            "row",
            "participant_id",
            "name",
            "answer",
            "count",
            "unix_ms",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in polls {
        let row =
            |what: &str, participant: &str, name: &str, answer: &str, count: String, at: String| {
                vec![
                    p.id.to_string(),
                    p.question.clone(),
                    p.kind.to_owned(),
                    p.anonymous.to_string(),
                    p.state.to_owned(),
                    what.to_owned(),
                    participant.to_owned(),
                    name.to_owned(),
                    answer.to_owned(),
                    count,
                    at,
                ]
            };
        for (o, n) in p.options.iter().zip(&p.tally) {
            rows.push(row("option", "", "", o, n.to_string(), String::new()));
        }
        for a in &p.answers {
            let answer = if a.choices.is_empty() {
                a.text.clone()
            } else {
                a.choices
                    .iter()
                    .filter_map(|c| p.options.get(*c as usize).cloned())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            rows.push(row(
                "answer",
                &a.participant_id,
                &a.name,
                &answer,
                "1".into(),
                a.unix_ms.to_string(),
            ));
        }
        if p.anonymous {
            for t in &p.texts {
                rows.push(row("text", "", "", t, "1".into(), String::new()));
            }
        }
    }
    rows
}

fn questions_csv(qs: &[Question]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "question_id",
            "text",
            "anonymous",
            "author_id",
            "author_name",
            "asked_unix_ms",
            "votes",
            "answer",
            "answered_live",
            "dismissed",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for q in qs {
        let (id, name) = q.author.clone().unwrap_or_default();
        rows.push(vec![
            q.id.to_string(),
            q.text.clone(),
            q.author.is_none().to_string(),
            id,
            name,
            q.asked_unix_ms.to_string(),
            q.votes.to_string(),
            q.answer.clone().unwrap_or_default(),
            q.answered_live.to_string(),
            q.dismissed.to_string(),
        ]);
    }
    rows
}

/// One CSV field (RFC 4180). A field a spreadsheet would run as a formula (`=`, `+`,
/// `-`, `@` first) is prefixed with `'`: participants write these texts.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv(meeting: &str, what: &str, rows: &[Vec<String>]) -> Response {
    let mut body = String::new();
    for r in rows {
        body.push_str(&r.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        body.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{meeting}-{what}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-3"), "-3", "a number stays a number");
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
    }
}
