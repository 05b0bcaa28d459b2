//! The OpenAPI document, generated from the handlers' annotations.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cardwright",
        description = "Card management: request, produce, assign, withdraw, extend and lock temporary ID cards."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Log in for a bearer token"),
        (name = "cards", description = "Temporary cards and their processes"),
        (name = "batch orders", description = "Issue multiple temporary cards: produce cards in batch orders"),
        (name = "persons", description = "Card holders"),
        (name = "templates", description = "Card templates"),
        (name = "scripts", description = "The option script TempCardsScriptOptions and its versions"),
        (name = "audit", description = "The hash-chained audit log"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}
