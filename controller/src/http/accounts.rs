//! Local accounts over HTTP (`accounts.rs` holds the rules): `POST /auth/password-login`
//! signs in with an e-mail address and a password and opens a session (the same cookie
//! as a provider's sign-in); `POST /v1/me/password` changes the signed-in user's
//! password; `GET`/`POST /v1/accounts` and `DELETE /v1/accounts/{email}` are for
//! administrators (their organisation's accounts) and operators (every one).
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;

use super::auth::set_cookie;
use super::calendar::public_base;
use super::{ApiJson, ClientAddr, HttpState, Json};
use crate::accounts::{AccountJson, NewAccount};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::oidc::SESSION_COOKIE;

pub(super) fn router() -> Router<HttpState> {
    Router::new()
        .route("/auth/password-login", post(password_login))
        .route("/v1/me/password", post(change_password))
        .route("/v1/accounts", get(list).post(create))
        .route("/v1/accounts/{email}", delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

async fn password_login(
    State(s): State<HttpState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(login): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let user = s
        .service
        .sign_in(&login.email, &login.password, addr)
        .await?;
    let ttl = s.service.account_session_ttl()?;
    let sessions =
        s.service.sessions.as_deref().ok_or_else(|| {
            ApiError::Internal("local accounts are on but sessions are not".into())
        })?;
    let session = sessions.start(user, ttl);
    let base = public_base(&s, &headers);
    let cookie = set_cookie(
        &base,
        SESSION_COOKIE,
        &sessions.seal_session(&session),
        "/",
        ttl,
    );
    let body = Json(json!({
        "name": session.user.name,
        "email": session.user.email,
        "org": session.user.org(),
        "admin": session.user.admin,
        "csrf": session.csrf,
    }));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current: String,
    new: String,
}

async fn change_password(
    State(s): State<HttpState>,
    caller: Caller,
    ApiJson(c): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    s.service
        .change_password(&caller, &c.current, c.new)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(
    State(s): State<HttpState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let accounts = s.service.list_accounts(&caller).await?;
    let shown: Vec<AccountJson> = accounts.iter().map(AccountJson::from).collect();
    Ok(Json(json!({ "accounts": shown })))
}

async fn create(
    State(s): State<HttpState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewAccount>,
) -> Result<(StatusCode, Json<AccountJson>), ApiError> {
    let a = s.service.create_account(&caller, new).await?;
    Ok((StatusCode::CREATED, Json(AccountJson::from(&a))))
}

async fn remove(
    State(s): State<HttpState>,
    caller: Caller,
    Path(email): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.service.delete_account(&caller, &email).await?;
    Ok(StatusCode::NO_CONTENT)
}
