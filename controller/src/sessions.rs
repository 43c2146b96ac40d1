//! Sessions of signed-in users, whoever signed them in (an OpenID Connect provider or a
//! local account): a cookie (HttpOnly, SameSite=Lax, Secure over https) holding the user,
//! a CSRF token that every state-changing call of the session must send back in a
//! header, and its expiry, MACed (HMAC-SHA256) with a key that every controller replica
//! derives from the join token signing key they share, so that any replica opens it.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::oidc::User;

/// A session cookie's content.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub user: User,
    /// Sent back in `X-Fjord-CSRF` with every state-changing call the session makes.
    pub csrf: String,
    pub exp: u64,
}

pub(crate) fn now_secs() -> u64 {
    common::unix_ms() as u64 / 1000
}

pub(crate) fn random_token(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    B64.encode(v)
}

/// The key of sessions (and of the sign-in's other sealed values) from the join token
/// signing key's file content.
pub(crate) fn session_key(signing_key: &[u8]) -> Vec<u8> {
    Sha256::new()
        .chain_update(b"fjord sessions v1\0")
        .chain_update(signing_key)
        .finalize()
        .to_vec()
}

/// `payload` as JSON, base64url, and its HMAC-SHA256 under `key`.
pub(crate) fn seal<T: Serialize>(key: &[u8], payload: &T) -> String {
    let body = B64.encode(serde_json::to_vec(payload).unwrap_or_default());
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(body.as_bytes());
    format!("{body}.{}", B64.encode(mac.finalize().into_bytes()))
}

/// What [`seal`] sealed, if the MAC holds.
pub(crate) fn open<T: DeserializeOwned>(key: &[u8], sealed: &str) -> Option<T> {
    let (body, tag) = sealed.split_once('.')?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(body.as_bytes());
    mac.verify_slice(&B64.decode(tag).ok()?).ok()?;
    serde_json::from_slice(&B64.decode(body).ok()?).ok()
}

/// Whose calendar feed (in its address).
#[derive(Serialize, Deserialize)]
struct FeedOwner {
    iss: String,
    sub: String,
}

/// Opens and makes session cookies.
pub struct Sessions {
    key: Vec<u8>,
}

impl Sessions {
    /// `signing_key`: the join token signing key's file content.
    pub fn new(signing_key: &[u8]) -> Self {
        Self {
            key: session_key(signing_key),
        }
    }

    /// A new session of `user` for `ttl_secs`, with a fresh CSRF token.
    pub fn start(&self, user: User, ttl_secs: u64) -> Session {
        Session {
            user,
            csrf: random_token(24),
            exp: now_secs() + ttl_secs,
        }
    }

    pub fn seal_session(&self, s: &Session) -> String {
        seal(&self.key, s)
    }

    /// The secret part of `user`'s personal calendar feed address: whoever has it reads
    /// their scheduled meetings (calendar programs fetch feeds without signing in). For
    /// users of a provider and of local accounts alike.
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

    /// The session in a cookie value, if it is ours and current.
    pub fn session(&self, cookie: &str) -> Option<Session> {
        open::<Session>(&self.key, cookie).filter(|s| s.exp >= now_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_only_untampered_current_and_under_our_key() {
        let o = Sessions::new(b"signing key");
        let user = User {
            iss: "i".into(),
            sub: "s".into(),
            email: "ada@uni.no".into(),
            name: "Ada".into(),
            admin: false,
            org: String::new(),
            roles: Vec::new(),
        };
        let s = o.start(user.clone(), 60);
        let sealed = o.seal_session(&s);
        assert_eq!(o.session(&sealed).map(|s| s.user), Some(user.clone()));
        assert_eq!(user.org(), "uni.no");
        // Tampered: the payload of another user under the old MAC.
        let (_, tag) = sealed.split_once('.').unwrap();
        let forged = Session {
            user: User {
                admin: true,
                ..user.clone()
            },
            ..s.clone()
        };
        let body = seal(&o.key, &forged);
        let forged = format!("{}.{tag}", body.split_once('.').unwrap().0);
        assert!(o.session(&forged).is_none(), "a changed payload");
        assert!(Sessions::new(b"another key").session(&sealed).is_none());
        let old = o.seal_session(&Session {
            exp: now_secs() - 1,
            ..s
        });
        assert!(o.session(&old).is_none(), "expired");
        assert!(
            o.session("garbage").is_none()
                && o.session("").is_none()
                && o.session("a.b.c").is_none()
        );
    }
}
