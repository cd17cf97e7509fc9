//! Email magic links and invitations. To be built.

use axum::Router;

use crate::UiState;

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
}
