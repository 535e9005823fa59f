//! The one place where errors become HTTP responses: status, stable code, message and the
//! offending field. Internal details (store errors, SDK messages) are logged with the
//! request's trace id and never returned.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::AuthError;
use crate::domain::policy::Denied;
use crate::ports::PortError;
use crate::services::ServiceError;

/// The error body every non-2xx response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `INVALID_CRON`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one (e.g. `cadence.expression`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", e.to_string())
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        let message = d.to_string();
        match d {
            Denied::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "project not found")
            }
            Denied::Forbidden { field, .. } => ApiError {
                field: field.map(str::to_owned),
                ..ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
            },
            Denied::PlanLimit { .. } => ApiError::new(StatusCode::FORBIDDEN, "PLAN_LIMIT", message),
            Denied::ExplorerLimit => {
                ApiError::new(StatusCode::FORBIDDEN, "EXPLORER_LIMIT", message)
            }
            Denied::ProjectArchived => {
                ApiError::new(StatusCode::CONFLICT, "PROJECT_ARCHIVED", message)
            }
            Denied::ProjectNotPublished => {
                ApiError::new(StatusCode::CONFLICT, "PROJECT_NOT_PUBLISHED", message)
            }
            Denied::FrequencyTooHigh { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "FREQUENCY_TOO_HIGH",
                message,
            )
            .with_field("cadence"),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::Invalid { code, field, .. } => ApiError {
                field,
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            },
            ServiceError::Malformed { code, field, .. } => ApiError {
                field,
                ..ApiError::new(StatusCode::BAD_REQUEST, code, message)
            },
            ServiceError::Denied(d) => d.into(),
            ServiceError::NotFound { code, .. } => {
                ApiError::new(StatusCode::NOT_FOUND, code, message)
            }
            ServiceError::Conflict { code, .. } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ServiceError::PreconditionFailed { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "PRECONDITION_FAILED",
                message,
            ),
            ServiceError::RateLimited { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
            },
            ServiceError::Backend(port) => {
                let trace_id = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(trace_id, error = %port, "backend failure");
                let (status, code) = match port {
                    PortError::Unavailable {
                        retryable: true, ..
                    } => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
                };
                ApiError::new(
                    status,
                    code,
                    format!("the request could not be completed; trace id {trace_id}"),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
