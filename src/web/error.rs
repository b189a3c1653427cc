//! Errors as HTTP answers: a status that fits and `{"error": "…"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// An HTTP error answer: a status and one sentence, sent as `{"error": "…"}`. A 401 carries
/// `WWW-Authenticate: Bearer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebError {
    /// The status.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
}

impl WebError {
    /// An answer with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError {
            status,
            message: message.into(),
        }
    }

    /// 401: no or bad credentials.
    pub fn unauthorized(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::FORBIDDEN, message)
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<Error> for WebError {
    /// Maps each kind of failure to the status a client expects; storage and internal
    /// failures are 500 with a generic message (the details go to the log, not the client).
    fn from(e: Error) -> WebError {
        let status = match &e {
            Error::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized
            | Error::InvalidCredential { .. }
            | Error::Expired { .. }
            | Error::Revoked { .. } => StatusCode::UNAUTHORIZED,
            Error::Denied { .. } => StatusCode::FORBIDDEN,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e.full_message(), "request failed");
            "internal error".to_string()
        } else {
            e.to_string()
        };
        WebError { status, message }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({"error": self.message})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for WebError {}
