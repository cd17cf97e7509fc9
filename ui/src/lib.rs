//! # warrant-ui — the pages people see
//!
//! Server-rendered pages (askama templates in `ui/templates/`, one base layout, plain and
//! accessible HTML, assets embedded in the binary, no CDN): sign-in (one button per OIDC
//! provider, passkey, email link), first-admin setup, the account page (passkeys,
//! sessions), "Connected accounts" (the keys a person gives for upstreams that take
//! their own), the consent screen (`/authorize`), approvals of critical calls, and the
//! admin pages: users (roles, groups, ceilings, status, their agents), groups' ceilings,
//! servers with their tools, prompts and templates (risk review, trust, quarantine) and
//! how each is given a key (an upstream's shared key is set there), and the audit log,
//! analytics and "who reaches what" (each person sees their own agents' activity).
//! Coming: "My agents" and the rest of the console.
//!
//! Handlers call the services of `warrant-idp` and `warrant-consent`; they hold
//! no business rules of their own. Every state-changing form carries the session's CSRF
//! token; every refusal renders a page that says what went wrong in plain words while
//! the technical reason goes to the log.

mod account;
mod admin;
mod analytics;
mod approvals;
mod assets;
mod audit;
mod ceilings;
mod chart;
mod connections;
mod consent;
mod email;
mod extract;
mod oidc;
mod page;
mod passkey;
mod record;
mod servers;
mod setup;
mod signin;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Redirect;
use axum::routing::get;
use warrant_consent::ledger::Ledger;
use warrant_idp::Idp;

pub use approvals::ApprovalsUi;
pub use connections::{ConnectionsUi, CredentialChanged, KeyMode, KeyedUpstream};
pub use consent::ConsentUi;
pub use extract::{Admin, SignedIn};
pub use page::PageError;

/// What every page handler can reach.
#[derive(Debug, Clone)]
pub struct UiState {
    pub idp: Idp,
    /// `/authorize` and the consent screen; `None` leaves them off.
    pub consent: Option<ConsentUi>,
    /// "Pending approvals" of critical calls; `None` leaves them off.
    pub approvals: Option<ApprovalsUi>,
    /// "Connected accounts" and the shared keys on the server pages; `None` leaves
    /// them off.
    pub connections: Option<ConnectionsUi>,
    /// The audit ledger the pages record their events in; `None` records nothing
    /// (`audit.enabled = false`, or a router built without one).
    pub ledger: Option<Ledger>,
}

/// Forms and ceremony payloads are small; anything bigger is refused before parsing.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Every page route, with the session layer. The binary merges it next to `/mcp`.
pub fn router(idp: Idp) -> Router {
    router_with_consent(idp, None)
}

/// [`router`], with `/authorize` and the consent screen when `consent` is given.
pub fn router_with_consent(idp: Idp, consent: Option<ConsentUi>) -> Router {
    router_with_pages(idp, consent, None)
}

/// [`router_with_consent`], with the approval pages of critical calls when `approvals`
/// is given.
pub fn router_with_pages(
    idp: Idp,
    consent: Option<ConsentUi>,
    approvals: Option<ApprovalsUi>,
) -> Router {
    router_for(UiState {
        idp,
        consent,
        approvals,
        connections: None,
        ledger: None,
    })
}

/// Every page `state` turns on, with the session layer.
pub fn router_for(state: UiState) -> Router {
    let sessions = state.idp.sessions.layer();
    Router::new()
        .route("/", get(|| async { Redirect::to("/account") }))
        .merge(signin::routes())
        .merge(account::routes())
        .merge(admin::routes())
        .merge(audit::routes())
        .merge(analytics::routes())
        .merge(ceilings::routes())
        .merge(servers::routes())
        .merge(oidc::routes())
        .merge(passkey::routes())
        .merge(email::routes())
        .merge(setup::routes())
        .merge(consent::routes())
        .merge(approvals::routes())
        .merge(connections::routes())
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(sessions)
        // Assets need no session: outside the layer they neither load nor save one.
        .merge(assets::routes())
        .layer(axum::middleware::from_fn(page::security_headers))
        .with_state(state)
}
