//! The direct data path for `tools/call`.
//!
//! Through rmcp, a call crosses about ten tasks (the session worker, the service loop and
//! a handler task on the client side; the service loop, transport worker and request
//! task on the upstream side), each hop a wake-up: 300–400 µs of CPU per call, most of
//! it in the kernel's scheduler. On the direct path the task serving the client's HTTP
//! request does the whole call: it checks the session, routes the name, posts the call
//! into the upstream's session on a connection it drives itself, and answers — no hop.
//!
//! It takes a call only when nothing is lost by doing so: a known session (or a valid
//! 2026-07-28 request), a tool of a Streamable HTTP upstream (plain `http`) on the lane
//! of the client's own era, no `Mcp-Param-*` headers to validate. Anything else, and any
//! doubt before the call is sent (the upstream's session expired, say), goes the rmcp
//! way. Everything that can happen during a call still works: progress and log messages
//! are streamed to the client, requests from the upstream (elicitation, sampling, roots)
//! are passed to the client under an id of the gateway's and its answer is posted back,
//! cancellation (a `notifications/cancelled`, or the client going away) reaches the
//! upstream, and the call timeout applies. The connections to one upstream are at most
//! its `max_connections`; a call that finds them all busy waits for one, within its
//! timeout.
//!
//! Across eras it takes one case: a session client (2025-11-25 and earlier) of an
//! upstream that speaks only 2026-07-28, when the client declared none of elicitation,
//! sampling and roots ([`super::bridge`]: the request gets the metadata that revision needs,
//! the answer loses its `resultType`). These stay on rmcp, and why:
//! - a session client that did declare one of them: the upstream may answer with an
//!   `InputRequiredResult`, which the rmcp path turns into requests on the client's
//!   session and sends again with the answers; the direct path would have to hand a
//!   call already answered over to it;
//! - a 2026-07-28 client of an upstream that speaks only the legacy era: a request the
//!   upstream sends mid-call must become an `InputRequiredResult` with the call parked
//!   (`server::park`), and what the upstream sends on its session's standalone stream (rmcp
//!   servers log there) reaches such a client only through rmcp's request context —
//!   the direct path routes it to a client session, which this client has not;
//! - a 2026-07-28 request with `Mcp-Param-*` headers, or a tool whose schema declares
//!   them (`x-mcp-header`): rmcp validates them against the schema;
//! - a 2026-07-28 request whose headers and `_meta` disagree or lack what the revision
//!   requires: rmcp answers with the error the revision prescribes.
//!
//! On a legacy lane the call goes into the upstream's session, whose id the lane's rmcp
//! transport recorded ([`super::session::UpstreamSession`]), or into one of the extra
//! sessions configured, in turn ([`super::session_pool`]); a cancellation or an answer
//! to the upstream goes into the call's own. An upstream that answered the lane's
//! `initialize` without an `Mcp-Session-Id` (a stateless server) is recorded as such,
//! and its calls go without the header; until the lane has connected and learned which
//! it is, calls go the rmcp way. Each connection learns afresh: a session that ends
//! (404) is re-opened by rmcp and its new id recorded (or none, if the upstream came back
//! stateless), and a stateless upstream that refuses a call for want of a session (400
//! or 404 that answers no call: restarted with sessions) makes the lane reconnect at
//! once; the call then goes the rmcp way, which waits for the new connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use rmcp::model::{ClientCapabilities, NumberOrString, ProgressToken, RequestId};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::bridge;
use super::connections::{self as conn};
use super::inflight::{Inflight, LogLevel, ProgressCount};
use super::lane::Lane;
use super::session::{self, SessionSlot, UpstreamSession};
use super::target::Target;
use crate::locks::Locked;
use crate::protocol::codes::{
    INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, error_message, rpc_error,
};
use crate::protocol::era::Era;
use crate::protocol::error::GatewayError;
use crate::protocol::event_stream::{self, EventReader};
use crate::protocol::headers::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::protocol::message::{CallParams, Incoming, Outgoing, json_str_len, write_str};

/// Ids of requests the gateway forwards to a client on a direct call start with this.
const REQUEST_ID_PREFIX: &str = "warrant-";

static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The client behind a direct call.
pub(crate) struct Downstream {
    /// The client's session id (`None` for a 2026-07-28 request, which has none).
    pub(crate) session: Option<Arc<str>>,
    /// Whose the call is, for a cancellation (`server::stage::forward::call_owner`).
    pub(crate) owner: Arc<str>,
    /// The client session's log level, for the log messages of its calls.
    pub(crate) log_level: Option<Arc<LogLevel>>,
    /// The client's session, through which what the upstream sends outside the call's
    /// own stream (log messages on its standalone stream, say) reaches the client.
    pub(crate) peer: Option<rmcp::service::Peer<rmcp::RoleServer>>,
    pub(crate) era: Era,
    pub(crate) capabilities: Arc<ClientCapabilities>,
}

/// A request of an upstream, forwarded to a client, waiting for the client's answer.
struct Pending {
    session: Option<Arc<str>>,
    lane: Arc<Lane>,
    /// The upstream's session the call went into, where the answer goes.
    upstream_session: SessionSlot,
    upstream_id: Value,
}

/// A direct call in flight, for a client's `notifications/cancelled`.
struct InFlight {
    lane: Arc<Lane>,
    upstream_session: SessionSlot,
    upstream_id: Arc<str>,
}

