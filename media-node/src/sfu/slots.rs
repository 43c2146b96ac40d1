//! Receive slots: a receiver that declared its view (`view`) has a fixed set of
//! send-only m-lines — audio slots for the loudest speakers, video slots for the tiles it
//! shows, one for a screen share — and the SFU decides, per receiver, which published
//! track feeds which slot. Nobody's SDP changes when others come, go, mute or speak: the
//! slots change source, and the receiver is told (`slots`).
//!
//! A video slot moves to a new source on that source's next keyframe (asked for at
//! once); the old source goes on until then, so a tile never goes black. The slot's
//! `rtp::Forwarder` runs its stream on across the switch (sequence numbers, RTP time,
//! VP8 picture ids), as it does across a simulcast layer switch: the receiver sees one
//! stream whose source changed, never a gap.
//!
//! What each receiver gets (`wanted_videos`, `assign`, `audible` are pure): pinned
//! participants, then (speaker view, or the gallery's first page) the active and recent
//! speakers, then everyone with a camera in a stable order (when their track came); a
//! slot keeps what it carries while that is still wanted, so tiles do not shuffle. Audio
//! slots carry the loudest speakers, a speaker keeping its slot until someone is louder
//! by [`AUDIO_HYSTERESIS`] or it falls silent. The screen slot carries the latest screen
//! share. (Which layers of theirs anyone needs is told to publishers by `dynacast`.)
use std::time::Instant;

use common::ids::{MeetingId, ParticipantId};
use signaling::{Slot, View, ViewMode};
use str0m::media::{KeyframeRequestKind, MediaKind, Rid};

use super::api::{PeerKey, SignalOut, Source};
use super::core::Sfu;
use super::peer::{OutState, Peer, SlotKind, TrackOut};
use super::simulcast::{capped, layer_for_size, layer_rank};
use super::speaker::SPEAKER_THRESHOLD;

/// How much louder (on the loudness scale of `speaker`, 127 + dBov) a speaker must be
/// than the quietest one a receiver hears to take that one's audio slot.
pub(super) const AUDIO_HYSTERESIS: f32 = 6.0;

/// How many recent speakers a meeting remembers (for speaker view and the first page).
pub(super) const RECENT_SPEAKERS: usize = 8;

/// What a track is to the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Feed {
    Audio,
    Camera,
    Screen,
}

/// A published track a slot may carry.
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    pub(super) source: Source,
    pub(super) participant: ParticipantId,
    pub(super) feed: Feed,
    /// Its publisher's breakout room.
    pub(super) group: u32,
    /// When it came (the stable order of the gallery).
    pub(super) order: u64,
    /// Audio: its smoothed loudness.
    pub(super) loudness: f32,
}

/// The sources a receiver's video slots should carry, most wanted first, at most
/// `view.video_slots`: pinned participants; on the first gallery page and in speaker
/// view the speakers (`speakers`: the active one first, then the recent ones); then the
/// page's participants in `cameras`' order (a stable one). `cameras` holds only what the
/// receiver may see (its room, not its own).
pub(super) fn wanted_videos(
    view: &View,
    cameras: &[&Candidate],
    speakers: &[ParticipantId],
) -> Vec<Source> {
    let n = view.video_slots as usize;
    let mut out: Vec<Source> = Vec::with_capacity(n);
    let push = |out: &mut Vec<Source>, s: Source| {
        if out.len() < n && !out.contains(&s) {
            out.push(s);
        }
    };
    let of = |pid: &str| cameras.iter().find(|c| c.participant.as_str() == pid);
    for pid in &view.pinned {
        if let Some(c) = of(pid) {
            push(&mut out, c.source);
        }
    }
    let pins = out.clone();
    // The first page (and speaker view): the speakers, then the stable order.
    for pid in speakers {
        if let Some(c) = of(pid.as_str()) {
            push(&mut out, c.source);
        }
    }
    let unpinned = || {
        cameras
            .iter()
            .filter(|c| !view.pinned.iter().any(|p| p == c.participant.as_str()))
    };
    for c in unpinned() {
        if out.len() == n {
            break;
        }
        push(&mut out, c.source);
    }
    if view.mode == ViewMode::Speaker || view.page == 0 {
        return out;
    }
    // Page k: the pins, then the k-th share of the stable order after those the first
    // page shows (so that a speaker on the first page pushes nobody off every page).
    let per_page = n.saturating_sub(pins.len()).max(1);
    let first = out;
    let mut out = pins;
    let rest = unpinned().filter(|c| !first.contains(&c.source));
    let skip = per_page.saturating_mul(view.page as usize - 1);
    for c in rest.skip(skip) {
        if out.len() == n {
            break;
        }
        push(&mut out, c.source);
    }
    out
}

