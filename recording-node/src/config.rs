//! The recording node's one config struct: defaults < file < `FJORD_RECORDING_NODE__*`.
use std::collections::BTreeMap;
use std::path::PathBuf;

use common::config::{ConfigError, EtcdConfig, LogConfig, Logged};
use common::tls::TlsConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingNodeConfig {
    pub node_id: String,
    pub region: String,
    /// Ops endpoints (and, later, signed downloads).
    pub http_listen: String,
    /// Control gRPC from the controller (mutual TLS).
    pub grpc_listen: String,
    pub grpc_advertise: Option<String>,
    /// Concurrent recordings this node takes.
    pub slots: u32,
    /// Data classification -> directory its recordings are written to (no default).
    pub storage: BTreeMap<String, PathBuf>,
    pub etcd: EtcdConfig,
    /// How the log is written (`[log] format = "json"` for a log pipeline).
    pub log: LogConfig,
    pub tls: TlsConfig,
    pub drain_deadline_secs: u64,
    /// Size, frame rate and bitrate of the composite video.
    pub composite: crate::spec::CompositeSpec,
    /// The key (shared with the controllers) that signs download links; without it the
    /// node serves no files.
    pub download_key_file: Option<PathBuf>,
    /// Base URL clients download files from; default `http://{http_listen}`.
    pub download_base_url: Option<String>,
    /// Days after its last change that a recording's files are deleted whatever the
    /// controller says; 0 (the default) leaves it to the controller, which deletes each
    /// recording when its organisation's retention runs out. A backstop only: set it
    /// longer than any organisation keeps recordings.
    pub retention_days: u32,
}

impl Default for RecordingNodeConfig {
    fn default() -> Self {
        Self {
            node_id: "recording-1".into(),
            region: "default".into(),
            http_listen: "127.0.0.1:7890".into(),
            grpc_listen: "127.0.0.1:7891".into(),
            grpc_advertise: None,
            slots: 2,
            // No default: a file's map would be merged into it, not replace it.
            storage: BTreeMap::new(),
            etcd: EtcdConfig::default(),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            drain_deadline_secs: 3600,
            composite: crate::spec::CompositeSpec::default(),
            download_key_file: None,
            download_base_url: None,
            retention_days: 0,
        }
    }
}

impl RecordingNodeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.etcd.validate()?;
        common::ids::NodeId::parse(&self.node_id)
            .map_err(|e| ConfigError::key("node_id", e.to_string()))?;
        common::ids::Region::parse(&self.region)
            .map_err(|e| ConfigError::key("region", e.to_string()))?;
        common::config::socket_addr("http_listen", &self.http_listen)?;
        common::config::socket_addr("grpc_listen", &self.grpc_listen)?;
        if self.slots == 0 {
            return Err(ConfigError::key("slots", "must be at least 1"));
        }
        if self.storage.is_empty() {
            return Err(ConfigError::key(
                "storage",
                "map at least one data classification to a directory, e.g. \
                 storage.internal = \"/var/lib/fjord/recordings/internal\"",
            ));
        }
        for (class, dir) in &self.storage {
            common::ids::Region::parse(class).map_err(|_| {
                ConfigError::key(
                    format!("storage.{class}"),
                    "classification must be a-z, 0-9, '-'",
                )
            })?;
            if dir.as_os_str().is_empty() {
                return Err(ConfigError::key(
                    format!("storage.{class}"),
                    "directory must not be empty",
                ));
            }
        }
        self.composite
            .validate()
            .map_err(|e| ConfigError::key("composite", e.to_string()))?;
        if self.drain_deadline_secs == 0 {
            return Err(ConfigError::key(
                "drain_deadline_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Address the controllers dial for gRPC; default grpc_listen.
    pub fn grpc_advertise(&self) -> String {
        self.grpc_advertise
            .clone()
            .unwrap_or_else(|| self.grpc_listen.clone())
    }
}

impl Logged for RecordingNodeConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}
