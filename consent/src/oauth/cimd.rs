//! Client ID Metadata Documents (MCP 2025-11-25, draft-ietf-oauth-client-id-metadata-document):
//! an agent names itself by the https URL of a JSON document that describes it
//! (`client_id`, `client_name`, `redirect_uris`). Warrant fetches that document when
//! `/authorize` first sees the URL, checks it, and keeps it in `consent_clients` (kind
//! `metadata`) as a cache: used as is while fresh (`Cache-Control: max-age`, clamped to
//! [5 min, 24 h], 1 h without one), fetched again when stale, and, when that fetch fails
//! for a reason that may pass (timeout, connection, 5xx), used for at most
//! [`STALE_GRACE_SECS`] more with a warning.
//!
//! The fetch is a server-side request to a URL an anonymous party chose, so it is
//! guarded against SSRF, each rule with its own error:
//! - https only; plain http only to a loopback host, and only while Warrant's own public
//!   URL is loopback (development and tests);
//! - no user info, no fragment, a path that names the document, no dot segments;
//! - the host is resolved here and refused if **any** address is private, loopback
//!   (unless the rule above allows it), link-local (cloud metadata services), unique
//!   local, shared (CGNAT), unspecified, multicast, broadcast, reserved or for
//!   documentation, including such IPv4 addresses inside IPv6 (mapped, compatible,
//!   6to4), and any NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`) or Teredo (`2001::/32`)
//!   address;
//! - the connection goes to exactly the addresses checked (no proxy, no second
//!   resolution), follows no redirect, has 3 s to connect and 5 s in all, and reads at
//!   most 64 KiB of a JSON `Content-Type`.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header;
use serde_json::Value;

use super::StoreError;
use super::clients::{Client, ClientKind, Clients, DocumentClient};
use super::redirect_uris::{default_application_type, redirect_uris_problem};

/// The largest document read; a larger one is refused while streaming.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// How long connecting may take, and the whole fetch (resolution included).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Freshness bounds of a fetched document (seconds) and the default without
/// `Cache-Control: max-age`.
pub const MIN_FRESH_SECS: i64 = 5 * 60;
pub const MAX_FRESH_SECS: i64 = 24 * 3600;
pub const DEFAULT_FRESH_SECS: i64 = 3600;
/// How long past its freshness a cached document may still be used when fetching it
/// again fails for a passing reason.
pub const STALE_GRACE_SECS: i64 = 24 * 3600;