/// What each slot carries next. The first `fixed` slots carry exactly `wanted[i]` (the
/// speaker view's stage); every other slot keeps what it carries (or moves to) while
/// that is still wanted; the slots left take the wanted sources no slot has, in order,
/// and the rest carry nothing.
pub(super) fn assign(
    current: &[Option<Source>],
    wanted: &[Source],
    fixed: usize,
) -> Vec<Option<Source>> {
    let fixed = fixed.min(current.len());
    let mut out: Vec<Option<Source>> = vec![None; current.len()];
    for (i, slot) in out.iter_mut().enumerate().take(fixed) {
        *slot = wanted.get(i).copied();
    }
    let free = wanted.get(fixed..).unwrap_or_default();
    for i in fixed..current.len() {
        if let Some(s) = current[i]
            && free.contains(&s)
            && !out.contains(&Some(s))
        {
            out[i] = Some(s);
        }
    }
    let rest: Vec<Source> = free
        .iter()
        .filter(|s| !out.contains(&Some(**s)))
        .copied()
        .collect();
    let mut rest = rest.into_iter();
    for slot in out.iter_mut().skip(fixed) {
        if slot.is_none() {
            *slot = rest.next();
        }
    }
    out
}

/// The speakers a receiver's audio slots carry next. `current`: what they carry;
/// `level`: a source's loudness, None when the receiver may no longer hear it (gone,
/// muted, another room); `loud`: who speaks now (above the threshold), loudest first;
/// `quiet`: the others the receiver may hear, in a stable order. A speaker takes an
/// empty slot, or the slot of the quietest one heard when that one is silent or quieter
/// by [`AUDIO_HYSTERESIS`]. Slots still empty then carry the quiet ones: with no more
/// voices than slots, everyone is heard from their first word (and a sender without
/// audio levels at all), and a speaker takes a silent one's slot when it speaks.
pub(super) fn audible(
    current: &[Option<Source>],
    level: impl Fn(Source) -> Option<f32>,
    loud: &[(Source, f32)],
    quiet: &[Source],
) -> Vec<Option<Source>> {
    let mut out: Vec<Option<Source>> = current
        .iter()
        .map(|s| s.filter(|s| level(*s).is_some()))
        .collect();
    for &(s, l) in loud {
        if out.contains(&Some(s)) {
            continue;
        }
        if let Some(free) = out.iter().position(Option::is_none) {
            out[free] = Some(s);
            continue;
        }
        let quietest = out
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some((i, level((*h)?)?)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, q)) = quietest
            && (q < SPEAKER_THRESHOLD || l > q + AUDIO_HYSTERESIS)
        {
            out[i] = Some(s);
        }
    }
    for &s in quiet {
        if out.contains(&Some(s)) {
            continue;
        }
        let Some(free) = out.iter().position(Option::is_none) else {
            break;
        };
        out[free] = Some(s);
    }
    out
}

/// The layer a slot asks for at its tile's size.
fn asked_for(view: &View, video_index: usize) -> Rid {
    let tile = view.tile(video_index);
    layer_for_size(tile.width, tile.height)
}

/// The slots a view needs of each kind: (audio, video, screen).
fn slot_counts(view: &View) -> [(SlotKind, MediaKind, usize); 3] {
    [
        (SlotKind::Audio, MediaKind::Audio, view.audio_slots as usize),
        (SlotKind::Video, MediaKind::Video, view.video_slots as usize),
        (SlotKind::Screen, MediaKind::Video, 1),
    ]
}

