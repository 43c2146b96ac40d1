//! `ApiError`: what a call of the public API can fail with. The edges map it to an HTTP
//! status (`http/api.rs`) or a gRPC code (`grpc/mod.rs`).
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// The meeting is for signed-in users (401 with its own code: `sign_in_required`).
    #[error("{0}")]
    SignInRequired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// Refused by a decision of the meeting's hosts (403 with its own code:
    /// `meeting_locked`).
    #[error("{message}")]
    RefusedByHost { code: &'static str, message: String },
    /// In conflict with what the meeting is (409 with its own code: `e2ee_meeting`).
    #[error("{message}")]
    MeetingConflict { code: &'static str, message: String },
    /// Over a rate limit: try again after `retry_after`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::SignInRequired(_) => "sign_in_required",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::RefusedByHost { code, .. } | ApiError::MeetingConflict { code, .. } => code,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(_) => ApiError::Internal(e.to_string()),
            _ => ApiError::Unavailable(e.to_string()),
        }
    }
}