/// Whether a client_id names a metadata document (an http or https URL) rather than a
/// registered or configured client. Registered ids are random tokens and configured
/// ones plain names, so neither can look like this.
pub fn is_document_url(client_id: &str) -> bool {
    let lower = client_id.get(..8).unwrap_or(client_id).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Why a metadata document client is refused. The `Display` text is written for the
/// person on the consent page and for the agent's `error_description`; the `detail`
/// fields (internal causes) go to the log only.
#[derive(Debug, thiserror::Error)]
pub enum CimdError {
    #[error("the client ID {0:?} is not a valid URL")]
    NotAUrl(String),
    #[error("Warrant reads agent descriptions over https only, and {0} is not an https URL")]
    NotHttps(String),
    #[error(
        "Warrant reads an agent description over plain http only from this computer \
         (localhost, 127.0.0.1 or [::1]), and only while Warrant itself runs on a loopback \
         address; {0} does not qualify"
    )]
    PlainHttp(String),
    #[error("the client ID URL must not contain a user name or password")]
    Userinfo,
    #[error("the client ID URL must not contain a fragment (#…)")]
    Fragment,
    #[error("the client ID URL has no host")]
    NoHost,
    #[error(
        "the client ID URL must have a path naming the document, like \
         https://agent.example/client.json"
    )]
    NoPath,
    #[error("the client ID URL must not contain . or .. path segments")]
    DotSegment,
    #[error("Warrant will not fetch the agent's description from {kind} ({addr})")]
    Forbidden { kind: &'static str, addr: IpAddr },
    #[error("the agent's host {host} could not be found")]
    Resolve { host: String, detail: String },
    #[error("the agent's host {host} has no address")]
    NoAddress { host: String },
    #[error("the agent's description at {url} did not arrive within {secs} seconds")]
    Timeout { url: String, secs: u64 },
    #[error("Warrant could not connect to {host} to read the agent's description")]
    Unreachable { host: String, detail: String },
    #[error(
        "the agent's description at {url} answered with a redirect (HTTP {status}); \
         Warrant does not follow redirects for agent descriptions"
    )]
    Redirected { url: String, status: u16 },
    #[error("the agent's description at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the agent's description is not JSON (Content-Type {0:?})")]
    ContentType(String),
    #[error("the agent's description is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the agent's description could not be read completely")]
    Read { detail: String },
    #[error("the agent's description is not valid JSON ({0})")]
    NotJson(String),
    #[error("the agent's description is not a JSON object")]
    NotObject,
    #[error(
        "the agent's description names another client_id ({found:?}) than the address it \
         was read from"
    )]
    ClientIdMismatch { found: String },
    #[error("the agent's description lacks {0}")]
    Missing(&'static str),
    #[error("in the agent's description, {field} {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error(
        "the agent's description asks for token_endpoint_auth_method {0:?}, but Warrant \
         accepts agent descriptions of public clients only (none, with PKCE)"
    )]
    Confidential(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CimdError {
    /// Whether the failure may pass by itself (the site is down or slow), so that a
    /// cached copy may stand in for a while.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Unreachable { .. } | Self::Resolve { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------
// The URL and the addresses

/// Checks a client_id URL by the rules that need no network: scheme, loopback rule,
/// user info, fragment, path. `allow_loopback`: Warrant's own public URL is loopback.
pub fn check_client_id(client_id: &str, allow_loopback: bool) -> Result<url::Url, CimdError> {
    let url = url::Url::parse(client_id).map_err(|_| CimdError::NotAUrl(client_id.into()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CimdError::Userinfo);
    }
    if url.fragment().is_some() || client_id.contains('#') {
        return Err(CimdError::Fragment);
    }
    let Some(host) = url.host() else {
        return Err(CimdError::NoHost);
    };
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback && is_loopback_host(&host) => {}
        "http" => return Err(CimdError::PlainHttp(client_id.into())),
        _ => return Err(CimdError::NotHttps(client_id.into())),
    }
    // The path as written (the parser removes dot segments, so look at the text).
    let after_scheme = client_id.split_once("://").map_or("", |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |at| &after_scheme[at..]);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.split('/').any(|seg| {
        matches!(
            seg.to_ascii_lowercase().as_str(),
            "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
        )
    }) {
        return Err(CimdError::DotSegment);
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err(CimdError::NoPath);
    }
    Ok(url)
}

fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Why Warrant will not connect to `ip`, as words for the refusal ("a private network
/// address"), or `None` when it is a public unicast address (or loopback, when
/// `allow_loopback`).
pub fn address_problem(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_problem(v4, allow_loopback),
        IpAddr::V6(v6) => v6_problem(v6, allow_loopback),
    }
}

fn v4_problem(ip: Ipv4Addr, allow_loopback: bool) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return (!allow_loopback).then_some("a loopback address");
    }
    if a == 0 {
        return Some("an unspecified address");
    }
    if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        return Some("a private network address");
    }
    if a == 169 && b == 254 {
        return Some("a link-local address (where cloud metadata services answer)");
    }
    if a == 100 && (64..=127).contains(&b) {
        return Some("a shared (carrier-grade NAT) address");
    }
    if ip.is_broadcast() {
        return Some("the broadcast address");
    }
    if (224..=239).contains(&a) {
        return Some("a multicast address");
    }
    if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        return Some("a documentation address");
    }
    if (a == 192 && b == 0 && c == 0) || (a == 198 && (18..=19).contains(&b)) || a >= 240 {
        return Some("a reserved address");
    }
    None
}

