//! The REST API under `/api/v1` with its OpenAPI document, and the server's own documents
//! (`/healthz`, `/metrics`, `/pki/*`) that [`crate::router`] serves beside it.
//!
//! Each card area (today `temp_cards`) is a module with its own routes; what the areas share
//! (login, persons, templates, the option script, the audit log, the error and value schemas, the
//! views) is at this module's root.

mod audit;
mod auth;
mod extract;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod openapi;
mod operators;
mod persons;
mod persons_import;
pub(crate) mod pki;
mod schema;
mod scripts;
pub(crate) mod stations;
mod temp_cards;
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
        .routes(routes!(operators::change_password))
        .routes(routes!(
            operators::list_operators,
            operators::create_operator
        ))
        .routes(routes!(operators::get_operator, operators::update_operator))
        .routes(routes!(operators::reset_password))
        .routes(routes!(operators::unlock_operator))
        .routes(routes!(persons::list_persons, persons::create_person))
        .routes(routes!(persons::get_person))
        .routes(routes!(
            persons::get_photo,
            persons::put_photo,
            persons::delete_photo
        ))
        .routes(routes!(persons_import::import_persons))
        .routes(routes!(
            templates::list_templates,
            templates::create_template
        ))
        .routes(routes!(templates::get_template, templates::update_template))
        .routes(routes!(templates::preview))
        .routes(routes!(scripts::get_script, scripts::put_script))
        .routes(routes!(scripts::list_versions))
        .routes(routes!(scripts::restore_version))
        .routes(routes!(audit::list_events))
        .routes(routes!(notify::create_webhook, notify::list_webhooks))
        .routes(routes!(notify::get_webhook, notify::delete_webhook))
        .routes(routes!(notify::enable_webhook))
        .routes(routes!(notify::list_deliveries))
        .routes(routes!(notify::resend_delivery))
        .routes(routes!(notify::list_mail_templates))
        .routes(routes!(
            notify::put_mail_template,
            notify::reset_mail_template
        ))
        .routes(routes!(notify::list_mails))
        .routes(routes!(stations::register_station, stations::list_stations))
        .routes(routes!(stations::get_station))
        .routes(routes!(stations::disable_station))
        .routes(routes!(stations::enable_station))
        .routes(routes!(stations::new_enrollment_code))
        .merge(temp_cards::routes());
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", v1)
}

/// The OpenAPI document as served.
pub fn openapi_json() -> String {
    let (_, spec) = api().split_for_parts();
    spec.to_pretty_json()
        .expect("the OpenAPI document serialises")
}
