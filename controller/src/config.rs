//! The controller's one config struct: defaults < file < `FJORD_CONTROLLER__*`.
use std::collections::BTreeMap;
use std::path::PathBuf;

use common::config::{ConfigError, EtcdConfig, LogConfig, Logged};
use common::ids::Region;
use common::tls::TlsConfig;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::placement::Topology;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// This replica's id (used in leader election and metrics).
    pub id: String,
    /// HTTP/JSON API, gRPC API, web client and ops endpoints, all on one port.
    pub listen: String,
    /// Bearer keys that authorise operator calls.
    pub operator_keys: Vec<String>,
    /// A file of further operator keys, one a line (`#` starts a comment): how a
    /// Kubernetes Secret is handed in.
    pub operator_keys_file: Option<PathBuf>,
    pub etcd: EtcdConfig,
    /// How the log is written (`[log] format = "json"` for a log pipeline).
    pub log: LogConfig,
    /// Mutual TLS towards media and recording nodes.
    pub tls: TlsConfig,
    pub token: TokenConfig,
    /// Regions and their neighbours, nearest first.
    pub regions: Vec<RegionConfig>,
    /// Region of a client nothing else places.
    pub default_region: String,
    /// Client address ranges and their regions, first match wins.
    pub region_cidrs: Vec<CidrRegion>,
    /// Header a regional ingress sets to the client's region; unset to ignore headers.
    pub region_header: Option<String>,
    /// Header the ingress in front of the controllers sets to the client's address
    /// (`X-Real-IP`, or `X-Forwarded-For`, whose last address counts); unset: the
    /// connection's address. Join limits and region ranges use it. Set it only when
    /// clients cannot reach the controllers but through that ingress.
    pub client_address_header: Option<String>,
    /// Let any client choose its region in the join request (operators always may).
    pub allow_region_override: bool,
    /// How long a join counts against a node's capacity before its load report shows it.
    pub join_correction_secs: u64,
    /// Time-out for one call to a node.
    pub node_call_timeout_ms: u64,
    /// The key (shared with the recording nodes) that signs recording download links;
    /// without it, recordings list no links.
    pub download_key_file: Option<PathBuf>,
    /// How long a download link is valid.
    pub download_link_ttl_secs: u64,
    /// Joins per client address and per meeting (429 with `Retry-After` beyond).
    pub join_limits: crate::limits::JoinLimitsConfig,
    /// The leader's lease in the election: how long the cluster goes without a leader
    /// (nobody buries dead nodes, moves recordings or removes stale placements) after
    /// the leader dies. Renewed every third of it; a renewal not answered within half of
    /// it ends the term (the leader steps down before another can win). Shorter than the
    /// nodes' `etcd.lease_ttl_secs`, which only bounds a node nobody watches.
    pub election_ttl_secs: u64,
    /// TURN servers per region offered in join answers, with credentials from a secret
    /// shared with them (coturn's `use-auth-secret`).
    pub turn: Option<crate::turn::TurnConfig>,
    /// The address users reach the controllers at (`https://meet.example.org`): the
    /// links in calendar invitations and the sign-in's return address. Unset: the
    /// request's own `Host`, over http (fine on one machine, not behind a TLS ingress).
    pub public_url: Option<String>,
    /// Sign-in of hosts and administrators through an OpenID Connect provider; unset:
    /// no sign-in (operator and host keys only).
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// Local accounts (e-mail address and password), beside or instead of `oidc`.
    pub accounts: crate::accounts::AccountsConfig,
    /// How long after a meeting ends its personal data (the meeting, its audit, polls
    /// and Q&A, registrants and attendance) is kept before the leader deletes it.
    pub retention_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Ed25519 private key, PKCS#8 PEM.
    pub signing_key_file: Option<PathBuf>,
    pub kid: String,
    pub ttl_secs: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            kid: "k1".into(),
            ttl_secs: 120,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    #[serde(default)]
    pub neighbours: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CidrRegion {
    pub cidr: String,
    pub region: String,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            id: "controller-1".into(),
            listen: "127.0.0.1:8080".into(),
            operator_keys: Vec::new(),
            operator_keys_file: None,
            etcd: EtcdConfig::default(),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            token: TokenConfig::default(),
            regions: Vec::new(),
            default_region: "default".into(),
            region_cidrs: Vec::new(),
            region_header: None,
            client_address_header: None,
            allow_region_override: false,
            join_correction_secs: 5,
            node_call_timeout_ms: 3000,
            download_key_file: None,
            download_link_ttl_secs: 3600,
            join_limits: crate::limits::JoinLimitsConfig::default(),
            turn: None,
            election_ttl_secs: 3,
            public_url: None,
            oidc: None,
            accounts: crate::accounts::AccountsConfig::default(),
            retention_secs: 30 * 24 * 3600,
        }
    }
}

/// The region settings, parsed.
#[derive(Clone, Debug)]
pub struct Regions {
    pub known: Vec<Region>,
    pub default: Region,
    pub cidrs: Vec<(IpNet, Region)>,
    pub topology: Topology,
}

