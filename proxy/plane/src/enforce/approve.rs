//! Critical calls wait for a human: a `tools/call` the token allows, of a tool whose
//! effective risk class is `critical`, goes upstream only once the person behind the
//! token approved it (`consent::approvals`). The edge never authorizes such a call (so
//! the direct path never carries it); the handler holds it here and asks in the
//! client's own protocol:
//!
//! | client | how it is asked |
//! |---|---|
//! | 2026-07-28 that declared URL-mode elicitation | an `InputRequiredResult`: `elicitation/create` (`mode: "url"`, the approval page) and a `requestState` naming the approval; the retry with that state goes upstream once approved, waits a few seconds and asks again while pending, is refused when denied or expired |
//! | older, with a session, that declared URL-mode elicitation | `elicitation/create` (`mode: "url"`) on the call's own stream, then the call waits (polling the store) until the person decides or the approval expires |
//! | any other | a JSON-RPC error [`APPROVAL_REQUIRED`] whose message and `data.approvalUrl` carry the page; once approved, the same call (same tool and arguments) made again within the approval's life goes through |
//!
//! The person also gets an email with the link (when `[auth.email]` is set up) and sees
//! the call under "Pending approvals". An approval "for the rest of the grant" lets
//! later calls of the tool under that grant through without asking.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ElicitRequest, ElicitRequestParams, InputRequest,
    InputRequests, InputRequiredResult, ServerRequest,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};
use warrant_consent::approvals::{
    Approval, ApprovalError, Approvals, CallKey, Shown, Status, args_hash,
};
use warrant_consent::oauth::Clients;

use super::auth::Caller;
use crate::locks::Locked;
use crate::protocol::codes::{APPROVAL_REFUSED, APPROVAL_REQUIRED};
use crate::protocol::era::{Era, era_of};
use crate::protocol::error::GatewayError;

/// The `requestState` of an approval round starts so (the rest is the approval id);
/// any other state belongs to a parked call (`server::park`).
const STATE_PREFIX: &str = "warrant-approval:";
/// The key of the approval request in `inputRequests`.
const INPUT_KEY: &str = "warrant-approval";
/// How often a waiting call looks at the store.
const POLL: Duration = Duration::from_millis(250);
/// How long a 2026-07-28 retry waits for a pending decision before asking again.
const RETRY_WAIT: Duration = Duration::from_secs(3);
/// How long the `requestState` of an approved call's later input round is honoured.
const CONTINUATION_TTL: Duration = Duration::from_secs(15 * 60);

/// Tells the person about a new approval (the composition sends an email). Called on
/// the request path: implementations send in the background.
pub trait Notify: Send + Sync + 'static {
    fn requested(&self, approval: &Approval, agent: &str, url: &str);
}

/// Everything the gateway needs to hold critical calls.
pub struct ApprovalDesk {
    approvals: Approvals,
    clients: Clients,
    /// The public URL, without a trailing slash: pages are under it.
    base: String,
    notify: Option<Box<dyn Notify>>,
    /// The `requestState`s of input rounds of approved critical calls (an upstream that
    /// asks for input mid-call, parked or on its own 2026-07-28 lane), with the call
    /// they continue (its arguments' hash included) and until when: a retry with one of them continues the approved
    /// call; any other state on a critical call is refused (a made-up state must not
    /// skip the approval).
    continuations: Mutex<HashMap<String, (CallKey, tokio::time::Instant)>>,
}

/// What to do with a critical call.
pub(crate) enum Held {
    /// Approved: forward it (the call it is, to [`ApprovalDesk::note`] its later rounds).
    Go(CallKey),
    /// Answer the client with this (an input round).
    Answer(CallToolResponse),
}

