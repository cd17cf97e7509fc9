//! The account page: who you are, your passkeys, your sessions (each revocable), and the
//! way to your connected accounts.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

use crate::UiState;
use crate::extract::CsrfForm;
use crate::extract::SignedIn;
use crate::page::{FormTargets, PageError, when};

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/account", get(page))
        .route("/account/sessions/{handle}/revoke", post(revoke))
}

/// A session row on a page.
pub(crate) struct SessionView {
    pub handle: String,
    pub method: String,
    pub signed_in: String,
    pub last_seen: String,
    pub client: String,
    pub current: bool,
}

impl SessionView {
    pub(crate) fn from(s: warrant_idp::session::SessionSummary, current: Option<&str>) -> Self {
        let client = match (&s.user_agent, &s.ip) {
            (Some(ua), Some(ip)) => format!("{ua} — {ip}"),
            (Some(ua), None) => ua.clone(),
            (None, Some(ip)) => ip.clone(),
            (None, None) => String::from("unknown"),
        };
        Self {
            current: current == Some(s.handle.as_str()),
            handle: s.handle,
            method: s.method,
            signed_in: when(s.signed_in_at),
            last_seen: when(s.last_seen_at),
            client,
        }
    }
}

/// A passkey row on the account page.
pub(crate) struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
struct AccountPage {
    csrf: String,
    name: String,
    email: String,
    role: &'static str,
    groups: Vec<String>,
    method: String,
    is_admin: bool,
    /// "Connected accounts" is on.
    connections: bool,
    passkeys: Vec<PasskeyView>,
    sessions: Vec<SessionView>,
}

async fn page(State(state): State<UiState>, person: SignedIn) -> Result<Response, PageError> {
    let idp = &state.idp;
    let csrf = idp.sessions.csrf_token(&person.session).await?;
    let current = person
        .session
        .id()
        .map(|id| warrant_idp::session::session_handle(&id));
    let sessions = idp
        .sessions
        .list_for_user(&person.user.id)
        .await?
        .into_iter()
        .map(|s| SessionView::from(s, current.as_deref()))
        .collect();
    let passkeys = account_passkeys(&state, &person.user.id).await?;
    // Signing out of a provider's session continues at its end-session endpoint.
    let logout = crate::oidc::logout_redirect(&state, &person.login)
        .await
        .and_then(|u| url::Url::parse(&u).ok());
    let page = AccountPage {
        csrf,
        groups: idp.users.groups(&person.user.id).await?,
        name: person.user.display_name.clone(),
        email: person.user.email.clone(),
        role: person.user.role.as_str(),
        method: person.login.method.clone(),
        is_admin: person.user.is_admin(),
        connections: state.connections.is_some(),
        passkeys,
        sessions,
    };
    Ok((axum::Extension(FormTargets::to(logout.as_ref())), page).into_response())
}

async fn revoke(
    State(state): State<UiState>,
    person: SignedIn,
    Path(handle): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&person.session, form.csrf.as_deref())
        .await?;
    idp.sessions.revoke(&person.user.id, &handle).await?;
    state.note(
        warrant_consent::ledger::Entry::event("sessions.ended")
            .by(&person.user.id, &person.user.email)
            .with("sessions", 1),
    );
    Ok(Redirect::to("/account").into_response())
}

/// The passkeys listed on the account page.
async fn account_passkeys(state: &UiState, user_id: &str) -> Result<Vec<PasskeyView>, PageError> {
    Ok(state
        .idp
        .passkeys
        .list(user_id)
        .await?
        .into_iter()
        .map(|p| PasskeyView {
            id: p.id,
            name: p.name,
            created: when(p.created_at),
            last_used: p.last_used_at.map_or_else(|| "never".to_owned(), when),
        })
        .collect())
}
