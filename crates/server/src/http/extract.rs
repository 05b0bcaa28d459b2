//! Extractors that answer bad input in the API's error shape (ids in the path among it), and the
//! bearer-token login check.

use std::str::FromStr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use cardwright_domain::{DomainError, Operator};
use cardwright_processes::auth;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body sent as `Content-Type: application/json`; another media type (also one that
/// merely ends in `+json`) is 415; malformed JSON, wrong types or a missing body are 400.
pub struct ApiJson<T>(pub T);

/// Whether the request says its body is `application/json` (parameters such as `charset` aside).
fn is_json(req: &Request) -> bool {
    media_type(req.headers()).as_deref() == Some("application/json")
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if req.headers().contains_key(CONTENT_TYPE) && !is_json(&req) {
            return Err(ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "send the body as JSON with Content-Type: application/json".into(),
                position: None,
                retry_after: None,
            });
        }
        if !req.headers().contains_key(CONTENT_TYPE) {
            return Err(ApiError::bad_request(
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let too_large = || ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "the request body is larger than {} MiB",
                crate::state::BODY_LIMIT / (1024 * 1024)
            ),
            position: None,
            retry_after: None,
        };
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(too_large())
            }
            Err(rejection) => return Err(ApiError::bad_request(rejection.body_text())),
        };
        // Every body is an object: serde would also read a struct from an array of its fields
        // in order, which the document does not admit.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::bad_request(
                "the body must be a JSON object, not an array",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(json_message(&rejection))),
        }
    }
}

fn json_message(rejection: &JsonRejection) -> String {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "send the body as JSON with Content-Type: application/json".into()
        }
        other => other.body_text(),
    }
}

/// Query parameters; a value of the wrong type is 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(query_message(&rejection))),
        }
    }
}

fn query_message(rejection: &QueryRejection) -> String {
    rejection.body_text()
}

/// The one id in the request's path, read with its type's parser (`CardId`, `PersonId`,
/// `BatchOrderId`, `TemplateId`) before the handler runs: a value that is not such an id is 400
/// with the parser's message, and the handler only ever sees a well-formed id.
pub struct IdPath<T>(pub T);

impl<T, S> FromRequestParts<S> for IdPath<T>
where
    T: FromStr<Err = DomainError> + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        id.parse()
            .map(Self)
            .map_err(|e: DomainError| ApiError::bad_request(e.to_string()))
    }
}

/// The operator behind the request's bearer token. Missing or bad tokens are 401.
pub struct Auth(pub Operator);

/// The token of a request, from `Authorization: Bearer ...`. The scheme's name is compared
/// without case (`bearer`, `BEARER`), as RFC 9110 section 11.1 has it, and one or more spaces
/// may follow it.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer(parts) else {
            return Err(ApiError::unauthorized(
                "log in first: send Authorization: Bearer <token> from POST /api/v1/auth/login",
            ));
        };
        Ok(Self(auth::authenticate(&state.ctx, token).await?))
    }
}

/// The request's media type (`Content-Type` without its parameters), in lower case.
pub fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn token_of(authorization: &str) -> Option<String> {
        let (parts, ()) = Request::builder()
            .header(AUTHORIZATION, authorization)
            .body(())
            .unwrap()
            .into_parts();
        bearer(&parts).map(str::to_owned)
    }

    #[test]
    fn the_bearer_scheme_is_named_in_any_case() {
        for header in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "bEaReR abc",
            "Bearer   abc ",
        ] {
            assert_eq!(token_of(header).as_deref(), Some("abc"), "{header:?}");
        }
        for header in [
            "Basic YWJj",
            "Bearer",
            "Bearer ",
            "Bearerabc",
            "Token abc",
            "abc",
        ] {
            assert_eq!(token_of(header), None, "{header:?}");
        }
        let (parts, ()) = Request::builder().body(()).unwrap().into_parts();
        assert_eq!(bearer(&parts), None);
    }
}
