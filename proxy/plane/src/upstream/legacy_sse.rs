//! Client transport for the legacy MCP **HTTP+SSE** protocol (spec revision 2024-11-05).
//!
//! rmcp 0.11 removed its SSE client, but some upstream servers still speak only this protocol:
//!
//! 1. The client `GET`s the SSE URL (e.g. `https://host/sse`) and keeps the stream open.
//! 2. The server sends an `endpoint` event whose data is the URL (relative or absolute) to which
//!    the client must `POST` its JSON-RPC messages, usually `/message?sessionId=…`.
//! 3. Each `POST` is answered with `202 Accepted`; the JSON-RPC responses, requests and
//!    notifications from the server arrive as `message` events on the SSE stream.
//!
//! [`SseClientTransport`] implements [`Transport<RoleClient>`], so it can be served directly:
//!
//! ```ignore
//! let transport = SseClientTransport::connect(SseClientConfig::new("http://127.0.0.1:3001/sse")).await?;
//! let client = ().serve(transport).await?;      // rmcp::ServiceExt
//! ```
//!
//! There is no reconnection: the legacy session lives and dies with the `GET` stream. When the
//! stream ends or fails, [`Transport::receive`] returns `None`, the rmcp service stops with
//! `QuitReason::Closed`, and the owner (the gateway's supervisor) is expected to reconnect.

use std::{borrow::Cow, sync::Arc, time::Duration};

use futures::{StreamExt, stream::BoxStream};
use reqwest::{
    Client, StatusCode,
    header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderMap},
};
use rmcp::{
    RoleClient,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::Transport,
};
use sse_stream::{Sse, SseStream};
use url::Url;

/// Default bound on the size of one SSE event (the same default rmcp uses).
pub(crate) const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;
/// Overrides any total timeout of a caller-supplied client for the long-lived `GET`.
/// (tokio clamps sleeps to ~30 years, so this is safe.)
const NO_TIMEOUT: Duration = Duration::from_hours(10 * 365 * 24);
/// How much of an error response body is kept in [`SseTransportError`] messages.
const BODY_EXCERPT_BYTES: usize = 512;

type EventStream = BoxStream<'static, Result<Sse, sse_stream::Error>>;

/// Connection settings for [`SseClientTransport::connect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub(crate) struct SseClientConfig {
    /// URL of the SSE endpoint, e.g. `http://127.0.0.1:3001/sse`. Must be `http` or `https`.
    pub(crate) url: String,
    /// Extra headers (e.g. `Authorization`) sent on the `GET` and on every `POST`.
    pub(crate) headers: HeaderMap,
    /// Deadline for the whole handshake: `GET` response headers **and** the `endpoint` event.
    pub(crate) connect_timeout: Duration,
    /// Total deadline for each `POST` (until the `202` arrives).
    pub(crate) post_timeout: Duration,
    /// Largest SSE event accepted; a bigger one closes the transport.
    pub(crate) max_event_size: usize,
    /// Client to use. When `None`, one is built with `connect_timeout` and `TCP_NODELAY`.
    /// A supplied client must not have a `read_timeout` shorter than the server's idle gaps
    /// (that would cut the stream); its total `timeout` is overridden for the `GET`.
    pub(crate) client: Option<Client>,
}

impl SseClientConfig {
    /// Settings with defaults: no extra headers, 10 s connect timeout, 30 s per-`POST` timeout.
    #[must_use]
    pub(crate) fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: HeaderMap::new(),
            connect_timeout: Duration::from_secs(10),
            post_timeout: Duration::from_secs(30),
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            client: None,
        }
    }
    /// Sets the handshake deadline (see [`SseClientConfig::connect_timeout`]).
    #[must_use]
    pub(crate) fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// Sets the per-`POST` deadline.
    #[must_use]
    pub(crate) fn post_timeout(mut self, timeout: Duration) -> Self {
        self.post_timeout = timeout;
        self
    }
    /// Uses a caller-built client (remember the rustls provider must be installed first,
    /// and consider [`same_origin_redirects`]).
    #[must_use]
    pub(crate) fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }
}

