//! Trust ceilings in the admin console: on a user's page, the effective ceiling and
//! where it comes from, with a form to set or clear the user's override; `/admin/groups`,
//! every group with its default ceiling and a form to set or clear it. Every change is
//! recorded with who made it and when (`consent_ceiling_changes`) and applies to the
//! user's next call (`CeilingView`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use warrant_consent::ceilings::{
    CeilingChange, CeilingError, CeilingView, Source, SubjectKind, usable_group,
};
use warrant_consent::ledger::Entry;
use warrant_consent::token::Risk;
use warrant_idp::IdpError;

use crate::UiState;
use crate::extract::Admin;
use crate::page::{PageError, when};

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/admin/users/{id}/ceiling", post(set_user))
        .route("/admin/groups", get(groups))
        .route("/admin/groups/ceiling", post(set_group))
}

/// The risk classes, lowest first.
pub(crate) const CLASSES: [Risk; 4] = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical];

impl From<CeilingError> for PageError {
    fn from(e: CeilingError) -> Self {
        Self(e.into())
    }
}

/// The view, when the binary gave one (it always does; a UI without it has no ceilings).
fn view(state: &UiState) -> Result<&CeilingView, PageError> {
    state
        .consent
        .as_ref()
        .and_then(|c| c.ceilings.as_ref())
        .ok_or_else(|| PageError(IdpError::NotFound("ceiling settings")))
}

/// A form's choice: a class, or empty to clear.
fn chosen(value: &str) -> Result<Option<Risk>, PageError> {
    if value.is_empty() {
        return Ok(None);
    }
    CLASSES
        .into_iter()
        .find(|c| c.name() == value)
        .map(Some)
        .ok_or_else(|| {
            PageError(IdpError::Invalid(
                "Choose low, medium, high or critical, or no ceiling.".into(),
            ))
        })
}

/// One change, for people.
pub(crate) struct ChangeView {
    pub(crate) what: String,
    pub(crate) by: String,
    pub(crate) at: String,
}

async fn change_views(
    state: &UiState,
    changes: Vec<CeilingChange>,
) -> Result<Vec<ChangeView>, PageError> {
    let mut views = Vec::with_capacity(changes.len());
    for change in changes {
        let by = match state.idp.users.get(&change.set_by).await? {
            Some(admin) => admin.email,
            None => change.set_by.clone(),
        };
        views.push(ChangeView {
            what: change
                .ceiling
                .map_or_else(|| "cleared".to_owned(), |c| format!("set to {c}")),
            by,
            at: when(change.set_at),
        });
    }
    Ok(views)
}

/// A user's live ceiling for a list (empty without ceilings).
pub(crate) fn ceiling_name(state: &UiState, user: &str) -> &'static str {
    view(state).map_or("", |v| v.ceiling(user).name())
}

