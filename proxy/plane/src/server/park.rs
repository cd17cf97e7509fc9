//! Parking: a legacy upstream asking a 2026-07-28 client for input mid-call.
//!
//! A server of the session era sends `elicitation/create`, `sampling/createMessage` or
//! `roots/list` *during* a `tools/call` and waits for the answer. A 2026-07-28 client has
//! no session to receive it on: it expects an `InputRequiredResult` and retries the call
//! with `inputResponses` and the result's `requestState` (multi round-trip). The gateway
//! bridges the two by keeping the upstream call running across the client's retries:
//!
//! ```text
//! client               gateway                                  legacy upstream
//!   │ tools/call ───────> spawn the call ─────── tools/call ───────> │
//!   │                      │  <──────────────── elicitation/create ── │ (waits)
//!   │ <── input_required ─ park {call, responder} under a random id  │
//!   │     {inputRequests, requestState: id}                          │
//!   │ tools/call + inputResponses + requestState ──>                 │
//!   │                      take the entry (same tool, same caller),  │
//!   │                      answer the upstream's request ──────────> │
//!   │ <── result ───────── … the call completes (or asks again: a    │
//!   │                        new round under a new id)               │
//! ```
//!
//! The upstream call runs in a task of its own (its future is never dropped while it is
//! parked); each request it makes waits on a oneshot responder. Both live in [`Park`],
//! keyed by the `requestState`: 256 random bits, looked up by exact match, and bound to
//! the tool name and the caller ([`caller_binding`]) so that nobody else can resume it.
//! An entry lasts as long as the upstream call may: when the call ends while parked (its
//! call timeout elapsed, the upstream went away) or its deadline passes, the entry is
//! removed, its responders dropped (the upstream's request fails) and the call
//! cancelled upstream.

// Sampling and roots are deprecated in 2026-07-28, but legacy servers still send them.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rand::RngCore as _;
use rmcp::model::{ClientCapabilities, ClientResult, InputRequests, InputResponses, ServerResult};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::locks::Locked;
use crate::protocol::error::GatewayError;
use crate::upstream::asker::{Ask, Asker, Kind};

/// How long the gateway waits, after an upstream's request, for others that arrive
/// together with it (so that they go to the client in one round). A request that misses
/// the window goes in the next round: slower, not wrong.
const GATHER: Duration = Duration::from_millis(3);
/// The most input requests one round carries; further ones wait for the next round.
const MAX_PER_ROUND: usize = 16;
/// How long past its deadline an entry may stay (the call's own timeout fires first).
const GRACE: Duration = Duration::from_secs(1);

/// What the caller is bound to beyond the tool name: the user and the agent of the
/// request's verified access token (`enforce::auth` puts it in the request's extensions),
/// so that a `requestState` issued to one caller cannot be resumed by another. Empty
/// with `mcp.authorization = "none"`.
pub(crate) fn caller_binding(parts: Option<&http::request::Parts>) -> String {
    parts
        .and_then(|p| p.extensions.get::<crate::enforce::auth::Caller>())
        .map(|caller| {
            let identity = &caller.token.identity;
            format!("{}\u{0}{}", identity.user, identity.agent)
        })
        .unwrap_or_default()
}

/// The binding of a parked call: the tool name (as the client named it) and the caller.
pub(crate) fn binding(tool: &str, parts: Option<&http::request::Parts>) -> String {
    format!("{tool}\u{0}{}", caller_binding(parts))
}

/// An upstream call running for a 2026-07-28 client, possibly asking it for input.
pub(crate) struct Call {
    task: JoinHandle<Result<ServerResult, GatewayError>>,
    asks: mpsc::UnboundedReceiver<Ask>,
    /// Cancels the call upstream when the call is dropped before it ended.
    _cancel: DropGuard,
    /// Cancelled by the task when the upstream call ended.
    finished: CancellationToken,
    /// When the upstream call's own timeout has certainly elapsed.
    deadline: Instant,
    upstream: String,
}

/// What a call did next.
pub(crate) enum Step {
    /// It ended, with its result (boxed: a result is large, and rare next to a step).
    Done(Box<Result<ServerResult, GatewayError>>),
    /// It asks the client for input: the requests keyed as the client will see them.
    Asked(InputRequests, Vec<Pending>),
}

/// One request of the upstream that waits for the client's answer under `key`.
pub(crate) struct Pending {
    key: String,
    kind: Kind,
    answer: oneshot::Sender<ClientResult>,
}

