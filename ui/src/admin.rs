//! The admin's user list: roles, disabling (which ends every session and stops every
//! agent at once), revoking all of a person's agents, sessions, and removing a person
//! (disabled for good, their agents revoked, every credential they stored deleted).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use warrant_consent::ledger::Entry;
use warrant_consent::people::{People, PeopleError};
use warrant_idp::IdpError;
use warrant_idp::users::{Role, Status};

use crate::UiState;
use crate::account::SessionView;
use crate::extract::Admin;
use crate::extract::CsrfForm;
use crate::page::{MessagePage, PageError, when};

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/admin/users", get(users))
        .route("/admin/users/{id}", get(user))
        .route("/admin/users/{id}/status", post(set_status))
        .route("/admin/users/{id}/role", post(set_role))
        .route("/admin/users/{id}/groups", post(set_groups))
        .route("/admin/users/{id}/agents/revoke", post(revoke_agents))
        .route("/admin/users/{id}/remove", post(remove_person))
        .route("/admin/users/{id}/sessions/revoke", post(revoke_all))
        .route(
            "/admin/users/{id}/sessions/{handle}/revoke",
            post(revoke_one),
        )
}

struct UserView {
    id: String,
    email: String,
    name: String,
    role: &'static str,
    status: &'static str,
    last_login: String,
    /// The live trust ceiling, when ceilings apply.
    ceiling: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_users.html")]
struct UsersPage {
    csrf: String,
    users: Vec<UserView>,
    email: bool,
}

async fn users(State(state): State<UiState>, Admin(admin): Admin) -> Result<Response, PageError> {
    let idp = &state.idp;
    let csrf = idp.sessions.csrf_token(&admin.session).await?;
    let users = idp
        .users
        .list()
        .await?
        .into_iter()
        .map(|u| UserView {
            ceiling: crate::ceilings::ceiling_name(&state, &u.id),
            last_login: u.last_login_at.map_or_else(|| "never".into(), when),
            id: u.id,
            email: u.email,
            name: u.display_name,
            role: u.role.as_str(),
            status: u.status.as_str(),
        })
        .collect();
    Ok(UsersPage {
        csrf,
        users,
        email: idp.links.enabled(),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_user.html")]
struct UserPage {
    csrf: String,
    id: String,
    email: String,
    name: String,
    role: &'static str,
    status: &'static str,
    groups: Vec<String>,
    /// The groups an admin set (editable); the others come from a provider.
    admin_groups: String,
    sessions: Vec<SessionView>,
    is_self: bool,
    ceiling: Option<crate::ceilings::UserCeiling>,
    /// What the vault holds for them, in words (never a value).
    credentials: Vec<String>,
}

async fn user(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    let csrf = idp.sessions.csrf_token(&admin.session).await?;
    let user = idp
        .users
        .get(&id)
        .await?
        .ok_or(IdpError::NotFound("user"))?;
    let sessions = idp
        .sessions
        .list_for_user(&user.id)
        .await?
        .into_iter()
        .map(|s| SessionView::from(s, None))
        .collect();
    let admin_groups = idp
        .users
        .groups_from(&user.id, warrant_idp::users::ADMIN_SOURCE)
        .await?
        .join(", ");
    Ok(UserPage {
        csrf,
        ceiling: crate::ceilings::user_ceiling(&state, &user.id).await?,
        credentials: crate::connections::credentials_of(&state, &user.id).await?,
        groups: idp.users.groups(&user.id).await?,
        admin_groups,
        is_self: user.id == admin.user.id,
        id: user.id,
        email: user.email,
        name: user.display_name,
        role: user.role.as_str(),
        status: user.status.as_str(),
        sessions,
    }
    .into_response())
}

#[derive(Deserialize)]
struct StatusForm {
    csrf: Option<String>,
    status: String,
}

async fn set_status(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Form(form): Form<StatusForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let status = match Status::parse(&form.status) {
        Some(s @ (Status::Active | Status::Disabled)) => s,
        _ => return Err(IdpError::Invalid("Choose active or disabled.".into()).into()),
    };
    if id == admin.user.id && status == Status::Disabled {
        return Err(IdpError::Invalid("You cannot disable your own account.".into()).into());
    }
    let stopped = people(&state)
        .set_status(&id, status)
        .await
        .map_err(page_error)?;
    tracing::info!(admin = %admin.user.id, user = %id, status = status.as_str(), grants = stopped.grants, approvals = stopped.approvals, "admin set user status");
    let event = match status {
        Status::Disabled => "person.disabled",
        _ => "person.enabled",
    };
    state.note(
        Entry::event(event)
            .by(&admin.user.id, &admin.user.email)
            .about(&id, &state.email_of(&id).await)
            .with("grants_revoked", stopped.grants)
            .with("approvals_withdrawn", stopped.approvals),
    );
    Ok(Redirect::to(&format!("/admin/users/{id}")).into_response())
}

#[derive(Deserialize)]
struct RemoveForm {
    csrf: Option<String>,
    /// "yes": the admin ticked the confirmation.
    confirm: Option<String>,
}

/// Removes a person: their account is disabled (kept as a record, so that every token
/// minted for them stays refused and what they did stays attributable), every session
/// ends, every agent grant is revoked, and every credential they stored (keys, OAuth
/// connections, sign-in tokens) is deleted, OAuth connections revoked at their servers
/// first.
async fn remove_person(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    if form.confirm.as_deref() != Some("yes") {
        return Err(IdpError::Invalid(
            "Nothing was removed: tick the box that confirms the removal.".into(),
        )
        .into());
    }
    if id == admin.user.id {
        return Err(IdpError::Invalid("You cannot remove your own account.".into()).into());
    }
    let person = idp
        .users
        .get(&id)
        .await?
        .ok_or(IdpError::NotFound("user"))?;
    let stopped = people(&state)
        .set_status(&id, Status::Disabled)
        .await
        .map_err(page_error)?;
    let credentials = crate::connections::remove_credentials_of(&state, &id).await?;
    tracing::info!(admin = %admin.user.id, user = %id, grants = stopped.grants, credentials, "admin removed a person");
    state.note(
        Entry::event("person.removed")
            .by(&admin.user.id, &admin.user.email)
            .about(&id, &person.email)
            .with("grants_revoked", stopped.grants)
            .with("credentials_deleted", credentials),
    );
    let stored = match credentials {
        1 => "1 stored credential".to_owned(),
        n => format!("{n} stored credentials"),
    };
    Ok(MessagePage::new(
        "Person removed",
        format!(
            "{} can no longer sign in, every session ended, {} agent grants were revoked \
             and {stored} deleted. The account stays listed as disabled, so that tokens \
             issued for it stay refused.",
            person.email, stopped.grants
        ),
    )
    .with_link("/admin/users", "Back to the users")
    .into_response())
}

/// Revokes every agent of a person (their grants, with the grants' refresh and access
/// tokens) and withdraws their held calls; the person stays signed in and may approve
/// agents again.
async fn revoke_agents(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let person = idp
        .users
        .get(&id)
        .await?
        .ok_or(IdpError::NotFound("user"))?;
    let stopped = people(&state)
        .revoke_agents(&id)
        .await
        .map_err(page_error)?;
    tracing::info!(admin = %admin.user.id, user = %id, grants = stopped.grants, approvals = stopped.approvals, "admin revoked all agents of a user");
    state.note(
        Entry::event("consent.revoked")
            .by(&admin.user.id, &admin.user.email)
            .about(&id, &person.email)
            .reason("an admin revoked every agent of the person")
            .with("grants_revoked", stopped.grants)
            .with("approvals_withdrawn", stopped.approvals),
    );
    let grants = match stopped.grants {
        1 => "1 agent grant".to_owned(),
        n => format!("{n} agent grants"),
    };
    let held = match stopped.approvals {
        0 => String::new(),
        1 => " 1 call waiting for their approval was withdrawn.".to_owned(),
        n => format!(" {n} calls waiting for their approval were withdrawn."),
    };
    Ok(MessagePage::new(
        "Agents revoked",
        format!(
            "{grants} of {} revoked: those agents are refused from their next request and \
             cannot refresh; each needs the person's approval again.{held}",
            person.email
        ),
    )
    .with_link(format!("/admin/users/{id}"), "Back to the user")
    .into_response())
}

/// The person-wide operations, with the live revocation set of this process.
fn people(state: &UiState) -> People {
    People::new(
        state.idp.db.clone(),
        state.idp.clock.clone(),
        state.consent.as_ref().and_then(|c| c.revoked.clone()),
    )
}

fn page_error(e: PeopleError) -> PageError {
    PageError(match e {
        PeopleError::Idp(e) => e,
        // A 500 with the generic words; the cause goes to the log (PageError logs it).
        e @ (PeopleError::Store(_) | PeopleError::Approvals(_)) => {
            IdpError::Session(format!("stopping agents: {e}"))
        }
    })
}

#[derive(Deserialize)]
struct RoleForm {
    csrf: Option<String>,
    role: String,
}

async fn set_role(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let role = Role::parse(&form.role)
        .ok_or_else(|| IdpError::Invalid("Choose admin or member.".into()))?;
    if id == admin.user.id && role != Role::Admin {
        return Err(IdpError::Invalid("You cannot remove your own admin role.".into()).into());
    }
    idp.users.set_role(&id, role).await?;
    tracing::info!(admin = %admin.user.id, user = %id, role = role.as_str(), "admin set user role");
    state.note(
        Entry::event("person.role_changed")
            .by(&admin.user.id, &admin.user.email)
            .about(&id, &state.email_of(&id).await)
            .with("role", role.as_str()),
    );
    Ok(Redirect::to(&format!("/admin/users/{id}")).into_response())
}

#[derive(Deserialize)]
struct GroupsForm {
    csrf: Option<String>,
    groups: String,
}

/// Sets the groups an admin gives a user (comma-separated); provider groups stay.
async fn set_groups(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Form(form): Form<GroupsForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let mut groups: Vec<String> = form
        .groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    groups.sort();
    groups.dedup();
    if let Some(bad) = groups
        .iter()
        .find(|g| g.len() > 100 || g.chars().any(char::is_control))
    {
        return Err(IdpError::Invalid(format!("{bad:?} is not a usable group name.")).into());
    }
    if idp.users.get(&id).await?.is_none() {
        return Err(IdpError::NotFound("user").into());
    }
    idp.users
        .set_groups(&id, warrant_idp::users::ADMIN_SOURCE, &groups)
        .await?;
    crate::ceilings::groups_changed(&state).await?;
    tracing::info!(admin = %admin.user.id, user = %id, groups = groups.len(), "admin set user groups");
    state.note(
        Entry::event("person.groups_changed")
            .by(&admin.user.id, &admin.user.email)
            .about(&id, &state.email_of(&id).await)
            .with("groups", &groups),
    );
    Ok(Redirect::to(&format!("/admin/users/{id}")).into_response())
}

async fn revoke_all(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let n = idp.sessions.revoke_all(&id).await?;
    tracing::info!(admin = %admin.user.id, user = %id, sessions = n, "admin ended all sessions");
    state.note(
        Entry::event("sessions.ended")
            .by(&admin.user.id, &admin.user.email)
            .about(&id, &state.email_of(&id).await)
            .with("sessions", n),
    );
    Ok(Redirect::to(&format!("/admin/users/{id}")).into_response())
}

async fn revoke_one(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path((id, handle)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    idp.sessions.revoke(&id, &handle).await?;
    tracing::info!(admin = %admin.user.id, user = %id, "admin ended a session");
    state.note(
        Entry::event("sessions.ended")
            .by(&admin.user.id, &admin.user.email)
            .about(&id, &state.email_of(&id).await)
            .with("sessions", 1),
    );
    Ok(Redirect::to(&format!("/admin/users/{id}")).into_response())
}
