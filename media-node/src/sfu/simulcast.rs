//! Simulcast: which layer each subscriber gets (asked for by tile size, capped by its
//! bandwidth estimate), the layers a relay link must carry for the subscribers here, and
//! keyframe requests, throttled per layer. The switch itself, on a keyframe of the new
//! layer, is `rtp::Forwarder`'s, for subscribers and sinks alike.
use std::time::Instant;

use str0m::bwe::Bitrate;
use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaKind, Mid, Rid};

use super::api::{PeerKey, RelayEvent, SfuOutput, Source};
use super::core::Sfu;
use super::peer::OutState;

/// Bitrates our client's simulcast layers need (960×540 capture): what a subscriber's
/// estimate must cover per video track to get the layer, and what we ask the bandwidth
/// estimator to probe for.
pub(super) const LAYER_BPS: [(&str, u64); 3] = [("l", 150_000), ("m", 350_000), ("h", 700_000)];

/// What an audio track takes out of a subscriber's estimate.
pub(super) const AUDIO_BPS: u64 = 40_000;

/// The estimate a subscriber starts with, before any feedback.
pub(super) const INITIAL_ESTIMATE_KBPS: u64 = 1_000;

/// How much faster than a subscriber's estimate str0m paces what we forward (str0m
/// patch 7; str0m's own default is 1.1, for an encoder that follows the estimate). The
/// estimate chooses layers; a single layer above it has no lower one to go to, and at
/// 1.1 it queued in the pacer for up to its 2 s limit (resends behind it, frames late).
/// Pacing only smooths bursts here, at libwebrtc's GoogCC multiplier.
pub(super) const PACING_FACTOR: f64 = 2.5;

pub(super) fn layer_rank(r: Rid) -> usize {
    LAYER_BPS
        .iter()
        .position(|(name, _)| Rid::from(*name) == r)
        .unwrap_or(LAYER_BPS.len() - 1)
}

/// `asked`, or the highest lower layer that fits a per-video-track budget.
pub(super) fn capped(asked: Rid, budget_bps: Option<u64>) -> Rid {
    let Some(budget) = budget_bps else {
        return asked;
    };
    let fits = LAYER_BPS
        .iter()
        .rposition(|(_, bps)| *bps <= budget)
        .unwrap_or(0);
    Rid::from(LAYER_BPS[layer_rank(asked).min(fits)].0)
}

/// The simulcast layer that suits a tile of `width` x `height` pixels. Our client
/// publishes `l` (1/4 size), `m` (1/2) and `h` (full).
pub fn layer_for_size(width: u32, height: u32) -> Rid {
    let px = width.max(height * 16 / 9);
    if px <= 320 {
        Rid::from("l")
    } else if px <= 640 {
        Rid::from("m")
    } else {
        Rid::from("h")
    }
}

/// The bit of simulcast layer `rid` in a layer set (the only layer: bit 0).
pub(super) fn layer_bit(rid: Option<Rid>) -> u8 {
    1 << layer_index(rid)
}

/// The index of a layer on relay links: 0 = `l` (or no simulcast), 1 = `m`, 2 = `h`.
pub(super) fn layer_index(rid: Option<Rid>) -> u8 {
    rid.map_or(0, |r| layer_rank(r) as u8)
}

/// The layer of index `i` of a simulcast track.
pub(super) fn layer_rid(i: u8) -> Rid {
    Rid::from(LAYER_BPS[usize::from(i).min(LAYER_BPS.len() - 1)].0)
}

/// Every layer of a track: for a new subscriber that has not started yet, so that it
/// starts on whichever comes first, as a local one would.
pub(super) const ALL_LAYERS: u8 = 0b111;

impl Sfu {
    /// The subscriber wants the layer `rid` of what its m-line `mid` carries.
    pub(super) fn set_layer(&mut self, now: Instant, key: PeerKey, mid: String, rid: Rid) {
        let mid = Mid::from(mid.as_str());
        let cap = self.bandwidth_cap;
        let Some(p) = self.peer_mut(key) else {
            return self.refuse(key, "layer", "no media session yet".into());
        };
        let budget = p.video_budget_bps().filter(|_| cap);
        let Some(t) = p
            .tracks_out
            .iter_mut()
            .find(|t| t.state == OutState::Open(mid) && t.kind == MediaKind::Video)
        else {
            return self.refuse(key, "layer", format!("no video on m-line {mid}"));
        };
        t.asked = rid;
        let rid = capped(rid, budget);
        if t.want == rid {
            return;
        }
        t.want = rid;
        let Some(source) = t.target() else {
            return;
        };
        self.wants_changed = true;
        // Switching needs a keyframe of the new layer.
        self.request_keyframe(now, source, Some(rid), KeyframeRequestKind::Pli);
    }

    pub(super) fn keyframes_for(&mut self, now: Instant, tracks: Vec<Source>) {
        for source in tracks {
            self.request_keyframe(now, source, None, KeyframeRequestKind::Pli);
        }
    }

    pub(super) fn keyframe_from_subscriber(
        &mut self,
        now: Instant,
        i: usize,
        req: KeyframeRequest,
    ) {
        let Some(t) = self.peers[i]
            .tracks_out
            .iter()
            .find(|t| t.state == OutState::Open(req.mid))
        else {
            return;
        };
        let (Some(source), rid) = (t.source, t.forwarder.layer()) else {
            return;
        };
        self.request_keyframe(now, source, rid, req.kind);
    }

