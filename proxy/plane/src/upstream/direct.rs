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
use http::StatusCode;
use rmcp::model::{ClientCapabilities, NumberOrString, ProgressToken, RequestId};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::bridge;
use super::connections::{self as conn};
use super::direct_wire::{
    answer_for_session_client, answer_response, build_request, decimal, error_value, failure,
    failure_error, joined, normalised_id, request_id, sse_event, timed_out, timeout_error,
    tokio_stream_from, upstream_body,
};
use super::inflight::{Inflight, LogLevel, ProgressCount};
use super::lane::Lane;
use super::session::{self, SessionSlot, UpstreamSession};
use super::target::Target;
use crate::locks::Locked;
use crate::protocol::codes::{
    INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, error_message, rpc_error,
};
use crate::protocol::era::Era;
use crate::protocol::event_stream::{self, EventReader};
use crate::protocol::message::{CallParams, Incoming};

/// Ids of requests the gateway forwards to a client on a direct call start with this.
const REQUEST_ID_PREFIX: &str = "warrant-";

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
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            // The upstream refused Warrant's credential before running anything. Its 401
            // or 403 is never the client's: a client told 401 would think its own token
            // bad. A connection built with a person's token or key is replaced or
            // reported by the credentials stage, on the handler's way.
            guard.disarm();
            if answer.is_ok() {
                // Read to its end: the connection serves again.
                target.connections.checkin(conn);
            }
            if status == StatusCode::UNAUTHORIZED {
                lane.shared.refuse_credentials();
                if lane.shared.config.auth.carries_key {
                    return None;
                }
            }
            return Some(failure(
                &lane,
                client_id,
                &format!(
                    "it refused the credential Warrant gives it (HTTP {status}): an admin \
                     must check its `auth` or `headers`"
                ),
            ));
        }
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

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
