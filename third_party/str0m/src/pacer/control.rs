use crate::rtp_::Bitrate;

/// The pacing rate over the estimate, unless the config sets another
/// (Fjord: `RtcConfig::set_pacing_factor`).
pub(crate) const DEFAULT_PACING_FACTOR: f64 = 1.1;

/// Automatic padding target when media is active. This maintains NAT bindings, RTX state,
/// and allows ALR periodic probes to discover higher bandwidth.
const PADDING_TARGET: Bitrate = Bitrate::bps(50_000);

/// Fjord: the pacing rate when no sending media section has TWCC feedback (10 Gbit/s:
/// packets leave as they are written).
const UNPACED: Bitrate = Bitrate::bps(10_000_000_000);

pub(crate) struct PacingResult {
    /// The bitrate at which the pacer may emit padding **when there is no media queued**.
    ///
    /// This value is intentionally an *absolute* target used by the pacer, not a “delta to add
    /// on top of current media”. In practice the **effective padding** over time is the
    /// difference between this target and the media actually sent, because padding is only used
    /// to fill gaps (empty queues), not to continuously top-up while media is flowing.
    pub padding_rate: Bitrate,
    pub pacing_rate: Bitrate,
}

/// Controls the pacing and padding rates.
pub(crate) struct PacerControl {
    /// Fjord: the pacing rate over the estimate (`RtcConfig::set_pacing_factor`).
    pacing_factor: f64,
}

impl PacerControl {
    pub fn new(pacing_factor: f64) -> Self {
        Self { pacing_factor }
    }

    pub fn calculate(
        &self,
        has_active_media: bool,
        estimate: Bitrate,
        is_overuse: bool,
        minimum: Bitrate,
    ) -> PacingResult {
        let padding_rate = if is_overuse {
            // No padding during overuse
            Bitrate::ZERO
        } else if has_active_media {
            // Sustain the requested minimum without exceeding estimated capacity.
            // Keep the automatic target for NAT bindings and RTX state.
            PADDING_TARGET.max(minimum).min(estimate)
        } else {
            // No padding when no media is being sent
            Bitrate::ZERO
        };

        // Set pacing rate to smooth out media transmission (burst avoidance).
        // Must be at least the current BWE estimate * factor, but also high enough
        // to allow the padding we want to send.
        //
        // Fjord: without media that gets TWCC feedback no estimate ever moves (it stays the
        // initial one), and pacing at it queues media the receiver can take, up to the
        // queue limit (seconds of delay, then frames too late to use): don't pace then.
        let min_pacing_rate = estimate * self.pacing_factor;
        let pacing_rate = if has_active_media {
            min_pacing_rate.max(padding_rate)
        } else {
            UNPACED
        };

        PacingResult {
            padding_rate,
            pacing_rate,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn padding_enabled_with_active_media() {
        let c = PacerControl::new(DEFAULT_PACING_FACTOR);
        let estimate = Bitrate::kbps(1_000);

        let r = c.calculate(true, estimate, false, Bitrate::ZERO);

        assert_eq!(r.padding_rate, PADDING_TARGET);
    }

    #[test]
    fn no_padding_without_active_media() {
        let c = PacerControl::new(DEFAULT_PACING_FACTOR);
        let estimate = Bitrate::kbps(1_000);

        let r = c.calculate(false, estimate, false, Bitrate::mbps(2));

        assert_eq!(r.padding_rate, Bitrate::ZERO);
    }

    #[test]
    fn no_pacing_without_media_that_gets_twcc_feedback() {
        let c = PacerControl::new(DEFAULT_PACING_FACTOR);
        let r = c.calculate(false, Bitrate::kbps(1_000), false, Bitrate::ZERO);
        assert_eq!(r.pacing_rate, UNPACED);

        let r = c.calculate(true, Bitrate::kbps(1_000), false, Bitrate::ZERO);
        assert_eq!(r.pacing_rate, Bitrate::kbps(1_000) * DEFAULT_PACING_FACTOR);
    }

    // Fjord: a forwarder paces at a factor of its own over the estimate.
    #[test]
    fn the_pacing_rate_is_the_estimate_times_the_configured_factor() {
        let c = PacerControl::new(2.5);
        let r = c.calculate(true, Bitrate::kbps(1_000), false, Bitrate::ZERO);
        assert_eq!(r.pacing_rate, Bitrate::kbps(2_500));
        // Padding is still within the estimate, and no TWCC still means unpaced.
        assert_eq!(r.padding_rate, PADDING_TARGET);
        let r = c.calculate(false, Bitrate::kbps(1_000), false, Bitrate::ZERO);
        assert_eq!(r.pacing_rate, UNPACED);
    }

    #[test]
    fn overuse_suppresses_padding() {
        let c = PacerControl::new(DEFAULT_PACING_FACTOR);
        let estimate = Bitrate::mbps(40);

        let r = c.calculate(true, estimate, true, Bitrate::mbps(2));
        assert_eq!(r.padding_rate, Bitrate::ZERO);
    }

    #[test]
    fn minimum_tracks_estimate_without_exceeding_target() {
        let c = PacerControl::new(DEFAULT_PACING_FACTOR);
        let minimum = Bitrate::kbps(800);
        // Both increasing and decreasing estimates must immediately change the cap.
        for (estimate, expected) in [(450, 450), (700, 700), (1000, 800), (300, 300)] {
            let result = c.calculate(true, Bitrate::kbps(estimate), false, minimum);
            assert_eq!(result.padding_rate, Bitrate::kbps(expected));
            assert_eq!(
                result.pacing_rate,
                Bitrate::kbps(estimate) * DEFAULT_PACING_FACTOR
            );
        }
    }

    #[test]
    fn automatic_padding_is_also_capped_by_estimate() {
        let c = PacerControl::new(DEFAULT_PACING_FACTOR);
        for estimate in [Bitrate::ZERO, Bitrate::kbps(20)] {
            let result = c.calculate(true, estimate, false, Bitrate::ZERO);
            assert_eq!(result.padding_rate, estimate);
        }
    }
}
