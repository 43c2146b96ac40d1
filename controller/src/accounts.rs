//! Local accounts: sign-in with an e-mail address and a password, for clusters without
//! an identity provider (the local cluster, small installs) or beside one. An account's
//! organisation is its address's domain, as for a provider's users; an administrator
//! manages the accounts of their organisation, an operator every one. Passwords are
//! argon2id hashes (`secrets`, off the async threads). Wrong passwords are limited per
//! account and per client address (only failures count, so a user who types theirs
//! right is never held up by the limit, and a locked account opens again as its bucket
//! refills); an unknown address costs the same hash as a known one.
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::limits::{Limiter, Rate};
use crate::model::{Account, email_domain};
use crate::oidc::User;
use crate::secrets::{blocking, hash_secret, verify_secret};
use crate::service::Service;

/// The issuer of local accounts' users (`User::iss`; their subject is the address).
pub const LOCAL_ISSUER: &str = "fjord:local";

pub const MAX_EMAIL: usize = 254;
pub const MAX_NAME: usize = 100;
pub const MIN_PASSWORD: usize = 12;
pub const MAX_PASSWORD: usize = 256;

/// The `[accounts]` section.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    pub enabled: bool,
    /// How long a session lasts.
    pub session_ttl_secs: u64,
    /// Wrong passwords for one account, from anywhere.
    pub failures_per_account: Rate,
    /// Wrong passwords from one client address, for any accounts.
    pub failures_per_address: Rate,
    /// An administrator made at start-up when there is no account with this address yet.
    pub initial_admin: Option<InitialAdmin>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialAdmin {
    pub email: String,
    pub name: String,
    /// A file holding the password.
    pub password_file: std::path::PathBuf,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            session_ttl_secs: 8 * 3600,
            failures_per_account: Rate {
                per_minute: 5,
                burst: 10,
            },
            failures_per_address: Rate {
                per_minute: 30,
                burst: 50,
            },
            initial_admin: None,
        }
    }
}

/// The address as the login: trimmed, lower case; one `@` between a non-empty local
/// part and a domain with a dot, no spaces or control characters, at most
/// [`MAX_EMAIL`] bytes.
pub fn checked_email(email: &str) -> Result<String, ApiError> {
    let e = email.trim().to_lowercase();
    let bad = |why: &str| ApiError::BadRequest(format!("e-mail address {e:?}: {why}"));
    if e.is_empty() {
        return Err(ApiError::BadRequest("an e-mail address is needed".into()));
    }
    if e.len() > MAX_EMAIL {
        return Err(bad(&format!("longer than {MAX_EMAIL} bytes")));
    }
    if e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("has spaces or control characters"));
    }
    match e.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !local.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(e)
        }
        _ => Err(bad("not an address like name@example.org")),
    }
}

/// A display name: trimmed, 1 to [`MAX_NAME`] characters, no control characters.
pub fn checked_name(name: &str) -> Result<String, ApiError> {
    let n = name.trim();
    if n.is_empty() {
        return Err(ApiError::BadRequest("a name is needed".into()));
    }
    if n.chars().count() > MAX_NAME {
        return Err(ApiError::BadRequest(format!(
            "the name is longer than {MAX_NAME} characters"
        )));
    }
    if n.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "the name has control characters".into(),
        ));
    }
    Ok(n.to_owned())
}