/// A direct call as a client's `notifications/cancelled` names it: its owner
/// (`server::stage::forward::call_owner`) and the request id (normalised JSON).
type CallKey = (Arc<str>, Arc<str>);

/// The shared state of the direct path.
#[derive(Default)]
pub(crate) struct Direct {
    next_id: AtomicU64,
    /// Calls sent upstream on the direct path.
    calls: AtomicU64,
    /// Client cancellations that reached a direct call in flight.
    cancels: AtomicU64,
    pending: Mutex<HashMap<String, Pending>>,
    inflight: InFlights,
}

/// The direct calls in flight, in shards by their key: two calls take the same lock only
/// when their keys fall in the same shard.
#[derive(Default)]
struct InFlights([Mutex<HashMap<CallKey, InFlight>>; IN_FLIGHT_SHARDS]);

const IN_FLIGHT_SHARDS: usize = 16;

impl InFlights {
    fn shard(&self, key: &CallKey) -> &Mutex<HashMap<CallKey, InFlight>> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        // The remainder is below the shard count: the cast cannot truncate.
        &self.0[(hasher.finish() % IN_FLIGHT_SHARDS as u64) as usize]
    }

    fn insert(&self, key: CallKey, call: InFlight) {
        self.shard(&key).locked().insert(key, call);
    }

    fn remove(&self, key: &CallKey) -> Option<InFlight> {
        self.shard(key).locked().remove(key)
    }
}

/// Whether a JSON-RPC message is a client's answer to a request the direct path forwarded.
pub(crate) fn is_answer_to_forwarded(message: &Incoming<'_>) -> bool {
    message.method.is_none()
        && message.id.is_some_and(|id| {
            id.get()
                .strip_prefix('"')
                .is_some_and(|id| id.starts_with(REQUEST_ID_PREFIX))
        })
}

impl Direct {
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub(crate) fn cancels(&self) -> u64 {
        self.cancels.load(Ordering::Relaxed)
    }

