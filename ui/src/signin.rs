//! The sign-in page (one button per OIDC provider, passkey, email link) and sign-out.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::UiState;
use crate::extract::CsrfForm;
use crate::extract::{SignedIn, Visitor, safe_next};
use crate::page::PageError;

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/signin", get(page))
        .route("/signout", post(sign_out))
}

#[derive(Template, WebTemplate)]
#[template(path = "signin.html")]
struct SignInPage {
    csrf: String,
    next: String,
    /// `(name, label)` of each OIDC provider.
    providers: Vec<(String, String)>,
    email: bool,
    /// Whether passkeys work at this public URL (not on an IP address).
    passkeys: bool,
    /// A notice to show above the choices (e.g. after signing out).
    notice: Option<String>,
}

#[derive(Deserialize)]
struct SignInQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

async fn page(
    State(state): State<UiState>,
    visitor: Visitor,
    Query(q): Query<SignInQuery>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    if idp
        .sessions
        .current(&visitor.session, &idp.users)
        .await?
        .is_some()
    {
        return Ok(Redirect::to(&safe_next(q.next.as_deref())).into_response());
    }
    let csrf = idp.sessions.csrf_token(&visitor.session).await?;
    Ok(SignInPage {
        csrf,
        next: safe_next(q.next.as_deref()),
        providers: idp.oidc.providers(),
        email: idp.links.enabled(),
        passkeys: idp.passkeys.enabled(),
        notice: q.signed_out.map(|_| "You are signed out.".to_owned()),
    }
    .into_response())
}

/// Local sign-out; with an OIDC session whose provider supports it, continues with the
/// provider's RP-initiated logout.
async fn sign_out(
    State(state): State<UiState>,
    person: SignedIn,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&person.session, form.csrf.as_deref())
        .await?;
    let provider_logout = crate::oidc::logout_redirect(&state, &person.login).await;
    idp.sessions.sign_out(&person.session).await?;
    tracing::info!(user = %person.user.id, "signed out");
    Ok(match provider_logout {
        Some(url) => Redirect::to(&url).into_response(),
        None => Redirect::to("/signin?signed_out=1").into_response(),
    })
}