/// The ceiling section of a user's admin page.
pub(crate) struct UserCeiling {
    /// The class that applies now.
    pub(crate) effective: &'static str,
    /// Where it comes from, in words.
    pub(crate) source: String,
    /// The override's class, or empty.
    pub(crate) set: &'static str,
    pub(crate) classes: [&'static str; 4],
    pub(crate) history: Vec<ChangeView>,
}

/// What the user page shows about `user`'s ceiling; `None` without ceilings.
pub(crate) async fn user_ceiling(
    state: &UiState,
    user: &str,
) -> Result<Option<UserCeiling>, PageError> {
    let Ok(view) = view(state) else {
        return Ok(None);
    };
    let effective = view.effective(user);
    let store = view.store();
    let entry = store.get(SubjectKind::User, user).await?;
    let source = match &effective.source {
        Source::Override => match &entry {
            Some(e) => format!(
                "set for this user (overrides their groups) on {}",
                when(e.set_at)
            ),
            None => "set for this user (overrides their groups)".to_owned(),
        },
        Source::Group(group) => {
            format!("the default of group {group} (the lowest of their groups)")
        }
        Source::Default => format!(
            "Warrant's default (policy.default_ceiling = {}): neither this user nor their \
             groups have a ceiling",
            view.default_ceiling()
        ),
    };
    let history = store.history(SubjectKind::User, user, 10).await?;
    Ok(Some(UserCeiling {
        effective: effective.ceiling.name(),
        source,
        set: entry.map_or("", |e| e.ceiling.name()),
        classes: CLASSES.map(Risk::name),
        history: change_views(state, history).await?,
    }))
}

/// A user's groups changed here: their ceiling may have too, apply it at once.
pub(crate) async fn groups_changed(state: &UiState) -> Result<(), PageError> {
    if let Ok(view) = view(state) {
        view.refresh().await?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct CeilingForm {
    csrf: Option<String>,
    #[serde(default)]
    ceiling: String,
}

async fn set_user(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Form(form): Form<CeilingForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let ceiling = chosen(&form.ceiling)?;
    let Some(person) = idp.users.get(&id).await? else {
        return Err(IdpError::NotFound("user").into());
    };
    view(&state)?
        .set_user(&id, ceiling, &admin.user.id, idp.clock.unix())
        .await?;
    tracing::info!(admin = %admin.user.id, user = %id, ceiling = ceiling.map_or("(cleared)", Risk::name), "admin set a user's ceiling");
    state.note(
        Entry::event("ceiling.changed")
            .by(&admin.user.id, &admin.user.email)
            .about(&id, &person.email)
            .with("ceiling", ceiling.map(Risk::name)),
    );
    Ok(Redirect::to(&format!("/admin/users/{id}#ceiling")).into_response())
}

struct GroupRow {
    name: String,
    members: i64,
    /// Its default ceiling's class, or empty.
    ceiling: &'static str,
    set: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_groups.html")]
struct GroupsPage {
    csrf: String,
    groups: Vec<GroupRow>,
    default_ceiling: &'static str,
    classes: [&'static str; 4],
}

async fn groups(State(state): State<UiState>, Admin(admin): Admin) -> Result<Response, PageError> {
    let idp = &state.idp;
    let csrf = idp.sessions.csrf_token(&admin.session).await?;
    let view = view(&state)?;
    let set: Vec<_> = view
        .store()
        .all()
        .await?
        .into_iter()
        .filter(|e| e.kind == SubjectKind::Group)
        .collect();
    let mut rows: Vec<GroupRow> = Vec::new();
    let mut names: Vec<(String, i64)> = idp.users.all_groups().await?;
    // A group may have a ceiling before anyone is in it (a provider's group, say).
    for entry in &set {
        if !names.iter().any(|(n, _)| *n == entry.subject) {
            names.push((entry.subject.clone(), 0));
        }
    }
    names.sort();
    for (name, members) in names {
        let entry = set.iter().find(|e| e.subject == name);
        let set_text = match entry {
            Some(e) => {
                let by = match idp.users.get(&e.set_by).await? {
                    Some(u) => u.email,
                    None => e.set_by.clone(),
                };
                format!("by {by} on {}", when(e.set_at))
            }
            None => String::new(),
        };
        rows.push(GroupRow {
            ceiling: entry.map_or("", |e| e.ceiling.name()),
            set: set_text,
            name,
            members,
        });
    }
    Ok(GroupsPage {
        csrf,
        groups: rows,
        default_ceiling: view.default_ceiling().name(),
        classes: CLASSES.map(Risk::name),
    }
    .into_response())
}

#[derive(Deserialize)]
struct GroupCeilingForm {
    csrf: Option<String>,
    group: String,
    #[serde(default)]
    ceiling: String,
}

async fn set_group(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Form(form): Form<GroupCeilingForm>,
) -> Result<Response, PageError> {
    let idp = &state.idp;
    idp.sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let ceiling = chosen(&form.ceiling)?;
    let group = form.group.trim();
    if !usable_group(group) {
        return Err(CeilingError::BadGroup(group.to_owned()).into());
    }
    view(&state)?
        .set_group(group, ceiling, &admin.user.id, idp.clock.unix())
        .await?;
    tracing::info!(admin = %admin.user.id, group, ceiling = ceiling.map_or("(cleared)", Risk::name), "admin set a group's ceiling");
    state.note(
        Entry::event("ceiling.changed")
            .by(&admin.user.id, &admin.user.email)
            .with("group", group)
            .with("ceiling", ceiling.map(Risk::name)),
    );
    Ok(Redirect::to("/admin/groups").into_response())
}
