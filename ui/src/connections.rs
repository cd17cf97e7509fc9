//! "Connected accounts" (`/account/connections`): the keys a person gives Warrant for
//! the upstreams that take each person's own key (`person_key`), stored in the vault
//! under the person's id, and the admin's shared key of an upstream (`shared`, on its
//! server page). A key is written once and never shown again: the forms are never
//! pre-filled, the pages say only whether a key is stored and since when. After every
//! change the binary's callback lets the gateway drop connections built with the old
//! key. `?upstream=NAME` is the link the gateway gives an agent that needs the person's
//! key: that upstream comes first, its field focused.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use http::StatusCode;
use serde::Deserialize;
use tower_sessions::Session;
use warrant_consent::vault::{SHARED, Vault, VaultEntry, VaultError};
use warrant_idp::IdpError;

use crate::UiState;
use crate::extract::{Admin, CsrfForm, SignedIn};
use crate::page::{MessagePage, PageError, path_segment, when};

/// The longest key a page accepts, in bytes.
const MAX_KEY_BYTES: usize = 4 * 1024;

/// Whose key an upstream is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// One key for everyone, set by an admin (or written in the file by reference).
    Shared,
    /// Each person's own key, from their "Connected accounts" page.
    PersonKey,
}

/// An upstream that is given a key by Warrant, as the pages describe it.
#[derive(Debug, Clone)]
pub struct KeyedUpstream {
    pub name: String,
    pub mode: KeyMode,
    /// Where the key goes, in words: "header Authorization (Bearer)", "environment
    /// variable GITHUB_TOKEN".
    pub place: String,
    /// A shared key written in the configuration file by reference: the page cannot set
    /// it.
    pub by_reference: bool,
}

/// Called with (owner, upstream) after a key is set, replaced or removed; the owner is a
/// user id or [`SHARED`].
pub type CredentialChanged = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What the connection pages need from the binary.
#[derive(Clone)]
pub struct ConnectionsUi {
    pub vault: Vault,
    /// The vault record kind the keys are kept under.
    pub kind: &'static str,
    /// Every upstream whose auth mode is not `none`.
    pub upstreams: Vec<KeyedUpstream>,
    pub changed: CredentialChanged,
}

impl std::fmt::Debug for ConnectionsUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionsUi")
            .field("kind", &self.kind)
            .field("upstreams", &self.upstreams)
            .finish_non_exhaustive()
    }
}

impl ConnectionsUi {
    fn upstream(&self, name: &str) -> Option<&KeyedUpstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The upstream `name` if it takes each person's own key.
    fn person_key(&self, name: &str) -> Option<&KeyedUpstream> {
        self.upstream(name).filter(|u| u.mode == KeyMode::PersonKey)
    }

    /// Stores `key` as `owner`'s for `upstream`, then tells the gateway.
    async fn put(&self, owner: &str, upstream: &str, key: &[u8]) -> Result<(), PageError> {
        self.vault
            .put(owner, upstream, self.kind, key)
            .await
            .map_err(vault_error)?;
        (self.changed)(owner, upstream);
        Ok(())
    }
}

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/account/connections", get(page))
        .route("/account/connections/{upstream}", post(connect))
        .route("/account/connections/{upstream}/remove", post(remove))
        .route("/admin/servers/{server}/shared-key", post(set_shared))
}

/// A form of `person` about their own key for `upstream`: its CSRF token checked, the
/// upstream one that takes a person's key; the pages' part and the upstream's name.
async fn own_key_upstream<'a>(
    state: &'a UiState,
    person: &SignedIn,
    upstream: &str,
    csrf: Option<&str>,
) -> Result<(&'a ConnectionsUi, String), PageError> {
    state.idp.sessions.check_csrf(&person.session, csrf).await?;
    let ui = ui_of(state)?;
    let Some(target) = ui.person_key(upstream) else {
        return Err(IdpError::NotFound("server taking your own key").into());
    };
    Ok((ui, target.name.clone()))
}

