//! Batch orders: the "Issue multiple temporary cards" wizard's buttons.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cardwright_domain::BatchOrderId;
use cardwright_processes::temp_cards::issue_multiple;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::http::extract::{ApiJson, ApiQuery, Auth, IdPath};
use crate::http::openapi::{BadId, JsonBody, NeedsLogin};
use crate::http::schema::{
    card_ids, optional_whole_number, Id, OrderStateParam, ProcessText, StationNameText,
};
use crate::http::views::{BatchOrderList, BatchOrderSummary, BatchOrderView};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrderBody {
    /// The batch order process.
    #[schema(value_type = ProcessText)]
    pub process: String,
    /// Ids of cards in state requested or failed, 1 to 1000, each once.
    #[schema(schema_with = card_ids)]
    pub cards: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepeatBody {
    /// Card ids of failed items, or of produced items rejected as misprinted; 1 to 1000, each
    /// once.
    #[schema(schema_with = card_ids)]
    pub cards: Vec<String>,
}

/// Issue multiple temporary cards: a new open order of the chosen cards (production-admin). A
/// card in another open order or in the wrong state refuses the order with 409 naming it.
#[utoipa::path(post, path = "/batch-orders", tag = "batch orders", request_body = NewOrderBody,
    security(("bearer" = [])),
    responses((status = 201, description = "The new order.", body = BatchOrderView), JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role production-admin.", body = ErrorBody),
        (status = 409, description = "Some cards cannot be ordered (unknown, in another open order or in the wrong state); the message names them.", body = ErrorBody)))]
pub async fn create_order(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiJson(body): ApiJson<NewOrderBody>,
) -> Result<(StatusCode, Json<BatchOrderView>), ApiError> {
    let view = issue_multiple::create(
        &state.ctx,
        &op,
        &body.process,
        &issue_multiple::parse_cards(&body.cards)?,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(BatchOrderView::new(view, Vec::new())),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderSearch {
    /// Only orders in this state.
    pub state: Option<OrderStateParam>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Id>,
}

/// Batch orders, newest first, with their counts.
#[utoipa::path(get, path = "/batch-orders", tag = "batch orders", params(OrderSearch), security(("bearer" = [])),
    responses((status = 200, description = "A page of orders.", body = BatchOrderList),
        (status = 400, description = "A query value breaks its rule.", body = ErrorBody), NeedsLogin))]
pub async fn list_orders(
    State(state): State<AppState>,
    Auth(_op): Auth,
    ApiQuery(q): ApiQuery<OrderSearch>,
) -> Result<Json<BatchOrderList>, ApiError> {
    let (page, next_cursor) = issue_multiple::list(
        &state.ctx,
        q.state.map(|s| s.0.as_str()),
        q.cursor.as_ref().map(|c| c.0.as_str()),
        q.limit,
    )
    .await?;
    Ok(Json(BatchOrderList {
        batch_orders: page.into_iter().map(BatchOrderSummary::from).collect(),
        next_cursor,
    }))
}

/// One order with its items, counts and every production attempt.
#[utoipa::path(get, path = "/batch-orders/{id}", tag = "batch orders",
    params(("id" = Id, Path, description = "batch order id")), security(("bearer" = [])),
    responses((status = 200, description = "The order.", body = BatchOrderView), BadId, NeedsLogin,
        (status = 404, description = "No such order.", body = ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    Auth(_op): Auth,
    IdPath(id): IdPath<BatchOrderId>,
) -> Result<Json<BatchOrderView>, ApiError> {
    let view = issue_multiple::get(&state.ctx, id).await?;
    let attempts = issue_multiple::attempts(&state.ctx, id).await?;
    Ok(Json(BatchOrderView::new(view, attempts)))
}

/// Next: queue every chosen card for the production stations (open → producing). The body is
/// optional: `{"station": "desk-7"}` has only that station produce the order; without it any
/// station may.
#[utoipa::path(post, path = "/batch-orders/{id}/next", tag = "batch orders",
    params(("id" = Id, Path, description = "batch order id")), request_body(content = Option<NextBody>, description = "Optional: the station that produces the order."),
    security(("bearer" = [])),
    responses((status = 200, description = "The order after the step.", body = BatchOrderView), BadId, JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role production-admin.", body = ErrorBody),
        (status = 404, description = "No such order.", body = ErrorBody),
        (status = 409, description = "The order is not open.", body = ErrorBody),
        (status = 422, description = "No station of that name.", body = ErrorBody)))]
