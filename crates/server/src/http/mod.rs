//! The HTTP interface: REST API under `/api/v1` with its OpenAPI document, `/healthz` and
//! `/metrics`.

mod audit;
mod auth;
mod batch_orders;
mod cards;
mod error;
mod extract;
pub(crate) mod layers;
mod metrics;
mod openapi;
mod persons;
mod pki;
mod schema;
mod scripts;
mod templates;
mod views;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use cardwright_processes::Context;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use openapi::ApiDoc;

/// The largest request body accepted (two layouts of 256 KiB fit with room to spare).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub metrics: Arc<metrics::Metrics>,
    pub openapi: Arc<String>,
    /// The bearer token a metrics scraper sends to `/metrics`, when configured.
    pub metrics_token: Option<Arc<str>>,
}

/// Settings of the HTTP interface itself.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// `metrics_token` from the configuration; empty: only operators' tokens open `/metrics`.
    pub metrics_token: String,
}

/// The API routes with their OpenAPI description; the document is generated from these.
pub fn api() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(cards::request_cards))
        .routes(routes!(cards::list_cards))
        .routes(routes!(cards::get_card))
        .routes(routes!(cards::abort))
        .routes(routes!(cards::assign))
        .routes(routes!(cards::withdraw))
        .routes(routes!(cards::extend))
        .routes(routes!(cards::lock))
        .routes(routes!(cards::preview))
        .routes(routes!(persons::list_persons, persons::create_person))
        .routes(routes!(persons::get_person))
        .routes(routes!(
            templates::list_templates,
            templates::create_template
        ))
        .routes(routes!(templates::get_template, templates::update_template))
        .routes(routes!(templates::preview))
        .routes(routes!(
            batch_orders::list_orders,
            batch_orders::create_order
        ))
        .routes(routes!(batch_orders::get_order))
        .routes(routes!(batch_orders::next))
        .routes(routes!(batch_orders::repeat))
        .routes(routes!(batch_orders::complete))
        .routes(routes!(batch_orders::cancel))
        .routes(routes!(scripts::get_script, scripts::put_script))
        .routes(routes!(scripts::list_versions))
        .routes(routes!(scripts::restore_version))
        .routes(routes!(audit::list_events));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", v1)
}

/// The OpenAPI document as served.
pub fn openapi_json() -> String {
    let (_, spec) = api().split_for_parts();
    spec.to_pretty_json()
        .expect("the OpenAPI document serialises")
}

/// The whole application.
pub fn router(ctx: Context, options: &HttpOptions) -> Router {
    let (api, spec) = api().split_for_parts();
    let state = AppState {
        ctx,
        metrics: Arc::new(metrics::Metrics::default()),
        openapi: Arc::new(
            spec.to_pretty_json()
                .expect("the OpenAPI document serialises"),
        ),
        metrics_token: Some(options.metrics_token.as_str())
            .filter(|t| !t.is_empty())
            .map(Arc::from),
    };
    api.merge(crate::ui::router())
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/healthz", get(metrics::healthz))
        .route("/pki/ca.pem", get(pki::ca_pem))
        .route("/pki/crl", get(pki::crl))
        .route("/metrics", get(metrics::metrics))
        .fallback(error::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(layers::read_body))
        .layer(axum::middleware::from_fn(layers::response_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .with_state(state)
}
