//! The operator web UI: server-rendered pages for every process of the API.

use axum::Router;

use crate::http::AppState;

/// The UI's routes, merged into the application beside the API.
pub fn router() -> Router<AppState> {
    Router::new()
}
