//! Role-typed extractors: a handler's signature says who may call it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Redirect, Response};
use http::request::Parts;
use tower_sessions::Session;
use warrant_idp::IdpError;
use warrant_idp::session::{ClientInfo, Login};
use warrant_idp::users::User;

use crate::UiState;
use crate::page::PageError;

/// The session of any visitor, signed in or not.
pub(crate) async fn session_of(parts: &mut Parts, state: &UiState) -> Result<Session, PageError> {
    Session::from_request_parts(parts, state)
        .await
        .map_err(|(_, reason)| PageError(IdpError::Session(reason.to_owned())))
}

/// Where a request came from: its user agent and peer address.
pub(crate) fn client_info(parts: &Parts) -> ClientInfo {
    ClientInfo {
        user_agent: parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ip: client_ip(parts),
    }
}

/// The peer address of the connection (no forwarded headers are trusted).
pub(crate) fn client_ip(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// A visitor: their session and where they come from.
pub(crate) struct Visitor {
    pub session: Session,
    pub client: ClientInfo,
}

impl FromRequestParts<UiState> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &UiState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            session: session_of(parts, state).await?,
            client: client_info(parts),
        })
    }
}

/// A signed-in person. Anyone else is sent to the sign-in page, which brings them back.
pub struct SignedIn {
    pub user: User,
    pub login: Login,
    pub session: Session,
}

/// Why a page needing a person refused.
pub enum NeedSignIn {
    Redirect(String),
    Error(PageError),
}

impl IntoResponse for NeedSignIn {
    fn into_response(self) -> Response {
        match self {
            Self::Redirect(to) => Redirect::to(&to).into_response(),
            Self::Error(e) => e.into_response(),
        }
    }
}

impl FromRequestParts<UiState> for SignedIn {
    type Rejection = NeedSignIn;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &UiState,
    ) -> Result<Self, Self::Rejection> {
        let session = session_of(parts, state).await.map_err(NeedSignIn::Error)?;
        let idp = &state.idp;
        match idp.sessions.current(&session, &idp.users).await {
            Ok(Some((user, login))) => Ok(Self {
                user,
                login,
                session,
            }),
            Ok(None) => {
                let here = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let next =
                    url::form_urlencoded::byte_serialize(here.as_bytes()).collect::<String>();
                Err(NeedSignIn::Redirect(format!("/signin?next={next}")))
            }
            Err(e) => Err(NeedSignIn::Error(e.into())),
        }
    }
}

/// A signed-in admin; a member gets a 403 page.
pub struct Admin(pub SignedIn);

impl FromRequestParts<UiState> for Admin {
    type Rejection = NeedSignIn;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &UiState,
    ) -> Result<Self, Self::Rejection> {
        let person = SignedIn::from_request_parts(parts, state).await?;
        if !person.user.is_admin() {
            return Err(NeedSignIn::Error(PageError(IdpError::Forbidden(
                "This page is for administrators.".into(),
            ))));
        }
        Ok(Self(person))
    }
}

/// The body of a form whose only field is the session's CSRF token (sign-out, revoke,
/// remove): handlers pass `csrf` to `Sessions::check_csrf`.
#[derive(serde::Deserialize)]
pub(crate) struct CsrfForm {
    pub csrf: Option<String>,
}

/// A `next` target that stays on this site (see [`warrant_idp::next::local_path`]);
/// anything else becomes `/account`.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    next.and_then(warrant_idp::next::local_path)
        .unwrap_or("/account")
        .to_owned()
}
