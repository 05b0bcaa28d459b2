//! Temporary cards: request, search, profile, preview, and the processes started on one card,
//! routed and documented from the process catalog.

use axum::extract::{FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Json;
use cardwright_domain::temp_cards::{CardState, Input, ProcessDef, Reason};
use cardwright_domain::{CardId, Operator, PersonId};
use cardwright_processes::card_process::{self, ProcessInput};
use cardwright_processes::temp_cards::cards::{self, CardQuery};
use cardwright_processes::temp_cards::request;
use cardwright_processes::ProcessError;
use serde::Deserialize;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, Paths,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Content, Ref, RefOr, Required, ResponseBuilder, ResponsesBuilder, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::http::extract::{ApiJson, ApiQuery, Auth, IdPath};
use crate::http::openapi::{error, BadId, JsonBody, NeedsLogin, PreviewLimits};
use crate::http::schema::{
    optional_comment, optional_whole_number, whole_number, CardStateParam, Id, PngImage,
    PreviewQuery, Side,
};
use crate::http::views::{CardDetail, CardList, CardView};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestCardsBody {
    /// The template's name or id.
    pub template: String,
    /// How many cards, 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "whole_number")]
    pub amount: i64,
}

/// TempCardsProcRequest: create cards in state requested, each with a unique serial.
#[utoipa::path(post, path = "/temporary-cards", tag = "cards", request_body = RequestCardsBody,
    security(("bearer" = [])),
    responses((status = 201, description = "The new cards.", body = CardList), JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 404, description = "No such template.", body = ErrorBody),
        (status = 409, description = "A serial exists already (check the template's serial prefix).", body = ErrorBody)))]
pub async fn request_cards(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiJson(body): ApiJson<RequestCardsBody>,
) -> Result<(StatusCode, Json<CardList>), ApiError> {
    let created = request::request(&state.ctx, &op, &body.template, body.amount).await?;
    Ok((
        StatusCode::CREATED,
        Json(CardList {
            cards: created.into_iter().map(CardView::from).collect(),
            next_cursor: None,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CardSearch {
    /// Only cards in this state.
    pub state: Option<CardStateParam>,
    /// Only cards of this template (name or id; empty for any).
    pub template: Option<String>,
    /// Only cards whose serial contains this, in any case (surrounding spaces ignored): `000013`
    /// finds `TMP-000013`.
    pub serial: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Id>,
}

/// Search cards, oldest first, a page at a time.
#[utoipa::path(get, path = "/cards", tag = "cards", params(CardSearch), security(("bearer" = [])),
    responses((status = 200, description = "A page of cards.", body = CardList),
        (status = 400, description = "A query value breaks its rule.", body = ErrorBody), NeedsLogin,
        (status = 404, description = "No such template.", body = ErrorBody)))]
pub async fn list_cards(
    State(state): State<AppState>,
    Auth(_op): Auth,
    ApiQuery(q): ApiQuery<CardSearch>,
) -> Result<Json<CardList>, ApiError> {
    let query = CardQuery {
        state: q.state.map(|s| s.0.as_str().to_owned()),
        template: q.template,
        serial: q.serial,
        cursor: q.cursor.map(|c| c.0),
        limit: q.limit,
    };
    let (page, next_cursor) = cards::search(&state.ctx, &query).await?;
    Ok(Json(CardList {
        cards: page.into_iter().map(CardView::from).collect(),
        next_cursor,
    }))
}

/// One card with the processes the caller may start on it now and its history.
#[utoipa::path(get, path = "/cards/{id}", tag = "cards", params(("id" = Id, Path, description = "card id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The card.", body = CardDetail), BadId, NeedsLogin,
        (status = 404, description = "No such card.", body = ErrorBody)))]
pub async fn get_card(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<CardId>,
) -> Result<Json<CardDetail>, ApiError> {
    Ok(Json(cards::profile(&state.ctx, &op, id).await?.into()))
}

