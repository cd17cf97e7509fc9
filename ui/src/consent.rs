//! `/authorize` and the consent screen: an agent (an OAuth client) asks to act for the
//! signed-in person; the person sees who asks, for what, chooses servers and a duration,
//! and approves or denies. Approval records a grant and sends an authorization code to
//! the agent's redirect URI; a returning agent whose live grant covers the request goes
//! straight back with a code.
//!
//! Errors that cannot safely go back to the agent (unknown client, redirect URI not
//! registered) are shown as a page; the others go back with `error=` (RFC 6749 §4.1.2.1).
//! Every redirect to the agent carries `iss` (RFC 9207).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::StatusCode;
use warrant_consent::catalog::{Catalog, CatalogError};
use warrant_consent::ceilings::CeilingView;
use warrant_consent::grants::{Grant, Grants, NewGrant};
use warrant_consent::ledger::Entry;
use warrant_consent::oauth::http::redirect_uri_matches;
use warrant_consent::oauth::{
    CimdError, Client, ClientKind, Clients, Codes, DocumentFetcher, FetchNew, NewCode, RevokedSet,
    StoreError, find_client,
};
use warrant_consent::token::{Risk, ToolPattern};
use warrant_idp::db::Db;

use crate::UiState;
use crate::extract::SignedIn;
use crate::page::{MessagePage, PageError};

mod constraints;
mod page;

use page::{Answer, render};

/// What the consent screen needs from the binary.
#[derive(Debug, Clone)]
pub struct ConsentUi {
    pub db: Db,
    /// The issuer identifier (`iss`), the public URL without a trailing slash.
    pub issuer: String,
    /// The gateway's `/mcp`, with the loopback names it answers to.
    pub resource: warrant_consent::oauth::Resource,
    /// The upstream server names a person may choose from.
    pub tool_servers: Vec<String>,
    /// The proxy's live revocation list: a grant replaced by a new approval is refused
    /// at once.
    pub revoked: Option<RevokedSet>,
    /// The proxy's live catalog: the admin's risk classes, trust and approvals apply
    /// at once.
    pub catalog: Option<warrant_consent::catalog::CatalogView>,
    /// Every user's live trust ceiling: the consent screen offers nothing above the
    /// person's, and the admin pages set them.
    pub ceilings: Option<CeilingView>,
}

/// At most this many tools named in one request's scope are shown.
const MAX_REQUESTED_TOOLS: usize = 32;

/// The tools a request's scope names as `tool:<server>.<tool>` — the step-up a refused
/// call asked for (the gateway's 403 `insufficient_scope` names the tool). Only exact
/// names count (no wildcards: a person approves tools they can read); other scope
/// values are ignored.
fn requested_tools(scope: Option<&str>) -> Vec<String> {
    let mut tools: Vec<String> = scope
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("tool:"))
        .filter(|t| {
            t.split_once('.').is_some_and(|(server, tool)| {
                !server.is_empty()
                    && !tool.is_empty()
                    && !t.contains('*')
                    && ToolPattern::parse(t).is_ok()
            })
        })
        .map(str::to_owned)
        .collect();
    tools.sort();
    tools.dedup();
    tools.truncate(MAX_REQUESTED_TOOLS);
    tools
}

/// Whether a grant allows `server.tool` by its patterns (deny wins).
fn grant_covers(grant: &Grant, tool_id: &str) -> bool {
    let Some((server, tool)) = tool_id.split_once('.') else {
        return false;
    };
    let matches = |patterns: &[String]| {
        patterns
            .iter()
            .any(|p| ToolPattern::parse(p).is_ok_and(|p| p.matches(server, tool)))
    };
    matches(&grant.allow) && !matches(&grant.deny)
}

/// What a live grant lacks of the tools a request names: the tools its patterns do not
/// allow, and the tools they allow at a class above the grant's own highest risk (the
/// person chose "at most medium", the tool is high: a step-up the person must see).
/// Also, for the page, why each of the latter is asked for again.
async fn beyond_grant(
    ui: &ConsentUi,
    grant: &Grant,
    wanted: &[String],
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let limit = grant.max_risk.as_deref().and_then(Risk::parse);
    let risks = match limit {
        Some(_) if !wanted.is_empty() => risks_of(ui, wanted).await?,
        _ => std::collections::HashMap::new(),
    };
    let mut more = Vec::new();
    let mut notes = Vec::new();
    for tool in wanted {
        if !grant_covers(grant, tool) {
            more.push(tool.clone());
        } else if let (Some(max), Some(risk)) = (limit, risks.get(tool))
            && *risk > max
        {
            more.push(tool.clone());
            notes.push(format!(
                "It asks for {tool}, a {risk} risk tool: you allowed it tools up to {max} risk."
            ));
        }
    }
    Ok((more, notes))
}

