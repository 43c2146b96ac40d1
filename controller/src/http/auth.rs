//! Sign-in routes (`oidc.rs` does the protocol): `GET /auth/login` sends the browser
//! to the identity provider, `GET /auth/callback` takes it back and opens a session,
//! `POST /auth/logout` ends it, and `GET /v1/me` says who is signed in (with the
//! session's CSRF token for the portal's changes).
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::calendar::public_base;
use super::{HttpState, Json, cookie};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::oidc::{LOGIN_COOKIE, Oidc, SESSION_COOKIE};
use crate::sessions::Sessions;

pub(super) fn router() -> Router<HttpState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/v1/me", get(me))
        .route("/auth/methods", get(methods))
}

/// The ways to sign in that this cluster offers (the portal shows them).
async fn methods(State(s): State<HttpState>) -> Json<serde_json::Value> {
    Json(json!({
        "oidc": s.service.oidc.is_some(),
        "accounts": s.service.accounts.is_some(),
    }))
}

fn sessions(s: &HttpState) -> Result<&Sessions, ApiError> {
    s.service.sessions.as_deref().ok_or_else(|| {
        ApiError::NotFound(
            "sign-in is not configured on this cluster ([oidc] or [accounts])".into(),
        )
    })
}

fn oidc(s: &HttpState) -> Result<&Oidc, ApiError> {
    s.service.oidc.as_deref().ok_or_else(|| {
        ApiError::NotFound("sign-in is not configured on this cluster ([oidc])".into())
    })
}

/// A cookie: HttpOnly, SameSite=Lax (it must come along when the provider sends the
/// browser back), Secure when users reach us over https.
pub(super) fn set_cookie(
    base: &str,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
) -> HeaderValue {
    let secure = if base.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .expect("cookie values are base64url")
}

#[derive(Deserialize)]
struct LoginQuery {
    /// A meeting's page to come back to.
    next: Option<String>,
}

async fn login(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    let o = oidc(&s)?;
    let base = public_base(&s, &headers);
    let (to, pending) = o
        .start(&format!("{base}/auth/callback"), q.next.as_deref())
        .await?;
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&base, LOGIN_COOKIE, &pending, "/auth", 600),
    );
    Ok(resp)
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(s): State<HttpState>,
    headers: HeaderMap,
    q: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let o = oidc(&s)?;
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(e) = q.error {
        return Err(ApiError::Unauthorized(format!(
            "the identity provider did not sign you in: {}",
            q.error_description.unwrap_or(e)
        )));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(ApiError::BadRequest(
            "the identity provider sent no code and state back".into(),
        ));
    };
    let base = public_base(&s, &headers);
    let pending = cookie(&headers, LOGIN_COOKIE);
    let (session, next) = o
        .finish(
            &code,
            &state,
            pending.as_deref(),
            &format!("{base}/auth/callback"),
        )
        .await
        .inspect_err(|e| tracing::info!(error = %e, "sign-in refused"))?;
    tracing::info!(user = %session.user.email, admin = session.user.admin, "signed in");
    let to = next.unwrap_or_else(|| "/portal".into());
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            &base,
            SESSION_COOKIE,
            &sessions(&s)?.seal_session(&session),
            "/",
            o.session_ttl().as_secs(),
        ),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&base, LOGIN_COOKIE, "", "/auth", 0),
    );
    Ok(resp)
}

async fn logout(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    let base = public_base(&s, &headers);
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            set_cookie(&base, SESSION_COOKIE, "", "/", 0),
        )],
    )
        .into_response()
}

async fn me(
    State(s): State<HttpState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sessions = sessions(&s)?;
    let Some(user) = caller.user else {
        return Err(ApiError::Unauthorized("not signed in: /portal".into()));
    };
    // The portal's changes carry this (a session's; an ID token as bearer needs none).
    let csrf = cookie(&headers, SESSION_COOKIE)
        .and_then(|c| sessions.session(&c))
        .map(|s| s.csrf);
    let calendar_url = format!(
        "{}/v1/calendars/{}.ics",
        public_base(&s, &headers),
        sessions.feed_token(&user)
    );
    Ok(Json(json!({
        "calendar_url": calendar_url,
        "name": user.name,
        "email": user.email,
        "org": user.org(),
        "roles": user.roles,
        "admin": user.admin,
        "issuer": user.iss,
        "local": user.iss == crate::accounts::LOCAL_ISSUER,
        "subject": user.sub,
        "csrf": csrf,
    })))
}