impl Call {
    /// Spawns `call` (the upstream request, given the [`Asker`] to route its requests
    /// to and the token that cancels it), which the upstream answers within `timeout`.
    pub(crate) fn spawn<F>(
        upstream: &str,
        capabilities: ClientCapabilities,
        timeout: Duration,
        call: impl FnOnce(Arc<Asker>, CancellationToken) -> F,
    ) -> Self
    where
        F: Future<Output = Result<ServerResult, GatewayError>> + Send + 'static,
    {
        let (tx, asks) = mpsc::unbounded_channel();
        let asker = Arc::new(Asker::new(capabilities, tx));
        let cancel = CancellationToken::new();
        let finished = CancellationToken::new();
        let running = call(asker, cancel.clone());
        let done = finished.clone();
        let task = tokio::spawn(async move {
            let result = running.await;
            done.cancel();
            result
        });
        Self {
            task,
            asks,
            _cancel: cancel.drop_guard(),
            finished,
            deadline: Instant::now() + timeout,
            upstream: upstream.to_owned(),
        }
    }

    pub(crate) fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Waits for the call to end or to ask for input (gathering the requests that
    /// arrive together).
    pub(crate) async fn next(&mut self) -> Step {
        let first = tokio::select! {
            biased;
            Some(ask) = self.asks.recv() => ask,
            joined = &mut self.task => return Step::Done(Box::new(self.joined(joined))),
        };
        let mut asks = vec![first];
        while asks.len() < MAX_PER_ROUND {
            match tokio::time::timeout(GATHER, self.asks.recv()).await {
                Ok(Some(ask)) => asks.push(ask),
                Ok(None) | Err(_) => break,
            }
        }
        if self.task.is_finished() {
            // The call ended meanwhile (its timeout, say): its requests are moot.
            let joined = (&mut self.task).await;
            return Step::Done(Box::new(self.joined(joined)));
        }
        let mut requests = InputRequests::new();
        let mut pending = Vec::with_capacity(asks.len());
        for (i, ask) in asks.into_iter().enumerate() {
            let key = format!("{}-{}", ask.kind.label(), i + 1);
            requests.insert(key.clone(), ask.request);
            pending.push(Pending {
                key,
                kind: ask.kind,
                answer: ask.answer,
            });
        }
        Step::Asked(requests, pending)
    }

    fn joined(
        &self,
        joined: Result<Result<ServerResult, GatewayError>, tokio::task::JoinError>,
    ) -> Result<ServerResult, GatewayError> {
        joined.unwrap_or_else(|e| {
            Err(GatewayError::UpstreamFailed {
                upstream: self.upstream.clone(),
                reason: format!("the call's task failed: {e}"),
            })
        })
    }
}

/// A parked call: waiting for the client's retry.
struct Entry {
    bind: String,
    call: Call,
    pending: Vec<Pending>,
    /// Ends the entry's expiry watch when the entry goes (resumed or expired).
    _watch: DropGuard,
}

/// The parked calls, by `requestState`.
#[derive(Default)]
pub(crate) struct Park {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Park {
    /// How many calls are parked.
    pub(crate) fn len(&self) -> usize {
        self.entries.locked().len()
    }

    /// Parks a call that asked for input; returns the `requestState` that resumes it.
    /// The entry goes when the call ends or its deadline passes.
    pub(crate) fn park(
        self: &Arc<Self>,
        bind: String,
        call: Call,
        pending: Vec<Pending>,
    ) -> String {
        let state = request_state();
        let watch = CancellationToken::new();
        let finished = call.finished.clone();
        let deadline = call.deadline + GRACE;
        {
            let mut entries = self.entries.locked();
            entries.insert(
                state.clone(),
                Entry {
                    bind,
                    call,
                    pending,
                    _watch: watch.clone().drop_guard(),
                },
            );
        }
        let park = self.clone();
        let key = state.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = watch.cancelled() => return,
                () = finished.cancelled() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
            let expired = park.entries.locked().remove(&key);
            if let Some(entry) = expired {
                tracing::debug!(upstream = %entry.call.upstream, "a parked call expired");
            }
        });
        state
    }

