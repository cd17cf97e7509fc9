//! Call budgets on the data path: a grant may allow at most N `tools/call`s per clock
//! hour (the person chose it on the consent screen; the mint put it in the token's
//! authority block, so it is known here without a lookup).
//!
//! Each call the token allows is counted once, just before it is forwarded: at the edge
//! when the edge authorized it (`server::stage::decide`; the direct
//! path and the handler then count nothing), otherwise in the handler after its own
//! decision — for a critical call, only once a person approved it and it is forwarded.
//! Past the budget the call is refused with [`BUDGET_EXHAUSTED`] (`-32014`): no scope a
//! person could grant helps, so it is a JSON-RPC error (HTTP 200 at the edge), not a 403.
//!
//! Counting is in memory (`warrant_consent::budgets`); [`spawn_flusher`] shares the
//! counts with the other replicas through the database about once a second.

use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;
use rmcp::ErrorData;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use warrant_consent::budgets::{Budgets, Exhausted};

use warrant_idp::clock::Clock;

use crate::periodic::Periodic;
use crate::protocol::codes::{BUDGET_EXHAUSTED, rpc_error};

/// How often the counts are shared with the other replicas.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The refusal's message and data.
fn words(exhausted: &Exhausted, now: i64) -> (String, Value) {
    let data = json!({
        "budget": exhausted.budget,
        "used": exhausted.used,
        "resetsAt": exhausted.resets_at_text(),
    });
    (exhausted.describe(now), data)
}

/// The refusal as a JSON-RPC error of the handler.
pub(crate) fn error(exhausted: &Exhausted, now: i64) -> ErrorData {
    let (message, data) = words(exhausted, now);
    ErrorData::new(BUDGET_EXHAUSTED, message, Some(data))
}

/// The refusal at the edge: HTTP 200 with the JSON-RPC error for request `id`.
pub(crate) fn edge_refusal(exhausted: &Exhausted, id: Value, now: i64) -> Response {
    let (message, data) = words(exhausted, now);
    rpc_error(StatusCode::OK, id, BUDGET_EXHAUSTED, message, Some(data))
}

/// Shares this replica's counts with the others about once a second (and once more
/// when the gateway stops), until `stop`.
pub fn spawn_flusher(budgets: &Budgets, clock: Arc<dyn Clock>, stop: CancellationToken) {
    let budgets = budgets.clone();
    Periodic::every(
        FLUSH_EVERY,
        "cannot store the call budget counts; each replica counts its own calls until it can",
        "call budget counts stored again",
    )
    .once_more_on_stop()
    .spawn(stop, move || {
        let (budgets, now) = (budgets.clone(), clock.unix());
        async move { budgets.flush(now).await }
    });
}
