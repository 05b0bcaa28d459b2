//! `/healthz` and `/metrics` (Prometheus text format, from the counters the request layer keeps).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cardwright_storage::cards;

use super::extract::bearer;
use crate::error::ApiError;
use crate::state::AppState;

/// Healthy when the database answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.ctx.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// Scrapers send the configured `metrics_token`; an operator may look with their own token.
async fn authorize(state: &AppState, parts: &Parts) -> Result<(), ApiError> {
    let Some(token) = bearer(parts) else {
        return Err(ApiError::unauthorized(
            "send Authorization: Bearer with the configured metrics_token or an operator's token",
        ));
    };
    if let Some(expected) = state.metrics_token.as_deref() {
        if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
            return Ok(());
        }
    }
    cardwright_processes::auth::authenticate(&state.ctx, token).await?;
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn metrics(State(state): State<AppState>, parts: Parts) -> Response {
    if let Err(e) = authorize(&state, &parts).await {
        return e.into_response();
    }
    let mut out = String::new();
    out.push_str("# HELP cardwright_http_requests_total HTTP requests served by this process.\n");
    out.push_str("# TYPE cardwright_http_requests_total counter\n");
    let snapshot = state.metrics.snapshot();
    for ((method, route, status), (count, _)) in &snapshot {
        let _ = writeln!(
            out,
            "cardwright_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
        );
    }
    out.push_str("# HELP cardwright_http_request_seconds_sum Time spent serving requests.\n");
    out.push_str("# TYPE cardwright_http_request_seconds_sum counter\n");
    for ((method, route, status), (_, seconds)) in &snapshot {
        let _ = writeln!(
            out,
            "cardwright_http_request_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {seconds}"
        );
    }
    let counts = match state.ctx.store.reader().await {
        Ok(mut conn) => cards::count_by_state(&mut conn).await.ok(),
        Err(_) => None,
    };
    out.push_str("# HELP cardwright_cards Temporary cards by state.\n");
    out.push_str("# TYPE cardwright_cards gauge\n");
    for state_name in cardwright_domain::CardState::all() {
        let n = counts
            .as_ref()
            .and_then(|c| c.iter().find(|(s, _)| *s == state_name).map(|(_, n)| *n))
            .unwrap_or(0);
        let _ = writeln!(out, "cardwright_cards{{state=\"{state_name}\"}} {n}");
    }
    let up = u8::from(counts.is_some());
    out.push_str("# HELP cardwright_database_up Whether the last read of the database worked.\n");
    out.push_str("# TYPE cardwright_database_up gauge\n");
    let _ = writeln!(out, "cardwright_database_up {up}");
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
