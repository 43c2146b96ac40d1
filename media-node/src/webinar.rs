//! Webinars: panelists (and hosts) publish; attendees only watch and listen, and are
//! not shown to each other. Pure rules, applied by each participant's session
//! (`session/`): whether a role may publish, whether an offer sends media, and what of
//! the room's news a session is shown.
use std::collections::HashSet;

use signaling::Role;

use crate::room::{Participant, ServerMsg};

/// Why an attendee's offer that sends media is refused.
pub const ATTENDEE_OFFER: &str = "attendees of a webinar watch and listen only: an offer that \
     sends audio or video is refused (a host can make you a panelist)";

/// Whether a participant of `role` may publish media.
pub fn may_publish(webinar: bool, role: Role) -> bool {
    !webinar || role != Role::Attendee
}

/// Whether an SDP offer sends audio or video: an audio or video m-line that is not
/// rejected (port 0) and whose direction (its own, else the session's, else sendrecv)
/// is `sendrecv` or `sendonly`. Anything unparsable counts as sending: a client that
/// must not send has to say so plainly.
pub fn sends_media(sdp: &str) -> bool {
    let mut session_dir: Option<&str> = None;
    // The current m-section: (sends media if its direction allows, its direction).
    let mut section: Option<(bool, Option<&str>)> = None;
    let mut sends = false;
    let direction = |line: &str| {
        ["sendrecv", "sendonly", "recvonly", "inactive"]
            .into_iter()
            .find(|d| line.strip_prefix("a=") == Some(d))
    };
    let close = |section: Option<(bool, Option<&str>)>, session_dir: Option<&str>| {
        section.is_some_and(|(media, dir)| {
            media
                && matches!(
                    dir.or(session_dir).unwrap_or("sendrecv"),
                    "sendrecv" | "sendonly"
                )
        })
    };
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            sends |= close(section.take(), session_dir);
            let mut fields = m.split_whitespace();
            let kind = fields.next().unwrap_or("");
            let port = fields.next().unwrap_or("");
            let media = matches!(kind, "audio" | "video") && port != "0";
            let known = !kind.is_empty() && port.parse::<u16>().is_ok();
            section = Some((media || !known, None));
        } else if let Some(d) = direction(line) {
            match &mut section {
                Some((_, dir)) => *dir = Some(d),
                None => session_dir = Some(d),
            }
        }
    }
    sends | close(section, session_dir)
}

/// Who a session has shown its participant, so that what it is told keeps its list
/// right: a participant who becomes visible is announced as joining, one who becomes
/// hidden as leaving, and nothing is said of one never shown.
#[derive(Debug, Default)]
pub struct Shown {
    ids: HashSet<String>,
}

/// Whether `viewer` is shown `other`: participants in the waiting room only to hosts,
/// and in a webinar, attendees not to attendees.
pub fn visible(webinar: bool, viewer: &Participant, other: &Participant) -> bool {
    (viewer.is_host() || !other.waiting)
        && !(webinar && viewer.role == Role::Attendee && other.role == Role::Attendee)
}