    /// Resumes the call parked under `state` with the client's answers: checks the
    /// binding and that every request has a well-formed answer (else the entry stays),
    /// then passes the answers to the upstream and hands the call back.
    pub(crate) fn resume(
        &self,
        state: &str,
        bind: &str,
        mut responses: InputResponses,
    ) -> Result<Call, GatewayError> {
        let mut entries = self.entries.locked();
        let Some(entry) = entries.get(state) else {
            return Err(GatewayError::InputRoundExpired);
        };
        if entry.bind != bind {
            return Err(GatewayError::InputRoundMismatch);
        }
        let mut answers = Vec::with_capacity(entry.pending.len());
        for pending in &entry.pending {
            let value =
                responses
                    .remove(&pending.key)
                    .ok_or_else(|| GatewayError::InputResponse {
                        key: pending.key.clone(),
                        reason: "it is missing from inputResponses".into(),
                    })?;
            let answer = pending
                .kind
                .answer(value)
                .map_err(|e| GatewayError::InputResponse {
                    key: pending.key.clone(),
                    reason: format!("it is not a valid {} result: {e}", pending.kind.label()),
                })?;
            answers.push(answer);
        }
        let entry = entries
            .remove(state)
            .ok_or(GatewayError::InputRoundExpired)?;
        drop(entries);
        for (pending, answer) in entry.pending.into_iter().zip(answers) {
            // The upstream may have given up on this request meanwhile: nothing to do.
            let _ = pending.answer.send(answer);
        }
        Ok(entry.call)
    }
}

