//! Email magic links and invitations: asking for a link (the same answer whether or not
//! the address has an account), the confirmation page a link opens (a GET never uses
//! the link, so mail scanners cannot burn it), the POST that uses it and signs in, and
//! the admin's invitation form.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use warrant_idp::email::{Invitation, Purpose};

use crate::UiState;
use crate::extract::{Admin, Visitor, safe_next};
use crate::page::{MessagePage, PageError};

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/signin/email", post(request))
        .route("/auth/email", get(confirm).post(use_link))
        .route("/admin/users/invite", post(invite))
}

#[derive(Template, WebTemplate)]
#[template(path = "email_sent.html")]
struct SentPage {
    next: String,
}

#[derive(Deserialize)]
struct RequestForm {
    csrf: Option<String>,
    email: Option<String>,
    next: Option<String>,
}

/// `POST /signin/email`: asks for a sign-in link. The answer is the same page whether
/// or not the address has an account (and comes as fast: the mail goes out later).
async fn request(
    State(state): State<UiState>,
    visitor: Visitor,
    Form(form): Form<RequestForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&visitor.session, form.csrf.as_deref())
        .await?;
    let next = safe_next(form.next.as_deref());
    idp.links
        .request_login(
            form.email.as_deref().unwrap_or_default(),
            visitor.client.ip.as_deref(),
            Some(&next),
        )
        .await?;
    Ok(SentPage { next }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "email_confirm.html")]
struct ConfirmPage {
    csrf: String,
    token: String,
    next: String,
    email: String,
    invite: bool,
}

#[derive(Deserialize)]
struct LinkQuery {
    token: Option<String>,
    next: Option<String>,
}

/// `GET /auth/email?token=…`: a page with a "Sign in" button; nothing is used yet.
async fn confirm(
    State(state): State<UiState>,
    visitor: Visitor,
    Query(q): Query<LinkQuery>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    let token = q.token.unwrap_or_default();
    let preview = idp.links.preview(&token).await?;
    let csrf = idp.sessions.csrf_token(&visitor.session).await?;
    Ok(ConfirmPage {
        csrf,
        token,
        next: safe_next(q.next.as_deref()),
        email: preview.email,
        invite: preview.purpose == Purpose::Invite,
    }
    .into_response())
}

#[derive(Deserialize)]
struct UseForm {
    csrf: Option<String>,
    token: Option<String>,
    next: Option<String>,
}

/// `POST /auth/email`: uses the link once and signs its holder in (a new session id).
async fn use_link(
    State(state): State<UiState>,
    visitor: Visitor,
    Form(form): Form<UseForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&visitor.session, form.csrf.as_deref())
        .await?;
    let ip = visitor.client.ip.clone();
    let user = match idp
        .links
        .consume(form.token.as_deref().unwrap_or_default())
        .await
    {
        Ok(user) => user,
        Err(e) => {
            state.sign_in_refused("email", None, &e, ip.as_deref());
            return Err(e.into());
        }
    };
    if let Err(e) = idp
        .sessions
        .sign_in(&visitor.session, &user, "email", visitor.client)
        .await
    {
        state.sign_in_refused("email", Some(&user), &e, ip.as_deref());
        return Err(e.into());
    }
    state.signed_in(&user, "email", ip.as_deref());
    idp.users.record_login(&user.id).await?;
    Ok(Redirect::to(&safe_next(form.next.as_deref())).into_response())
}

#[derive(Deserialize)]
struct InviteForm {
    csrf: Option<String>,
    email: Option<String>,
    name: Option<String>,
}

/// `POST /admin/users/invite`: creates an invited member and mails the invitation.
/// Admins may learn whether an address has an account, so a taken one is said plainly.
async fn invite(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Form(form): Form<InviteForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let email = form.email.unwrap_or_default();
    let outcome = idp
        .links
        .invite(&email, form.name.as_deref(), &admin.user)
        .await?;
    let email = warrant_idp::users::normalize_email(&email);
    state.note(
        warrant_consent::ledger::Entry::event("person.invited")
            .by(&admin.user.id, &admin.user.email)
            .with("email", &email)
            .with("again", matches!(outcome, Invitation::Resent)),
    );
    let message = match outcome {
        Invitation::Sent => format!("An invitation was sent to {email}."),
        Invitation::Resent => format!(
            "{email} was already invited and has not signed in yet: a new invitation was sent."
        ),
    };
    Ok(MessagePage::new("Invitation sent", message)
        .with_link("/admin/users", "Back to the users")
        .into_response())
}
