//! Calendar invitations: `GET /v1/meetings/{id}/calendar.ics`, a scheduled meeting as an
//! iCalendar object (RFC 5545) with its join link. Public like the meeting's pre-join
//! information: whoever has the link may put it in their calendar.
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::HttpState;
use crate::error::ApiError;
use crate::schedule::{self, Invitation};

pub(super) fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/meetings/{id}/calendar.ics", get(invitation))
        .route("/v1/calendars/{token}", get(feed))
}

fn calendar_response(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"meetings.ics\"",
            ),
        ],
        body,
    )
        .into_response()
}

/// A signed-in user's personal feed: every scheduled meeting they own that has not
/// ended, at `/v1/calendars/{token}.ics` (the address `GET /v1/me` gives them).
async fn feed(
    State(s): State<HttpState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let unknown = || ApiError::NotFound("no such calendar".into());
    let token = token.strip_suffix(".ics").ok_or_else(unknown)?;
    let sessions = s.service.sessions.as_ref().ok_or_else(unknown)?;
    let (iss, sub) = sessions.feed_owner(token).ok_or_else(unknown)?;
    let base = public_base(&s, &headers);
    let meetings: Vec<_> = s.service.view.read(|v| {
        v.meetings
            .values()
            .filter(|m| {
                !m.is_ended()
                    && m.schedule.is_some()
                    && m.owner
                        .as_ref()
                        .is_some_and(|o| o.issuer == iss && o.subject == sub)
            })
            .cloned()
            .collect()
    });
    let ids: Vec<(String, String)> = meetings
        .iter()
        .map(|m| (m.id.to_string(), format!("{base}/m/{}", m.id)))
        .collect();
    let invitations: Vec<Invitation<'_>> = meetings
        .iter()
        .zip(&ids)
        .map(|(m, (id, url))| Invitation {
            meeting_id: id,
            title: &m.title,
            description: &m.description,
            url,
            organizer: m
                .owner
                .as_ref()
                .map(|o| (o.name.as_str(), o.email.as_str())),
        })
        .collect();
    let events: Vec<_> = meetings
        .iter()
        .zip(&invitations)
        .filter_map(|(m, inv)| Some((m.schedule.as_ref()?, inv)))
        .collect();
    Ok(calendar_response(schedule::ics_events(
        &events,
        chrono::Utc::now(),
    )))
}

/// Where users reach this controller: the configured public URL, else the request's
/// `Host` over http.
pub(super) fn public_base(s: &HttpState, headers: &HeaderMap) -> String {
    if let Some(u) = &s.service.public_url {
        return u.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn invitation(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let info = s.service.public_meeting(&id).await?;
    let m = info.meeting;
    let Some(sched) = &m.schedule else {
        return Err(ApiError::NotFound(format!(
            "meeting {} has no schedule: it has no calendar entry",
            m.id
        )));
    };
    let url = format!("{}/m/{}", public_base(&s, &headers), m.id);
    let id = m.id.to_string();
    let body = schedule::ics(
        sched,
        &Invitation {
            meeting_id: &id,
            title: &m.title,
            description: &m.description,
            url: &url,
            organizer: None,
        },
        chrono::Utc::now(),
    );
    Ok(calendar_response(body))
}
