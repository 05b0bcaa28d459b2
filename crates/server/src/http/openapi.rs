//! The OpenAPI document, generated from the handlers' annotations.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};

use super::schema::{CardStateParam, Id, OrderStateParam, ScriptNameText, Side};
use crate::error::ErrorBody;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cardwright",
        description = "Card management: request, produce, assign, withdraw, extend and lock temporary ID cards."
    ),
    modifiers(&BearerAuth),
    // Schemas that only parameters use, which the routes do not collect themselves.
    components(schemas(ErrorBody, Id, CardStateParam, OrderStateParam, Side, ScriptNameText)),
    tags(
        (name = "auth", description = "Log in for a bearer token"),
        (name = "cards", description = "Temporary cards and their processes"),
        (name = "batch orders", description = "Issue multiple temporary cards: produce cards in batch orders"),
        (name = "persons", description = "Card holders"),
        (name = "operators", description = "Operator administration: roles, disabling, password resets, lockouts"),
        (name = "templates", description = "Card templates"),
        (name = "scripts", description = "The option script TempCardsScriptOptions and its versions"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "webhooks", description = "Signed webhooks: subscriptions and their deliveries"),
        (name = "stations", description = "Stations at operators' desks that produce cards over mutual TLS: registration, enrolment codes, disable and enable"),
        (name = "mail", description = "Reminders and notices by mail: their texts and the mail log"),
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

/// An error answer: `ErrorBody` with what went wrong.
pub fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
        .into()
}

/// The answer of every operation behind a login to a request without a valid bearer token.
pub struct NeedsLogin;

impl IntoResponses for NeedsLogin {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "401".to_owned(),
            error("No bearer token, or one that is unknown or has expired: log in again."),
        )])
    }
}

/// An error answer that says when to ask again, in its `Retry-After` header.
fn error_retry_after(description: &str) -> RefOr<Response> {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ResponseBuilder::new()
        .description(description)
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("Seconds to wait before asking again."))
                .build(),
        )
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
        .into()
}

/// The answers of the preview operations when previews are limited: each operator has at most
/// a few previews rendering at once (answers from the preview cache do not count), and previews
/// render with room of their own, apart from production.
pub struct PreviewLimits;

impl IntoResponses for PreviewLimits {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            (
                "429".to_owned(),
                error_retry_after(
                    "The operator has as many renders under way as one may have at once (four \
                     previews, or uploads being measured); `Retry-After` says when to ask again. \
                     A preview rendered before comes from the cache and is never refused so.",
                ),
            ),
            (
                "503".to_owned(),
                error_retry_after(
                    "The renderer's room for previews (and for measuring uploads) stayed full for \
                     five seconds; `Retry-After` says when to ask again. Production has room of its \
                     own and is not held up.",
                ),
            ),
        ])
    }
}

/// The answer of every operation with an id in its path to an id that is not one.
pub struct BadId;

impl IntoResponses for BadId {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "400".to_owned(),
            error("The id in the path is not a lower-case UUID with dashes."),
        )])
    }
}

/// The answers of every operation that reads a JSON body to a body it cannot read.
pub struct JsonBody;

impl IntoResponses for JsonBody {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([
            (
                "400".to_owned(),
                error(
                    "The body is not JSON of the documented shape, or a value in it or in the path \
                     breaks its rule; the message names it.",
                ),
            ),
            (
                "413".to_owned(),
                error("The body is larger than 2 MiB."),
            ),
            (
                "415".to_owned(),
                error("The body is not sent with `Content-Type: application/json`."),
            ),
        ])
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}
