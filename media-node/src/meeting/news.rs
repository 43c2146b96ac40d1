//! What a host's logged action means for one participant's session: a mute the node
//! applies and tells (`muted_by_host`), a message for the client (a broadcast to the
//! breakout rooms, a request to unmute), a hand lowered. Pure.
use signaling::{Participant, ServerMsg};

use crate::hosts::Action;

#[derive(Debug, PartialEq)]
pub enum Effect {
    /// The participant's mute state as a host set it (applied in the SFU and told).
    MutedByHost {
        audio: bool,
        video: bool,
        by_name: String,
    },
    /// A message for the client.
    Tell(ServerMsg),
    /// The participant's hand goes down.
    LowerHand,
}

/// The effects of `action`, taken by `by_name`, on `me`'s session.
pub fn effects(me: &Participant, action: Action, by_name: String) -> Vec<Effect> {
    let mine = action.target() == Some(me.participant_id.as_str());
    let muted = (me.audio_muted, me.video_muted);
    let to = match &action {
        Action::Mute { audio, video, .. } if mine => Some((muted.0 || *audio, muted.1 || *video)),
        // Mute all leaves hosts and co-hosts alone.
        Action::MuteAll if !me.is_host() => Some((true, muted.1)),
        _ => None,
    };
    let mut out = Vec::new();
    if let Some((audio, video)) = to.filter(|t| *t != muted) {
        out.push(Effect::MutedByHost {
            audio,
            video,
            by_name: by_name.clone(),
        });
    }
    match action {
        Action::BreakoutBroadcast(text) => {
            out.push(Effect::Tell(ServerMsg::Broadcast { text, by_name }));
        }
        Action::AskUnmute(_) if mine => {
            out.push(Effect::Tell(ServerMsg::UnmuteRequest { by_name }));
        }
        Action::LowerHand(_) if mine => out.push(Effect::LowerHand),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use signaling::Role;

    fn me(role: Role) -> Participant {
        Participant {
            participant_id: "me".into(),
            role,
            ..Participant::default()
        }
    }

    #[test]
    fn a_host_mutes_me_or_everyone_but_hosts_and_what_is_muted_already_is_not_told() {
        let by = || "Hanne".to_owned();
        let stop_video = Action::Mute {
            target: "me".into(),
            audio: false,
            video: true,
        };
        assert_eq!(
            effects(&me(Role::Attendee), stop_video.clone(), by()),
            [Effect::MutedByHost {
                audio: false,
                video: true,
                by_name: by()
            }]
        );
        let mut muted = me(Role::Attendee);
        muted.video_muted = true;
        assert!(effects(&muted, stop_video, by()).is_empty());
        let someone_else = Action::Mute {
            target: "other".into(),
            audio: true,
            video: false,
        };
        assert!(effects(&me(Role::Attendee), someone_else, by()).is_empty());
        assert_eq!(effects(&me(Role::Attendee), Action::MuteAll, by()).len(), 1);
        assert!(effects(&me(Role::CoHost), Action::MuteAll, by()).is_empty());
    }

    #[test]
    fn broadcasts_reach_everyone_and_requests_only_their_target() {
        let by = || "Hanne".to_owned();
        let text = "five minutes left".to_owned();
        assert_eq!(
            effects(
                &me(Role::Host),
                Action::BreakoutBroadcast(text.clone()),
                by()
            ),
            [Effect::Tell(ServerMsg::Broadcast {
                text,
                by_name: by()
            })]
        );
        assert_eq!(
            effects(&me(Role::Attendee), Action::AskUnmute("me".into()), by()),
            [Effect::Tell(ServerMsg::UnmuteRequest { by_name: by() })]
        );
        assert!(effects(&me(Role::Attendee), Action::AskUnmute("x".into()), by()).is_empty());
        assert_eq!(
            effects(&me(Role::Attendee), Action::LowerHand("me".into()), by()),
            [Effect::LowerHand]
        );
        assert!(effects(&me(Role::Attendee), Action::Lock(true), by()).is_empty());
    }
}