impl ApprovalDesk {
    pub fn new(approvals: Approvals, clients: Clients, base: &str) -> Self {
        Self {
            approvals,
            clients,
            base: base.trim_end_matches('/').to_owned(),
            notify: None,
            continuations: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_notify(mut self, notify: impl Notify) -> Self {
        self.notify = Some(Box::new(notify));
        self
    }

    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }

    fn url(&self, approval: &Approval) -> String {
        format!("{}/approvals/{}", self.base, approval.id)
    }

    async fn agent_name(&self, client_id: &str) -> String {
        match self.clients.get(client_id).await {
            Ok(Some(client)) => client.name,
            _ => client_id.to_owned(),
        }
    }

    /// Holds a critical call until it is approved ([`Held::Go`]), asks again
    /// ([`Held::Answer`]), or refuses it (an error). `server` and `tool` are the
    /// upstream's names. Takes an approval round's `requestState` and `inputResponses`
    /// out of `request` (they are the gateway's, not the upstream's).
    pub(crate) async fn hold(
        &self,
        caller: &Caller,
        server: &str,
        tool: &str,
        request: &mut CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<Held, ErrorData> {
        let identity = &caller.token.identity;
        let key = CallKey {
            user_id: identity.user.clone(),
            client_id: identity.agent.clone(),
            grant_id: identity.grant.clone(),
            server: server.to_owned(),
            tool: tool.to_owned(),
            args_hash: args_hash(request.arguments.as_ref()),
        };
        if let Some(id) = request
            .request_state
            .as_deref()
            .and_then(|s| s.strip_prefix(STATE_PREFIX))
            .map(str::to_owned)
        {
            request.request_state = None;
            let responses = request.input_responses.take().unwrap_or_default();
            if let Some(action) = responses
                .get(INPUT_KEY)
                .and_then(|r| r.get("action"))
                .and_then(Value::as_str)
                .filter(|a| *a != "accept")
            {
                return Err(refused(&format!(
                    "the approval request was answered {action:?} in the client: the call \
                     was not made"
                )));
            }
            return self.retry(&id, &key, context).await;
        }
        if let Some(state) = &request.request_state {
            // A later input round of a call that was approved (and went upstream).
            return match self.continues(state, &key) {
                Continues::Yes => Ok(Held::Go(key)),
                Continues::OtherArguments => Err(ErrorData::invalid_params(
                    format!(
                        "this requestState continues an approved call of the critical tool \
                         {server}.{tool} with other arguments: the person approved those \
                         arguments only. Send the approved arguments with it, or make the \
                         call again without requestState and inputResponses for a person \
                         to approve these"
                    ),
                    None,
                )),
                Continues::No => Err(ErrorData::invalid_params(
                    "this requestState continues no approved call of this critical tool: make \
                     the call again without requestState and inputResponses",
                    None,
                )),
            };
        }
        if self.approvals.admit(&key).await.map_err(storage)?.is_some() {
            return Ok(Held::Go(key));
        }
        let (approval, new) = self
            .approvals
            .request(&key, &Shown::of(request.arguments.as_ref()))
            .await
            .map_err(storage)?;
        let agent = self.agent_name(&key.client_id).await;
        let url = self.url(&approval);
        if new && let Some(notify) = &self.notify {
            notify.requested(&approval, &agent, &url);
        }
        let message = format!(
            "{agent} wants to call the critical tool {server}.{tool}: a person must approve \
             it first. Open {url} to approve or deny (it expires at {}).",
            rfc3339(approval.expires_at)
        );
        match era_of(context) {
            Era::Modern if declares_url_elicitation(context, Era::Modern) => {
                Ok(Held::Answer(input_round(&approval, &url, &message)?))
            }
            Era::Legacy if declares_url_elicitation(context, Era::Legacy) => {
                self.ask_and_wait(&approval, &key, &url, &message, context)
                    .await
            }
            _ => Err(ErrorData::new(
                APPROVAL_REQUIRED,
                format!("approval required: {message} Then make the same call again."),
                Some(json!({
                    "approvalUrl": url,
                    "approvalId": approval.id,
                    "expiresAt": rfc3339(approval.expires_at),
                })),
            )),
        }
    }

    /// Remembers the `requestState` of an input round that the approved critical call
    /// `key` answered with (see [`Self::continues`]).
    pub(crate) fn note(&self, key: &CallKey, response: &Result<CallToolResponse, ErrorData>) {
        let Ok(CallToolResponse::InputRequired(round)) = response else {
            return;
        };
        let Some(state) = &round.request_state else {
            return;
        };
        let now = tokio::time::Instant::now();
        {
            let mut map = self.continuations.locked();
            map.retain(|_, (_, until)| *until > now);
            map.insert(state.clone(), (key.clone(), now + CONTINUATION_TTL));
        }
    }

    /// Whether `state` is a later input round of the approved call `key`: the same
    /// person, agent, grant and tool, and the arguments the person approved (their
    /// hash), within [`CONTINUATION_TTL`].
    fn continues(&self, state: &str, key: &CallKey) -> Continues {
        let now = tokio::time::Instant::now();
        let map = self.continuations.locked();
        match map.get(state) {
            Some((approved, until)) if *until > now => {
                let same_call = approved.user_id == key.user_id
                    && approved.client_id == key.client_id
                    && approved.grant_id == key.grant_id
                    && approved.server == key.server
                    && approved.tool == key.tool;
                if !same_call {
                    Continues::No
                } else if approved.args_hash == key.args_hash {
                    Continues::Yes
                } else {
                    Continues::OtherArguments
                }
            }
            _ => Continues::No,
        }
    }

    /// A 2026-07-28 client's retry with the approval's `requestState`.
    async fn retry(
        &self,
        id: &str,
        key: &CallKey,
        context: &RequestContext<RoleServer>,
    ) -> Result<Held, ErrorData> {
        let deadline = tokio::time::Instant::now() + RETRY_WAIT;
        loop {
            let Some(approval) = self.approvals.resume(id, key).await.map_err(storage)? else {
                return Err(ErrorData::invalid_params(
                    "this requestState names no approval of this call (another call, \
                     caller or an approval already used): make the call again without \
                     requestState",
                    None,
                ));
            };
            match approval.status {
                Status::Approved => return Ok(Held::Go(key.clone())),
                Status::Denied | Status::Expired | Status::Withdrawn => {
                    return Err(closed(&approval));
                }
                Status::Pending if tokio::time::Instant::now() >= deadline => {
                    let url = self.url(&approval);
                    let agent = self.agent_name(&key.client_id).await;
                    let message = format!(
                        "{agent} still waits for a person to approve its call of the \
                         critical tool {}.{}: open {url} to approve or deny (it expires at \
                         {}).",
                        key.server,
                        key.tool,
                        rfc3339(approval.expires_at)
                    );
                    return Ok(Held::Answer(input_round(&approval, &url, &message)?));
                }
                Status::Pending => {}
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = context.ct.cancelled() => return Err(GatewayError::Cancelled.into()),
            }
        }
    }

    /// An older client with a session: asks it with a URL-mode elicitation on the call's
    /// stream, and waits for the person's decision (or the approval's end).
    async fn ask_and_wait(
        &self,
        approval: &Approval,
        key: &CallKey,
        url: &str,
        message: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<Held, ErrorData> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(url_params(
            url,
            message,
            &approval.id,
        )?));
        let peer = context.peer.clone();
        let mut asked = Box::pin(async move { peer.send_request(request).await });
        let mut answered = false;
        let now = self.approvals.now();
        let lasts = u64::try_from(approval.expires_at.saturating_sub(now)).unwrap_or(0) + 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(lasts);
        loop {
            tokio::select! {
                answer = &mut asked, if !answered => {
                    answered = true;
                    match answer {
                        Ok(rmcp::model::ClientResult::ElicitResult(r))
                            if !matches!(r.action, rmcp::model::ElicitationAction::Accept) =>
                        {
                            return Err(refused(
                                "the approval request was declined in the client: the call \
                                 was not made",
                            ));
                        }
                        Ok(_) => {}
                        // The client could not show it: the person may still approve
                        // through the email or the list.
                        Err(e) => tracing::debug!(error = %e, "the client did not take the approval elicitation"),
                    }
                }
                () = tokio::time::sleep(POLL) => {}
                () = context.ct.cancelled() => return Err(GatewayError::Cancelled.into()),
            }
            let current = self
                .approvals
                .resume(&approval.id, key)
                .await
                .map_err(storage)?;
            match current {
                Some(a) if a.status == Status::Approved => return Ok(Held::Go(key.clone())),
                Some(a) if a.status == Status::Pending => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(closed(&Approval {
                            status: Status::Expired,
                            ..a
                        }));
                    }
                }
                Some(a) => return Err(closed(&a)),
                None => {
                    return Err(refused(
                        "the approval of this call was used by another call: make the call \
                         again",
                    ));
                }
            }
        }
    }
}

