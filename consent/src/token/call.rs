//! The facts of one call, as the proxy knows them: owned ([`CallFacts`], what a Datalog
//! run reads) or borrowed ([`CallRef`], enough to find a remembered decision).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::restriction::{CallArgs, Risk};

/// The most arguments a call may carry into the Datalog run.
pub const MAX_ARGS: usize = 256;

/// The facts of one call, as the proxy knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFacts {
    /// Unix seconds.
    pub now: i64,
    /// The canonical URL of this gateway's MCP endpoint (compared with the audience).
    pub resource: String,
    pub server: String,
    pub tool: String,
    /// The tool's risk class (an unclassified tool counts as `critical`).
    pub risk: Risk,
    /// The user's live trust ceiling, when one applies.
    pub ceiling: Option<Risk>,
    pub args: CallArgs,
    /// The person's email, to name them in a refusal (not a fact of the Datalog run; a
    /// shared copy, so stating a call allocates nothing for it).
    #[serde(skip)]
    pub person: Option<Arc<str>>,
}

/// The facts of one call, borrowed: enough to find a remembered decision
/// ([`super::remembered`]) without copying anything.
#[derive(Debug, Clone, Copy)]
pub struct CallRef<'a> {
    pub now: i64,
    pub resource: &'a str,
    pub server: &'a str,
    pub tool: &'a str,
    pub risk: Risk,
    pub ceiling: Option<Risk>,
    pub args: &'a CallArgs,
}

impl<'a> CallRef<'a> {
    /// The borrowed view of `call`.
    pub fn of(call: &'a CallFacts) -> Self {
        Self {
            now: call.now,
            resource: &call.resource,
            server: &call.server,
            tool: &call.tool,
            risk: call.risk,
            ceiling: call.ceiling,
            args: &call.args,
        }
    }
}

/// The arguments of a `tools/call` as the token sees them: strings as they are,
/// numbers and booleans as their JSON text; `null`, arrays and objects are left out (a
/// constraint on them refuses the call).
pub fn call_args(arguments: &serde_json::Map<String, serde_json::Value>) -> CallArgs {
    arguments
        .iter()
        .filter_map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((name.clone(), text))
        })
        .collect()
}
