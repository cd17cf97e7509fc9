//! "Pending approvals": the calls of critical tools that wait for the signed-in person
//! (`/approvals`), and one approval's page (`/approvals/{id}`) with its three buttons —
//! approve once, approve for the rest of the grant, deny. Only the person the call
//! acts for sees or decides it: anyone else gets "not found", whether or not the id
//! exists. Every decision carries the session's CSRF token and is recorded with who
//! decided and how (`session`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;
use warrant_consent::approvals::{
    Approval, ApprovalError, Approvals, Decision, Method, Scope, Status, plausible_id,
};
use warrant_consent::oauth::Clients;
use warrant_idp::IdpError;

use crate::UiState;
use crate::extract::SignedIn;
use crate::page::{MessagePage, PageError, when};

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
    ApprovalView {
        agent,
        server: a.key.server,
        tool: a.key.tool,
        preview: a.preview,
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
    Ok(ShowPage {
        csrf,
        a: view(ui, approval).await,
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
    let decision = match form.decision.as_deref() {
        Some("once") => Decision::Approve(Scope::Once),
        Some("grant") => Decision::Approve(Scope::Grant),
        Some("deny") => Decision::Deny,
        _ => {
            return Err(PageError(IdpError::Invalid(
                "Choose approve once, approve for the rest of this grant, or deny.".into(),
            )));
        }
    };
    match ui
        .approvals
        .decide(&approval.id, &person.user.id, decision, Method::Session)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/approvals/{}", approval.id)).into_response()),
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
