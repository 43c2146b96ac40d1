//! Signed, expiring download links for recording files. The controller signs
//! `{recording}/{file}/{expires}` with HMAC-SHA256 under a key it shares with the
//! recording nodes (`download_key_file`); a node serves a file only for a link whose
//! signature holds and whose expiry (Unix seconds) has not passed. Links carry no
//! other credential, so they can be handed to a browser or a download tool.
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The name a recording's manifest of segment `n` keeps once a later segment of it is
/// recorded in the same directory (`manifest.json` is always the latest segment's).
pub fn segment_manifest_name(n: u32) -> String {
    format!("manifest-segment-{n}.json")
}

/// The shortest key we accept, in bytes.
pub const MIN_KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("the link has expired")]
    Expired,
    #[error("the link's signature is not valid")]
    BadSignature,
}

fn mac(key: &[u8], recording: &str, file: &str, expires: i64) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(recording.as_bytes());
    m.update(b"/");
    m.update(file.as_bytes());
    m.update(b"/");
    m.update(expires.to_string().as_bytes());
    m
}

/// The signature (lowercase hex) of a link to `file` of `recording` valid until `expires`.
pub fn sign(key: &[u8], recording: &str, file: &str, expires: i64) -> String {
    mac(key, recording, file, expires)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks a link at time `now` (Unix seconds); the comparison is constant-time.
pub fn verify(
    key: &[u8],
    recording: &str,
    file: &str,
    expires: i64,
    signature: &str,
    now: i64,
) -> Result<(), LinkError> {
    let sig: Option<Vec<u8>> = (signature.len() == 64)
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(signature.get(2 * i..2 * i + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    let Some(sig) = sig else {
        return Err(LinkError::BadSignature);
    };
    mac(key, recording, file, expires)
        .verify_slice(&sig)
        .map_err(|_| LinkError::BadSignature)?;
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(())
}

/// Reads a download key file: at least [`MIN_KEY_LEN`] bytes (surrounding whitespace is
/// not part of it).
pub fn read_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let raw = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key = raw.trim_ascii().to_vec();
    if key.len() < MIN_KEY_LEN {
        return Err(format!(
            "{} holds {} bytes; a download key needs at least {MIN_KEY_LEN}",
            path.display(),
            key.len()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signed_link_holds_until_it_expires_and_not_for_anything_else() {
        let sig = sign(KEY, "rec-1", "composite.mp4", 1_000);
        assert_eq!(
            verify(KEY, "rec-1", "composite.mp4", 1_000, &sig, 999),
            Ok(())
        );
        assert_eq!(
            verify(KEY, "rec-1", "composite.mp4", 1_000, &sig, 1_000),
            Err(LinkError::Expired)
        );
        for (rec, file, exp) in [
            ("rec-2", "composite.mp4", 1_000),
            ("rec-1", "manifest.json", 1_000),
            ("rec-1", "composite.mp4", 9_999),
        ] {
            assert_eq!(
                verify(KEY, rec, file, exp, &sig, 0),
                Err(LinkError::BadSignature),
                "{rec} {file} {exp}"
            );
        }
        let other = sign(
            b"another key, just as long as it..",
            "rec-1",
            "composite.mp4",
            1_000,
        );
        assert_eq!(
            verify(KEY, "rec-1", "composite.mp4", 1_000, &other, 0),
            Err(LinkError::BadSignature)
        );
        for garbage in ["", "zz", &"g".repeat(64), &sig[..63]] {
            assert_eq!(
                verify(KEY, "rec-1", "composite.mp4", 1_000, garbage, 0),
                Err(LinkError::BadSignature)
            );
        }
    }
}