fn ui_of(state: &UiState) -> Result<&ConnectionsUi, PageError> {
    state
        .connections
        .as_ref()
        .ok_or(PageError(IdpError::NotFound("page")))
}

fn vault_error(e: VaultError) -> PageError {
    // A 500 with the generic words; the cause goes to the log (PageError logs it).
    PageError(IdpError::Session(format!("vault: {e}")))
}

/// The session key of the one-time message shown after a change.
const FLASH_KEY: &str = "warrant.flash";

/// Keeps `text` for the next page this session opens.
pub(crate) async fn set_flash(session: &Session, text: String) -> Result<(), PageError> {
    session
        .insert(FLASH_KEY, text)
        .await
        .map_err(|e| PageError(IdpError::Session(e.to_string())))
}

/// The message kept by [`set_flash`], once.
pub(crate) async fn take_flash(session: &Session) -> Result<Option<String>, PageError> {
    session
        .remove::<String>(FLASH_KEY)
        .await
        .map_err(|e| PageError(IdpError::Session(e.to_string())))
}

/// A key as typed or pasted, checked: surrounding whitespace (a pasted line break)
/// dropped; empty, too long, or holding a control character (it could not go into a
/// header) refused in plain words.
fn checked_key<'a>(key: &'a str, upstream: &str) -> Result<&'a [u8], String> {
    let key = key.trim();
    if key.is_empty() {
        return Err(format!(
            "The key for {upstream} was empty: nothing was saved. Paste the key and save again."
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "The key for {upstream} is longer than 4 KiB: nothing was saved. Check that you \
             pasted the key alone."
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(format!(
            "The key for {upstream} holds a line break or another control character: \
             nothing was saved. Paste the key alone, on one line."
        ));
    }
    Ok(key.as_bytes())
}

/// One `person_key` upstream on the person's page.
struct ConnectionView {
    name: String,
    path: String,
    place: String,
    /// "since …" (and "key replaced on …"), or empty when not connected.
    connected: String,
    /// The agent's link asked for this one: first, focused.
    focus: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "connections.html")]
struct ConnectionsPage {
    csrf: String,
    is_admin: bool,
    /// The upstream an agent asked for, when it takes a person's key.
    asked: Option<String>,
    flash: Option<String>,
    error: Option<String>,
    connections: Vec<ConnectionView>,
}

/// How a stored record reads on a page: when it was set, and replaced.
fn since(entry: &VaultEntry) -> String {
    if entry.version > 1 {
        format!(
            "since {}, key replaced on {}",
            when(entry.created_at),
            when(entry.updated_at)
        )
    } else {
        format!("since {}", when(entry.created_at))
    }
}

#[derive(Deserialize)]
struct PageQuery {
    upstream: Option<String>,
}

async fn page(
    State(state): State<UiState>,
    person: SignedIn,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    let flash = take_flash(&person.session).await?;
    let focus = query.upstream.as_deref().map(Focus::Asked);
    render(&state, &person, focus, flash, None).await
}

