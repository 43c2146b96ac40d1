//! The little of RTP (RFC 3550) the bridge needs: a packet's header fields and where
//! its payload starts, read without trusting anything in it; and a header to send.

/// A received RTP packet's fields; the payload is `&buf[payload]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: std::ops::Range<usize>,
}

/// `buf`'s RTP header, or `None` for anything that is not an RTP packet we can read
/// (version, CSRCs, extension and padding lengths all checked against its length).
pub fn parse(buf: &[u8]) -> Option<Header> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let csrcs = usize::from(buf[0] & 0x0f);
    let mut start = 12 + 4 * csrcs;
    if buf[0] & 0x10 != 0 {
        let ext = buf.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = buf.len();
    if buf[0] & 0x20 != 0 {
        let pad = usize::from(*buf.last()?);
        end = end.checked_sub(pad)?;
    }
    if start > end {
        return None;
    }
    Some(Header {
        pt: buf[1] & 0x7f,
        marker: buf[1] & 0x80 != 0,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload: start..end,
    })
}

/// Writes a 12-byte RTP header into `out` (cleared first), ready for the payload.
pub fn write_header(out: &mut Vec<u8>, pt: u8, marker: bool, seq: u16, timestamp: u32, ssrc: u32) {
    out.clear();
    out.push(0x80);
    out.push(pt & 0x7f | if marker { 0x80 } else { 0 });
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_garbage_is_no_packet() {
        let mut b = Vec::new();
        write_header(&mut b, 96, true, 7, 960, 0xdead_beef);
        b.extend_from_slice(b"opus");
        let h = parse(&b).unwrap();
        assert_eq!(
            (h.pt, h.marker, h.seq, h.timestamp, h.ssrc),
            (96, true, 7, 960, 0xdead_beef)
        );
        assert_eq!(&b[h.payload], b"opus");
        // An extension of one word and two bytes of padding.
        let mut e = b[..12].to_vec();
        e[0] |= 0x30;
        e.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]);
        e.extend_from_slice(b"xy\0\x02");
        assert_eq!(&e[parse(&e).unwrap().payload], b"xy");
        for bad in [
            &b""[..],
            &[0x80; 11],
            &[0x40; 20],
            &[0x8f; 20],
            &[0x90; 14],
            &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200],
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