    /// The next id of a request the gateway sends (`warrant-<n>`).
    fn next_key(&self) -> Arc<str> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut digits = [0u8; 20];
        joined(&[REQUEST_ID_PREFIX, decimal(n, &mut digits)])
    }

    fn next_id(&self) -> String {
        self.next_key().to_string()
    }

    /// Carries a client's answer to a forwarded request back to the upstream.
    pub(crate) async fn answer(&self, session: &str, message: &Incoming<'_>) -> Response {
        let id_value = message.id_value();
        let id = id_value.as_str().unwrap_or_default();
        let pending = {
            let mut pending = self.pending.locked();
            if pending
                .get(id)
                .is_some_and(|p| p.session.as_deref().unwrap_or_default() == session)
            {
                pending.remove(id)
            } else {
                None
            }
        };
        let Some(pending) = pending else {
            let text = format!("no request {id:?} is waiting for an answer in this session");
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                INVALID_REQUEST,
                text,
                None,
            );
        };
        let mut answer = Map::new();
        answer.insert("jsonrpc".into(), Value::String("2.0".into()));
        answer.insert("id".into(), pending.upstream_id);
        for (key, raw) in [("result", message.result), ("error", message.error)] {
            if let Some(value) = raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok()) {
                answer.insert(key.into(), value);
            }
        }
        let answer = Value::Object(answer);
        match post_notification(&pending.lane, &pending.upstream_session, &answer).await {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(e) => {
                let text = format!(
                    "the answer could not be passed to upstream {:?}: {e}",
                    pending.lane.name()
                );
                rpc_error(
                    StatusCode::BAD_GATEWAY,
                    Value::Null,
                    INTERNAL_ERROR,
                    text,
                    None,
                )
            }
        }
    }

    /// Passes a client's cancellation of a direct call upstream; false when the
    /// cancelled request is not a direct call (rmcp then handles the notification).
    pub(crate) async fn cancel(&self, owner: &str, params: &Value) -> bool {
        let Some(request_id) = params.get("requestId") else {
            return false;
        };
        let key: CallKey = (owner.into(), request_id.to_string().into());
        let Some(call) = self.inflight.remove(&key) else {
            return false;
        };
        self.cancels.fetch_add(1, Ordering::Relaxed);
        let reason = params.get("reason").cloned().unwrap_or(Value::Null);
        cancel_upstream(
            &call.lane,
            &call.upstream_session,
            &call.upstream_id,
            &reason,
        )
        .await;
        true
    }

    /// Performs one `tools/call` on the direct path. `None` before anything was sent
    /// upstream means "take the rmcp path instead".
    pub(crate) async fn call(
        self: &Arc<Self>,
        caller: Downstream,
        lane: Arc<Lane>,
        original: &str,
        client_id: &RawValue,
        mut call: CallParams<'_>,
    ) -> Option<Response> {
        let target = lane.direct_target()?;
        // A session client on the lane of an upstream that speaks only 2026-07-28.
        let bridged = caller.era == Era::Legacy && lane.era == Era::Modern;
        if bridged {
            bridge::add_request_meta(&mut call, &lane.protocol()?, &caller.capabilities)?;
        }
        let upstream_key = self.next_key();
        let body = upstream_body(&upstream_key, original, &call, lane.era)?;
        let session = lane.pick_session().clone();
        // Sent without a session id: a refusal then means the upstream now wants one.
        let stateless = lane.era == Era::Legacy && session.is_stateless();
        let request = build_request(&lane, &session, &target, original, body)?;

        let timeout = lane.shared.config.call_timeout;
        // One deadline for the whole exchange, the wait for a free connection included.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut conn = match tokio::time::timeout_at(deadline, target.connections.checkout()).await
        {
            Err(_) => return Some(timed_out(&lane, client_id, timeout)),
            Ok(Err(e)) => return Some(failure(&lane, client_id, &e.to_string())),
            Ok(Ok(conn)) => conn,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        // Keyed as the client's `notifications/cancelled` will name it (normalised JSON).
        let key: CallKey = (caller.owner.clone(), normalised_id(client_id));
        self.inflight.insert(
            key.clone(),
            InFlight {
                lane: lane.clone(),
                upstream_session: session.clone(),
                upstream_id: upstream_key.clone(),
            },
        );
        // Messages about this call that reach the lane's rmcp connection instead of the
        // call's stream (an rmcp server logs on its standalone stream) find the client.
        let tracked = track(
            &lane,
            &caller,
            client_id,
            &upstream_key,
            call.progress_token(),
        );
        // Until the call completes, dropping it (the client went away, or the timeout)
        // cancels it upstream.
        let mut guard = CancelOnDrop {
            direct: self.clone(),
            key,
            lane: Some(lane.clone()),
            upstream_session: session.clone(),
            upstream_id: upstream_key.clone(),
            tracked,
        };
        let exchange = async {
            let response = conn.send(request).await?;
            let status = response.status();
            let is_sse = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let mut body = response.into_body();
            let session_ended =
                status == StatusCode::NOT_FOUND && lane.era == Era::Legacy && !stateless;
            if is_sse || session_ended {
                return Ok::<_, conn::ConnError>((status, Err(body)));
            }
            Ok((status, Ok(read_all(&mut conn, &mut body).await?)))
        };
        let (status, answer) = match tokio::time::timeout_at(deadline, exchange).await {
            Err(_) => return Some(timed_out(&lane, client_id, timeout)),
            Ok(Err(e)) => return Some(failure(&lane, client_id, &e.to_string())),
            Ok(Ok(head)) => head,
        };
        let mut body = match answer {
            Ok(bytes) => {
                guard.settle().await;
                guard.disarm();
                target.connections.checkin(conn);
                let reply = Incoming::parse(&bytes)
                    .ok()
                    .filter(|r| r.result.is_some() || r.error.is_some());
                if stateless && session::wants_a_session(status, reply.as_ref(), &upstream_key) {
                    // Refused before it ran (a restarted upstream that now issues
                    // sessions answers 400): reconnect, and take the rmcp way, which
                    // waits for the new connection.
                    lane.reconnect(&format!(
                        "it refused a call without a session (HTTP {status})"
                    ));
                    return None;
                }
                // A 2026-07-28 server answers some errors with an HTTP status of their
                // own (400 for a missing capability, 404 for an unknown method): kept.
                return Some(match reply {
                    Some(reply) if bridged => answer_for_session_client(client_id, &reply),
                    Some(reply) => answer_response(status, client_id, &reply),
                    None if !status.is_success() => {
                        failure(&lane, client_id, &format!("it answered HTTP {status}"))
                    }
                    None => failure(&lane, client_id, "its answer is not a JSON-RPC response"),
                });
            }
            Err(body) => body,
        };
        if status == StatusCode::NOT_FOUND && lane.era == Era::Legacy {
            // The upstream ended the session: nothing ran. A new one is opened (rmcp
            // re-initializes the lane's own).
            guard.disarm();
            lane.session_ended(&session);
            return None;
        }
        // An event stream: answer in one piece if the final response comes first,
        // otherwise stream everything to the client as it arrives.
        let mut reader = EventReader::default();
        let first = async {
            loop {
                if let Some(data) = reader.next_data() {
                    return Ok(Some(data));
                }
                match conn.frame(&mut body).await? {
                    Some(chunk) => reader.push(chunk),
                    None => return Ok::<_, conn::ConnError>(None),
                }
            }
        };
        let first = match tokio::time::timeout_at(deadline, first).await {
            Err(_) => return Some(timed_out(&lane, client_id, timeout)),
            Ok(Err(e)) => return Some(failure(&lane, client_id, &e.to_string())),
            Ok(Ok(None)) => {
                return Some(failure(
                    &lane,
                    client_id,
                    "its event stream ended without an answer",
                ));
            }
            Ok(Ok(Some(data))) => data,
        };
        let first_text = event_stream::text(&first);
        if let Ok(reply) = serde_json::from_str::<Incoming<'_>>(&first_text)
            && reply.method.is_none()
            && reply
                .id
                .is_some_and(|id| id.get().trim_matches('"') == &*upstream_key)
        {
            guard.settle().await;
            guard.disarm();
            let answer = if bridged {
                answer_for_session_client(client_id, &reply)
            } else {
                answer_response(StatusCode::OK, client_id, &reply)
            };
            // The event is a slice of the connection's read buffer: let it go before the
            // rest of the stream is read, so that the buffer is reused, not replaced.
            drop(first_text);
            drop((first, reader));
            check_in_after_stream(target, conn, body);
            return Some(answer);
        }
        // Stream: a task of its own carries on the exchange.
        let client_id: Value = serde_json::from_str(client_id.get()).unwrap_or(Value::Null);
        let upstream_id = Value::String(upstream_key.to_string());
        let first: Map<String, Value> = serde_json::from_str(&first_text).unwrap_or_default();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
        let direct = self.clone();
        tokio::spawn(async move {
            // Requests forwarded to the client during this call: forgotten when it ends,
            // answered or not.
            let mut forwarded_ids: Vec<String> = Vec::new();
            let mut next = Some(first);
            let exchange = async {
                loop {
                    let message = match next.take() {
                        Some(m) => m,
                        None => {
                            let more = async {
                                loop {
                                    if let Some(data) = reader.next_data() {
                                        let text = event_stream::text(&data);
                                        if let Ok(message) = serde_json::from_str(&text) {
                                            return Ok(Some(message));
                                        }
                                        continue;
                                    }
                                    match conn.frame(&mut body).await? {
                                        Some(chunk) => reader.push(chunk),
                                        None => return Ok::<_, conn::ConnError>(None),
                                    }
                                }
                            };
                            let error = match tokio::time::timeout_at(deadline, more).await {
                                Ok(Ok(Some(m))) => {
                                    next = Some(m);
                                    continue;
                                }
                                Ok(Ok(None)) => {
                                    failure_error(&lane, "its event stream ended without an answer")
                                }
                                Ok(Err(e)) => failure_error(&lane, &e.to_string()),
                                Err(_) => timeout_error(&lane, timeout),
                            };
                            let _ = tx
                                .send(Ok(sse_event(&error_value(&client_id, &error))))
                                .await;
                            return;
                        }
                    };
                    let out = if message.get("id") == Some(&upstream_id)
                        && !message.contains_key("method")
                    {
                        guard.settle().await;
                        guard.disarm();
                        let message = if bridged {
                            bridge::final_for_client(message)
                        } else {
                            message
                        };
                        let done = finish(message, &client_id);
                        let _ = tx.send(Ok(sse_event(&done))).await;
                        check_in_after_stream(target, conn, body);
                        return;
                    } else if message.contains_key("method") && message.contains_key("id") {
                        match direct
                            .forward_request(&caller, &lane, &session, message)
                            .await
                        {
                            Some(forwarded) => {
                                if let Some(id) = forwarded.get("id").and_then(Value::as_str) {
                                    forwarded_ids.push(id.to_owned());
                                }
                                forwarded
                            }
                            None => continue,
                        }
                    } else if caller
                        .log_level
                        .as_ref()
                        .is_some_and(|l| !l.wants_message(&message))
                    {
                        continue; // a log message below the session's level
                    } else {
                        Value::Object(message)
                    };
                    if tx.send(Ok(sse_event(&out))).await.is_err() {
                        return; // the client went away: the guard cancels upstream
                    }
                }
            };
            exchange.await;
            {
                let mut pending = direct.pending.locked();
                pending.retain(|id, _| !forwarded_ids.contains(id));
            }
        });
        let stream = tokio_stream_from(rx);
        Some(
            Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "text/event-stream")
                .header(http::header::CACHE_CONTROL, "no-cache")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        )
    }

    /// A request the upstream makes during a direct call: passed to the client under an
    /// id of the gateway's if the client can answer it, else answered with an error.
    async fn forward_request(
        &self,
        caller: &Downstream,
        lane: &Arc<Lane>,
        session: &SessionSlot,
        mut message: Map<String, Value>,
    ) -> Option<Value> {
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let capable = match method.as_str() {
            "elicitation/create" => caller.capabilities.elicitation.is_some(),
            "sampling/createMessage" => caller.capabilities.sampling.is_some(),
            "roots/list" => caller.capabilities.roots.is_some(),
            "ping" => true,
            _ => false,
        } && caller.era == Era::Legacy;
        let upstream_id = message.get("id").cloned().unwrap_or(Value::Null);
        if !capable {
            let text = format!("the client did not declare the capability for {method}");
            let answer = error_message(upstream_id, METHOD_NOT_FOUND, text, None);
            if let Err(e) = post_notification(lane, session, &answer).await {
                tracing::debug!(upstream = %lane.name(), error = %e, "cannot refuse an upstream request");
            }
            return None;
        }
        let id = self.next_id();
        {
            let mut pending = self.pending.locked();
            pending.insert(
                id.clone(),
                Pending {
                    session: caller.session.clone(),
                    lane: lane.clone(),
                    upstream_session: session.clone(),
                    upstream_id,
                },
            );
        }
        message.insert("id".into(), Value::String(id));
        Some(Value::Object(message))
    }
}

