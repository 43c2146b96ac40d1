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
    /// The scopes a sign-in asks for (`openid` is always among them).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Read the provider's userinfo endpoint at sign-in (its claims complete the ID
    /// token's).
    #[serde(default = "yes")]
    pub userinfo: bool,
    /// A second userinfo document read with the same access token, such as Feide's
    /// extended userinfo (`https://api.dataporten.no/userinfo/v1/userinfo`), which holds
    /// the eduPerson attributes.
    #[serde(default)]
    pub extra_userinfo_url: Option<String>,
    /// Which claims name the user's organisation, roles and groups.
    #[serde(default)]
    pub claims: ClaimsConfig,
}

fn default_session_ttl() -> u64 {
    8 * 3600
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

fn yes() -> bool {
    true
}

/// How a user's organisation, roles and administrator right are read from the claims
/// of their ID token and userinfo. Claim names are matched exactly (Feide's are URLs).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimsConfig {
    /// The claim naming the user's organisation, e.g. `schacHomeOrganization`
    /// (`uio.no`); a value with an `@` counts for its domain (eduPersonPrincipalName).
    /// Without it, or when a user's claims lack it, the e-mail address's domain.
    pub organisation: Option<String>,
    /// The claim listing the user's roles, e.g. `eduPersonAffiliation`
    /// (`["employee", "faculty", "member"]`).
    pub roles: Option<String>,
    /// The claim listing the user's groups, e.g. `groups` (Keycloak, Entra ID) or
    /// `eduPersonEntitlement`.
    pub groups: Option<String>,
    /// Members of any of these groups administer their organisation.
    pub admin_groups: Vec<String>,
    /// When set, only users holding one of these roles make meetings (the others join
    /// them); e.g. `["employee", "faculty", "staff"]`.
    pub host_roles: Vec<String>,
}

/// A signed-in user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub iss: String,
    pub sub: String,
    pub email: String,
    pub name: String,
    pub admin: bool,
    /// The organisation from the provider's claims (empty: the e-mail's domain).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub org: String,
    /// Roles from the provider's claims (e.g. eduPersonAffiliation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl User {
    /// The organisation: from the provider's claims, else the domain of the e-mail
    /// address.
    pub fn org(&self) -> &str {
        if self.org.is_empty() {
            crate::model::email_domain(&self.email)
        } else {
            &self.org
        }
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
    /// Where in Fjord the browser goes once signed in (a meeting's page).
    #[serde(default)]
    next: Option<String>,
}

/// Where a browser may be sent back to after signing in: a meeting page of ours (a
/// path, never another site).
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.len() <= 512
        && next.starts_with("/m/")
        && !next.contains("//")
        && !next.contains('\\')
        && next.chars().all(|c| c.is_ascii_graphic());
    ok.then_some(next)
}

#[derive(Clone, Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
    #[serde(default)]
    access_token: Option<String>,
}

/// The claims of an ID token (the library checks exp, iss and aud), and of userinfo.
type Claims = serde_json::Map<String, serde_json::Value>;

