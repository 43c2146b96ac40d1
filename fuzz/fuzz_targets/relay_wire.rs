//! What a far media node (or anyone who got past the relay's mutual TLS) can send over a
//! relay link: media datagrams, control frames (a length prefix and a protobuf body), and
//! the RTP inside the datagrams, which the SFU reads for sequence numbers, timestamps,
//! header extensions and the VP8/H.264 keyframe bits. Nothing may panic; what decodes must
//! encode and decode back to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_node::sfu::rtp::{self, RtpView};
use relay::Codec;
use relay::wire;

fuzz_target!(|data: &[u8]| {
    // A media datagram.
    if let Ok((track_id, packet)) = wire::decode_datagram(data) {
        let mut again = Vec::new();
        wire::encode_datagram(track_id, packet, &mut again);
        assert_eq!(again, data);
        let (track, layer) = wire::split_media_id(track_id);
        assert_eq!(wire::media_id(track, layer), track_id);
    }
    // The RTP inside, and the payload formats the SFU looks into.
    if let Some(view) = RtpView::parse(data) {
        let payload = &data[view.payload.clone()];
        for codec in Codec::ALL {
            let (fields, _key) = rtp::keyframe_fields(codec, payload);
            if let Some(f) = fields {
                let mut p = payload.to_vec();
                rtp::patch_vp8(&mut p, &f, (Some(7), Some(3)));
                assert_eq!(p.len(), payload.len(), "a patch keeps the size");
            }
        }
    }
    // A control frame: its prefix, then its body.
    if data.len() >= 4 {
        let (prefix, body) = data.split_at(4);
        let prefix = [prefix[0], prefix[1], prefix[2], prefix[3]];
        if let Ok(n) = wire::control_len(prefix) {
            assert!(n <= wire::MAX_CONTROL);
        }
        if let Ok(msg) = wire::decode_control(body) {
            let frame = wire::encode_control(&msg).expect("a decoded message encodes");
            let back = wire::decode_control(&frame[4..]).expect("and decodes again");
            assert_eq!(back, msg);
        }
    }
});
