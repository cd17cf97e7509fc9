//! Stage 9, record the outcome: how the call ended (status, latency, sizes). Counted
//! today only as the direct path's call counter; the audit ledger records it here.

/// Records how a call ended (nothing beyond the counters yet).
pub(crate) fn recorded(_status: http::StatusCode) {}

/// Records how a call forwarded through rmcp ended (nothing yet).
pub(crate) fn recorded_result(_result: &Result<rmcp::model::CallToolResponse, rmcp::ErrorData>) {}
