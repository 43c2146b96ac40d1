//! The codecs Fjord forwards and records, one enum for the SFU, its relay peers (links
//! and sinks) and the recording node: the name a relay announcement carries, the RTP
//! payload type on the relay, and the clock rate. Payloads pass through untouched, so
//! this is all a hop needs to know of a codec.
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Vp8,
    H264,
}

impl Codec {
    pub const ALL: [Codec; 3] = [Codec::Opus, Codec::Vp8, Codec::H264];

    /// The name a relay announcement carries.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Vp8 => "vp8",
            Codec::H264 => "h264",
        }
    }

    /// The codec a relay name (`opus`, `vp8`, `h264`, any case, with or without the
    /// `audio/` or `video/` of a MIME type) stands for.
    pub fn parse(s: &str) -> Option<Self> {
        let name = s.rsplit('/').next().unwrap_or_default();
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    pub fn is_audio(self) -> bool {
        matches!(self, Codec::Opus)
    }

    /// The RTP payload type of this codec on the relay.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Opus => 111,
            Codec::Vp8 => 96,
            Codec::H264 => 102,
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Vp8 | Codec::H264 => 90_000,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_in_any_case_and_with_a_mime_prefix_and_others_do_not() {
        for c in Codec::ALL {
            assert_eq!(Codec::parse(c.name()), Some(c));
            assert_eq!(Codec::parse(&c.name().to_uppercase()), Some(c));
        }
        assert_eq!(Codec::parse("video/VP8"), Some(Codec::Vp8));
        assert_eq!(Codec::parse("audio/opus"), Some(Codec::Opus));
        assert_eq!(Codec::parse("av1"), None);
        assert_eq!(Codec::parse(""), None);
    }
}
