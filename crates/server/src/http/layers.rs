//! What every answer of the server gets, whichever route made it: the request body is read whole
//! (within the body limit) before a handler runs, and answers carry headers that keep them out of
//! caches and stop browsers from guessing their type.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, SET_COOKIE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, BODY_LIMIT};

/// Reads the request body before the handler runs. A handler that needs no body would otherwise
/// answer with the body still unread; the connection is then closed with data in it, which the
/// client sees as a reset while it reads the answer. A body over [`BODY_LIMIT`] is refused with
/// 413 before any handler sees it.
pub async fn read_body(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!(
                    "the request body is larger than {} MiB",
                    BODY_LIMIT / (1024 * 1024)
                ),
                position: None,
            }
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Whether the request reached the server over HTTPS, as a TLS-terminating proxy in front of it
/// says (`X-Forwarded-Proto: https` or `Forwarded: proto=https`).
pub fn over_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get("forwarded")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .any(|pair| pair.trim().eq_ignore_ascii_case("proto=https"))
        });
    forwarded_proto || forwarded
}

/// Answers are not stored by caches (they hold card holders, tokens and audit events), unless
/// their handler chose a cache policy itself (static assets, the CA certificate); no answer's
/// type is sniffed; cookies set over HTTPS are marked `Secure`.
pub async fn response_headers(req: Request, next: Next) -> Response {
    let https = over_https(req.headers());
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if https {
        let cookies: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
        if !cookies.is_empty() {
            headers.remove(SET_COOKIE);
            for cookie in cookies {
                let secured = cookie
                    .to_str()
                    .ok()
                    .filter(|c| !c.contains("; Secure"))
                    .and_then(|c| HeaderValue::from_str(&format!("{c}; Secure")).ok())
                    .unwrap_or(cookie);
                headers.append(SET_COOKIE, secured);
            }
        }
    }
    res
}
