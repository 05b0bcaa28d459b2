//! Errors as the server answers them, from the API, the request layers and the fallback alike:
//! `{"error":{"code","message"}}` with the matching status. The web UI shows the same status and
//! message on its error pages.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cardwright_processes::ProcessError;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `method_not_allowed`, `payload_too_large`, `unsupported_media_type`,
    /// `unprocessable`, `too_many_requests`, `unavailable`, `internal`.
    pub code: String,
    /// For the person reading it.
    pub message: String,
    /// Where in a refused option script the problem is (1-based), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Line and column in a refused option script.
    pub position: Option<(usize, usize)>,
    /// When the client may ask again (`Retry-After`), for answers that say "not now".
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            position: None,
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            position: None,
            retry_after: None,
        }
    }

    /// `Retry-After` in whole seconds, at least one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .map(|s| s.max(1))
    }

    fn code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        }
    }
}

impl From<ProcessError> for ApiError {
    fn from(e: ProcessError) -> Self {
        let status = match &e {
            ProcessError::Invalid(_) => StatusCode::BAD_REQUEST,
            ProcessError::NotFound(_) => StatusCode::NOT_FOUND,
            ProcessError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ProcessError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProcessError::Conflict(_) => StatusCode::CONFLICT,
            ProcessError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ProcessError::Script(script) => {
                return Self {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    message: script.to_string(),
                    position: script.position(),
                    retry_after: None,
                };
            }
            ProcessError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ProcessError::Limited {
                message,
                retry_after,
            } => {
                return Self {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    message: message.clone(),
                    position: None,
                    retry_after: Some(*retry_after),
                };
            }
            ProcessError::Busy {
                message,
                retry_after,
            } => {
                return Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: message.clone(),
                    position: None,
                    retry_after: Some(*retry_after),
                };
            }
            ProcessError::Device { .. } => {
                // The device's own words help the operator: the whole chain is the message.
                return Self {
                    status: StatusCode::CONFLICT,
                    message: cardwright_processes::report(&e),
                    position: None,
                    retry_after: None,
                };
            }
            ProcessError::Store(_) | ProcessError::Internal(_) | ProcessError::Failed { .. } => {
                // The cause chain goes to the log; the client learns only that it failed.
                let chain = cardwright_processes::report(&e);
                tracing::error!(error = %chain, "request failed");
                return Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "internal error; the server log has the details".into(),
                    position: None,
                    retry_after: None,
                };
            }
        };
        Self {
            status,
            message: e.to_string(),
            position: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after_secs();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.message,
                line: self.position.map(|(line, _)| line),
                column: self.position.map(|(_, column)| column),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// The answer to a path that names nothing.
pub fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such resource".into(),
        position: None,
        retry_after: None,
    }
}