pub async fn next(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<BatchOrderId>,
    request: axum::extract::Request,
) -> Result<Json<BatchOrderView>, ApiError> {
    let station = if axum::body::HttpBody::size_hint(request.body()).exact() == Some(0) {
        None
    } else {
        use axum::extract::FromRequest as _;
        let ApiJson(body) = ApiJson::<Option<NextBody>>::from_request(request, &state).await?;
        body.and_then(|b| b.station)
    };
    Ok(Json(BatchOrderView::new(
        issue_multiple::next(&state.ctx, &op, id, station.as_deref()).await?,
        Vec::new(),
    )))
}

/// Where an order is produced.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NextBody {
    /// The station that produces the order; absent or null: any station.
    #[schema(value_type = Option<StationNameText>)]
    pub station: Option<String>,
}

/// Repeat production of chosen failed or rejected items (→ producing).
#[utoipa::path(post, path = "/batch-orders/{id}/repeat", tag = "batch orders",
    params(("id" = Id, Path, description = "batch order id")), request_body = RepeatBody, security(("bearer" = [])),
    responses((status = 200, description = "The order after the step.", body = BatchOrderView), JsonBody, NeedsLogin,
        (status = 403, description = "Needs the role production-admin.", body = ErrorBody),
        (status = 404, description = "No such order.", body = ErrorBody),
        (status = 409, description = "The order is not producing or produced, or some cards cannot be repeated; the message names them.", body = ErrorBody)))]
pub async fn repeat(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<BatchOrderId>,
    ApiJson(body): ApiJson<RepeatBody>,
) -> Result<Json<BatchOrderView>, ApiError> {
    Ok(Json(BatchOrderView::new(
        issue_multiple::repeat(
            &state.ctx,
            &op,
            id,
            &issue_multiple::parse_cards(&body.cards)?,
        )
        .await?,
        Vec::new(),
    )))
}

/// Complete order: confirm the results and close the order (produced → completed).
#[utoipa::path(post, path = "/batch-orders/{id}/complete", tag = "batch orders",
    params(("id" = Id, Path, description = "batch order id")), security(("bearer" = [])),
    responses((status = 200, description = "The order after the step.", body = BatchOrderView), BadId, NeedsLogin,
        (status = 403, description = "Needs the role production-admin.", body = ErrorBody),
        (status = 404, description = "No such order.", body = ErrorBody),
        (status = 409, description = "The order is not produced.", body = ErrorBody)))]
pub async fn complete(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<BatchOrderId>,
) -> Result<Json<BatchOrderView>, ApiError> {
    Ok(Json(BatchOrderView::new(
        issue_multiple::complete(&state.ctx, &op, id).await?,
        Vec::new(),
    )))
}

/// Cancel: unproduced cards return to their state, produced ones stay unassigned.
#[utoipa::path(post, path = "/batch-orders/{id}/cancel", tag = "batch orders",
    params(("id" = Id, Path, description = "batch order id")), security(("bearer" = [])),
    responses((status = 200, description = "The order after the step.", body = BatchOrderView), BadId, NeedsLogin,
        (status = 403, description = "Needs the role production-admin.", body = ErrorBody),
        (status = 404, description = "No such order.", body = ErrorBody),
        (status = 409, description = "The order is completed or cancelled already.", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Auth(op): Auth,
    IdPath(id): IdPath<BatchOrderId>,
) -> Result<Json<BatchOrderView>, ApiError> {
    Ok(Json(BatchOrderView::new(
        issue_multiple::cancel(&state.ctx, &op, id).await?,
        Vec::new(),
    )))
}
