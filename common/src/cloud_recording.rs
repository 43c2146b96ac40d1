//! What a meeting's cloud recording may and may not do, said the same way by the
//! controller (its API) and the media nodes (a host's Record button): the refusals have
//! one code and one sentence each wherever they are met.
use signaling::CloudRecordingAction;

/// Why a meeting cannot be recorded on the servers: the error code clients switch on,
/// and the sentence a person reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: &'static str,
}

pub const E2EE: Refusal = Refusal {
    code: "e2ee_meeting",
    message: "this meeting is end-to-end encrypted: its media cannot be recorded on the \
              servers (participants may record on their own computers)",
};
pub const FORBIDDEN: Refusal = Refusal {
    code: "recording_forbidden",
    message: "the organisation of this meeting's host does not allow recording meetings on \
              the servers",
};
pub const NEEDS_CLASSIFICATION: Refusal = Refusal {
    code: "classification_required",
    message: "the organisation of this meeting's host records meetings on the servers only \
              when they were made with a data classification, and this one was not",
};
pub const ALREADY: Refusal = Refusal {
    code: "already_recording",
    message: "the meeting is being recorded already: stop that recording first",
};
pub const NOT_RUNNING: Refusal = Refusal {
    code: "not_recording",
    message: "no cloud recording of this meeting is running (it ended, or was never started)",
};
pub const ALREADY_PAUSED: Refusal = Refusal {
    code: "already_paused",
    message: "the cloud recording is paused already",
};
pub const NOT_PAUSED: Refusal = Refusal {
    code: "not_paused",
    message: "the cloud recording is not paused",
};

/// What a host's `ask` makes of a recording the hosts left in state `wish`, or why the
/// state does not allow it: the one table of the recording's states, by which the media
/// node both checks a host's request and applies it to the room record.
pub fn after(wish: Wish, ask: CloudRecordingAction) -> Result<Wish, Refusal> {
    use CloudRecordingAction as A;
    match (ask, wish) {
        (A::Start, Wish::Stopped) => Ok(Wish::Recording),
        (A::Start, _) => Err(ALREADY),
        (_, Wish::Stopped) => Err(NOT_RUNNING),
        (A::Pause, Wish::Recording) => Ok(Wish::Paused),
        (A::Pause, _) => Err(ALREADY_PAUSED),
        (A::Resume, Wish::Paused) => Ok(Wish::Recording),
        (A::Resume, _) => Err(NOT_PAUSED),
        (A::Stop, _) => Ok(Wish::Stopped),
    }
}

/// The gap a pause leaves in a recording says this.
pub const PAUSED_GAP: &str = "paused by a host";

/// Why a meeting with these settings cannot be recorded on the servers, if it cannot.
pub fn refusal(e2ee: bool, forbidden: bool, needs_classification: bool) -> Option<Refusal> {
    if e2ee {
        Some(E2EE)
    } else if forbidden {
        Some(FORBIDDEN)
    } else if needs_classification {
        Some(NEEDS_CLASSIFICATION)
    } else {
        None
    }
}

/// What the hosts asked of the cloud recording, as the room record spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Wish {
    Recording,
    Paused,
    #[default]
    Stopped,
}

impl Wish {
    pub const ALL: [Wish; 3] = [Wish::Recording, Wish::Paused, Wish::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            Wish::Recording => "recording",
            Wish::Paused => "paused",
            Wish::Stopped => "stopped",
        }
    }
    pub fn parse(s: &str) -> Option<Wish> {
        Wish::ALL.into_iter().find(|w| w.as_str() == s)
    }
    /// Recording, or paused in a recording: participants are told either way.
    pub fn on(self) -> bool {
        self != Wish::Stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_code_and_e2ee_is_said_first() {
        assert_eq!(refusal(false, false, false), None);
        assert_eq!(refusal(true, true, true), Some(E2EE));
        assert_eq!(refusal(false, true, true), Some(FORBIDDEN));
        assert_eq!(refusal(false, false, true), Some(NEEDS_CLASSIFICATION));
        let codes = [
            E2EE,
            FORBIDDEN,
            NEEDS_CLASSIFICATION,
            ALREADY,
            NOT_RUNNING,
            ALREADY_PAUSED,
            NOT_PAUSED,
        ]
        .map(|r| r.code);
        let mut unique = codes.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
    }

    #[test]
    fn wishes_spell_back() {
        for w in Wish::ALL {
            assert_eq!(Wish::parse(w.as_str()), Some(w));
        }
        assert_eq!(Wish::parse("Recording"), None);
        assert!(Wish::Paused.on() && !Wish::Stopped.on());
    }
}
