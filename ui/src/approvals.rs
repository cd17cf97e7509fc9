//! "Pending approvals": the calls of critical tools that wait for the signed-in person
//! (`/approvals`), and one approval's page (`/approvals/{id}`) with its three buttons —
//! approve once, approve for the rest of the grant, deny. Only the person the call
//! acts for sees or decides it: anyone else gets "not found", whether or not the id
//! exists. Every decision carries the session's CSRF token and is recorded with who
//! decided and how: `session` (the buttons of the form), or `passkey` when the person
//! confirms with a passkey (`assets/passkey.js`: `POST /approvals/{id}/passkey/start`
//! → request options, `POST /approvals/{id}/passkey/finish` `{credential, decision}` →
//! `{redirect}`; the assertion must be of one of the signed-in person's own passkeys).

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use warrant_consent::approvals::{
    Approval, ApprovalError, Approvals, Decision, Method, Scope, Status, plausible_id,
};
use warrant_consent::ledger::Entry;
use warrant_consent::oauth::Clients;
use warrant_idp::IdpError;

use crate::UiState;
use crate::extract::SignedIn;
use crate::page::{MessagePage, PageError, when};
use crate::passkey::{JsonError, check_csrf_header, parse};

/// What the approval pages need from the binary.
#[derive(Debug, Clone)]
pub struct ApprovalsUi {
    pub approvals: Approvals,
    pub clients: Clients,
}

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/approvals", get(list))
        .route("/approvals/{id}", get(show).post(decide))
        .route("/approvals/{id}/passkey/start", post(passkey_start))
        .route("/approvals/{id}/passkey/finish", post(passkey_finish))
}

/// How many decided approvals the list shows under the pending ones.
const RECENT: i64 = 20;

/// An approval as the pages show it.
struct ApprovalView {
    id: String,
    agent: String,
    server: String,
    tool: String,
    preview: String,
    /// The whole arguments, pretty-printed (empty for an approval stored without them).
    arguments: String,
    status: &'static str,
    scope: &'static str,
    created: String,
    expires: String,
    decided: String,
    method: &'static str,
}

impl ApprovalView {
    fn pending(&self) -> bool {
        self.status == Status::Pending.as_str()
    }
}

async fn view(ui: &ApprovalsUi, a: Approval) -> ApprovalView {
    let agent = match ui.clients.get(&a.key.client_id).await {
        Ok(Some(client)) => client.name,
        Ok(None) => a.key.client_id.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read an agent's name for an approval");
            a.key.client_id.clone()
        }
    };
    // Names and arguments come from agents and upstreams: what hides itself or turns
    // text around is spelled out (`⟨U+202E⟩`).
    let visible = warrant_consent::approvals::visible;
    ApprovalView {
        agent: visible(&agent),
        server: a.key.server,
        tool: visible(&a.key.tool),
        preview: visible(&a.preview),
        arguments: a
            .arguments
            .as_deref()
            .map(warrant_consent::approvals::visible_text)
            .unwrap_or_default(),
        status: a.status.as_str(),
        scope: match a.scope {
            Some(Scope::Once) => "this call",
            Some(Scope::Grant) => "the rest of the grant",
            None => "",
        },
        created: when(a.created_at),
        expires: when(a.expires_at),
        decided: a.decided_at.map(when).unwrap_or_default(),
        method: a.method.map(Method::as_str).unwrap_or_default(),
        id: a.id,
    }
}

fn ui_of(state: &UiState) -> Result<&ApprovalsUi, PageError> {
    state
        .approvals
        .as_ref()
        .ok_or(PageError(IdpError::NotFound("page")))
}

fn page_error(e: ApprovalError) -> PageError {
    PageError(match e {
        // A 500 with the generic words; the cause goes to the log (PageError logs it).
        e @ (ApprovalError::Storage(_) | ApprovalError::Corrupt(_)) => {
            IdpError::Session(format!("approvals: {e}"))
        }
        ApprovalError::NotFound => IdpError::NotFound("approval"),
        ApprovalError::Closed(status) => IdpError::Invalid(format!(
            "This approval is already {}: it cannot be decided again.",
            status.as_str()
        )),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "approvals.html")]
struct ListPage {
    pending: Vec<ApprovalView>,
    decided: Vec<ApprovalView>,
}

async fn list(State(state): State<UiState>, person: SignedIn) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let all = ui
        .approvals
        .for_user(&person.user.id, RECENT)
        .await
        .map_err(page_error)?;
    let (mut pending, mut decided) = (Vec::new(), Vec::new());
    for approval in all {
        let v = view(ui, approval).await;
        if v.pending() {
            pending.push(v);
        } else {
            decided.push(v);
        }
    }
    Ok(ListPage { pending, decided }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "approval.html")]
struct ShowPage {
    csrf: String,
    a: ApprovalView,
    /// The person has a passkey: offer to confirm with it.
    passkey: bool,
}

/// The person's approval `id`; anyone else's, or none: not found.
async fn owned(ui: &ApprovalsUi, id: &str, person: &SignedIn) -> Result<Approval, PageError> {
    if !plausible_id(id) {
        return Err(PageError(IdpError::NotFound("approval")));
    }
    match ui.approvals.get_for(id, &person.user.id).await {
        Ok(Some(approval)) => Ok(approval),
        Ok(None) => {
            tracing::warn!(user = %person.user.id, "an approval page asked for by someone it is not for, or unknown");
            Err(PageError(IdpError::NotFound("approval")))
        }
        Err(e) => Err(page_error(e)),
    }
}

