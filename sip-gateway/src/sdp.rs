//! The call's media, as its SDP offer says and our answer takes it: one audio stream on
//! plain RTP (RTP/AVP) in Opus (RFC 7587, passed through) or else G.711 μ-law or A-law
//! (transcoded), DTMF as telephone-events (RFC 4733) when offered; every other stream
//! declined (port 0). What cannot be met is said plainly, for the 488 answer.
use std::net::{IpAddr, SocketAddr};

use ezk_sdp_types::{MediaType, SessionDescription, TaggedAddress, TransportProtocol};

/// The call's audio codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Opus,
    Pcmu,
    Pcma,
}

impl Codec {
    /// Its rtpmap: name and clock rate (Opus is always said with two channels).
    fn rtpmap(self) -> (&'static str, u32) {
        match self {
            Codec::Opus => ("opus", 48_000),
            Codec::Pcmu => ("PCMU", 8000),
            Codec::Pcma => ("PCMA", 8000),
        }
    }

    /// Its static payload type, if it has one (RFC 3551).
    fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Opus => None,
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
        }
    }

    pub fn clock_rate(self) -> u32 {
        self.rtpmap().1
    }
}

/// What we take of an offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Where the caller wants its audio.
    pub remote: SocketAddr,
    /// The codec, Opus when offered, and its payload type.
    pub codec: Codec,
    pub pt: u8,
    /// telephone-events at the codec's clock rate, if offered.
    pub dtmf_pt: Option<u8>,
    /// Every m-line of the offer, in order: media type, protocol, first format; and
    /// whether it is the one we take.
    lines: Vec<(String, String, String, bool)>,
}

/// Why an offer cannot be answered (488 Not Acceptable Here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unacceptable(pub String);

fn proto(p: &TransportProtocol) -> String {
    match p {
        TransportProtocol::RtpAvp => "RTP/AVP".into(),
        TransportProtocol::RtpAvpf => "RTP/AVPF".into(),
        TransportProtocol::RtpSavp => "RTP/SAVP".into(),
        TransportProtocol::RtpSavpf => "RTP/SAVPF".into(),
        TransportProtocol::UdpTlsRtpSavp => "UDP/TLS/RTP/SAVP".into(),
        TransportProtocol::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF".into(),
        TransportProtocol::Unspecified => "RTP/AVP".into(),
        TransportProtocol::Other(o) => o.to_string(),
    }
}

