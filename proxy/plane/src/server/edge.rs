//! The `/mcp` endpoint: rmcp's Streamable HTTP service in front of the [`Gateway`],
//! with the gateway's own checks first: DNS-rebinding protection (`Host` and `Origin`
//! allow-lists), the body-size limit, and a `MCP-Protocol-Version` check that names the
//! revisions Warrant serves.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::bodies::{BodyBudget, Unread};
use super::gateway::Gateway;
use super::pipeline::{self, Step};
use super::sessions::{InUse, SessionTable};
use super::stage::{authenticate, forward, parse};
use crate::config::Config;
use crate::enforce::auth::{Caller, McpAuth, Refusal};
use crate::periodic::Periodic;
use crate::protocol::codes::{
    INVALID_REQUEST, SERVER_ERROR, UNSUPPORTED_PROTOCOL_VERSION, rpc_error,
};
use crate::protocol::headers::{self, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::protocol::message::Incoming;

/// The first revision without `initialize`: a probe for it from a client is answered
/// like a server that predates it, so the client falls back to `initialize`.
const FIRST_STATELESS_REVISION: &str = "2026-07-28";

/// The `/mcp` router (to be nested by the application).
pub fn router(gateway: Gateway, config: &Config, shutdown: CancellationToken) -> axum::Router {
    let server = &config.server;
    let mut origins: Vec<String> = server.allowed_origins.clone();
    for host in &server.allowed_hosts {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        origins.push(format!("http://{host}:*"));
        origins.push(format!("https://{host}:*"));
    }
    let rmcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(server.allowed_hosts.clone())
        .with_allowed_origins(origins)
        .with_max_request_body_bytes(server.max_body_bytes)
        .with_cancellation_token(shutdown.clone())
        .with_legacy_session_mode(true);
    // The edge ends idle sessions (mcp.session_idle_timeout); rmcp's own idle end would
    // leave the ended session's handle in its map, answering errors instead of 404.
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = None;
    let sessions = Arc::new(manager);
    let limits = &config.mcp.limits;
    let table = SessionTable::new(
        limits.max_sessions_per_client,
        limits.session_idle_timeout,
        gateway.metrics().sessions(),
    );
    end_idle_sessions(
        table.clone(),
        sessions.clone(),
        gateway.auth().cloned(),
        shutdown.clone(),
    );
    let shutdown_bindings = shutdown;
    let handler = gateway.clone();
    let rmcp =
        StreamableHttpService::new(move || Ok(handler.clone()), sessions.clone(), rmcp_config);
    if let Some(auth) = gateway.auth() {
        forget_ended_sessions(auth.clone(), sessions.clone(), shutdown_bindings);
    }
    let edge = Arc::new(Edge {
        versions: config.mcp.protocol_versions.clone(),
        max_body_bytes: server.max_body_bytes,
        bodies: BodyBudget::new(
            config.mcp.limits.max_body_bytes_in_flight,
            config.mcp.limits.max_body_bytes_in_flight_per_client,
        ),
        allowed_hosts: server.allowed_hosts.clone(),
        gateway,
        sessions,
        table,
        rmcp,
    });
    // The edge is the service of `/mcp` (rather than a middleware around rmcp's): it
    // costs no per-request clone of rmcp's service, configuration and host and origin
    // lists included. No fallback: the application merges other routers next to this.
    axum::Router::new().route_service("/mcp", EdgeService { edge })
}

/// What the edge checks before the protocol layer sees a request.
struct Edge {
    versions: Vec<String>,
    max_body_bytes: usize,
    bodies: Arc<BodyBudget>,
    allowed_hosts: Vec<String>,
    gateway: Gateway,
    sessions: Arc<LocalSessionManager>,
    table: Arc<SessionTable>,
    rmcp: StreamableHttpService<Gateway, LocalSessionManager>,
}

/// The edge in front of rmcp's service.
#[derive(Clone)]
struct EdgeService {
    edge: Arc<Edge>,
}

impl tower::Service<Request> for EdgeService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let edge = self.edge.clone();
        Box::pin(async move { Ok(check_request(edge, request).await) })
    }
}

