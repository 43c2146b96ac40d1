//! Who is in a meeting here: sessions joining and leaving, a peer's mute, breakout
//! rooms (which peers and remote tracks exchange media), and the end of a peer's or a
//! remote track's streams for everyone that received them.
use std::collections::HashMap;
use std::time::Instant;

use common::ids::{MeetingId, ParticipantId};
use str0m::media::{KeyframeRequestKind, MediaKind, Rid};

use super::api::{PeerKey, RelayEvent, SfuOutput, Source};
use super::core::Sfu;
use super::peer::{Muted, TrackOut, Waiting};
use super::relays::drop_gone;

impl Sfu {
    /// A participant's signaling session opened: it waits for its first offer.
    pub(super) fn join(
        &mut self,
        key: PeerKey,
        meeting: MeetingId,
        participant: ParticipantId,
        name: String,
    ) {
        if !self.waiting.iter().any(|w| w.key == key) {
            self.waiting.push(Waiting {
                key,
                meeting,
                participant,
                name,
                muted: Muted::default(),
                view: None,
            });
        }
    }

    pub(super) fn leave(&mut self, key: PeerKey) {
        self.waiting.retain(|w| w.key != key);
        self.remove_peer(key);
    }

    /// The participant is muted in `audio`, `video` or neither: what it publishes of a
    /// muted kind is dropped on arrival; unmuted video restarts on a keyframe.
    pub(super) fn mute(&mut self, now: Instant, key: PeerKey, audio: bool, video: bool) {
        let muted = Muted { audio, video };
        if let Some(w) = self.waiting.iter_mut().find(|w| w.key == key) {
            w.muted = muted;
        }
        let Some(p) = self.peer_mut(key) else {
            return;
        };
        let was = std::mem::replace(&mut p.muted, muted);
        // Unmuted video: subscribers start again on a keyframe of each layer.
        let restart: Vec<(Source, Option<Rid>)> = if was.video && !video {
            p.tracks_in
                .iter()
                .filter(|t| t.kind == MediaKind::Video)
                .flat_map(|t| {
                    t.streams
                        .iter()
                        .map(|(_, rid)| (Source::Peer(key, t.mid), *rid))
                })
                .collect()
        } else {
            Vec::new()
        };
        // Its subscribers' streams pause, and run on from there when it speaks
        // (or shows itself) again.
        let paused = |t: &TrackOut| {
            matches!(t.source, Some(Source::Peer(k, _)) if k == key)
                && ((t.kind == MediaKind::Audio && audio && !was.audio)
                    || (t.kind == MediaKind::Video && video && !was.video))
        };
        for s in &mut self.peers {
            for t in s.tracks_out.iter_mut().filter(|t| paused(t)) {
                t.forwarder.pause();
            }
        }
        for (source, rid) in restart {
            self.request_keyframe(now, source, rid, KeyframeRequestKind::Pli);
        }
        // Slots carry no muted media: they move to someone else, or back.
        if was != muted {
            self.slots_dirty = true;
        }
    }

    /// The breakout room of `participant` in `meeting` (0: the main room).
    pub(super) fn group_of(&self, meeting: &MeetingId, participant: &ParticipantId) -> u32 {
        self.groups
            .get(meeting)
            .and_then(|g| g.get(participant))
            .copied()
            .unwrap_or(0)
    }