/// How many roles a session keeps (it is a cookie), and how long each may be.
const MAX_ROLES: usize = 16;
const MAX_ROLE_CHARS: usize = 64;

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

    /// The scopes a sign-in asks for, `openid` first.
    fn scope(&self) -> String {
        let mut scopes = vec!["openid"];
        scopes.extend(
            self.cfg
                .scopes
                .iter()
                .map(String::as_str)
                .filter(|s| *s != "openid"),
        );
        scopes.join(" ")
    }

    /// Starts a sign-in: where to send the browser, and the cookie that remembers it
    /// (with `next`, where the browser goes once signed in: [`safe_next`]).
    pub async fn start(
        &self,
        redirect_uri: &str,
        next: Option<&str>,
    ) -> Result<(String, String), ApiError> {
        let (d, _) = self.meta(false).await?;
        let p = Pending {
            state: random_token(24),
            nonce: random_token(24),
            verifier: random_token(48),
            exp: now_secs() + LOGIN_TTL,
            next: next.and_then(safe_next).map(str::to_owned),
        };
        let challenge = B64.encode(Sha256::digest(p.verifier.as_bytes()));
        let mut url = reqwest::Url::parse(&d.authorization_endpoint).map_err(|e| {
            ApiError::Unavailable(format!("the provider's authorization endpoint: {e}"))
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.scope())
            .append_pair("state", &p.state)
            .append_pair("nonce", &p.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok((url.to_string(), seal(&self.key, &p)))
    }

    /// Finishes a sign-in the provider sent back with `code` and `state`; `pending` is
    /// the sign-in cookie. The new session, and where the browser goes next.
    pub async fn finish(
        &self,
        code: &str,
        state: &str,
        pending: Option<&str>,
        redirect_uri: &str,
    ) -> Result<(Session, Option<String>), ApiError> {
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
        let mut claims = self.verify_token(&answer.id_token, Some(&p.nonce)).await?;
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let endpoints = [
            d.userinfo_endpoint.filter(|_| self.cfg.userinfo),
            self.cfg.extra_userinfo_url.clone(),
        ];
        for url in endpoints.into_iter().flatten() {
            let Some(access) = answer.access_token.as_deref() else {
                return Err(refused(
                    "the identity provider gave no access token to read userinfo with",
                ));
            };
            // The ID token's own claims (issuer, subject, nonce) stand; userinfo adds
            // the rest.
            for (k, v) in self.userinfo(&url, access, &sub).await? {
                if !matches!(k.as_str(), "iss" | "sub" | "aud" | "nonce" | "exp" | "iat") {
                    claims.insert(k, v);
                }
            }
        }
        let user = self.user_of(&claims)?;
        let session = Session {
            user,
            csrf: random_token(24),
            exp: now_secs() + self.cfg.session_ttl_secs,
        };
        Ok((session, p.next))
    }

    /// Checks an ID token: signed by one of the provider's keys, from its issuer, for
    /// us, not expired (30 s of leeway), carrying `nonce` when one is expected. Its
    /// claims.
    async fn verify_token(&self, token: &str, nonce: Option<&str>) -> Result<Claims, ApiError> {
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
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &v)
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
            && claims.get("nonce").and_then(|v| v.as_str()) != Some(n)
        {
            return Err(refused("the ID token's nonce is not this sign-in's"));
        }
        Ok(claims)
    }

    /// Checks an ID token sent as an API client's bearer: the user its own claims
    /// name (no userinfo: the client holds no access token of ours).
    pub async fn verify(&self, token: &str) -> Result<User, ApiError> {
        let claims = self.verify_token(token, None).await?;
        self.user_of(&claims)
    }

    /// Userinfo at `url` with `access_token`, for the user `sub` (a document about
    /// someone else is refused, as OpenID Connect Core 5.3.2 requires).
    async fn userinfo(&self, url: &str, access_token: &str, sub: &str) -> Result<Claims, ApiError> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(format!("the provider's userinfo: {e}")))?;
        if !resp.status().is_success() {
            return Err(refused(format!(
                "the provider's userinfo ({url}) answered {}",
                resp.status()
            )));
        }
        let info: Claims = resp
            .json()
            .await
            .map_err(|e| refused(format!("the provider's userinfo is not a JSON object: {e}")))?;
        match info.get("sub").and_then(|v| v.as_str()) {
            Some(s) if s == sub => Ok(info),
            // Feide's extended userinfo names the user by other keys.
            None if Some(url) == self.cfg.extra_userinfo_url.as_deref() => Ok(info),
            _ => Err(refused(
                "the provider's userinfo is about another user than the ID token: refused",
            )),
        }
    }

    /// The user that `claims` describe, as [`ClaimsConfig`] maps them.
    fn user_of(&self, claims: &Claims) -> Result<User, ApiError> {
        let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let (Some(iss), Some(sub)) = (text("iss"), text("sub")) else {
            return Err(refused("the ID token names no issuer or subject"));
        };
        let email = text("email").unwrap_or_default();
        let map = &self.cfg.claims;
        let org = match map.organisation.as_deref() {
            None => String::new(),
            Some(claim) => match claims.get(claim).and_then(organisation_in) {
                Some(org) => org,
                None => {
                    tracing::warn!(
                        claim,
                        user = %email,
                        "the organisation claim is missing or names no domain: the e-mail's domain stands in"
                    );
                    String::new()
                }
            },
        };
        let mut roles: Vec<String> = map
            .roles
            .as_deref()
            .map(|c| strings(claims.get(c)))
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !r.is_empty() && r.chars().count() <= MAX_ROLE_CHARS)
            .map(|r| r.to_lowercase())
            .collect();
        roles.sort();
        roles.dedup();
        roles.truncate(MAX_ROLES);
        let groups = map
            .groups
            .as_deref()
            .map(|c| strings(claims.get(c)))
            .unwrap_or_default();
        let admin = self
            .cfg
            .admin_emails
            .iter()
            .any(|a| !email.is_empty() && a.eq_ignore_ascii_case(&email))
            || groups.iter().any(|g| map.admin_groups.contains(g));
        Ok(User {
            name: text("name").unwrap_or_else(|| email.clone()),
            iss,
            sub,
            email,
            admin,
            org,
            roles,
        })
    }

    /// Whether `user` may make meetings: everyone, unless `host_roles` is set and they
    /// hold none of them (users of local accounts always may).
    pub fn may_host(&self, user: &User) -> Result<(), ApiError> {
        let need = &self.cfg.claims.host_roles;
        if user.iss != self.cfg.issuer
            || need.is_empty()
            || user
                .roles
                .iter()
                .any(|r| need.iter().any(|n| n.eq_ignore_ascii_case(r)))
        {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "making meetings is for users with the role {}; you join them",
            need.join(" or ")
        )))
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.cfg.session_ttl_secs)
    }
}

