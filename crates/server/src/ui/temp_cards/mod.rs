//! The temporary card area of the web UI: requesting cards, the card profile with the processes
//! allowed now, and the "Issue multiple temporary cards" wizard with its batch orders.

mod batch_orders;
mod cards;
mod order;

use axum::routing::{get, post};
use axum::Router;

pub(crate) use cards::{state_names, CardRow};

use crate::state::AppState;

/// The area's pages.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/batch-orders",
            get(batch_orders::list).post(batch_orders::create),
        )
        .route("/batch-orders/issue-multiple", get(batch_orders::search))
        .route("/batch-orders/{id}", get(order::order))
        .route("/batch-orders/{id}/progress", get(order::progress))
        .route("/batch-orders/{id}/next", post(order::next))
        .route("/batch-orders/{id}/repeat", post(order::repeat))
        .route(
            "/batch-orders/{id}/{action}",
            get(order::confirm).post(order::close),
        )
        .route(
            "/cards/request",
            get(cards::request_page).post(cards::request),
        )
        .route("/cards/{id}", get(cards::profile))
        .route("/cards/{id}/preview", get(cards::preview))
        .route("/cards/{id}/{action}", get(cards::confirm).post(cards::run))
}
