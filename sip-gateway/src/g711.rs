//! G.711 (ITU-T G.711): μ-law (PCMU) and A-law (PCMA), 8 kHz, one byte a sample; and
//! the loudness of a frame as an RFC 6464 audio level.

pub fn ulaw_encode(s: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut v = i32::from(s);
    let sign = if v < 0 { 0x80 } else { 0 };
    if v < 0 {
        v = -v;
    }
    v = v.min(32_635) + BIAS;
    let exponent = 31 - ((v >> 7) as u32 & 0xff).leading_zeros() as i32;
    let mantissa = (v >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

pub fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let exponent = i32::from((u >> 4) & 7);
    let mantissa = i32::from(u & 0x0f);
    let s = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -s } else { s }) as i16
}

pub fn alaw_encode(s: i16) -> u8 {
    let mut pcm = i32::from(s) >> 3;
    let mask: i32 = if pcm >= 0 {
        0xd5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    const ENDS: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let Some(seg) = ENDS.iter().position(|&e| pcm <= e) else {
        return (0x7f ^ mask) as u8;
    };
    let mut a = (seg as i32) << 4;
    a |= if seg < 2 {
        (pcm >> 1) & 0x0f
    } else {
        (pcm >> seg) & 0x0f
    };
    (a ^ mask) as u8
}

pub fn alaw_decode(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    let seg = i32::from((a & 0x70) >> 4);
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// The RFC 6464 level of `samples`: -dBov of their RMS, 0 (loudest) to 127 (silence).
pub fn level(samples: &[i16]) -> u8 {
    if samples.is_empty() {
        return 127;
    }
    let power: f64 = samples
        .iter()
        .map(|&s| (f64::from(s) / 32_768.0).powi(2))
        .sum::<f64>()
        / samples.len() as f64;
    if power <= 1e-13 {
        return 127;
    }
    (-10.0 * power.log10()).round().clamp(0.0, 127.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_laws_round_trip_within_their_step_and_keep_the_sign() {
        for s in (-32_768i32..32_768).step_by(97) {
            let s = s as i16;
            for (enc, dec) in [
                (ulaw_encode as fn(i16) -> u8, ulaw_decode as fn(u8) -> i16),
                (alaw_encode, alaw_decode),
            ] {
                let back = i32::from(dec(enc(s)));
                let err = (back - i32::from(s)).abs();
                // Logarithmic steps: at most about 1/16 of the value, and small near 0.
                assert!(err <= 16 + i32::from(s).abs() / 15, "{s} -> {back}");
                if i32::from(s).abs() > 64 {
                    assert_eq!(back.signum(), i32::from(s).signum(), "{s}");
                }
            }
        }
        // The well-known codes of silence.
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(alaw_encode(0), 0xd5);
    }

    #[test]
    fn a_full_scale_tone_is_loud_and_silence_is_127() {
        let tone: Vec<i16> = (0..160)
            .map(|i| (32_000.0 * (i as f64 * 0.3).sin()) as i16)
            .collect();
        assert!(level(&tone) <= 4, "{}", level(&tone));
        let quiet: Vec<i16> = tone.iter().map(|s| s / 100).collect();
        assert!((40..=44).contains(&level(&quiet)), "{}", level(&quiet));
        assert_eq!(level(&[0; 160]), 127);
    }
}
