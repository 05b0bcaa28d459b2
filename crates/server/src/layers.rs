//! What every answer of the server gets, whichever route made it: the request body is read whole
//! (within the body limit) before a handler runs, answers carry headers that keep them out of
//! caches and stop browsers from guessing their type, and every request is counted and logged.
//!
//! Labels come from fixed sets only (methods, route patterns, status codes), so no request can
//! make the metrics or the log grow with text of its own choosing.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, EXPECT, SET_COOKIE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::{body_limit, AppState};

/// Reads the request body before the handler runs. A handler that needs no body would otherwise
/// answer with the body still unread; the connection is then closed with data in it, which the
/// client sees as a reset while it reads the answer. A body over its limit
/// ([`crate::state::body_limit`]; a body of exactly the limit is taken) is refused with 413
/// before any handler sees it.
///
/// A client that sends `Expect: 100-continue` and a `Content-Length` over the limit is refused
/// before its body is asked for: the server answers 413 instead of `100 Continue`, so the client
/// never sends the body and reads the answer on a connection with nothing left unread in it.
pub async fn read_body(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let limit = body_limit(parts.uri.path());
    if expects_continue(&parts.headers)
        && declared_length(&parts.headers).is_some_and(|n| n > limit)
    {
        return too_large(limit);
    }
    let bytes: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large(limit),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(limit: usize) -> Response {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "the request body is larger than {} MiB",
            limit / (1024 * 1024)
        ),
        position: None,
        retry_after: None,
    }
    .into_response()
}

/// Whether the client waits for `100 Continue` before it sends the body.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// The body's length as the request declares it.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
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
    let https = over_https(req.headers())
        || req
            .extensions()
            .get::<axum::extract::ConnectInfo<crate::tls::Peer>>()
            .is_some_and(|peer| peer.0.tls);
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

/// The method as a label: the standard methods by name, anything else as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and logs every request by its route pattern (never its query or headers).
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    tracing::info!(%method, %route, status, ms = elapsed * 1000.0, "request");
    state.metrics.record((method, route, status), elapsed);
    response
}
