//! Who may do what: the caller as an edge established it, operator keys (compared in
//! constant time), and meeting passwords, host and panelist keys (checked against their
//! argon2id hashes off the async threads: `secrets`).
use std::net::IpAddr;

use common::token::Role;

use crate::error::ApiError;
use crate::model::Meeting;
use crate::secrets::{blocking, constant_time_eq, verify_secret};
use crate::service::Service;

/// The credentials of an `Authorization: Bearer <key>` value (scheme case-insensitive).
pub fn parse_bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Who is calling, as the edge established it.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The `Authorization: Bearer` value, if any.
    pub bearer: Option<String>,
    pub addr: Option<IpAddr>,
    /// The value of the configured regional-ingress header, if present.
    pub region_header: Option<String>,
    /// A user signed in through OpenID Connect (session cookie, or an ID token as the
    /// bearer).
    pub user: Option<crate::oidc::User>,
}

/// Whether a signed-in `user` hosts `meeting`: they made it, or they administer the
/// organisation of the one who did.
pub(crate) fn user_hosts(user: &crate::oidc::User, meeting: &Meeting) -> bool {
    meeting.owner.as_ref().is_some_and(|o| {
        (o.issuer == user.iss && o.subject == user.sub) || (user.admin && o.org() == user.org())
    })
}

impl Service {
    /// Which meetings the caller may list: a signed-in user those they host
    /// ([`user_hosts`]); an operator every one; anyone else none (an error).
    pub(crate) fn meeting_filter<'a>(
        &self,
        caller: &'a Caller,
    ) -> Result<impl Fn(&Meeting) -> bool + 'a, ApiError> {
        if caller.user.is_none() {
            self.require_operator(caller)?;
        }
        Ok(move |m: &Meeting| caller.user.as_ref().is_none_or(|u| user_hosts(u, m)))
    }

    pub(crate) fn is_operator(&self, caller: &Caller) -> bool {
        caller.bearer.as_deref().is_some_and(|b| {
            self.operator_keys
                .iter()
                .any(|k| constant_time_eq(k.as_bytes(), b.as_bytes()))
        })
    }

    pub fn require_operator(&self, caller: &Caller) -> Result<(), ApiError> {
        match &caller.bearer {
            None => Err(ApiError::Unauthorized(
                "this call needs an operator key: Authorization: Bearer <key>".into(),
            )),
            Some(_) if self.is_operator(caller) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized(
                "the operator key is not valid".into(),
            )),
        }
    }

    /// Operator key, or the meeting's host key.
    pub(crate) async fn require_host(
        &self,
        caller: &Caller,
        meeting: &Meeting,
        what: &str,
    ) -> Result<(), ApiError> {
        // The signed-in user who made the meeting, or an administrator of their
        // organisation.
        if let Some(u) = &caller.user {
            return if user_hosts(u, meeting) {
                Ok(())
            } else {
                Err(ApiError::Forbidden(format!(
                    "{what}: only for the meeting's host, its organisation's administrators (or an operator)"
                )))
            };
        }
        let Some(bearer) = caller.bearer.clone() else {
            return Err(ApiError::Unauthorized(format!(
                "{what} needs the meeting's host key or an operator key: \
                 Authorization: Bearer <key>"
            )));
        };
        if self.require_operator(caller).is_ok() {
            return Ok(());
        }
        let hash = meeting.host_key_hash.clone();
        if blocking(move || verify_secret(&bearer, &hash)).await? {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{what}: only for the meeting's host (or an operator)"
            )))
        }
    }

    /// The role a joiner's secrets give: host with the host key, panelist with a
    /// webinar's panelist key, attendee with the password (or with nothing, when the
    /// meeting has none).
    pub(crate) async fn check_secrets(
        &self,
        meeting: &Meeting,
        password: Option<String>,
        host_key: Option<String>,
        panelist_key: Option<String>,
    ) -> Result<Role, ApiError> {
        let (pw_hash, hk_hash) = (meeting.password_hash.clone(), meeting.host_key_hash.clone());
        let pk_hash = meeting.panelist_key_hash.clone();
        if pw_hash.is_some() && password.is_none() && host_key.is_none() && panelist_key.is_none() {
            return Err(ApiError::Unauthorized(
                "this meeting needs a password".into(),
            ));
        }
        // Nothing to hash (the common join of a lecture): no trip to the blocking pool.
        if pw_hash.is_none() && host_key.is_none() && panelist_key.is_none() {
            return Ok(Role::Attendee);
        }
        blocking(move || {
            if let Some(hk) = host_key {
                return if verify_secret(&hk, &hk_hash) {
                    Ok(Role::Host)
                } else {
                    Err(ApiError::Forbidden("wrong host key".into()))
                };
            }
            if let Some(pk) = panelist_key {
                return match pk_hash {
                    Some(h) if verify_secret(&pk, &h) => Ok(Role::Panelist),
                    Some(_) => Err(ApiError::Forbidden("wrong panelist key".into())),
                    None => Err(ApiError::BadRequest(
                        "panelist_key: only webinars have panelist keys".into(),
                    )),
                };
            }
            if let Some(pw_hash) = pw_hash
                && !verify_secret(password.as_deref().unwrap_or(""), &pw_hash)
            {
                return Err(ApiError::Forbidden("wrong meeting password".into()));
            }
            Ok(Role::Attendee)
        })
        .await?
    }
}
