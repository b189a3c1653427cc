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

impl WebError {
    /// [`From<Error>`](#impl-From<Error>-for-WebError) for a secret the client sent in the
    /// request's body or query (an invite code, a reset token, the current password of a
    /// password change), not as the request's own credentials: one that does not verify is
    /// 400, not 401 (a 401 tells a client its login is over, and carries a `Bearer`
    /// challenge the form never used). The rest maps as `From<Error>` does.
    pub fn from_body_secret(e: Error) -> WebError {
        let web = WebError::from(e);
        if web.status == StatusCode::UNAUTHORIZED {
            WebError::bad_request(web.message)
        } else {
            web
        }
    }
}

/// At most this many characters of a message reach a client: a long input an error repeats
/// (an address of a megabyte) is not sent back whole.
const MAX_MESSAGE_CHARS: usize = 300;

impl From<Error> for WebError {
    /// Maps each kind of failure to the status a client expects: a bad, expired or revoked
    /// credential 401; a rule 403; a clash 409 (saying what clashed, not the store's table
    /// and index), and so is a gallery at its cap (saying how to make room); contention in
    /// the store 503 with `Retry-After: 1` and a generic message, and so is a data dir not
    /// ready to serve (`NotReady`: a restore stopped part way, a data dir moved away under the
    /// server; the cause goes to the log).
    /// Storage and internal failures, and a store opened read-only, are 500 with a generic
    /// message (the details go to the log, not the client). A limit's refusal says the
    /// limit, without the advice for the operator on how to raise it. Messages are cut to
    /// 300 characters.
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
            // The user's gallery is full: the request is fine, the state refuses it, and
            // the message tells the user how to make room.
            Error::QuotaExceeded { .. } => StatusCode::CONFLICT,
            // Contention inside the server (writers racing on one key, a folder moving, a
            // busy database), not the client's rate: 503 with `Retry-After`.
            Error::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            // The data dir waits for an operator (a restore stopped part way, the data dir
            // moved away): the server's state, which the log explains.
            Error::NotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            _ if status == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = %e.full_message(), "request failed");
                "internal error".to_string()
            }
            // Its detail names paths, tables and the database's own words: for the log.
            Error::Busy { .. } => {
                tracing::warn!(error = %e.full_message(), "request met a busy store");
                "the server is busy; try again".to_string()
            }
            // Its reason is an instruction for the operator, who reads the log.
            Error::NotReady { .. } => {
                tracing::error!(error = %e.full_message(), "request refused: the data dir is not ready");
                "the service is not ready; try again later".to_string()
            }
            Error::Conflict { detail, .. } => format!("already taken: {detail}"),
            _ => without_operator_advice(e.to_string()),
        };
        let message = if message.chars().nth(MAX_MESSAGE_CHARS).is_some() {
            let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
            cut.push('…');
            cut
        } else {
            message
        };
        WebError { status, message }
    }
}

/// What opens the advice, in a refusal over a limit, on how the operator raises it (which
/// option of the application, which flag of the `redkeep` command): not the client's to read.
const OPERATOR_ADVICE: &str = " (raise it with ";

/// `message` without its parenthesised advice to the operator ([`OPERATOR_ADVICE`]).
fn without_operator_advice(message: String) -> String {
    let Some(at) = message.find(OPERATOR_ADVICE) else {
        return message;
    };
    let after = message[at..]
        .find(')')
        .map_or(message.len(), |end| at + end + 1);
    format!("{}{}", &message[..at], &message[after..])
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({"error": self.message})),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_maps_to_its_status_and_a_message_for_the_client() {
        // A store opened read-only is the server's state: 500, and no path to the client.
        let read_only = WebError::from(Error::ReadOnly {
            what: "/srv/app/redkeep.redb is open read-only".into(),
        });
        assert_eq!(
            (read_only.status, read_only.message.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        );
        // A clash says what clashed, without the store's table and index names.
        let clash = WebError::from(Error::Conflict {
            table: "users",
            index: "email",
            detail: "a user with email a@example.com exists".into(),
        });
        assert_eq!(clash.status, StatusCode::CONFLICT);
        assert_eq!(
            clash.message,
            "already taken: a user with email a@example.com exists"
        );
        // A full gallery is the state of the user's data: 409, saying how to make room.
        let full = WebError::from(Error::QuotaExceeded {
            limit: "max_pieces",
            reason: "this gallery holds 3 pieces and may hold at most 3; remove pieces".into(),
        });
        assert_eq!(
            (full.status, full.message.as_str()),
            (
                StatusCode::CONFLICT,
                "this gallery holds 3 pieces and may hold at most 3; remove pieces"
            )
        );
        // A secret sent in the body is a bad request; the request's own credentials 401.
        let bad_code = || Error::InvalidCredential {
            what: "invite code",
        };
        assert_eq!(
            WebError::from_body_secret(bad_code()).status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            WebError::from_body_secret(Error::Unauthorized).status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(WebError::from(bad_code()).status, StatusCode::UNAUTHORIZED);
        let challenge = |w: WebError| {
            w.into_response()
                .headers()
                .contains_key(header::WWW_AUTHENTICATE)
        };
        assert!(challenge(WebError::from(bad_code())));
        assert!(!challenge(WebError::from_body_secret(bad_code())));
        // Others keep their status through from_body_secret.
        assert_eq!(
            WebError::from_body_secret(Error::not_found("user 7")).status,
            StatusCode::NOT_FOUND
        );
        // Contention is the server's: 503 with Retry-After, and no path or table named.
        let busy = WebError::from(Error::Busy {
            what: "the folder /srv/app/workspaces/users/7 keeps moving".into(),
        });
        assert_eq!(
            (busy.status, busy.message.as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy; try again"
            )
        );
        assert_eq!(
            busy.into_response().headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
        // A long message is cut.
        let long = WebError::from(Error::invalid("name", "x".repeat(5000)));
        assert_eq!(long.status, StatusCode::BAD_REQUEST);
        assert_eq!(long.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(long.message.ends_with('…'));
    }
}
