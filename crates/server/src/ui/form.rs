//! Posted forms: the fields of an urlencoded body (repeated names kept, as check boxes send
//! them), and the extractor that refuses a state-changing request without the session's CSRF
//! token.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::Response;

use super::page::error_page;
use super::session::UiSession;
use crate::state::{AppState, BODY_LIMIT};

/// The fields of a posted form, in the order sent.
pub(crate) struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// The first value of a field.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value of a field, trimmed, or `None` when empty.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// Every value of a field (ticked check boxes).
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }
}

/// Reads an urlencoded body.
pub(crate) fn parse_body(body: &[u8]) -> Result<Form, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map(|pairs| Form { pairs })
        .map_err(|e| format!("the form could not be read: {e}"))
}

/// A form posted by a logged-in operator with the session's CSRF token in its `csrf` field.
/// Without a session the browser goes to the login page; without the right token the request
/// is refused with 403 and nothing happens.
pub(crate) struct Posted {
    pub session: UiSession,
    pub form: Form,
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let session = UiSession::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            error_page(
                &session,
                StatusCode::PAYLOAD_TOO_LARGE,
                "The form is too large to be sent.",
            )
        })?;
        let form = parse_body(&bytes)
            .map_err(|message| error_page(&session, StatusCode::BAD_REQUEST, message))?;
        if !session.csrf_ok(form.get("csrf")) {
            return Err(error_page(
                &session,
                StatusCode::FORBIDDEN,
                "The form's security token is missing or out of date, so nothing was changed. \
                 Reload the page and try again.",
            ));
        }
        Ok(Self { session, form })
    }
}
