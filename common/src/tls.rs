//! Mutual TLS for every internal gRPC link, from the cluster CA. Plaintext exists only
//! behind `insecure_dev_plaintext`, and says so loudly at start-up.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::ConfigError;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM of the cluster CA that signs every component's certificate.
    pub ca_file: Option<PathBuf>,
    /// This component's certificate (PEM), signed by the cluster CA.
    pub cert_file: Option<PathBuf>,
    /// This component's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Development only: internal gRPC without TLS.
    pub insecure_dev_plaintext: bool,
}

pub struct TlsMaterial {
    ca: Certificate,
    identity: Identity,
    pem: Pem,
}

/// The PEM files as read, for links that are not gRPC (the QUIC relay).
#[derive(Clone)]
pub struct Pem {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl TlsConfig {
    /// Reads the PEM files; `None` when plaintext was asked for (after a loud warning).
    pub fn load(&self, key_prefix: &str) -> Result<Option<TlsMaterial>, ConfigError> {
        if self.insecure_dev_plaintext {
            tracing::warn!(
                "!!! {key_prefix}.insecure_dev_plaintext is set: internal gRPC is NOT encrypted or \
                 authenticated. Never use this outside a development machine. !!!"
            );
            return Ok(None);
        }
        let read = |name: &str, p: &Option<PathBuf>| -> Result<Vec<u8>, ConfigError> {
            let key = format!("{key_prefix}.{name}");
            let p = p.as_ref().ok_or_else(|| {
                ConfigError::key(
                    &key,
                    "required (or set insecure_dev_plaintext for development)",
                )
            })?;
            std::fs::read(p)
                .map_err(|e| ConfigError::key(&key, format!("cannot read {}: {e}", p.display())))
        };
        let ca = read("ca_file", &self.ca_file)?;
        let cert = read("cert_file", &self.cert_file)?;
        let key = read("key_file", &self.key_file)?;
        Ok(Some(TlsMaterial {
            ca: Certificate::from_pem(&ca),
            identity: Identity::from_pem(&cert, &key),
            pem: Pem { ca, cert, key },
        }))
    }
}

impl TlsMaterial {
    pub fn pem(&self) -> &Pem {
        &self.pem
    }

    /// Server side: present our certificate and require a client certificate from the cluster CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }
    /// Client side: trust only the cluster CA and present our certificate.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
    }
}