/// A call registered with the lane: its upstream request id, the progress token it was
/// registered under, and the count of its notifications.
type Tracked = (RequestId, ProgressToken, Arc<ProgressCount>);

/// Registers a direct call of a session client with the lane, as the rmcp path does.
fn track(
    lane: &Arc<Lane>,
    caller: &Downstream,
    client_id: &RawValue,
    upstream_key: &Arc<str>,
    token: Option<ProgressToken>,
) -> Option<Tracked> {
    let peer = caller.peer.clone()?;
    let id = RequestId::String(upstream_key.clone());
    let downstream_request = request_id(client_id)?;
    // The upstream sees the client's own progress token; without one, a key that
    // matches nothing (the upstream id in quotes).
    let key = token.clone().unwrap_or_else(|| {
        ProgressToken(NumberOrString::String(joined(&["\"", upstream_key, "\""])))
    });
    let origin = Inflight {
        downstream: peer,
        downstream_request,
        downstream_progress: token,
        park: None,
        log_level: caller.log_level.clone(),
    };
    let count = lane.calls.track(id.clone(), key.clone(), origin);
    Some((id, key, count))
}

/// Cancels a direct call upstream when it is dropped before completing, and forgets
/// its registration with the lane either way.
struct CancelOnDrop {
    direct: Arc<Direct>,
    key: CallKey,
    lane: Option<Arc<Lane>>,
    upstream_session: SessionSlot,
    upstream_id: Arc<str>,
    tracked: Option<Tracked>,
}

