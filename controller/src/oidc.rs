//! Sign-in through OpenID Connect (any provider: Feide, an eduGAIN proxy, Keycloak…):
//! the authorization code flow with PKCE (S256) and a nonce, as a confidential client;
//! the ID token checked against the provider's published keys (signature, issuer,
//! audience, expiry, nonce). A signed-in user holds a session cookie (HttpOnly,
//! SameSite=Lax, Secure over https) whose state-changing calls need the session's CSRF
//! token in a header; API clients may instead send a current ID token from the provider
//! as `Authorization: Bearer`.
//!
//! The controllers are stateless: what a sign-in needs between leaving for the provider
//! and coming back (state, nonce, PKCE verifier) travels in a short-lived cookie, and
//! sessions are cookies too, both MACed with a key every replica derives from the join
//! token signing key they share.
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::sessions::{Session, now_secs, open, random_token, seal};

/// The `[oidc]` section.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (its discovery document is under it).
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret.
    pub client_secret_file: std::path::PathBuf,
    /// Users with these e-mail addresses administer their organisation (the part after
    /// `@`): they see its meetings and the dashboard.
    #[serde(default)]
    pub admin_emails: Vec<String>,
    /// How long a session lasts.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_secs: u64,
}

fn default_session_ttl() -> u64 {
    8 * 3600
}

/// A signed-in user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub iss: String,
    pub sub: String,
    pub email: String,
    pub name: String,
    pub admin: bool,
}

impl User {
    /// The organisation: the domain of the e-mail address.
    pub fn org(&self) -> &str {
        crate::model::email_domain(&self.email)
    }
}

/// What a sign-in under way remembers (in its cookie) until the provider sends the user
/// back.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    exp: u64,
}

/// Whose calendar feed (in its address).
#[derive(Serialize, Deserialize)]
struct FeedOwner {
    iss: String,
    sub: String,
}

#[derive(Clone, Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
}

/// The claims we read from an ID token (the library checks exp, iss and aud).
#[derive(Deserialize)]
struct IdClaims {
    iss: String,
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

pub const LOGIN_COOKIE: &str = "fjord_login";
pub const SESSION_COOKIE: &str = "fjord_session";
pub const CSRF_HEADER: &str = "x-fjord-csrf";
/// How long a sign-in may take at the provider.
const LOGIN_TTL: u64 = 600;
/// How long discovery and keys are trusted before they are fetched again (an unknown
/// key id fetches them at once, at most every 10 s).
const META_TTL: Duration = Duration::from_secs(3600);

pub struct Oidc {
    cfg: OidcConfig,
    secret: String,
    key: Vec<u8>,
    http: reqwest::Client,
    meta: tokio::sync::Mutex<Option<(Instant, Discovery, jsonwebtoken::jwk::JwkSet)>>,
}

fn refused(why: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(why.into())
}

impl Oidc {
    /// `signing_key`: the join token signing key's file content, which every controller
    /// replica shares; the cookie key is derived from it.
    pub fn new(cfg: OidcConfig, secret: String, signing_key: &[u8]) -> Self {
        let key = crate::sessions::session_key(signing_key);
        Self {
            cfg,
            secret,
            key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            meta: tokio::sync::Mutex::new(None),
        }
    }

    /// A JSON document of the provider's.
    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, ApiError> {
        let unavailable =
            |e: reqwest::Error| ApiError::Unavailable(format!("the identity provider: {e}"));
        self.http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)
    }

    async fn fetch_meta(&self) -> Result<(Discovery, jsonwebtoken::jwk::JwkSet), ApiError> {
        let d: Discovery = self
            .get_json(&format!(
                "{}/.well-known/openid-configuration",
                self.cfg.issuer.trim_end_matches('/')
            ))
            .await?;
        if d.issuer != self.cfg.issuer {
            return Err(ApiError::Unavailable(format!(
                "the identity provider calls itself {:?}, not the configured issuer",
                d.issuer
            )));
        }
        let keys = self.get_json(&d.jwks_uri).await?;
        Ok((d, keys))
    }

    /// The provider's endpoints and keys (cached; `refresh` fetches them again unless
    /// that happened in the last 10 s).
    async fn meta(
        &self,
        refresh: bool,
    ) -> Result<(Discovery, jsonwebtoken::jwk::JwkSet), ApiError> {
        let mut cached = self.meta.lock().await;
        if let Some((at, d, k)) = &*cached {
            let age = at.elapsed();
            if age < META_TTL && !(refresh && age > Duration::from_secs(10)) {
                return Ok((d.clone(), k.clone()));
            }
        }
        let (d, k) = self.fetch_meta().await?;
        *cached = Some((Instant::now(), d.clone(), k.clone()));
        Ok((d, k))
    }