impl ControllerConfig {
    /// `operator_keys` and the keys of `operator_keys_file`, each at least 16 characters.
    pub fn all_operator_keys(&self) -> Result<Vec<String>, ConfigError> {
        let mut keys = self.operator_keys.clone();
        if keys.iter().any(|k| k.len() < 16) {
            return Err(ConfigError::key(
                "operator_keys",
                "every key must be at least 16 characters",
            ));
        }
        if let Some(path) = &self.operator_keys_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::key(
                    "operator_keys_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            for (i, line) in text.lines().enumerate() {
                let key = line.trim();
                if key.is_empty() || key.starts_with('#') {
                    continue;
                }
                if key.len() < 16 {
                    return Err(ConfigError::key(
                        "operator_keys_file",
                        format!(
                            "line {} of {}: every key must be at least 16 characters",
                            i + 1,
                            path.display()
                        ),
                    ));
                }
                keys.push(key.to_owned());
            }
        }
        Ok(keys)
    }

    /// Checks every value and returns the parsed region settings.
    pub fn validate(&self) -> Result<Regions, ConfigError> {
        self.etcd.validate()?;
        common::config::socket_addr("listen", &self.listen)?;
        if !(2..=60).contains(&self.election_ttl_secs) {
            return Err(ConfigError::key(
                "election_ttl_secs",
                "must be between 2 and 60",
            ));
        }
        if common::ids::NodeId::parse(&self.id).is_err() {
            return Err(ConfigError::key(
                "id",
                "must be 1-63 characters of a-z, 0-9 and '-'",
            ));
        }
        self.all_operator_keys()?;
        if let Some(t) = &self.turn {
            t.servers()?;
        }
        if self.retention_secs == 0 {
            return Err(ConfigError::key(
                "retention_secs",
                "must be at least 1 (personal data is deleted that long after a meeting ends)",
            ));
        }
        if let Some(u) = &self.public_url
            && !((u.starts_with("https://") || u.starts_with("http://"))
                && u.len() > "https://".len()
                && !u.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(ConfigError::key(
                "public_url",
                "an http(s) URL like https://meet.example.org",
            ));
        }
        if self.token.signing_key_file.is_none() {
            return Err(ConfigError::key(
                "token.signing_key_file",
                "required: the Ed25519 key that signs join tokens",
            ));
        }
        if !(10..=3600).contains(&self.token.ttl_secs) {
            return Err(ConfigError::key(
                "token.ttl_secs",
                "must be between 10 and 3600",
            ));
        }
        let region = |key: &str, name: &str| {
            Region::parse(name).map_err(|e| ConfigError::key(key, e.to_string()))
        };
        let mut known = Vec::new();
        let mut topology = Topology::default();
        for (i, r) in self.regions.iter().enumerate() {
            let name = region(&format!("regions[{i}].name"), &r.name)?;
            let mut ns = Vec::new();
            for n in &r.neighbours {
                ns.push(region(&format!("regions[{i}].neighbours"), n)?);
            }
            topology.neighbours.insert(name.clone(), ns);
            known.push(name);
        }
        let default = region("default_region", &self.default_region)?;
        if !known.contains(&default) {
            known.push(default.clone());
        }
        let mut seen = BTreeMap::new();
        for r in &known {
            if seen.insert(r.clone(), ()).is_some() {
                return Err(ConfigError::key(
                    "regions",
                    format!("region {r} is listed twice"),
                ));
            }
        }
        let mut cidrs = Vec::new();
        for (i, c) in self.region_cidrs.iter().enumerate() {
            let net: IpNet = c.cidr.parse().map_err(|_| {
                ConfigError::key(
                    format!("region_cidrs[{i}].cidr"),
                    format!("{:?} is not a CIDR", c.cidr),
                )
            })?;
            cidrs.push((
                net,
                region(&format!("region_cidrs[{i}].region"), &c.region)?,
            ));
        }
        if !(100..=60_000).contains(&self.node_call_timeout_ms) {
            return Err(ConfigError::key(
                "node_call_timeout_ms",
                "must be between 100 and 60000",
            ));
        }
        Ok(Regions {
            known,
            default,
            cidrs,
            topology,
        })
    }
}

impl Logged for ControllerConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_keys_file_adds_one_key_a_line_and_names_a_short_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(
            &file,
            "# rotated 2026-12\nfirst-operator-key-0123\n\n  second-operator-key-4567  \n",
        )
        .unwrap();
        let cfg = ControllerConfig {
            operator_keys: vec!["inline-operator-key-89ab".into()],
            operator_keys_file: Some(file.clone()),
            ..ControllerConfig::default()
        };
        assert_eq!(
            cfg.all_operator_keys().unwrap(),
            vec![
                "inline-operator-key-89ab",
                "first-operator-key-0123",
                "second-operator-key-4567"
            ]
        );
        std::fs::write(&file, "first-operator-key-0123\nshort\n").unwrap();
        let e = cfg.all_operator_keys().unwrap_err().to_string();
        assert!(
            e.contains("operator_keys_file") && e.contains("line 2"),
            "{e}"
        );
        let missing = ControllerConfig {
            operator_keys_file: Some(dir.path().join("nope")),
            ..ControllerConfig::default()
        };
        let e = missing.all_operator_keys().unwrap_err().to_string();
        assert!(
            e.contains("operator_keys_file") && e.contains("cannot read"),
            "{e}"
        );
    }
}
