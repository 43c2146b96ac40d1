//! Join tokens: Ed25519-signed JWTs (jsonwebtoken) that the controller issues and media
//! nodes verify locally. A token is scoped to one meeting, one participant and one node,
//! and expires quickly; the node refuses anything else.
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ids::{MeetingId, NodeId, ParticipantId, Region};

pub const ISSUER: &str = "fjord-controller";

/// A participant's role: the signaling protocol's own, which the token carries.
pub use signaling::Role;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinClaims {
    pub iss: String,
    /// Participant id.
    pub sub: ParticipantId,
    pub mtg: MeetingId,
    pub name: String,
    pub role: Role,
    pub node: NodeId,
    pub region: Region,
    pub iat: u64,
    pub exp: u64,
    /// The registration the participant joined with (meetings that require one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token was signed with an unknown key id")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token was issued for another media node")]
    WrongNode,
    #[error("token was issued for another meeting")]
    WrongMeeting,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot load token key {path}: {message}")]
pub struct KeyError {
    pub path: String,
    pub message: String,
}

fn read_pem(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|e| KeyError {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Signs join tokens with the controller's Ed25519 key (PKCS#8 PEM).
///
/// A join signs one token, so signing is on every join's path: the key is parsed once
/// (jsonwebtoken would parse its DER and derive the public key again on every call,
/// which doubled the curve arithmetic of a join) and the header is encoded once. The
/// tokens are byte for byte what `jsonwebtoken::encode` makes (Ed25519 is
/// deterministic), and media nodes verify them with jsonwebtoken.
pub struct TokenSigner {
    key: ed25519_dalek::SigningKey,
    /// The JWT header, base64url-encoded, and the `.` after it.
    header: String,
    ttl: Duration,
}

impl TokenSigner {
    pub fn from_pem(pem: &[u8], kid: &str, ttl: Duration) -> Result<Self, String> {
        use base64::Engine;
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        // jsonwebtoken reads the PEM (and says what is wrong with one it refuses); the
        // key is its DER body.
        EncodingKey::from_ed_pem(pem).map_err(|e| e.to_string())?;
        let text = std::str::from_utf8(pem).map_err(|_| "the key file is not text".to_owned())?;
        let body: String = text
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| format!("the key's PEM body is not base64: {e}"))?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let json = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        let mut header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        header.push('.');
        Ok(Self { key, header, ttl })
    }
    pub fn from_file(path: &Path, kid: &str, ttl: Duration) -> Result<Self, KeyError> {
        let pem = read_pem(path)?;
        Self::from_pem(&pem, kid, ttl).map_err(|message| KeyError {
            path: path.display().to_string(),
            message,
        })
    }
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Claims for `participant` valid from `now_unix` for this signer's ttl.
    #[allow(clippy::too_many_arguments)]
    pub fn claims(
        &self,
        now_unix: u64,
        participant: ParticipantId,
        meeting: MeetingId,
        name: String,
        role: Role,
        node: NodeId,
        region: Region,
    ) -> JoinClaims {
        JoinClaims {
            iss: ISSUER.into(),
            sub: participant,
            mtg: meeting,
            name,
            role,
            node,
            region,
            iat: now_unix,
            exp: now_unix + self.ttl.as_secs().max(1),
            reg: None,
        }
    }

    pub fn sign(&self, claims: &JoinClaims) -> String {
        use base64::Engine;
        use ed25519_dalek::Signer;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Serialising our own claims struct cannot fail.
        let json = serde_json::to_vec(claims).expect("join claims serialise");
        let mut token = String::with_capacity(self.header.len() + json.len() * 4 / 3 + 90);
        token.push_str(&self.header);
        b64.encode_string(json, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        b64.encode_string(signature.to_bytes(), &mut token);
        token
    }
}

/// The raw Ed25519 public key of the certificate in `pem`.
fn ed25519_key_of_certificate(pem: &[u8]) -> Result<Vec<u8>, String> {
    const ED25519: &str = "1.3.101.112";
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    if alg != ED25519 {
        return Err(format!(
            "the certificate's key is not Ed25519 (algorithm {alg})"
        ));
    }
    Ok(spki.subject_public_key.data.to_vec())
}

/// Verifies join tokens on a media node: signature (by `kid`), expiry, node and meeting.
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    node: NodeId,
}

impl TokenVerifier {
    pub fn new(node: NodeId) -> Self {
        Self {
            keys: HashMap::new(),
            node,
        }
    }
    /// Adds the Ed25519 public key `kid`, from a `PUBLIC KEY` PEM or from a `CERTIFICATE`
    /// PEM whose key it is (what Helm can make from the signing key: the chart has no way
    /// to write a bare public key).
    pub fn add_key_pem(&mut self, kid: &str, public_pem: &[u8]) -> Result<(), String> {
        let key = if public_pem.windows(17).any(|w| w == b"BEGIN CERTIFICATE") {
            DecodingKey::from_ed_der(&ed25519_key_of_certificate(public_pem)?)
        } else {
            DecodingKey::from_ed_pem(public_pem).map_err(|e| e.to_string())?
        };
        self.keys.insert(kid.to_owned(), key);
        Ok(())
    }
    pub fn add_key_file(&mut self, kid: &str, path: &Path) -> Result<(), KeyError> {
        let pem = read_pem(path)?;
        self.add_key_pem(kid, &pem).map_err(|message| KeyError {
            path: path.display().to_string(),
            message,
        })
    }

    /// Checks `token` for a participant joining `meeting` on this node at `now_unix`.
    pub fn verify(
        &self,
        token: &str,
        meeting: &MeetingId,
        now_unix: u64,
    ) -> Result<JoinClaims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::BadSignature);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|k| self.keys.get(k))
            .ok_or(TokenError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[ISSUER]);
        // Expiry is checked below against the caller's clock, so that it is testable and exact.
        v.validate_exp = false;
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<JoinClaims>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidIssuer => TokenError::BadSignature,
                _ => TokenError::Malformed,
            }
        })?;
        let c = data.claims;
        if now_unix >= c.exp {
            return Err(TokenError::Expired);
        }
        if c.node != self.node {
            return Err(TokenError::WrongNode);
        }
        if &c.mtg != meeting {
            return Err(TokenError::WrongMeeting);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair() -> (String, String) {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        (kp.serialize_pem(), kp.public_key_pem())
    }

    fn ids() -> (MeetingId, NodeId) {
        (
            MeetingId::parse("m-1").unwrap(),
            NodeId::parse("n1").unwrap(),
        )
    }

    fn token(signer: &TokenSigner, now: u64, node: &NodeId, meeting: &MeetingId) -> String {
        let c = signer.claims(
            now,
            ParticipantId::parse("p1").unwrap(),
            meeting.clone(),
            "Ada".into(),
            Role::Attendee,
            node.clone(),
            Region::parse("oslo").unwrap(),
        );
        signer.sign(&c)
    }

    #[test]
    fn tokens_are_what_jsonwebtoken_makes_of_the_same_claims() {
        let (private, _) = keypair();
        let signer =
            TokenSigner::from_pem(private.as_bytes(), "k1", Duration::from_secs(60)).unwrap();
        let c = signer.claims(
            1_800_000_000,
            ParticipantId::parse("p-1").unwrap(),
            MeetingId::parse("m-1").unwrap(),
            "Ada \"Æ\" Lovelace".into(),
            Role::Host,
            NodeId::parse("media-oslo-1").unwrap(),
            Region::parse("oslo").unwrap(),
        );
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let key = EncodingKey::from_ed_pem(private.as_bytes()).unwrap();
        assert_eq!(
            signer.sign(&c),
            jsonwebtoken::encode(&header, &c, &key).unwrap()
        );
        assert!(
            TokenSigner::from_pem(
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "k",
                Duration::from_secs(1)
            )
            .is_err()
        );
    }

    #[test]
    fn verifies_only_in_scope_and_in_time() {
        let (private, public) = keypair();
        let signer =
            TokenSigner::from_pem(private.as_bytes(), "k1", Duration::from_secs(60)).unwrap();
        let (m, n) = ids();
        let mut v = TokenVerifier::new(n.clone());
        v.add_key_pem("k1", public.as_bytes()).unwrap();
        let t = token(&signer, 1000, &n, &m);
        assert_eq!(v.verify(&t, &m, 1001).unwrap().name, "Ada");
        assert_eq!(v.verify(&t, &m, 1060), Err(TokenError::Expired));
        assert_eq!(
            v.verify(&t, &MeetingId::parse("m-2").unwrap(), 1001),
            Err(TokenError::WrongMeeting)
        );
        let other = token(&signer, 1000, &NodeId::parse("n2").unwrap(), &m);
        assert_eq!(v.verify(&other, &m, 1001), Err(TokenError::WrongNode));
    }

    #[test]
    fn a_certificate_of_the_signing_key_verifies_like_its_public_key() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["fjord-token-signing".into()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let signer =
            TokenSigner::from_pem(kp.serialize_pem().as_bytes(), "k1", Duration::from_secs(60))
                .unwrap();
        let (m, n) = ids();
        let mut v = TokenVerifier::new(n.clone());
        v.add_key_pem("k1", cert.pem().as_bytes()).unwrap();
        assert_eq!(
            v.verify(&token(&signer, 1000, &n, &m), &m, 1001)
                .unwrap()
                .name,
            "Ada"
        );
        let (forger, _) = keypair();
        let forged =
            TokenSigner::from_pem(forger.as_bytes(), "k1", Duration::from_secs(60)).unwrap();
        assert_eq!(
            v.verify(&token(&forged, 1000, &n, &m), &m, 1001),
            Err(TokenError::BadSignature)
        );
        // A certificate of another kind of key, and garbage, are refused with a reason.
        let rsa_like = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&rsa_like)
            .unwrap();
        let e = v.add_key_pem("k2", other.pem().as_bytes()).unwrap_err();
        assert!(e.contains("not Ed25519"), "{e}");
        let junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(v.add_key_pem("k3", junk).is_err());
    }

    #[test]
    fn refuses_forged_and_garbage() {
        let (private, public) = keypair();
        let (forger, _) = keypair();
        let (m, n) = ids();
        let mut v = TokenVerifier::new(n.clone());
        v.add_key_pem("k1", public.as_bytes()).unwrap();
        let forged =
            TokenSigner::from_pem(forger.as_bytes(), "k1", Duration::from_secs(60)).unwrap();
        assert_eq!(
            v.verify(&token(&forged, 1000, &n, &m), &m, 1001),
            Err(TokenError::BadSignature)
        );
        let unknown =
            TokenSigner::from_pem(private.as_bytes(), "k9", Duration::from_secs(60)).unwrap();
        assert_eq!(
            v.verify(&token(&unknown, 1000, &n, &m), &m, 1001),
            Err(TokenError::UnknownKey)
        );
        for junk in [
            "",
            "a.b.c",
            "....",
            "eyJhbGciOiJub25lIn0.e30.",
            &"x".repeat(5000),
        ] {
            assert!(v.verify(junk, &m, 1001).is_err(), "{junk:?} accepted");
        }
        // A valid token whose payload was altered fails the signature.
        let t = token(
            &TokenSigner::from_pem(private.as_bytes(), "k1", Duration::from_secs(60)).unwrap(),
            1000,
            &n,
            &m,
        );
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(v.verify(&parts.join("."), &m, 1001).is_err());
    }
}
