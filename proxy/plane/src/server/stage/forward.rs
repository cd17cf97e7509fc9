//! Stage 7, forward: the call goes upstream. On the direct path when nothing is lost by
//! it (see `upstream::direct`): a client session the gateway knows (or a valid
//! 2026-07-28 request), a tool of a plain-`http` Streamable HTTP upstream on the lane
//! of the client's own era, a call the edge allowed for this very route. Anything else
//! goes through rmcp, where the MCP handler serves it.
//!
//! Besides calls, the direct path carries what belongs to its calls: a client's answer
//! to a request the upstream made during a direct call, and a client's cancellation of
//! a direct call.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::enforce::auth::{Authorized, Caller};
use crate::protocol::era::Era;
use crate::protocol::headers::{self, MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION};
use crate::protocol::message::{CallParams, Incoming};
use crate::protocol::redact::Redactions;
use crate::server::gateway::Gateway;
use crate::server::stage::credentials::Credentials;
use crate::upstream::bridge::can_be_asked;
use crate::upstream::direct::{Downstream, is_answer_to_forwarded};
use crate::upstream::direct_wire::joined;

/// The session id of a request (`""` without one).
fn session_of(parts: &http::request::Parts) -> &str {
    headers::session_id(&parts.headers).unwrap_or_default()
}

/// Takes a message that belongs to a direct call (an answer to a request forwarded to
/// the client, a cancellation); `None` leaves it to rmcp.
pub(crate) async fn other(
    gateway: &Gateway,
    parts: &http::request::Parts,
    caller: Option<&Caller>,
    message: &Incoming<'_>,
) -> Option<Response> {
    let session = session_of(parts);
    match message.method.as_deref() {
        None if is_answer_to_forwarded(message) => {
            Some(gateway.direct().answer(session, message).await)
        }
        Some("notifications/cancelled") => {
            let params: Value = serde_json::from_str(message.params?.get()).ok()?;
            gateway
                .direct()
                .cancel(&call_owner(parts, caller, session), &params)
                .await
                .then(|| http::StatusCode::ACCEPTED.into_response())
        }
        _ => None,
    }
}

/// Performs a `tools/call` on the direct path if it can: the answer, and the
/// credentials of the upstream that gave it (for the inspection); `None` before anything
/// was sent upstream leaves it to rmcp.
pub(crate) async fn call(
    gateway: &Gateway,
    parts: &http::request::Parts,
    manager: &LocalSessionManager,
    (token, authorized): (Option<&Caller>, Option<&Authorized>),
    credentials: &Credentials,
    id: &RawValue,
    call: CallParams<'_>,
) -> Option<(Response, Arc<Redactions>)> {
    let session = session_of(parts);
    let caller = if session.is_empty() {
        stateless_caller(parts, token, &call)?
    } else {
        let known = gateway.clients().wait_for(session, manager).await?;
        // rmcp owns the session's life: ended or expired sessions get its 404.
        if known.peer.is_transport_closed() || !manager.sessions.read().await.contains_key(session)
        {
            return None;
        }
        Downstream {
            session: Some(known.id.clone()),
            owner: known.id.clone(),
            log_level: Some(known.log_level.clone()),
            era: Era::of_str(&known.version),
            capabilities: known.capabilities.clone(),
            peer: Some(known.peer.clone()),
        }
    };
    let view = gateway.view(caller.era);
    let route = view.tool(&call.name)?;
    if !route.plain {
        return None;
    }
    // Only a call the edge authorized for this very route (the view may have changed
    // since): anything else goes the rmcp way, where the handler decides.
    if gateway.auth().is_some()
        && !authorized.is_some_and(|a| a.server == route.server && a.tool == route.original)
    {
        return None;
    }
    let upstream = credentials.upstream(&route.upstream);
    let lane = upstream.lane(caller.era).clone();
    // On the lane of the caller's own era; and a session client on the lane of an
    // upstream that speaks only 2026-07-28 when the upstream cannot ask it for input
    // (`upstream::bridge`). A 2026-07-28 caller of an upstream that speaks only the
    // legacy era stays on the rmcp path: a request that upstream sends back mid-call
    // needs the call parked and turned into an `InputRequiredResult` (`server::park`),
    // and what it sends on its session's standalone stream (rmcp servers log there)
    // reaches that caller only through rmcp's request context.
    let bridged =
        caller.era == Era::Legacy && lane.era == Era::Modern && !can_be_asked(&caller.capabilities);
    if lane.era != caller.era && !bridged {
        return None;
    }
    let redactions = upstream.redactions().clone();
    let answer = gateway
        .direct()
        .call(caller, lane, &route.original, id, call)
        .await?;
    Some((answer, redactions))
}

/// A 2026-07-28 request that the direct path may take: headers and `_meta` agree, and
/// no `Mcp-Param-*` header needs checking against the tool's schema.
fn stateless_caller(
    parts: &http::request::Parts,
    token: Option<&Caller>,
    call: &CallParams<'_>,
) -> Option<Downstream> {
    let header = |key: &http::HeaderName| parts.headers.get(key).and_then(|v| v.to_str().ok());
    let meta = call.meta.as_ref()?;
    let version = meta
        .get("io.modelcontextprotocol/protocolVersion")?
        .as_str()?;
    if header(&MCP_PROTOCOL_VERSION)? != version
        || Era::of_str(version) != Era::Modern
        || header(&MCP_METHOD)? != "tools/call"
        || header(&MCP_NAME)? != call.name
        || parts
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("mcp-param-"))
    {
        return None;
    }
    let capabilities = meta
        .get("io.modelcontextprotocol/clientCapabilities")?
        .clone();
    Some(Downstream {
        session: None,
        owner: call_owner(parts, token, ""),
        log_level: None,
        peer: None,
        era: Era::Modern,
        capabilities: Arc::new(serde_json::from_value(capabilities).ok()?),
    })
}

/// Whose a direct call is, so that only its caller's `notifications/cancelled` reaches
/// it: the client's session; without one (2026-07-28), the person and agent behind the
/// token, or without tokens the client's address. Request ids are chosen by each client,
/// so the same id from two callers names two calls.
pub(crate) fn call_owner(
    parts: &http::request::Parts,
    caller: Option<&Caller>,
    session: &str,
) -> Arc<str> {
    if !session.is_empty() {
        return session.into();
    }
    if let Some(caller) = caller {
        let identity = &caller.token.identity;
        return joined(&["\u{1}", &identity.user, "\n", &identity.agent]);
    }
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(
            || "\u{1}".into(),
            |info| format!("\u{1}{}", info.0.ip()).into(),
        )
}