/// Whether a `requestState` continues an approved call ([`ApprovalDesk::continues`]).
enum Continues {
    Yes,
    /// The approved call's state, sent with arguments the person did not approve.
    OtherArguments,
    No,
}

/// The input round that asks a 2026-07-28 client to send the person to the page.
fn input_round(
    approval: &Approval,
    url: &str,
    message: &str,
) -> Result<CallToolResponse, ErrorData> {
    let mut requests = InputRequests::new();
    requests.insert(
        INPUT_KEY.to_owned(),
        InputRequest::Elicitation(ElicitRequest::new(url_params(url, message, &approval.id)?)),
    );
    Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
        Some(requests),
        Some(format!("{STATE_PREFIX}{}", approval.id)),
    )))
}

fn url_params(url: &str, message: &str, id: &str) -> Result<ElicitRequestParams, ErrorData> {
    serde_json::from_value(json!({
        "mode": "url",
        "message": message,
        "url": url,
        "elicitationId": id,
    }))
    .map_err(|e| ErrorData::internal_error(format!("cannot build the approval request: {e}"), None))
}

/// Whether the client declared URL-mode elicitation: in the request's `_meta`
/// (2026-07-28) or at `initialize` (a session).
pub(crate) fn declares_url_elicitation(context: &RequestContext<RoleServer>, era: Era) -> bool {
    let capabilities = match era {
        Era::Modern => context.meta.client_capabilities(),
        Era::Legacy => context.peer.peer_info().map(|i| i.capabilities.clone()),
    };
    capabilities
        .and_then(|c| c.elicitation)
        .is_some_and(|e| e.url.is_some())
}

fn closed(approval: &Approval) -> ErrorData {
    let (what, status) = match approval.status {
        Status::Denied => ("was denied by the person", "denied"),
        Status::Withdrawn => (
            "was withdrawn: an admin stopped the agents of this person",
            "withdrawn",
        ),
        _ => ("expired before anyone decided", "expired"),
    };
    ErrorData::new(
        APPROVAL_REFUSED,
        format!(
            "the call of {}.{} was not made: its approval {what}. Ask the person, then make \
             the call again to ask anew.",
            approval.key.server, approval.key.tool
        ),
        Some(json!({ "approvalId": approval.id, "status": status })),
    )
}

fn refused(message: &str) -> ErrorData {
    ErrorData::new(APPROVAL_REFUSED, message.to_owned(), None)
}

fn storage(e: ApprovalError) -> ErrorData {
    tracing::error!(error = %e, "approvals storage failed; refusing the critical call");
    ErrorData::internal_error(
        "the approval of this critical call cannot be checked right now: try again later",
        None,
    )
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
