//! Finding the tone in audio: the bots and the recording probe check that what arrived
//! is the sine a publisher sent.

/// The frequency (Hz, to `step`) with the most energy between `lo` and `hi` in
/// `samples` (Goertzel at each candidate frequency).
pub fn dominant_frequency(samples: &[f32], rate: u32, lo: u32, hi: u32, step: u32) -> u32 {
    let power = |f: u32| {
        let w = 2.0 * std::f64::consts::PI * f64::from(f) / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in samples {
            let s0 = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coeff * s1 * s2
    };
    (lo..=hi)
        .step_by(step.max(1) as usize)
        .map(|f| (f, power(f)))
        .fold(
            (lo, f64::MIN),
            |best, c| if c.1 > best.1 { c } else { best },
        )
        .0
}