/// The msid stream a slot's m-line is announced in: `a0`, `v3`, `screen`.
pub(super) fn slot_stream(kind: SlotKind, index: usize) -> String {
    match kind {
        SlotKind::Audio => format!("a{index}"),
        SlotKind::Video => format!("v{index}"),
        SlotKind::Screen => "screen".to_owned(),
    }
}

impl Peer {
    /// Adds the slots `view` needs that the peer does not have yet (slots are never
    /// taken away: ones the view does not use carry nothing) and sets the layer each
    /// video slot asks for, and wants within `budget_bps` per video (as `adapt_layers`
    /// caps it). True when m-lines were added (an offer is due).
    pub(super) fn fit_slots(&mut self, view: &View, budget_bps: Option<u64>) -> bool {
        let mut added = false;
        for (slot, kind, want) in slot_counts(view) {
            let have = self.tracks_out.iter().filter(|t| t.slot == slot).count();
            for _ in have..want {
                self.tracks_out.push(TrackOut::slot(slot, kind));
                added = true;
            }
        }
        for (i, t) in self
            .tracks_out
            .iter_mut()
            .filter(|t| t.slot == SlotKind::Video)
            .enumerate()
        {
            t.asked = asked_for(view, i);
            t.want = capped(t.asked, budget_bps);
        }
        if added {
            self.want_offer();
        }
        added
    }

    /// The indexes in `tracks_out` of its slots of `kind`, in slot order.
    fn slots_of(&self, kind: SlotKind) -> Vec<usize> {
        (0..self.tracks_out.len())
            .filter(|&j| self.tracks_out[j].slot == kind)
            .collect()
    }
}

impl Sfu {
    /// A receiver's view: its slots are made (in one offer) and filled. A slot whose
    /// tile now asks for another layer of a simulcast source it carries gets a keyframe
    /// of that layer asked for at once (it switches on it).
    pub(super) fn set_view(&mut self, now: Instant, key: PeerKey, view: View) {
        if let Some(w) = self.waiting.iter_mut().find(|w| w.key == key) {
            w.view = Some(view);
            return;
        }
        let cap = self.bandwidth_cap;
        let Some(p) = self.peers.iter_mut().find(|p| p.key == key) else {
            return self.refuse(key, "view", "no media session yet".into());
        };
        let wants = |p: &Peer| -> Vec<(Option<Source>, Rid)> {
            p.tracks_out.iter().map(|t| (t.target(), t.want)).collect()
        };
        let before = wants(p);
        // Within what the receiver's estimate covers: a resize of a receiver held to a
        // lower layer asks for no keyframe of a layer it will not get.
        let budget = p.video_budget_bps().filter(|_| cap);
        p.fit_slots(&view, budget);
        p.view = view;
        p.slots_changed = true;
        let switches: Vec<(Source, Rid)> = before
            .into_iter()
            .zip(wants(p))
            .filter(|(b, a)| b.1 != a.1)
            .filter_map(|(_, (source, rid))| Some((source?, rid)))
            .collect();
        self.slots_dirty = true;
        self.wants_changed = true;
        // Only a simulcast source has another layer to switch to: a single-stream one
        // is forwarded whatever layer the tile asks for, and a keyframe would be wasted.
        for (source, rid) in switches {
            if self.is_simulcast(source) {
                self.request_keyframe(now, source, Some(rid), KeyframeRequestKind::Pli);
            }
        }
    }

    /// Whether `source` is sent in simulcast layers.
    pub(super) fn is_simulcast(&self, source: Source) -> bool {
        match source {
            Source::Peer(k, mid) => self.peers.iter().find(|p| p.key == k).is_some_and(|p| {
                p.tracks_in
                    .iter()
                    .any(|t| t.mid == mid && t.streams.iter().any(|(_, r)| r.is_some()))
            }),
            Source::Remote(l, id) => self
                .remotes
                .iter()
                .any(|r| r.link == l && r.track_id == id && r.layers > 1),
        }
    }

