//! Codecs in the SFU: str0m's codec as the relay's [`Codec`] (the one enum the SFU, its
//! sinks and links, and the recording node share), which video codec a peer's offer
//! prefers, and the `RtcConfig` that answers in that order.
use relay::Codec;
use str0m::RtcConfig;
use str0m::format::Codec as StrCodec;

/// The codec of str0m's `c`, if we forward it. Payloads pass through untouched, so a
/// subscriber gets a publisher's video only if it decodes that codec: we keep to the two
/// every browser has, and Opus.
pub(super) fn from_str0m(c: StrCodec) -> Option<Codec> {
    match c {
        StrCodec::Opus => Some(Codec::Opus),
        StrCodec::Vp8 => Some(Codec::Vp8),
        StrCodec::H264 => Some(Codec::H264),
        _ => None,
    }
}

/// str0m's name for `c`.
pub(super) fn to_str0m(c: Codec) -> StrCodec {
    match c {
        Codec::Opus => StrCodec::Opus,
        Codec::Vp8 => StrCodec::Vp8,
        Codec::H264 => StrCodec::H264,
    }
}

/// The first video codec we forward among those `sdp` offers, in the offer's order:
/// the peer's preference for what it sends us.
pub(super) fn preferred_video_codec(sdp: &str) -> Option<Codec> {
    let mut lines = sdp.lines().map(str::trim);
    // "m=video 9 UDP/TLS/RTP/SAVPF 96 97 ..." : payload types in preference order.
    let m = lines.find(|l| l.starts_with("m=video "))?;
    let rtpmaps: Vec<(&str, &str)> = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=rtpmap:"))
        .filter_map(|r| {
            let (pt, rest) = r.split_once(' ')?;
            Some((pt, rest.split('/').next()?))
        })
        .collect();
    m.split_whitespace().skip(3).find_map(|pt| {
        let (_, name) = rtpmaps.iter().find(|(p, _)| *p == pt)?;
        Codec::parse(name).filter(|c| !c.is_audio())
    })
}

/// Opus, VP8 and H.264, with the video codec the peer's offer prefers first: our
/// answer's order is the order the peer sends in.
pub(super) fn with_video_codecs(config: RtcConfig, offer_sdp: &str) -> RtcConfig {
    let config = config.clear_codecs().enable_opus(true, false);
    match preferred_video_codec(offer_sdp) {
        Some(Codec::H264) => config.enable_h264(true).enable_vp8(true),
        _ => config.enable_vp8(true).enable_h264(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offers_first_forwardable_video_codec_is_preferred() {
        let sdp = |pts: &str| {
            format!(
                "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                 m=video 9 UDP/TLS/RTP/SAVPF {pts}\r\na=rtpmap:96 VP8/90000\r\n\
                 a=rtpmap:97 rtx/90000\r\na=rtpmap:98 VP9/90000\r\na=rtpmap:102 H264/90000\r\n"
            )
        };
        assert_eq!(preferred_video_codec(&sdp("96 97 102")), Some(Codec::Vp8));
        assert_eq!(preferred_video_codec(&sdp("102 96 97")), Some(Codec::H264));
        assert_eq!(
            preferred_video_codec(&sdp("98 102 96")),
            Some(Codec::H264),
            "VP9 is not forwarded, so the next one counts"
        );
        assert_eq!(preferred_video_codec(&sdp("98")), None);
        assert_eq!(
            preferred_video_codec("v=0\r\nm=audio 9 RTP/AVP 0\r\n"),
            None
        );
        assert_eq!(preferred_video_codec("garbage \u{0} m=video"), None);
    }

    #[test]
    fn every_codec_we_forward_maps_to_str0m_and_back() {
        for c in Codec::ALL {
            assert_eq!(from_str0m(to_str0m(c)), Some(c));
        }
        assert_eq!(from_str0m(StrCodec::Vp9), None);
    }
}