// The body of every card process whose catalog row takes a person (`Input::Person`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// The person's id.
    #[schema(value_type = Id)]
    pub person: String,
}

// The body of every card process whose catalog row takes a reason (`Input::Reason`); the body
// may also be left out.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why: `lost`, `stolen`, `damaged`, `returned` or `other`. Recorded in the audit event and
    /// the card's history.
    #[schema(value_type = Option<ReasonText>)]
    pub reason: Option<String>,
    #[schema(schema_with = optional_comment)]
    pub comment: Option<String>,
}

/// A reason from the fixed list.
#[derive(ToSchema)]
#[schema(as = ReasonText)]
#[allow(dead_code, reason = "a schema only")]
pub enum ReasonText {
    #[schema(rename = "lost")]
    Lost,
    #[schema(rename = "stolen")]
    Stolen,
    #[schema(rename = "damaged")]
    Damaged,
    #[schema(rename = "returned")]
    Returned,
    #[schema(rename = "other")]
    Other,
}

/// Runs the card process `def` on the card in the path, for every card-scoped row of the
/// catalog alike; the body is read as the row's `input` says (none, [`AssignBody`], or an
/// optional [`ReasonBody`]).
async fn run_process(
    def: &'static ProcessDef,
    state: AppState,
    operator: Operator,
    card: CardId,
    request: Request,
) -> Result<Json<CardView>, ApiError> {
    let input = match def.input {
        Input::None => ProcessInput::None,
        Input::Person => {
            let ApiJson(body) = ApiJson::<AssignBody>::from_request(request, &state).await?;
            let person =
                PersonId::parse(&body.person).map_err(|e| ApiError::bad_request(e.to_string()))?;
            ProcessInput::Person(person)
        }
        Input::Reason => {
            if axum::body::HttpBody::size_hint(request.body()).exact() == Some(0) {
                ProcessInput::None
            } else {
                let ApiJson(body) = ApiJson::<ReasonBody>::from_request(request, &state).await?;
                match (body.reason, body.comment) {
                    (None, None) => ProcessInput::None,
                    (None, Some(_)) => {
                        return Err(ApiError::from(ProcessError::Unprocessable(
                            "reason: give a reason (lost, stolen, damaged, returned or other) \
                             with the comment"
                                .into(),
                        )))
                    }
                    (Some(kind), comment) => {
                        ProcessInput::Reason(Reason::parse(&kind, comment.as_deref()).map_err(
                            |e| ApiError::from(ProcessError::Unprocessable(e.to_string())),
                        )?)
                    }
                }
            }
        }
    };
    let record = card_process::run_action(&state.ctx, &operator, def.action, card, input).await?;
    Ok(Json(record.into()))
}

/// `POST /cards/{id}/<action>` for every card-scoped process of every area's catalog, each with
/// its OpenAPI description built from its catalog row; a card's own area runs the action.
pub fn process_routes(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    cardwright_domain::area::card_actions()
        .into_iter()
        .fold(router, |router, def| {
            let handler = move |State(state): State<AppState>,
                                Auth(operator): Auth,
                                IdPath(card): IdPath<CardId>,
                                request: Request| {
                run_process(def, state, operator, card, request)
            };
            router.routes((process_schemas(def), process_path(def), post(handler)))
        })
}

/// The schemas a card process's operation names.
fn process_schemas(def: &ProcessDef) -> Vec<(String, RefOr<Schema>)> {
    let mut schemas = vec![(CardView::name().into_owned(), CardView::schema())];
    CardView::schemas(&mut schemas);
    if def.input == Input::Person {
        schemas.push((AssignBody::name().into_owned(), AssignBody::schema()));
        AssignBody::schemas(&mut schemas);
    }
    if def.input == Input::Reason {
        schemas.push((ReasonBody::name().into_owned(), ReasonBody::schema()));
        ReasonBody::schemas(&mut schemas);
        schemas.push((ReasonText::name().into_owned(), ReasonText::schema()));
    }
    schemas
}

