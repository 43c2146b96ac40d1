//! Id newtypes. Every id that crosses a trust boundary is parsed here, so that an id in
//! the domain is always a short, lowercase, URL- and etcd-key-safe string.
use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} {value:?}: expected 1-63 characters of a-z, 0-9 and '-'")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
}

fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

fn random_id(groups: &[usize]) -> String {
    let mut rng = rand::rng();
    let mut out = String::new();
    for (i, n) in groups.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        for _ in 0..*n {
            out.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
        }
    }
    out
}

macro_rules! id_type {
    ($name:ident, $kind:literal) => {
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if valid(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InvalidId {
                        kind: $kind,
                        value: s.chars().take(80).collect(),
                    })
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(NodeId, "node id");
id_type!(MeetingId, "meeting id");
id_type!(ParticipantId, "participant id");
id_type!(RecordingId, "recording id");
id_type!(Region, "region");

impl MeetingId {
    /// A new random id such as `k7d-q2xm-p9a` (about 50 bits).
    pub fn random() -> Self {
        Self(random_id(&[3, 4, 3]))
    }
}
impl ParticipantId {
    pub fn random() -> Self {
        Self(random_id(&[12]))
    }
}
impl RecordingId {
    pub fn random() -> Self {
        Self(random_id(&[4, 4, 4]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_what_is_not_key_safe() {
        for bad in ["", "Oslo", "a/b", "a b", "../x", &"x".repeat(64), "é"] {
            assert!(NodeId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            NodeId::parse("media-oslo-1").unwrap().as_str(),
            "media-oslo-1"
        );
    }

    #[test]
    fn random_ids_parse_and_differ() {
        let a = MeetingId::random();
        let b = MeetingId::random();
        assert_ne!(a, b);
        assert_eq!(MeetingId::parse(a.as_str()).unwrap(), a);
        assert!(ParticipantId::parse(ParticipantId::random().as_str()).is_ok());
    }
}
