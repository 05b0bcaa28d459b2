//! The audit log.

use axum::extract::State;
use axum::Json;
use cardwright_processes::audit;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiQuery, Auth};
use super::openapi::NeedsLogin;
use super::schema::{optional_whole_number, Id};
use super::views::{EventList, EventView};
use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventSearch {
    /// Only events of this card id.
    pub card: Option<Id>,
    /// Only events of this batch order id.
    pub order: Option<Id>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page: the sequence number of its last event.
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub cursor: Option<i64>,
}

/// Audit events, oldest first (service-admin or policy-admin).
#[utoipa::path(get, path = "/audit", tag = "audit", params(EventSearch), security(("bearer" = [])),
    responses((status = 200, description = "A page of events.", body = EventList),
        (status = 400, description = "A query value breaks its rule.", body = ErrorBody), NeedsLogin,
        (status = 403, description = "Needs the role service-admin or policy-admin.", body = ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiQuery(q): ApiQuery<EventSearch>,
) -> Result<Json<EventList>, ApiError> {
    if q.cursor.is_some_and(|c| c < 0) {
        return Err(ApiError::bad_request(
            "cursor: not a cursor returned by this list",
        ));
    }
    let cursor = q.cursor.map(|c| c.to_string());
    let (page, next_cursor) = audit::events(
        &state.ctx,
        &op,
        q.card.map(|c| c.0),
        q.order.map(|o| o.0),
        cursor.as_deref(),
        q.limit,
    )
    .await?;
    Ok(Json(EventList {
        events: page.into_iter().map(EventView::from).collect(),
        next_cursor,
    }))
}
