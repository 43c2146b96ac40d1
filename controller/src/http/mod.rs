//! The HTTP/JSON edge: the routes of the JSON API (`api.rs`) and of the browser client
//! (`web.rs`), the request extractors (the caller, bodies), and the one place where
//! `ApiError` becomes an HTTP status with a `{error, message}` body.
mod accounts;
mod api;
mod auth;
mod calendar;
mod exports;
mod portal;
mod registration;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::service::Service;

const MAX_BODY: usize = 64 * 1024;

pub fn router(state: HttpState) -> Router {
    api::router()
        .merge(exports::router())
        .merge(calendar::router())
        .merge(registration::router())
        .merge(auth::router())
        .merge(accounts::router())
        .merge(portal::router())
        .merge(web::router())
        .fallback(|| async { ApiError::NotFound("no such API route".into()) })
        .with_state(state)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::SignInRequired(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::RefusedByHost { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::MeetingConflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        };
        // Whole seconds, rounded up (RFC 9110 §10.2.3).
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after, .. } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
            }
            _ => None,
        };
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), message = %self, "request failed");
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.code(),
                message: self.to_string(),
            }),
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.max(1).into());
        }
        response
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

/// A JSON body whose every defect (syntax, type, unknown field, size) is a 400 with a message.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if bytes.len() > MAX_BODY {
            return Err(ApiError::BadRequest(format!(
                "request body over {MAX_BODY} bytes"
            )));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub service: Arc<Service>,
    pub region_header: Option<String>,
    pub client_address_header: Option<String>,
}

/// The client's address: the configured client address header's (set by the ingress),
/// else the connection's.
fn client_addr(parts: &Parts, state: &HttpState) -> Option<std::net::IpAddr> {
    let connection = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match &state.client_address_header {
        None => connection,
        Some(name) => client_address(&parts.headers, name).or(connection),
    }
}

/// The client's address alone, for a call that must not look at a session (a sign-in).
pub(crate) struct ClientAddr(pub Option<std::net::IpAddr>);

impl FromRequestParts<HttpState> for ClientAddr {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, ApiError> {
        Ok(ClientAddr(client_addr(parts, state)))
    }
}

impl FromRequestParts<HttpState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, ApiError> {
        let bearer = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => {
                let v = v
                    .to_str()
                    .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
                Some(
                    crate::auth::parse_bearer(v)
                        .ok_or_else(|| {
                            ApiError::Unauthorized(
                                "Authorization must be `Bearer <operator key>`".into(),
                            )
                        })?
                        .to_owned(),
                )
            }
        };
        let addr = client_addr(parts, state);
        let region_header = header_value(&parts.headers, state.region_header.as_deref());
        let (bearer, user) = signed_in(parts, state, bearer).await?;
        Ok(Caller {
            bearer,
            addr,
            region_header,
            user,
        })
    }
}

/// The signed-in user, if any: an ID token of the provider as the bearer (then no
/// longer a key), or a session cookie, whose state-changing calls must carry its CSRF
/// token.
async fn signed_in(
    parts: &Parts,
    state: &HttpState,
    bearer: Option<String>,
) -> Result<(Option<String>, Option<crate::oidc::User>), ApiError> {
    if let (Some(oidc), Some(b)) = (&state.service.oidc, &bearer)
        && b.split('.').count() == 3
    {
        return Ok((None, Some(oidc.verify(b).await?)));
    }
    let Some(sessions) = &state.service.sessions else {
        return Ok((bearer, None));
    };
    let Some(session) =
        cookie(&parts.headers, crate::oidc::SESSION_COOKIE).and_then(|c| sessions.session(&c))
    else {
        return Ok((bearer, None));
    };
    let reads = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !reads {
        let sent = header_value(&parts.headers, Some(crate::oidc::CSRF_HEADER)).unwrap_or_default();
        if !crate::secrets::constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
            return Err(ApiError::Forbidden(format!(
                "a change from a signed-in browser needs the session's CSRF token in {} (from GET /v1/me)",
                crate::oidc::CSRF_HEADER
            )));
        }
    }
    Ok((bearer, Some(session.user)))
}

/// The value of cookie `name`.
pub(crate) fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The client's address from a proxy's header: the last address of the (last) header,
/// the one the proxy nearest to us wrote.
fn client_address(h: &HeaderMap, name: &str) -> Option<std::net::IpAddr> {
    h.get_all(name)
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn header_value(h: &HeaderMap, name: Option<&str>) -> Option<String> {
    name.and_then(|n| h.get(n))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_the_last_one_the_nearest_proxy_wrote_and_garbage_is_none() {
        let mut h = HeaderMap::new();
        assert_eq!(client_address(&h, "x-forwarded-for"), None);
        // A client may send its own X-Forwarded-For; the proxy appends the real address.
        h.append("x-forwarded-for", "10.9.9.9, 198.51.100.7".parse().unwrap());
        assert_eq!(
            client_address(&h, "x-forwarded-for"),
            Some("198.51.100.7".parse().unwrap())
        );
        h.append("x-forwarded-for", "2001:db8::1".parse().unwrap());
        assert_eq!(
            client_address(&h, "X-Forwarded-For"),
            Some("2001:db8::1".parse().unwrap())
        );
        let mut g = HeaderMap::new();
        g.insert("x-real-ip", "not an address".parse().unwrap());
        assert_eq!(client_address(&g, "x-real-ip"), None);
    }
}