/// A new password: [`MIN_PASSWORD`] to [`MAX_PASSWORD`] characters.
pub fn checked_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(ApiError::BadRequest(format!(
            "the password is shorter than {MIN_PASSWORD} characters"
        )));
    }
    if n > MAX_PASSWORD {
        return Err(ApiError::BadRequest(format!(
            "the password is longer than {MAX_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// The user a local account signs in as.
pub fn user_of(a: &Account) -> User {
    User {
        iss: LOCAL_ISSUER.into(),
        sub: a.email.clone(),
        email: a.email.clone(),
        name: a.name.clone(),
        admin: a.admin,
        org: String::new(),
        roles: Vec::new(),
    }
}

/// An account as the API shows it (never its hash).
#[derive(Debug, Serialize)]
pub struct AccountJson {
    pub email: String,
    pub name: String,
    pub org: String,
    pub admin: bool,
    pub created_unix_ms: i64,
    pub password_changed_unix_ms: i64,
}

impl From<&Account> for AccountJson {
    fn from(a: &Account) -> Self {
        Self {
            email: a.email.clone(),
            name: a.name.clone(),
            org: email_domain(&a.email).to_owned(),
            admin: a.admin,
            created_unix_ms: a.created_unix_ms,
            password_changed_unix_ms: a.password_changed_unix_ms,
        }
    }
}

/// A new account, as asked for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub email: String,
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

/// Local accounts' settings and their limits on wrong passwords.
pub struct Accounts {
    pub cfg: AccountsConfig,
    by_account: Mutex<Limiter<String>>,
    by_address: Mutex<Limiter<IpAddr>>,
}

/// A hash that no password matches, checked against when the address has no account,
/// so that an unknown address takes as long as a wrong password.
static NOBODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl Accounts {
    pub fn new(cfg: AccountsConfig) -> Self {
        Self {
            by_account: Mutex::new(Limiter::new(cfg.failures_per_account)),
            by_address: Mutex::new(Limiter::new(cfg.failures_per_address)),
            cfg,
        }
    }

    /// Refuses a sign-in of `email` from `addr` while either has used up its wrong
    /// passwords.
    fn check_limits(
        &self,
        email: &str,
        addr: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let wait = self
            .by_account
            .lock()
            .expect("limits")
            .wait(&email.to_owned(), now)
            .or_else(|| addr.and_then(|a| self.by_address.lock().expect("limits").wait(&a, now)));
        match wait {
            Some(retry_after) => Err(ApiError::TooManyRequests {
                message: "too many wrong passwords: try again later".into(),
                retry_after: retry_after.max(Duration::from_secs(1)),
            }),
            None => Ok(()),
        }
    }

    /// Counts a wrong password for `email` from `addr`.
    fn failed(&self, email: &str, addr: Option<IpAddr>, now: Instant) {
        let _ = self
            .by_account
            .lock()
            .expect("limits")
            .check(email.to_owned(), now);
        if let Some(a) = addr {
            let _ = self.by_address.lock().expect("limits").check(a, now);
        }
    }
}

fn not_enabled() -> ApiError {
    ApiError::NotFound("local accounts are not enabled on this cluster ([accounts])".into())
}

impl Service {
    fn accounts(&self) -> Result<&Accounts, ApiError> {
        self.accounts.as_deref().ok_or_else(not_enabled)
    }

    /// Whether `caller` may manage the accounts of `org`: an operator any organisation's,
    /// a signed-in administrator their own's.
    fn require_account_manager(&self, caller: &Caller, org: Option<&str>) -> Result<(), ApiError> {
        match &caller.user {
            Some(u) if u.admin && org.is_none_or(|o| o == u.org()) => Ok(()),
            Some(u) if u.admin => Err(ApiError::Forbidden(format!(
                "you administer {}, not {}",
                u.org(),
                org.unwrap_or_default()
            ))),
            Some(_) => Err(ApiError::Forbidden(
                "only an administrator manages accounts".into(),
            )),
            None => self.require_operator(caller),
        }
    }

    /// Signs `email` in with `password` from `addr`: their user, or why not.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        addr: Option<IpAddr>,
    ) -> Result<User, ApiError> {
        let accounts = self.accounts()?;
        let wrong = || ApiError::Unauthorized("wrong e-mail address or password".into());
        // Garbage is refused before it costs a hash, and counts as a wrong password.
        let Ok(email) = checked_email(email) else {
            accounts.failed("", addr, Instant::now());
            return Err(wrong());
        };
        if password.is_empty() || password.chars().count() > MAX_PASSWORD {
            accounts.failed(&email, addr, Instant::now());
            return Err(wrong());
        }
        accounts.check_limits(&email, addr, Instant::now())?;
        let account = self.store.get_account(&email).await?;
        let phc = match &account {
            Some(a) => a.password_hash.clone(),
            None => match NOBODY.get() {
                Some(h) => h.clone(),
                None => {
                    let h = blocking(|| hash_secret(&random_password())).await??;
                    NOBODY.get_or_init(|| h).clone()
                }
            },
        };
        let given = password.to_owned();
        let right = blocking(move || verify_secret(&given, &phc)).await?;
        match account {
            Some(a) if right => {
                tracing::info!(user = %a.email, admin = a.admin, "signed in with a local account");
                Ok(user_of(&a))
            }
            _ => {
                accounts.failed(&email, addr, Instant::now());
                tracing::info!(user = %email, addr = ?addr, "wrong password for a local account");
                Err(wrong())
            }
        }
    }

    /// The session ttl of local accounts.
    pub fn account_session_ttl(&self) -> Result<u64, ApiError> {
        Ok(self.accounts()?.cfg.session_ttl_secs)
    }

    /// Makes an account (an operator, or an administrator in their organisation).
    pub async fn create_account(
        &self,
        caller: &Caller,
        new: NewAccount,
    ) -> Result<Account, ApiError> {
        self.accounts()?;
        let email = checked_email(&new.email)?;
        self.require_account_manager(caller, Some(email_domain(&email)))?;
        self.make_account(email, &new.name, new.password, new.admin)
            .await
    }

    async fn make_account(
        &self,
        email: String,
        name: &str,
        password: String,
        admin: bool,
    ) -> Result<Account, ApiError> {
        let name = checked_name(name)?;
        checked_password(&password)?;
        let hash = blocking(move || hash_secret(&password)).await??;
        let now = common::unix_ms();
        let account = Account {
            email,
            name,
            admin,
            password_hash: hash,
            created_unix_ms: now,
            password_changed_unix_ms: now,
        };
        if !self.store.create_account(&account).await? {
            return Err(ApiError::Conflict(format!(
                "there is an account for {} already",
                account.email
            )));
        }
        tracing::info!(user = %account.email, admin, "local account created");
        Ok(account)
    }

    /// Makes the configured first administrator if there is no account with its address
    /// yet (each replica tries; the store creates one).
    pub async fn ensure_initial_admin(&self) -> Result<(), ApiError> {
        let Some(first) = self.accounts()?.cfg.initial_admin.clone() else {
            return Ok(());
        };
        let email = checked_email(&first.email)?;
        if self.store.get_account(&email).await?.is_some() {
            return Ok(());
        }
        let password = std::fs::read_to_string(&first.password_file).map_err(|e| {
            ApiError::Internal(format!(
                "accounts.initial_admin.password_file {}: {e}",
                first.password_file.display()
            ))
        })?;
        match self
            .make_account(email, &first.name, password.trim().to_owned(), true)
            .await
        {
            Ok(_) | Err(ApiError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The accounts `caller` manages: an operator's every one, an administrator's those
    /// of their organisation.
    pub async fn list_accounts(&self, caller: &Caller) -> Result<Vec<Account>, ApiError> {
        self.accounts()?;
        self.require_account_manager(caller, None)?;
        let org = caller.user.as_ref().map(|u| u.org().to_owned());
        let all = self.store.list_accounts().await?;
        Ok(all
            .into_iter()
            .filter(|a| org.as_deref().is_none_or(|o| email_domain(&a.email) == o))
            .collect())
    }

    /// Removes an account (an operator, or an administrator of its organisation; not
    /// one's own, so that an organisation keeps an administrator).
    pub async fn delete_account(&self, caller: &Caller, email: &str) -> Result<(), ApiError> {
        self.accounts()?;
        let email = checked_email(email)?;
        self.require_account_manager(caller, Some(email_domain(&email)))?;
        if caller.user.as_ref().is_some_and(|u| u.email == email) {
            return Err(ApiError::Conflict(
                "you cannot remove your own account".into(),
            ));
        }
        if self.store.get_account(&email).await?.is_none() {
            return Err(ApiError::NotFound(format!("no account for {email}")));
        }
        self.store.delete_account(&email).await?;
        tracing::info!(user = %email, "local account removed");
        Ok(())
    }

    /// The signed-in local user changes their password (the current one is asked for).
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: &str,
        new: String,
    ) -> Result<(), ApiError> {
        let accounts = self.accounts()?;
        let Some(user) = caller.user.as_ref().filter(|u| u.iss == LOCAL_ISSUER) else {
            return Err(ApiError::Unauthorized(
                "sign in with a local account to change its password".into(),
            ));
        };
        checked_password(&new)?;
        accounts.check_limits(&user.email, caller.addr, Instant::now())?;
        let Some(mut account) = self.store.get_account(&user.email).await? else {
            return Err(ApiError::NotFound("your account is gone".into()));
        };
        let (given, phc) = (current.to_owned(), account.password_hash.clone());
        if !blocking(move || verify_secret(&given, &phc)).await? {
            accounts.failed(&user.email, caller.addr, Instant::now());
            return Err(ApiError::Forbidden("the current password is wrong".into()));
        }
        account.password_hash = blocking(move || hash_secret(&new)).await??;
        account.password_changed_unix_ms = common::unix_ms();
        if !self.store.update_account(&account).await? {
            return Err(ApiError::NotFound("your account is gone".into()));
        }
        tracing::info!(user = %account.email, "password changed");
        Ok(())
    }
}

fn random_password() -> String {
    crate::sessions::random_token(24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_logins_in_lower_case_and_garbage_is_refused_with_why() {
        assert_eq!(checked_email("  Ada@UiO.no ").unwrap(), "ada@uio.no");
        assert_eq!(checked_email("a/b+c@x.org").unwrap(), "a/b+c@x.org");
        for (bad, why) in [
            ("", "needed"),
            ("ada", "like name@"),
            ("@uio.no", "like name@"),
            ("ada@uio", "like name@"),
            ("ada@@uio.no", "like name@"),
            ("ada@.no", "like name@"),
            ("a da@uio.no", "spaces"),
            ("ada\u{0}@uio.no", "control"),
        ] {
            let e = checked_email(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long = format!("{}@uio.no", "a".repeat(250));
        assert!(
            checked_email(&long)
                .unwrap_err()
                .to_string()
                .contains("longer")
        );
    }

    #[test]
    fn names_and_passwords_have_bounds_with_clear_messages() {
        assert_eq!(checked_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert!(
            checked_name(" ")
                .unwrap_err()
                .to_string()
                .contains("needed")
        );
        assert!(
            checked_name(&"x".repeat(101))
                .unwrap_err()
                .to_string()
                .contains("longer")
        );
        assert!(
            checked_name("a\u{7}")
                .unwrap_err()
                .to_string()
                .contains("control")
        );
        assert!(checked_password("correct horse").is_ok());
        assert!(
            checked_password("short")
                .unwrap_err()
                .to_string()
                .contains("shorter")
        );
        assert!(
            checked_password(&"p".repeat(257))
                .unwrap_err()
                .to_string()
                .contains("longer")
        );
    }

    #[test]
    fn wrong_passwords_lock_an_account_and_an_address_until_their_buckets_refill() {
        let a = Accounts::new(AccountsConfig {
            failures_per_account: Rate {
                per_minute: 60,
                burst: 3,
            },
            failures_per_address: Rate {
                per_minute: 60,
                burst: 5,
            },
            ..AccountsConfig::default()
        });
        let t0 = Instant::now();
        let (home, cafe): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(a.check_limits("ada@uio.no", Some(home), t0).is_ok());
            a.failed("ada@uio.no", Some(home), t0);
        }
        // Ada's account is locked, from anywhere; Bo's is not, from the same address.
        assert!(matches!(
            a.check_limits("ada@uio.no", Some(cafe), t0),
            Err(ApiError::TooManyRequests { .. })
        ));
        assert!(a.check_limits("bo@uio.no", Some(home), t0).is_ok());
        // Two more wrong passwords from home, for others: the address is locked too.
        a.failed("bo@uio.no", Some(home), t0);
        a.failed("cy@uio.no", Some(home), t0);
        assert!(a.check_limits("dee@uio.no", Some(home), t0).is_err());
        assert!(a.check_limits("dee@uio.no", Some(cafe), t0).is_ok());
        // A second later one more try each.
        let t1 = t0 + Duration::from_secs(1);
        assert!(a.check_limits("ada@uio.no", Some(cafe), t1).is_ok());
        assert!(a.check_limits("dee@uio.no", Some(home), t1).is_ok());
    }
}