    /// Who publishes `source`.
    pub(super) fn publisher_of(&self, source: Source) -> Option<&ParticipantId> {
        match source {
            Source::Peer(k, _) => self
                .peers
                .iter()
                .find(|p| p.key == k)
                .map(|p| &p.participant),
            Source::Remote(l, id) => self
                .remotes
                .iter()
                .find(|r| r.link == l && r.track_id == id)
                .map(|r| &r.participant),
        }
    }

    /// Everything published in `meeting` that a slot may carry, in the order it came.
    /// Muted media is not: a muted camera's tile shows the participant's name instead.
    fn candidates(&self, meeting: &MeetingId) -> Vec<Candidate> {
        let mut out = Vec::new();
        for p in self.peers.iter().filter(|p| p.meeting == *meeting) {
            let mut cameras = 0;
            for t in &p.tracks_in {
                let feed = match t.kind {
                    MediaKind::Audio if p.muted.audio => continue,
                    MediaKind::Video if p.muted.video => continue,
                    MediaKind::Audio => Feed::Audio,
                    // A second video track of a participant is its screen share.
                    MediaKind::Video => {
                        cameras += 1;
                        if cameras == 1 {
                            Feed::Camera
                        } else {
                            Feed::Screen
                        }
                    }
                };
                out.push(Candidate {
                    source: Source::Peer(p.key, t.mid),
                    participant: p.participant.clone(),
                    feed,
                    group: p.group,
                    order: t.order,
                    loudness: t.loudness,
                });
            }
        }
        for r in self.remotes.iter().filter(|r| r.meeting == *meeting) {
            let feed = match r.kind {
                MediaKind::Audio => Feed::Audio,
                MediaKind::Video => {
                    let earlier = self.remotes.iter().any(|o| {
                        o.link == r.link
                            && o.participant == r.participant
                            && o.kind == MediaKind::Video
                            && o.track_id < r.track_id
                    });
                    if earlier { Feed::Screen } else { Feed::Camera }
                }
            };
            out.push(Candidate {
                source: Source::Remote(r.link, r.track_id),
                participant: r.participant.clone(),
                feed,
                group: r.group,
                order: r.order,
                loudness: r.loudness,
            });
        }
        out.sort_by_key(|c| c.order);
        out
    }

    /// Fills the slots of every receiver on slots (after something changed who
    /// publishes, speaks or is wanted), asking for the keyframes the switches need.
    pub(super) fn allocate(&mut self, now: Instant) {
        let mut meetings: Vec<MeetingId> = Vec::new();
        for p in &self.peers {
            if !meetings.contains(&p.meeting) {
                meetings.push(p.meeting.clone());
            }
        }
        let mut keyframes = Vec::new();
        for meeting in meetings {
            self.allocate_meeting(now, &meeting, &mut keyframes);
        }
        self.routes.clear();
        for (i, p) in self.peers.iter().enumerate() {
            for source in p
                .tracks_out
                .iter()
                .flat_map(|t| [t.source, t.next])
                .flatten()
            {
                let route = self.routes.entry(source).or_default();
                if route.last().is_none_or(|&(last, _)| last != i) {
                    route.push((i, p.key));
                }
            }
        }
        for source in keyframes {
            let rid = self
                .is_simulcast(source)
                .then(|| self.wanted_layer(source))
                .flatten();
            self.request_keyframe(now, source, rid, KeyframeRequestKind::Pli);
        }
    }

    /// The highest layer any slot moving to `source` wants of it.
    fn wanted_layer(&self, source: Source) -> Option<Rid> {
        self.peers
            .iter()
            .flat_map(|p| &p.tracks_out)
            .filter(|t| t.next == Some(source) || (t.source == Some(source)))
            .map(|t| t.want)
            .max_by_key(|r| layer_rank(*r))
    }