    /// Asks the publisher of `source` for a keyframe (of layer `rid`), at most once per
    /// `keyframe_every` per layer, whoever asks. A remote track's request goes back over
    /// its link; the publisher's node throttles it again for everyone.
    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        source: Source,
        rid: Option<Rid>,
        kind: KeyframeRequestKind,
    ) {
        let every = self.keyframe_every;
        let too_soon = |at: Instant| now.saturating_duration_since(at) < every;
        let (origin, mid) = match source {
            Source::Peer(origin, mid) => (origin, mid),
            Source::Remote(link, track_id) => {
                let Some(r) = self
                    .remotes
                    .iter_mut()
                    .find(|r| r.link == link && r.track_id == track_id)
                else {
                    return;
                };
                let layer = if r.layers > 1 { layer_index(rid) } else { 0 };
                let last = &mut r.last_keyframe_request[usize::from(layer)];
                if r.kind != MediaKind::Video || last.is_some_and(too_soon) {
                    return;
                }
                *last = Some(now);
                return self.out.push_back(SfuOutput::Link {
                    link,
                    event: RelayEvent::Keyframe { track_id, layer },
                });
            }
        };
        let Some(p) = self.peer_mut(origin) else {
            return;
        };
        let Some(t) = p.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        match t.last_keyframe_request.iter_mut().find(|(r, _)| *r == rid) {
            Some((_, at)) if too_soon(*at) => return,
            Some((_, at)) => *at = now,
            None => t.last_keyframe_request.push((rid, now)),
        }
        if let Some(s) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            s.request_keyframe(kind);
            p.dirty = true;
        }
    }

    /// Caps each subscriber's layers by its bandwidth estimate (moving down, or back up
    /// to what it asked for, on the layer's next keyframe), and tells its estimator how
    /// much it would like to send so that it probes up to that.
    pub(super) fn adapt_layers(&mut self, now: Instant) {
        let cap = self.bandwidth_cap;
        let mut keyframes = Vec::new();
        for p in &mut self.peers {
            let budget = p.video_budget_bps().filter(|_| cap);
            let mut desired = 0;
            for t in &mut p.tracks_out {
                let Some(source) = t.target() else {
                    continue;
                };
                if !matches!(t.state, OutState::Open(_)) {
                    continue;
                }
                if t.kind == MediaKind::Audio {
                    desired += AUDIO_BPS;
                    continue;
                }
                desired += LAYER_BPS[layer_rank(t.asked)].1;
                let want = capped(t.asked, budget);
                if want != t.want {
                    t.want = want;
                    keyframes.push((source, want));
                }
            }
            if desired > 0 {
                p.rtc
                    .bwe()
                    .set_bitrate(Bitrate::kbps(100), Bitrate::from(desired));
                p.dirty = true;
            }
        }
        // Layers in use change as subscribers switch: tell the far nodes.
        self.wants_changed = true;
        for (source, rid) in keyframes {
            self.request_keyframe(now, source, Some(rid), KeyframeRequestKind::Pli);
        }
    }

    /// What local subscribers (and sinks) need of each remote track now: the layer each
    /// one wants and the one it gets (every layer while it has not started), or nothing.
    /// Changes go to the far node, which sends only that.
    pub(super) fn update_remote_layers(&mut self) {
        for r in &mut self.remotes {
            let source = Source::Remote(r.link, r.track_id);
            let simulcast = r.layers > 1;
            let mut mask = 0;
            // Its audio always comes while anyone here may hear it: audio slots go to
            // whoever speaks loudest, which only its levels tell.
            if r.kind == MediaKind::Audio && self.peers.iter().any(|p| p.meeting == r.meeting) {
                mask = 1;
            }
            for p in self.peers.iter().filter(|p| p.meeting == r.meeting) {
                for t in p.tracks_out.iter().filter(|t| {
                    t.carries(source) && t.receiving && matches!(t.state, OutState::Open(_))
                }) {
                    mask |= match t.forwarder.layer() {
                        _ if !simulcast => 1,
                        // A slot moving to it starts on the layer it wants.
                        _ if t.source != Some(source) => layer_bit(Some(t.want)),
                        None => ALL_LAYERS,
                        Some(now) => layer_bit(Some(t.want)) | layer_bit(Some(now)),
                    };
                }
            }
            for s in self.sinks.iter().filter(|s| s.meeting == r.meeting) {
                mask |= match s.tracks.iter().find(|t| t.source == source) {
                    _ if !simulcast => 1,
                    // Not started: every layer, to start on whichever comes first.
                    None => ALL_LAYERS,
                    Some(t) if t.layer().is_none() => ALL_LAYERS,
                    Some(t) => layer_bit(Some(t.want)) | layer_bit(t.layer()),
                };
            }
            if mask != r.mask {
                r.mask = mask;
                self.out.push_back(SfuOutput::Link {
                    link: r.link,
                    event: RelayEvent::Layers {
                        track_id: r.track_id,
                        mask,
                    },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_capped_by_the_budget_but_never_above_what_was_asked() {
        let (l, m, h) = (Rid::from("l"), Rid::from("m"), Rid::from("h"));
        assert_eq!(capped(h, None), h, "no estimate yet: no cap");
        assert_eq!(capped(h, Some(2_000_000)), h);
        assert_eq!(capped(h, Some(400_000)), m);
        assert_eq!(capped(h, Some(100_000)), l, "the low layer always goes");
        assert_eq!(capped(m, Some(2_000_000)), m, "a small tile stays small");
        assert_eq!(capped(l, Some(2_000_000)), l);
    }

    #[test]
    fn tile_sizes_map_to_layers() {
        assert_eq!(layer_for_size(320, 180), Rid::from("l"));
        assert_eq!(layer_for_size(640, 360), Rid::from("m"));
        assert_eq!(layer_for_size(1280, 720), Rid::from("h"));
    }
}
