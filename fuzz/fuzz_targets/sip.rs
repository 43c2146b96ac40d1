//! What the SIP gateway reads from the network: a SIP message as its stack parses one
//! off a UDP datagram (the message line, every header line, the base headers a
//! transaction needs, Content-Length), the dialled name of a request, the SDP offer and
//! our answer to it, and RTP packets. Whatever comes in, each ends in a value or an error;
//! nothing panics, and an answer we make always parses.
#![no_main]

use bytes::Bytes;
use bytesstr::BytesStr;
use ezk_sip_types::header::typed::{CSeq, CallID, ContentLength, Via};
use ezk_sip_types::msg::{Line, MessageLine, PullParser};
use ezk_sip_types::parse::Parse;
use ezk_sip_types::uri::SipUriUserPart;
use ezk_sip_types::{Headers, Name};
use libfuzzer_sys::fuzz_target;
use sip_gateway::{dial, rtp, sdp};

fn sip(data: &[u8]) {
    let buffer = Bytes::copy_from_slice(data);
    let mut parser = PullParser::new(&buffer, 0);
    let mut message_line = None;
    let mut headers = Headers::new();
    for item in &mut parser {
        let Ok(line) = item else { return };
        let Ok(line) = std::str::from_utf8(line) else { return };
        if message_line.is_none() {
            let Ok((_, l)) = MessageLine::parse(&buffer)(line) else { return };
            message_line = Some(l);
        } else {
            let Ok((_, l)) = nom::Finish::finish(Line::parse(&buffer, line)) else { return };
            headers.insert(l.name, l.value);
        }
    }
    let _ = headers.get_named::<Vec<Via>>();
    let _ = headers.get_named::<CallID>();
    let _ = headers.get_named::<CSeq>();
    let _ = headers.get_named::<ContentLength>();
    let _ = headers.get::<ezk_sip_types::header::typed::FromTo>(Name::FROM);
    if let Some(MessageLine::Request(r)) = message_line
        && let SipUriUserPart::User(u) = &r.uri.user_part
    {
        let _ = dial::parse(u);
    }
}

fn offer(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(offer) = ezk_sdp_types::SessionDescription::parse(&BytesStr::from(text)) else {
        return;
    };
    if let Ok(choice) = sdp::choose(&offer) {
        let answer = sdp::answer(&choice, "127.0.0.1:40000".parse().unwrap(), 1);
        ezk_sdp_types::SessionDescription::parse(&BytesStr::from(answer.as_str()))
            .unwrap_or_else(|e| panic!("our answer does not parse: {e}\n{answer}"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    match kind % 4 {
        0 => sip(rest),
        1 => offer(rest),
        2 => {
            if let Some(h) = rtp::parse(rest) {
                assert!(h.payload.end <= rest.len() && h.payload.start <= h.payload.end);
            }
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(rest) {
                let _ = dial::parse(s);
            }
        }
    }
});
