//! Forwarding, packet by packet: locate an incoming packet (track, layer, codec), write it
//! into every subscriber receiving that track (renumbered by its `rtp::Forwarder`), and
//! hand it to the meeting's sinks and links. Remote packets from links enter here too.
use std::collections::VecDeque;
use std::time::Instant;

use common::ids::{MeetingId, ParticipantId};
use relay::Codec;
use str0m::Rtc;
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Vp8Descriptor};

use super::api::{LinkKey, PeerKey, RelayEvent, SfuOutput, Source};
use super::codec::{from_str0m, to_str0m};
use super::core::{HOP_SAMPLES, Sfu};
use super::peer::{OutState, Peer};
use super::relays::{Link, LinkTrack, Sink};
use super::rtp::{self, PacketIn, Verdict};
use super::simulcast::{layer_index, layer_rid};
use super::sink::{self, SinkTrack};
use super::speaker::loudness_of;

/// What a subscriber's copy of a packet carries of the publisher's header extensions:
/// the ones about the media (str0m adds the transport's own).
pub(super) fn media_extensions(from: &ExtensionValues) -> ExtensionValues {
    ExtensionValues {
        audio_level: from.audio_level,
        voice_activity: from.voice_activity,
        video_orientation: from.video_orientation,
        ..ExtensionValues::default()
    }
}

/// One incoming packet of a publisher, located: which track, and how to read it.
pub(super) struct Located {
    pub(super) mid: Mid,
    pub(super) params: PayloadParams,
    pub(super) codec: Codec,
    pub(super) packet: PacketIn,
}

/// The wall clock as the driver last told it: an instant and the Unix time then. Relay
/// links carry arrival times between nodes, whose monotonic clocks differ; the core
/// reads no clock, so it turns its instants into Unix time from this.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    pub at: Instant,
    pub unix_us: u64,
}

/// The Unix time, in microseconds, of the instant `t` on `wall` (0: not known yet).
pub(super) fn unix_us_at(wall: Option<&WallClock>, t: Instant) -> u64 {
    wall.map_or(0, |w| w.unix_us_at(t))
}

impl WallClock {
    /// The Unix time, in microseconds, of the instant `t`.
    pub(super) fn unix_us_at(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.at) {
            Some(after) => self.unix_us + after.as_micros() as u64,
            None => self
                .unix_us
                .saturating_sub(self.at.duration_since(t).as_micros() as u64),
        }
    }
}

/// What a forwarded packet carries besides its place in the stream.
pub(super) struct Payload<'a> {
    pub(super) data: &'a std::sync::Arc<[u8]>,
    pub(super) marker: bool,
    pub(super) ext: &'a ExtensionValues,
    /// Its payload type where it came from.
    pub(super) pt: Pt,
}

/// Who published a track, for sinks.
pub(super) struct Who<'a> {
    pub(super) meeting: &'a MeetingId,
    pub(super) participant: &'a ParticipantId,
    pub(super) name: &'a str,
}

impl Who<'_> {
    /// The announcement, to a sink or link, of a track of this participant whose first
    /// packet is `p`; `layers` as [`RelayEvent::Announce`] says.
    fn announce(&self, track_id: u32, codec: Codec, p: &PacketIn, layers: u8) -> RelayEvent {
        RelayEvent::Announce {
            track_id,
            participant: self.participant.clone(),
            name: self.name.to_owned(),
            kind: if p.video {
                MediaKind::Video
            } else {
                MediaKind::Audio
            },
            codec,
            clock_rate: p.clock_rate,
            layers,
        }
    }
}

/// What writing a packet to the subscribers did.
#[derive(Default)]
pub(super) struct FannedOut {
    /// A subscriber waits for a keyframe of the packet's layer.
    pub(super) want_keyframe: bool,
    /// A slot moved to the packet's source: its receiver is to be told.
    pub(super) switched: bool,
}

