//! Sign-in with an OIDC provider: `GET /auth/oidc/{provider}/start?next=/path` sends the
//! browser to the provider; `GET /auth/oidc/{provider}/callback` takes it back, signs
//! the person in and continues to `next`. The rules live in `warrant_idp::oidc`; these
//! handlers only translate HTTP. Every refusal is a page in plain words (4xx) and a log
//! line with the technical reason.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::StatusCode;
use warrant_idp::IdpError;
use warrant_idp::oidc::AuthResponse;
use warrant_idp::session::Login;

use crate::UiState;
use crate::extract::{Visitor, safe_next};
use crate::page::{MessagePage, PageError};

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/auth/oidc/{provider}/start", get(start))
        .route("/auth/oidc/{provider}/callback", get(callback))
}

/// The first value of each query parameter (a repeated parameter cannot make the
/// request fail before it reaches the checks).
fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn start(
    State(state): State<UiState>,
    Path(provider): Path<String>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let pairs = pairs(query.as_deref());
    let next = safe_next(first(&pairs, "next"));
    let url = state
        .idp
        .oidc
        .start(&visitor.session, &provider, &next)
        .await?;
    Ok(Redirect::to(&url).into_response())
}

async fn callback(
    State(state): State<UiState>,
    Path(provider): Path<String>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    let pairs = pairs(query.as_deref());
    let owned = |key: &str| first(&pairs, key).map(str::to_owned);
    let response = AuthResponse {
        code: owned("code"),
        state: owned("state"),
        iss: owned("iss"),
        error: owned("error"),
        error_description: owned("error_description"),
    };
    let Some(label) = idp.oidc.display_name(&provider).map(str::to_owned) else {
        return Err(PageError(IdpError::NotFound("sign-in provider")));
    };
    if let Some(error) = &response.error {
        idp.oidc.abandon(&visitor.session).await?;
        let description: Option<String> = response
            .error_description
            .as_deref()
            .map(|d| d.chars().take(300).collect());
        tracing::warn!(
            %provider,
            error = %error.chars().take(64).collect::<String>(),
            description = ?description,
            "the OIDC provider answered the sign-in with an error"
        );
        state.sign_in_refused(
            &format!("oidc:{provider}"),
            None,
            &IdpError::Oidc {
                provider: provider.clone(),
                reason: format!(
                    "the provider answered {}",
                    error.chars().take(64).collect::<String>()
                ),
            },
            visitor.client.ip.as_deref(),
        );
        return Ok(provider_error_page(&label, error));
    }
    let ip = visitor.client.ip.clone();
    let method = format!("oidc:{provider}");
    let done = match idp
        .oidc
        .callback(
            &idp.users,
            &idp.sessions,
            &visitor.session,
            &provider,
            &response,
            visitor.client,
        )
        .await
    {
        Ok(done) => done,
        Err(e) => {
            state.sign_in_refused(&method, None, &e, ip.as_deref());
            return Err(e.into());
        }
    };
    tracing::info!(%provider, user = %done.user.id, "signed in with OIDC");
    state.signed_in(&done.user, &method, ip.as_deref());
    // Kept for the upstreams that take the person's own sign-in (`person_sso`); dropped
    // otherwise.
    if let Some(connections) = state.connections.as_ref()
        && let Some(sso) = connections.sso.as_ref()
    {
        match sso.keep(&done.user.id, &done.tokens).await {
            Ok(()) => {
                // Their connections with the old sign-in end; new ones open.
                for upstream in sso.upstreams_of(&provider) {
                    (connections.changed)(&done.user.id, &upstream);
                }
            }
            Err(e) => {
                tracing::warn!(%provider, error = %e, "cannot keep the sign-in token for the upstreams that take it");
            }
        }
    }
    Ok(Redirect::to(&done.next).into_response())
}

/// The page for an `error=` redirect from the provider. Its `error_description` is the
/// provider's text (or an attacker's, in a forged link): logged, never shown.
fn provider_error_page(label: &str, error: &str) -> Response {
    let (status, message) = match error {
        "access_denied" => (
            StatusCode::FORBIDDEN,
            format!(
                "The sign-in was cancelled or refused at {label}. You can try again, or use \
                 another way to sign in."
            ),
        ),
        "login_required"
        | "interaction_required"
        | "consent_required"
        | "account_selection_required" => (
            StatusCode::BAD_REQUEST,
            format!(
                "{label} needs you to sign in or to give your consent there first. Start \
                 again from the sign-in page."
            ),
        ),
        "temporarily_unavailable" | "server_error" => (
            StatusCode::BAD_REQUEST,
            format!(
                "{label} could not complete the sign-in just now. Please try again in a \
                 moment."
            ),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            format!(
                "{label} could not complete the sign-in. Start again from the sign-in page; \
                 if it keeps happening, tell an administrator."
            ),
        ),
    };
    let page =
        MessagePage::new("Sign-in did not complete", message).with_link("/signin", "Sign in");
    (status, page).into_response()
}

/// The provider's end-session URL for an OIDC sign-in, when the provider offers one.
pub(crate) async fn logout_redirect(state: &UiState, login: &Login) -> Option<String> {
    state.idp.oidc.logout_url(login).await
}