/// The classes calls of `tools` are decided with, as the catalog knows them.
async fn risks_of(
    ui: &ConsentUi,
    tools: &[String],
) -> Result<std::collections::HashMap<String, Risk>, StoreError> {
    let choices = server_choices(ui, None).await?;
    Ok(choices
        .iter()
        .flat_map(|s| s.tools.iter())
        .filter(|t| tools.contains(&t.id))
        .filter_map(|t| Risk::parse(t.risk).map(|r| (t.id.clone(), r)))
        .collect())
}

/// The durations offered, in seconds, with their labels.
const DURATIONS: &[(&str, &str, i64)] = &[
    ("1h", "1 hour", 3600),
    ("1d", "1 day", 86_400),
    ("30d", "30 days", 30 * 86_400),
];

pub(crate) fn routes() -> Router<UiState> {
    Router::new().route("/authorize", get(authorize).post(decide))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The parameters of an authorization request (query on GET, hidden fields on POST).
fn params(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn one<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// A request whose client and redirect URI are known good: errors may now go back to
/// the agent.
struct Checked {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    scope: Option<String>,
    code_challenge: String,
    resource: String,
}

enum Refusal {
    /// Shown as a page: the redirect URI cannot be trusted.
    Page(&'static str, String),
    /// Sent back to the agent.
    Redirect(String),
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn page(status: StatusCode, title: &str, message: String) -> Response {
    (
        status,
        MessagePage::new(title, message).with_link("/account", "Your account"),
    )
        .into_response()
}

impl Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Page(title, message) => {
                tracing::warn!(reason = %message, "authorization request refused");
                page(StatusCode::BAD_REQUEST, title, message)
            }
            Self::Redirect(to) => Redirect::to(&to).into_response(),
            Self::Store(e) => {
                tracing::error!(error = %e, "authorization storage failed");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The request could not be completed. Try again in a moment.".into(),
                )
            }
        }
    }
}

/// The agent's redirect URI with `pairs` and `iss` added to its query.
fn back_to(redirect_uri: &str, issuer: &str, pairs: &[(&str, &str)]) -> String {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return redirect_uri.to_owned();
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        query.append_pair("iss", issuer);
    }
    url.to_string()
}

fn error_back(c: &Checked, issuer: &str, error: &str, description: &str) -> Refusal {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(state) = &c.state {
        pairs.push(("state", state));
    }
    Refusal::Redirect(back_to(&c.redirect_uri, issuer, &pairs))
}