/// Reads a POST body within the size limit and checks it is one JSON-RPC message, so
/// that an oversized body gets 413 and a malformed one a JSON-RPC parse error (400)
/// with the reason; refuses a `MCP-Protocol-Version` Warrant does not serve, with the
/// list it does; then gives the direct data path its chance before rmcp. Errors echo
/// the request id when there is one.
async fn check_request(edge: Arc<Edge>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    // The token first: a request without a valid one is refused before its body is read.
    let auth = edge.gateway.auth().map(Arc::as_ref);
    let caller = match authenticate::token(auth, &parts.headers) {
        Ok(caller) => caller,
        Err(refusal) => {
            let id = small_body_id(body, &parts.headers).await;
            return refuse(auth, &refusal, id, &parts.headers);
        }
    };
    let mut other_body = None;
    let bytes = if parts.method == http::Method::POST {
        let client = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        match edge.bodies.read(body, edge.max_body_bytes, client).await {
            Ok(bytes) => Some(bytes),
            Err(unread) => return refuse_unread(&edge, &unread),
        }
    } else {
        other_body = Some(body);
        None
    };
    // Parsed once; the call's parameters are read here and nowhere else on the fast path.
    let (message, call) = match bytes.as_deref().map(parse::parse) {
        None => (None, None),
        Some(Ok(parsed)) => (Some(parsed.message), parsed.call),
        Some(Err(refused)) => return refused.response(),
    };
    let session_id = headers::session_id(&parts.headers);
    if let Err(refusal) = authenticate::session(auth, session_id, caller.as_ref()) {
        let id = message.as_ref().map_or(Value::Null, Incoming::id_value);
        return refuse(auth, &refusal, id, &parts.headers);
    }
    let in_use = session_id.and_then(|id| edge.table.enter(id));
    let starting = match &message {
        Some(m) if session_id.is_none() && m.method.as_deref() == Some("initialize") => {
            let owner = owner_of(caller.as_ref(), &parts);
            match edge.table.start(owner) {
                Some(starting) => Some(starting),
                None => return refuse_session_cap(&edge, caller.is_some(), m.id_value()),
            }
        }
        _ => None,
    };
    // Every value must be served (a request may carry the header twice).
    let unsupported = parts
        .headers
        .get_all(&MCP_PROTOCOL_VERSION)
        .iter()
        .map(|v| v.to_str().unwrap_or("(not text)"))
        .find(|v| !edge.versions.iter().any(|s| s == v))
        .map(str::to_owned);
    if let Some(requested) = unsupported {
        let modern_probe = requested.as_str() >= FIRST_STATELESS_REVISION
            && !edge
                .versions
                .iter()
                .any(|v| v.as_str() >= FIRST_STATELESS_REVISION);
        // A modern client probing a gateway configured for older revisions only must see
        // an ordinary error (not the modern -32022) to fall back to `initialize`.
        let code = if modern_probe {
            SERVER_ERROR
        } else {
            UNSUPPORTED_PROTOCOL_VERSION
        };
        let text = format!(
            "Bad Request: unsupported MCP-Protocol-Version {requested:?}; this gateway serves {}",
            edge.versions.join(", ")
        );
        let data = json!({ "requested": requested, "supported": edge.versions });
        let id = message.as_ref().map_or(Value::Null, Incoming::id_value);
        return rpc_error(StatusCode::BAD_REQUEST, id, code, text, Some(data));
    }
    // rmcp refuses a foreign `Host` or `Origin` itself; only others take the fast path.
    if let Some(message) = &message
        && host_allowed(&parts, &edge.allowed_hosts)
        && origin_allowed(&parts, &edge.allowed_hosts)
    {
        let step = match call {
            Some(call) => {
                let (gateway, manager) = (&edge.gateway, &edge.sessions);
                pipeline::tools_call(gateway, manager, &mut parts, caller.as_ref(), message, call)
                    .await
            }
            None => match forward::other(&edge.gateway, &parts, caller.as_ref(), message).await {
                Some(response) => Step::Answer(response),
                None => Step::Rmcp,
            },
        };
        if let Step::Answer(response) = step {
            return hold(response, in_use);
        }
    }
    drop(message);
    // The handler reads the caller from the request (the fast path was given it).
    if let Some(caller) = &caller {
        parts.extensions.insert(caller.clone());
    }
    let body = match (bytes, other_body) {
        (Some(bytes), _) => Body::from(bytes),
        (None, Some(body)) => body,
        (None, None) => Body::empty(),
    };
    let method = parts.method.clone();
    let session = parts.headers.get(&MCP_SESSION_ID).cloned();
    let mut response = edge
        .rmcp
        .handle(Request::from_parts(parts, body))
        .await
        .into_response();
    // An ended session is acknowledged with 200: some clients (the Python SDK) take
    // rmcp's 202 for a failure.
    if method == http::Method::DELETE && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    match (&session, response.headers().get(&MCP_SESSION_ID), starting) {
        (None, Some(started), Some(starting)) => {
            if let Ok(id) = started.to_str() {
                starting.started(id.to_owned());
            }
        }
        (Some(ended), _, _) if method == http::Method::DELETE && response.status().is_success() => {
            if let Ok(id) = ended.to_str() {
                edge.table.ended(id);
            }
        }
        _ => {}
    }
    if let (Some(auth), Some(caller)) = (edge.gateway.auth(), &caller) {
        match (&session, response.headers().get(&MCP_SESSION_ID)) {
            // A session just started: it belongs to this token's subject.
            (None, Some(started)) => {
                if let Ok(id) = started.to_str() {
                    auth.bind_session(id.to_owned(), caller);
                }
            }
            (Some(ended), _)
                if method == http::Method::DELETE && response.status().is_success() =>
            {
                if let Ok(id) = ended.to_str() {
                    auth.forget_session(id);
                }
            }
            _ => {}
        }
    }
    hold(response, in_use)
}

