//! The services' error: what went wrong in terms a caller can act on. The HTTP layer maps
//! each variant to a status and stable code in one place (`http::error`).

use crate::domain::cadence::CadenceError;
use crate::domain::policy::Denied;
use crate::ports::PortError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Semantic validation failed (422).
    #[error("{message}")]
    Invalid {
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    /// The request is malformed in a way only a backend could tell (400), e.g. a page
    /// cursor it never issued.
    #[error("{message}")]
    Malformed {
        code: &'static str,
        field: Option<String>,
        message: String,
    },
    /// The policy refused.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The thing does not exist, or the caller may not know it does (404).
    #[error("{what} not found")]
    NotFound {
        code: &'static str,
        what: &'static str,
    },
    /// The state conflicts with the request (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// `If-Match` did not match the current version (412).
    #[error("the resource has changed since it was read (current version {current})")]
    PreconditionFailed { current: u64 },
    /// Too many requests (429).
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A backend failed; the detail is logged, never returned.
    #[error("backend failure: {0}")]
    Backend(#[source] PortError),
}

impl From<CadenceError> for ServiceError {
    fn from(e: CadenceError) -> Self {
        ServiceError::Invalid {
            code: e.code.as_str(),
            field: Some(e.field),
            message: e.message,
        }
    }
}

impl From<PortError> for ServiceError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::InvalidCursor => ServiceError::Malformed {
                code: "INVALID_CURSOR",
                field: Some("cursor".into()),
                message: "the cursor is not one this API returned".into(),
            },
            other => ServiceError::Backend(other),
        }
    }
}

impl ServiceError {
    pub fn invalid(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ServiceError::Invalid {
            code,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn not_found(what: &'static str) -> Self {
        ServiceError::NotFound {
            code: "NOT_FOUND",
            what,
        }
    }
}
