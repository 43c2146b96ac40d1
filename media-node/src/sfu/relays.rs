//! Relay peers of a meeting: links to the other media nodes (our local tracks go out on
//! them, the far node's tracks come in as `RemoteTrack`s) and sinks (a recording node).
//! Their state and the commands that attach, subscribe, ask for keyframes and detach;
//! the packets they carry are `forward`'s.
use std::time::Instant;

use common::ids::{MeetingId, ParticipantId};
use relay::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Rid};

use super::api::{LinkKey, RelayEvent, RemoteTrackInfo, SfuOutput, SinkKey, Source};
use super::core::Sfu;
use super::simulcast::{ALL_LAYERS, layer_rid};
use super::sink::SinkTrack;

/// A track of a participant on another media node, fed in over a relay link.
pub(super) struct RemoteTrack {
    pub(super) link: LinkKey,
    pub(super) track_id: u32,
    pub(super) meeting: MeetingId,
    pub(super) participant: ParticipantId,
    pub(super) name: String,
    pub(super) kind: MediaKind,
    pub(super) codec: Codec,
    pub(super) clock_rate: u32,
    /// 3 for simulcast (layer by layer), else 1.
    pub(super) layers: u8,
    /// The highest extended sequence number so far, per layer.
    pub(super) highest_seq: [Option<u64>; 3],
    /// When we last asked the far node for a keyframe, per layer.
    pub(super) last_keyframe_request: [Option<Instant>; 3],
    /// The layers we asked the far node for (bit set; 0: not subscribed).
    pub(super) mask: u8,
    /// Smoothed loudness and the current window, as for a local track.
    pub(super) loudness: f32,
    pub(super) window: (f32, u32),
    /// Its publisher's breakout room (0: the main room).
    pub(super) group: u32,
    /// When it came, among the SFU's tracks: the gallery's stable order.
    pub(super) order: u64,
}

/// A relay link to another media node, as the sender of our local tracks.
pub(super) struct Link {
    pub(super) key: LinkKey,
    pub(super) meeting: MeetingId,
    pub(super) tracks: Vec<LinkTrack>,
    pub(super) next_track_id: u32,
}

/// One of our local tracks on a link: announced at its first packet, sent while the far
/// node subscribes, layer by layer, as the publisher sent it.
pub(super) struct LinkTrack {
    pub(super) track_id: u32,
    pub(super) source: Source,
    pub(super) codec: Codec,
    pub(super) simulcast: bool,
    /// The layers the far node subscribed to (bit set).
    pub(super) mask: u8,
}

/// A relay sink of a meeting (a recording node): fed every track published there.
pub(super) struct Sink {
    pub(super) key: SinkKey,
    pub(super) meeting: MeetingId,
    pub(super) tracks: Vec<SinkTrack>,
    pub(super) next_track_id: u32,
}

/// Removes the relay tracks (a sink's or a link's) whose source is `gone`; returns their
/// track ids.
pub(super) fn drop_gone<T>(
    tracks: &mut Vec<T>,
    id: impl Fn(&T) -> (Source, u32),
    gone: impl Fn(&Source) -> bool,
) -> Vec<u32> {
    let mut dropped = Vec::new();
    tracks.retain(|t| {
        let (source, track_id) = id(t);
        let keep = !gone(&source);
        if !keep {
            dropped.push(track_id);
        }
        keep
    });
    dropped
}

impl Sfu {
    /// Our track `track_id` on relay link `link`.
    pub(super) fn link_track(&mut self, link: LinkKey, track_id: u32) -> Option<&mut LinkTrack> {
        self.links
            .iter_mut()
            .find(|l| l.key == link)?
            .tracks
            .iter_mut()
            .find(|t| t.track_id == track_id)
    }

    /// A relay sink attached to `meeting`: it is fed every track published there.
    pub(super) fn attach_sink(&mut self, key: SinkKey, meeting: MeetingId) {
        if !self.sinks.iter().any(|s| s.key == key) {
            self.sinks.push(Sink {
                key,
                meeting: meeting.clone(),
                tracks: Vec::new(),
                next_track_id: 1,
            });
            self.wants_changed = true;
            // It is told who speaks now; then each change.
            if let Some((_, participant)) = self.speakers.iter().find(|(m, _)| *m == meeting) {
                let participant = participant.clone();
                self.out.push_back(SfuOutput::Sink {
                    key,
                    event: RelayEvent::Speaker { participant },
                });
            }
        }
    }

    pub(super) fn detach_sink(&mut self, key: SinkKey) {
        self.sinks.retain(|s| s.key != key);
        self.wants_changed = true;
    }

