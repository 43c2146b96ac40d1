//! What cluster to run: its processes, regions and the controllers' settings.
use serde_json::json;

/// A media or recording node of the cluster.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: String,
    pub region: String,
    pub capacity: u32,
}

/// The first administrator of a cluster with [`ClusterSpec::with_local_admin`].
pub const LOCAL_ADMIN: &str = "admin@fjord.test";

#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub controllers: usize,
    pub media: Vec<NodeSpec>,
    pub recording: Vec<NodeSpec>,
    /// Regions with their neighbours, nearest first.
    pub regions: Vec<(String, Vec<String>)>,
    pub default_region: String,
    pub lease_ttl_secs: u64,
    pub allow_region_override: bool,
    pub token_ttl_secs: u64,
    /// Every binary's `log.format`: `text` or `json`.
    pub log_format: &'static str,
    /// The controllers' `join_limits` (None: their defaults); see [`no_join_limits`].
    pub join_limits: Option<serde_json::Value>,
    /// The controllers' `[turn]` (None: no TURN servers); see
    /// [`turn::Coturn`](crate::turn::Coturn).
    pub turn: Option<serde_json::Value>,
    /// The controllers' `[oidc]` (None: no sign-in); see
    /// [`oidc::Provider`](crate::oidc::Provider).
    pub oidc: Option<serde_json::Value>,
    /// More keys of the controllers' config (an object), e.g. `retention_secs`.
    pub controller_extra: Option<serde_json::Value>,
    /// Members of the etcd cluster.
    pub etcd_members: usize,
    /// Each controller and node reaches etcd through its own
    /// [`partition::Gate`](crate::partition::Gate), so that a test can cut it off from
    /// etcd ([`Cluster::gate`](super::Cluster::gate)).
    pub gated: bool,
}

/// Join limits that limit nothing: for tests and benchmarks that join many peers from
/// one address.
pub fn no_join_limits() -> Option<serde_json::Value> {
    let off = json!({ "per_minute": 0, "burst": 0 });
    Some(json!({ "per_address": off, "per_meeting": off }))
}

impl ClusterSpec {
    /// Two controllers, media nodes in `oslo` (two) and `stockholm` (one), one recording node.
    /// Local accounts on, with a first administrator ([`LOCAL_ADMIN`]) whose password,
    /// new and random, is written to `dir/admin-password` (the controllers read it there).
    pub fn with_local_admin(mut self, dir: &std::path::Path) -> anyhow::Result<(Self, String)> {
        let password = format!("{:032x}", rand::random::<u128>());
        let file = dir.join("admin-password");
        std::fs::write(&file, &password)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
        let mut extra = self.controller_extra.take().unwrap_or_else(|| json!({}));
        extra["accounts"] = json!({
            "enabled": true,
            "initial_admin": {
                "email": LOCAL_ADMIN,
                "name": "Administrator",
                "password_file": file,
            },
        });
        self.controller_extra = Some(extra);
        Ok((self, password))
    }

    pub fn local() -> Self {
        let node = |id: &str, region: &str| NodeSpec {
            id: id.into(),
            region: region.into(),
            capacity: 200,
        };
        Self {
            controllers: 2,
            media: vec![
                node("media-oslo-1", "oslo"),
                node("media-oslo-2", "oslo"),
                node("media-stockholm-1", "stockholm"),
            ],
            recording: vec![node("recording-oslo-1", "oslo")],
            regions: vec![
                ("oslo".into(), vec!["stockholm".into()]),
                ("stockholm".into(), vec!["oslo".into()]),
            ],
            default_region: "oslo".into(),
            lease_ttl_secs: 5,
            allow_region_override: true,
            token_ttl_secs: 120,
            log_format: "text",
            join_limits: None,
            turn: None,
            oidc: None,
            controller_extra: None,
            etcd_members: 1,
            gated: false,
        }
    }
}

pub const OPERATOR_KEY: &str = "local-operator-key-0123456789";