/// The peers of `route` (indices into the whole list of peers, ascending, with their
/// keys) that are in `peers`, the part of that list from index `offset`: each once, by
/// splitting the slice (no look at the others), and only while it is the peer the route
/// was made for (peers that left since moved the others' indices).
fn routed<'a>(
    peers: &'a mut [Peer],
    offset: usize,
    route: &'a [(usize, PeerKey)],
) -> impl Iterator<Item = &'a mut Peer> {
    let mut rest = peers;
    let mut next = offset;
    route.iter().filter_map(move |&(i, key)| {
        if i < next {
            return None;
        }
        let tail = std::mem::take(&mut rest);
        let (peer, tail) = tail.get_mut(i - next..)?.split_first_mut()?;
        rest = tail;
        next = i + 1;
        (peer.key == key).then_some(peer)
    })
}

/// Writes one packet of `source` into every subscriber's `Rtc` among `subscribers` that
/// receives it (on an m-line of its own, or a slot that carries it or moves to it on
/// this packet). Per subscriber this neither allocates nor locks: the payload is one
/// `Arc` shared by all of them, rewritten (SSRC, sequence number, time, VP8 picture id)
/// as str0m encrypts it. `pt_for` finds a subscriber's payload type for the packet's
/// codec (once per track and payload type).
pub(super) fn fan_out<'a>(
    subscribers: impl Iterator<Item = &'a mut Peer>,
    source: Source,
    p: &PacketIn,
    payload: &Payload,
    pt_for: impl Fn(&Rtc) -> Option<Pt>,
) -> FannedOut {
    let mut done = FannedOut::default();
    for sub in subscribers {
        for t in sub.tracks_out.iter_mut() {
            if !t.carries(source) {
                continue;
            }
            let (OutState::Open(_), true, Some(ssrc)) = (t.state, t.receiving, t.ssrc) else {
                continue;
            };
            let wanted_layer = p.rid.is_none() || p.rid == Some(t.want);
            if t.next == Some(source) {
                // A slot moves to this source on a packet its stream can start with:
                // audio any, video the first of a keyframe of the layer it wants (of
                // any layer once that one kept it waiting: it may not be sent).
                let waited = t
                    .next_since
                    .is_some_and(|since| p.at.saturating_duration_since(since) > rtp::LAYER_STALE);
                if p.video && !(p.keyframe_start && (wanted_layer || waited)) {
                    done.want_keyframe |= wanted_layer || waited;
                    continue;
                }
                t.next_since = None;
                t.source = t.next.take();
                t.forwarder.pause();
                t.pt = None;
                sub.slots_changed = true;
                done.switched = true;
            }
            let layer = t.forwarder.layer();
            let out = match t.forwarder.handle(p, p.rid.map(|_| t.want)) {
                // A slot's receiver is told the layer it gets now (`slots`).
                Verdict::Forward(out) if t.forwarder.layer() != layer => {
                    sub.slots_changed = true;
                    done.switched = true;
                    out
                }
                Verdict::Forward(out) => out,
                Verdict::Drop => continue,
                Verdict::WaitKeyframe => {
                    done.want_keyframe = true;
                    continue;
                }
            };
            let pt = match t.pt {
                Some((from, to)) if from == payload.pt => to,
                _ => {
                    let Some(to) = pt_for(&sub.rtc) else {
                        continue;
                    };
                    t.pt = Some((payload.pt, to));
                    to
                }
            };
            let mut write = RtpWrite::new(
                pt,
                out.seq.into(),
                out.timestamp,
                p.at,
                payload.data.clone(),
            )
            .marker(payload.marker)
            .ext_vals(payload.ext.clone())
            .nackable(p.video);
            if let Some((picture_id, tl0)) = out.vp8 {
                match vp8_patch(payload.data, picture_id, tl0) {
                    Some(patch) => write = write.vp8_patch(patch),
                    None => continue,
                }
            }
            let mut direct = sub.rtc.direct_api();
            // A write only (str0m change 16): the drive's timeout then stamps the packet
            // and runs the pacer, without recomputing every stream's timers.
            let Some(stream) = direct.stream_tx_to_write(&ssrc) else {
                continue;
            };
            stream.write_rtp(write);
            sub.dirty = true;
        }
    }
    done
}

