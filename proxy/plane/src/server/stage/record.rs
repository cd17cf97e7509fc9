//! Stage 6, record: the decision is written down before the call goes upstream. Today a
//! decision is a log line (`enforce::auth`: `call allowed` at debug, `call refused` at
//! info); the audit ledger writes it durably here, and refuses the call when it cannot.

use crate::enforce::auth::Authorized;

/// Records that `call` was allowed and is about to be forwarded (nothing beyond the
/// log line yet).
pub(crate) fn allowed(_call: Option<&Authorized>) {}
