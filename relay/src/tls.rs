//! rustls configurations for the relay from the cluster's PEM files: each side presents
//! its certificate and accepts only peers whose certificate the cluster CA signed.
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{ALPN, RelayError};

pub use common::tls::Pem;

fn tls_err(what: &str, e: impl std::fmt::Display) -> RelayError {
    RelayError::Tls(format!("{what}: {e}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn parts(
    pem: &Pem,
) -> Result<
    (
        RootCertStore,
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
    ),
    RelayError,
> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&pem.ca) {
        roots
            .add(ca.map_err(|e| tls_err("CA certificate", e))?)
            .map_err(|e| tls_err("CA certificate", e))?;
    }
    if roots.is_empty() {
        return Err(RelayError::Tls("no CA certificate in the CA file".into()));
    }
    let certs = CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("certificate", e))?;
    if certs.is_empty() {
        return Err(RelayError::Tls(
            "no certificate in the certificate file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| tls_err("private key", e))?;
    Ok((roots, certs, key))
}

pub fn server_config(pem: &Pem) -> Result<rustls::ServerConfig, RelayError> {
    let (roots, certs, key) = parts(pem)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| tls_err("client verifier", e))?;
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("server certificate", e))?;
    c.alpn_protocols = vec![ALPN.to_vec()];
    Ok(c)
}

pub fn client_config(pem: &Pem) -> Result<rustls::ClientConfig, RelayError> {
    let (roots, certs, key) = parts(pem)?;
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS versions", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| tls_err("client certificate", e))?;
    c.alpn_protocols = vec![ALPN.to_vec()];
    Ok(c)
}