    /// The sink needs a keyframe of its track `track_id`.
    pub(super) fn sink_keyframe(&mut self, now: Instant, key: SinkKey, track_id: u32) {
        let Some(t) = self
            .sinks
            .iter()
            .find(|s| s.key == key)
            .and_then(|s| s.tracks.iter().find(|t| t.track_id == track_id))
        else {
            return;
        };
        let (source, rid) = (t.source, t.layer());
        self.request_keyframe(now, source, rid, KeyframeRequestKind::Pli);
    }

    /// The sink wants layer `rid` of its track `track_id`: it switches on that layer's
    /// next keyframe, which is asked for now; far nodes are told the layers needed.
    pub(super) fn sink_layer(&mut self, now: Instant, key: SinkKey, track_id: u32, rid: Rid) {
        let Some(t) = self
            .sinks
            .iter_mut()
            .find(|s| s.key == key)
            .and_then(|s| s.tracks.iter_mut().find(|t| t.track_id == track_id))
        else {
            return;
        };
        if t.want == rid {
            return;
        }
        t.want = rid;
        let (source, simulcast) = (t.source, t.layer().is_some());
        self.wants_changed = true;
        if simulcast {
            self.request_keyframe(now, source, Some(rid), KeyframeRequestKind::Pli);
        }
    }

    /// A relay link to another media node of `meeting` opened.
    pub(super) fn attach_link(&mut self, link: LinkKey, meeting: MeetingId) {
        if !self.links.iter().any(|l| l.key == link) {
            self.links.push(Link {
                key: link,
                meeting,
                tracks: Vec::new(),
                next_track_id: 1,
            });
        }
    }

    /// The far node wants the layers `mask` of our track `track_id` (0: unsubscribe).
    pub(super) fn link_subscribe(&mut self, now: Instant, link: LinkKey, track_id: u32, mask: u8) {
        let Some(t) = self.link_track(link, track_id) else {
            return;
        };
        let mask = if t.simulcast {
            mask & ALL_LAYERS
        } else {
            mask.min(1)
        };
        let added = mask & !t.mask;
        t.mask = mask;
        let (source, simulcast) = (t.source, t.simulcast);
        // The publisher may have to send a layer it stopped (dynacast).
        self.wants_changed = true;
        // The far node's subscribers start on a keyframe of each layer it added.
        for i in (0..3u8).filter(|i| added & (1 << i) != 0) {
            let rid = simulcast.then(|| layer_rid(i));
            self.request_keyframe(now, source, rid, KeyframeRequestKind::Pli);
        }
    }

    /// The far node needs a keyframe of our track `track_id`, layer `layer`.
    pub(super) fn link_keyframe(&mut self, now: Instant, link: LinkKey, track_id: u32, layer: u8) {
        let Some(t) = self.link_track(link, track_id) else {
            return;
        };
        let (source, rid) = (t.source, t.simulcast.then(|| layer_rid(layer)));
        self.request_keyframe(now, source, rid, KeyframeRequestKind::Pli);
    }

    /// A track the far node announced: local peers of the meeting are offered it.
    pub(super) fn add_remote_track(&mut self, track: RemoteTrackInfo) {
        let RemoteTrackInfo {
            link,
            meeting,
            track_id,
            participant,
            name,
            kind,
            codec,
            clock_rate,
            layers,
        } = track;
        if self
            .remotes
            .iter()
            .any(|r| r.link == link && r.track_id == track_id)
        {
            return;
        }
        // Receivers get it in a slot (`allocate`).
        self.slots_dirty = true;
        let order = super::slots::next_order(&mut self.track_order);
        let group = self.group_of(&meeting, &participant);
        self.remotes.push(RemoteTrack {
            group,
            link,
            track_id,
            meeting,
            participant,
            name,
            kind,
            codec,
            clock_rate,
            layers: if layers > 1 { 3 } else { 1 },
            highest_seq: [None; 3],
            last_keyframe_request: [None; 3],
            mask: 0,
            loudness: 0.0,
            window: (0.0, 0),
            order,
        });
        self.wants_changed = true;
    }

    pub(super) fn end_remote_track(&mut self, link: LinkKey, track_id: u32) {
        self.remotes
            .retain(|r| !(r.link == link && r.track_id == track_id));
        self.retire(|s| *s == Source::Remote(link, track_id));
    }

    /// The link is gone: its tracks and the far node's tracks on it end.
    pub(super) fn link_down(&mut self, link: LinkKey) {
        self.links.retain(|l| l.key != link);
        self.remotes.retain(|r| r.link != link);
        self.retire(|s| matches!(s, Source::Remote(l, _) if *l == link));
    }
}
