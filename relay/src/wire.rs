//! The relay's bytes on the wire, as pure functions that never panic on garbage.
//!
//! - A media datagram is the track id (u32, big-endian) followed by one RTP packet.
//! - A control message is its length (u32, big-endian, at most [`MAX_CONTROL`]) followed
//!   by a protobuf [`RelayControl`].
use prost::Message;
use proto::v1::RelayControl;

/// The largest control message we accept.
pub const MAX_CONTROL: usize = 64 * 1024;
/// An RTP header without CSRCs or extensions.
const RTP_HEADER: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("datagram of {0} bytes is too short for a track id and an RTP header")]
    Short(usize),
    #[error("datagram does not carry RTP version 2")]
    NotRtp,
    #[error("control message of {0} bytes is larger than {MAX_CONTROL}")]
    TooLarge(usize),
    #[error("control message does not decode: {0}")]
    Decode(String),
    #[error("control message has no content")]
    Empty,
}

/// Track ids are at most this: the high byte of a datagram's media id is the layer.
pub const MAX_TRACK_ID: u32 = 0x00ff_ffff;

/// The media id of a datagram: `track_id` with the simulcast `layer` in its high byte.
pub fn media_id(track_id: u32, layer: u8) -> u32 {
    (u32::from(layer) << 24) | (track_id & MAX_TRACK_ID)
}

/// The track id and layer of a media id.
pub fn split_media_id(id: u32) -> (u32, u8) {
    (id & MAX_TRACK_ID, (id >> 24) as u8)
}

/// Bytes of a media datagram in front of its RTP packet: the media id.
pub const MEDIA_ID_LEN: usize = 4;

/// An RTP packet written behind room for its datagram's media id, so that it becomes the
/// datagram as it is ([`MediaPacket::into_datagram`]) instead of being copied into one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaPacket(Vec<u8>);

impl MediaPacket {
    /// An empty RTP packet with room for `capacity` bytes: a packet written to exactly
    /// that length is sent without a further allocation.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut d = Vec::with_capacity(MEDIA_ID_LEN + capacity);
        d.extend_from_slice(&[0; MEDIA_ID_LEN]);
        Self(d)
    }

    /// A copy of `rtp`.
    pub fn from_rtp(rtp: &[u8]) -> Self {
        let mut p = Self::with_capacity(rtp.len());
        p.extend_from_slice(rtp);
        p
    }

    pub fn push(&mut self, byte: u8) {
        self.0.push(byte);
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// The RTP packet.
    pub fn rtp(&self) -> &[u8] {
        &self.0[MEDIA_ID_LEN..]
    }

    pub fn rtp_mut(&mut self) -> &mut [u8] {
        &mut self.0[MEDIA_ID_LEN..]
    }

    /// The datagram carrying this packet under `media_id`, as [`encode_datagram`]
    /// writes it.
    pub fn into_datagram(mut self, media_id: u32) -> Vec<u8> {
        self.0[..MEDIA_ID_LEN].copy_from_slice(&media_id.to_be_bytes());
        self.0
    }
}

pub fn encode_datagram(track_id: u32, rtp: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&track_id.to_be_bytes());
    out.extend_from_slice(rtp);
}

/// The track id and RTP packet of a datagram.
pub fn decode_datagram(d: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if d.len() < 4 + RTP_HEADER {
        return Err(WireError::Short(d.len()));
    }
    let (id, rtp) = d.split_at(4);
    if rtp[0] >> 6 != 2 {
        return Err(WireError::NotRtp);
    }
    Ok((u32::from_be_bytes([id[0], id[1], id[2], id[3]]), rtp))
}

pub fn encode_control(msg: &RelayControl) -> Result<Vec<u8>, WireError> {
    let n = msg.encoded_len();
    if n > MAX_CONTROL {
        return Err(WireError::TooLarge(n));
    }
    let mut out = Vec::with_capacity(4 + n);
    out.extend_from_slice(&(n as u32).to_be_bytes());
    msg.encode(&mut out)
        .map_err(|e| WireError::Decode(e.to_string()))?;
    Ok(out)
}

/// The body length announced by a control frame's prefix, if acceptable.
pub fn control_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let n = u32::from_be_bytes(prefix) as usize;
    if n > MAX_CONTROL {
        return Err(WireError::TooLarge(n));
    }
    Ok(n)
}

pub fn decode_control(body: &[u8]) -> Result<RelayControl, WireError> {
    let msg = RelayControl::decode(body).map_err(|e| WireError::Decode(e.to_string()))?;
    if msg.msg.is_none() {
        return Err(WireError::Empty);
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proto::v1::{RelayHello, relay_control::Msg};

    #[test]
    fn datagrams_round_trip_and_non_rtp_is_refused() {
        let rtp = [0x80u8, 111, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 9, 9];
        let mut d = Vec::new();
        encode_datagram(7, &rtp, &mut d);
        assert_eq!(decode_datagram(&d), Ok((7, &rtp[..])));
        assert_eq!(decode_datagram(&d[..10]), Err(WireError::Short(10)));
        let mut bad = d.clone();
        bad[4] = 0x40;
        assert_eq!(decode_datagram(&bad), Err(WireError::NotRtp));
    }

    #[test]
    fn a_media_packet_becomes_the_datagram_encode_datagram_writes() {
        let rtp = [0x80u8, 111, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 9, 9];
        let mut p = MediaPacket::with_capacity(rtp.len());
        p.push(rtp[0]);
        p.extend_from_slice(&rtp[1..]);
        assert_eq!(p.rtp(), &rtp[..]);
        assert_eq!(p, MediaPacket::from_rtp(&rtp));
        let mut d = Vec::new();
        encode_datagram(media_id(7, 2), &rtp, &mut d);
        let sent = p.into_datagram(media_id(7, 2));
        assert_eq!(
            sent.len(),
            sent.capacity(),
            "written to the length it was made for"
        );
        assert_eq!(sent, d);
        assert_eq!(decode_datagram(&sent), Ok((media_id(7, 2), &rtp[..])));
    }

    #[test]
    fn media_ids_carry_the_layer_beside_the_track() {
        assert_eq!(split_media_id(media_id(7, 0)), (7, 0));
        assert_eq!(split_media_id(media_id(MAX_TRACK_ID, 2)), (MAX_TRACK_ID, 2));
        // A sink's track id is its media id: layer 0.
        assert_eq!(media_id(5, 0), 5);
    }

    #[test]
    fn control_messages_round_trip_and_oversized_or_empty_ones_are_refused() {
        let hello = RelayControl {
            msg: Some(Msg::Hello(RelayHello {
                node_id: "media-oslo-1".into(),
                meeting_id: "abc-defg-hij".into(),
                sink_only: true,
            })),
        };
        let frame = encode_control(&hello).unwrap();
        let n = control_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(decode_control(&frame[4..4 + n]).unwrap(), hello);
        assert_eq!(
            control_len(((MAX_CONTROL + 1) as u32).to_be_bytes()),
            Err(WireError::TooLarge(MAX_CONTROL + 1))
        );
        assert_eq!(decode_control(&[]), Err(WireError::Empty));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_datagram(&bytes);
            let _ = decode_control(&bytes);
            if bytes.len() >= 4 {
                let _ = control_len(bytes[..4].try_into().unwrap());
            }
        }
    }
}