    fn allocate_meeting(&mut self, now: Instant, meeting: &MeetingId, keyframes: &mut Vec<Source>) {
        let cands = self.candidates(meeting);
        let speakers: Vec<ParticipantId> = self
            .recent_speakers
            .iter()
            .find(|(m, _)| m == meeting)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let mut changed = false;
        for p in self.peers.iter_mut().filter(|p| p.meeting == *meeting) {
            let (me, group) = (&p.participant, p.group);
            let visible = |c: &&Candidate| c.participant != *me && c.group == group;
            let view = &p.view;
            let cameras: Vec<&Candidate> = cands
                .iter()
                .filter(visible)
                .filter(|c| c.feed == Feed::Camera)
                .collect();
            let wanted = wanted_videos(view, &cameras, &speakers);
            let fixed = usize::from(view.mode == ViewMode::Speaker);
            let shown = view.video_slots as usize;
            let audio_n = view.audio_slots as usize;

            let video = p.slots_of(SlotKind::Video);
            let current: Vec<Option<Source>> = video
                .iter()
                .take(shown)
                .map(|&j| p.tracks_out[j].target())
                .collect();
            let mut plan: Vec<(usize, Option<Source>)> = video
                .iter()
                .copied()
                .zip(assign(&current, &wanted, fixed))
                .collect();
            // Slots the view does not use carry nothing.
            plan.extend(video.iter().skip(shown).map(|&j| (j, None)));

            let audio = p.slots_of(SlotKind::Audio);
            let level = |s: Source| {
                cands
                    .iter()
                    .find(|c| c.source == s && c.feed == Feed::Audio)
                    .filter(visible)
                    .map(|c| c.loudness)
            };
            let mut loud: Vec<(Source, f32)> = cands
                .iter()
                .filter(visible)
                .filter(|c| c.feed == Feed::Audio && c.loudness >= SPEAKER_THRESHOLD)
                .map(|c| (c.source, c.loudness))
                .collect();
            loud.sort_by(|a, b| b.1.total_cmp(&a.1));
            // `cands` is in the stable order.
            let quiet: Vec<Source> = cands
                .iter()
                .filter(visible)
                .filter(|c| c.feed == Feed::Audio && c.loudness < SPEAKER_THRESHOLD)
                .map(|c| c.source)
                .collect();
            let current: Vec<Option<Source>> = audio
                .iter()
                .take(audio_n)
                .map(|&j| p.tracks_out[j].target())
                .collect();
            plan.extend(
                audio
                    .iter()
                    .copied()
                    .zip(audible(&current, level, &loud, &quiet)),
            );
            plan.extend(audio.iter().skip(audio_n).map(|&j| (j, None)));

            let screen = cands
                .iter()
                .filter(visible)
                .filter(|c| c.feed == Feed::Screen)
                .map(|c| c.source)
                .next_back();
            plan.extend(
                p.slots_of(SlotKind::Screen)
                    .into_iter()
                    .map(|j| (j, screen)),
            );

            for (j, target) in plan {
                changed |= retarget(p, j, target, now, keyframes);
            }
        }
        if changed {
            self.wants_changed = true;
            self.tell_slots = true;
        }
    }

    /// Tells each receiver whose slots changed what they carry now.
    pub(super) fn send_slots(&mut self) {
        for i in 0..self.peers.len() {
            if !std::mem::take(&mut self.peers[i].slots_changed) {
                continue;
            }
            let p = &self.peers[i];
            let mut slots = Vec::new();
            for t in &p.tracks_out {
                let (OutState::Negotiating(mid) | OutState::Open(mid)) = t.state else {
                    continue;
                };
                let kind = t.slot;
                let layer = t
                    .source
                    .filter(|_| t.kind == MediaKind::Video)
                    .and_then(|_| t.forwarder.layer())
                    .map(|r| r.to_string());
                slots.push(Slot {
                    mid: mid.to_string(),
                    kind: match t.kind {
                        MediaKind::Audio => signaling::MediaKind::Audio,
                        MediaKind::Video => signaling::MediaKind::Video,
                    },
                    screen: kind == SlotKind::Screen,
                    participant_id: t
                        .source
                        .and_then(|s| self.publisher_of(s))
                        .map(|pid| pid.as_str().to_owned()),
                    layer,
                });
            }
            let key = p.key;
            if !slots.is_empty() {
                self.signal(key, SignalOut::Slots(slots));
            }
        }
    }