/// A fresh `requestState`: 256 random bits, base64url.
fn request_state() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{CallToolResult, ElicitRequest, ElicitRequestParams, ServerRequest};

    fn elicit_request() -> ServerRequest {
        let params: ElicitRequestParams = serde_json::from_value(serde_json::json!({
            "message": "name?",
            "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}
        }))
        .expect("params");
        ServerRequest::ElicitRequest(ElicitRequest::new(params))
    }

    /// A call that asks once and returns what the client answered.
    fn asking_call(timeout: Duration) -> Call {
        Call::spawn(
            "up",
            ClientCapabilities::default(),
            timeout,
            |asker, cancel| async move {
                let answer = tokio::select! {
                    a = asker.ask(elicit_request()) => a,
                    () = cancel.cancelled() => return Err(GatewayError::Cancelled),
                };
                let text = match answer {
                    Ok(ClientResult::ElicitResult(r)) => format!("{:?}", r.content),
                    Ok(_) => "other".into(),
                    Err(e) => e.message.to_string(),
                };
                Ok(ServerResult::CallToolResult(CallToolResult::success(vec![
                    rmcp::model::ContentBlock::text(text),
                ])))
            },
        )
    }

    #[tokio::test]
    async fn a_parked_call_resumes_with_the_clients_answer_and_leaves_nothing() {
        let park = Arc::new(Park::default());
        let mut call = asking_call(Duration::from_secs(30));
        let Step::Asked(requests, pending) = call.next().await else {
            panic!("the call asks first");
        };
        assert_eq!(requests.keys().collect::<Vec<_>>(), ["elicitation-1"]);
        let state = park.park(binding("t", None), call, pending);
        assert!(state.len() >= 43, "{state}");
        assert_eq!(park.len(), 1);

        let mut responses = InputResponses::new();
        responses.insert(
            "elicitation-1".into(),
            serde_json::json!({"action": "accept", "content": {"name": "Ada"}}),
        );
        assert!(matches!(
            park.resume(&state, &binding("other", None), responses.clone()),
            Err(GatewayError::InputRoundMismatch)
        ));
        assert!(matches!(
            park.resume(&state, &binding("t", None), InputResponses::new()),
            Err(GatewayError::InputResponse { .. })
        ));
        assert!(matches!(
            park.resume("unknown", &binding("t", None), responses.clone()),
            Err(GatewayError::InputRoundExpired)
        ));
        assert_eq!(park.len(), 1, "refused retries leave the entry");
        let mut call = park
            .resume(&state, &binding("t", None), responses.clone())
            .expect("resumes");
        assert_eq!(park.len(), 0);
        let Step::Done(done) = call.next().await else {
            panic!("the call completes");
        };
        let Ok(ServerResult::CallToolResult(result)) = *done else {
            panic!("the call completes with a tool result");
        };
        let text = serde_json::to_string(&result).expect("json");
        assert!(text.contains("Ada"), "{text}");
        assert!(matches!(
            park.resume(&state, &binding("t", None), responses),
            Err(GatewayError::InputRoundExpired)
        ));
    }

    #[tokio::test]
    async fn a_parked_call_expires_and_its_request_fails_upstream() {
        let park = Arc::new(Park::default());
        // The call's own timeout: it gives up when its request is not answered.
        let mut call = Call::spawn(
            "up",
            ClientCapabilities::default(),
            Duration::from_millis(50),
            |asker, _cancel| async move {
                match tokio::time::timeout(Duration::from_millis(50), asker.ask(elicit_request()))
                    .await
                {
                    Ok(_) => Ok(ServerResult::empty(())),
                    Err(_) => Err(GatewayError::Cancelled),
                }
            },
        );
        let Step::Asked(_, pending) = call.next().await else {
            panic!("the call asks first");
        };
        let state = park.park(binding("t", None), call, pending);
        assert_eq!(park.len(), 1);
        tokio::time::timeout(Duration::from_secs(5), async {
            while park.len() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the entry goes when the call ends");
        assert!(matches!(
            park.resume(&state, &binding("t", None), InputResponses::new()),
            Err(GatewayError::InputRoundExpired)
        ));
    }

    fn accept(keys: &[&str]) -> InputResponses {
        keys.iter()
            .map(|k| {
                let answer = serde_json::json!({"action": "accept", "content": {"k": k}});
                ((*k).to_owned(), answer)
            })
            .collect()
    }

    /// Requests that arrive together go out in one round; one asked after an answer
    /// makes a round of its own, under a new state.
    #[tokio::test]
    async fn requests_together_share_a_round_and_later_ones_get_another() {
        let park = Arc::new(Park::default());
        let mut call = Call::spawn(
            "up",
            ClientCapabilities::default(),
            Duration::from_secs(30),
            |asker, _cancel| async move {
                let (a, b) = tokio::join!(asker.ask(elicit_request()), asker.ask(elicit_request()));
                let c = asker.ask(elicit_request()).await;
                let all = [a, b, c]
                    .iter()
                    .all(|r| matches!(r, Ok(ClientResult::ElicitResult(_))));
                Ok(ServerResult::CallToolResult(CallToolResult::success(vec![
                    rmcp::model::ContentBlock::text(format!("answered: {all}")),
                ])))
            },
        );
        let Step::Asked(requests, pending) = call.next().await else {
            panic!("the call asks first");
        };
        assert_eq!(
            requests.keys().collect::<Vec<_>>(),
            ["elicitation-1", "elicitation-2"]
        );
        let first = park.park(binding("t", None), call, pending);
        let mut call = park
            .resume(
                &first,
                &binding("t", None),
                accept(&["elicitation-1", "elicitation-2"]),
            )
            .expect("resumes");
        let Step::Asked(requests, pending) = call.next().await else {
            panic!("the call asks again");
        };
        assert_eq!(requests.len(), 1);
        let second = park.park(binding("t", None), call, pending);
        assert_ne!(first, second);
        let mut call = park
            .resume(&second, &binding("t", None), accept(&["elicitation-1"]))
            .expect("resumes");
        let Step::Done(done) = call.next().await else {
            panic!("the call completes");
        };
        let text = serde_json::to_string(&(*done).expect("a result")).expect("json");
        assert!(text.contains("answered: true"), "{text}");
        assert_eq!(park.len(), 0);
    }

    /// The client's answers are read as the result type of the upstream's request.
    #[test]
    fn answers_are_read_as_the_requests_result_type() {
        let roots = Kind::Roots
            .answer(serde_json::json!({"roots": [{"uri": "file:///work", "name": "work"}]}))
            .expect("roots");
        assert!(matches!(roots, ClientResult::ListRootsResult(r) if r.roots.len() == 1));
        let sampled = Kind::Sampling
            .answer(serde_json::json!({
                "role": "assistant", "model": "m",
                "content": {"type": "text", "text": "Paris"}
            }))
            .expect("sampling");
        assert!(matches!(sampled, ClientResult::CreateMessageResult(r) if r.model == "m"));
        let elicited = Kind::Elicitation
            .answer(serde_json::json!({"action": "decline"}))
            .expect("elicitation");
        assert!(matches!(elicited, ClientResult::ElicitResult(_)));
        assert!(
            Kind::Roots
                .answer(serde_json::json!({"action": "accept"}))
                .is_err()
        );
        assert!(
            Kind::Elicitation
                .answer(serde_json::json!({"roots": []}))
                .is_err()
        );
    }

    #[test]
    fn request_states_are_long_and_distinct() {
        let a = request_state();
        let b = request_state();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(caller_binding(None).is_empty());
    }
}
