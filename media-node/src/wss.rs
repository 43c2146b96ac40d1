//! Signaling over TLS (`wss://`), served by the node itself when `[signal_tls]` is set,
//! for deployments without a TLS-terminating ingress in front of each node. The
//! certificate chain and key come from PEM files (for example a cert-manager secret) and
//! are read again when the files change, so that a renewal needs no restart. TLS
//! handshakes run apart from the accept loop: a slow or silent client holds up nobody.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are looked at for a renewal.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalTlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("the key in {key} does not fit the certificate in {cert}: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The newest modification time of `paths` (a Kubernetes secret volume swaps a symlink:
/// the metadata of what it points to changes).
fn modified(paths: [&Path; 2]) -> Option<SystemTime> {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

fn read(path: &Path) -> Result<Vec<u8>, SignalTlsError> {
    std::fs::read(path).map_err(|source| SignalTlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The certificate the node presents, replaced when its files change.
#[derive(Debug)]
pub struct Certificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<(Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl Certificate {
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, SignalTlsError> {
        let stamp = modified([cert_file, key_file]);
        let key = Self::read_pair(cert_file, key_file)?;
        Ok(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new((stamp, Arc::new(key))),
        })
    }

    fn read_pair(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, SignalTlsError> {
        let pem_err = |path: &Path, message: String| SignalTlsError::Pem {
            path: path.to_owned(),
            message,
        };
        let certs = CertificateDer::pem_slice_iter(&read(cert_file)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(cert_file, format!("not a PEM certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(pem_err(cert_file, "holds no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(key_file)?)
            .map_err(|e| pem_err(key_file, format!("not a PEM private key: {e}")))?;
        CertifiedKey::from_der(certs, key, &provider()).map_err(|e| SignalTlsError::Mismatch {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads the files again if they changed since the last read: true when the node
    /// now presents a new certificate. A pair that does not load leaves the old one.
    pub fn reload_if_changed(&self) -> Result<bool, SignalTlsError> {
        let stamp = modified([&self.cert_file, &self.key_file]);
        if stamp == self.current.read().expect("not poisoned").0 {
            return Ok(false);
        }
        let key = Self::read_pair(&self.cert_file, &self.key_file)?;
        *self.current.write().expect("not poisoned") = (stamp, Arc::new(key));
        Ok(true)
    }

    /// The end-entity certificate presented now (DER).
    #[cfg(test)]
    fn presented(&self) -> CertificateDer<'static> {
        self.current.read().expect("not poisoned").1.cert[0].clone()
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("not poisoned").1.clone())
    }
}

/// The rustls server config for signaling: HTTP/1.1 (the WebSocket upgrade), TLS 1.2
/// and 1.3, the certificate from `cert`.
pub fn server_config(cert: Arc<Certificate>) -> rustls::ServerConfig {
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(cert);
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c
}

/// Connections whose handshake finished, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` until `shutdown`, each handshake on a task of its own.
    pub fn new(
        tcp: TcpListener,
        config: rustls::ServerConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = tcp.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of descriptors, usually: wait rather than spin.
                            tracing::warn!(error = %e, "signaling TLS accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "signaling TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "signaling TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop ended (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Serves `app` over TLS on `tcp` until `shutdown`, and reads the certificate files
/// again every [`RELOAD_EVERY`].
pub async fn serve(
    tcp: TcpListener,
    cert: Arc<Certificate>,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = TlsListener::new(tcp, server_config(cert.clone()), shutdown.clone())?;
    let reloads = shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RELOAD_EVERY);
        every.tick().await;
        loop {
            tokio::select! {
                _ = reloads.cancelled() => return,
                _ = every.tick() => match cert.reload_if_changed() {
                    Ok(true) => tracing::info!("signaling certificate reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        "signaling certificate changed but does not load; still presenting the old one"
                    ),
                },
            }
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_renewed_certificate_is_presented_and_a_broken_one_leaves_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (c1, k1) = pair("one.example");
        std::fs::write(&cert_file, &c1).unwrap();
        std::fs::write(&key_file, &k1).unwrap();
        let cert = Certificate::load(&cert_file, &key_file).unwrap();
        let first = cert.presented();
        assert!(!cert.reload_if_changed().unwrap(), "nothing changed");

        // A renewal: both files replaced (with a later modification time).
        std::thread::sleep(Duration::from_millis(20));
        let (c2, k2) = pair("one.example");
        std::fs::write(&cert_file, &c2).unwrap();
        std::fs::write(&key_file, &k2).unwrap();
        assert!(cert.reload_if_changed().unwrap());
        let second = cert.presented();
        assert_ne!(first, second, "the renewed certificate is presented");

        // Half a renewal: a certificate whose key is not there yet.
        std::thread::sleep(Duration::from_millis(20));
        let (c3, _) = pair("one.example");
        std::fs::write(&cert_file, &c3).unwrap();
        let e = cert.reload_if_changed().unwrap_err();
        assert!(matches!(e, SignalTlsError::Mismatch { .. }), "{e}");
        assert_eq!(cert.presented(), second, "the last good pair stays");
    }

    #[test]
    fn unreadable_or_garbage_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let e = Certificate::load(&cert_file, &key_file).unwrap_err();
        assert!(e.to_string().contains("tls.crt"), "{e}");
        std::fs::write(&cert_file, "not a certificate").unwrap();
        std::fs::write(&key_file, "not a key").unwrap();
        let e = Certificate::load(&cert_file, &key_file).unwrap_err();
        assert!(e.to_string().contains("tls.crt"), "{e}");
        let (c, _) = pair("x.example");
        std::fs::write(&cert_file, c).unwrap();
        let e = Certificate::load(&cert_file, &key_file).unwrap_err();
        assert!(e.to_string().contains("tls.key"), "{e}");
    }
}
