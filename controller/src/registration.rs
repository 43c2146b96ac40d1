//! Registration: a meeting may require its participants to register (name, e-mail,
//! answers to the host's questions) before they join. Each registrant gets a personal
//! join key at once; it lets them in only once they are approved (at once, or by a
//! host). The join token then carries the registration, so that the meeting's
//! attendance names who of the registrants came.
use std::time::Instant;

use common::ids::MeetingId;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::lengths::truncate;
use crate::model::{Attendance, Meeting, Registrant, RegistrantState, Registration};
use crate::secrets::{blocking, hash_secret, random_secret, verify_secret};
use crate::service::Service;

pub const MAX_QUESTIONS: usize = 10;
pub const MAX_QUESTION_CHARS: usize = 200;
pub const MAX_ANSWER_CHARS: usize = 500;
pub const MAX_EMAIL_CHARS: usize = 254;
/// Most registrants one meeting takes.
pub const MAX_REGISTRANTS: usize = 10_000;

/// How a meeting asks to be registered for, as a request gives it.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationInput {
    /// `automatic` (the default) or `manual`.
    #[serde(default)]
    pub approval: String,
    #[serde(default)]
    pub questions: Vec<String>,
}

/// Checks a meeting's registration settings.
pub fn settings(input: &RegistrationInput) -> Result<Registration, ApiError> {
    let manual_approval = match input.approval.trim() {
        "" | "automatic" => false,
        "manual" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "registration.approval: {:?}: expected \"automatic\" or \"manual\"",
                truncate(other, 20)
            )));
        }
    };
    if input.questions.len() > MAX_QUESTIONS {
        return Err(ApiError::BadRequest(format!(
            "registration.questions: at most {MAX_QUESTIONS}"
        )));
    }
    let questions: Vec<String> = input
        .questions
        .iter()
        .map(|q| q.trim().to_owned())
        .collect();
    if questions.iter().any(|q| {
        q.is_empty() || q.chars().count() > MAX_QUESTION_CHARS || q.chars().any(char::is_control)
    }) {
        return Err(ApiError::BadRequest(format!(
            "registration.questions: each 1 to {MAX_QUESTION_CHARS} printable characters"
        )));
    }
    Ok(Registration {
        manual_approval,
        questions,
    })
}

/// What someone registering gives.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub answers: Vec<String>,
}