/// Errors of the legacy SSE transport. URLs in messages have their query, fragment and
/// credentials removed, because the query carries the session id (or sometimes an API key).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SseTransportError {
    #[error("invalid SSE URL: {0}")]
    InvalidUrl(#[source] url::ParseError),
    #[error("unsupported SSE URL scheme `{0}` (expected http or https)")]
    UnsupportedScheme(String),
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("could not connect to SSE endpoint {url}: {}", root_cause(source))]
    Connect { url: String, source: reqwest::Error },
    #[error("SSE endpoint {url} did not answer within {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("SSE endpoint {url} refused the connection with HTTP {status}: {body}")]
    ConnectRejected {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error(
        "SSE endpoint {url} answered with content type `{content_type}`, not text/event-stream"
    )]
    NotEventStream { url: String, content_type: String },
    #[error("SSE endpoint {url} sent no `endpoint` event within {timeout:?}")]
    EndpointTimeout { url: String, timeout: Duration },
    #[error("the `endpoint` event is not a valid URL reference: {0}")]
    InvalidEndpoint(#[source] url::ParseError),
    #[error("refusing message endpoint {endpoint}: its origin differs from the SSE URL {sse_url}")]
    CrossOriginEndpoint { endpoint: String, sse_url: String },
    #[error("SSE stream ended before the `endpoint` event")]
    StreamEnded,
    #[error("SSE stream failed: {0}")]
    Stream(#[source] sse_stream::Error),
    #[error("POST to {url} failed: {}", root_cause(source))]
    Post { url: String, source: reqwest::Error },
    #[error("POST to {url} got no answer within {timeout:?}")]
    PostTimeout { url: String, timeout: Duration },
    #[error("POST to {url} rejected with HTTP {status}: {body}")]
    PostRejected {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("the SSE transport is closed")]
    Closed,
}

/// rmcp client transport for the legacy HTTP+SSE protocol. Create it with [`Self::connect`].
pub(crate) struct SseClientTransport {
    events: EventStream,
    poster: Arc<Poster>,
    closed: bool,
}

/// Everything a `POST` needs; shared by the `'static` futures returned from `send`.
struct Poster {
    client: Client,
    url: Url,
    headers: HeaderMap,
    timeout: Duration,
}

impl SseClientTransport {
    /// Opens the SSE stream, waits for the `endpoint` event and checks that the message URL
    /// has the same origin (scheme, host, port) as the SSE URL.
    ///
    /// Without a caller-supplied client this builds one, installing rustls' `ring` provider as
    /// the process default if no provider is installed yet.
    ///
    /// # Errors
    /// Any [`SseTransportError`] except `Post*` and `Closed`: bad URL, connection failure or
    /// timeout, non-2xx status, wrong content type, no `endpoint` event in time, cross-origin
    /// endpoint.
    pub(crate) async fn connect(config: SseClientConfig) -> Result<Self, SseTransportError> {
        let sse_url = Url::parse(&config.url).map_err(SseTransportError::InvalidUrl)?;
        if !matches!(sse_url.scheme(), "http" | "https") {
            return Err(SseTransportError::UnsupportedScheme(
                sse_url.scheme().to_owned(),
            ));
        }
        let shown = redact(&sse_url);
        let client = match config.client {
            Some(client) => client,
            None => default_client(config.connect_timeout)?,
        };
        let deadline = tokio::time::Instant::now() + config.connect_timeout;

        let request = client
            .get(sse_url.clone())
            .headers(config.headers.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache")
            .timeout(NO_TIMEOUT)
            .send();
        let response = tokio::time::timeout_at(deadline, request)
            .await
            .map_err(|_| SseTransportError::ConnectTimeout {
                url: shown.clone(),
                timeout: config.connect_timeout,
            })?
            .map_err(|e| SseTransportError::Connect {
                url: shown.clone(),
                source: e.without_url(),
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = tokio::time::timeout_at(deadline, excerpt(response)).await;
            let body = body.unwrap_or_else(|_| "<body timed out>".to_owned());
            return Err(SseTransportError::ConnectRejected {
                url: shown,
                status,
                body,
            });
        }
        // A missing Content-Type is tolerated; a wrong one (JSON, HTML) is a misconfigured URL.
        let content_type = response.headers().get(CONTENT_TYPE);
        let content_type =
            content_type.map(|v| String::from_utf8_lossy(v.as_bytes()).to_lowercase());
        if let Some(content_type) = content_type.filter(|t| !t.starts_with("text/event-stream")) {
            return Err(SseTransportError::NotEventStream {
                url: shown,
                content_type,
            });
        }

        let mut events = event_stream(response, config.max_event_size);
        let endpoint = tokio::time::timeout_at(deadline, next_endpoint(&mut events))
            .await
            .map_err(|_| SseTransportError::EndpointTimeout {
                url: shown.clone(),
                timeout: config.connect_timeout,
            })??;

        let post_url = resolve_endpoint(&sse_url, &endpoint)?;
        tracing::debug!(sse = %shown, post = %redact(&post_url), "legacy SSE transport connected");
        Ok(Self {
            events,
            poster: Arc::new(Poster {
                client,
                url: post_url,
                headers: config.headers,
                timeout: config.post_timeout,
            }),
            closed: false,
        })
    }
}

/// Redirect policy of the default client: follow at most 10 redirects, and only within the
/// origin of the first URL; a cross-origin redirect is not followed, so the request fails
/// with its 3xx status. reqwest's default policy follows any redirect and strips only
/// `Authorization`/`Cookie` on a host change, so custom secret headers would leak. Use this
/// policy for a caller-supplied client too.
#[must_use]
pub(crate) fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(Url::origin);
        if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else if first == Some(attempt.url().origin()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Builds the client used when the caller supplies none.
fn default_client(connect_timeout: Duration) -> Result<Client, SseTransportError> {
    // Err only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .redirect(same_origin_redirects())
        .build()
        .map_err(SseTransportError::Client)
}

/// Parses the `GET` body as SSE, failing the stream on an event larger than `max` bytes.
fn event_stream(response: reqwest::Response, max: usize) -> EventStream {
    let mut limit = EventSizeLimit {
        max,
        pending: 0,
        line: 0,
        after_cr: false,
    };
    let bytes = response.bytes_stream().map(move |chunk| match chunk {
        Ok(bytes) if limit.observe(&bytes) => Ok(bytes),
        Ok(_) => Err(BodyError::TooLarge(max)),
        Err(error) => Err(BodyError::Http(error.without_url())),
    });
    SseStream::from_bytes_stream(bytes).boxed()
}

/// Skips events until the `endpoint` event and returns its data.
async fn next_endpoint(events: &mut EventStream) -> Result<String, SseTransportError> {
    loop {
        match events.next().await {
            None => return Err(SseTransportError::StreamEnded),
            Some(Err(error)) => return Err(SseTransportError::Stream(error)),
            Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                return Ok(event.data.unwrap_or_default());
            }
            Some(Ok(event)) => {
                tracing::debug!(event = ?event.event, "skipping SSE event before `endpoint`");
            }
        }
    }
}

/// Resolves the `endpoint` event data against the SSE URL and enforces the same-origin rule.
fn resolve_endpoint(sse_url: &Url, data: &str) -> Result<Url, SseTransportError> {
    let endpoint = sse_url
        .join(data.trim())
        .map_err(SseTransportError::InvalidEndpoint)?;
    // Opaque origins (non-http schemes) never compare equal, so they are refused too.
    if endpoint.origin() != sse_url.origin() {
        return Err(SseTransportError::CrossOriginEndpoint {
            endpoint: redact(&endpoint),
            sse_url: redact(sse_url),
        });
    }
    Ok(endpoint)
}

impl Poster {
    async fn post(&self, message: ClientJsonRpcMessage) -> Result<(), SseTransportError> {
        let url = || redact(&self.url);
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .json(&message)
            .send()
            .await
            .map_err(|source| {
                if source.is_timeout() {
                    SseTransportError::PostTimeout {
                        url: url(),
                        timeout: self.timeout,
                    }
                } else {
                    SseTransportError::Post {
                        url: url(),
                        source: source.without_url(),
                    }
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = excerpt(response).await;
            return Err(SseTransportError::PostRejected {
                url: url(),
                status,
                body,
            });
        }
        Ok(())
    }
}

impl Transport<RoleClient> for SseClientTransport {
    type Error = SseTransportError;

    fn name() -> Cow<'static, str> {
        "legacy-sse".into()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let poster = (!self.closed).then(|| self.poster.clone());
        async move {
            match poster {
                Some(poster) => poster.post(item).await,
                None => Err(SseTransportError::Closed),
            }
        }
    }

    /// Next JSON-RPC message from a `message` event (or an event without a type). `None` once
    /// the stream has ended or failed, which rmcp treats as the transport closing.
    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            let event = match self.events.next().await {
                Some(Ok(event)) => event,
                Some(Err(error)) => {
                    tracing::warn!(%error, "legacy SSE stream failed; closing transport");
                    self.shut();
                    return None;
                }
                None => {
                    tracing::info!("legacy SSE stream ended; closing transport");
                    self.shut();
                    return None;
                }
            };
            match (event.event.as_deref(), event.data) {
                (None | Some("message"), Some(data)) => {
                    match rmcp::serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                        Ok(message) => return Some(message),
                        Err(error) => tracing::warn!(%error, "ignoring malformed JSON-RPC message"),
                    }
                }
                (kind, _) => tracing::debug!(event = ?kind, "ignoring SSE event"),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.shut();
        Ok(())
    }
}

impl SseClientTransport {
    /// Drops the `GET` stream (closing the connection) and refuses further sends.
    fn shut(&mut self) {
        self.closed = true;
        self.events = futures::stream::empty().boxed();
    }
}

/// Errors of the raw SSE byte stream, reported through `sse_stream::Error::Body`.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    Http(reqwest::Error),
    #[error("SSE event larger than {0} bytes")]
    TooLarge(usize),
}

/// Counts the bytes of the SSE event being received (everything since the last blank line),
/// so a hostile upstream cannot make the parser buffer without bound.
struct EventSizeLimit {
    max: usize,
    pending: usize,
    line: usize,
    after_cr: bool,
}

impl EventSizeLimit {
    /// Returns `false` once the current event exceeds the limit.
    fn observe(&mut self, chunk: &[u8]) -> bool {
        for &byte in chunk {
            let after_cr = std::mem::take(&mut self.after_cr);
            match byte {
                b'\n' if after_cr => {} // second half of CRLF
                b'\r' | b'\n' => {
                    if self.line == 0 {
                        self.pending = 0; // blank line: event complete
                    } else {
                        self.pending = self.pending.saturating_add(self.line + 1);
                        self.line = 0;
                    }
                    self.after_cr = byte == b'\r';
                }
                _ => self.line += 1,
            }
            if self.pending.saturating_add(self.line) > self.max {
                return false;
            }
        }
        true
    }
}

/// The start of an error response body, for error messages.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < BODY_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let truncated = body.len() > BODY_EXCERPT_BYTES;
    body.truncate(BODY_EXCERPT_BYTES);
    // Control characters are replaced so a hostile body cannot forge log lines.
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    match (text.is_empty(), truncated) {
        (true, _) => "<empty body>".to_owned(),
        (false, true) => format!("{text}…"),
        (false, false) => text.to_owned(),
    }
}

/// The innermost cause of an error (reqwest's own message is just "error sending request").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut error = error;
    while let Some(source) = error.source() {
        error = source;
    }
    error.to_string()
}

/// `scheme://host:port/path` without credentials, query or fragment.
fn redact(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}
