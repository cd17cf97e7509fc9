//! The HTTP header names of MCP's Streamable HTTP transport, written once.

use http::HeaderName;

pub(crate) static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
pub(crate) static MCP_PROTOCOL_VERSION: HeaderName =
    HeaderName::from_static("mcp-protocol-version");
/// 2026-07-28: the method of a request, repeated in a header.
pub(crate) static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// 2026-07-28: the tool, prompt or resource a request names, repeated in a header.
pub(crate) static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// The session id a request names, if any.
pub(crate) fn session_id(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(&MCP_SESSION_ID).and_then(|v| v.to_str().ok())
}