    /// Notes that `participant` spoke in `meeting`: speaker view and the first gallery
    /// page lead with the latest speakers.
    pub(super) fn note_speaker(&mut self, meeting: &MeetingId, participant: &ParticipantId) {
        let recent = match self.recent_speakers.iter_mut().find(|(m, _)| m == meeting) {
            Some((_, r)) => r,
            None => {
                self.recent_speakers.push((meeting.clone(), Vec::new()));
                &mut self.recent_speakers.last_mut().expect("pushed").1
            }
        };
        recent.retain(|p| p != participant);
        recent.insert(0, participant.clone());
        recent.truncate(RECENT_SPEAKERS);
        self.slots_dirty = true;
    }
}

/// Points slot `j` of `p` at `target`. A slot carrying nothing takes it at once; one
/// carrying another source moves on the new one's next keyframe (audio: next packet),
/// which `keyframes` asks for. True when something changed.
fn retarget(
    p: &mut Peer,
    j: usize,
    target: Option<Source>,
    now: Instant,
    keyframes: &mut Vec<Source>,
) -> bool {
    let t = &mut p.tracks_out[j];
    if t.target() == target {
        return false;
    }
    t.next_since = None;
    match target {
        None => {
            t.source = None;
            t.next = None;
            t.forwarder.pause();
            p.slots_changed = true;
        }
        Some(s) if t.source == Some(s) => t.next = None,
        Some(s) if t.source.is_none() => {
            t.source = Some(s);
            t.next = None;
            t.pt = None;
            t.forwarder.pause();
            p.slots_changed = true;
        }
        Some(s) => {
            t.next = Some(s);
            t.next_since = Some(now);
        }
    }
    if let Some(s) = target
        && t.kind == MediaKind::Video
    {
        keyframes.push(s);
    }
    true
}

/// The stable order of tracks: a counter the SFU hands out as tracks come.
pub(super) fn next_order(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}

#[cfg(test)]
mod tests {
    use str0m::media::Mid;

    use super::*;

    fn src(n: u64) -> Source {
        Source::Peer(PeerKey(n), Mid::from("0"))
    }

    fn cam(n: u64) -> Candidate {
        Candidate {
            source: src(n),
            participant: ParticipantId::parse(&format!("p{n}")).unwrap(),
            feed: Feed::Camera,
            group: 0,
            order: n,
            loudness: 0.0,
        }
    }

    fn view(mode: ViewMode, slots: u32, page: u32) -> View {
        View {
            mode,
            video_slots: slots,
            page,
            ..View::default_for_client()
        }
    }

    fn pid(n: u64) -> ParticipantId {
        ParticipantId::parse(&format!("p{n}")).unwrap()
    }

    #[test]
    fn a_gallery_page_takes_its_share_of_the_stable_order() {
        let cams: Vec<Candidate> = (1..=20).map(cam).collect();
        let refs: Vec<&Candidate> = cams.iter().collect();
        let page = |p| wanted_videos(&view(ViewMode::Gallery, 9, p), &refs, &[]);
        assert_eq!(page(0), (1..=9).map(src).collect::<Vec<_>>());
        assert_eq!(page(1), (10..=18).map(src).collect::<Vec<_>>());
        assert_eq!(page(2), vec![src(19), src(20)]);
        assert!(page(3).is_empty(), "past the last page: nothing");
    }