/// The index of the track `is_it` finds among a sink's or link's `tracks`; when there is
/// none yet, a new one made by `make` with the next track id, and that id (to announce).
fn track_of<T>(
    tracks: &mut Vec<T>,
    next_id: &mut u32,
    is_it: impl Fn(&T) -> bool,
    make: impl FnOnce(u32) -> T,
) -> (usize, Option<u32>) {
    if let Some(i) = tracks.iter().position(is_it) {
        return (i, None);
    }
    let id = *next_id;
    *next_id += 1;
    tracks.push(make(id));
    (tracks.len() - 1, Some(id))
}

/// Hands a packet of `source` to the relay sinks of its meeting. True when a sink waits
/// for a keyframe of its layer.
pub(super) fn feed_sinks(
    sinks: &mut [Sink],
    out: &mut VecDeque<SfuOutput>,
    who: &Who,
    source: Source,
    codec: Codec,
    p: &PacketIn,
    payload: &Payload,
) -> bool {
    let mut want_keyframe = false;
    for sink in sinks.iter_mut().filter(|s| s.meeting == *who.meeting) {
        let (i, new) = track_of(
            &mut sink.tracks,
            &mut sink.next_track_id,
            |t| t.source == source,
            |id| SinkTrack::new(id, source, codec),
        );
        if let Some(track_id) = new {
            // The layers the publisher sends; the sink gets one of them at a time.
            let event = who.announce(track_id, codec, p, if p.rid.is_some() { 3 } else { 1 });
            out.push_back(SfuOutput::Sink {
                key: sink.key,
                event,
            });
        }
        let t = &mut sink.tracks[i];
        match t.packet(p, payload.marker, payload.data) {
            Ok(rtp) => out.push_back(SfuOutput::Sink {
                key: sink.key,
                event: RelayEvent::Media {
                    track_id: t.track_id,
                    layer: layer_index(t.layer()),
                    packet: rtp,
                },
            }),
            Err(wait) => want_keyframe |= wait,
        }
    }
    want_keyframe
}

/// Hands a packet of local track `source` to the relay links of its meeting: announced
/// at its first packet, sent as the publisher sent it (its sequence number, RTP time and
/// audio level) while the far node subscribes to its layer. Remote tracks never reach
/// this: each node sends the far nodes only its own participants.
#[allow(clippy::too_many_arguments)]
pub(super) fn feed_links(
    links: &mut [Link],
    out: &mut VecDeque<SfuOutput>,
    wall: Option<&WallClock>,
    who: &Who,
    source: Source,
    codec: Codec,
    p: &PacketIn,
    payload: &Payload,
) {
    let mut arrived = None;
    for link in links.iter_mut().filter(|l| l.meeting == *who.meeting) {
        let simulcast = p.rid.is_some();
        let (i, new) = track_of(
            &mut link.tracks,
            &mut link.next_track_id,
            |t| t.source == source,
            |track_id| LinkTrack {
                track_id,
                source,
                codec,
                simulcast,
                mask: 0,
            },
        );
        if let Some(track_id) = new {
            let event = who.announce(track_id, codec, p, if simulcast { 3 } else { 1 });
            out.push_back(SfuOutput::Link {
                link: link.key,
                event,
            });
        }
        let t = &link.tracks[i];
        let layer = layer_index(p.rid);
        if t.mask & (1 << layer) == 0 {
            continue;
        }
        let meta = sink::LinkMeta {
            track_id: t.track_id,
            layer,
            marker: payload.marker,
            level: payload.ext.audio_level,
            arrived_unix_us: *arrived.get_or_insert_with(|| unix_us_at(wall, p.at)),
        };
        let packet = sink::link_packet(t.codec, p, &meta, payload.data);
        out.push_back(SfuOutput::Link {
            link: link.key,
            event: RelayEvent::Media {
                track_id: t.track_id,
                layer,
                packet,
            },
        });
    }
}

