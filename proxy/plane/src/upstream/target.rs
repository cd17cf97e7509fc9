//! Where the direct path sends a lane's calls: the upstream's address, its connections,
//! its configured headers, and the upstream session id its transport last saw.

use std::sync::{Arc, RwLock};

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
            connections: Connections::new(authority, connect_timeout),
            uri: http::Uri::try_from(path).ok()?,
            host: HeaderValue::from_str(&host_header).ok()?,
            headers,
        })
    }
}

/// Where the lane keeps the upstream's session id (recorded by the rmcp transport).
pub(crate) type SessionSlot = Arc<UpstreamSession>;

/// The upstream's session id, and the header that carries it on the direct path.
#[derive(Default)]
pub(crate) struct UpstreamSession {
    /// The id, and its header value (`None` if the id cannot be one).
    current: RwLock<Option<(Arc<str>, Option<HeaderValue>)>>,
}

impl UpstreamSession {
    /// Records the id the upstream issued (or that the transport used).
    pub(crate) fn record(&self, id: &str) {
        let same = |slot: &Option<(Arc<str>, Option<HeaderValue>)>| {
            slot.as_ref().is_some_and(|(known, _)| known.as_ref() == id)
        };
        if self.current.read().is_ok_and(|slot| same(&slot)) {
            return;
        }
        if let Ok(mut slot) = self.current.write()
            && !same(&slot)
        {
            *slot = Some((Arc::from(id), HeaderValue::from_str(id).ok()));
        }
    }

    /// Forgets the id (the session ended).
    pub(crate) fn clear(&self) {
        if let Ok(mut slot) = self.current.write() {
            *slot = None;
        }
    }

    pub(crate) fn is_known(&self) -> bool {
        self.current.read().is_ok_and(|slot| slot.is_some())
    }

    /// The header value of the id, if one is known and can be sent.
    pub(crate) fn header(&self) -> Option<HeaderValue> {
        self.current.read().ok()?.as_ref()?.1.clone()
    }
}
