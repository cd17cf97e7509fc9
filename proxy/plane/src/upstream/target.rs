//! Where the direct path sends a lane's calls: the upstream's address, its connections
//! and its configured headers.

use http::{HeaderMap, HeaderValue};

use super::connections::Connections;

/// Where a lane's direct calls go: a plain-HTTP Streamable HTTP upstream.
pub(crate) struct Target {
    pub(crate) connections: Connections,
    /// The upstream's path and query, parsed once.
    pub(crate) uri: http::Uri,
    pub(crate) host: HeaderValue,
    /// The upstream's configured headers (credentials), resolved.
    pub(crate) headers: HeaderMap,
}

impl Target {
    /// A target for `url`, if the direct path can reach it (plain `http`).
    pub(crate) fn new(
        url: &url::Url,
        headers: HeaderMap,
        connect_timeout: std::time::Duration,
        max_connections: usize,
    ) -> Option<Self> {
        if url.scheme() != "http" {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let host_header = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str()?),
            None => url.host_str()?.to_owned(),
        };
        Some(Self {
            connections: Connections::new(authority, connect_timeout, max_connections),
            uri: http::Uri::try_from(path).ok()?,
            host: HeaderValue::from_str(&host_header).ok()?,
            headers,
        })
    }
}