    /// Moves `meeting`'s participants into their breakout rooms (or all back, when
    /// `groups` is empty). Every stream whose publisher and subscriber no longer share
    /// a room pauses; those that do again start on a keyframe, asked for at once.
    pub(super) fn set_groups(
        &mut self,
        now: Instant,
        meeting: MeetingId,
        groups: HashMap<ParticipantId, u32>,
    ) {
        if groups.is_empty() {
            self.groups.remove(&meeting);
        } else {
            self.groups.insert(meeting.clone(), groups);
        }
        let mut changed = false;
        for i in 0..self.peers.len() {
            if self.peers[i].meeting != meeting {
                continue;
            }
            let g = self.group_of(&meeting, &self.peers[i].participant);
            changed |= std::mem::replace(&mut self.peers[i].group, g) != g;
        }
        for i in 0..self.remotes.len() {
            if self.remotes[i].meeting != meeting {
                continue;
            }
            let g = self.group_of(&meeting, &self.remotes[i].participant);
            changed |= std::mem::replace(&mut self.remotes[i].group, g) != g;
        }
        if !changed {
            return;
        }
        self.slots_dirty = true;
        let source_group = |sfu: &Sfu, s: Source| match s {
            Source::Peer(k, _) => sfu.peers.iter().find(|p| p.key == k).map(|p| p.group),
            Source::Remote(l, id) => sfu
                .remotes
                .iter()
                .find(|r| r.link == l && r.track_id == id)
                .map(|r| r.group),
        };
        let mut restart = Vec::new();
        for i in 0..self.peers.len() {
            if self.peers[i].meeting != meeting {
                continue;
            }
            let g = self.peers[i].group;
            let groups: Vec<Option<u32>> = self.peers[i]
                .tracks_out
                .iter()
                .map(|t| t.source.and_then(|s| source_group(self, s)))
                .collect();
            for (t, sg) in self.peers[i].tracks_out.iter_mut().zip(groups) {
                t.forwarder.pause();
                if let Some(source) = t.source
                    && sg == Some(g)
                    && t.kind == MediaKind::Video
                {
                    restart.push((source, t.want));
                }
            }
        }
        for (source, want) in restart {
            let simulcast = self.is_simulcast(source);
            self.request_keyframe(
                now,
                source,
                simulcast.then_some(want),
                KeyframeRequestKind::Pli,
            );
        }
        // Sinks record the main room: its tracks' streams restart on keyframes too.
        for sink in self.sinks.iter_mut().filter(|s| s.meeting == meeting) {
            for t in &mut sink.tracks {
                t.pause();
            }
        }
    }

    pub(super) fn remove_peer(&mut self, key: PeerKey) {
        let Some(i) = self.peers.iter().position(|p| p.key == key) else {
            return;
        };
        let last = self.peers.len() - 1;
        let mut peer = self.peers.swap_remove(i);
        // The last peer took index i.
        self.by_addr.retain(|_, j| *j != i);
        for j in self.by_addr.values_mut().filter(|j| **j == last) {
            *j = i;
        }
        // Routes too: the moved peer goes on receiving what it received until the slots
        // are filled again.
        for route in self.routes.values_mut() {
            route.retain(|&(j, _)| j != i);
            if let Some(r) = route.iter_mut().find(|r| r.0 == last) {
                r.0 = i;
                route.sort_unstable_by_key(|r| r.0);
            }
        }
        peer.rtc.disconnect();
        self.retire(|s| matches!(s, Source::Peer(k, _) if *k == key));
    }

    /// Ends the tracks whose source `gone` says is gone: sinks are told, subscribers'
    /// m-lines go inactive in their next offer, slots carrying them are filled again.
    pub(super) fn retire(&mut self, gone: impl Fn(&Source) -> bool) {
        self.wants_changed = true;
        self.slots_dirty = true;
        for link in &mut self.links {
            for track_id in drop_gone(&mut link.tracks, |t| (t.source, t.track_id), &gone) {
                let event = RelayEvent::Remove { track_id };
                self.out.push_back(SfuOutput::Link {
                    link: link.key,
                    event,
                });
            }
        }
        for sink in &mut self.sinks {
            for track_id in drop_gone(&mut sink.tracks, |t| (t.source, t.track_id), &gone) {
                let event = RelayEvent::Remove { track_id };
                self.out.push_back(SfuOutput::Sink {
                    key: sink.key,
                    event,
                });
            }
        }
        for p in &mut self.peers {
            // A slot whose source is gone carries nothing until it is filled again.
            for t in &mut p.tracks_out {
                if t.next.as_ref().is_some_and(&gone) {
                    t.next = None;
                }
                if t.source.as_ref().is_some_and(&gone) {
                    t.source = None;
                    t.forwarder.pause();
                    p.slots_changed = true;
                    self.tell_slots = true;
                }
            }
        }
    }
}