/// The upstream a page puts first, its field focused.
#[derive(Clone, Copy)]
enum Focus<'a> {
    /// The link an agent was given: the page says the agent asked.
    Asked(&'a str),
    /// The one whose key was just refused.
    Refused(&'a str),
}

/// The person's page, with `focus` first (when it takes a person's key), a message
/// after a change, or a refusal (answered 400).
async fn render(
    state: &UiState,
    person: &SignedIn,
    focus: Option<Focus<'_>>,
    flash: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let ui = ui_of(state)?;
    let csrf = state.idp.sessions.csrf_token(&person.session).await?;
    let (focus, by_agent) = match focus {
        Some(Focus::Asked(name)) => (Some(name), true),
        Some(Focus::Refused(name)) => (Some(name), false),
        None => (None, false),
    };
    let focused = focus
        .and_then(|name| ui.person_key(name))
        .map(|u| u.name.clone());
    let asked = focused.clone().filter(|_| by_agent);
    let mine: Vec<VaultEntry> = ui
        .vault
        .list()
        .await
        .map_err(vault_error)?
        .into_iter()
        .filter(|e| e.owner == person.user.id && e.kind == ui.kind)
        .collect();
    let mut connections: Vec<ConnectionView> = ui
        .upstreams
        .iter()
        .filter(|u| u.mode == KeyMode::PersonKey)
        .map(|u| ConnectionView {
            name: u.name.clone(),
            path: path_segment(&u.name),
            place: u.place.clone(),
            connected: mine
                .iter()
                .find(|e| e.upstream == u.name)
                .map(since)
                .unwrap_or_default(),
            focus: focused.as_deref() == Some(u.name.as_str()),
        })
        .collect();
    // The one asked for first; the others in the configuration's order.
    connections.sort_by_key(|c| !c.focus);
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = ConnectionsPage {
        csrf,
        is_admin: person.user.is_admin(),
        asked,
        flash,
        error,
        connections,
    };
    Ok((status, page).into_response())
}

#[derive(Deserialize)]
struct KeyForm {
    csrf: Option<String>,
    key: Option<String>,
}

async fn connect(
    State(state): State<UiState>,
    person: SignedIn,
    Path(upstream): Path<String>,
    Form(form): Form<KeyForm>,
) -> Result<Response, PageError> {
    let (ui, name) = own_key_upstream(&state, &person, &upstream, form.csrf.as_deref()).await?;
    let typed = form.key.unwrap_or_default();
    let key = match checked_key(&typed, &name) {
        Ok(key) => key,
        Err(refusal) => {
            let focus = Some(Focus::Refused(&name));
            return render(&state, &person, focus, None, Some(refusal)).await;
        }
    };
    let had = ui
        .vault
        .list()
        .await
        .map_err(vault_error)?
        .iter()
        .any(|e| e.owner == person.user.id && e.upstream == name && e.kind == ui.kind);
    ui.put(&person.user.id, &name, key).await?;
    tracing::info!(user = %person.user.id, upstream = %name, replaced = had, "a person stored their key for an upstream");
    let text = if had {
        format!("Your key for {name} was replaced.")
    } else {
        format!("Your key for {name} is connected. Agents acting for you can now use {name}.")
    };
    set_flash(&person.session, text).await?;
    Ok(Redirect::to("/account/connections").into_response())
}

async fn remove(
    State(state): State<UiState>,
    person: SignedIn,
    Path(upstream): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let (ui, name) = own_key_upstream(&state, &person, &upstream, form.csrf.as_deref()).await?;
    let removed = ui
        .vault
        .remove(&person.user.id, &name, ui.kind)
        .await
        .map_err(vault_error)?;
    (ui.changed)(&person.user.id, &name);
    tracing::info!(user = %person.user.id, upstream = %name, removed, "a person removed their key for an upstream");
    let text = if removed {
        format!(
            "Your key for {name} was removed. Agents acting for you cannot use {name} until you connect a key again."
        )
    } else {
        format!("No key of yours for {name} was stored: nothing to remove.")
    };
    set_flash(&person.session, text).await?;
    Ok(Redirect::to("/account/connections").into_response())
}

/// The authentication part of an upstream's admin page.
pub(crate) struct ServerAuth {
    /// `none`, `shared` or `person_key`.
    pub mode: &'static str,
    /// What it means, in words.
    pub summary: String,
    /// Where the key goes ("" for none).
    pub place: String,
    /// `shared` from the vault: the form to set or replace the key is shown.
    pub settable: bool,
    /// `shared` from the vault: "set on …", or empty when none is stored.
    pub set_on: String,
    /// `person_key`: how many people have connected a key.
    pub people: usize,
}

/// What the server page says about `server`'s key (`None`: the pages have no vault).
pub(crate) async fn server_auth(
    state: &UiState,
    server: &str,
) -> Result<Option<ServerAuth>, PageError> {
    let Some(ui) = state.connections.as_ref() else {
        return Ok(None);
    };
    let Some(upstream) = ui.upstream(server) else {
        return Ok(Some(ServerAuth {
            mode: "none",
            summary: "Warrant gives this server no key of its own: it gets only the headers \
                      or environment written in its configuration."
                .into(),
            place: String::new(),
            settable: false,
            set_on: String::new(),
            people: 0,
        }));
    };
    let entries: Vec<VaultEntry> = ui
        .vault
        .list()
        .await
        .map_err(vault_error)?
        .into_iter()
        .filter(|e| e.upstream == upstream.name && e.kind == ui.kind)
        .collect();
    let auth = match (upstream.mode, upstream.by_reference) {
        (KeyMode::Shared, true) => ServerAuth {
            mode: "shared",
            summary: "one key for everyone, written in the configuration file by reference: \
                      change it there."
                .into(),
            place: upstream.place.clone(),
            settable: false,
            set_on: String::new(),
            people: 0,
        },
        (KeyMode::Shared, false) => ServerAuth {
            mode: "shared",
            summary: "one key for everyone, kept in the vault and set here (never shown \
                      again once saved)."
                .into(),
            place: upstream.place.clone(),
            settable: true,
            set_on: entries
                .iter()
                .find(|e| e.owner == SHARED)
                .map(|e| format!("set on {}", when(e.updated_at)))
                .unwrap_or_default(),
            people: 0,
        },
        (KeyMode::PersonKey, _) => {
            let mut owners: Vec<&str> = entries
                .iter()
                .filter(|e| e.owner != SHARED)
                .map(|e| e.owner.as_str())
                .collect();
            owners.sort_unstable();
            owners.dedup();
            ServerAuth {
                mode: "person_key",
                summary: "each person's own key, which they connect on their \"Connected \
                          accounts\" page."
                    .into(),
                place: upstream.place.clone(),
                settable: false,
                set_on: String::new(),
                people: owners.len(),
            }
        }
    };
    Ok(Some(auth))
}

async fn set_shared(
    State(state): State<UiState>,
    Admin(admin): Admin,
    Path(server): Path<String>,
    Form(form): Form<KeyForm>,
) -> Result<Response, PageError> {
    state
        .idp
        .sessions
        .check_csrf(&admin.session, form.csrf.as_deref())
        .await?;
    let ui = ui_of(&state)?;
    let Some(target) = ui
        .upstream(&server)
        .filter(|u| u.mode == KeyMode::Shared && !u.by_reference)
    else {
        return Err(IdpError::Invalid(format!(
            "{server} does not take a shared key set on this page: its configuration \
             gives it none, each person's own, or one written in the file."
        ))
        .into());
    };
    let name = target.name.clone();
    let back = format!("/admin/servers/{}", path_segment(&name));
    let typed = form.key.unwrap_or_default();
    let key = match checked_key(&typed, &name) {
        Ok(key) => key,
        Err(refusal) => {
            let page = MessagePage::new("Nothing was saved", refusal).with_link(back, name);
            return Ok((StatusCode::BAD_REQUEST, page).into_response());
        }
    };
    ui.put(SHARED, &name, key).await?;
    tracing::info!(admin = %admin.user.id, upstream = %name, "admin set an upstream's shared key");
    set_flash(
        &admin.session,
        format!("The shared key for {name} was saved."),
    )
    .await?;
    Ok(Redirect::to(&back).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_trimmed_and_empty_long_or_multiline_ones_refused() {
        assert_eq!(checked_key("  sk-123\n", "github"), Ok(&b"sk-123"[..]));
        let empty = checked_key(" \n", "github").expect_err("empty");
        assert!(
            empty.contains("github") && empty.contains("empty"),
            "{empty}"
        );
        let long = checked_key(&"k".repeat(MAX_KEY_BYTES + 1), "github").expect_err("long");
        assert!(long.contains("4 KiB"), "{long}");
        assert!(checked_key(&"k".repeat(MAX_KEY_BYTES), "github").is_ok());
        let two = checked_key("a\nb", "github").expect_err("two lines");
        assert!(two.contains("line break"), "{two}");
    }
}