fn address(a: &TaggedAddress) -> Option<IpAddr> {
    match a {
        TaggedAddress::IP4(ip) => Some(IpAddr::V4(*ip)),
        TaggedAddress::IP6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

pub fn choose(offer: &SessionDescription) -> Result<Choice, Unacceptable> {
    let mut chosen = None;
    let mut why = "the offer has no audio stream".to_owned();
    let mut lines = Vec::new();
    for md in &offer.media_descriptions {
        let first = md
            .media
            .fmts
            .first()
            .map_or_else(|| "0".to_owned(), ToString::to_string);
        lines.push((
            md.media.media_type.to_string(),
            proto(&md.media.proto),
            first,
            false,
        ));
        if chosen.is_some() || md.media.media_type != MediaType::Audio || md.media.port == 0 {
            continue;
        }
        if !matches!(
            md.media.proto,
            TransportProtocol::RtpAvp | TransportProtocol::RtpAvpf
        ) {
            why = format!(
                "the audio is offered as {} only: this gateway speaks plain RTP (RTP/AVP) so far",
                proto(&md.media.proto)
            );
            continue;
        }
        let map = |name: &str, rate: u32| {
            md.rtpmap
                .iter()
                .find(|m| {
                    m.encoding.eq_ignore_ascii_case(name)
                        && m.clock_rate == rate
                        && md.media.fmts.contains(&m.payload)
                })
                .map(|m| m.payload)
        };
        let found = [Codec::Opus, Codec::Pcmu, Codec::Pcma]
            .into_iter()
            .find_map(|c| {
                let (name, rate) = c.rtpmap();
                map(name, rate)
                    .or(c.static_pt().filter(|pt| {
                        md.media.fmts.contains(pt) && !md.rtpmap.iter().any(|m| m.payload == *pt)
                    }))
                    .map(|pt| (c, pt))
            });
        let Some((codec, pt)) = found else {
            why = "no codec in common: this gateway takes Opus, PCMU or PCMA".into();
            continue;
        };
        let Some(ip) = md
            .connection
            .as_ref()
            .or(offer.connection.as_ref())
            .and_then(|c| address(&c.address))
        else {
            why = "the audio stream has no IP address (c=) we can send to".into();
            continue;
        };
        *lines.last_mut().expect("pushed above") =
            ("audio".into(), "RTP/AVP".into(), pt.to_string(), true);
        chosen = Some(Choice {
            remote: SocketAddr::new(ip, md.media.port),
            codec,
            pt,
            dtmf_pt: map("telephone-event", codec.clock_rate()),
            lines: Vec::new(),
        });
    }
    let mut c = chosen.ok_or(Unacceptable(why))?;
    c.lines = lines;
    Ok(c)
}

/// Our answer to the offer `choice` came from: the audio at `local`, the rest declined.
pub fn answer(choice: &Choice, local: SocketAddr, session_id: u64) -> String {
    let (family, ip) = match local.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let mut s = format!(
        "v=0\r\no=fjord {session_id} 1 IN {family} {ip}\r\ns=Fjord\r\nc=IN {family} {ip}\r\nt=0 0\r\n"
    );
    for (kind, proto, first, taken) in &choice.lines {
        if !taken {
            s.push_str(&format!("m={kind} 0 {proto} {first}\r\n"));
            continue;
        }
        let pt = choice.pt;
        let rate = choice.codec.clock_rate();
        match choice.dtmf_pt {
            Some(d) => s.push_str(&format!("m=audio {} RTP/AVP {pt} {d}\r\n", local.port())),
            None => s.push_str(&format!("m=audio {} RTP/AVP {pt}\r\n", local.port())),
        }
        match choice.codec {
            Codec::Opus => s.push_str(&format!(
                "a=rtpmap:{pt} opus/48000/2\r\na=fmtp:{pt} useinbandfec=1\r\n"
            )),
            c => s.push_str(&format!("a=rtpmap:{pt} {}/8000\r\n", c.rtpmap().0)),
        }
        if let Some(d) = choice.dtmf_pt {
            s.push_str(&format!(
                "a=rtpmap:{d} telephone-event/{rate}\r\na=fmtp:{d} 0-16\r\n"
            ));
        }
        s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytesstr::BytesStr;

    fn sdp(text: &str) -> SessionDescription {
        SessionDescription::parse(&BytesStr::from(text.replace('\n', "\r\n"))).unwrap()
    }

    const BARESIP: &str = "v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 4000 RTP/AVP 96 0 8 101
a=rtpmap:96 opus/48000/2
a=rtpmap:101 telephone-event/48000
a=sendrecv
m=video 4002 RTP/AVP 100
a=rtpmap:100 H264/90000
";

    #[test]
    fn opus_is_taken_video_declined_and_the_answer_parses() {
        let c = choose(&sdp(BARESIP)).unwrap();
        assert_eq!(
            (c.remote, c.codec, c.pt, c.dtmf_pt),
            (
                "127.0.0.1:4000".parse().unwrap(),
                Codec::Opus,
                96,
                Some(101)
            )
        );
        let a = answer(&c, "127.0.0.1:7000".parse().unwrap(), 42);
        let parsed = sdp(&a.replace("\r\n", "\n"));
        assert_eq!(parsed.media_descriptions.len(), 2);
        assert_eq!(parsed.media_descriptions[0].media.port, 7000);
        assert_eq!(parsed.media_descriptions[0].media.fmts, vec![96, 101]);
        assert_eq!(parsed.media_descriptions[1].media.port, 0);
        assert!(a.contains("m=video 0 RTP/AVP 100"), "{a}");
    }

    #[test]
    fn g711_when_there_is_no_opus_by_static_or_mapped_payload_type() {
        let g711 = BARESIP
            .replace("96 0 8 101", "8 0 101")
            .replace("a=rtpmap:96 opus/48000/2\n", "")
            .replace("telephone-event/48000", "telephone-event/8000");
        let c = choose(&sdp(&g711)).unwrap();
        assert_eq!((c.codec, c.pt, c.dtmf_pt), (Codec::Pcmu, 0, Some(101)));
        let a = answer(&c, "127.0.0.1:7000".parse().unwrap(), 1);
        assert!(
            a.contains("m=audio 7000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000"),
            "{a}"
        );
        let alaw = g711
            .replace("8 0 101", "8")
            .replace("a=rtpmap:101 telephone-event/8000\n", "");
        let c = choose(&sdp(&alaw)).unwrap();
        assert_eq!((c.codec, c.pt, c.dtmf_pt), (Codec::Pcma, 8, None));
        // A dynamic payload type for PCMU is read from its rtpmap.
        let mapped = g711
            .replace("8 0 101", "97")
            .replace("a=rtpmap:101", "a=rtpmap:97 PCMU/8000\na=rtpmap:101");
        assert_eq!(choose(&sdp(&mapped)).unwrap().pt, 97);
    }

    #[test]
    fn what_cannot_be_met_is_said() {
        let gsm = BARESIP
            .replace("96 0 8 101", "3")
            .replace("a=rtpmap:96 opus/48000/2\n", "");
        assert!(
            choose(&sdp(&gsm))
                .unwrap_err()
                .0
                .contains("Opus, PCMU or PCMA")
        );
        let srtp = BARESIP.replace("RTP/AVP 96", "RTP/SAVP 96");
        assert!(choose(&sdp(&srtp)).unwrap_err().0.contains("RTP/SAVP"));
        let video_only = "v=0\no=- 1 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 4002 RTP/AVP 100\n";
        assert!(choose(&sdp(video_only)).unwrap_err().0.contains("no audio"));
        let held = BARESIP.replace("m=audio 4000", "m=audio 0");
        assert!(choose(&sdp(&held)).is_err());
    }
}