    /// Starts a sign-in: where to send the browser, and the cookie that remembers it.
    pub async fn start(&self, redirect_uri: &str) -> Result<(String, String), ApiError> {
        let (d, _) = self.meta(false).await?;
        let p = Pending {
            state: random_token(24),
            nonce: random_token(24),
            verifier: random_token(48),
            exp: now_secs() + LOGIN_TTL,
        };
        let challenge = B64.encode(Sha256::digest(p.verifier.as_bytes()));
        let mut url = reqwest::Url::parse(&d.authorization_endpoint).map_err(|e| {
            ApiError::Unavailable(format!("the provider's authorization endpoint: {e}"))
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &p.state)
            .append_pair("nonce", &p.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok((url.to_string(), seal(&self.key, &p)))
    }

    /// Finishes a sign-in the provider sent back with `code` and `state`; `pending` is
    /// the sign-in cookie. The new session.
    pub async fn finish(
        &self,
        code: &str,
        state: &str,
        pending: Option<&str>,
        redirect_uri: &str,
    ) -> Result<Session, ApiError> {
        let Some(p) = pending.and_then(|c| open::<Pending>(&self.key, c)) else {
            return Err(ApiError::BadRequest(
                "no sign-in under way in this browser (its PKCE verifier is missing): start again"
                    .into(),
            ));
        };
        if p.exp < now_secs() {
            return Err(ApiError::BadRequest(
                "the sign-in took too long: start again".into(),
            ));
        }
        if !crate::secrets::constant_time_eq(p.state.as_bytes(), state.as_bytes()) {
            return Err(ApiError::BadRequest(
                "the sign-in's state does not match the one this browser started: refused".into(),
            ));
        }
        let (d, _) = self.meta(false).await?;
        let resp = self
            .http
            .post(&d.token_endpoint)
            .basic_auth(&self.cfg.client_id, Some(&self.secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", &p.verifier),
            ])
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("the identity provider: {e}")))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            return Err(refused(format!(
                "the identity provider refused the sign-in ({status}): {}",
                body["error_description"]
                    .as_str()
                    .or(body["error"].as_str())
                    .unwrap_or("no reason given")
            )));
        }
        let answer: TokenAnswer = resp
            .json()
            .await
            .map_err(|e| refused(format!("the identity provider's answer: {e}")))?;
        let user = self.verify(&answer.id_token, Some(&p.nonce)).await?;
        Ok(Session {
            user,
            csrf: random_token(24),
            exp: now_secs() + self.cfg.session_ttl_secs,
        })
    }

    /// Checks an ID token: signed by one of the provider's keys, from its issuer, for
    /// us, not expired (30 s of leeway), carrying `nonce` when one is expected.
    pub async fn verify(&self, token: &str, nonce: Option<&str>) -> Result<User, ApiError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| refused("the ID token is malformed"))?;
        let kid = header.kid.clone().unwrap_or_default();
        let (_, mut keys) = self.meta(false).await?;
        if keys.find(&kid).is_none() {
            (_, keys) = self.meta(true).await?;
        }
        let jwk = keys.find(&kid).ok_or_else(|| {
            refused("the ID token is signed with a key the identity provider does not publish")
        })?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk)
            .map_err(|_| refused("the identity provider publishes a key we cannot use"))?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.client_id]);
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                refused(match e.kind() {
                    K::ExpiredSignature => "the ID token has expired".to_owned(),
                    K::InvalidSignature => "the ID token's signature is not valid".to_owned(),
                    K::InvalidIssuer => "the ID token is from another issuer".to_owned(),
                    K::InvalidAudience => "the ID token is for another client".to_owned(),
                    _ => format!("the ID token is not valid: {e}"),
                })
            })?
            .claims;
        if let Some(n) = nonce
            && claims.nonce.as_deref() != Some(n)
        {
            return Err(refused("the ID token's nonce is not this sign-in's"));
        }
        let email = claims.email.unwrap_or_default();
        let admin = self
            .cfg
            .admin_emails
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&email));
        Ok(User {
            name: claims.name.unwrap_or_else(|| email.clone()),
            iss: claims.iss,
            sub: claims.sub,
            email,
            admin,
        })
    }

    /// The secret part of `user`'s personal calendar feed address: whoever has it reads
    /// their scheduled meetings (calendar programs fetch feeds without signing in).
    pub fn feed_token(&self, user: &User) -> String {
        seal(
            &self.key,
            &FeedOwner {
                iss: user.iss.clone(),
                sub: user.sub.clone(),
            },
        )
    }

    /// Whose feed a token is, if it is one of ours.
    pub fn feed_owner(&self, token: &str) -> Option<(String, String)> {
        open::<FeedOwner>(&self.key, token).map(|f| (f.iss, f.sub))
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.cfg.session_ttl_secs)
    }
}
