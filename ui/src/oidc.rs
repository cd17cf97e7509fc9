//! Sign-in with an OIDC provider: `/auth/oidc/{provider}/start` and `…/callback`.
//! To be built.

use axum::Router;
use warrant_idp::session::Login;

use crate::UiState;

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
}

/// The provider's end-session URL for an OIDC sign-in, when the provider offers one.
pub(crate) async fn logout_redirect(_state: &UiState, _login: &Login) -> Option<String> {
    None
}
