//! The REST API under `/api/v1` with its OpenAPI document, and the server's own documents
//! (`/healthz`, `/metrics`, `/pki/*`) that [`crate::router`] serves beside it.

mod audit;
mod auth;
mod batch_orders;
mod cards;
mod extract;
pub(crate) mod metrics;
pub(crate) mod openapi;
mod persons;
pub(crate) mod pki;
mod schema;
mod scripts;
mod templates;
mod views;

use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use openapi::ApiDoc;

use crate::state::AppState;

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
