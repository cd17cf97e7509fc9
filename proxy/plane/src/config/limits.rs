//! `[mcp]` limits that keep one client from exhausting the gateway: memory held by
//! request bodies being received, and MCP sessions.

use std::time::Duration;

use super::raw::RawMcp;
use super::report::Problem;
use super::value::duration;

const DEFAULT_BODY_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;
const DEFAULT_BODY_BYTES_IN_FLIGHT_PER_CLIENT: usize = 16 * 1024 * 1024;
const DEFAULT_SESSIONS_PER_CLIENT: usize = 64;
const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The checked limits of `[mcp]`.
#[derive(Debug, Clone)]
pub struct McpLimits {
    /// Bytes of request bodies being received at once, all clients together.
    pub max_body_bytes_in_flight: usize,
    /// Bytes of request bodies being received at once from one client address.
    pub max_body_bytes_in_flight_per_client: usize,
    /// Open MCP sessions per agent of a person (per client address without tokens).
    pub max_sessions_per_client: usize,
    /// A session without a request (and without an open stream) for this long ends.
    pub session_idle_timeout: Duration,
}

impl Default for McpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes_in_flight: DEFAULT_BODY_BYTES_IN_FLIGHT,
            max_body_bytes_in_flight_per_client: DEFAULT_BODY_BYTES_IN_FLIGHT_PER_CLIENT,
            max_sessions_per_client: DEFAULT_SESSIONS_PER_CLIENT,
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
        }
    }
}

/// Reads the limits of `raw`, with a problem for each value that cannot be one.
pub(super) fn validate_limits(raw: &RawMcp, problems: &mut Vec<Problem>) -> McpLimits {
    let defaults = McpLimits::default();
    let count =
        |value: Option<u64>, key: &str, default: usize, problems: &mut Vec<Problem>| match value {
            Some(0) => {
                problems.push(Problem::new(format!("mcp.{key}"), "must be at least 1"));
                default
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => default,
        };
    McpLimits {
        max_body_bytes_in_flight: count(
            raw.max_body_bytes_in_flight,
            "max_body_bytes_in_flight",
            defaults.max_body_bytes_in_flight,
            problems,
        ),
        max_body_bytes_in_flight_per_client: count(
            raw.max_body_bytes_in_flight_per_client,
            "max_body_bytes_in_flight_per_client",
            defaults.max_body_bytes_in_flight_per_client,
            problems,
        ),
        max_sessions_per_client: count(
            raw.max_sessions_per_client,
            "max_sessions_per_client",
            defaults.max_sessions_per_client,
            problems,
        ),
        session_idle_timeout: duration(
            raw.session_idle_timeout.clone(),
            "mcp.session_idle_timeout",
            defaults.session_idle_timeout,
            problems,
        ),
    }
}
