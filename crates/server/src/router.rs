//! The whole application: the REST API, the operator web UI and the server's own documents
//! (`/healthz`, `/metrics`, `/pki/*`), with the layers every request passes and the answer to a
//! path that names nothing.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use cardwright_processes::Context;

use crate::state::{AppState, HttpOptions, Metrics, BODY_LIMIT};
use crate::{error, http, layers, ui};

/// The application's router, ready to serve.
pub fn router(ctx: Context, options: &HttpOptions) -> Router {
    let (api, spec) = http::api().split_for_parts();
    let state = AppState {
        ctx,
        metrics: Arc::new(Metrics::default()),
        openapi: Arc::new(
            spec.to_pretty_json()
                .expect("the OpenAPI document serialises"),
        ),
        metrics_token: Some(options.metrics_token.as_str())
            .filter(|t| !t.is_empty())
            .map(Arc::from),
    };
    api.merge(ui::router())
        .route("/api/v1/openapi.json", get(http::openapi::serve))
        .route("/healthz", get(http::metrics::healthz))
        .route("/pki/ca.pem", get(http::pki::ca_pem))
        .route("/pki/crl", get(http::pki::crl))
        .route("/metrics", get(http::metrics::metrics))
        .fallback(error::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(layers::read_body))
        .layer(axum::middleware::from_fn(layers::response_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            layers::observe,
        ))
        .with_state(state)
}