/// The strings of a claim that is one string or a list of them.
fn strings(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The organisation a claim's value names: a domain (`uio.no`), or the domain of a
/// scoped name (`kari@uio.no`), lower case; `None` for anything else.
fn organisation_in(v: &serde_json::Value) -> Option<String> {
    let s = strings(Some(v)).into_iter().next()?;
    let domain = s
        .rsplit_once('@')
        .map_or(s.as_str(), |(_, d)| d)
        .to_ascii_lowercase();
    crate::org::valid_org(&domain).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn oidc(claims: ClaimsConfig) -> Oidc {
        let cfg: OidcConfig = serde_json::from_value(json!({
            "issuer": "https://auth.example",
            "client_id": "fjord",
            "client_secret_file": "/dev/null",
            "admin_emails": ["rektor@uio.no"],
        }))
        .unwrap();
        Oidc::new(OidcConfig { claims, ..cfg }, String::new(), b"key")
    }

    fn claims(v: serde_json::Value) -> Claims {
        let mut c = json!({ "iss": "https://auth.example", "sub": "s1" });
        c.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        c.as_object().unwrap().clone()
    }

    #[test]
    fn only_a_meeting_page_of_ours_is_a_place_to_come_back_to_after_signing_in() {
        assert_eq!(safe_next("/m/abc-def?name=x"), Some("/m/abc-def?name=x"));
        for bad in [
            "https://evil.example/m/x",
            "//evil.example/m/x",
            "/m//evil.example",
            "/m/\\evil.example",
            "/portal",
            "/m/a b",
            "",
        ] {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
        assert_eq!(safe_next(&format!("/m/{}", "a".repeat(600))), None);
    }

    #[test]
    fn claims_give_the_organisation_roles_and_administrators_with_the_e_mail_domain_as_fallback() {
        let o = oidc(ClaimsConfig {
            organisation: Some("schacHomeOrganization".into()),
            roles: Some("eduPersonAffiliation".into()),
            groups: Some("groups".into()),
            admin_groups: vec!["fjord-admins".into()],
            host_roles: vec!["employee".into()],
        });
        let kari = o
            .user_of(&claims(json!({
                "email": "kari@student.uio.no", "name": "Kari",
                "schacHomeOrganization": "UIO.no",
                "eduPersonAffiliation": ["student", "member", "Student"],
            })))
            .unwrap();
        assert_eq!((kari.org(), kari.admin), ("uio.no", false));
        assert_eq!(kari.roles, ["member", "student"]);
        assert!(matches!(o.may_host(&kari), Err(ApiError::Forbidden(_))));
        let ola = o
            .user_of(&claims(json!({
                "email": "ola@gmail.example",
                "schacHomeOrganization": "ola@ntnu.no",
                "eduPersonAffiliation": "employee",
                "groups": ["staff", "fjord-admins"],
            })))
            .unwrap();
        assert_eq!(
            (ola.org(), ola.admin, ola.name.as_str()),
            ("ntnu.no", true, "ola@gmail.example")
        );
        assert!(o.may_host(&ola).is_ok());
        // No claim, or one that names no domain: the e-mail's domain.
        for org in [json!(null), json!("not a domain"), json!(42)] {
            let per = o
                .user_of(&claims(
                    json!({ "email": "per@hiof.no", "schacHomeOrganization": org }),
                ))
                .unwrap();
            assert_eq!(per.org(), "hiof.no", "{org}");
        }
        let boss = o
            .user_of(&claims(
                json!({ "email": "REKTOR@uio.no", "groups": "fjord-admins-not" }),
            ))
            .unwrap();
        assert!(boss.admin, "admin_emails still count");
        // Without a mapping, claims are not read.
        let plain = oidc(ClaimsConfig::default())
            .user_of(&claims(json!({ "email": "kari@student.uio.no", "schacHomeOrganization": "uio.no", "groups": ["fjord-admins"] })))
            .unwrap();
        assert_eq!(
            (plain.org(), plain.admin, plain.roles.len()),
            ("student.uio.no", false, 0)
        );
        let many: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
        let crowded = o
            .user_of(&claims(
                json!({ "eduPersonAffiliation": many, "email": "x@uio.no" }),
            ))
            .unwrap();
        assert_eq!(crowded.roles.len(), MAX_ROLES);
        assert!(
            o.user_of(&json!({ "sub": "s" }).as_object().unwrap().clone())
                .is_err()
        );
    }
}
