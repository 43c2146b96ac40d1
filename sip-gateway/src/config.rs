//! The gateway's configuration (`--config gateway.toml`, each key also as
//! `FJORD_SIP_<KEY>`).
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This gateway's name and region (labels of its metrics).
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// `/metrics`, `/healthz`, `/readyz` (none: not served).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// SIP over UDP.
    pub listen_udp: SocketAddr,
    /// SIP over TCP (none: UDP only).
    #[serde(default)]
    pub listen_tcp: Option<SocketAddr>,
    /// The address the calls' RTP is sent to and from (in our SDP answers).
    pub media_ip: IpAddr,
    /// The controller's base URL, which callers are joined through like any participant.
    pub controller: String,
    /// How many calls at once; one more is answered 486 Busy Here.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// How long a join may take (placement, signaling, media up) before the call is
    /// answered 480 Temporarily Unavailable.
    #[serde(default = "default_join_timeout")]
    pub join_timeout_secs: u64,
    /// INVITEs from one address (a flood is answered 503 with Retry-After, cheaply,
    /// before anything is joined).
    #[serde(default = "default_invites")]
    pub invites_per_address: common::rate::Rate,
}

fn default_invites() -> common::rate::Rate {
    common::rate::Rate {
        per_minute: 60,
        burst: 20,
    }
}

fn default_name() -> String {
    "sip-gateway".into()
}

fn default_region() -> String {
    "default".into()
}

fn default_max_calls() -> usize {
    200
}

fn default_join_timeout() -> u64 {
    15
}

impl Config {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        use figment::providers::{Env, Format, Toml};
        Ok(figment::Figment::new()
            .merge(Toml::file(path))
            .merge(Env::prefixed("FJORD_SIP_"))
            .extract()?)
    }
}
