//! Who is calling `/mcp`: the access token on every request, and what it allows.
//!
//! With `mcp.authorization = "oauth"` (the default) every request — POST, GET, DELETE —
//! carries `Authorization: Bearer <Warrant access token>`. The edge (`server::edge`)
//! verifies it before anything else ([`McpAuth::authenticate`]): signature chain, key id,
//! expiry, audience (this gateway's `/mcp`), revocation of the token, of any of its
//! blocks and of its grant, and whether its person is disabled (a [`RevokedSet`]
//! refreshed every second, updated at once by revocations made here). The verified token rides in the request's extensions as a
//! [`Caller`], so the handlers, the direct path, enforcement and the ledger all know the
//! human, the agent and the chain of subagents behind every request.
//!
//! A refusal is a 401 with `WWW-Authenticate: Bearer resource_metadata=…` (RFC 9728) so
//! that a client can find the authorization server; a call the token does not cover is a
//! 403 `insufficient_scope` naming the tool (step-up: the client asks the human again
//! with that scope), or, where the HTTP status is already sent, a JSON-RPC error with
//! [`NOT_PERMITTED`] and the same words.
//!
//! Sessions of the older revisions are bound to the token's subject (user and agent)
//! when they start: another agent's token cannot use them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::locks::Sharded;
use crate::protocol::codes::{NOT_AUTHENTICATED, NOT_PERMITTED, rpc_error};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};
use warrant_consent::budgets::{Budgets, Exhausted};
use warrant_consent::ceilings::CeilingView;
use warrant_consent::oauth::{Resource, RevokedSet};
use warrant_consent::token::{
    CallArgs, CallFacts, CallRef, Decision, Risk, TokenError, VerifiedToken, Verifier, authorize,
    remembered,
};
use warrant_idp::clock::Clock;

/// The scope every Warrant access token carries; tool scopes are `tool:<server>.<tool>`.
pub const BASE_SCOPE: &str = "mcp";

/// The verified token behind a request, in the request's extensions.
#[derive(Clone)]
pub struct Caller {
    pub token: Arc<VerifiedToken>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("user", &self.token.identity.user)
            .field("agent", &self.token.identity.agent)
            .field("grant", &self.token.identity.grant)
            .field("chain", &self.token.identity.chain.len())
            .finish()
    }
}

/// A `tools/call` the edge already authorized (so the handler need not run the same
/// decision again): the upstream and the tool's name there.
#[derive(Clone, Debug)]
pub(crate) struct Authorized {
    pub(crate) server: Arc<str>,
    pub(crate) tool: Arc<str>,
    /// The tool's effective risk class when it was decided.
    pub(crate) risk: Risk,
}

/// Token checks for `/mcp`.
pub struct McpAuth {
    verifier: Verifier,
    revoked: RevokedSet,
    clock: Arc<dyn Clock>,
    /// The canonical URL of `/mcp`: every token's audience.
    resource: String,
    /// The resource with the loopback names it answers to: the protected resource
    /// metadata URL of a challenge is on the origin the client used.
    names: Resource,
    /// Legacy sessions by id, with the token each used last: its user and agent are the
    /// session's subject (the first token's), and the token says which list changes
    /// concern the session (a session outlives its access tokens).
    /// (Checked on every call of a session: in shards, see [`Sharded`].)
    sessions: Sharded<HashMap<String, Arc<VerifiedToken>>>,
    /// Every user's live trust ceiling; `None`: no ceiling applies.
    ceilings: Option<CeilingView>,
    /// The call counts of budgeted grants; `None`: budgets are not counted.
    budgets: Option<Budgets>,
}

/// Why a request to `/mcp` is refused before it reaches the protocol layer.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token that is not accepted, with why.
    Invalid(TokenError),
    /// A session started with another subject's token.
    OtherSubject,
    /// The token does not cover the call.
    Insufficient { decision: Decision, scope: String },
    /// The token covers the call, but its grant's call budget for the hour is used up.
    Budget(Exhausted),
}

impl McpAuth {
    pub fn new(
        verifier: Verifier,
        revoked: RevokedSet,
        clock: Arc<dyn Clock>,
        issuer: &str,
    ) -> Self {
        Self {
            verifier,
            revoked,
            clock,
            resource: format!("{issuer}/mcp"),
            names: url::Url::parse(issuer)
                .map(|public| Resource::new(&public))
                .unwrap_or_else(|_| Resource::canonical_only(format!("{issuer}/mcp"))),
            sessions: Sharded::default(),
            ceilings: None,
            budgets: None,
        }
    }

    /// Counts the calls of grants that have a call budget (see [`super::budget`]).
    pub fn with_budgets(mut self, budgets: Budgets) -> Self {
        self.budgets = Some(budgets);
        self
    }

