//! The `/mcp` endpoint: rmcp's Streamable HTTP service in front of the [`Gateway`],
//! with the gateway's own checks first: DNS-rebinding protection (`Host` and `Origin`
//! allow-lists), the body-size limit, and a `MCP-Protocol-Version` check that names the
//! revisions Warrant serves.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Gateway;
use crate::config::Config;

/// JSON-RPC code of the 2026-07-28 `UnsupportedProtocolVersionError`.
const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;
/// The first revision without `initialize`: a probe for it from a client is answered
/// like a server that predates it, so the client falls back to `initialize`.
const FIRST_STATELESS_REVISION: &str = "2026-07-28";

/// The `/mcp` router (to be nested by the application).
pub fn router(gateway: Gateway, config: &Config, shutdown: CancellationToken) -> axum::Router {
    let server = &config.server;
    let mut origins: Vec<String> = server.allowed_origins.clone();
    for host in &server.allowed_hosts {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        origins.push(format!("http://{host}:*"));
        origins.push(format!("https://{host}:*"));
    }
    let rmcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(server.allowed_hosts.clone())
        .with_allowed_origins(origins)
        .with_max_request_body_bytes(server.max_body_bytes)
        .with_cancellation_token(shutdown)
        .with_legacy_session_mode(true);
    let service = StreamableHttpService::new(
        move || Ok(gateway.clone()),
        Arc::new(LocalSessionManager::default()),
        rmcp_config,
    );
    let versions: Arc<Vec<String>> = Arc::new(config.mcp.protocol_versions.clone());
    axum::Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            server.max_body_bytes,
            check_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            versions,
            check_protocol_version,
        ))
}

/// A JSON-RPC error response with no request id (the request could not be read).
fn rpc_error(status: StatusCode, code: i32, message: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Reads a POST body within the size limit and checks it is one JSON-RPC message, so
/// that an oversized body gets 413 and a malformed one a JSON-RPC parse error (400)
/// with the reason, before the protocol layer sees it.
async fn check_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    if request.method() != http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                format!(
                    "the request body is larger than the limit of {limit} bytes (server.max_body_bytes)"
                ),
            );
        }
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(message)) => {
            if message.get("jsonrpc").and_then(|v| v.as_str()) != Some("2.0") {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    -32600,
                    "Invalid Request: a JSON-RPC 2.0 message needs \"jsonrpc\": \"2.0\"".into(),
                );
            }
        }
        Ok(serde_json::Value::Array(_)) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: JSON-RPC batches are not supported (removed in MCP 2025-06-18); send one message per request".into(),
            );
        }
        Ok(_) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: expected a JSON-RPC message object".into(),
            );
        }
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, -32700, format!("Parse error: {e}")),
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Refuses a `MCP-Protocol-Version` Warrant does not serve, with the list it does.
async fn check_protocol_version(
    State(versions): State<Arc<Vec<String>>>,
    request: Request,
    next: Next,
) -> Response {
    // Every value must be served (a request may carry the header twice).
    let unsupported = request
        .headers()
        .get_all("mcp-protocol-version")
        .iter()
        .map(|v| v.to_str().unwrap_or("(not text)"))
        .find(|v| !versions.iter().any(|s| s == v))
        .map(str::to_owned);
    let Some(requested) = unsupported else {
        return next.run(request).await;
    };
    let supported = versions.join(", ");
    let modern_probe = requested.as_str() >= FIRST_STATELESS_REVISION
        && !versions
            .iter()
            .any(|v| v.as_str() >= FIRST_STATELESS_REVISION);
    // A modern client probing a gateway configured for older revisions only must see
    // an ordinary error (not the modern -32022) to fall back to `initialize`.
    let code = if modern_probe {
        -32000
    } else {
        UNSUPPORTED_PROTOCOL_VERSION
    };
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": code,
            "message": format!("Bad Request: unsupported MCP-Protocol-Version {requested:?}; this gateway serves {supported}"),
            "data": { "requested": requested, "supported": *versions },
        }
    });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}
