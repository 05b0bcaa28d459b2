//! The audit log.

use axum::extract::State;
use axum::Json;
use cardwright_processes::audit;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ErrorBody;
use super::extract::{ApiQuery, Auth};
use super::views::{EventList, EventView};
use super::{ApiError, AppState};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventSearch {
    /// Only events of this card id.
    pub card: Option<String>,
    /// Only events of this batch order id.
    pub order: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Audit events, oldest first (service-admin or policy-admin).
#[utoipa::path(get, path = "/audit", tag = "audit", params(EventSearch), security(("bearer" = [])),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    Auth(op): Auth,
    ApiQuery(q): ApiQuery<EventSearch>,
) -> Result<Json<EventList>, ApiError> {
    let (page, next_cursor) = audit::events(
        &state.ctx,
        &op,
        q.card,
        q.order,
        q.cursor.as_deref(),
        q.limit,
    )
    .await?;
    Ok(Json(EventList {
        events: page.into_iter().map(EventView::from).collect(),
        next_cursor,
    }))
}