    /// Counts one call of `caller` against its grant's budget, when it has one (an
    /// in-memory count; a grant without a budget costs one branch).
    pub(crate) fn charge(&self, caller: &Caller) -> Result<(), Exhausted> {
        let identity = &caller.token.identity;
        let (Some(budget), Some(budgets)) = (identity.calls_per_hour, &self.budgets) else {
            return Ok(());
        };
        match budgets.charge(&identity.grant, budget, self.now()) {
            Ok(_) => Ok(()),
            Err(exhausted) => {
                tracing::info!(user = %identity.user, agent = %identity.agent, grant = %identity.grant, budget, used = exhausted.used, "call refused: budget exhausted");
                Err(exhausted)
            }
        }
    }

    /// Decides every call (and filters every listing) within the user's live ceiling.
    pub fn with_ceilings(mut self, ceilings: CeilingView) -> Self {
        self.ceilings = Some(ceilings);
        self
    }

    /// The live ceiling of the caller's user, when ceilings apply (an in-memory lookup).
    fn ceiling(&self, caller: &Caller) -> Option<Risk> {
        self.ceilings
            .as_ref()
            .map(|c| c.ceiling(&caller.token.identity.user))
    }

    /// The email of the caller's user, to name them in a refusal (an in-memory lookup).
    fn person(&self, caller: &Caller) -> Option<std::sync::Arc<str>> {
        self.ceilings
            .as_ref()
            .and_then(|c| c.person(&caller.token.identity.user))
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.unix()
    }

    /// The caller behind a bearer token: verified (signature chain, key, expiry), not
    /// revoked (the token, its blocks, its grant), its person not disabled, and meant for
    /// this gateway's `/mcp`.
    pub(crate) fn verify(&self, token: &str) -> Result<Caller, Refusal> {
        let now = self.now();
        let revoked = self.revoked.view();
        let token = self
            .verifier
            .verify_unrevoked(token, now, &revoked)
            .map_err(Refusal::Invalid)?;
        token
            .identity
            .require_audience(&self.resource)
            .map_err(Refusal::Invalid)?;
        Ok(Caller { token })
    }