impl CancelOnDrop {
    /// Waits until progress that reached the lane's connection was passed on.
    async fn settle(&self) {
        if let Some((_, _, count)) = &self.tracked {
            count.settle().await;
        }
    }

    fn disarm(&mut self) {
        if let (Some(lane), Some((id, token, _))) = (&self.lane, &self.tracked) {
            lane.calls.untrack_one(id, token);
        }
        self.tracked = None;
        self.lane = None;
        self.direct.inflight.remove(&self.key);
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(lane) = self.lane.take() else { return };
        if let Some((id, token, _)) = self.tracked.take() {
            lane.calls.untrack_one(&id, &token);
        }
        let still_inflight = self.direct.inflight.remove(&self.key).is_some();
        if still_inflight {
            let id = self.upstream_id.clone();
            let session = self.upstream_session.clone();
            tokio::spawn(async move {
                cancel_upstream(
                    &lane,
                    &session,
                    &id,
                    &Value::String("the client went away or the call timed out".into()),
                )
                .await;
            });
        }
    }
}

async fn cancel_upstream(
    lane: &Arc<Lane>,
    session: &UpstreamSession,
    upstream_id: &str,
    reason: &Value,
) {
    let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": upstream_id, "reason": reason}});
    if let Err(e) = post_notification(lane, session, &note).await {
        tracing::debug!(upstream = %lane.name(), error = %e, "cannot forward a cancellation");
    }
}

/// Posts a notification or an answer into one of the upstream's sessions (expects 202).
async fn post_notification(
    lane: &Arc<Lane>,
    session: &UpstreamSession,
    message: &Value,
) -> Result<(), String> {
    let target = lane
        .direct_target()
        .ok_or("the upstream has no direct route")?;
    let request = build_request(lane, session, &target, "", message.to_string().into())
        .ok_or("cannot build the request")?;
    // Bounded: every connection may be held by a call that this message would end.
    let wait = lane.shared.config.connect_timeout;
    let mut conn = tokio::time::timeout(wait, target.connections.checkout())
        .await
        .map_err(|_| "no connection to it was free in time".to_owned())?
        .map_err(|e| e.to_string())?;
    let response = conn.send(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let mut body = response.into_body();
    read_all(&mut conn, &mut body)
        .await
        .map_err(|e| e.to_string())?;
    target.connections.checkin(conn);
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// The HTTP request carrying a JSON-RPC message into one of the upstream's sessions.
fn build_request(
    lane: &Lane,
    session: &UpstreamSession,
    target: &Target,
    name: &str,
    body: Bytes,
) -> Option<http::Request<Full<Bytes>>> {
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = target.uri.clone();
    let headers = request.headers_mut();
    headers.reserve(6 + target.headers.len());
    headers.insert(http::header::HOST, target.host.clone());
    headers.insert(http::header::CONTENT_TYPE, APPLICATION_JSON.clone());
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    for (key, value) in &target.headers {
        headers.insert(key.clone(), value.clone());
    }
    if let Some(version) = lane.protocol_header() {
        headers.insert(MCP_PROTOCOL_VERSION.clone(), version);
    }
    match lane.era {
        Era::Legacy => {
            if let Some(session) = session.header()? {
                headers.insert(MCP_SESSION_ID.clone(), session);
            }
        }
        Era::Modern if !name.is_empty() => {
            headers.insert(MCP_METHOD.clone(), HeaderValue::from_static("tools/call"));
            headers.insert(MCP_NAME.clone(), HeaderValue::from_str(name).ok()?);
        }
        Era::Modern => {}
    }
    Some(request)
}

/// The body of the call posted upstream: the client's parameters, under the upstream's
/// name for the tool, with the `_meta` the upstream lane should see (see
/// `gateway::upstream_meta` for the same rule on the rmcp path).
fn upstream_body(id: &str, original: &str, call: &CallParams<'_>, era: Era) -> Option<Bytes> {
    let meta = match call.meta.clone() {
        Some(mut meta) => {
            meta.remove("io.modelcontextprotocol/clientInfo");
            match era {
                Era::Legacy => meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/")),
                Era::Modern => {
                    meta.insert(
                        "io.modelcontextprotocol/clientInfo".into(),
                        json!({"name": "warrant", "version": env!("CARGO_PKG_VERSION")}),
                    );
                }
            }
            if meta.is_empty() {
                None
            } else {
                Some(RawValue::from_string(serde_json::to_string(&meta).ok()?).ok()?)
            }
        }
        None => None,
    };
    // The members in the order of their names, as a JSON object map writes them: the
    // rest is in that order already, the tool's name and `_meta` go in between.
    let mut fixed = [
        ("_meta", meta.as_deref().map(Param::Raw)),
        ("name", Some(Param::Name)),
    ];
    // Written by hand, into exactly its size: serde's map serializer costs more than the
    // call's own bytes, and `Bytes` takes a full vector as it is.
    let value_len = |value: &Param<'_>| match value {
        Param::Name => json_str_len(original),
        Param::Raw(raw) => raw.get().len(),
    };
    let (count, bytes) = fixed
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| json_str_len(key) + value_len(v)))
        .chain(
            call.rest
                .iter()
                .map(|(key, value)| json_str_len(key) + value.get().len()),
        )
        .fold((0, 0), |(count, bytes), len| (count + 1, bytes + len));
    // Each member `key:value`, commas between them, `}}` at the end.
    let size = HEAD.len() + json_str_len(id) + METHOD.len() + bytes + count + count - 1 + 2;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(HEAD);
    write_str(&mut out, id);
    out.extend_from_slice(METHOD);
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, key: &str, value: &Param<'_>| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, key);
        out.push(b':');
        match value {
            Param::Name => write_str(out, original),
            Param::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
        }
    };
    for (key, value) in &call.rest {
        for (fixed_key, fixed_value) in &mut fixed {
            if *fixed_key < key.as_ref()
                && let Some(value) = fixed_value.take()
            {
                member(&mut out, fixed_key, &value);
            }
        }
        member(&mut out, key, &Param::Raw(value));
    }
    for (fixed_key, fixed_value) in &mut fixed {
        if let Some(value) = fixed_value.take() {
            member(&mut out, fixed_key, &value);
        }
    }
    out.extend_from_slice(b"}}");
    Some(Bytes::from(out))
}