fn v6_problem(ip: Ipv6Addr, allow_loopback: bool) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        return (!allow_loopback).then_some("a loopback address");
    }
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d) and 6to4
    // (2002:AABB:CCDD::) are judged by their IPv4 address. NAT64 (64:ff9b::/96 and the
    // local-use 64:ff9b:1::/48) and Teredo (2001::/32) are refused whatever they carry:
    // a translator or relay inside the network would take the request anywhere.
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return v4_problem(embedded(s[6], s[7]), allow_loopback)
            .or((s[5] == 0).then_some("a reserved address"));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..3] == [0x64, 0xff9b, 1] {
        return Some("a NAT64 address (it reaches IPv4 through a translator)");
    }
    if s[..2] == [0x2001, 0] {
        return Some("a Teredo tunnel address");
    }
    if s[0] == 0x2002 {
        return v4_problem(embedded(s[1], s[2]), allow_loopback);
    }
    if s[0] & 0xff00 == 0xff00 {
        return Some("a multicast address");
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some("a link-local address");
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some("a unique local (private) address");
    }
    if s[0] & 0xffc0 == 0xfec0 {
        return Some("a site-local (private) address");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("a documentation address");
    }
    if s[..4] == [0x100, 0, 0, 0] {
        return Some("a reserved address");
    }
    None
}

// ---------------------------------------------------------------------------------
// Resolution (injectable) and fetching

/// The future a [`Resolver`] returns.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Resolves a host name to addresses. The system resolver in production; tests inject
/// a table so that no DNS is needed.
pub trait Resolver: fmt::Debug + Send + Sync {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a>;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// Fetches and checks metadata documents (see the module documentation).
#[derive(Debug, Clone)]
pub struct DocumentFetcher {
    allow_loopback: bool,
    resolver: Arc<dyn Resolver>,
    connect_timeout: Duration,
    total_timeout: Duration,
}

/// A document fetched and checked, and how long it stays fresh (seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub client: DocumentClient,
    pub fresh_secs: i64,
}

impl DocumentFetcher {
    /// `allow_loopback`: plain http and loopback addresses are allowed (Warrant's own
    /// public URL is loopback: development and tests).
    pub fn new(allow_loopback: bool) -> Self {
        Self {
            allow_loopback,
            resolver: Arc::new(SystemResolver),
            connect_timeout: CONNECT_TIMEOUT,
            total_timeout: TOTAL_TIMEOUT,
        }
    }

    /// The fetcher for a gateway reached at `public_url`: loopback documents are
    /// allowed only when that URL is itself loopback.
    pub fn for_public_url(public_url: &url::Url) -> Self {
        Self::new(public_url.host().is_some_and(|h| is_loopback_host(&h)))
    }