async fn check(ui: &ConsentUi, p: &[(String, String)]) -> Result<Checked, Refusal> {
    // RFC 6749 §3.1: a parameter sent twice makes the request ambiguous (which redirect?).
    if let Some(name) = CARRIED
        .iter()
        .find(|name| p.iter().filter(|(k, _)| k == *name).count() > 1)
    {
        return Err(Refusal::Page(
            "Malformed request",
            format!("The agent sent the parameter {name} more than once. Nothing was shared."),
        ));
    }
    let Some(client_id) = one(p, "client_id") else {
        return Err(Refusal::Page(
            "Unknown agent",
            "The request does not say which agent is asking (client_id is missing).".into(),
        ));
    };
    // A URL names the agent's client ID metadata document: read (or taken from the
    // cache) and checked here, before anything goes back to the agent.
    let fetcher = url::Url::parse(&ui.issuer)
        .map(|u| DocumentFetcher::for_public_url(&u))
        .unwrap_or_else(|_| DocumentFetcher::new(false));
    let found = find_client(
        &Clients::new(ui.db.clone()),
        &fetcher,
        client_id,
        now(),
        FetchNew::Yes,
    )
    .await;
    let client = match found {
        Ok(Some(client)) => client,
        Ok(None) => {
            return Err(Refusal::Page(
                "Unknown agent",
                "This agent is not registered with Warrant. Ask it to connect again.".into(),
            ));
        }
        Err(CimdError::Store(e)) => return Err(Refusal::Store(e)),
        Err(e) => {
            tracing::warn!(client = %client_id, detail = ?e, "client metadata document refused");
            return Err(Refusal::Page(
                "Agent description refused",
                format!(
                    "This agent identifies itself with a client ID metadata document at \
                     {client_id}, which Warrant could not use: {e}. Nothing was shared."
                ),
            ));
        }
    };
    let redirect_uri = match one(p, "redirect_uri") {
        Some(uri) => uri.to_owned(),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(Refusal::Page(
                "Missing redirect address",
                "The agent did not say where to send you back (redirect_uri is missing).".into(),
            ));
        }
    };
    if !client
        .redirect_uris
        .iter()
        .any(|r| redirect_uri_matches(r, &redirect_uri))
    {
        return Err(Refusal::Page(
            "Unexpected redirect address",
            format!(
                "The agent asked to send you back to {redirect_uri}, which it did not \
                 register. Nothing was shared."
            ),
        ));
    }
    let checked = Checked {
        redirect_uri,
        state: one(p, "state").map(str::to_owned),
        scope: one(p, "scope").map(str::to_owned),
        code_challenge: one(p, "code_challenge").unwrap_or_default().to_owned(),
        resource: ui.resource.canonical().to_owned(),
        client,
    };
    if one(p, "response_type") != Some("code") {
        return Err(error_back(
            &checked,
            &ui.issuer,
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    if checked.code_challenge.is_empty() || one(p, "code_challenge_method") != Some("S256") {
        return Err(error_back(
            &checked,
            &ui.issuer,
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method=S256",
        ));
    }
    if let Some(resource) = one(p, "resource")
        && !ui.resource.accepts(resource)
    {
        return Err(error_back(
            &checked,
            &ui.issuer,
            "invalid_target",
            "this server authorizes its own /mcp resource only",
        ));
    }
    Ok(checked)
}

async fn code_back(
    ui: &ConsentUi,
    c: &Checked,
    user_id: &str,
    grant_id: &str,
) -> Result<Response, Refusal> {
    let code = Codes::new(ui.db.clone())
        .issue(
            &NewCode {
                client_id: c.client.client_id.clone(),
                user_id: user_id.to_owned(),
                grant_id: grant_id.to_owned(),
                redirect_uri: c.redirect_uri.clone(),
                code_challenge: c.code_challenge.clone(),
                resource: c.resource.clone(),
                scope: c.scope.clone(),
            },
            now(),
        )
        .await?;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = &c.state {
        pairs.push(("state", state));
    }
    Ok(Redirect::to(&back_to(&c.redirect_uri, &ui.issuer, &pairs)).into_response())
}

/// The host of a metadata document agent's client_id URL: who vouches for its name.
fn identified_by(client: &Client) -> Option<String> {
    (client.kind == ClientKind::Metadata)
        .then(|| url::Url::parse(&client.client_id).ok())
        .flatten()
        .and_then(|u| u.host_str().map(str::to_owned))
}

struct ServerChoice {
    name: String,
    /// Its tools as last seen, to choose one by one.
    tools: Vec<ToolChoice>,
}

struct ToolChoice {
    /// `server.tool`, the grant pattern.
    id: String,
    name: String,
    title: Option<String>,
    /// The class calls are decided with.
    risk: &'static str,
    /// Above the person's ceiling: shown, not offered.
    above: bool,
    /// Its arguments (top-level names of its input schema), to constrain.
    args: Vec<String>,
    /// The form's constraint rows for it (`arg.<n>.…`), when it has arguments.
    rows: Vec<usize>,
}

/// The person's live ceiling, when ceilings apply.
fn ceiling_of(ui: &ConsentUi, user: &str) -> Option<Risk> {
    ui.ceilings.as_ref().map(|c| c.ceiling(user))
}

/// The ids of the tools above the person's ceiling.
fn above_ceiling(servers: &[ServerChoice]) -> Vec<String> {
    servers
        .iter()
        .flat_map(|s| s.tools.iter().filter(|t| t.above).map(|t| t.id.clone()))
        .collect()
}

/// A choice of "Highest risk this agent may reach".
struct RiskChoice {
    value: &'static str,
    /// Within the person's ceiling.
    allowed: bool,
    selected: bool,
}

const RISKS: [Risk; 4] = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical];

/// The classes up to the ceiling may be chosen; the ceiling itself is the default.
fn risk_choices(ceiling: Option<Risk>) -> Vec<RiskChoice> {
    let top = ceiling.unwrap_or(Risk::Critical);
    RISKS
        .iter()
        .map(|r| RiskChoice {
            value: r.name(),
            allowed: *r <= top,
            selected: *r == top,
        })
        .collect()
}

/// The grant's highest class: the person's choice, never above their ceiling. A form
/// without the field (an older page) leaves it to the live ceiling.
fn chosen_max_risk(choice: Option<&str>, ceiling: Option<Risk>) -> Option<String> {
    let chosen = Risk::parse(choice?)?;
    let top = ceiling.unwrap_or(Risk::Critical);
    Some(chosen.min(top).name().to_owned())
}

/// The configured servers with the tools the catalog last saw from each.
async fn server_choices(
    ui: &ConsentUi,
    ceiling: Option<Risk>,
) -> Result<Vec<ServerChoice>, StoreError> {
    let catalog = Catalog::new(ui.db.clone());
    let mut servers = Vec::with_capacity(ui.tool_servers.len());
    for server in &ui.tool_servers {
        let trusted = ui
            .catalog
            .as_ref()
            .is_some_and(|c| c.current().trusts(server));
        let tools = catalog
            .tools_of(server)
            .await
            .map_err(|e| match e {
                CatalogError::Storage(e) => StoreError::Storage(e),
                CatalogError::Encode { source, .. } => StoreError::Json {
                    what: "a catalog tool",
                    source,
                },
            })?
            .into_iter()
            // A name a grant pattern cannot state exactly is left to a server-wide choice.
            .filter(|t| {
                !t.name.contains('*') && ToolPattern::parse(&format!("{server}.{}", t.name)).is_ok()
            })
            // A quarantined tool (its upstream changed it) is not offered until approved.
            .filter(|t| t.quarantined_since.is_none())
            .map(|t| {
                // The class calls are decided with (the admin's review, or the
                // annotations of a trusted upstream; else critical).
                let risk = t.effective_risk(trusted);
                ToolChoice {
                    id: format!("{server}.{}", t.name),
                    risk: risk.name(),
                    above: ceiling.is_some_and(|c| risk > c),
                    args: constraints::arguments_of(
                        t.definition.as_deref().or(t.approved_definition.as_deref()),
                    ),
                    rows: Vec::new(),
                    name: t.name,
                    title: t.title,
                }
            })
            .collect();
        servers.push(ServerChoice {
            name: server.clone(),
            tools,
        });
    }
    // Number the constraint rows of the tools that may be constrained.
    let mut next = 0;
    for tool in servers.iter_mut().flat_map(|s| s.tools.iter_mut()) {
        if !tool.above && !tool.args.is_empty() {
            tool.rows = (next..next + constraints::ROWS_PER_TOOL).collect();
            next += constraints::ROWS_PER_TOOL;
        }
    }
    Ok(servers)
}

/// The tools a person may constrain (offered, within the ceiling), with their arguments.
fn constrainable(servers: &[ServerChoice]) -> std::collections::BTreeMap<String, Vec<String>> {
    servers
        .iter()
        .flat_map(|s| s.tools.iter())
        .filter(|t| !t.above)
        .map(|t| (t.id.clone(), t.args.clone()))
        .collect()
}

const CARRIED: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "code_challenge",
    "code_challenge_method",
    "state",
    "scope",
    "resource",
];

