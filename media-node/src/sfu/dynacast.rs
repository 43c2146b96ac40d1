//! Dynacast: each publisher of simulcast video is told which of its layers some
//! receiver needs now (`publish_layers`), so that it stops encoding the others and a
//! camera nobody shows costs only its lowest layer.
use common::ids::MeetingId;
use str0m::media::MediaKind;

use super::api::{SignalOut, Source};
use super::core::Sfu;
use super::simulcast::{LAYER_BPS, layer_bit};

impl Sfu {
    /// Dynacast: tells each publisher of simulcast video which of its layers some
    /// receiver (a slot or m-line here, a far node, a recording) needs now, when that
    /// changed. The lowest layer is always needed: it is the keep-alive that lets a
    /// receiver start at once.
    pub(super) fn send_publish_layers(&mut self) {
        for i in 0..self.peers.len() {
            let mut told = Vec::new();
            {
                let p = &self.peers[i];
                for t in p.tracks_in.iter().filter(|t| t.kind == MediaKind::Video) {
                    if !t.streams.iter().any(|(_, r)| r.is_some()) {
                        continue;
                    }
                    let source = Source::Peer(p.key, t.mid);
                    let mask = self.layers_needed(source, &p.meeting, p.group);
                    let last = p.told_layers.iter().find(|(m, _)| *m == t.mid);
                    if last.is_none_or(|(_, l)| *l != mask) {
                        told.push((t.mid, mask));
                    }
                }
            }
            let key = self.peers[i].key;
            for (mid, mask) in told {
                let p = &mut self.peers[i];
                match p.told_layers.iter_mut().find(|(m, _)| *m == mid) {
                    Some(e) => e.1 = mask,
                    None => p.told_layers.push((mid, mask)),
                }
                let layers = LAYER_BPS
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| mask & (1 << b) != 0)
                    .map(|(_, (name, _))| (*name).to_owned())
                    .collect();
                self.signal(
                    key,
                    SignalOut::PublishLayers {
                        mid: mid.to_string(),
                        layers,
                    },
                );
            }
        }
    }

    /// The layers of local track `source` that someone needs (bit set, `l` always).
    fn layers_needed(&self, source: Source, meeting: &MeetingId, group: u32) -> u8 {
        let mut mask = 1;
        for p in self.peers.iter().filter(|p| p.meeting == *meeting) {
            for t in p.tracks_out.iter().filter(|t| t.carries(source)) {
                mask |= layer_bit(Some(t.want));
                if t.source == Some(source) {
                    mask |= layer_bit(t.forwarder.layer());
                }
            }
        }
        for l in self.links.iter().filter(|l| l.meeting == *meeting) {
            for t in l.tracks.iter().filter(|t| t.source == source) {
                mask |= t.mask;
            }
        }
        // The recording takes the main room's cameras at the layer each tile wants (`h`
        // until it says), and the one it has until it switches.
        if group == 0 {
            for s in self.sinks.iter().filter(|s| s.meeting == *meeting) {
                mask |= match s.tracks.iter().find(|t| t.source == source) {
                    Some(t) => layer_bit(Some(t.want)) | layer_bit(t.layer()),
                    None => 0b100,
                };
            }
        }
        mask
    }
}
