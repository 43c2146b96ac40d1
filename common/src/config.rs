//! Config loading: defaults < TOML file < environment (`FJORD_<BINARY>__KEY__SUBKEY`).
//! Every binary validates its config here, before binding any port, and an invalid
//! value exits with a message that names the key.
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config key `{key}`: {message}")]
    Key { key: String, message: String },
}

impl ConfigError {
    pub fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Key {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Loads `T` from its defaults, then `file` (if given), then environment variables
/// named `{env_prefix}KEY__SUBKEY` (for example `FJORD_CONTROLLER__ETCD__ENDPOINTS`).
pub fn load<T>(file: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.to_owned()));
        }
        fig = fig.merge(Toml::file_exact(path));
    }
    fig = fig.merge(Env::prefixed(env_prefix).split("__"));
    fig.extract::<T>().map_err(|e| {
        // figment's messages name the key and where its value came from; keep them whole.
        let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        ConfigError::Parse(msgs.join("; "))
    })
}

/// How a binary writes its log (to stdout).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text`, for people, or `json`: one JSON object a line, for log pipelines.
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A config with a `log` section.
pub trait Logged {
    fn log(&self) -> &LogConfig;
}

/// How a binary reaches etcd and how long its lease lives.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Key prefix for all of Fjord's state.
    pub prefix: String,
    /// Lease time-to-live: how long a node or controller survives without renewing.
    pub lease_ttl_secs: u64,
    /// Deadline for one etcd request.
    pub request_timeout_ms: u64,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/fjord".into(),
            lease_ttl_secs: 5,
            request_timeout_ms: 2000,
        }
    }
}

impl EtcdConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::key(
                "etcd.endpoints",
                "at least one endpoint is needed",
            ));
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.len() < 2 {
            return Err(ConfigError::key(
                "etcd.prefix",
                "must start with '/' and not end with '/', e.g. /fjord",
            ));
        }
        if !(2..=600).contains(&self.lease_ttl_secs) {
            return Err(ConfigError::key(
                "etcd.lease_ttl_secs",
                "must be between 2 and 600",
            ));
        }
        if !(100..=60_000).contains(&self.request_timeout_ms) {
            return Err(ConfigError::key(
                "etcd.request_timeout_ms",
                "must be between 100 and 60000",
            ));
        }
        Ok(())
    }
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// Parses a socket address config value, naming the key on failure.
pub fn socket_addr(key: &str, value: &str) -> Result<std::net::SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::key(
            key,
            format!("{value:?} is not an address such as 127.0.0.1:7000"),
        )
    })
}

#[cfg(test)]
// figment's Jail has a fixed, large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        port: u16,
        etcd: EtcdConfig,
    }

    #[test]
    fn file_then_env_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "port = 7\n[etcd]\nprefix = \"/x\"\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("FJORD_DEMO__ETCD__LEASE_TTL_SECS", "9");
            let d: Demo = load(Some(&path), "FJORD_DEMO__").unwrap();
            assert_eq!(
                (d.port, d.etcd.prefix.as_str(), d.etcd.lease_ttl_secs),
                (7, "/x", 9)
            );
            Ok(())
        });
    }

    #[test]
    fn bad_env_value_names_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FJORD_DEMO__PORT", "seven");
            let err = load::<Demo>(None, "FJORD_DEMO__").unwrap_err().to_string();
            // e.g. `expected u16 for key "PORT" in FJORD_DEMO__ environment variable(s)`
            assert!(
                err.contains("\"PORT\"") && err.contains("FJORD_DEMO__"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_key_and_missing_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "prot = 7\n").unwrap();
        let err = load::<Demo>(Some(&path), "FJORD_DEMO_UNUSED__")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
        let err = load::<Demo>(Some(&dir.path().join("nope.toml")), "X__").unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn validation_names_the_key() {
        let e = EtcdConfig {
            lease_ttl_secs: 1,
            ..Default::default()
        };
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .contains("etcd.lease_ttl_secs")
        );
    }
}
