//! The admin's view of upstream servers and their tools: whether each upstream's MCP
//! annotations are trusted, each tool's suggested and effective risk class, the review
//! that sets a class, and quarantined tools, prompts and resource templates — the
//! change an upstream made, field by field, and "approve this version".

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use warrant_consent::catalog::{
    Approval, Catalog, CatalogEntry, CatalogError, CatalogTool, CatalogView, EntryKind, FieldChange,
};
use warrant_consent::ledger::Entry;
use warrant_consent::token::Risk;
use warrant_idp::IdpError;

use crate::UiState;
use crate::connections::{ServerAuth, server_auth, take_flash};
use crate::extract::Admin;
use crate::page::{PageError, path_segment, when};

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/admin/servers", get(servers))
        .route("/admin/servers/{server}", get(server))
        .route("/admin/servers/{server}/trust", post(set_trust))
        .route("/admin/servers/{server}/tools/{tool}", get(tool))
        .route("/admin/servers/{server}/tools/{tool}/review", post(review))
        .route(
            "/admin/servers/{server}/tools/{tool}/approve",
            post(approve),
        )
        .route("/admin/servers/{server}/prompts/{name}", get(prompt))
        .route(
            "/admin/servers/{server}/prompts/{name}/approve",
            post(approve_prompt),
        )
        .route("/admin/servers/{server}/templates/{name}", get(template))
        .route(
            "/admin/servers/{server}/templates/{name}/approve",
            post(approve_template),
        )
}

/// The catalog through its live view when the binary gave one (changes apply to the
/// gateway at once), else straight over the database (the gateway's refresh picks
/// them up within a second).
enum Store {
    View(CatalogView),
    Plain(Catalog),
}

impl Store {
    fn of(state: &UiState) -> Self {
        match state.consent.as_ref().and_then(|c| c.catalog.clone()) {
            Some(view) => Self::View(view),
            None => Self::Plain(Catalog::new(state.idp.db.clone())),
        }
    }

    fn catalog(&self) -> &Catalog {
        match self {
            Self::View(view) => view.catalog(),
            Self::Plain(catalog) => catalog,
        }
    }

    async fn refresh(&self) -> Result<(), CatalogError> {
        if let Self::View(view) = self {
            view.refresh().await?;
        }
        Ok(())
    }
}

fn storage(e: CatalogError) -> PageError {
    match e {
        CatalogError::Storage(e) => PageError(IdpError::Storage(e)),
        other => PageError(IdpError::Invalid(other.to_string())),
    }
}

fn now(state: &UiState) -> i64 {
    state.idp.clock.unix()
}

/// Every upstream: configured ones, and any the catalog still remembers.
async fn server_names(state: &UiState, store: &Store) -> Result<Vec<String>, PageError> {
    let mut names: Vec<String> = state
        .consent
        .as_ref()
        .map(|c| c.tool_servers.clone())
        .unwrap_or_default();
    for s in store.catalog().servers().await.map_err(storage)? {
        names.push(s.name);
    }
    names.sort();
    names.dedup();
    Ok(names)
}

struct ServerRow {
    name: String,
    path: String,
    trusted: bool,
    tools: i64,
    unreviewed: i64,
    quarantined: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_servers.html")]
struct ServersPage {
    csrf: String,
    servers: Vec<ServerRow>,
}

async fn servers(State(state): State<UiState>, Admin(admin): Admin) -> Result<Response, PageError> {
    let csrf = state.idp.sessions.csrf_token(&admin.session).await?;
    let store = Store::of(&state);
    let known = store.catalog().servers().await.map_err(storage)?;
    let servers = server_names(&state, &store)
        .await?
        .into_iter()
        .map(|name| match known.iter().find(|s| s.name == name) {
            Some(s) => ServerRow {
                path: path_segment(&name),
                name,
                trusted: s.trusted.is_some(),
                tools: s.tools,
                unreviewed: s.unreviewed,
                quarantined: s.quarantined + s.quarantined_entries,
            },
            None => ServerRow {
                path: path_segment(&name),
                name,
                trusted: false,
                tools: 0,
                unreviewed: 0,
                quarantined: 0,
            },
        })
        .collect();
    Ok(ServersPage { csrf, servers }.into_response())
}

struct ToolRow {
    name: String,
    path: String,
    suggested: &'static str,
    effective: &'static str,
    reviewed: String,
    state: &'static str,
}

fn state_of(tool: &CatalogTool) -> &'static str {
    if tool.quarantined_since.is_some() {
        "quarantined"
    } else if tool.reviewed_risk().is_some() {
        "reviewed"
    } else {
        "not reviewed"
    }
}

