//! The cluster CA and every component's certificate (rcgen), plus the Ed25519 key that
//! signs join tokens. Certificates name `localhost` and `127.0.0.1`: the local cluster and
//! the tests run on loopback only. The CA key stays in the directory so that components
//! added later get certificates too.
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Writes `ca.pem`, `{name}.pem` + `{name}-key.pem` for each name, and the token keys.
    pub fn generate(dir: &Path, names: &[String]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params()?.self_signed(&ca_key)?;
        std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
        write_private(&dir.join("ca-key.pem"), &ca_key.serialize_pem())?;
        let pki = Self {
            dir: dir.to_owned(),
        };
        for name in names {
            pki.issue(name)?;
        }
        // The key controllers and recording nodes share for download links.
        let download = random_hex(64);
        write_private(&dir.join("download-key"), &download)?;
        let token = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        write_private(&dir.join("token-signing-key.pem"), &token.serialize_pem())?;
        std::fs::write(dir.join("token-public-key.pem"), token.public_key_pem())?;
        Ok(pki)
    }

    /// Issues `{name}.pem` and `{name}-key.pem` from the cluster CA.
    pub fn issue(&self, name: &str) -> anyhow::Result<()> {
        let ca_key = KeyPair::from_pem(&std::fs::read_to_string(self.dir.join("ca-key.pem"))?)?;
        // Issuing needs only the CA's name and key, both as at generation.
        let issuer = Issuer::new(ca_params()?, ca_key);
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec!["localhost".to_string(), name.to_owned()])?;
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse()?));
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &issuer)?;
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem())?;
        write_private(
            &self.dir.join(format!("{name}-key.pem")),
            &key.serialize_pem(),
        )?;
        Ok(())
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// Certificate and key files of `name`.
    pub fn files(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}-key.pem")),
        )
    }
    /// The secret that signs recording download links.
    pub fn download_key_file(&self) -> PathBuf {
        self.dir.join("download-key")
    }
    pub fn token_key_file(&self) -> PathBuf {
        self.dir.join("token-signing-key.pem")
    }
    pub fn token_public_file(&self) -> PathBuf {
        self.dir.join("token-public-key.pem")
    }
}

/// `len` random hex digits: a shared secret for a test cluster.
pub fn random_hex(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "Fjord cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ok(ca)
}

fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, pem)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
