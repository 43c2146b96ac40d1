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
    Router::new().route("/v1/meetings/{id}/calendar.ics", get(invitation))
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
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"meeting.ics\"",
            ),
        ],
        body,
    )
        .into_response())
}
