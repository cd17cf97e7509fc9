//! The first-admin setup page reached by the one-time link printed at start.
//! To be built.

use axum::Router;

use crate::UiState;

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
}