/// The body posted upstream up to the call's id, and from it to the parameters.
const HEAD: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":";
const METHOD: &[u8] = b",\"method\":\"tools/call\",\"params\":{";

/// A member of the parameters posted upstream.
enum Param<'a> {
    /// The upstream's name for the tool.
    Name,
    Raw(&'a RawValue),
}

/// The client's answer: the upstream's result or error, as it came, under the client's
/// request id.
fn answer_response(status: StatusCode, client_id: &RawValue, reply: &Incoming<'_>) -> Response {
    let error = if reply.result.is_some() {
        None
    } else {
        reply.error
    };
    outgoing(status, client_id, reply.result, error)
}

/// A 2026-07-28 upstream's answer for a session client (see [`super::bridge`]): HTTP 200, the
/// result in the client's revision.
fn answer_for_session_client(client_id: &RawValue, reply: &Incoming<'_>) -> Response {
    let Some(result) = reply.result else {
        return answer_response(StatusCode::OK, client_id, reply);
    };
    match bridge::result_for_client(result) {
        bridge::ForClient::Same => answer_response(StatusCode::OK, client_id, reply),
        bridge::ForClient::Rewritten(result) => {
            outgoing(StatusCode::OK, client_id, Some(&result), None)
        }
        bridge::ForClient::Error(error) => outgoing(StatusCode::OK, client_id, None, Some(&error)),
    }
}