/// A plausible e-mail address: one `@` with something on both sides, a dot in the
/// domain, no spaces or control characters. (Whether it reaches anyone is the host's
/// judgement when approving.)
fn plausible_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && e.chars().count() <= MAX_EMAIL_CHARS
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Service {
    /// Registers someone for a meeting that asks for it; the registrant and their
    /// personal join key (`{registrant}.{secret}`), shown this once.
    pub async fn register(
        &self,
        caller: &Caller,
        meeting_id: &str,
        input: RegisterInput,
    ) -> Result<(Registrant, String), ApiError> {
        let id = Self::parse_meeting_id(meeting_id)?;
        // Registrations cost a hash each: limited like joins.
        self.join_limits.check(caller.addr, &id, Instant::now())?;
        let meeting = self.meeting(&id).await?;
        let Some(settings) = &meeting.registration else {
            return Err(ApiError::BadRequest(format!(
                "meeting {id} does not take registrations: join it directly"
            )));
        };
        if meeting.is_ended() {
            return Err(ApiError::Conflict(format!("meeting {id} has ended")));
        }
        let name = signaling::limits::display_name(&input.name).map_err(ApiError::BadRequest)?;
        let email = input.email.trim().to_owned();
        if !plausible_email(&email) {
            return Err(ApiError::BadRequest(
                "email: an address like ada@example.org".into(),
            ));
        }
        if input.answers.len() != settings.questions.len() {
            return Err(ApiError::BadRequest(format!(
                "answers: one for each of the {} questions",
                settings.questions.len()
            )));
        }
        let answers: Vec<String> = input.answers.iter().map(|a| a.trim().to_owned()).collect();
        if answers.iter().any(|a| {
            a.chars().count() > MAX_ANSWER_CHARS || a.chars().any(|c| c.is_control() && c != '\n')
        }) {
            return Err(ApiError::BadRequest(format!(
                "answers: each at most {MAX_ANSWER_CHARS} characters"
            )));
        }
        let existing = self.store.registrants(&id).await?;
        if existing.len() >= MAX_REGISTRANTS {
            return Err(ApiError::Conflict(format!(
                "meeting {id} has its maximum of {MAX_REGISTRANTS} registrants"
            )));
        }
        if existing
            .iter()
            .any(|r| r.email.eq_ignore_ascii_case(&email))
        {
            return Err(ApiError::Conflict(
                "this e-mail address is registered for the meeting already".into(),
            ));
        }
        let secret = random_secret();
        let key_hash = {
            let s = secret.clone();
            blocking(move || hash_secret(&s)).await??
        };
        let now = common::unix_ms();
        let registrant = Registrant {
            meeting: id.clone(),
            id: common::ids::ParticipantId::random().to_string(),
            name,
            email,
            answers,
            state: if settings.manual_approval {
                RegistrantState::Pending
            } else {
                RegistrantState::Approved
            },
            registered_unix_ms: now,
            decided_unix_ms: (!settings.manual_approval).then_some(now),
            key_hash,
        };
        self.store.put_registrant(&registrant).await?;
        tracing::info!(meeting_id = %id, registrant = %registrant.id, state = registrant.state.as_str(), "registered");
        let key = format!("{}.{secret}", registrant.id);
        Ok((registrant, key))
    }

    /// A meeting's registrants, for its hosts and operators.
    pub async fn registrants(
        &self,
        caller: &Caller,
        meeting_id: &str,
    ) -> Result<(Meeting, Vec<Registrant>), ApiError> {
        let meeting = self
            .hosted_meeting(caller, meeting_id, "the registrants")
            .await?;
        let list = self.store.registrants(&meeting.id).await?;
        Ok((meeting, list))
    }

    /// A host approves (or rejects) a registrant.
    pub async fn decide_registrant(
        &self,
        caller: &Caller,
        meeting_id: &str,
        registrant: &str,
        approve: bool,
    ) -> Result<Registrant, ApiError> {
        let meeting = self
            .hosted_meeting(caller, meeting_id, "approving registrants")
            .await?;
        let mut r = self
            .store
            .get_registrant(&meeting.id, registrant)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "registrant {:?} of meeting {} does not exist",
                    truncate(registrant, 40),
                    meeting.id
                ))
            })?;
        r.state = if approve {
            RegistrantState::Approved
        } else {
            RegistrantState::Rejected
        };
        r.decided_unix_ms = Some(common::unix_ms());
        self.store.put_registrant(&r).await?;
        tracing::info!(meeting_id = %meeting.id, registrant = %r.id, state = r.state.as_str(), "registrant decided");
        Ok(r)
    }

    /// Who attended a meeting (from its media nodes), for its hosts and operators.
    pub async fn participants(
        &self,
        caller: &Caller,
        meeting_id: &str,
    ) -> Result<(Meeting, Vec<Attendance>), ApiError> {
        let meeting = self
            .hosted_meeting(caller, meeting_id, "the participants")
            .await?;
        let mut list = self.store.attendance(&meeting.id).await?;
        list.sort_by(|a, b| {
            (a.joined_unix_ms, &a.participant_id).cmp(&(b.joined_unix_ms, &b.participant_id))
        });
        Ok((meeting, list))
    }

    /// Who attended any meeting the caller hosts (an administrator: their
    /// organisation's; an operator: every) that ran between `from` and `to` (Unix ms):
    /// each meeting with its attendance.
    pub async fn participants_between(
        &self,
        caller: &Caller,
        from: i64,
        to: i64,
    ) -> Result<Vec<(Meeting, Vec<Attendance>)>, ApiError> {
        if from > to {
            return Err(ApiError::BadRequest("from: must not be after to".into()));
        }
        let sees = self.meeting_filter(caller)?;
        self.require_synced()?;
        let mut meetings: Vec<Meeting> = self.view.read(|v| {
            v.meetings
                .values()
                .filter(|m| {
                    sees(m) && m.created_unix_ms <= to && m.ended_unix_ms.is_none_or(|e| e >= from)
                })
                .cloned()
                .collect()
        });
        meetings.sort_by_key(|m| m.created_unix_ms);
        let reads =
            futures::future::join_all(meetings.iter().map(|m| self.store.attendance(&m.id))).await;
        let mut out = Vec::new();
        for (m, read) in meetings.into_iter().zip(reads) {
            let mut list: Vec<Attendance> = read?
                .into_iter()
                .filter(|a| a.joined_unix_ms <= to && a.left_unix_ms.is_none_or(|l| l >= from))
                .collect();
            list.sort_by_key(|a| a.joined_unix_ms);
            out.push((m, list));
        }
        Ok(out)
    }

    /// A join to a meeting that requires registration: the registrant whose personal
    /// key this is, if they are approved; otherwise why not.
    pub(crate) async fn registered_joiner(
        &self,
        meeting: &MeetingId,
        key: Option<&str>,
    ) -> Result<Registrant, ApiError> {
        let refused = |code: &'static str, message: &str| ApiError::RefusedByHost {
            code,
            message: message.to_owned(),
        };
        let Some((id, secret)) = key.and_then(|k| k.split_once('.')) else {
            return Err(refused(
                "registration_required",
                "this meeting requires registration: register, then join with your personal link",
            ));
        };
        let Some(r) = self.store.get_registrant(meeting, id).await.ok().flatten() else {
            return Err(refused(
                "registration_unknown",
                "this registration link is not valid",
            ));
        };
        let (secret, hash) = (secret.to_owned(), r.key_hash.clone());
        if !blocking(move || verify_secret(&secret, &hash)).await? {
            return Err(refused(
                "registration_unknown",
                "this registration link is not valid",
            ));
        }
        match r.state {
            RegistrantState::Approved => Ok(r),
            RegistrantState::Pending => Err(refused(
                "registration_pending",
                "your registration waits for the host's approval: try again once approved",
            )),
            RegistrantState::Rejected => Err(refused(
                "registration_rejected",
                "the host did not approve your registration for this meeting",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mail_addresses_are_checked_for_shape() {
        for ok in ["ada@example.org", "a.b+c@uni.no"] {
            assert!(plausible_email(ok), "{ok}");
        }
        for bad in [
            "",
            "ada",
            "@example.org",
            "ada@",
            "ada@example",
            "ada@.org",
            "a da@x.org",
            "a@b@c.org",
            "ada@x.org\n",
        ] {
            assert!(!plausible_email(bad), "{bad:?}");
        }
    }

    #[test]
    fn settings_name_what_is_wrong() {
        let bad = |approval: &str, questions: Vec<&str>| {
            settings(&RegistrationInput {
                approval: approval.into(),
                questions: questions.into_iter().map(str::to_owned).collect(),
            })
            .unwrap_err()
            .to_string()
        };
        assert!(bad("sometimes", vec![]).contains("registration.approval"));
        assert!(bad("manual", vec![""]).contains("registration.questions"));
        assert!(bad("manual", vec!["q"; 11]).contains("at most 10"));
        let s = settings(&RegistrationInput {
            approval: "manual".into(),
            questions: vec![" Affiliation? ".into()],
        })
        .unwrap();
        assert!(s.manual_approval);
        assert_eq!(s.questions, ["Affiliation?"]);
    }
}