fn reviewed_text(tool: &CatalogTool) -> String {
    match (&tool.reviewed_by, tool.reviewed_at) {
        (Some(by), Some(at)) => format!("{by}, {}", when(at)),
        _ => String::from("—"),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_server.html")]
struct ServerPage {
    csrf: String,
    name: String,
    path: String,
    trusted: Option<String>,
    tools: Vec<ToolRow>,
    /// Prompts, then resource templates.
    sections: Vec<EntrySection>,
    /// How the server is given a key (`None`: the pages have no vault).
    auth: Option<ServerAuth>,
    /// The message after a change made on the page.
    flash: Option<String>,
}

/// The prompts or the resource templates of a server.
struct EntrySection {
    id: &'static str,
    title: &'static str,
    what: &'static str,
    column: &'static str,
    segment: &'static str,
    rows: Vec<EntryRow>,
}

struct EntryRow {
    name: String,
    path: String,
    approved: String,
    last_seen: String,
    quarantined: bool,
}

/// The URL path segment of a kind's pages.
fn kind_segment(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Prompt => "prompts",
        EntryKind::ResourceTemplate => "templates",
    }
}

fn approved_text(by: Option<&str>, at: Option<i64>) -> String {
    match (by, at) {
        (Some(by), Some(at)) => format!("approved by {by}, {}", when(at)),
        (None, Some(at)) => format!("as first seen, {}", when(at)),
        _ => String::from("—"),
    }
}

fn sections(entries: Vec<CatalogEntry>) -> Vec<EntrySection> {
    let section = |kind: EntryKind| {
        let (id, title, what, column) = match kind {
            EntryKind::Prompt => ("prompts", "Prompts", "prompt", "Prompt"),
            EntryKind::ResourceTemplate => (
                "templates",
                "Resource templates",
                "resource template",
                "URI template",
            ),
        };
        let rows = entries
            .iter()
            .filter(|e| e.kind() == kind)
            .map(|e| EntryRow {
                name: e.name.clone(),
                path: path_segment(&e.name),
                approved: approved_text(e.approved_by.as_deref(), Some(e.approved_at)),
                last_seen: when(e.last_seen),
                quarantined: e.quarantined_since.is_some(),
            })
            .collect();
        EntrySection {
            id,
            title,
            what,
            column,
            segment: kind_segment(kind),
            rows,
        }
    };
    vec![
        section(EntryKind::Prompt),
        section(EntryKind::ResourceTemplate),
    ]
}

async fn server(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let csrf = state.idp.sessions.csrf_token(&admin.session).await?;
    let store = Store::of(&state);
    if !server_names(&state, &store).await?.contains(&name) {
        return Err(IdpError::NotFound("server").into());
    }
    let catalog = store.catalog();
    let trust = catalog.trust_of(&name).await.map_err(storage)?;
    let tools = catalog
        .tools_of(&name)
        .await
        .map_err(storage)?
        .into_iter()
        .map(|t| ToolRow {
            suggested: t.suggested_risk().name(),
            effective: t.effective_risk(trust.is_some()).name(),
            reviewed: reviewed_text(&t),
            state: state_of(&t),
            path: path_segment(&t.name),
            name: t.name,
        })
        .collect();
    let entries = catalog.entries_of(&name).await.map_err(storage)?;
    let auth = server_auth(&state, &name).await?;
    let flash = take_flash(&admin.session).await?;
    Ok(ServerPage {
        csrf,
        auth,
        flash,
        trusted: trust.map(|(by, at)| format!("{by}, {}", when(at))),
        path: path_segment(&name),
        name,
        tools,
        sections: sections(entries),
    }
    .into_response())
}

#[derive(Deserialize)]
struct TrustForm {
    csrf: Option<String>,
    trust: String,
}

async fn set_trust(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    Form(form): Form<TrustForm>,
) -> Result<Response, PageError> {
    state
        .idp
        .sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let store = Store::of(&state);
    if !server_names(&state, &store).await?.contains(&name) {
        return Err(IdpError::NotFound("server").into());
    }
    let by = match form.trust.as_str() {
        "on" => Some(admin.user.email.as_str()),
        "off" => None,
        _ => {
            return Err(IdpError::Invalid("Choose to trust the annotations or not.".into()).into());
        }
    };
    store
        .catalog()
        .set_trusted(&name, by, now(&state))
        .await
        .map_err(storage)?;
    store.refresh().await.map_err(storage)?;
    tracing::info!(admin = %admin.user.id, server = %name, trusted = by.is_some(), "admin set annotation trust");
    state.note(
        Entry::event("server.trust_changed")
            .by(&admin.user.id, &admin.user.email)
            .upstream(&name)
            .with("trusted", by.is_some()),
    );
    Ok(Redirect::to(&format!("/admin/servers/{}", path_segment(&name))).into_response())
}

struct RiskOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn risk_options(current: Option<Risk>) -> Vec<RiskOption> {
    let mut options = vec![RiskOption {
        value: "",
        label: "not reviewed",
        selected: current.is_none(),
    }];
    for risk in [Risk::Low, Risk::Medium, Risk::High, Risk::Critical] {
        options.push(RiskOption {
            value: risk.name(),
            label: risk.name(),
            selected: current == Some(risk),
        });
    }
    options
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_tool.html")]
struct ToolPage {
    csrf: String,
    server: String,
    server_path: String,
    tool_path: String,
    name: String,
    title: String,
    description: String,
    annotations: String,
    suggested: &'static str,
    effective: &'static str,
    trusted: bool,
    reviewed: String,
    approved: String,
    quarantined: Option<String>,
    changes: Vec<FieldChange>,
    hash: String,
    options: Vec<RiskOption>,
    /// For the quarantine part (`_quarantine.html`).
    what: &'static str,
    consequence: &'static str,
    approve_action: String,
}

async fn tool(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path((server, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let csrf = state.idp.sessions.csrf_token(&admin.session).await?;
    let store = Store::of(&state);
    let catalog = store.catalog();
    let tool = catalog
        .tool(&server, &name)
        .await
        .map_err(storage)?
        .ok_or(IdpError::NotFound("tool"))?;
    let trusted = catalog.trust_of(&server).await.map_err(storage)?.is_some();
    let approved = approved_text(tool.approved_by.as_deref(), tool.approved_at);
    Ok(ToolPage {
        what: "tool",
        consequence: "Agents do not see it and their calls are refused",
        approve_action: format!("{}/approve", tool_url(&server, &tool.name)),
        csrf,
        server_path: path_segment(&server),
        tool_path: path_segment(&tool.name),
        server,
        name: tool.name.clone(),
        title: tool.title.clone().unwrap_or_default(),
        description: tool.description.clone().unwrap_or_default(),
        annotations: tool.annotations.clone().unwrap_or_else(|| "none".into()),
        suggested: tool.suggested_risk().name(),
        effective: tool.effective_risk(trusted).name(),
        trusted,
        reviewed: reviewed_text(&tool),
        approved,
        quarantined: tool.quarantined_since.map(when),
        changes: tool.changes(),
        hash: tool.definition_hash.clone().unwrap_or_default(),
        options: risk_options(tool.reviewed_risk()),
    }
    .into_response())
}

#[derive(Deserialize)]
struct ReviewForm {
    csrf: Option<String>,
    risk: String,
}

async fn review(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path((server, name)): Path<(String, String)>,
    Form(form): Form<ReviewForm>,
) -> Result<Response, PageError> {
    state
        .idp
        .sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let risk = match form.risk.as_str() {
        "" => None,
        text => Some(Risk::parse(text).ok_or_else(|| {
            IdpError::Invalid("Choose low, medium, high, critical or not reviewed.".into())
        })?),
    };
    let store = Store::of(&state);
    let found = store
        .catalog()
        .review(&server, &name, risk, &admin.user.email, now(&state))
        .await
        .map_err(storage)?;
    if !found {
        return Err(IdpError::NotFound("tool").into());
    }
    store.refresh().await.map_err(storage)?;
    tracing::info!(admin = %admin.user.id, %server, tool = %name, risk = risk.map_or("none", Risk::name), "admin reviewed a tool's risk class");
    let mut event = Entry::event("tool.risk_changed")
        .by(&admin.user.id, &admin.user.email)
        .upstream(&server)
        .tool(&name);
    if let Some(risk) = risk {
        event = event.risk(risk);
    }
    state.note(event.with("reviewed", risk.map(Risk::name)));
    Ok(Redirect::to(&tool_url(&server, &name)).into_response())
}

#[derive(Deserialize)]
struct ApproveForm {
    csrf: Option<String>,
    hash: String,
}

async fn approve(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path((server, name)): Path<(String, String)>,
    Form(form): Form<ApproveForm>,
) -> Result<Response, PageError> {
    state
        .idp
        .sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let store = Store::of(&state);
    let outcome = store
        .catalog()
        .approve(&server, &name, &form.hash, &admin.user.email, now(&state))
        .await
        .map_err(storage)?;
    approved(outcome, "tool")?;
    store.refresh().await.map_err(storage)?;
    tracing::info!(admin = %admin.user.id, %server, tool = %name, "admin approved a tool's new definition");
    state.note(
        Entry::event("quarantine.released")
            .by(&admin.user.id, &admin.user.email)
            .upstream(&server)
            .tool(&name)
            .with("kind", "tool")
            .with("definition_sha256", &form.hash),
    );
    Ok(Redirect::to(&tool_url(&server, &name)).into_response())
}

/// An approval's outcome for the admin: a refusal when nothing was approved.
fn approved(outcome: Approval, what: &'static str) -> Result<(), PageError> {
    match outcome {
        Approval::Approved => Ok(()),
        Approval::Unknown => Err(IdpError::NotFound(what).into()),
        Approval::Changed => Err(IdpError::Invalid(format!(
            "The upstream changed this {what} again since you opened the page. Nothing was \
             approved: look at the new version and approve it if it is fine."
        ))
        .into()),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin_entry.html")]
struct EntryPage {
    csrf: String,
    server: String,
    server_path: String,
    name: String,
    what: &'static str,
    /// The current definition, as indented JSON.
    definition: String,
    approved: String,
    first_seen: String,
    last_seen: String,
    quarantined: Option<String>,
    consequence: &'static str,
    changes: Vec<FieldChange>,
    hash: String,
    approve_action: String,
}

async fn prompt(
    state: State<UiState>,
    admin: Admin,
    path: Path<(String, String)>,
) -> Result<Response, PageError> {
    entry(state, admin, path, EntryKind::Prompt).await
}

async fn template(
    state: State<UiState>,
    admin: Admin,
    path: Path<(String, String)>,
) -> Result<Response, PageError> {
    entry(state, admin, path, EntryKind::ResourceTemplate).await
}

/// A prompt's or resource template's page: its definition and, when quarantined, the
/// change and "approve this version".
async fn entry(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path((server, name)): Path<(String, String)>,
    kind: EntryKind,
) -> Result<Response, PageError> {
    let csrf = state.idp.sessions.csrf_token(&admin.session).await?;
    let store = Store::of(&state);
    let entry = store
        .catalog()
        .entry(&server, kind, &name)
        .await
        .map_err(storage)?
        .ok_or(IdpError::NotFound(kind.label()))?;
    let definition = serde_json::from_str::<serde_json::Value>(&entry.definition)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| entry.definition.clone());
    let consequence = match kind {
        EntryKind::Prompt => "Agents do not see it and prompts/get is refused",
        EntryKind::ResourceTemplate => {
            "Agents do not see it, and reads of URIs that only it matches are refused"
        }
    };
    Ok(EntryPage {
        csrf,
        server_path: path_segment(&server),
        approve_action: format!("{}/approve", entry_url(&server, kind, &entry.name)),
        server,
        what: kind.label(),
        definition,
        approved: approved_text(entry.approved_by.as_deref(), Some(entry.approved_at)),
        first_seen: when(entry.first_seen),
        last_seen: when(entry.last_seen),
        quarantined: entry.quarantined_since.map(when),
        consequence,
        changes: entry.changes(),
        hash: entry.definition_hash.clone(),
        name: entry.name,
    }
    .into_response())
}

async fn approve_prompt(
    state: State<UiState>,
    admin: Admin,
    path: Path<(String, String)>,
    form: Form<ApproveForm>,
) -> Result<Response, PageError> {
    approve_entry(state, admin, path, form, EntryKind::Prompt).await
}

async fn approve_template(
    state: State<UiState>,
    admin: Admin,
    path: Path<(String, String)>,
    form: Form<ApproveForm>,
) -> Result<Response, PageError> {
    approve_entry(state, admin, path, form, EntryKind::ResourceTemplate).await
}

async fn approve_entry(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path((server, name)): Path<(String, String)>,
    Form(form): Form<ApproveForm>,
    kind: EntryKind,
) -> Result<Response, PageError> {
    state
        .idp
        .sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let store = Store::of(&state);
    let outcome = store
        .catalog()
        .approve_entry(
            &server,
            kind,
            &name,
            &form.hash,
            &admin.user.email,
            now(&state),
        )
        .await
        .map_err(storage)?;
    approved(outcome, kind.label())?;
    store.refresh().await.map_err(storage)?;
    tracing::info!(admin = %admin.user.id, %server, kind = kind.label(), %name, "admin approved a new definition");
    state.note(
        Entry::event("quarantine.released")
            .by(&admin.user.id, &admin.user.email)
            .upstream(&server)
            .with("kind", kind.label())
            .with("name", &name)
            .with("definition_sha256", &form.hash),
    );
    Ok(Redirect::to(&entry_url(&server, kind, &name)).into_response())
}

fn entry_url(server: &str, kind: EntryKind, name: &str) -> String {
    format!(
        "/admin/servers/{}/{}/{}",
        path_segment(server),
        kind_segment(kind),
        path_segment(name)
    )
}

fn tool_url(server: &str, tool: &str) -> String {
    format!(
        "/admin/servers/{}/tools/{}",
        path_segment(server),
        path_segment(tool)
    )
}
