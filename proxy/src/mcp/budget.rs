//! Call budgets on the data path: a grant may allow at most N `tools/call`s per clock
//! hour (the person chose it on the consent screen; the mint put it in the token's
//! authority block, so it is known here without a lookup).
//!
//! Each call the token allows is counted once, just before it is forwarded: at the edge
//! when the edge authorized it ([`super::gateway::Gateway::authorize_call`]; the direct
//! path and the handler then count nothing), otherwise in the handler after its own
//! decision — for a critical call, only once a person approved it and it is forwarded.
//! Past the budget the call is refused with [`BUDGET_EXHAUSTED`] (`-32014`): no scope a
//! person could grant helps, so it is a JSON-RPC error (HTTP 200 at the edge), not a 403.
//!
//! Counting is in memory (`warrant_consent::budgets`); [`spawn_flusher`] shares the
//! counts with the other replicas through the database about once a second.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use rmcp::model::ErrorCode;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use warrant_consent::budgets::{Budgets, Exhausted};
use warrant_idp::clock::Clock;

use super::auth::{Authorized, Caller};
use super::gateway::Gateway;

/// JSON-RPC code of a call refused because its grant's call budget for the hour is used
/// up; `data` has `budget`, `used` and `resetsAt` (RFC 3339).
pub const BUDGET_EXHAUSTED: ErrorCode = ErrorCode(-32014);

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
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": BUDGET_EXHAUSTED.0, "message": message, "data": data },
    });
    axum::Json(body).into_response()
}

impl Gateway {
    /// Counts a `tools/call` of `server`'s `tool` against its grant's budget, unless the
    /// edge authorized (and so counted) this very call.
    pub(super) fn charge(
        &self,
        context: &RequestContext<RoleServer>,
        server: &str,
        tool: &str,
    ) -> Result<(), ErrorData> {
        let Some(auth) = self.auth() else {
            return Ok(());
        };
        let Some(parts) = context.extensions.get::<http::request::Parts>() else {
            return Ok(());
        };
        if parts
            .extensions
            .get::<Authorized>()
            .is_some_and(|a| a.server == server && a.tool == tool)
        {
            return Ok(());
        }
        let Some(caller) = parts.extensions.get::<Caller>() else {
            return Ok(());
        };
        auth.charge(caller)
            .map_err(|exhausted| error(&exhausted, auth.now()))
    }
}

/// Shares this replica's counts with the others about once a second (and once more
/// when the gateway stops), until `stop`.
pub fn spawn_flusher(budgets: &Budgets, clock: Arc<dyn Clock>, stop: CancellationToken) {
    let budgets = budgets.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            match budgets.flush(clock.unix()).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("call budget counts stored again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "cannot store the call budget counts; each replica counts its own calls until it can");
                }
                Err(_) => {}
            }
            if stopping {
                return;
            }
        }
    });
}
