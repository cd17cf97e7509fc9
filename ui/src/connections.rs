//! "Connected accounts" (`/account/connections`): the keys a person gives Warrant for
//! the upstreams that take each person's own key (`person_key`), stored in the vault
//! under the person's id, and the admin's shared key of an upstream (`shared`, on its
//! server page). A key is written once and never shown again: the forms are never
//! pre-filled, the pages say only whether a key is stored and since when. After every
//! change the binary's callback lets the gateway drop connections built with the old
//! key. `?upstream=NAME` is the link the gateway gives an agent that needs the person's
//! key: that upstream comes first, its field focused.
//!
//! An upstream people connect with OAuth (`person_oauth`) has a "Connect your account"
//! button instead of a field: it sends the person to the upstream's authorization
//! server (the attempt, with its PKCE verifier and `state`, kept in their session for
//! ten minutes) and back to `/account/connections/oauth/callback`, where the code is
//! exchanged and the tokens kept in the vault (`warrant_consent::person_oauth`).
//!
//! An upstream that takes the person's own sign-in (`person_sso`) needs nothing on this
//! page but a sign-in with its provider: the page says whether the person has one that
//! still serves, and links to that provider's sign-in.

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
use warrant_consent::ledger::Entry;
use warrant_consent::person_oauth::{
    CALLBACK_PATH, CLIENT_DOCUMENT_PATH, Flow, OAUTH_TOKEN, PersonOAuth, Status,
};
use warrant_consent::person_sso::{PersonSso, SIGN_IN_TOKEN, sign_in_record};
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
    /// Each person's own account, connected with OAuth on their "Connected accounts" page.
    PersonOAuth,
    /// The person's own sign-in at an OpenID Connect provider the upstream trusts.
    PersonSso,
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
    /// The people's OAuth connections (`None`: no upstream is connected that way).
    pub oauth: Option<Arc<PersonOAuth>>,
    /// The sign-in identities passed through (`None`: no upstream takes one); sign-ins
    /// with their providers are kept for them.
    pub sso: Option<Arc<PersonSso>>,
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

    /// The upstream `name` if each person connects their own key or account there.
    fn per_person(&self, name: &str) -> Option<&KeyedUpstream> {
        self.upstream(name).filter(|u| {
            matches!(
                u.mode,
                KeyMode::PersonKey | KeyMode::PersonOAuth | KeyMode::PersonSso
            )
        })
    }

    /// The OAuth connections, and `name` if people connect it with OAuth.
    fn person_oauth(&self, name: &str) -> Option<(&Arc<PersonOAuth>, String)> {
        let oauth = self.oauth.as_ref()?;
        self.upstream(name)
            .filter(|u| u.mode == KeyMode::PersonOAuth)
            .map(|u| (oauth, u.name.clone()))
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
        .route("/account/connections/{upstream}/oauth", post(connect_oauth))
        .route(CALLBACK_PATH, get(oauth_callback))
        .route(CLIENT_DOCUMENT_PATH, get(client_document))
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

/// The provider of an upstream that takes the person's sign-in.
struct SignInView {
    /// Its display name.
    label: String,
    /// Its sign-in, coming back to this page.
    link: String,
}

/// One `person_key` upstream on the person's page.
struct ConnectionView {
    name: String,
    path: String,
    place: String,
    /// Connected with OAuth (a button, no field).
    oauth: bool,
    /// An OAuth connection no longer accepted: why (it must be made again).
    dead: String,
    /// How long it serves, in words ("renewed automatically", "until …"), or empty.
    expires: String,
    /// Takes the person's sign-in at a provider.
    sso: Option<SignInView>,
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
    /// The upstream an agent asked for, when it takes a person's key or account.
    asked: Option<String>,
    /// It is connected with an account (OAuth), not a key.
    asked_account: bool,
    flash: Option<String>,
    error: Option<String>,
    connections: Vec<ConnectionView>,
}

/// A connection's state in words: why it must be made again (or ""), and how long it
/// serves (or "").
fn in_words(
    status: Result<Status, warrant_consent::person_oauth::PersonOAuthError>,
    upstream: &str,
    again: &str,
) -> (String, String) {
    match status {
        Ok(Status::Dead(reason)) => (reason, String::new()),
        Ok(Status::Connected { renewed: true, .. }) => {
            (String::new(), "Warrant renews it before it expires".into())
        }
        Ok(Status::Connected {
            expires_at: Some(at),
            renewed: false,
        }) => (
            String::new(),
            format!("It expires on {}: {again} then", when(at)),
        ),
        Ok(_) => (String::new(), String::new()),
        Err(e) => {
            tracing::warn!(%upstream, error = %e, "cannot read a person's connection");
            ("it cannot be read".into(), String::new())
        }
    }
}

/// How a stored record reads on a page; an OAuth connection's record changes with every
/// refresh, so only when it was made.
fn since_oauth(entry: &VaultEntry, oauth: bool) -> String {
    if oauth {
        format!("since {}", when(entry.created_at))
    } else {
        since(entry)
    }
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
        .and_then(|name| ui.per_person(name))
        .map(|u| u.name.clone());
    let asked = focused.clone().filter(|_| by_agent);
    let asked_account = asked
        .as_deref()
        .is_some_and(|name| ui.person_oauth(name).is_some());
    let mine: Vec<VaultEntry> = ui
        .vault
        .list()
        .await
        .map_err(vault_error)?
        .into_iter()
        .filter(|e| {
            e.owner == person.user.id
                && (e.kind == ui.kind || e.kind == OAUTH_TOKEN || e.kind == SIGN_IN_TOKEN)
        })
        .collect();
    let mut connections = Vec::new();
    for u in ui
        .upstreams
        .iter()
        .filter(|u| ui.per_person(&u.name).is_some())
    {
        if let (KeyMode::PersonSso, Some(sso)) = (u.mode, ui.sso.as_ref())
            && let Some(target) = sso.upstream(&u.name)
        {
            let record = sign_in_record(&target.provider);
            let entry = mine
                .iter()
                .find(|e| e.upstream == record && e.kind == SIGN_IN_TOKEN);
            let (dead, expires) = in_words(
                sso.status(&person.user.id, &u.name).await,
                &u.name,
                "sign in again",
            );
            let back = format!("/account/connections?upstream={}", path_segment(&u.name));
            let link = format!(
                "/auth/oidc/{}/start?next={}",
                path_segment(&target.provider),
                path_segment(&back)
            );
            connections.push(ConnectionView {
                name: u.name.clone(),
                path: path_segment(&u.name),
                place: u.place.clone(),
                oauth: false,
                dead,
                expires,
                sso: Some(SignInView {
                    label: target.provider_label.clone(),
                    link,
                }),
                connected: entry
                    .map(|e| format!("signed in on {}", when(e.updated_at)))
                    .unwrap_or_default(),
                focus: focused.as_deref() == Some(u.name.as_str()),
            });
            continue;
        }
        let oauth = u.mode == KeyMode::PersonOAuth;
        let kind = if oauth { OAUTH_TOKEN } else { ui.kind };
        let entry = mine.iter().find(|e| e.upstream == u.name && e.kind == kind);
        let (dead, expires) = match (oauth, entry, ui.person_oauth(&u.name)) {
            (true, Some(_), Some((connections, _))) => in_words(
                connections.status(&person.user.id, &u.name).await,
                &u.name,
                "connect again",
            ),
            _ => (String::new(), String::new()),
        };
        connections.push(ConnectionView {
            name: u.name.clone(),
            path: path_segment(&u.name),
            place: u.place.clone(),
            oauth,
            dead,
            expires,
            sso: None,
            connected: entry.map(|e| since_oauth(e, oauth)).unwrap_or_default(),
            focus: focused.as_deref() == Some(u.name.as_str()),
        });
    }
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
        asked_account,
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
    state.note(
        Entry::event("vault.stored")
            .by(&person.user.id, &person.user.email)
            .upstream(&name)
            .with("kind", ui.kind)
            .with("replaced", had),
    );
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
    if let Some((oauth, name)) = ui_of(&state)?.person_oauth(&upstream) {
        return disconnect_oauth(&state, &person, oauth, &name, form.csrf.as_deref()).await;
    }
    let (ui, name) = own_key_upstream(&state, &person, &upstream, form.csrf.as_deref()).await?;
    let removed = ui
        .vault
        .remove(&person.user.id, &name, ui.kind)
        .await
        .map_err(vault_error)?;
    (ui.changed)(&person.user.id, &name);
    tracing::info!(user = %person.user.id, upstream = %name, removed, "a person removed their key for an upstream");
    if removed {
        state.note(
            Entry::event("vault.removed")
                .by(&person.user.id, &person.user.email)
                .upstream(&name)
                .with("kind", ui.kind),
        );
    }
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

/// The session key of the OAuth connection attempts under way.
const FLOWS_KEY: &str = "warrant.oauth_flows";
/// At most this many attempts are kept per session (the oldest goes first).
const MAX_FLOWS: usize = 4;

fn session_error(e: impl std::fmt::Display) -> PageError {
    PageError(IdpError::Session(e.to_string()))
}

/// Warrant's client ID metadata document, for the upstreams' authorization servers that
/// know Warrant by it (none configured: not found).
async fn client_document(State(state): State<UiState>) -> Result<Response, PageError> {
    let Some(oauth) = state.connections.as_ref().and_then(|c| c.oauth.as_ref()) else {
        return Err(IdpError::NotFound("page").into());
    };
    Ok((
        [(http::header::CACHE_CONTROL, "public, max-age=3600")],
        axum::Json(oauth.client_document()),
    )
        .into_response())
}

/// "Connect your account": starts the OAuth connection to `upstream` and sends the
/// person to its authorization server.
async fn connect_oauth(
    State(state): State<UiState>,
    person: SignedIn,
    Path(upstream): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    state
        .idp
        .sessions
        .check_csrf(&person.session, form.csrf.as_deref())
        .await?;
    let Some((oauth, name)) = ui_of(&state)?.person_oauth(&upstream) else {
        return Err(IdpError::NotFound("server connected with your own account").into());
    };
    let (url, flow) = match oauth.begin(&name).await {
        Ok(begun) => begun,
        Err(e) => {
            tracing::warn!(upstream = %name, error = %e, "cannot start a person's OAuth connection");
            // The cause names the upstream's address: for the log and the admin only.
            let refusal = format!(
                "Warrant cannot reach the sign-in of {name} now, so nothing changed. Try \
                 again later, or tell an admin (the gateway's log says why)."
            );
            return render(
                &state,
                &person,
                Some(Focus::Refused(&name)),
                None,
                Some(refusal),
            )
            .await;
        }
    };
    let mut flows: Vec<Flow> = person
        .session
        .get(FLOWS_KEY)
        .await
        .map_err(session_error)?
        .unwrap_or_default();
    let now = state.idp.clock.unix();
    flows.retain(|f| !f.expired(now));
    if flows.len() >= MAX_FLOWS {
        flows.remove(0);
    }
    flows.push(flow);
    person
        .session
        .insert(FLOWS_KEY, flows)
        .await
        .map_err(session_error)?;
    tracing::info!(user = %person.user.id, upstream = %name, "a person started connecting their account");
    Ok(Redirect::to(url.as_str()).into_response())
}

#[derive(Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the authorization server sends the person back: the attempt their session
/// holds for `state` (used once) is finished with the code.
async fn oauth_callback(
    State(state): State<UiState>,
    person: SignedIn,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let Some(oauth) = ui.oauth.as_ref() else {
        return Err(IdpError::NotFound("page").into());
    };
    let mut flows: Vec<Flow> = person
        .session
        .get(FLOWS_KEY)
        .await
        .map_err(session_error)?
        .unwrap_or_default();
    let given = query.state.unwrap_or_default();
    let found = flows.iter().position(|f| {
        use subtle::ConstantTimeEq as _;
        bool::from(f.state().as_bytes().ct_eq(given.as_bytes()))
    });
    let Some(index) = found else {
        let page = MessagePage::new(
            "This connection cannot be finished",
            "It was not started in this browser session, or it was finished already. Open \
             Connected accounts and connect again."
                .to_owned(),
        )
        .with_link("/account/connections", "Connected accounts");
        return Ok((StatusCode::BAD_REQUEST, page).into_response());
    };
    // One use: whatever happens next, the attempt is spent.
    let flow = flows.remove(index);
    person
        .session
        .insert(FLOWS_KEY, flows)
        .await
        .map_err(session_error)?;
    let name = flow.upstream.clone();
    let text = match (query.code, query.error) {
        (_, Some(error)) => {
            let detail = query
                .error_description
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            format!(
                "{name} did not connect your account ({error}{detail}). Nothing changed; \
                 connect again when you are ready."
            )
        }
        (Some(code), None) => match oauth.finish(&person.user.id, &flow, &code).await {
            Ok(()) => {
                (ui.changed)(&person.user.id, &name);
                tracing::info!(user = %person.user.id, upstream = %name, "a person connected their account");
                state.note(
                    Entry::event("vault.stored")
                        .by(&person.user.id, &person.user.email)
                        .upstream(&name)
                        .with("kind", "oauth"),
                );
                format!(
                    "Your account at {name} is connected. Agents acting for you can now use \
                     {name}."
                )
            }
            Err(e) => {
                tracing::warn!(user = %person.user.id, upstream = %name, error = %e, "a person's OAuth connection did not finish");
                match e {
                    // Said for the person (an attempt too old, refused by the server).
                    warrant_consent::person_oauth::PersonOAuthError::Flow(why) => {
                        format!("Your account at {name} was not connected: {why}.")
                    }
                    // Addresses and causes: for the log.
                    _ => format!(
                        "Your account at {name} was not connected: Warrant cannot reach its \
                         sign-in now. Try again later, or tell an admin (the gateway's log \
                         says why)."
                    ),
                }
            }
        },
        (None, None) => {
            format!("{name} sent you back without an answer: nothing changed. Connect again.")
        }
    };
    set_flash(&person.session, text).await?;
    Ok(Redirect::to("/account/connections").into_response())
}

/// Removes `person`'s OAuth connection to `name`, revoking its tokens where the
/// authorization server offers it.
async fn disconnect_oauth(
    state: &UiState,
    person: &SignedIn,
    oauth: &Arc<PersonOAuth>,
    name: &str,
    csrf: Option<&str>,
) -> Result<Response, PageError> {
    state.idp.sessions.check_csrf(&person.session, csrf).await?;
    let removed = oauth
        .disconnect(&person.user.id, name)
        .await
        .map_err(|e| PageError(IdpError::Session(format!("vault: {e}"))))?;
    if let Some(ui) = state.connections.as_ref() {
        (ui.changed)(&person.user.id, name);
    }
    tracing::info!(user = %person.user.id, upstream = %name, removed, "a person disconnected their account");
    if removed {
        state.note(
            Entry::event("vault.removed")
                .by(&person.user.id, &person.user.email)
                .upstream(name)
                .with("kind", "oauth"),
        );
    }
    let text = if removed {
        format!(
            "Your account at {name} was disconnected. Agents acting for you cannot use {name} \
             until you connect it again."
        )
    } else {
        format!("No account of yours at {name} was connected: nothing to remove.")
    };
    set_flash(&person.session, text).await?;
    Ok(Redirect::to("/account/connections").into_response())
}

/// What is stored for `owner` (keys, OAuth connections, sign-in tokens), in words, as the
/// admin's user page lists it (never a value).
pub(crate) async fn credentials_of(state: &UiState, owner: &str) -> Result<Vec<String>, PageError> {
    let Some(ui) = state.connections.as_ref() else {
        return Ok(Vec::new());
    };
    Ok(ui
        .vault
        .list()
        .await
        .map_err(vault_error)?
        .into_iter()
        .filter(|e| e.owner == owner)
        .map(|e| match e.kind.as_str() {
            OAUTH_TOKEN => format!("{}: their account, connected with OAuth", e.upstream),
            SIGN_IN_TOKEN => format!(
                "their sign-in token from {}",
                e.upstream.trim_start_matches("oidc:")
            ),
            kind if kind == ui.kind => format!("{}: their key", e.upstream),
            kind => format!("{}: {kind}", e.upstream),
        })
        .collect())
}

/// Removes everything stored for `owner`: their OAuth connections are revoked at the
/// servers that offer it, then every record goes, and the gateway ends the connections
/// built with them. How many records were removed.
pub(crate) async fn remove_credentials_of(state: &UiState, owner: &str) -> Result<u64, PageError> {
    let Some(ui) = state.connections.as_ref() else {
        return Ok(0);
    };
    let entries: Vec<VaultEntry> = ui
        .vault
        .list()
        .await
        .map_err(vault_error)?
        .into_iter()
        .filter(|e| e.owner == owner)
        .collect();
    let mut removed = 0;
    if let Some(oauth) = &ui.oauth {
        for entry in entries.iter().filter(|e| e.kind == OAUTH_TOKEN) {
            match oauth.disconnect(owner, &entry.upstream).await {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(upstream = %entry.upstream, error = %e, "cannot disconnect a removed person's account");
                }
            }
        }
    }
    removed += ui.vault.remove_owner(owner).await.map_err(vault_error)?;
    for upstream in &ui.upstreams {
        (ui.changed)(owner, &upstream.name);
    }
    Ok(removed)
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
        .filter(|e| e.upstream == upstream.name && (e.kind == ui.kind || e.kind == OAUTH_TOKEN))
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
        (KeyMode::PersonSso, _) => ServerAuth {
            mode: "person_sso",
            summary: "each person's own sign-in: the token from their sign-in at the \
                      identity provider this server trusts, exchanged for one meant for it \
                      (or, where allowed, passed as it is)."
                .into(),
            place: upstream.place.clone(),
            settable: false,
            set_on: String::new(),
            people: 0,
        },
        (mode @ (KeyMode::PersonKey | KeyMode::PersonOAuth), _) => {
            let mut owners: Vec<&str> = entries
                .iter()
                .filter(|e| e.owner != SHARED)
                .map(|e| e.owner.as_str())
                .collect();
            owners.sort_unstable();
            owners.dedup();
            let (mode, summary) = if mode == KeyMode::PersonOAuth {
                (
                    "person_oauth",
                    "each person's own account, which they connect with OAuth on their \
                     \"Connected accounts\" page (Warrant is the OAuth client, keeps the \
                     tokens and refreshes them).",
                )
            } else {
                (
                    "person_key",
                    "each person's own key, which they connect on their \"Connected \
                     accounts\" page.",
                )
            };
            ServerAuth {
                mode,
                summary: summary.into(),
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
    state.note(
        Entry::event("vault.stored")
            .by(&admin.user.id, &admin.user.email)
            .upstream(&name)
            .with("kind", "shared"),
    );
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