fn not_configured() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "Agent authorization is not enabled on this server.".into(),
    )
}

async fn authorize(
    State(state): State<UiState>,
    person: SignedIn,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let Some(ui) = &state.consent else {
        return Ok(not_configured());
    };
    let p = params(query.unwrap_or_default().as_bytes());
    let c = match check(ui, &p).await {
        Ok(c) => c,
        Err(r) => return Ok(r.into_response()),
    };
    let grants = Grants::new(ui.db.clone());
    let live = match grants
        .live(&person.user.id, &c.client.client_id, &c.resource, now())
        .await
    {
        Ok(l) => l,
        Err(e) => return Ok(Refusal::Store(e).into_response()),
    };
    let wanted = requested_tools(c.scope.as_deref());
    let mut more = wanted.clone();
    let mut notes = Vec::new();
    if let Some(grant) = live.first() {
        (more, notes) = match beyond_grant(ui, grant, &wanted).await {
            Ok(beyond) => beyond,
            Err(e) => return Ok(Refusal::Store(e).into_response()),
        };
        if more.is_empty() {
            tracing::info!(user = %person.user.id, client = %c.client.client_id, grant = %grant.id, "live grant covers the request");
            return Ok(code_back(ui, &c, &person.user.id, &grant.id)
                .await
                .unwrap_or_else(Refusal::into_response));
        }
        tracing::info!(user = %person.user.id, client = %c.client.client_id, grant = %grant.id, asks = ?more, "the agent asks for more than its grant");
    }
    render(
        &state,
        ui,
        &person,
        &c,
        &p,
        Answer {
            asks_more: !live.is_empty(),
            more,
            notes,
            ..Answer::default()
        },
    )
    .await
}

