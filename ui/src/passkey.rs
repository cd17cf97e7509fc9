//! Passkey ceremonies as JSON endpoints, driven by `assets/passkey.js`:
//!
//! | route | who | body → answer |
//! |---|---|---|
//! | `POST /auth/passkey/login/start` | anyone | `{conditional?}` → request options |
//! | `POST /auth/passkey/login/finish` | anyone | `{credential, next?}` → `{redirect}`, signed in |
//! | `POST /account/passkeys/register/start` | signed in | `{name?}` → creation options |
//! | `POST /account/passkeys/register/finish` | signed in | `{credential}` → `{redirect, passkey}` |
//! | `POST /account/passkeys/{id}/delete` | signed in | form with `csrf` → back to `/account` |
//!
//! Every JSON request carries the session's CSRF token in `X-CSRF-Token` (a header a
//! cross-site form cannot send); a refusal answers `{error}` with the person-facing
//! message and the status of the error, and logs the reason.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower_sessions::Session;
use warrant_idp::IdpError;
use warrant_idp::passkey::{PublicKeyCredential, RegisterPublicKeyCredential};
use warrant_idp::users::User;

use crate::UiState;
use crate::extract::CsrfForm;
use crate::extract::{SignedIn, Visitor, safe_next};
use crate::page::PageError;

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/auth/passkey/login/start", post(login_start))
        .route("/auth/passkey/login/finish", post(login_finish))
        .route("/account/passkeys/register/start", post(register_start))
        .route("/account/passkeys/register/finish", post(register_finish))
        .route("/account/passkeys/{id}/delete", post(delete))
}

/// The header carrying the session's CSRF token on JSON requests.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// A refusal of a JSON endpoint: `{"error": "<what the person should read>"}`.
#[derive(Debug)]
pub(crate) struct JsonError(pub IdpError);

impl From<IdpError> for JsonError {
    fn from(e: IdpError) -> Self {
        Self(e)
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::BAD_REQUEST);
        if status.is_server_error() {
            tracing::error!(error = %self.0, "passkey request failed");
        } else {
            tracing::warn!(error = %self.0, "passkey request refused");
        }
        let body = serde_json::json!({ "error": self.0.user_message() });
        (status, Json(body)).into_response()
    }
}

/// Checks the `X-CSRF-Token` header against the session's token.
pub(crate) async fn check_csrf_header(
    state: &UiState,
    session: &Session,
    headers: &HeaderMap,
) -> Result<(), JsonError> {
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    state.idp.sessions.check_csrf(session, presented).await?;
    Ok(())
}

/// Parses a JSON body (an empty body reads as `{}`).
pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, JsonError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        JsonError(IdpError::Passkey(format!(
            "the request body is not what this endpoint expects: {e}"
        )))
    })
}

/// The signed-in person of a JSON request (401 rather than a redirect).
async fn signed_in(state: &UiState, session: &Session) -> Result<User, JsonError> {
    let idp = &state.idp;
    match idp.sessions.current(session, &idp.users).await? {
        Some((user, _)) => Ok(user),
        None => Err(JsonError(IdpError::NotSignedIn)),
    }
}

#[derive(Deserialize)]
struct LoginStart {
    #[serde(default)]
    conditional: bool,
}

async fn login_start(
    State(state): State<UiState>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    check_csrf_header(&state, &visitor.session, &headers).await?;
    let request: LoginStart = parse(&body)?;
    let options = state
        .idp
        .passkeys
        .start_sign_in(&visitor.session, request.conditional)
        .await?;
    Ok(Json(options).into_response())
}

#[derive(Deserialize)]
struct LoginFinish {
    credential: PublicKeyCredential,
    next: Option<String>,
}

async fn login_finish(
    State(state): State<UiState>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    check_csrf_header(&state, &visitor.session, &headers).await?;
    let request: LoginFinish = parse(&body)?;
    let idp = &state.idp;
    let ip = visitor.client.ip.clone();
    let user = match idp
        .passkeys
        .finish_sign_in(&visitor.session, &idp.users, &request.credential)
        .await
    {
        Ok(user) => user,
        Err(e) => {
            state.sign_in_refused("passkey", None, &e, ip.as_deref());
            return Err(e.into());
        }
    };
    idp.users.record_login(&user.id).await?;
    if let Err(e) = idp
        .sessions
        .sign_in(&visitor.session, &user, "passkey", visitor.client)
        .await
    {
        state.sign_in_refused("passkey", Some(&user), &e, ip.as_deref());
        return Err(e.into());
    }
    state.signed_in(&user, "passkey", ip.as_deref());
    let redirect = safe_next(request.next.as_deref());
    Ok(Json(serde_json::json!({ "redirect": redirect })).into_response())
}

#[derive(Deserialize)]
struct RegisterStart {
    #[serde(default)]
    name: String,
}

async fn register_start(
    State(state): State<UiState>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    let user = signed_in(&state, &visitor.session).await?;
    check_csrf_header(&state, &visitor.session, &headers).await?;
    let request: RegisterStart = parse(&body)?;
    let options = state
        .idp
        .passkeys
        .start_registration(&visitor.session, &user, &request.name)
        .await?;
    Ok(Json(options).into_response())
}

#[derive(Deserialize)]
struct RegisterFinish {
    credential: RegisterPublicKeyCredential,
}

async fn register_finish(
    State(state): State<UiState>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    let user = signed_in(&state, &visitor.session).await?;
    check_csrf_header(&state, &visitor.session, &headers).await?;
    let request: RegisterFinish = parse(&body)?;
    let passkey = state
        .idp
        .passkeys
        .finish_registration(&visitor.session, &user, &request.credential)
        .await?;
    state.note(
        warrant_consent::ledger::Entry::event("passkey.added")
            .by(&user.id, &user.email)
            .with("passkey", &passkey.name),
    );
    Ok(Json(serde_json::json!({
        "redirect": "/account",
        "passkey": { "id": passkey.id, "name": passkey.name },
    }))
    .into_response())
}

async fn delete(
    State(state): State<UiState>,
    person: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&person.session, form.csrf.as_deref())
        .await?;
    idp.passkeys
        .remove(&idp.users, &person.user.id, &id)
        .await?;
    state.note(
        warrant_consent::ledger::Entry::event("passkey.removed")
            .by(&person.user.id, &person.user.email)
            .with("passkey", &id),
    );
    Ok(Redirect::to("/account#passkeys").into_response())
}
