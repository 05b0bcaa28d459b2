//! Temporary cards: request, search, profile and the single-card processes.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use cardwright_domain::CardId;
use cardwright_processes::temp_cards::cards::{self, CardQuery};
use cardwright_processes::temp_cards::{
    abort as abort_p, assign as assign_p, extend as extend_p, lock as lock_p, request,
    withdraw as withdraw_p,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::http::extract::{ApiJson, ApiQuery, Auth, IdPath};
use crate::http::openapi::{BadId, JsonBody, NeedsLogin};
use crate::http::schema::{
    optional_whole_number, whole_number, CardStateParam, Id, PreviewQuery, Side,
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
    /// Only cards whose serial starts with this (surrounding spaces ignored).
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
    Ok(Json(
        cards::profile(&state.ctx, &op, &id.to_string())
            .await?
            .into(),
    ))
}

/// TempCardsProcAbort: requested → aborted.
#[utoipa::path(post, path = "/cards/{id}/abort", tag = "cards", params(("id" = Id, Path, description = "card id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The card after the step.", body = CardView), BadId, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 404, description = "No such card.", body = ErrorBody),
        (status = 409, description = "The card is not in state requested.", body = ErrorBody)))]
pub async fn abort(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<CardId>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(abort_p::abort(&state.ctx, &op, id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// The person's id.
    #[schema(value_type = Id)]
    pub person: String,
}

/// TempCardsProcAssign: unassigned → assigned to an active person, valid for the configured days.
#[utoipa::path(post, path = "/cards/{id}/assign", tag = "cards", params(("id" = Id, Path, description = "card id")),
    request_body = AssignBody, security(("bearer" = [])),
    responses((status = 200, description = "The card, assigned.", body = CardView), JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 404, description = "No such card or person.", body = ErrorBody),
        (status = 409, description = "The card is not unassigned, the person is inactive or holds as many cards as allowed.", body = ErrorBody)))]
pub async fn assign(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<CardId>,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(
        assign_p::assign(
            &state.ctx,
            &op,
            id,
            cardwright_domain::PersonId::parse(&body.person)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        )
        .await?
        .into(),
    ))
}

/// TempCardsProcWithdraw: assigned or expired → unassigned; the holder is cleared.
#[utoipa::path(post, path = "/cards/{id}/withdraw", tag = "cards", params(("id" = Id, Path, description = "card id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The card after the step.", body = CardView), BadId, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 404, description = "No such card.", body = ErrorBody),
        (status = 409, description = "The card is not assigned or expired.", body = ErrorBody)))]
pub async fn withdraw(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<CardId>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(
        withdraw_p::withdraw(&state.ctx, &op, id).await?.into(),
    ))
}

/// TempCardsProcExtend: valid_until moves on by the configured days.
#[utoipa::path(post, path = "/cards/{id}/extend", tag = "cards", params(("id" = Id, Path, description = "card id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The card after the step.", body = CardView), BadId, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 404, description = "No such card.", body = ErrorBody),
        (status = 409, description = "The card is not assigned.", body = ErrorBody)))]
pub async fn extend(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<CardId>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(extend_p::extend(&state.ctx, &op, id).await?.into()))
}

/// TempCardsProcLock: assigned or unassigned → locked, for good.
#[utoipa::path(post, path = "/cards/{id}/lock", tag = "cards", params(("id" = Id, Path, description = "card id")),
    security(("bearer" = [])),
    responses((status = 200, description = "The card after the step.", body = CardView), BadId, NeedsLogin,
        (status = 403, description = "Needs the role registration-officer.", body = ErrorBody),
        (status = 404, description = "No such card.", body = ErrorBody),
        (status = 409, description = "The card is not assigned or unassigned.", body = ErrorBody)))]
pub async fn lock(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<CardId>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(lock_p::lock(&state.ctx, &op, id).await?.into()))
}

/// The card's PNG preview, as it prints, with its holder and validity.
#[utoipa::path(get, path = "/cards/{id}/preview", tag = "cards", operation_id = "preview_card",
    params(("id" = Id, Path, description = "card id"), PreviewQuery), security(("bearer" = [])),
    responses((status = 200, description = "The preview.", content_type = "image/png", body = Vec<u8>),
        (status = 400, description = "The id or `side` breaks its rule.", body = ErrorBody), NeedsLogin,
        (status = 404, description = "No such card.", body = ErrorBody),
        (status = 422, description = "The layout is over the renderer's limits or budget (for instance one stored before the limits); the message names the limit.", body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    Auth(_op): Auth,
    IdPath(id): IdPath<CardId>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let side = q.side.unwrap_or(Side::Front);
    let png = cards::preview(&state.ctx, id, side.into()).await?;
    Ok(([(CONTENT_TYPE, "image/png")], png))
}