async fn decide(
    State(state): State<UiState>,
    person: SignedIn,
    body: Bytes,
) -> Result<Response, PageError> {
    let Some(ui) = &state.consent else {
        return Ok(not_configured());
    };
    let p = params(&body);
    state
        .idp
        .sessions
        .check_csrf(&person.session, one(&p, "csrf"))
        .await?;
    let c = match check(ui, &p).await {
        Ok(c) => c,
        Err(r) => return Ok(r.into_response()),
    };
    if one(&p, "decision") != Some("approve") {
        tracing::info!(user = %person.user.id, client = %c.client.client_id, "agent denied");
        state.note(
            Entry::event("consent.refused")
                .by(&person.user.id, &person.user.email)
                .agent(&c.client.client_id)
                .decided(false)
                .with("agent_name", &c.client.name),
        );
        return Ok(error_back(
            &c,
            &ui.issuer,
            "access_denied",
            "the person denied the request",
        )
        .into_response());
    }
    let duration = one(&p, "duration")
        .and_then(|d| DURATIONS.iter().find(|(v, _, _)| *v == d))
        .map_or(86_400, |(_, _, secs)| *secs);
    let mut allow: Vec<String> = if one(&p, "servers") == Some("some") {
        p.iter()
            .filter(|(k, v)| k == "server" && ui.tool_servers.contains(v))
            .map(|(_, v)| format!("{v}.*"))
            .collect()
    } else {
        vec!["*".to_owned()]
    };
    // Tools the person ticked: ones the request named, or, choosing servers, single
    // tools of a server (as the catalog knows them).
    let requested = requested_tools(c.scope.as_deref());
    let some = one(&p, "servers") == Some("some");
    let choices = match server_choices(ui, ceiling_of(ui, &person.user.id)).await {
        Ok(servers) => servers,
        Err(e) => return Ok(Refusal::Store(e).into_response()),
    };
    let above = above_ceiling(&choices);
    let args = constraints::constraints_of(&p, &constrainable(&choices));
    let calls_per_hour = constraints::budget_of(one(&p, "calls_per_hour"));
    let (args, calls_per_hour) = match (args, calls_per_hour) {
        (Ok(args), Ok(budget)) => (args, budget),
        (args, budget) => {
            let mut errors = args.err().unwrap_or_default();
            errors.extend(budget.err());
            tracing::info!(user = %person.user.id, client = %c.client.client_id, ?errors, "consent answer refused");
            let live = match Grants::new(ui.db.clone())
                .live(&person.user.id, &c.client.client_id, &c.resource, now())
                .await
            {
                Ok(l) => l,
                Err(e) => return Ok(Refusal::Store(e).into_response()),
            };
            let mut more = requested_tools(c.scope.as_deref());
            let mut notes = Vec::new();
            if let Some(grant) = live.first() {
                (more, notes) = match beyond_grant(ui, grant, &more).await {
                    Ok(beyond) => beyond,
                    Err(e) => return Ok(Refusal::Store(e).into_response()),
                };
            }
            let answer = Answer {
                asks_more: !live.is_empty(),
                more,
                notes,
                calls_per_hour: one(&p, "calls_per_hour").unwrap_or_default().to_owned(),
                entered: constraints::Entered::of(&p),
                errors,
            };
            return render(&state, ui, &person, &c, &p, answer).await;
        }
    };
    let known: Vec<String> = if some {
        choices
            .into_iter()
            .flat_map(|s| s.tools.into_iter().filter(|t| !t.above).map(|t| t.id))
            .collect()
    } else {
        Vec::new()
    };
    for (_, tool) in p.iter().filter(|(k, _)| k == "tool") {
        if (requested.contains(tool) || known.contains(tool))
            && !above.contains(tool)
            && !allow.contains(tool)
        {
            allow.push(tool.clone());
        }
    }
    let at = now();
    let grants = Grants::new(ui.db.clone());
    let replaced = match grants
        .live(&person.user.id, &c.client.client_id, &c.resource, at)
        .await
    {
        Ok(live) => live,
        Err(e) => return Ok(Refusal::Store(e).into_response()),
    };
    let grant = grants
        .create(
            &NewGrant {
                user_id: person.user.id.clone(),
                client_id: c.client.client_id.clone(),
                resource: c.resource.clone(),
                allow,
                deny: Vec::new(),
                max_risk: chosen_max_risk(one(&p, "max_risk"), ceiling_of(ui, &person.user.id)),
                args,
                calls_per_hour,
                expires_at: at + duration,
            },
            at,
        )
        .await;
    let grant = match grant {
        Ok(g) => g,
        Err(e) => return Ok(Refusal::Store(e).into_response()),
    };
    // Nothing is granted unrecorded: a consent the ledger cannot take is taken back.
    let given = Entry::event("consent.given")
        .by(&person.user.id, &person.user.email)
        .agent(&c.client.client_id)
        .decided(true)
        .with("agent_name", &c.client.name)
        .with("grant", &grant.id)
        .with("resource", &grant.resource)
        .with("allow", &grant.allow)
        .with("max_risk", &grant.max_risk)
        .with("args", &grant.args)
        .with("calls_per_hour", grant.calls_per_hour)
        .with("expires_at", grant.expires_at)
        .with(
            "replaces",
            replaced.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        );
    if let Err(e) = state.record(given).await {
        if let Err(undo) = grants.revoke(&grant.id, at).await {
            tracing::error!(grant = %grant.id, error = %undo, "an unrecorded consent could not be taken back");
        }
        return Err(e);
    }
    // The new approval replaces the agent's earlier grants on this resource: one
    // consent per agent, the one the person gave last.
    for old in replaced {
        match grants.revoke(&old.id, at).await {
            Ok(_) => {
                if let Some(revoked) = &ui.revoked {
                    revoked.insert(std::slice::from_ref(&old.id));
                }
                tracing::info!(user = %person.user.id, client = %c.client.client_id, old = %old.id, new = %grant.id, "grant replaced");
            }
            Err(e) => return Ok(Refusal::Store(e).into_response()),
        }
    }
    Ok(code_back(ui, &c, &person.user.id, &grant.id)
        .await
        .unwrap_or_else(Refusal::into_response))
}

#[cfg(test)]
mod ceiling_tests {
    use super::*;

    #[test]
    fn the_risk_choice_stops_at_the_ceiling_and_defaults_to_it() {
        let offered: Vec<(&str, bool, bool)> = risk_choices(Some(Risk::Medium))
            .iter()
            .map(|r| (r.value, r.allowed, r.selected))
            .collect();
        assert_eq!(
            offered,
            [
                ("low", true, false),
                ("medium", true, true),
                ("high", false, false),
                ("critical", false, false)
            ]
        );
        assert!(risk_choices(None).iter().all(|r| r.allowed));
        assert_eq!(
            chosen_max_risk(Some("low"), Some(Risk::Medium)).as_deref(),
            Some("low")
        );
        assert_eq!(
            chosen_max_risk(Some("critical"), Some(Risk::Medium)).as_deref(),
            Some("medium"),
            "a forged choice above the ceiling is the ceiling"
        );
        assert_eq!(chosen_max_risk(None, Some(Risk::Low)), None);
        assert_eq!(chosen_max_risk(Some("extreme"), None), None);
    }
}
