//! The temporary card area of the API: requesting and reading cards, the processes started on
//! one card, and the batch orders that produce cards.

mod batch_orders;
mod cards;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The area's routes with their OpenAPI description, relative to `/api/v1`; the card processes
/// come from the catalog.
pub fn routes() -> OpenApiRouter<AppState> {
    let routes = OpenApiRouter::new()
        .routes(routes!(cards::request_cards))
        .routes(routes!(cards::list_cards))
        .routes(routes!(cards::get_card))
        .routes(routes!(cards::preview))
        .routes(routes!(
            batch_orders::list_orders,
            batch_orders::create_order
        ))
        .routes(routes!(batch_orders::get_order))
        .routes(routes!(batch_orders::next))
        .routes(routes!(batch_orders::repeat))
        .routes(routes!(batch_orders::complete))
        .routes(routes!(batch_orders::cancel));
    cards::process_routes(routes)
}