    #[test]
    fn speakers_lead_the_first_page_and_pins_lead_every_page() {
        let cams: Vec<Candidate> = (1..=20).map(cam).collect();
        let refs: Vec<&Candidate> = cams.iter().collect();
        let mut v = view(ViewMode::Gallery, 4, 0);
        assert_eq!(
            wanted_videos(&v, &refs, &[pid(15), pid(3)]),
            vec![src(15), src(3), src(1), src(2)]
        );
        v.pinned = vec!["p20".into(), "nobody".into()];
        assert_eq!(
            wanted_videos(&v, &refs, &[pid(15)]),
            vec![src(20), src(15), src(1), src(2)]
        );
        v.page = 1;
        assert_eq!(
            wanted_videos(&v, &refs, &[pid(15)]),
            vec![src(20), src(3), src(4), src(5)],
            "page 1: the pin, then who comes after the first page's (none left out)"
        );
        v.page = 2;
        assert_eq!(
            wanted_videos(&v, &refs, &[pid(15)]),
            vec![src(20), src(6), src(7), src(8)]
        );
        let stage = wanted_videos(&view(ViewMode::Speaker, 3, 5), &refs, &[pid(7)]);
        assert_eq!(stage[0], src(7), "speaker view: the speaker on the stage");
    }

    #[test]
    fn slots_keep_what_is_still_wanted_and_the_stage_takes_the_first() {
        let cur = vec![Some(src(1)), Some(src(2)), Some(src(3)), None];
        // 2 and 3 stay where they are, 1 is gone, 5 and 6 come.
        assert_eq!(
            assign(&cur, &[src(5), src(3), src(2), src(6)], 0),
            vec![Some(src(5)), Some(src(2)), Some(src(3)), Some(src(6))]
        );
        // Fewer wanted than slots: the rest carry nothing.
        assert_eq!(
            assign(&cur, &[src(2)], 0),
            vec![None, Some(src(2)), None, None]
        );
        // The stage (slot 0) carries the first wanted, whatever it carried; 3 leaves
        // slot 2 for it, and 1 takes the first free slot.
        assert_eq!(
            assign(&cur, &[src(3), src(1)], 1),
            vec![Some(src(3)), Some(src(1)), None, None]
        );
    }

    #[test]
    fn audio_slots_go_to_the_loudest_with_hysteresis_and_free_ones_to_the_quiet() {
        let levels = |s: Source| match s {
            Source::Peer(PeerKey(n), _) => {
                Some([0.0, 40.0, 30.0, 20.0, 35.0, 60.0, 2.0][n as usize])
            }
            _ => None,
        };
        // Empty slots take the loudest.
        let out = audible(
            &[None, None],
            levels,
            &[(src(1), 40.0), (src(2), 30.0), (src(3), 20.0)],
            &[src(6)],
        );
        assert_eq!(out, vec![Some(src(1)), Some(src(2))]);
        // 4 (35) is louder than the quietest heard (2: 30), but not by the hysteresis.
        let out = audible(
            &out,
            levels,
            &[(src(1), 40.0), (src(4), 35.0), (src(2), 30.0)],
            &[],
        );
        assert_eq!(out, vec![Some(src(1)), Some(src(2))]);
        // 5 (60) is: it takes 2's slot.
        let out = audible(
            &out,
            levels,
            &[(src(5), 60.0), (src(1), 40.0), (src(2), 30.0)],
            &[],
        );
        assert_eq!(out, vec![Some(src(1)), Some(src(5))]);
        // A silent holder (6) gives its slot to anyone speaking.
        let out = audible(
            &[Some(src(6)), Some(src(1))],
            levels,
            &[(src(3), 20.0)],
            &[],
        );
        assert_eq!(out, vec![Some(src(3)), Some(src(1))]);
        // One that cannot be heard any more (gone) frees its slot.
        let gone = |s: Source| (s != src(1)).then_some(10.0);
        assert_eq!(audible(&[Some(src(1))], gone, &[], &[]), vec![None]);
        // Slots nobody speaking needs carry the quiet, in their order; the quiet never
        // push each other (or anyone) out.
        let out = audible(
            &[None, None, None],
            levels,
            &[(src(1), 40.0)],
            &[src(6), src(3)],
        );
        assert_eq!(out, vec![Some(src(1)), Some(src(6)), Some(src(3))]);
        let out = audible(
            &[Some(src(1)), Some(src(2))],
            levels,
            &[(src(1), 40.0)],
            &[src(6)],
        );
        assert_eq!(out, vec![Some(src(1)), Some(src(2))]);
    }
}
