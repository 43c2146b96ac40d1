//! Active speaker detection: the loudest publisher of a meeting over a window, local or
//! remote (from the audio level a link carries), announced when it changes.
use std::time::Duration;

use common::ids::{MeetingId, ParticipantId};
use str0m::media::MediaKind;

use super::api::{RelayEvent, SfuOutput};
use super::core::Sfu;

/// How often the loudest participant of each meeting is worked out.
pub(super) const SPEAKER_CHECK: Duration = Duration::from_millis(500);

/// Loudness (an average of 127 + dBov audio level) below which nobody is speaking.
pub(super) const SPEAKER_THRESHOLD: f32 = 8.0;

/// RFC 6464: 0 is the loudest (0 dBov), -127 silence; loudness is 127 + level.
pub(super) fn loudness_of(level: i8) -> f32 {
    f32::from(127 - level.clamp(-127, 0).unsigned_abs() as i8)
}

impl Sfu {
    /// Per meeting, the participant whose audio has been loudest lately, if loud enough;
    /// announced when it changes.
    pub(super) fn detect_speakers(&mut self) {
        // Close the window: its mean loudness, smoothed with the windows before.
        for p in &mut self.peers {
            for t in p
                .tracks_in
                .iter_mut()
                .filter(|t| t.kind == MediaKind::Audio)
            {
                let (sum, n) = std::mem::take(&mut t.window);
                let mean = if n == 0 { 0.0 } else { sum / n as f32 };
                t.loudness = 0.5 * t.loudness + 0.5 * mean;
            }
        }
        for r in self
            .remotes
            .iter_mut()
            .filter(|r| r.kind == MediaKind::Audio)
        {
            let (sum, n) = std::mem::take(&mut r.window);
            let mean = if n == 0 { 0.0 } else { sum / n as f32 };
            r.loudness = 0.5 * r.loudness + 0.5 * mean;
        }
        // Participants here and on the other nodes of the meeting (their levels come
        // over the links), so that every node picks the same speaker.
        let local = self.peers.iter().map(|p| {
            let l = p
                .tracks_in
                .iter()
                .filter(|t| t.kind == MediaKind::Audio)
                .map(|t| t.loudness)
                .fold(0.0, f32::max);
            (&p.meeting, &p.participant, l)
        });
        let remote = self
            .remotes
            .iter()
            .filter(|r| r.kind == MediaKind::Audio)
            .map(|r| (&r.meeting, &r.participant, r.loudness));
        let mut loudest: Vec<(MeetingId, ParticipantId, f32)> = Vec::new();
        for (meeting, participant, l) in local.chain(remote) {
            if l < SPEAKER_THRESHOLD {
                continue;
            }
            match loudest.iter_mut().find(|(m, _, _)| m == meeting) {
                Some(e) if e.2 >= l => {}
                Some(e) => *e = (meeting.clone(), participant.clone(), l),
                None => loudest.push((meeting.clone(), participant.clone(), l)),
            }
        }
        for (meeting, participant, _) in loudest {
            match self.speakers.iter_mut().find(|(m, _)| *m == meeting) {
                Some((_, cur)) if *cur == participant => continue,
                Some((_, cur)) => *cur = participant.clone(),
                None => self.speakers.push((meeting.clone(), participant.clone())),
            }
            self.note_speaker(&meeting, &participant);
            for sink in self.sinks.iter().filter(|s| s.meeting == meeting) {
                self.out.push_back(SfuOutput::Sink {
                    key: sink.key,
                    event: RelayEvent::Speaker {
                        participant: participant.clone(),
                    },
                });
            }
            self.out.push_back(SfuOutput::ActiveSpeaker {
                meeting,
                participant,
            });
        }
        let present = |m: &MeetingId| {
            self.peers.iter().any(|p| &p.meeting == m)
                || self.remotes.iter().any(|r| &r.meeting == m)
        };
        self.speakers.retain(|(m, _)| present(m));
        self.recent_speakers.retain(|(m, _)| present(m));
    }
}
