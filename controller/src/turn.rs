//! TURN for clients on networks that block UDP or direct paths: the join answer lists
//! the TURN servers of the region of the participant's media node, with credentials
//! that expire. They follow the TURN REST API scheme that coturn's `use-auth-secret`
//! checks: the user name is `<expiry, Unix seconds>:<participant id>`, the password
//! base64(HMAC-SHA1(shared secret, user name)). The secret never leaves the controller.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use common::config::ConfigError;
use common::ids::{ParticipantId, Region};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnConfig {
    /// A file holding the shared secret (coturn's `static-auth-secret`) on one line.
    pub secret_file: PathBuf,
    /// How long a join's TURN credentials last (the TURN session may outlive them: the
    /// server checks them at allocation and refresh).
    #[serde(default = "default_ttl")]
    pub credential_ttl_secs: u64,
    /// TURN URLs by region, e.g. `oslo = ["turn:turn-oslo.example.org:3478?transport=udp",
    /// "turn:turn-oslo.example.org:3478?transport=tcp"]`. A region without an entry
    /// offers none.
    pub servers: BTreeMap<String, Vec<String>>,
}

impl TurnConfig {
    /// Checks the values (no file is read: `Turn::load` reads the secret) and returns the
    /// servers by region.
    pub fn servers(&self) -> Result<BTreeMap<Region, Vec<String>>, ConfigError> {
        if !(60..=7 * 86_400).contains(&self.credential_ttl_secs) {
            return Err(ConfigError::key(
                "turn.credential_ttl_secs",
                "must be between 60 and 604800",
            ));
        }
        let mut servers = BTreeMap::new();
        for (name, urls) in &self.servers {
            let key = format!("turn.servers.{name}");
            let region = Region::parse(name).map_err(|e| ConfigError::key(&key, e.to_string()))?;
            if urls.is_empty() {
                return Err(ConfigError::key(&key, "list at least one URL"));
            }
            for u in urls {
                let scheme_ok = ["turn:", "turns:"].iter().any(|s| u.starts_with(s));
                if !scheme_ok || u.len() > 256 || u.chars().any(char::is_whitespace) {
                    return Err(ConfigError::key(
                        &key,
                        format!("{u:?} is not a turn: or turns: URL"),
                    ));
                }
            }
            servers.insert(region, urls.clone());
        }
        Ok(servers)
    }
}

fn default_ttl() -> u64 {
    12 * 3600
}

/// One entry of the join answer's `ice_servers`, as a browser's `RTCIceServer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// The loaded TURN settings.
pub struct Turn {
    secret: Vec<u8>,
    ttl: Duration,
    servers: BTreeMap<Region, Vec<String>>,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("ttl", &self.ttl)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

impl Turn {
    /// Checks the settings and reads the secret.
    pub fn load(c: &TurnConfig) -> Result<Self, ConfigError> {
        let servers = c.servers()?;
        let secret = std::fs::read_to_string(&c.secret_file).map_err(|e| {
            ConfigError::key(
                "turn.secret_file",
                format!("cannot read {}: {e}", c.secret_file.display()),
            )
        })?;
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err(ConfigError::key(
                "turn.secret_file",
                "the secret must be at least 16 characters",
            ));
        }
        Ok(Self {
            secret: secret.as_bytes().to_vec(),
            ttl: Duration::from_secs(c.credential_ttl_secs),
            servers,
        })
    }

    /// What a participant joining a node of `region` at `now_unix` may use.
    pub fn ice_servers(
        &self,
        region: &Region,
        participant: &ParticipantId,
        now_unix: u64,
    ) -> Vec<IceServer> {
        let Some(urls) = self.servers.get(region) else {
            return Vec::new();
        };
        let username = format!("{}:{participant}", now_unix + self.ttl.as_secs());
        let credential = credential(&self.secret, &username);
        vec![IceServer {
            urls: urls.clone(),
            username,
            credential,
        }]
    }
}

/// base64(HMAC-SHA1(secret, username)): the password coturn expects for `username`.
fn credential(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, secret: &str) -> TurnConfig {
        let secret_file = dir.join("turn-secret");
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        TurnConfig {
            secret_file,
            credential_ttl_secs: 120,
            servers: [(
                "oslo".to_owned(),
                vec!["turn:127.0.0.1:3478?transport=tcp".to_owned()],
            )]
            .into(),
        }
    }

    #[test]
    fn credentials_are_what_coturns_rest_scheme_computes_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let turn = Turn::load(&config(dir.path(), "north-wind-north-wind")).unwrap();
        let p = ParticipantId::parse("p-1").unwrap();
        let oslo = Region::parse("oslo").unwrap();
        let got = turn.ice_servers(&oslo, &p, 1_800_000_000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].urls, ["turn:127.0.0.1:3478?transport=tcp"]);
        // Expiry first, then who: coturn reads the time before the colon.
        assert_eq!(got[0].username, "1800000120:p-1");
        // Python: base64(hmac.new(secret, user, sha1).digest())
        assert_eq!(
            credential(b"north-wind", "1800000120:p-1"),
            "/AdyvYPFRzaEJ8eYzzZ7/XgrJy8="
        );
        assert_eq!(
            got[0].credential,
            credential(b"north-wind-north-wind", "1800000120:p-1")
        );
        // A region without TURN servers offers none.
        let stockholm = Region::parse("stockholm").unwrap();
        assert!(turn.ice_servers(&stockholm, &p, 1_800_000_000).is_empty());
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let short = Turn::load(&config(dir.path(), "short")).unwrap_err();
        assert!(short.to_string().contains("turn.secret_file"), "{short}");
        let mut c = config(dir.path(), "north-wind-north-wind");
        c.servers
            .insert("oslo".into(), vec!["http://example.org".into()]);
        let e = Turn::load(&c).unwrap_err();
        assert!(e.to_string().contains("turn.servers.oslo"), "{e}");
        let mut c = config(dir.path(), "north-wind-north-wind");
        c.servers
            .insert("Not A Region".into(), vec!["turn:x".into()]);
        assert!(Turn::load(&c).is_err());
        let mut c = config(dir.path(), "north-wind-north-wind");
        c.secret_file = dir.path().join("missing");
        let e = Turn::load(&c).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