    /// Resolves host names with `resolver` instead of the system's.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Other timeouts (tests).
    pub fn with_timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.connect_timeout = connect;
        self.total_timeout = total;
        self
    }

    pub fn allows_loopback(&self) -> bool {
        self.allow_loopback
    }

    /// Fetches the document named by `client_id` and checks it.
    pub async fn fetch(&self, client_id: &str) -> Result<Fetched, CimdError> {
        let url = check_client_id(client_id, self.allow_loopback)?;
        let secs = self.total_timeout.as_secs().max(1);
        match tokio::time::timeout(self.total_timeout, self.fetch_checked(&url, client_id)).await {
            Ok(result) => result,
            Err(_) => Err(CimdError::Timeout {
                url: client_id.to_owned(),
                secs,
            }),
        }
    }

    /// The addresses of the URL's host, every one of them acceptable.
    async fn addresses(&self, url: &url::Url) -> Result<Vec<SocketAddr>, CimdError> {
        let port = url.port_or_known_default().unwrap_or(443);
        let (host, addrs) = match url.host() {
            None => return Err(CimdError::NoHost),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
            Some(url::Host::Domain(d)) => {
                let looked_up =
                    tokio::time::timeout(self.connect_timeout, self.resolver.lookup(d, port)).await;
                let addrs = match looked_up {
                    Ok(Ok(addrs)) => addrs,
                    Ok(Err(e)) => {
                        return Err(CimdError::Resolve {
                            host: d.to_owned(),
                            detail: e.to_string(),
                        });
                    }
                    Err(_) => {
                        return Err(CimdError::Resolve {
                            host: d.to_owned(),
                            detail: "resolution timed out".into(),
                        });
                    }
                };
                (d.to_owned(), addrs)
            }
        };
        if addrs.is_empty() {
            return Err(CimdError::NoAddress { host });
        }
        for addr in &addrs {
            if let Some(kind) = address_problem(addr.ip(), self.allow_loopback) {
                return Err(CimdError::Forbidden {
                    kind,
                    addr: addr.ip(),
                });
            }
            // Plain http was allowed for a loopback host: it must be loopback indeed.
            if url.scheme() == "http" && !addr.ip().is_loopback() {
                return Err(CimdError::PlainHttp(url.as_str().to_owned()));
            }
        }
        Ok(addrs)
    }

    /// The one place that builds the HTTP client for documents.
    ///
    /// A client per fetch, pinned to the addresses just checked
    /// (`resolve_to_addrs`), rather than one shared client with a checking resolver:
    /// fetches are rare (each document is cached for at least 5 minutes), the check and
    /// its plain-words error stay here instead of surfacing through reqwest's resolver
    /// errors, no pooled connection made for one name can serve another, and the
    /// resolver stays injectable for tests. Building one costs a few milliseconds.
    /// No proxy: a proxy would resolve the name again, out of the check's reach.
    fn http_client(
        &self,
        host: Option<&str>,
        addrs: &[SocketAddr],
    ) -> Result<reqwest::Client, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(self.connect_timeout)
            .timeout(self.total_timeout)
            .user_agent(concat!(
                "Warrant/",
                env!("CARGO_PKG_VERSION"),
                " (client metadata)"
            ));
        if let Some(host) = host {
            builder = builder.resolve_to_addrs(host, addrs);
        }
        builder.build()
    }

    async fn fetch_checked(&self, url: &url::Url, client_id: &str) -> Result<Fetched, CimdError> {
        let addrs = self.addresses(url).await?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let domain = matches!(url.host(), Some(url::Host::Domain(_))).then_some(host.as_str());
        let client = self
            .http_client(domain, &addrs)
            .map_err(|e| CimdError::Unreachable {
                host: host.clone(),
                detail: format!("cannot build the HTTP client: {e}"),
            })?;
        let classify = |e: reqwest::Error| -> CimdError {
            if e.is_timeout() {
                CimdError::Timeout {
                    url: client_id.to_owned(),
                    secs: self.total_timeout.as_secs().max(1),
                }
            } else {
                CimdError::Unreachable {
                    host: host.clone(),
                    detail: innermost(&e),
                }
            }
        };
        let mut response = client
            .get(url.clone())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(CimdError::Redirected {
                url: client_id.to_owned(),
                status,
            });
        }
        if status != 200 {
            return Err(CimdError::Status {
                url: client_id.to_owned(),
                status,
            });
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !is_json(&content_type) {
            return Err(CimdError::ContentType(content_type));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(CimdError::TooLarge {
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let fresh_secs = freshness(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                classify(e)
            } else {
                CimdError::Read {
                    detail: innermost(&e),
                }
            }
        })? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(CimdError::TooLarge {
                    limit: MAX_DOCUMENT_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let client = validate(client_id, &body)?;
        Ok(Fetched { client, fresh_secs })
    }
}

/// The innermost cause of an error (reqwest's own message is just "error sending request").
fn innermost(e: &dyn std::error::Error) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// `application/json` or `application/<something>+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// How long a document stays fresh: `Cache-Control: max-age` clamped to
/// [`MIN_FRESH_SECS`, `MAX_FRESH_SECS`] (`no-store` and `no-cache` mean the minimum),
/// [`DEFAULT_FRESH_SECS`] without one.
pub fn freshness(headers: &http::HeaderMap) -> i64 {
    let mut fresh = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            if directive == "no-store" || directive == "no-cache" {
                fresh = Some(0);
            } else if let Some(secs) = directive.strip_prefix("max-age=")
                && let Ok(secs) = secs.trim_matches('"').parse::<i64>()
            {
                fresh = Some(fresh.map_or(secs, |f: i64| f.min(secs)));
            }
        }
    }
    fresh.map_or(DEFAULT_FRESH_SECS, |s| {
        s.clamp(MIN_FRESH_SECS, MAX_FRESH_SECS)
    })
}

// ---------------------------------------------------------------------------------
// The document

fn string_field<'a>(doc: &'a Value, field: &'static str) -> Result<Option<&'a str>, CimdError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(CimdError::Invalid {
            field,
            problem: "must be a string".into(),
        }),
    }
}

