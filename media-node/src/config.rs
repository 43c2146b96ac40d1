//! The media node's one config struct: defaults < file < `FJORD_MEDIA_NODE__*`.
use std::path::PathBuf;

use common::config::{ConfigError, EtcdConfig, LogConfig, Logged};
use common::tls::TlsConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaNodeConfig {
    pub node_id: String,
    pub region: String,
    pub zone: String,
    /// Signaling WebSocket, ops endpoints.
    pub http_listen: String,
    /// Control gRPC from the controller (mutual TLS).
    pub grpc_listen: String,
    /// The one UDP socket every peer's WebRTC media uses.
    pub udp_listen: String,
    /// Address advertised to clients as the ICE host candidate (NAT, Kubernetes); default udp_listen.
    pub udp_advertise: Option<String>,
    /// Base WebSocket URL clients use, e.g. wss://oslo-1.example.org/signal; default from
    /// `signal_tls.listen` when that is set, else from http_listen.
    pub signal_url: Option<String>,
    /// Serve signaling over TLS (`wss://`) on a listener of its own, for nodes with no
    /// TLS-terminating ingress in front. The ops endpoints stay on http_listen.
    pub signal_tls: Option<SignalTlsConfig>,
    /// Address the controller dials for gRPC; default grpc_listen.
    pub grpc_advertise: Option<String>,
    pub capacity: CapacityConfig,
    pub etcd: EtcdConfig,
    /// How the log is written (`[log] format = "json"` for a log pipeline).
    pub log: LogConfig,
    pub tls: TlsConfig,
    /// Public keys that verify join tokens, by key id.
    pub token_keys: Vec<TokenKey>,
    /// Longest a drain waits for meetings to end before the node exits.
    pub drain_deadline_secs: u64,
    /// Most participants one meeting may have, counted over every node it spans; a
    /// join beyond is refused ("meeting is full"), a reconnect never.
    pub max_participants_per_meeting: usize,
    /// The same for a webinar (its attendees only watch and listen).
    pub max_participants_per_webinar: usize,
    /// SFU shards (meetings are spread over them, each runs on its own task); 0: one per core.
    pub sfu_shards: usize,
    /// Cap each subscriber's simulcast layer by its bandwidth estimate (TWCC); off, the
    /// tile size alone decides (for links known to be ample).
    pub simulcast_bandwidth_cap: bool,
    /// Send a run of equal-size datagrams to one peer (the packets of a video frame) as
    /// one UDP GSO send where the kernel has it (Linux 4.18+); off, or where the kernel
    /// or the device refuses it, datagrams go in `sendmmsg` batches.
    pub udp_gso: bool,
    /// The QUIC relay endpoint (UDP) recording nodes subscribe to meetings on (mutual TLS).
    pub relay_listen: String,
    /// Address other nodes dial for the relay; default relay_listen.
    pub relay_advertise: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalTlsConfig {
    /// Where `wss://` is served, e.g. 0.0.0.0:7443.
    pub listen: String,
    /// The certificate chain (PEM) browsers see, leaf first; read again when it changes.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKey {
    pub kid: String,
    pub public_key_file: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityConfig {
    pub participants: u32,
    pub bitrate_kbps: u64,
    pub cpu_cores: f64,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        Self {
            participants: 300,
            bitrate_kbps: 1_000_000,
            cpu_cores: 0.0,
        }
    }
}

impl Default for MediaNodeConfig {
    fn default() -> Self {
        Self {
            node_id: "media-1".into(),
            region: "default".into(),
            zone: String::new(),
            http_listen: "127.0.0.1:7880".into(),
            grpc_listen: "127.0.0.1:7881".into(),
            udp_listen: "127.0.0.1:7882".into(),
            udp_advertise: None,
            signal_url: None,
            signal_tls: None,
            grpc_advertise: None,
            capacity: CapacityConfig::default(),
            etcd: EtcdConfig::default(),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            token_keys: Vec::new(),
            drain_deadline_secs: 1800,
            max_participants_per_meeting: 1_000,
            max_participants_per_webinar: 10_000,
            sfu_shards: 0,
            simulcast_bandwidth_cap: true,
            udp_gso: true,
            relay_listen: "127.0.0.1:7883".into(),
            relay_advertise: None,
        }
    }
}

impl MediaNodeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.etcd.validate()?;
        common::ids::NodeId::parse(&self.node_id)
            .map_err(|e| ConfigError::key("node_id", e.to_string()))?;
        common::ids::Region::parse(&self.region)
            .map_err(|e| ConfigError::key("region", e.to_string()))?;
        common::config::socket_addr("http_listen", &self.http_listen)?;
        common::config::socket_addr("grpc_listen", &self.grpc_listen)?;
        common::config::socket_addr("udp_listen", &self.udp_listen)?;
        common::config::socket_addr("relay_listen", &self.relay_listen)?;
        if let Some(a) = &self.relay_advertise {
            common::config::socket_addr("relay_advertise", a)?;
        }
        if let Some(t) = &self.signal_tls {
            let addr = common::config::socket_addr("signal_tls.listen", &t.listen)?;
            if addr.ip().is_unspecified() && self.signal_url.is_none() {
                return Err(ConfigError::key(
                    "signal_url",
                    "required when signal_tls.listen is a wildcard address: the wss:// URL \
                     (with the name the certificate is for) that browsers reach this node at",
                ));
            }
        }
        if let Some(u) = &self.signal_url
            && !(u.starts_with("ws://") || u.starts_with("wss://"))
        {
            return Err(ConfigError::key(
                "signal_url",
                format!("must start with ws:// or wss://, not {u:?}"),
            ));
        }
        if let Some(a) = &self.udp_advertise {
            let addr = common::config::socket_addr("udp_advertise", a)?;
            if addr.ip().is_unspecified() || addr.port() == 0 {
                return Err(ConfigError::key(
                    "udp_advertise",
                    "must be a concrete address and port clients can reach",
                ));
            }
        }
        if self.sfu_shards > 255 {
            return Err(ConfigError::key(
                "sfu_shards",
                "must be 0 (one per core) to 255",
            ));
        }
        if self.capacity.participants == 0 {
            return Err(ConfigError::key(
                "capacity.participants",
                "must be at least 1",
            ));
        }
        if self.capacity.cpu_cores < 0.0 || !self.capacity.cpu_cores.is_finite() {
            return Err(ConfigError::key(
                "capacity.cpu_cores",
                "must be 0 (not accounted) or more",
            ));
        }
        if self.token_keys.is_empty() {
            return Err(ConfigError::key(
                "token_keys",
                "at least one public key is needed to verify join tokens",
            ));
        }
        for (key, value) in [
            (
                "max_participants_per_meeting",
                self.max_participants_per_meeting,
            ),
            (
                "max_participants_per_webinar",
                self.max_participants_per_webinar,
            ),
        ] {
            if !(2..=100_000).contains(&value) {
                return Err(ConfigError::key(key, "must be between 2 and 100000"));
            }
        }
        if self.drain_deadline_secs == 0 {
            return Err(ConfigError::key(
                "drain_deadline_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }
    pub fn signal_url(&self) -> String {
        match (&self.signal_url, &self.signal_tls) {
            (Some(u), _) => u.clone(),
            (None, Some(t)) => format!("wss://{}/signal", t.listen),
            (None, None) => format!("ws://{}/signal", self.http_listen),
        }
    }
    pub fn relay_advertise(&self) -> String {
        self.relay_advertise
            .clone()
            .unwrap_or_else(|| self.relay_listen.clone())
    }

    pub fn grpc_advertise(&self) -> String {
        self.grpc_advertise
            .clone()
            .unwrap_or_else(|| self.grpc_listen.clone())
    }
}

impl Logged for MediaNodeConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_keys() -> MediaNodeConfig {
        MediaNodeConfig {
            token_keys: vec![TokenKey {
                kid: "k1".into(),
                public_key_file: "/etc/fjord/token/signing.crt".into(),
            }],
            ..MediaNodeConfig::default()
        }
    }

    #[test]
    fn signaling_over_tls_is_advertised_as_wss_and_a_wildcard_listen_needs_a_url() {
        let mut c = with_keys();
        assert_eq!(c.signal_url(), "ws://127.0.0.1:7880/signal");
        c.signal_tls = Some(SignalTlsConfig {
            listen: "127.0.0.1:7443".into(),
            cert_file: "/tls/tls.crt".into(),
            key_file: "/tls/tls.key".into(),
        });
        c.validate().unwrap();
        assert_eq!(c.signal_url(), "wss://127.0.0.1:7443/signal");

        c.signal_tls.as_mut().unwrap().listen = "0.0.0.0:7443".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("signal_url"), "{e}");
        c.signal_url = Some("wss://media-1.example.org:7443/signal".into());
        c.validate().unwrap();
        assert_eq!(c.signal_url(), "wss://media-1.example.org:7443/signal");

        c.signal_url = Some("https://media-1.example.org/signal".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("signal_url") && e.contains("ws://"), "{e}");
    }
}
