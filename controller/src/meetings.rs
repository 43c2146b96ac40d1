//! Meetings through the API: create (with its password and host key hashed), show, list
//! and end (which tells every media node hosting it).
use common::ids::{MeetingId, NodeId, Region};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::lengths::{MAX_DESCRIPTION_CHARS, MAX_PASSWORD_CHARS, MAX_TITLE_CHARS, truncate};
use crate::model::{Audience, Collab, HostAction, Meeting, MeetingKind, MeetingState, Owner, Room};
use crate::registration::RegistrationInput;
use crate::schedule::{Schedule, ScheduleInput};
use crate::secrets::{blocking, hash_secret, random_secret};
use crate::service::Service;

/// The classification of meetings created without one.
pub const DEFAULT_CLASSIFICATION: &str = "internal";

#[derive(Clone, Debug)]
pub struct NewMeeting {
    pub title: String,
    pub password: Option<String>,
    pub residency: Option<String>,
    pub classification: Option<String>,
    /// None: on for a meeting without a password.
    pub waiting_room: Option<bool>,
    /// Media encrypted end to end in the browsers (None: the organisation's default,
    /// else off).
    pub e2ee: Option<bool>,
    /// `meeting` (empty: the same) or `webinar`.
    pub kind: String,
    pub description: String,
    /// When it takes place (None: any time).
    pub schedule: Option<ScheduleInput>,
    /// Participants register first (None: nobody registers).
    pub registration: Option<RegistrationInput>,
    /// Who may join: `anyone` (empty: the same), `signed_in`, `organisation`.
    pub audience: String,
}

/// A meeting just created, with the secrets shown this once.
#[derive(Clone, Debug)]
pub struct Created {
    pub info: MeetingInfo,
    pub host_key: String,
    /// Webinars: joining with it gives the panelist role.
    pub panelist_key: Option<String>,
}

fn checked_title(title: &str) -> Result<String, ApiError> {
    let title = title.trim().to_owned();
    if title.is_empty() {
        return Err(ApiError::BadRequest("title: must not be empty".into()));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "title: at most {MAX_TITLE_CHARS} characters"
        )));
    }
    if title.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "title: must not contain control characters".into(),
        ));
    }
    Ok(title)
}

/// Who may join, as the API spells it; only a signed-in maker's meeting is for an
/// organisation (an operator's belongs to none).
fn checked_audience(audience: &str, has_owner: bool) -> Result<Audience, ApiError> {
    match Audience::parse(audience) {
        None => Err(ApiError::BadRequest(format!(
            "audience: {:?} is not one: expected \"anyone\", \"signed_in\" or \"organisation\"",
            truncate(audience, 40)
        ))),
        Some(Audience::Organisation) if !has_owner => Err(ApiError::BadRequest(
            "audience: \"organisation\" is for meetings a signed-in user makes (an operator's belong to no organisation)".into(),
        )),
        Some(a) => Ok(a),
    }
}

fn checked_description(description: &str) -> Result<String, ApiError> {
    let description = description.trim().to_owned();
    if description.chars().count() > MAX_DESCRIPTION_CHARS
        || description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::BadRequest(format!(
            "description: at most {MAX_DESCRIPTION_CHARS} characters, no control characters but line breaks"
        )));
    }
    Ok(description)
}

/// What a host changes of a meeting not yet ended (None: as it is).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingEdit {
    pub title: Option<String>,
    pub description: Option<String>,
    /// A new schedule; `null` removes it (any time).
    #[serde(default, deserialize_with = "present")]
    pub schedule: Option<Option<ScheduleInput>>,
    pub waiting_room: Option<bool>,
    /// A new password; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    pub password: Option<Option<String>>,
    /// New registration settings; `null`: nobody registers any more.
    #[serde(default, deserialize_with = "present")]
    pub registration: Option<Option<RegistrationInput>>,
    /// Who may join: `anyone`, `signed_in`, `organisation`.
    pub audience: Option<String>,
}