/// Whose a new session is: the agent of a person behind the token, or without tokens
/// the client's address.
fn owner_of(caller: Option<&Caller>, parts: &http::request::Parts) -> String {
    match caller {
        Some(caller) => {
            let identity = &caller.token.identity;
            format!("{}\n{}", identity.user, identity.agent)
        }
        None => parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(String::new, |info| info.0.ip().to_string()),
    }
}

/// The refusal of a session beyond `mcp.max_sessions_per_client`.
fn refuse_session_cap(edge: &Edge, with_token: bool, id: Value) -> Response {
    let whose = if with_token {
        "This agent already has"
    } else {
        "Your address already has"
    };
    let text = format!(
        "{whose} {} MCP sessions open, the most allowed (mcp.max_sessions_per_client); \
         end one (HTTP DELETE with its MCP-Session-Id) or reuse it; a session unused for {} \
         ends by itself",
        edge.table.cap(),
        humantime::format_duration(edge.table.idle()),
    );
    rpc_error(StatusCode::TOO_MANY_REQUESTS, id, SERVER_ERROR, text, None)
}

/// The response, keeping its session in use until its body (a stream, perhaps) ends. A
/// body already whole in memory is sent as it is (with its length): nothing of the
/// request is still in progress.
fn hold(response: Response, in_use: Option<InUse>) -> Response {
    use axum::body::HttpBody as _;
    let Some(in_use) = in_use else {
        return response;
    };
    if response.body().size_hint().exact().is_some() {
        return response;
    }
    use futures::StreamExt as _;
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _session = &in_use;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Ends the sessions idle for `mcp.session_idle_timeout`, checking a few times within it.
fn end_idle_sessions(
    table: Arc<SessionTable>,
    sessions: Arc<LocalSessionManager>,
    auth: Option<Arc<McpAuth>>,
    stop: CancellationToken,
) {
    use rmcp::transport::streamable_http_server::session::SessionManager as _;
    let every = (table.idle() / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(30),
    );
    Periodic::every(
        every,
        "cannot end idle MCP sessions",
        "idle MCP sessions end again",
    )
    .spawn(stop, move || {
        let (table, sessions, auth) = (table.clone(), sessions.clone(), auth.clone());
        async move {
            let mut failed = None;
            for id in table.take_idle(std::time::Instant::now()) {
                tracing::debug!(session = %id, "an idle MCP session ends");
                if let Err(e) = sessions.close_session(&id.as_str().into()).await {
                    failed = Some(e.to_string());
                }
                if let Some(auth) = &auth {
                    auth.forget_session(&id);
                }
            }
            failed.map_or(Ok(()), Err)
        }
    });
}

/// The request id of a refused request, read from its body only when the body is small
/// and arrives at once (so that an error echoes it as JSON-RPC wants): a large or slow
/// body of a request without a valid token is never read.
async fn small_body_id(body: Body, headers: &http::HeaderMap) -> Value {
    const SMALL: usize = 4096;
    let announced = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_none_or(|n| n > SMALL) {
        return Value::Null;
    }
    let limited = http_body_util::Limited::new(body, SMALL);
    let read = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        use http_body_util::BodyExt as _;
        limited
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
    });
    match read.await {
        Ok(Ok(bytes)) => Incoming::parse(&bytes).map_or(Value::Null, |m| m.id_value()),
        _ => Value::Null,
    }
}

