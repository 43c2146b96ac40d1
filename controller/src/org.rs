//! An organisation's settings: the rules and defaults its administrators set for the
//! meetings its users make (waiting room and end-to-end encryption by default, whether
//! recording on the servers is allowed, the regions media may stay in, how long
//! personal data is kept). An organisation is the domain of its users' e-mail addresses;
//! the settings are applied when a meeting is made and kept with it.
use std::time::Duration;

use common::ids::Region;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::lengths::truncate;
use crate::model::OrgSettings;
use crate::oidc::User;
use crate::service::Service;

/// The shortest retention an organisation may set.
pub const MIN_RETENTION_SECS: u64 = 3600;

/// Settings as an administrator sends them.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSettingsInput {
    pub waiting_room: bool,
    pub recording_allowed: bool,
    pub e2ee: bool,
    /// Meetings are recorded on the servers only when their maker chose a data
    /// classification.
    #[serde(default)]
    pub recording_needs_classification: bool,
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    /// None: the cluster's retention.
    #[serde(default)]
    pub retention_secs: Option<u64>,
}

/// Whether `org` is a name we can key an organisation by: a domain name.
pub(crate) fn valid_org(org: &str) -> bool {
    !org.is_empty()
        && org.len() <= 253
        && org.contains('.')
        && org
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// `user`'s organisation, if their address names one we can key by.
fn org_of(user: &User) -> Result<String, ApiError> {
    let org = user.org().to_ascii_lowercase();
    if valid_org(&org) {
        Ok(org)
    } else {
        Err(ApiError::Forbidden(format!(
            "your e-mail address ({:?}) names no organisation",
            truncate(&user.email, 60)
        )))
    }
}

impl Service {
    /// The settings of the organisation of `user` (its defaults until set).
    pub(crate) async fn settings_for(&self, user: &User) -> Result<OrgSettings, ApiError> {
        let org = org_of(user)?;
        Ok(self.store.get_org_settings(&org).await?.unwrap_or_default())
    }

    fn org_admin(caller: &Caller) -> Result<&User, ApiError> {
        match &caller.user {
            Some(u) if u.admin => Ok(u),
            Some(_) => Err(ApiError::Forbidden(
                "the organisation's settings are for its administrators".into(),
            )),
            None => Err(ApiError::Unauthorized(
                "sign in as an administrator of the organisation".into(),
            )),
        }
    }

    pub async fn org_settings(&self, caller: &Caller) -> Result<(String, OrgSettings), ApiError> {
        let admin = Self::org_admin(caller)?;
        Ok((org_of(admin)?, self.settings_for(admin).await?))
    }

    pub async fn set_org_settings(
        &self,
        caller: &Caller,
        input: OrgSettingsInput,
    ) -> Result<(String, OrgSettings), ApiError> {
        let admin = Self::org_admin(caller)?;
        let org = org_of(admin)?;
        let allowed_regions = input
            .allowed_regions
            .iter()
            .map(|r| self.known_region("allowed_regions", r))
            .collect::<Result<Vec<Region>, _>>()?;
        if let Some(s) = input.retention_secs
            && s < MIN_RETENTION_SECS
        {
            return Err(ApiError::BadRequest(format!(
                "retention_secs: at least {MIN_RETENTION_SECS}"
            )));
        }
        let settings = OrgSettings {
            waiting_room: input.waiting_room,
            recording_forbidden: !input.recording_allowed,
            recording_needs_classification: input.recording_needs_classification,
            e2ee: input.e2ee,
            allowed_regions,
            retention: input.retention_secs.map(Duration::from_secs),
            updated_unix_ms: common::unix_ms(),
            updated_by: admin.email.clone(),
        };
        self.store.put_org_settings(&org, &settings).await?;
        tracing::info!(org, by = %admin.email, "organisation settings changed");
        Ok((org, settings))
    }
}