async fn show(
    State(state): State<UiState>,
    person: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let approval = owned(ui, &id, &person).await?;
    let csrf = state.idp.sessions.csrf_token(&person.session).await?;
    let passkey =
        state.idp.passkeys.enabled() && !state.idp.passkeys.list(&person.user.id).await?.is_empty();
    Ok(ShowPage {
        csrf,
        a: view(ui, approval).await,
        passkey,
    }
    .into_response())
}

#[derive(Deserialize)]
struct DecideForm {
    csrf: Option<String>,
    decision: Option<String>,
}

async fn decide(
    State(state): State<UiState>,
    person: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    state
        .idp
        .sessions
        .check_csrf(&person.session, form.csrf.as_deref())
        .await?;
    let approval = owned(ui, &id, &person).await?;
    let decision = decision_of(form.decision.as_deref())?;
    match ui
        .approvals
        .decide(&approval.id, &person.user.id, decision, Method::Session)
        .await
    {
        Ok(_) => {
            state.note(decided(&person, &approval, decision, Method::Session));
            Ok(Redirect::to(&format!("/approvals/{}", approval.id)).into_response())
        }
        Err(ApprovalError::Closed(status)) => Ok((
            http::StatusCode::CONFLICT,
            MessagePage::new(
                "Already decided",
                format!(
                    "This call is already {}: nothing changed. The agent has to make the \
                     call again to ask anew.",
                    status.as_str()
                ),
            )
            .with_link("/approvals", "Pending approvals"),
        )
            .into_response()),
        Err(e) => Err(page_error(e)),
    }
}

/// The record of `person`'s decision on `approval`. The call it releases is recorded
/// again when it goes upstream (naming the approval), and is refused while the ledger
/// cannot be written: a decision cannot take effect unrecorded.
fn decided(person: &SignedIn, approval: &Approval, decision: Decision, method: Method) -> Entry {
    let (allowed, scope) = match decision {
        Decision::Approve(scope) => (true, Some(scope.as_str())),
        Decision::Deny => (false, None),
    };
    Entry::event("approval.decided")
        .by(&person.user.id, &person.user.email)
        .agent(&approval.key.client_id)
        .upstream(&approval.key.server)
        .tool(&approval.key.tool)
        .decided(allowed)
        .with("approval", &approval.id)
        .with("grant", &approval.key.grant_id)
        .with("scope", scope)
        .with("method", method.as_str())
        .with("args_sha256", &approval.key.args_hash)
}

fn decision_of(text: Option<&str>) -> Result<Decision, IdpError> {
    match text {
        Some("once") => Ok(Decision::Approve(Scope::Once)),
        Some("grant") => Ok(Decision::Approve(Scope::Grant)),
        Some("deny") => Ok(Decision::Deny),
        _ => Err(IdpError::Invalid(
            "Choose approve once, approve for the rest of this grant, or deny.".into(),
        )),
    }
}

/// Starts a passkey assertion that will confirm the decision on a pending approval.
async fn passkey_start(
    State(state): State<UiState>,
    person: SignedIn,
    Path(id): Path<String>,
    headers: http::HeaderMap,
) -> Result<Response, JsonError> {
    check_csrf_header(&state, &person.session, &headers).await?;
    let ui = ui_of(&state).map_err(|e| JsonError(e.0))?;
    let approval = owned(ui, &id, &person).await.map_err(|e| JsonError(e.0))?;
    if approval.status != Status::Pending {
        return Err(page_error(ApprovalError::Closed(approval.status)).0.into());
    }
    let options = state
        .idp
        .passkeys
        .start_sign_in(&person.session, false)
        .await?;
    Ok(axum::Json(options).into_response())
}

#[derive(Deserialize)]
struct PasskeyFinish {
    credential: warrant_idp::passkey::PublicKeyCredential,
    decision: Option<String>,
}

/// Verifies the assertion (one of the person's own passkeys) and records the decision
/// with `method = passkey`.
async fn passkey_finish(
    State(state): State<UiState>,
    person: SignedIn,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Result<Response, JsonError> {
    check_csrf_header(&state, &person.session, &headers).await?;
    let request: PasskeyFinish = parse(&body)?;
    let decision = decision_of(request.decision.as_deref())?;
    let ui = ui_of(&state).map_err(|e| JsonError(e.0))?;
    let approval = owned(ui, &id, &person).await.map_err(|e| JsonError(e.0))?;
    let idp = &state.idp;
    let signer = idp
        .passkeys
        .finish_sign_in(&person.session, &idp.users, &request.credential)
        .await?;
    if signer.id != person.user.id {
        tracing::warn!(user = %person.user.id, signer = %signer.id, "an approval confirmed with someone else's passkey: refused");
        return Err(JsonError(IdpError::Forbidden(
            "That passkey belongs to another account: confirm with one of your own.".into(),
        )));
    }
    ui.approvals
        .decide(&approval.id, &person.user.id, decision, Method::Passkey)
        .await
        .map_err(|e| JsonError(page_error(e).0))?;
    state.note(decided(&person, &approval, decision, Method::Passkey));
    let redirect = format!("/approvals/{}", approval.id);
    Ok(axum::Json(serde_json::json!({ "redirect": redirect })).into_response())
}
