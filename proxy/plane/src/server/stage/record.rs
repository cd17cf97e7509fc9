//! Stage 6, record: the decision is written down in the audit ledger before the call
//! goes upstream, and the call is not forwarded when it cannot be (fail closed). A
//! refusal is recorded too, without waiting (nothing goes upstream).

use std::sync::Arc;
use std::time::Instant;

use warrant_consent::ledger::{Entry, Kind, Ledger};
use warrant_consent::token::Risk;

use crate::enforce::auth::{Authorized, Caller, Refusal};
use crate::protocol::error::GatewayError;
use crate::server::gateway::Gateway;

/// An allowed call as recorded: what its outcome refers to.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// The number of the call's record in this process's chain (`None`: no ledger).
    pub(crate) seq: Option<i64>,
    pub(crate) started: Instant,
    /// The call's own record (who, the upstream, the tool).
    pub(crate) entry: Entry,
}

/// Records that a call of the tool exposed as `name` is allowed and about to be
/// forwarded; returns once the record is written (at once without a ledger), and counts
/// it. An error when the ledger cannot be written: the call must not go.
pub(crate) async fn allowed(
    gateway: &Gateway,
    caller: Option<&Caller>,
    call: Option<&Authorized>,
    name: &str,
    args: Option<&str>,
) -> Result<Recorded, GatewayError> {
    let started = Instant::now();
    let routed;
    let call = match call {
        Some(call) => Some(call),
        None => {
            routed = gateway.routed(name);
            routed.as_ref()
        }
    };
    let mut entry = call_entry(caller, call, name);
    entry.allowed = Some(true);
    let metrics = gateway.metrics();
    let upstream = entry.upstream.clone().unwrap_or_default();
    let Some(ledger) = gateway.ledger() else {
        metrics.decided(&upstream, true);
        return Ok(Recorded {
            seq: None,
            started,
            entry,
        });
    };
    entry.args = args.map(Arc::from);
    let kept = entry.clone();
    match ledger.append(entry).await {
        Ok(written) => {
            metrics.decided(&upstream, true);
            Ok(Recorded {
                seq: Some(written.seq),
                started,
                entry: kept,
            })
        }
        Err(e) => {
            metrics.decided(&upstream, false);
            let reason = e.to_string();
            refuse(ledger, kept, format!("not forwarded: {reason}"));
            Err(GatewayError::LedgerUnavailable(match e {
                warrant_consent::ledger::LedgerError::Unavailable(why) => why,
                other => other.to_string(),
            }))
        }
    }
}

/// Records that a call was refused, and why (without waiting: nothing went upstream).
pub(crate) fn refused(
    gateway: &Gateway,
    caller: Option<&Caller>,
    server: &str,
    tool: &str,
    risk: Option<Risk>,
    reason: &str,
) {
    gateway.metrics().decided(server, false);
    let Some(ledger) = gateway.ledger() else {
        return;
    };
    let mut entry = Entry::new(Kind::Call);
    entry.token = caller.map(|c| c.token.clone());
    entry.upstream = Some(server.into());
    entry.tool = Some(tool.into());
    entry.risk = risk;
    refuse(ledger, entry, reason.to_owned());
}

/// Records a refusal made at the edge (see [`refused`]).
pub(crate) fn refused_at_edge(
    gateway: &Gateway,
    caller: &Caller,
    call: &Authorized,
    refusal: &Refusal,
) {
    let reason = match refusal {
        Refusal::Insufficient { decision, .. } => decision.reason.clone(),
        Refusal::Budget(exhausted) => format!(
            "the grant's call budget is used up: {} of {} calls this hour",
            exhausted.used, exhausted.budget
        ),
        other => format!("{other:?}"),
    };
    refused(
        gateway,
        Some(caller),
        &call.server,
        &call.tool,
        Some(call.risk),
        &reason,
    );
}

fn refuse(ledger: &Ledger, mut entry: Entry, reason: String) {
    entry.allowed = Some(false);
    entry.detail.reason = Some(reason);
    ledger.note(entry);
}

/// The record of a call: who (the token), the upstream and the tool's name there where
/// the decision named them, else the name the client called.
fn call_entry(caller: Option<&Caller>, call: Option<&Authorized>, name: &str) -> Entry {
    let mut entry = Entry::new(Kind::Call);
    entry.token = caller.map(|c| c.token.clone());
    match call {
        Some(call) => {
            entry.upstream = Some(call.server.clone());
            entry.tool = Some(call.tool.clone());
            entry.risk = Some(call.risk);
        }
        None => entry.tool = Some(name.into()),
    }
    entry
}
