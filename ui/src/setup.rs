//! The first-admin setup page reached by the one-time link printed at start
//! (`/setup?token=…`), and its passkey ceremony:
//! `POST /setup/passkey/start` (`{token, name, email}` → creation options) and
//! `POST /setup/passkey/finish` (`{token, credential}` → `{redirect}`, signed in as the
//! new admin). Both carry the session's CSRF token in `X-CSRF-Token`.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use warrant_idp::IdpError;
use warrant_idp::passkey::RegisterPublicKeyCredential;
use warrant_idp::setup::SetupStatus;

use crate::UiState;
use crate::extract::Visitor;
use crate::page::{MessagePage, PageError};
use crate::passkey::{JsonError, check_csrf_header, parse};

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/setup", get(page))
        .route("/setup/passkey/start", post(start))
        .route("/setup/passkey/finish", post(finish))
}

#[derive(Template, WebTemplate)]
#[template(path = "setup.html")]
struct SetupPage {
    csrf: String,
    token: String,
}

#[derive(Deserialize)]
struct SetupQuery {
    token: Option<String>,
}

fn already_done() -> Response {
    MessagePage::new(
        "Setup is done",
        "Warrant already has an administrator, so this setup link is no longer needed. \
         Sign in instead; an administrator can add more people.",
    )
    .with_link("/signin", "Sign in")
    .into_response()
}

async fn page(
    State(state): State<UiState>,
    visitor: Visitor,
    Query(q): Query<SetupQuery>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    let token = q.token.unwrap_or_default();
    match idp.setup.status(&idp.users, &token).await {
        Ok(SetupStatus::AdminExists) => Ok(already_done()),
        Ok(SetupStatus::Ready) => {
            let csrf = idp.sessions.csrf_token(&visitor.session).await?;
            Ok(SetupPage { csrf, token }.into_response())
        }
        Err(IdpError::LinkInvalid) => {
            tracing::warn!("setup link refused: unknown, used or expired token");
            let page = MessagePage::new(
                "This setup link does not work",
                "This setup link is not valid: it was already used, it expired, or it was \
                 changed. Restart Warrant to get a new one; it prints a fresh link at start \
                 as long as no administrator exists.",
            );
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct Start {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
}

async fn start(
    State(state): State<UiState>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    check_csrf_header(&state, &visitor.session, &headers).await?;
    let request: Start = parse(&body)?;
    let idp = &state.idp;
    let options = idp
        .setup
        .start(
            &visitor.session,
            &idp.users,
            &idp.passkeys,
            &request.token,
            &request.name,
            &request.email,
        )
        .await?;
    Ok(Json(options).into_response())
}

#[derive(Deserialize)]
struct Finish {
    #[serde(default)]
    token: String,
    credential: RegisterPublicKeyCredential,
}

async fn finish(
    State(state): State<UiState>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    check_csrf_header(&state, &visitor.session, &headers).await?;
    let request: Finish = parse(&body)?;
    let idp = &state.idp;
    let user = idp
        .setup
        .finish(
            &visitor.session,
            &idp.users,
            &idp.passkeys,
            &request.token,
            &request.credential,
        )
        .await?;
    idp.users.record_login(&user.id).await?;
    let ip = visitor.client.ip.clone();
    idp.sessions
        .sign_in(&visitor.session, &user, "setup", visitor.client)
        .await?;
    state.signed_in(&user, "setup", ip.as_deref());
    Ok(Json(serde_json::json!({ "redirect": "/account" })).into_response())
}