/// str0m's patch for a packet whose VP8 picture id and TL0PICIDX a layer switch moved.
/// str0m builds a patch only from a descriptor it parsed itself (the offsets in it are
/// its own), so the payload is read again here rather than with [`common::vp8`].
pub(super) fn vp8_patch(
    payload: &[u8],
    picture_id: Option<u16>,
    tl0: Option<u8>,
) -> Option<str0m::rtp::Vp8Patch> {
    let mut b = Vp8Descriptor::parse(payload).ok()?.patch();
    if let Some(id) = picture_id {
        b = b.picture_id(id);
    }
    if let Some(t) = tl0 {
        b = b.tl0_pic_idx(t);
    }
    b.build().ok()
}

impl Sfu {
    /// Which track of peer `i` a packet belongs to, its codec, and what a forwarder needs
    /// to know of it. Also feeds the track's loudness. None for a packet we cannot place.
    pub(super) fn locate(&mut self, i: usize, packet: &RtpPacket) -> Option<Located> {
        let peer = &mut self.peers[i];
        let ssrc = packet.header.ssrc;
        let found = peer.tracks_in.iter().enumerate().find_map(|(ti, t)| {
            t.streams
                .iter()
                .find(|(s, _)| *s == ssrc)
                .map(|(_, rid)| (ti, *rid))
        });
        let (ti, rid) = match found {
            Some(f) => f,
            None => {
                // A new SSRC: str0m knows its m-line and layer (from SDP or the mid/rid
                // header extensions). Once per stream.
                let (mid, rid) = {
                    let mut direct = peer.rtc.direct_api();
                    let s = direct.stream_rx(&ssrc)?;
                    (s.mid(), s.rid())
                };
                let ti = peer.tracks_in.iter().position(|t| t.mid == mid)?;
                peer.tracks_in[ti].streams.push((ssrc, rid));
                (ti, rid)
            }
        };
        let pt = packet.header.payload_type;
        let params = match peer.tracks_in[ti].codec {
            Some(p) if p.pt() == pt => p,
            _ => {
                let p = *peer.rtc.codec_config().find(|p| p.pt() == pt)?;
                peer.tracks_in[ti].codec = Some(p);
                p
            }
        };
        let t = &mut peer.tracks_in[ti];
        // A muted participant is never the active speaker.
        if let Some(level) = packet.header.ext_vals.audio_level
            && !peer.muted.audio
        {
            t.window.0 += loudness_of(level);
            t.window.1 += 1;
        }
        // Only the codecs we negotiate reach here; another would have no relay name.
        let codec = from_str0m(params.spec().codec)?;
        let (vp8, keyframe_start) = rtp::keyframe_fields(codec, &packet.payload);
        Some(Located {
            mid: t.mid,
            params,
            codec,
            packet: PacketIn {
                rid,
                seq: *packet.seq_no,
                timestamp: packet.header.timestamp,
                at: packet.timestamp,
                clock_rate: params.spec().clock_rate.get(),
                keyframe_start,
                video: t.kind == MediaKind::Video,
                vp8,
            },
        })
    }

    /// Forwards one packet of publisher `oi` to its subscribers and the meeting's sinks.
    pub(super) fn forward(&mut self, now: Instant, oi: usize, at: &Located, packet: &RtpPacket) {
        let p = &at.packet;
        let (before, rest) = self.peers.split_at_mut(oi);
        let (publisher, after) = rest.split_first_mut().expect("index in range");
        let source = Source::Peer(publisher.key, at.mid);
        let ext = media_extensions(&packet.header.ext_vals);
        let payload = Payload {
            data: &packet.payload,
            marker: packet.header.marker,
            ext: &ext,
            pt: at.params.pt(),
        };
        let (meeting, group) = (&publisher.meeting, publisher.group);
        // Nobody here receives it (a silent microphone, a camera nobody shows): no look
        // at any subscriber.
        let fanned = match self.routes.get(&source) {
            Some(route) => {
                let subscribers = routed(before, 0, route)
                    .chain(routed(after, oi + 1, route))
                    .filter(|s| s.meeting == *meeting && s.group == group);
                fan_out(subscribers, source, p, &payload, |rtc| {
                    rtc.codec_config().match_params(at.params).map(|x| x.pt())
                })
            }
            None => FannedOut::default(),
        };
        self.tell_slots |= fanned.switched;
        let mut want_keyframe = fanned.want_keyframe;
        let who = Who {
            meeting,
            participant: &publisher.participant,
            name: &publisher.name,
        };
        // The recording is of the main room.
        if group == 0 {
            want_keyframe |= feed_sinks(
                &mut self.sinks,
                &mut self.out,
                &who,
                source,
                at.codec,
                p,
                &payload,
            );
        }
        feed_links(
            &mut self.links,
            &mut self.out,
            self.wall.as_ref(),
            &who,
            source,
            at.codec,
            p,
            &payload,
        );
        if want_keyframe {
            self.request_keyframe(now, source, p.rid, KeyframeRequestKind::Pli);
        }
    }