/// A field that may be present as `null` (Some(None)) or absent (None).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// A meeting as the API shows it: the meeting and where its participants are placed.
#[derive(Clone, Debug)]
pub struct MeetingInfo {
    pub meeting: Meeting,
    pub placements: Vec<(Region, NodeId)>,
    /// What its hosts decided.
    pub room: Room,
    /// When its personal data is deleted (ended meetings).
    pub deleted_after_unix_ms: Option<i64>,
}

impl Service {
    pub async fn create_meeting(
        &self,
        caller: &Caller,
        req: NewMeeting,
    ) -> Result<Created, ApiError> {
        // An operator (automation), or a signed-in user, who then owns it.
        let owner = match &caller.user {
            Some(u) => {
                if let Some(o) = &self.oidc {
                    o.may_host(u)?;
                }
                Some(Owner {
                    issuer: u.iss.clone(),
                    subject: u.sub.clone(),
                    email: u.email.clone(),
                    name: u.name.clone(),
                    org: u.org.clone(),
                })
            }
            None => {
                self.require_operator(caller)?;
                None
            }
        };
        let kind = MeetingKind::parse(&req.kind).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "kind: {:?} is not a kind of meeting: expected \"meeting\" or \"webinar\"",
                truncate(&req.kind, 40)
            ))
        })?;
        let title = checked_title(&req.title)?;
        let audience = checked_audience(&req.audience, owner.is_some())?;
        if let Some(p) = &req.password
            && (p.is_empty() || p.chars().count() > MAX_PASSWORD_CHARS)
        {
            return Err(ApiError::BadRequest(format!(
                "password: 1 to {MAX_PASSWORD_CHARS} characters"
            )));
        }
        let description = checked_description(&req.description)?;
        let schedule = req
            .schedule
            .as_ref()
            .map(Schedule::parse)
            .transpose()
            .map_err(ApiError::BadRequest)?;
        let registration = req
            .registration
            .as_ref()
            .map(crate::registration::settings)
            .transpose()?;
        // A signed-in user's organisation sets the defaults and the rules.
        let org = match &caller.user {
            Some(u) => Some(self.settings_for(u).await?),
            None => None,
        };
        let mut residency = match &req.residency {
            Some(r) => Some(self.known_region("residency", r)?),
            None => None,
        };
        if let Some(o) = org.as_ref().filter(|o| !o.allowed_regions.is_empty()) {
            match &residency {
                None => residency = o.allowed_regions.first().cloned(),
                Some(r) if !o.allowed_regions.contains(r) => {
                    let allowed: Vec<String> =
                        o.allowed_regions.iter().map(ToString::to_string).collect();
                    return Err(ApiError::BadRequest(format!(
                        "residency: your organisation keeps meetings in {} only",
                        allowed.join(", ")
                    )));
                }
                Some(_) => {}
            }
        }
        let classification = match &req.classification {
            Some(c) => Region::parse(c)
                .map_err(|_| {
                    ApiError::BadRequest(
                        "classification: 1-63 characters of a-z, 0-9 and '-'".into(),
                    )
                })?
                .to_string(),
            None => DEFAULT_CLASSIFICATION.to_owned(),
        };
        let host_key = random_secret();
        let panelist_key = (kind == MeetingKind::Webinar).then(random_secret);
        let (password_hash, host_key_hash, panelist_key_hash) = {
            let (pw, hk, pk) = (req.password.clone(), host_key.clone(), panelist_key.clone());
            type Hashes = (Option<String>, String, Option<String>);
            blocking(move || -> Result<Hashes, ApiError> {
                let p = pw.map(|p| hash_secret(&p)).transpose()?;
                let k = pk.map(|k| hash_secret(&k)).transpose()?;
                Ok((p, hash_secret(&hk)?, k))
            })
            .await??
        };
        let mut meeting = Meeting {
            id: MeetingId::random(),
            title,
            password_hash,
            residency,
            classification,
            host_key_hash,
            state: MeetingState::Active,
            created_unix_ms: common::unix_ms(),
            ended_unix_ms: None,
            waiting_room: req.waiting_room.unwrap_or(match &org {
                Some(o) => o.waiting_room,
                None => req.password.is_none(),
            }),
            locked: false,
            e2ee: req
                .e2ee
                .unwrap_or_else(|| org.as_ref().is_some_and(|o| o.e2ee)),
            recording_forbidden: org.as_ref().is_some_and(|o| o.recording_forbidden),
            recording_needs_classification: req.classification.is_none()
                && org
                    .as_ref()
                    .is_some_and(|o| o.recording_needs_classification),
            retention: org.as_ref().and_then(|o| o.retention),
            kind,
            panelist_key_hash,
            description,
            schedule,
            registration,
            owner,
            audience,
        };
        for _ in 0..5 {
            meeting.id = MeetingId::random();
            if self
                .store
                .create_meeting(&meeting)
                .await
                .inspect_err(|_| self.metrics.etcd_errors.inc())?
            {
                let info = MeetingInfo {
                    meeting,
                    placements: vec![],
                    room: Room::default(),
                    deleted_after_unix_ms: None,
                };
                return Ok(Created {
                    info,
                    host_key,
                    panelist_key,
                });
            }
        }
        Err(ApiError::Internal("could not allocate a meeting id".into()))
    }

    /// A host changes a meeting not yet ended (title, description, schedule, the
    /// meeting's own waiting-room setting, password, registration, audience). Its kind,
    /// classification, residency and encryption stay as made: media and recordings may
    /// already be where those put them.
    pub async fn edit_meeting(
        &self,
        caller: &Caller,
        id: &str,
        edit: MeetingEdit,
    ) -> Result<MeetingInfo, ApiError> {
        let password_hash = match &edit.password {
            Some(Some(p)) => {
                if p.is_empty() || p.chars().count() > MAX_PASSWORD_CHARS {
                    return Err(ApiError::BadRequest(format!(
                        "password: 1 to {MAX_PASSWORD_CHARS} characters"
                    )));
                }
                let p = p.clone();
                Some(Some(blocking(move || hash_secret(&p)).await??))
            }
            Some(None) => Some(None),
            None => None,
        };
        let registration = edit
            .registration
            .as_ref()
            .map(|r| r.as_ref().map(crate::registration::settings).transpose())
            .transpose()?;
        for _ in 0..3 {
            let was = self
                .hosted_meeting(caller, id, "editing the meeting")
                .await?;
            if was.is_ended() {
                return Err(ApiError::Conflict(format!("meeting {} has ended", was.id)));
            }
            let mut m = was.clone();
            if let Some(t) = &edit.title {
                m.title = checked_title(t)?;
            }
            if let Some(d) = &edit.description {
                m.description = checked_description(d)?;
            }
            if let Some(s) = &edit.schedule {
                m.schedule = s
                    .as_ref()
                    .map(Schedule::parse)
                    .transpose()
                    .map_err(ApiError::BadRequest)?;
            }
            if let Some(w) = edit.waiting_room {
                m.waiting_room = w;
            }
            if let Some(h) = &password_hash {
                m.password_hash = h.clone();
            }
            if let Some(r) = &registration {
                m.registration = r.clone();
            }
            if let Some(a) = &edit.audience {
                m.audience = checked_audience(a, m.owner.is_some())?;
            }
            if self.store.edit_meeting(&m, &was).await? {
                tracing::info!(meeting_id = %m.id, "meeting edited");
                return Ok(self.info(m));
            }
        }
        Err(ApiError::Unavailable(
            "the meeting kept changing while it was edited: try again".into(),
        ))
    }

    fn info(&self, meeting: Meeting) -> MeetingInfo {
        let (placements, room) = self.view.read(|v| {
            let placements = v
                .placements
                .get(&meeting.id)
                .into_iter()
                .flatten()
                .map(|(s, p)| (s.region.clone(), p.node.clone()))
                .collect();
            (
                placements,
                v.rooms.get(&meeting.id).cloned().unwrap_or_default(),
            )
        });
        MeetingInfo {
            deleted_after_unix_ms: self.deleted_after(&meeting),
            meeting,
            placements,
            room,
        }
    }

    /// When an ended meeting's personal data is deleted.
    pub fn deleted_after(&self, meeting: &Meeting) -> Option<i64> {
        let keep = meeting.retention.unwrap_or(self.retention);
        meeting.ended_unix_ms.map(|e| e + keep.as_millis() as i64)
    }

    /// The meeting as anyone with its link sees it before joining (title, whether it
    /// needs a password): no authentication, like the join itself.
    pub async fn public_meeting(&self, id: &str) -> Result<MeetingInfo, ApiError> {
        let id = Self::parse_meeting_id(id)?;
        Ok(self.info(self.meeting(&id).await?))
    }

    /// The meeting's audit trail: what its hosts did, oldest first. For its host (host
    /// key) and operators.
    pub async fn audit(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(MeetingId, Vec<HostAction>), ApiError> {
        let meeting = self.hosted_meeting(caller, id, "the audit").await?;
        let actions = self.view.read(|v| {
            v.rooms
                .get(&meeting.id)
                .map(|r| r.actions.clone())
                .unwrap_or_default()
        });
        Ok((meeting.id, actions))
    }

    /// The meeting's polls and Q&A (`what` names them in a refusal). For its host (host
    /// key) and operators.
    pub async fn collab(
        &self,
        caller: &Caller,
        id: &str,
        what: &str,
    ) -> Result<(MeetingId, Collab), ApiError> {
        let meeting = self.hosted_meeting(caller, id, what).await?;
        let collab = self
            .view
            .read(|v| v.collabs.get(&meeting.id).cloned().unwrap_or_default());
        Ok((meeting.id, collab))
    }

    pub async fn get_meeting(&self, caller: &Caller, id: &str) -> Result<MeetingInfo, ApiError> {
        Ok(self.info(self.hosted_meeting(caller, id, "the meeting").await?))
    }

    pub async fn list_meetings(
        &self,
        caller: &Caller,
        state: Option<&str>,
    ) -> Result<Vec<MeetingInfo>, ApiError> {
        // Operators see every meeting; an administrator their organisation's; a user
        // their own.
        let sees = self.meeting_filter(caller)?;
        let want = match state {
            None | Some("") => None,
            Some("active") => Some(MeetingState::Active),
            Some("ended") => Some(MeetingState::Ended),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "state: expected \"active\" or \"ended\", got {:?}",
                    truncate(other, 40)
                )));
            }
        };
        self.require_synced()?;
        let mut meetings: Vec<Meeting> = self.view.read(|v| {
            v.meetings
                .values()
                .filter(|m| want.is_none_or(|s| m.state == s) && sees(m))
                .cloned()
                .collect()
        });
        meetings.sort_by(|a, b| {
            b.created_unix_ms
                .cmp(&a.created_unix_ms)
                .then(a.id.cmp(&b.id))
        });
        Ok(meetings.into_iter().map(|m| self.info(m)).collect())
    }

    pub async fn end_meeting(&self, caller: &Caller, id: &str) -> Result<MeetingInfo, ApiError> {
        let meeting = self
            .hosted_meeting(caller, id, "ending the meeting")
            .await?;
        if meeting.is_ended() {
            return Ok(self.info(meeting));
        }
        self.end(meeting, "meeting ended").await
    }

    /// Ends `meeting`: stored as ended, and every media node hosting it told `why`.
    pub(crate) async fn end(
        &self,
        mut meeting: Meeting,
        why: &str,
    ) -> Result<MeetingInfo, ApiError> {
        let id = meeting.id.clone();
        let nodes: Vec<String> = self.view.read(|v| {
            v.placements
                .get(&id)
                .into_iter()
                .flatten()
                .filter_map(|(_, p)| v.media.get(&p.node).map(|m| m.grpc_addr.clone()))
                .collect()
        });
        meeting.state = MeetingState::Ended;
        meeting.ended_unix_ms = Some(common::unix_ms());
        self.store
            .end_meeting(&meeting)
            .await
            .inspect_err(|_| self.metrics.etcd_errors.inc())?;
        for addr in nodes {
            if let Err(e) = self.nodes.close_meeting(&addr, id.as_str(), why).await {
                tracing::warn!(meeting = %id, error = %e, "could not tell a node the meeting ended");
            }
        }
        let room = self
            .view
            .read(|v| v.rooms.get(&meeting.id).cloned().unwrap_or_default());
        Ok(MeetingInfo {
            deleted_after_unix_ms: self.deleted_after(&meeting),
            meeting,
            placements: vec![],
            room,
        })
    }
}
