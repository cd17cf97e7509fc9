//! Passkey ceremonies (JSON endpoints driven by `assets/passkey.js`). To be built.

use axum::Router;

use crate::UiState;
use crate::account::PasskeyView;
use crate::page::PageError;

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
}

/// The passkeys listed on the account page.
pub(crate) async fn account_passkeys(
    _state: &UiState,
    _user_id: &str,
) -> Result<Vec<PasskeyView>, PageError> {
    Ok(Vec::new())
}
