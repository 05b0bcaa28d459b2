//! The operator web UI: server-rendered pages for the processes of the API. Each card area
//! (today `temp_cards`) is a module with its own pages; what the areas share (login, persons,
//! templates, the option script, operators, stations, the audit log, the page frame) is at this
//! module's root. Forms work without JavaScript; `static/app.js` adds live batch order progress
//! and "select all". Every page checks the operator's role on the server, every form carries a
//! CSRF token, and the session lives in an HttpOnly, SameSite=Strict cookie with an idle timeout.

// A handler's error is the page shown instead of the one asked for (an error page, a
// redirect); it is built once per request and never travels far.
#![allow(clippy::result_large_err)]

mod admin;
mod assets;
mod form;
mod home;
mod notify;
mod operators;
mod page;
mod persons;
mod persons_import;
mod script;
mod session;
mod stations;
mod temp_cards;
mod templates;

use axum::extract::Request;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// What pages may load and where forms may go: only this server, nothing inline.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) use page::no_such_page;

/// The UI's routes, merged into the application beside the API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::home))
        .route("/login", get(session::login_page).post(session::login))
        .route("/login/oidc", get(session::oidc_start))
        .route("/login/oidc/callback", get(session::oidc_callback))
        .route("/logout", post(session::logout))
        .route("/static/{file}", get(assets::serve))
        .route("/persons", get(persons::search).post(persons::create))
        .route(
            "/persons/import",
            get(persons_import::form).post(persons_import::import),
        )
        .route("/persons/{id}", get(persons::profile))
        .route(
            "/persons/{id}/photo",
            get(persons::photo).post(persons::upload_photo),
        )
        .route("/persons/{id}/photo/remove", post(persons::remove_photo))
        .route("/admin/script", get(script::editor).post(script::save))
        .route("/admin/script/restore", post(script::restore))
        .route(
            "/admin/templates",
            get(templates::list).post(templates::create),
        )
        .route("/admin/templates/new", get(templates::new_form))
        .route(
            "/admin/templates/{id}",
            get(templates::edit_form).post(templates::update),
        )
        .route("/admin/templates/{id}/preview", get(templates::preview))
        .route(
            "/admin/operators",
            get(operators::list).post(operators::create),
        )
        .route("/admin/operators/{username}", post(operators::act))
        .route(
            "/account/password",
            get(operators::password_form).post(operators::change_password),
        )
        .route("/account/token", post(operators::api_token))
        .route("/admin/audit", get(admin::audit))
        .route(
            "/admin/webhooks",
            get(notify::webhooks).post(notify::subscribe),
        )
        .route("/admin/webhooks/{id}", get(notify::webhook))
        .route("/admin/webhooks/{id}/delete", post(notify::unsubscribe))
        .route("/admin/webhooks/{id}/enable", post(notify::enable))
        .route("/admin/webhooks/{id}/resend", post(notify::resend))
        .route("/stations", get(stations::list).post(stations::register))
        .route("/stations/{name}/disable", post(stations::disable))
        .route("/stations/{name}/enable", post(stations::enable))
        .route("/stations/{name}/enrollment", post(stations::enrollment))
        .route("/admin/mail", get(notify::mail))
        .route("/admin/mail/{kind}/{language}", post(notify::save_text))
        .merge(temp_cards::router())
        .layer(axum::middleware::from_fn(security_headers))
}

/// Adds the UI's security headers to every answer of its routes.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    add_security_headers(res.headers_mut());
    res
}

/// The UI's security headers, for pages served outside its routes (the 404 page).
pub(crate) fn add_security_headers(headers: &mut axum::http::HeaderMap) {
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}
