//! Stage 9, record the outcome: how an allowed call ended (ok, a tool error, an
//! upstream error, a timeout), how long it took and how large its answer was, in the
//! audit ledger next to the call's own record, and in the metrics. Written without
//! waiting: the answer is not held for it.

use axum::body::Body;
use axum::response::Response;
use http_body_util::BodyExt;
use rmcp::ErrorData;
use rmcp::model::CallToolResponse;
use serde::Deserialize;
use serde::de::IgnoredAny;
use warrant_consent::ledger::{Entry, Kind, Ledger, Outcome};

use std::sync::Arc;

use super::record::Recorded;
use crate::metrics::Metrics;
use crate::protocol::codes::REQUEST_TIMEOUT;
use crate::server::gateway::Gateway;

/// The answer of a direct call, watched as it goes to the client: once it has gone
/// (or the client left), its outcome is recorded.
pub(crate) fn watched(gateway: &Gateway, recorded: Option<Recorded>, answer: Response) -> Response {
    let Some(recorded) = recorded else {
        return answer;
    };
    let (parts, body) = answer.into_parts();
    let mut watch = Watch {
        ledger: gateway.ledger().cloned(),
        metrics: gateway.metrics().clone(),
        recorded: Some(recorded),
        status: parts.status.as_u16(),
        bytes: 0,
        outcome: None,
    };
    // Frame by frame, keeping the body's size: an answer of known length still goes
    // out with its `Content-Length`, in one write.
    let watched = body.map_frame(move |frame| {
        if let Some(bytes) = frame.data_ref() {
            watch.see(bytes);
        }
        frame
    });
    Response::from_parts(parts, Body::new(watched))
}

/// Records how a call forwarded through rmcp ended.
pub(crate) fn recorded_result(
    gateway: &Gateway,
    recorded: Option<Recorded>,
    result: &Result<CallToolResponse, ErrorData>,
) {
    let Some(recorded) = recorded else {
        return;
    };
    let (outcome, bytes) = match result {
        Ok(CallToolResponse::Complete(r)) => {
            let outcome = if r.is_error == Some(true) {
                Outcome::ToolError
            } else {
                Outcome::Ok
            };
            (outcome, json_len(r))
        }
        // Input asked of the client, or a task: the call goes on beyond this answer.
        Ok(CallToolResponse::InputRequired(r)) => (Outcome::Ok, json_len(r)),
        Ok(CallToolResponse::Task(r)) => (Outcome::Ok, json_len(r)),
        Ok(_) => (Outcome::Ok, 0),
        Err(e) => (error_outcome(e.code.0), json_len(e)),
    };
    note(
        gateway.ledger(),
        gateway.metrics(),
        recorded,
        outcome,
        None,
        bytes,
    );
}

/// Counts how the call ended, and records it next to the call's record.
fn note(
    ledger: Option<&Ledger>,
    metrics: &Metrics,
    recorded: Recorded,
    outcome: Outcome,
    status: Option<u16>,
    bytes: u64,
) {
    let took = recorded.started.elapsed();
    metrics.ended(
        recorded.entry.upstream.as_deref().unwrap_or_default(),
        outcome,
        took,
    );
    let (Some(ledger), Some(seq)) = (ledger, recorded.seq) else {
        return;
    };
    let call = recorded.entry;
    let mut entry = Entry::new(Kind::CallOutcome);
    entry.token = call.token;
    entry.upstream = call.upstream;
    entry.tool = call.tool;
    entry.risk = call.risk;
    entry.detail.call = Some(seq);
    entry.detail.outcome = Some(outcome);
    entry.detail.status = status;
    entry.detail.latency_us = Some(took.as_micros() as u64);
    entry.detail.result_bytes = Some(bytes);
    ledger.note(entry);
}

/// The size of `value` as JSON, without keeping the JSON.
fn json_len(value: &impl serde::Serialize) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

fn error_outcome(code: i32) -> Outcome {
    if code == REQUEST_TIMEOUT.0 {
        Outcome::Timeout
    } else {
        Outcome::UpstreamError
    }
}

/// What is seen of a direct call's answer as it goes by.
struct Watch {
    ledger: Option<Ledger>,
    metrics: Arc<Metrics>,
    recorded: Option<Recorded>,
    status: u16,
    bytes: u64,
    /// How the call ended, once its answer went by.
    outcome: Option<Outcome>,
}

impl Watch {
    fn see(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if self.outcome.is_none() {
            self.outcome = outcome_of(chunk);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(recorded) = self.recorded.take() {
            // No answer went by: the stream ended (or the client left) before it.
            let outcome = self.outcome.unwrap_or(Outcome::UpstreamError);
            note(
                self.ledger.as_ref(),
                &self.metrics,
                recorded,
                outcome,
                Some(self.status),
                self.bytes,
            );
        }
    }
}

/// The outcome a chunk of a direct answer carries, if it holds the call's answer:
/// a whole JSON-RPC message, or whole server-sent events (each chunk is, see
/// `upstream::direct`). Messages other than an answer (a notification, a request to the
/// client) carry none.
fn outcome_of(chunk: &[u8]) -> Option<Outcome> {
    let first = chunk.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first == b'{' {
        return answer_outcome(chunk);
    }
    // Events: the `data:` lines of each, joined by newlines.
    let text = std::str::from_utf8(chunk).ok()?;
    let mut outcome = None;
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if !data.is_empty() {
            outcome = answer_outcome(data.join("\n").as_bytes()).or(outcome);
        }
    }
    outcome
}

fn answer_outcome(json: &[u8]) -> Option<Outcome> {
    #[derive(Deserialize)]
    struct Message {
        method: Option<IgnoredAny>,
        result: Option<ResultHead>,
        error: Option<ErrorHead>,
    }
    #[derive(Deserialize)]
    struct ResultHead {
        #[serde(rename = "isError")]
        is_error: Option<bool>,
    }
    #[derive(Deserialize)]
    struct ErrorHead {
        code: i32,
    }
    let message: Message = serde_json::from_slice(json).ok()?;
    if message.method.is_some() {
        return None;
    }
    match (message.result, message.error) {
        (Some(r), _) if r.is_error == Some(true) => Some(Outcome::ToolError),
        (Some(_), _) => Some(Outcome::Ok),
        (None, Some(e)) => Some(error_outcome(e.code)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_read_from_the_answer_as_it_goes_by() {
        let ok = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\"isError\":true"}]}}"#;
        assert_eq!(outcome_of(ok), Some(Outcome::Ok));
        let tool = br#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[]}}"#;
        assert_eq!(outcome_of(tool), Some(Outcome::ToolError));
        let timeout = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"late"}}"#;
        assert_eq!(outcome_of(timeout), Some(Outcome::Timeout));
        let failed = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"boom"}}"#;
        assert_eq!(outcome_of(failed), Some(Outcome::UpstreamError));
        let progress = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
        assert_eq!(outcome_of(progress), None);
        let sse = b"event: message\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\n\
                    data: \"result\":{\"isError\":true}}\n\n";
        assert_eq!(outcome_of(sse), Some(Outcome::ToolError));
    }
}
