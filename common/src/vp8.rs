//! The VP8 RTP payload descriptor (RFC 7741 §4.2), read in one place: the media node's
//! forwarder rewrites the picture id and TL0PICIDX at the offsets found here, and the bot
//! counts keyframes and strips descriptors to decode what it received. Pure: garbage
//! never panics.

/// What the descriptor at the start of a VP8 RTP payload says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// The descriptor's length: where the VP8 data starts.
    pub len: usize,
    /// S: the packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// PID: the partition the packet belongs to (0 is the first).
    pub partition_index: u8,
    pub picture_id: Option<PictureId>,
    pub tl0: Option<Tl0PicIdx>,
    /// Whether the payload starts a keyframe (RFC 7741 §4.3): S set, partition 0, and
    /// the VP8 frame header after the descriptor with its P bit clear. False when no VP8
    /// data follows the descriptor.
    pub keyframe_start: bool,
}

/// The picture id, and where a forwarder rewrites it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PictureId {
    pub value: u16,
    /// 15 bits wide (its M bit set: two bytes) rather than 7 (one byte). A rewrite keeps
    /// the width, so that the payload keeps its size.
    pub wide: bool,
    /// Where its first byte is in the payload.
    pub offset: usize,
}

/// TL0PICIDX, and where a forwarder rewrites it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tl0PicIdx {
    pub value: u8,
    /// Where it is in the payload.
    pub offset: usize,
}

/// Reads the descriptor of a VP8 RTP payload; None when the payload is too short for the
/// descriptor it announces.
pub fn parse(payload: &[u8]) -> Option<Descriptor> {
    let first = *payload.first()?;
    let mut d = Descriptor {
        start_of_partition: first & 0x10 != 0,
        partition_index: first & 0x07,
        ..Descriptor::default()
    };
    let mut at = 1;
    if first & 0x80 != 0 {
        // X: an extension byte says which optional fields follow, in this order.
        let x = *payload.get(1)?;
        at = 2;
        if x & 0x80 != 0 {
            // I: the picture id, one byte, or two when its M bit is set.
            let p = *payload.get(at)?;
            if p & 0x80 != 0 {
                let low = *payload.get(at + 1)?;
                d.picture_id = Some(PictureId {
                    value: u16::from(p & 0x7f) << 8 | u16::from(low),
                    wide: true,
                    offset: at,
                });
                at += 2;
            } else {
                d.picture_id = Some(PictureId {
                    value: u16::from(p),
                    wide: false,
                    offset: at,
                });
                at += 1;
            }
        }
        if x & 0x40 != 0 {
            // L: TL0PICIDX.
            d.tl0 = Some(Tl0PicIdx {
                value: *payload.get(at)?,
                offset: at,
            });
            at += 1;
        }
        if x & 0x30 != 0 {
            // T or K: one byte of TID, Y and KEYIDX, which nobody here reads.
            at += 1;
        }
    }
    if at > payload.len() {
        return None;
    }
    d.len = at;
    d.keyframe_start = d.start_of_partition
        && d.partition_index == 0
        && payload.get(at).is_some_and(|header| header & 0x01 == 0);
    Some(d)
}

/// Whether a VP8 RTP payload starts a keyframe (see [`Descriptor::keyframe_start`]).
pub fn keyframe_start(payload: &[u8]) -> bool {
    parse(payload).is_some_and(|d| d.keyframe_start)
}