    /// Checks that a legacy session is used by the subject that started it. An unknown
    /// session id is left to the protocol layer (its 404).
    pub(crate) fn check_session(&self, session: &str, caller: &Caller) -> Result<(), Refusal> {
        let mut sessions = self.sessions.shard(session);
        match sessions.get_mut(session) {
            Some(last) if !Arc::ptr_eq(last, &caller.token) => {
                let (was, is) = (&last.identity, &caller.token.identity);
                if was.user != is.user || was.agent != is.agent {
                    return Err(Refusal::OtherSubject);
                }
                *last = caller.token.clone();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Binds a session that just started to its caller.
    pub(crate) fn bind_session(&self, session: String, caller: &Caller) {
        let mut sessions = self.sessions.shard(session.as_str());
        sessions.insert(session, caller.token.clone());
    }

    /// The sessions whose latest token is in `audience` at `now`.
    pub(crate) fn sessions_in(
        &self,
        audience: &super::audience::Audience,
        now: i64,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        for sessions in self.sessions.each() {
            ids.extend(
                sessions
                    .iter()
                    .filter(|(_, token)| audience.includes(token, now))
                    .map(|(id, _)| id.clone()),
            );
        }
        ids
    }

    pub(crate) fn forget_session(&self, session: &str) {
        self.sessions.shard(session).remove(session);
    }

    /// Keeps the bindings of sessions that still exist.
    pub(crate) fn retain_sessions(&self, alive: impl Fn(&str) -> bool) {
        for mut sessions in self.sessions.each() {
            sessions.retain(|id, _| alive(id));
        }
    }

    /// Decides a call of `server`'s `tool` (its name upstream) by the caller's token.
    pub(crate) fn decide(
        &self,
        caller: &Caller,
        server: &str,
        tool: &str,
        risk: Risk,
        args: CallArgs,
    ) -> Decision {
        let (now, ceiling) = (self.now(), self.ceiling(caller));
        let call = CallRef {
            now,
            resource: &self.resource,
            server,
            tool,
            risk,
            ceiling,
            args: &args,
        };
        // The same call allowed before: nothing to copy, nothing to run.
        let decision = if remembered(&caller.token, &call) {
            Decision {
                allow: true,
                reason: String::new(),
                failed_checks: Vec::new(),
            }
        } else {
            let facts = CallFacts {
                now,
                resource: self.resource.clone(),
                server: server.to_owned(),
                tool: tool.to_owned(),
                risk,
                ceiling,
                args,
                person: self.person(caller),
            };
            authorize(&caller.token, &facts)
        };
        let identity = &caller.token.identity;
        if decision.allow {
            tracing::debug!(user = %identity.user, agent = %identity.agent, grant = %identity.grant, server, tool, "call allowed");
        } else {
            tracing::info!(user = %identity.user, agent = %identity.agent, grant = %identity.grant, server, tool, reason = %decision.reason, "call refused");
        }
        decision
    }

    /// Whether a listing shows `server`'s `tool` to the caller: within the user's live
    /// ceiling, and allowed by the token (see [`VerifiedToken::lists`]).
    pub(crate) fn lists(&self, caller: &Caller, server: &str, tool: &str, risk: Risk) -> bool {
        self.ceiling(caller).is_none_or(|ceiling| risk <= ceiling)
            && caller.token.lists(self.now(), server, tool, risk)
    }

    /// The HTTP answer to a refusal; `id` is the JSON-RPC id of the request, if any,
    /// `headers` the request's (its `Host` names the origin of the metadata URL).
    pub(crate) fn refuse(&self, refusal: &Refusal, id: Value, headers: &HeaderMap) -> Response {
        let (status, error, description, scope, code) = match refusal {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                None,
                "authorization required: send a Warrant access token as \
                 `Authorization: Bearer …` (the resource metadata names the \
                 authorization server)"
                    .to_owned(),
                BASE_SCOPE.to_owned(),
                NOT_AUTHENTICATED,
            ),
            Refusal::Invalid(e) => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                invalid_text(e),
                BASE_SCOPE.to_owned(),
                NOT_AUTHENTICATED,
            ),
            Refusal::OtherSubject => (
                StatusCode::FORBIDDEN,
                Some("invalid_token"),
                "this session was started by another agent or user: start a new session \
                 (initialize) with this token"
                    .to_owned(),
                BASE_SCOPE.to_owned(),
                NOT_PERMITTED,
            ),
            Refusal::Insufficient { decision, scope } => (
                StatusCode::FORBIDDEN,
                Some("insufficient_scope"),
                decision.reason.clone(),
                scope.clone(),
                NOT_PERMITTED,
            ),
            // No scope helps: a JSON-RPC error, no challenge.
            Refusal::Budget(exhausted) => {
                return super::budget::edge_refusal(exhausted, id, self.now());
            }
        };
        let mut challenge = format!(
            "Bearer resource_metadata=\"{}\", scope=\"{}\"",
            self.names.metadata_url(
                headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            ),
            quoted(&scope)
        );
        if let Some(error) = error {
            challenge.push_str(&format!(
                ", error=\"{error}\", error_description=\"{}\"",
                quoted(&description)
            ));
        }
        let mut data = json!({ "scope": scope });
        if let Refusal::Insufficient { decision, .. } = refusal {
            data["failedChecks"] = json!(decision.failed_checks);
        }
        let mut response = rpc_error(status, id, code, description, Some(data));
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// Whether the gateway's own check (the user's ceiling) is among what refused the call:
/// then asking the person for more scope cannot help, whatever else refused it too (the
/// consent screen offers nothing above the ceiling); an admin must raise the ceiling.
pub(crate) fn refused_by_ceiling(decision: &Decision) -> bool {
    !decision.allow
        && decision
            .failed_checks
            .iter()
            .any(|c| c.starts_with("gateway:"))
}

/// The scope a refused call would need: the base scope and the tool.
pub(crate) fn step_up_scope(server: &str, tool: &str) -> String {
    format!("{BASE_SCOPE} tool:{server}.{tool}")
}

/// What a client should do about a token that was not accepted.
fn invalid_text(error: &TokenError) -> String {
    let what = error.to_string();
    match error {
        TokenError::Expired(_) => format!("{what}: refresh it or authorize again"),
        TokenError::Revoked => format!("{what}: the person must approve this agent again"),
        TokenError::UserDisabled(_) => format!(
            "{what}: the agents of a disabled person cannot act; an admin can enable the \
             account, then the person approves this agent again"
        ),
        TokenError::KeyRevoked(_) => format!(
            "{what} because it may be compromised: authorize again (or refresh) for a \
             token signed with the current key"
        ),
        TokenError::WrongAudience { .. } => {
            format!("{what}: ask for a token with this server's resource")
        }
        _ => format!("{what}: authorize again"),
    }
}

/// Text fit for a quoted-string in a `WWW-Authenticate` parameter: printable ASCII
/// without `"` and `\` (RFC 6750 §3 allows no more in `error_description`).
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_text_is_plain_ascii_without_quotes() {
        assert_eq!(
            quoted("tool \"x\" — a\\b"),
            "tool 'x' ? a'b",
            "quotes, backslashes and non-ASCII are replaced"
        );
    }

    #[test]
    fn the_ceiling_among_the_reasons_means_no_step_up() {
        let refused = |checks: &[&str]| Decision {
            allow: false,
            reason: String::new(),
            failed_checks: checks.iter().map(|c| (*c).to_owned()).collect(),
        };
        let ceiling = "gateway: check if risk($risk), $risk <= 1";
        let grant = "block 1: check if risk($risk), $risk <= 0";
        assert!(refused_by_ceiling(&refused(&[ceiling])));
        assert!(refused_by_ceiling(&refused(&[ceiling, grant])));
        assert!(refused_by_ceiling(&refused(&[grant, ceiling])));
        assert!(
            !refused_by_ceiling(&refused(&[grant])),
            "the person can help"
        );
        assert!(!refused_by_ceiling(&refused(&[])));
    }

    #[test]
    fn step_up_scope_names_the_tool() {
        assert_eq!(
            step_up_scope("demo", "delete_all_notes"),
            "mcp tool:demo.delete_all_notes"
        );
    }
}