impl Shown {
    /// Starts with `others` (the welcome's list) shown.
    pub fn new<'a>(others: impl IntoIterator<Item = &'a Participant>) -> Self {
        Self {
            ids: others
                .into_iter()
                .map(|p| p.participant_id.clone())
                .collect(),
        }
    }

    /// What `ev` becomes for `viewer` (None: nothing to tell). `chat_everyone`: a host
    /// lets attendees' chat reach the other attendees too.
    pub fn filter(
        &mut self,
        webinar: bool,
        chat_everyone: bool,
        viewer: &Participant,
        ev: &ServerMsg,
    ) -> Option<ServerMsg> {
        match ev {
            ServerMsg::ParticipantJoined { participant: p }
            | ServerMsg::ParticipantUpdated { participant: p } => {
                self.became(viewer, p, visible(webinar, viewer, p), ev)
            }
            ServerMsg::ParticipantLeft { participant_id } => {
                self.ids.remove(participant_id).then(|| ev.clone())
            }
            ServerMsg::Mute { participant_id, .. } => {
                self.ids.contains(participant_id).then(|| ev.clone())
            }
            // What attendees say reaches the panel, not the other attendees of a webinar
            // (chat does when a host lets it).
            ServerMsg::Chat { .. } if chat_everyone => Some(ev.clone()),
            ServerMsg::Chat { from, .. } | ServerMsg::Reaction { from, .. }
                if webinar && viewer.role == Role::Attendee =>
            {
                (*from == viewer.participant_id || self.ids.contains(from)).then(|| ev.clone())
            }
            _ => Some(ev.clone()),
        }
    }

    fn became(
        &mut self,
        viewer: &Participant,
        p: &Participant,
        visible: bool,
        ev: &ServerMsg,
    ) -> Option<ServerMsg> {
        if p.participant_id == viewer.participant_id {
            return Some(ev.clone());
        }
        let was = self.ids.contains(&p.participant_id);
        match (was, visible) {
            (true, true) => Some(ev.clone()),
            (false, true) => {
                self.ids.insert(p.participant_id.clone());
                Some(ServerMsg::ParticipantJoined {
                    participant: p.clone(),
                })
            }
            (true, false) => {
                self.ids.remove(&p.participant_id);
                Some(ServerMsg::ParticipantLeft {
                    participant_id: p.participant_id.clone(),
                })
            }
            (false, false) => None,
        }
    }

    /// The viewer's own role changed: who they see now of `members`, as joins and leaves.
    pub fn resync(
        &mut self,
        webinar: bool,
        viewer: &Participant,
        members: &[Participant],
    ) -> Vec<ServerMsg> {
        members
            .iter()
            .filter(|p| p.participant_id != viewer.participant_id)
            .filter_map(|p| {
                let ev = ServerMsg::ParticipantUpdated {
                    participant: p.clone(),
                };
                match self.became(viewer, p, visible(webinar, viewer, p), &ev)? {
                    ServerMsg::ParticipantUpdated { .. } => None,
                    changed => Some(changed),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: &str, role: &str) -> Participant {
        Participant {
            participant_id: id.into(),
            name: id.into(),
            role: Role::parse(role).unwrap(),
            ..Participant::default()
        }
    }

    const RECV_ONLY: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";

    #[test]
    fn an_offer_that_only_receives_does_not_send() {
        assert!(!sends_media(RECV_ONLY));
        assert!(!sends_media(&RECV_ONLY.replace("a=recvonly", "a=inactive")));
    }

    #[test]
    fn an_offer_sends_when_a_media_line_sends_or_says_nothing() {
        assert!(sends_media(&RECV_ONLY.replacen(
            "a=recvonly",
            "a=sendrecv",
            1
        )));
        assert!(sends_media(&RECV_ONLY.replacen(
            "a=mid:1\r\na=recvonly",
            "a=mid:1\r\na=sendonly",
            1
        )));
        // No direction attribute: sendrecv.
        assert!(sends_media(&RECV_ONLY.replacen(
            "a=mid:0\r\na=recvonly",
            "a=mid:0",
            1
        )));
        // A session-level direction applies to lines without their own.
        let session = "v=0\r\na=sendonly\r\nm=audio 9 RTP/AVP 0\r\n";
        assert!(sends_media(session));
        assert!(!sends_media("v=0\r\na=recvonly\r\nm=audio 9 RTP/AVP 0\r\n"));
    }

    #[test]
    fn rejected_and_data_lines_do_not_send_but_garbage_does() {
        assert!(!sends_media("v=0\r\nm=audio 0 RTP/AVP 0\r\na=sendrecv\r\n"));
        assert!(!sends_media(
            "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        ));
        assert!(sends_media("v=0\r\nm=\r\n"));
        assert!(sends_media(
            "v=0\r\nm=audio x\r\na=recvonly\r\nm=??? \u{0}\r\n"
        ));
        // No media at all: nothing is sent.
        assert!(!sends_media(""));
    }

    #[test]
    fn attendees_publish_only_outside_webinars() {
        assert!(!may_publish(true, Role::Attendee));
        for role in [Role::Host, Role::CoHost, Role::Panelist] {
            assert!(may_publish(true, role));
        }
        assert!(may_publish(false, Role::Attendee));
    }

    #[test]
    fn attendees_of_a_webinar_do_not_see_each_other_but_see_the_panel() {
        let (me, other, panelist) = (
            who("me", "attendee"),
            who("a2", "attendee"),
            who("p", "panelist"),
        );
        let mut shown = Shown::new([&panelist]);
        let joined = |p: &Participant| ServerMsg::ParticipantJoined {
            participant: p.clone(),
        };
        assert!(shown.filter(true, false, &me, &joined(&other)).is_none());
        assert!(
            shown
                .filter(
                    true,
                    false,
                    &me,
                    &ServerMsg::ParticipantLeft {
                        participant_id: "a2".into()
                    }
                )
                .is_none()
        );
        let chat = |from: &str| ServerMsg::Chat {
            from: from.into(),
            name: from.into(),
            text: "hi".into(),
            unix_ms: 1,
        };
        assert!(
            shown.filter(true, false, &me, &chat("a2")).is_none(),
            "another attendee's chat"
        );
        assert!(shown.filter(true, false, &me, &chat("p")).is_some());
        assert!(
            shown.filter(true, false, &me, &chat("me")).is_some(),
            "my own chat comes back"
        );
        assert!(
            shown.filter(true, true, &me, &chat("a2")).is_some(),
            "a host let attendees chat to everyone"
        );
        assert!(
            shown
                .filter(
                    true,
                    true,
                    &me,
                    &ServerMsg::Reaction {
                        from: "a2".into(),
                        name: "a2".into(),
                        emoji: "👍".into(),
                        unix_ms: 1,
                    }
                )
                .is_none(),
            "reactions stay with the panel"
        );
        // The panel sees attendees; in a meeting everyone sees everyone.
        assert!(
            Shown::default()
                .filter(true, false, &panelist, &joined(&other))
                .is_some()
        );
        assert!(
            Shown::default()
                .filter(false, false, &me, &joined(&other))
                .is_some()
        );
    }

    #[test]
    fn a_promoted_attendee_appears_and_a_demoted_panelist_leaves() {
        let me = who("me", "attendee");
        let mut shown = Shown::default();
        let updated = |p: Participant| ServerMsg::ParticipantUpdated { participant: p };
        match shown.filter(true, false, &me, &updated(who("a2", "panelist"))) {
            Some(ServerMsg::ParticipantJoined { participant }) => {
                assert_eq!(participant.participant_id, "a2")
            }
            other => panic!("expected a join, got {other:?}"),
        }
        assert!(matches!(
            shown.filter(true, false, &me, &updated(who("a2", "panelist"))),
            Some(ServerMsg::ParticipantUpdated { .. })
        ));
        match shown.filter(true, false, &me, &updated(who("a2", "attendee"))) {
            Some(ServerMsg::ParticipantLeft { participant_id }) => assert_eq!(participant_id, "a2"),
            other => panic!("expected a leave, got {other:?}"),
        }
        assert!(
            shown
                .filter(
                    true,
                    false,
                    &me,
                    &ServerMsg::Mute {
                        participant_id: "a2".into(),
                        audio_muted: true,
                        video_muted: true
                    }
                )
                .is_none()
        );
    }

    #[test]
    fn my_own_promotion_shows_me_the_attendees() {
        let members = [
            who("me", "panelist"),
            who("a2", "attendee"),
            who("p", "panelist"),
        ];
        let mut shown = Shown::new([&members[2]]);
        let events = shown.resync(true, &members[0], &members);
        assert_eq!(events.len(), 1);
        assert!(
            matches!(&events[0], ServerMsg::ParticipantJoined { participant } if participant.participant_id == "a2")
        );
        // Demoted again: the attendee goes, the panelist stays.
        let me = who("me", "attendee");
        let events = shown.resync(true, &me, &members);
        assert!(
            matches!(&events[..], [ServerMsg::ParticipantLeft { participant_id }] if participant_id == "a2")
        );
    }

    #[test]
    fn waiting_participants_are_shown_to_hosts_only() {
        let waiting = Participant {
            waiting: true,
            ..who("w", "attendee")
        };
        assert!(!visible(false, &who("me", "attendee"), &waiting));
        assert!(visible(false, &who("me", "host"), &waiting));
    }
}