/// Checks a document read from `client_id`: a JSON object whose `client_id` is the URL
/// exactly, with `client_name` and `redirect_uris` (by the rules of dynamic
/// registration), and no client authentication but `none`. Unknown fields are ignored.
pub fn validate(client_id: &str, body: &[u8]) -> Result<DocumentClient, CimdError> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| CimdError::NotJson(e.to_string()))?;
    if !doc.is_object() {
        return Err(CimdError::NotObject);
    }
    let Some(found) = string_field(&doc, "client_id")? else {
        return Err(CimdError::Missing("client_id"));
    };
    if found != client_id {
        return Err(CimdError::ClientIdMismatch {
            found: found.chars().take(200).collect(),
        });
    }
    let name = string_field(&doc, "client_name")?
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or(CimdError::Missing("client_name"))?;
    let name: String = name.chars().take(100).collect();
    let uris = match doc.get("redirect_uris") {
        None | Some(Value::Null) => return Err(CimdError::Missing("redirect_uris")),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| CimdError::Invalid {
                field: "redirect_uris",
                problem: "must be an array of strings".into(),
            })?,
        Some(_) => {
            return Err(CimdError::Invalid {
                field: "redirect_uris",
                problem: "must be an array of strings".into(),
            });
        }
    };
    if let Some(problem) = redirect_uris_problem(&uris) {
        return Err(CimdError::Invalid {
            field: "redirect_uris",
            problem: format!("is refused: {problem}"),
        });
    }
    match string_field(&doc, "token_endpoint_auth_method")? {
        None | Some("none") => {}
        Some(other) => return Err(CimdError::Confidential(other.chars().take(50).collect())),
    }
    let application_type = match string_field(&doc, "application_type")? {
        Some(t @ ("native" | "web")) => t.to_owned(),
        Some(other) => {
            return Err(CimdError::Invalid {
                field: "application_type",
                problem: format!(
                    "{:?} is neither native nor web",
                    other.chars().take(50).collect::<String>()
                ),
            });
        }
        None => default_application_type(&uris).to_owned(),
    };
    Ok(DocumentClient {
        client_id: client_id.to_owned(),
        name,
        redirect_uris: uris,
        application_type,
    })
}

// ---------------------------------------------------------------------------------
// The lookup both /authorize and /token use

/// Whether a metadata document seen for the first time may be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchNew {
    /// `/authorize`, behind sign-in: fetch it.
    Yes,
    /// `/token`, `/revoke`: unauthenticated endpoints; a client they may serve was
    /// cached by `/authorize` already, so an unknown URL is not fetched.
    No,
}

/// The client named `client_id`: a registered or configured client from the store, or
/// for a URL its metadata document, from the cache while fresh, else fetched (and
/// cached). `Ok(None)`: no such client.
pub async fn find_client(
    clients: &Clients,
    fetcher: &DocumentFetcher,
    client_id: &str,
    now: i64,
    fetch_new: FetchNew,
) -> Result<Option<Client>, CimdError> {
    if !is_document_url(client_id) {
        return Ok(clients.get(client_id).await?);
    }
    // The rules that need no network first: a cached copy does not outlive a change of
    // the rules (a public URL that stopped being loopback, say).
    check_client_id(client_id, fetcher.allows_loopback())?;
    let cached = clients.get(client_id).await?;
    let cached = match cached {
        Some(c) if c.kind != ClientKind::Metadata => return Ok(Some(c)),
        Some(c) if c.document_fresh_until.is_some_and(|t| t > now) => return Ok(Some(c)),
        Some(c) => Some(c),
        None if fetch_new == FetchNew::No => return Ok(None),
        None => None,
    };
    let started = std::time::Instant::now();
    let result = fetcher.fetch(client_id).await;
    let elapsed_ms = started.elapsed().as_millis();
    match result {
        Ok(fetched) => {
            let client = clients
                .store_document(&fetched.client, now, now + fetched.fresh_secs)
                .await?;
            tracing::info!(client = %client_id, fresh_secs = fetched.fresh_secs, elapsed_ms, "client metadata document fetched");
            Ok(Some(client))
        }
        Err(e) if e.is_transient() => {
            let grace_ends = cached
                .as_ref()
                .and_then(|c| c.document_fresh_until)
                .map(|t| t + STALE_GRACE_SECS);
            match (cached, grace_ends) {
                (Some(c), Some(end)) if now < end => {
                    tracing::warn!(client = %client_id, error = %e, detail = ?e, grace_ends = end, elapsed_ms,
                        "client metadata document could not be fetched again; using the cached copy");
                    Ok(Some(c))
                }
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "cimd_tests.rs"]
mod tests;