/// The answer to a body that was not read to its end.
fn refuse_unread(edge: &Edge, unread: &Unread) -> Response {
    let (status, message) = match unread {
        Unread::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than the limit of {} bytes (server.max_body_bytes)",
                edge.max_body_bytes
            ),
        ),
        Unread::ClientBusy(bytes) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too much is being sent from your address at once: {bytes} bytes of other \
                 requests are still arriving, and the limit is {} \
                 (mcp.max_body_bytes_in_flight_per_client); retry when they are done",
                edge.bodies.per_client()
            ),
        ),
        Unread::GatewayBusy(bytes) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the gateway is receiving too much at once: {bytes} bytes of other requests \
                 are still arriving, and the limit is {} (mcp.max_body_bytes_in_flight); \
                 retry in a moment",
                edge.bodies.total()
            ),
        ),
        Unread::Broken => (
            StatusCode::BAD_REQUEST,
            "the request body could not be read to its end".to_owned(),
        ),
    };
    let mut response = rpc_error(status, Value::Null, INVALID_REQUEST, message, None);
    if matches!(unread, Unread::ClientBusy(_) | Unread::GatewayBusy(_)) {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    response
}

/// Drops the session bindings of sessions that ended or expired, once a minute.
fn forget_ended_sessions(
    auth: Arc<McpAuth>,
    sessions: Arc<LocalSessionManager>,
    stop: CancellationToken,
) {
    Periodic::every(
        std::time::Duration::from_secs(60),
        "cannot forget the bindings of ended MCP sessions",
        "the bindings of ended MCP sessions are forgotten again",
    )
    .spawn(stop, move || {
        let (auth, sessions) = (auth.clone(), sessions.clone());
        async move {
            let alive: std::collections::HashSet<String> = sessions
                .sessions
                .read()
                .await
                .keys()
                .map(ToString::to_string)
                .collect();
            auth.retain_sessions(|id| alive.contains(id));
            Ok::<(), std::convert::Infallible>(())
        }
    });
}

/// The `Host` check rmcp makes, made here too for the requests the direct path takes.
fn host_allowed(parts: &http::request::Parts, allowed: &[String]) -> bool {
    let Some(host) = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    allowed.iter().any(|a| a == host || a == name)
}

/// The direct path takes only requests without an `Origin` or with one of an allowed
/// host; everything else is left to rmcp's own checks (and its 403).
fn origin_allowed(parts: &http::request::Parts, allowed: &[String]) -> bool {
    let Some(origin) = parts.headers.get(http::header::ORIGIN) else {
        return true;
    };
    let Some(host) = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) else {
        return false;
    };
    host.host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .is_some_and(|h| allowed.iter().any(|a| a == h))
}

/// The answer to a refused request (tokens are on whenever a request can be refused).
fn refuse(
    auth: Option<&McpAuth>,
    refusal: &Refusal,
    id: Value,
    headers: &http::HeaderMap,
) -> Response {
    match auth {
        Some(auth) => auth.refuse(refusal, id, headers),
        None => StatusCode::FORBIDDEN.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_in_one_piece_keeps_its_length_while_its_session_is_held() {
        use axum::body::HttpBody as _;
        let table = SessionTable::new(4, std::time::Duration::from_secs(60), Default::default());
        table
            .start("owner".into())
            .expect("room")
            .started("s".into());
        let in_use = table.enter("s");
        assert!(in_use.is_some(), "a known session");
        let response = hold(Response::new(Body::from("{}")), in_use);
        assert_eq!(
            response.body().size_hint().exact(),
            Some(2),
            "the length is known (Content-Length), not streamed"
        );
    }
}
