//! The error every port returns. Adapters translate their SDK/driver errors into it so the
//! services can decide (not found, conflict, retry) without knowing the backend.

/// Which race-free limit an insert or update ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// The plan's maximum number of schedules on one project.
    PerProject,
    /// An explorer's one schedule of their own per project.
    PerCreator,
    /// The maximum number of hourly schedules on one project.
    HourlyPerProject,
}

/// `Clone` so that a failure of a batch can be reported for each of its items.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PortError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("version mismatch")]
    VersionMismatch,
    /// A page cursor that this store did not issue.
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("limit reached: {0:?}")]
    LimitReached(LimitKind),
    /// The backend failed; `retryable` says whether trying again may help.
    #[error("backend unavailable: {message}")]
    Unavailable { retryable: bool, message: String },
}

impl PortError {
    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        PortError::Unavailable {
            retryable: true,
            message: message.to_string(),
        }
    }

    pub fn fatal(message: impl std::fmt::Display) -> Self {
        PortError::Unavailable {
            retryable: false,
            message: message.to_string(),
        }
    }
}