/// States as a sentence reads them: `assigned or unassigned`.
fn states(states: &[CardState]) -> String {
    states
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The OpenAPI path item of a card process, from its catalog row: title, summary, role, the
/// states it starts from and the state it leaves, and what it takes.
fn process_path(def: &ProcessDef) -> Paths {
    let role = def
        .role
        .map_or_else(|| "none".to_owned(), |r| r.as_str().to_owned());
    let from = states(def.from);
    let takes_person = def.input == Input::Person;
    let takes_body = def.input != Input::None;
    let mut responses = ResponsesBuilder::new().response(
        "200",
        ResponseBuilder::new()
            .description(format!("The card after the step, now {}.", def.to))
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name(CardView::name()))),
            ),
    );
    responses = if takes_body {
        responses.responses_from_into_responses::<JsonBody>()
    } else {
        responses.responses_from_into_responses::<BadId>()
    };
    let mut responses = responses
        .responses_from_into_responses::<NeedsLogin>()
        .response("403", error(&format!("Needs the role {role}.")))
        .response(
            "404",
            error(if takes_person {
                "No such card or person."
            } else {
                "No such card."
            }),
        )
        .response(
            "409",
            error(&format!(
                "The card is not in state {from}{}, or it is held by a batch order or was changed \
                 meanwhile; the message says which.",
                if takes_person {
                    ", or the person may not take it (inactive, or holding as many cards as allowed)"
                } else {
                    ""
                }
            )),
        );
    let request_body = match def.input {
        Input::None => None,
        Input::Person => Some(
            RequestBodyBuilder::new()
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name(AssignBody::name()))),
                )
                .required(Some(Required::True))
                .build(),
        ),
        Input::Reason => Some(
            RequestBodyBuilder::new()
                .description(Some("Why, optionally."))
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name(ReasonBody::name()))),
                )
                .required(Some(Required::False))
                .build(),
        ),
    };
    if takes_body && !takes_person {
        responses = responses.response(
            "422",
            error(
                "The reason is not one of the list, or the comment is too long or has a control \
                 character other than a line break or an invisible formatting character; the \
                 message names the field.",
            ),
        );
    }
    let operation = OperationBuilder::new()
        .tag("cards")
        .summary(Some(def.title))
        .description(Some(format!(
            "{}: {} Needs the role {role}; the card must be {from}.",
            def.name, def.summary
        )))
        .operation_id(Some(def.action))
        .parameter(
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .description(Some("card id"))
                .required(Required::True)
                .schema(Some(Ref::from_schema_name(Id::name()))),
        )
        .request_body(request_body)
        .responses(responses)
        .security(SecurityRequirement::new("bearer", Vec::<String>::new()));
    Paths::builder()
        .path(
            format!("/cards/{{id}}/{}", def.action),
            PathItem::new(HttpMethod::Post, operation),
        )
        .build()
}

/// The card's PNG preview, as it prints, with its holder and validity. A preview is rendered
/// once for what it shows and then served from a cache. An operator may have four previews
/// rendering at once; more are refused with 429 and `Retry-After`.
#[utoipa::path(get, path = "/cards/{id}/preview", tag = "cards", operation_id = "preview_card",
    params(("id" = Id, Path, description = "card id"), PreviewQuery), security(("bearer" = [])),
    responses((status = 200, description = "The preview.", content_type = "image/png", body = inline(PngImage)),
        (status = 400, description = "The id or `side` breaks its rule.", body = ErrorBody), NeedsLogin,
        (status = 404, description = "No such card.", body = ErrorBody),
        (status = 422, description = "The layout is over the renderer's limits or budget (for instance one stored before the limits); the message names the limit.", body = ErrorBody),
        PreviewLimits))]
pub async fn preview(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<CardId>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let side = q.side.unwrap_or(Side::Front);
    let png = cards::preview(&state.ctx, &op, id, side.into()).await?;
    Ok(([(CONTENT_TYPE, "image/png")], png))
}