fn outgoing(
    status: StatusCode,
    client_id: &RawValue,
    result: Option<&RawValue>,
    error: Option<&RawValue>,
) -> Response {
    let out = Outgoing {
        jsonrpc: "2.0",
        id: client_id,
        result,
        error,
    };
    let mut response = Response::new(Body::from(out.to_vec()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, APPLICATION_JSON.clone());
    response
}

/// How long the end of an event stream may take after its last event before the
/// connection is given up (a server that keeps the stream open is not waited for).
const STREAM_END: std::time::Duration = std::time::Duration::from_secs(1);

/// Puts a connection back once the event stream that carried a call's answer has ended:
/// until then it cannot carry another request, and a connection dropped instead costs the
/// next call a new TCP connection. The end usually comes with the last event, or a moment
/// after it: then the connection goes back with the stream still ending, and the next
/// call that takes it reads the end first (no task of its own, no timer; see
/// `Connections::checkin_ending`).
fn check_in_after_stream(
    target: Arc<Target>,
    mut conn: conn::Pooled,
    mut body: hyper::body::Incoming,
) {
    use futures::FutureExt as _;
    match conn.finish(&mut body).now_or_never() {
        Some(true) => target.connections.checkin(conn),
        Some(false) => {}
        None => target.connections.checkin_ending(conn, body, STREAM_END),
    }
}

/// The upstream's final message (streaming case), addressed to the client's request id.
fn finish(mut message: Map<String, Value>, client_id: &Value) -> Value {
    message.insert("id".into(), client_id.clone());
    Value::Object(message)
}

async fn read_all(
    conn: &mut conn::Pooled,
    body: &mut hyper::body::Incoming,
) -> Result<Bytes, conn::ConnError> {
    // Most answers come in one chunk: kept as it is, not copied.
    let Some(first) = conn.frame(body).await? else {
        return Ok(Bytes::new());
    };
    let Some(second) = conn.frame(body).await? else {
        return Ok(first);
    };
    let mut all = bytes::BytesMut::with_capacity(first.len() + second.len());
    all.extend_from_slice(&first);
    all.extend_from_slice(&second);
    while let Some(chunk) = conn.frame(body).await? {
        all.extend_from_slice(&chunk);
    }
    Ok(all.freeze())
}

fn json_reply(message: Value) -> Response {
    (StatusCode::OK, axum::Json(message)).into_response()
}

fn sse_event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

fn error_value(client_id: &Value, error: &GatewayError) -> Value {
    let data: rmcp::ErrorData = error.clone().into();
    error_message(client_id.clone(), data.code, data.message, data.data)
}

fn failure_error(lane: &Lane, reason: &str) -> GatewayError {
    GatewayError::UpstreamFailed {
        upstream: lane.name().to_owned(),
        reason: reason.to_owned(),
    }
}

fn timeout_error(lane: &Lane, after: std::time::Duration) -> GatewayError {
    GatewayError::UpstreamTimeout {
        upstream: lane.name().to_owned(),
        after,
    }
}

fn failure(lane: &Lane, client_id: &RawValue, reason: &str) -> Response {
    json_reply(error_value(
        &raw_id(client_id),
        &failure_error(lane, reason),
    ))
}

fn timed_out(lane: &Lane, client_id: &RawValue, after: std::time::Duration) -> Response {
    json_reply(error_value(&raw_id(client_id), &timeout_error(lane, after)))
}

fn raw_id(id: &RawValue) -> Value {
    serde_json::from_str(id.get()).unwrap_or(Value::Null)
}

/// A client's request id: read directly when it is an integer or a string without
/// escapes, else by rmcp's own rules.
fn request_id(raw: &RawValue) -> Option<RequestId> {
    let text = raw.get();
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
        && !inner.contains(['\\', '"'])
    {
        return Some(RequestId::String(inner.into()));
    }
    if let Ok(n) = text.parse::<i64>() {
        return Some(RequestId::Number(n));
    }
    serde_json::from_str(text).ok()
}

/// `n` in decimal, written at the end of `digits`.
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &str {
    let mut i = digits.len();
    loop {
        i -= 1;
        // n % 10 < 10: the cast cannot truncate.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[i..]).unwrap_or_default()
}

/// `parts` joined into one shared string, in one allocation.
pub(crate) fn joined(parts: &[&str]) -> Arc<str> {
    let mut buffer = [0u8; 128];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > buffer.len() {
        return parts.concat().into();
    }
    let mut at = 0;
    for part in parts {
        buffer[at..at + part.len()].copy_from_slice(part.as_bytes());
        at += part.len();
    }
    // Whole strings, one after the other: text.
    std::str::from_utf8(&buffer[..len]).map_or_else(|_| parts.concat().into(), Arc::from)
}

/// A request id as serde_json writes it (how a `notifications/cancelled` names it once
/// parsed). An integer, or a string without escapes, is written as it came.
fn normalised_id(id: &RawValue) -> Arc<str> {
    let text = id.get();
    let digits = text.strip_prefix('-').unwrap_or(text);
    // Up to 18 digits: an integer serde_json keeps exact ("-0" it reads as a float).
    let plain_number = text == "0"
        || ((1..=18).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0'));
    let plain_string =
        text.len() >= 2 && text.starts_with('"') && text.ends_with('"') && !text.contains('\\');
    if plain_number || plain_string {
        text.into()
    } else {
        raw_id(id).to_string().into()
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body as the serde-based writer wrote it before: the members read into a
    /// `BTreeMap`, written back through one with the gateway's name and `_meta`.
    fn reference_body(id: &str, original: &str, params: &str, era: Era) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct CallBody<'a> {
            jsonrpc: &'static str,
            id: &'a str,
            method: &'static str,
            params: std::collections::BTreeMap<&'a str, &'a RawValue>,
        }
        let mut members: std::collections::BTreeMap<std::borrow::Cow<'_, str>, &RawValue> =
            serde_json::from_str(params).expect("an object");
        let meta = members
            .remove("_meta")
            .and_then(|m| serde_json::from_str::<Map<String, Value>>(m.get()).ok());
        members.remove("name");
        let meta = meta.and_then(|mut meta| {
            meta.remove("io.modelcontextprotocol/clientInfo");
            match era {
                Era::Legacy => meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/")),
                Era::Modern => {
                    meta.insert(
                        "io.modelcontextprotocol/clientInfo".into(),
                        json!({"name": "warrant", "version": env!("CARGO_PKG_VERSION")}),
                    );
                }
            }
            (!meta.is_empty())
                .then(|| RawValue::from_string(serde_json::to_string(&meta).expect("json")))
                .map(|r| r.expect("raw"))
        });
        let name =
            RawValue::from_string(serde_json::to_string(original).expect("json")).expect("raw");
        let mut all: std::collections::BTreeMap<&str, &RawValue> =
            members.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
        all.insert("name", &name);
        if let Some(meta) = &meta {
            all.insert("_meta", meta);
        }
        let body = CallBody {
            jsonrpc: "2.0",
            id,
            method: "tools/call",
            params: all,
        };
        serde_json::to_vec(&body).expect("json")
    }

    #[test]
    fn the_upstream_body_is_what_a_json_map_would_write() {
        let cases = [
            r#"{"name":"a__echo","arguments":{"message":"hi"}}"#,
            r#"{"arguments":{"b":1,"a":[true,null]},"name":"x","_meta":{"progressToken":7,"trace":"t"}}"#,
            r#"{"name":"x","Zed":1,"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"c"}},"arguments":{}}"#,
            r#"{"name":"first","arguments":{"v":1},"arguments":{"v":2},"name":"last"}"#,
            r#"{"name":"x","a\"b":"q\\u00e9","task":{"ttl":5},"$x":0}"#,
            r#"{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#,
        ];
        for params in cases {
            let raw = RawValue::from_string(params.into()).expect("raw");
            let call = CallParams::read(&raw).expect("params");
            for era in [Era::Legacy, Era::Modern] {
                let body =
                    upstream_body("warrant-12", "echo \"quoted\"", &call, era).expect("body");
                let want = reference_body("warrant-12", "echo \"quoted\"", params, era);
                assert_eq!(
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(&want),
                    "{params} ({era:?})"
                );
            }
        }
    }

    #[test]
    fn a_later_member_replaces_an_earlier_one() {
        let raw =
            RawValue::from_string(r#"{"name":"a","b":1,"b":2,"name":"c"}"#.into()).expect("raw");
        let call = CallParams::read(&raw).expect("params");
        assert_eq!(call.name, "c");
        let rest: Vec<(&str, &str)> = call
            .rest
            .iter()
            .map(|(k, v)| (k.as_ref(), v.get()))
            .collect();
        assert_eq!(rest, [("b", "2")]);
        let not_an_object = RawValue::from_string("[1]".into()).expect("raw");
        assert!(CallParams::read(&not_an_object).is_none());
        let no_name = RawValue::from_string(r#"{"name":1}"#.into()).expect("raw");
        assert!(CallParams::read(&no_name).is_none());
    }

    #[test]
    fn request_ids_are_read_and_normalised_as_serde_would() {
        for id in [
            "0",
            "7",
            "-12",
            "9007199254740993",
            "123456789012345678901234",
            "1.0",
            "1e2",
            "-0",
            r#""abc""#,
            r#""""#,
            r#""a\"b""#,
            r#""\u00e9""#,
            r#""é""#,
            "null",
            "true",
        ] {
            let raw = RawValue::from_string(id.into()).expect("raw");
            assert_eq!(
                &*normalised_id(&raw),
                raw_id(&raw).to_string(),
                "normalised {id}"
            );
            assert_eq!(
                request_id(&raw),
                serde_json::from_str::<RequestId>(id).ok(),
                "request id {id}"
            );
        }
    }

    #[test]
    fn forwarded_request_ids_are_counted_in_decimal() {
        let direct = Direct::default();
        assert_eq!(direct.next_id(), "warrant-0");
        assert_eq!(direct.next_id(), "warrant-1");
        direct.next_id.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(direct.next_id(), format!("warrant-{}", u64::MAX));
    }

    #[test]
    fn the_upstream_body_is_written_in_one_allocation() {
        let raw = RawValue::from_string(
            r#"{"name":"bench__echo","arguments":{"message":"hello"}}"#.into(),
        )
        .expect("raw");
        let call = CallParams::read(&raw).expect("params");
        let allocations = crate::allocations(|| {
            assert!(upstream_body("warrant-7", "echo", &call, Era::Legacy).is_some());
        });
        assert_eq!(
            allocations, 1,
            "allocations to write the body posted upstream"
        );
    }

    #[tokio::test]
    async fn a_stream_that_ends_after_its_answer_leaves_its_connection_to_the_next_call() {
        use std::io::{Read as _, Write as _};
        // An upstream that answers in an event stream and ends it only when told.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let (end, ended) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).expect("request");
            let event = "event: message\ndata: {}\n\n";
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            write!(socket, "{head}{:x}\r\n{event}\r\n", event.len()).expect("event");
            let _ = ended.recv();
            socket.write_all(b"0\r\n\r\n").expect("end");
            // Kept open: the connection may carry the next call.
            std::thread::sleep(std::time::Duration::from_millis(500));
        });
        let url = url::Url::parse(&format!("http://{address}/mcp")).expect("url");
        let target = Arc::new(
            Target::new(
                &url,
                http::HeaderMap::new(),
                std::time::Duration::from_secs(5),
                4,
            )
            .expect("target"),
        );
        let mut conn = target.connections.checkout().await.expect("a connection");
        let mut request = http::Request::new(Full::new(Bytes::from_static(b"{}")));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = target.uri.clone();
        request
            .headers_mut()
            .insert(http::header::HOST, target.host.clone());
        let response = conn.send(request).await.expect("a response");
        let mut body = response.into_body();
        assert!(conn.frame(&mut body).await.expect("the event").is_some());
        let tasks = tokio::runtime::Handle::current().metrics();
        let before = tasks.num_alive_tasks();
        check_in_after_stream(target.clone(), conn, body);
        assert_eq!(
            tasks.num_alive_tasks(),
            before,
            "no task of its own waits for the end of the stream"
        );
        end.send(()).expect("told");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let again = target.connections.checkout().await.expect("a connection");
        assert_eq!(
            target.connections.opened(),
            1,
            "the next call takes the connection whose stream has ended by then"
        );
        drop(again);
        server.join().expect("server");
    }
}