/// A small VP8 payload: a descriptor with a 15-bit picture id, TL0PICIDX and a TID byte,
/// then one byte of frame header (P bit clear for a keyframe) and one of data. What the
/// tests of every VP8 reader (here, the SFU's forwarder) feed them.
pub fn example(start: bool, key: bool, pic: u16, tl0: u8) -> Vec<u8> {
    let s = if start { 0x10 } else { 0 };
    vec![
        0x80 | s,
        0xc0 | 0x20,
        0x80 | (pic >> 8) as u8,
        pic as u8,
        tl0,
        0x00,
        if key { 0x00 } else { 0x01 },
        0xaa,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp8(start: bool, key: bool, pic: u16, tl0: u8) -> Vec<u8> {
        example(start, key, pic, tl0)
    }

    #[test]
    fn descriptors_are_read_and_keyframes_found() {
        let d = parse(&vp8(true, true, 0x1234, 7)).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x1234,
                wide: true,
                offset: 2
            })
        );
        assert_eq!(
            d.tl0,
            Some(Tl0PicIdx {
                value: 7,
                offset: 4
            })
        );
        assert_eq!(d.len, 6);
        assert!(d.keyframe_start);
        assert!(!parse(&vp8(true, false, 1, 1)).unwrap().keyframe_start);
        assert!(!parse(&vp8(false, true, 1, 1)).unwrap().keyframe_start);
        // No extension: one byte of descriptor.
        assert!(parse(&[0x10, 0x00]).unwrap().keyframe_start);
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x90, 0x80, 0x81]), None, "truncated picture id");
    }

    #[test]
    fn recognises_keyframe_starts() {
        // S=1, PID=0, no extensions; VP8 header with P=0 (keyframe).
        assert!(keyframe_start(&[0x10, 0x00]));
        // Inter frame.
        assert!(!keyframe_start(&[0x10, 0x01]));
        // Not the start of a partition.
        assert!(!keyframe_start(&[0x00, 0x00]));
        // The start of a partition other than the first.
        assert!(!keyframe_start(&[0x13, 0x00]));
        // X=1 with a two-byte picture id (I=1, M=1), then the keyframe header.
        assert!(keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        // Truncated garbage never panics.
        assert!(!keyframe_start(&[0x90]));
        assert!(!keyframe_start(&[]));
    }

    #[test]
    fn seven_bit_picture_ids_partitions_and_a_descriptor_without_data() {
        let d = parse(&[0x93, 0x80, 0x05, 0x9d]).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 5,
                wide: false,
                offset: 2
            })
        );
        assert_eq!(
            (d.len, d.start_of_partition, d.partition_index),
            (3, true, 3)
        );
        assert!(!d.keyframe_start, "not partition 0");
        // A descriptor with nothing after it is whole, but starts no keyframe.
        let d = parse(&[0x10]).unwrap();
        assert_eq!((d.len, d.keyframe_start), (1, false));
        let d = parse(&[0x90, 0x10, 0x00]).unwrap();
        assert_eq!((d.len, d.picture_id, d.tl0), (3, None, None));
        assert_eq!(parse(&[0x90, 0x40]), None, "announced TL0PICIDX missing");
    }

    #[test]
    fn tid_and_keyidx_share_one_byte() {
        // X, then T and K both set: one TID/Y/KEYIDX byte, not two.
        assert_eq!(parse(&[0x90, 0x30, 0x00, 0x00]).unwrap().len, 3);
        assert_eq!(parse(&[0x90, 0x20, 0x00]).unwrap().len, 3);
        // The byte they announce is missing.
        assert!(parse(&[0x90, 0x20]).is_none());
    }

    #[test]
    fn garbage_never_panics_and_offsets_stay_inside() {
        // Every first byte and extension byte, before every prefix of a few tails.
        for first in 0..=255u8 {
            for x in 0..=255u8 {
                for tail in [[0xff; 4], [0x80, 0, 0, 0], [0; 4]] {
                    let whole = [&[first, x][..], &tail[..]].concat();
                    for n in 0..=whole.len() {
                        let p = &whole[..n];
                        let Some(d) = parse(p) else {
                            continue;
                        };
                        assert!(d.len <= p.len());
                        if let Some(id) = d.picture_id {
                            assert!(id.offset + usize::from(id.wide) < d.len);
                        }
                        if let Some(t) = d.tl0 {
                            assert!(t.offset < d.len);
                        }
                        // A keyframe starts where partition 0 starts and the frame
                        // header after the descriptor has its P bit clear.
                        let key = d.start_of_partition
                            && d.partition_index == 0
                            && p.get(d.len).is_some_and(|h| h & 1 == 0);
                        assert_eq!(d.keyframe_start, key, "{p:?}");
                    }
                }
            }
        }
    }
}