    /// Forwards one packet of a remote track to local subscribers and the sinks, as if
    /// its publisher were here. The payload is copied once, for all of them.
    pub(super) fn remote_packet(
        &mut self,
        now: Instant,
        link: LinkKey,
        track_id: u32,
        layer: u8,
        data: &[u8],
    ) {
        let Some(ri) = self
            .remotes
            .iter()
            .position(|r| r.link == link && r.track_id == track_id)
        else {
            return;
        };
        let Some(h) = rtp::RtpView::parse(data) else {
            return;
        };
        let r = &mut self.remotes[ri];
        let rid = (r.layers > 1).then(|| layer_rid(layer));
        let highest = &mut r.highest_seq[usize::from(layer_index(rid))];
        let seq = rtp::extend_seq(*highest, h.seq);
        *highest = Some(highest.map_or(seq, |s| s.max(seq)));
        if let Some(level) = h.audio_level {
            r.window.0 += loudness_of(level);
            r.window.1 += 1;
        }
        let body = &data[h.payload.clone()];
        let (vp8, keyframe_start) = rtp::keyframe_fields(r.codec, body);
        let p = PacketIn {
            rid,
            seq,
            timestamp: h.timestamp,
            at: now,
            clock_rate: r.clock_rate,
            keyframe_start,
            video: r.kind == MediaKind::Video,
            vp8,
        };
        let shared: std::sync::Arc<[u8]> = body.into();
        let ext = ExtensionValues::default();
        let payload = Payload {
            data: &shared,
            marker: h.marker,
            ext: &ext,
            pt: Pt::from(h.payload_type),
        };
        let r = &self.remotes[ri];
        let (codec, source) = (r.codec, Source::Remote(link, track_id));
        let fanned = match self.routes.get(&source) {
            Some(route) => {
                let subscribers = routed(&mut self.peers, 0, route)
                    .filter(|s| s.meeting == r.meeting && s.group == r.group);
                fan_out(subscribers, source, &p, &payload, |rtc| {
                    rtc.codec_config()
                        .find(|x| x.spec().codec == to_str0m(codec))
                        .map(|x| x.pt())
                })
            }
            None => FannedOut::default(),
        };
        self.tell_slots |= fanned.switched;
        let mut want_keyframe = fanned.want_keyframe;
        let who = Who {
            meeting: &r.meeting,
            participant: &r.participant,
            name: &r.name,
        };
        if r.group == 0 {
            want_keyframe |= feed_sinks(
                &mut self.sinks,
                &mut self.out,
                &who,
                source,
                codec,
                &p,
                &payload,
            );
        }
        // An arrival time of 0 is a far node that did not know its wall clock yet.
        if let (Some(at), Some(wall)) = (h.arrived_unix_us.filter(|at| *at > 0), &self.wall)
            && self.hop_latency.len() < HOP_SAMPLES
        {
            let here = wall.unix_us_at(now);
            self.hop_latency.push(here.saturating_sub(at) as f64 / 1e6);
        }
        if want_keyframe {
            self.request_keyframe(now, source, rid, KeyframeRequestKind::Pli);
        }
    }
}
