//! Warrant as the OAuth client of an upstream's authorization server, found the way MCP
//! clients find it: the upstream's `401` names its protected resource metadata
//! (RFC 9728, `WWW-Authenticate: Bearer resource_metadata="…"`, else the well-known
//! URL under the upstream's path, then at its root), which names the authorization
//! server, whose metadata (RFC 8414, else OpenID Connect discovery) gives the endpoints;
//! Warrant then registers itself there (RFC 7591) unless an admin gave a client id.
//!
//! Every request has a time limit and every document a size limit. Endpoints must be
//! `https`, or plain `http` on a loopback host when the upstream itself is one
//! (development and tests). The authorization server must support PKCE with `S256`, as
//! the MCP authorization specification requires.
//!
//! Per-person connections through this client (the authorization code flow, tokens kept
//! in the vault and refreshed) are [`crate::person_oauth`].

use std::time::Duration;

use serde::Deserialize;

/// A metadata document is at most this large.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Each request to an upstream or its authorization server ends within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamOAuthError {
    #[error("{url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url} is not usable: {reason}")]
    Document { url: String, reason: String },
    #[error(
        "{url} does not ask for OAuth (it answered {status} without a token): it needs no \
         per-person connection"
    )]
    NotProtected { url: String, status: u16 },
    #[error("the authorization server {issuer} {reason}")]
    Unsuitable { issuer: String, reason: String },
}

/// What a protected MCP server and its authorization server said about themselves.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The resource the tokens are for (`resource` of the protected resource metadata).
    pub resource: String,
    pub server: ServerMetadata,
}

/// An authorization server's metadata (RFC 8414), what Warrant uses of it.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub client_id_metadata_document_supported: bool,
}

/// Warrant's registration at an authorization server.
#[derive(Debug, Clone)]
pub struct Registration {
    pub client_id: String,
    /// For a confidential registration (Warrant asks for a public one: PKCE).
    pub client_secret: Option<String>,
}

#[derive(Deserialize)]
struct ResourceMetadata {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
}

#[derive(Deserialize)]
struct RegistrationResponse {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
}

/// Finds, registers with and talks to upstreams' authorization servers.
#[derive(Debug, Clone)]
pub struct UpstreamOAuth {
    http: reqwest::Client,
}

impl UpstreamOAuth {
    pub fn new() -> Result<Self, UpstreamOAuthError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamOAuthError::Fetch {
                url: String::new(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self { http })
    }

    /// Discovers the authorization server of the MCP server at `mcp_url`.
    pub async fn discover(&self, mcp_url: &url::Url) -> Result<Discovered, UpstreamOAuthError> {
        let loopback = is_loopback(mcp_url);
        let metadata_url = self.resource_metadata_url(mcp_url).await?;
        let mut candidates = vec![metadata_url];
        // Without a `resource_metadata` in the challenge: the well-known URL under the
        // server's path, then at its root.
        if candidates[0].is_none() {
            candidates = well_known(mcp_url, "oauth-protected-resource")
                .into_iter()
                .map(Some)
                .collect();
        }
        let mut last = None;
        let mut resource = None;
        for url in candidates.into_iter().flatten() {
            match self.document::<ResourceMetadata>(&url, loopback).await {
                Ok(found) => {
                    resource = Some(found);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(resource) = resource else {
            return Err(last.unwrap_or_else(|| UpstreamOAuthError::Document {
                url: mcp_url.to_string(),
                reason: "no protected resource metadata found".into(),
            }));
        };
        let Some(issuer) = resource.authorization_servers.first() else {
            return Err(UpstreamOAuthError::Document {
                url: mcp_url.to_string(),
                reason: "its protected resource metadata names no authorization server".into(),
            });
        };
        let issuer_url = checked_url(issuer, loopback)?;
        let mut server = None;
        for url in server_metadata_urls(&issuer_url) {
            match self.document::<ServerMetadata>(&url, loopback).await {
                Ok(found) => {
                    server = Some(found);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(server) = server else {
            return Err(last.unwrap_or_else(|| UpstreamOAuthError::Document {
                url: issuer.clone(),
                reason: "no authorization server metadata found".into(),
            }));
        };
        check_server(&server, issuer, loopback)?;
        Ok(Discovered {
            resource: resource.resource,
            server,
        })
    }

    /// Registers Warrant at the authorization server (dynamic client registration) as a
    /// public client that redirects to `redirect_uri`.
    pub async fn register(
        &self,
        server: &ServerMetadata,
        client_name: &str,
        redirect_uri: &str,
    ) -> Result<Registration, UpstreamOAuthError> {
        let Some(endpoint) = &server.registration_endpoint else {
            return Err(UpstreamOAuthError::Unsuitable {
                issuer: server.issuer.clone(),
                reason: "offers no dynamic client registration: an admin must register \
                         Warrant there and configure `auth.client_id`"
                    .into(),
            });
        };
        let body = serde_json::json!({
            "client_name": client_name,
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        let response = self
            .http
            .post(endpoint)
            .json(&body)
            .send()
            .await
            .map_err(|e| fetch_error(endpoint, &e))?;
        let status = response.status();
        let bytes = bounded(response, endpoint).await?;
        if !status.is_success() {
            return Err(UpstreamOAuthError::Fetch {
                url: endpoint.clone(),
                reason: format!(
                    "registration refused ({status}): {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                ),
            });
        }
        let registered: RegistrationResponse =
            serde_json::from_slice(&bytes).map_err(|e| UpstreamOAuthError::Document {
                url: endpoint.clone(),
                reason: format!("not a registration response: {e}"),
            })?;
        Ok(Registration {
            client_id: registered.client_id,
            client_secret: registered.client_secret,
        })
    }

    /// The `resource_metadata` URL of the upstream's `401` challenge, if it names one.
    async fn resource_metadata_url(
        &self,
        mcp_url: &url::Url,
    ) -> Result<Option<url::Url>, UpstreamOAuthError> {
        let response = self
            .http
            .post(mcp_url.clone())
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(r#"{"jsonrpc":"2.0","id":0,"method":"ping"}"#)
            .send()
            .await
            .map_err(|e| fetch_error(mcp_url.as_str(), &e))?;
        let status = response.status();
        if status != reqwest::StatusCode::UNAUTHORIZED {
            return Err(UpstreamOAuthError::NotProtected {
                url: mcp_url.to_string(),
                status: status.as_u16(),
            });
        }
        let named = response
            .headers()
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(challenge_resource_metadata);
        match named {
            Some(url) => Ok(Some(checked_url(&url, is_loopback(mcp_url))?)),
            None => Ok(None),
        }
    }

    /// Fetches a JSON document of at most [`MAX_DOCUMENT_BYTES`].
    async fn document<T: serde::de::DeserializeOwned>(
        &self,
        url: &url::Url,
        loopback: bool,
    ) -> Result<T, UpstreamOAuthError> {
        let url = checked_url(url.as_str(), loopback)?;
        let response = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fetch_error(url.as_str(), &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(UpstreamOAuthError::Fetch {
                url: url.to_string(),
                reason: format!("answered {status}"),
            });
        }
        let bytes = bounded(response, url.as_str()).await?;
        serde_json::from_slice(&bytes).map_err(|e| UpstreamOAuthError::Document {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }
}

/// The body of `response`, refused beyond [`MAX_DOCUMENT_BYTES`].
async fn bounded(
    mut response: reqwest::Response,
    url: &str,
) -> Result<Vec<u8>, UpstreamOAuthError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fetch_error(url, &e))? {
        if bytes.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(UpstreamOAuthError::Document {
                url: url.to_owned(),
                reason: format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn fetch_error(url: &str, error: &reqwest::Error) -> UpstreamOAuthError {
    let reason = if error.is_timeout() {
        format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        error.to_string()
    };
    UpstreamOAuthError::Fetch {
        url: url.to_owned(),
        reason,
    }
}

/// The `resource_metadata` parameter of a `Bearer` challenge.
fn challenge_resource_metadata(header: &str) -> Option<String> {
    let rest = header.trim().strip_prefix("Bearer")?;
    rest.split(',').find_map(|param| {
        let (name, value) = param.trim().split_once('=')?;
        (name.trim() == "resource_metadata").then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// `https`, or `http` to a loopback host when `loopback` (the upstream is one).
fn checked_url(text: &str, loopback: bool) -> Result<url::Url, UpstreamOAuthError> {
    let url = url::Url::parse(text).map_err(|e| UpstreamOAuthError::Document {
        url: text.to_owned(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback && is_loopback(&url) => Ok(url),
        _ => Err(UpstreamOAuthError::Document {
            url: text.to_owned(),
            reason: "must be https (plain http only on a loopback host, for a loopback \
                     upstream)"
                .into(),
        }),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `{origin}/.well-known/{name}{path}`, then `{origin}/.well-known/{name}` (RFC 9728 and
/// RFC 8414 insert the well-known part before the path).
fn well_known(url: &url::Url, name: &str) -> Vec<url::Url> {
    let path = url.path().trim_end_matches('/');
    let mut urls = Vec::new();
    for suffix in [path, ""] {
        let mut candidate = url.clone();
        candidate.set_query(None);
        candidate.set_fragment(None);
        candidate.set_path(&format!("/.well-known/{name}{suffix}"));
        if !urls.contains(&candidate) {
            urls.push(candidate);
        }
    }
    urls
}

/// Where an issuer's metadata may be: RFC 8414's well-known URL, then OpenID Connect
/// discovery's (inserted before the path, then appended to the issuer).
fn server_metadata_urls(issuer: &url::Url) -> Vec<url::Url> {
    let mut urls = well_known(issuer, "oauth-authorization-server");
    urls.truncate(1);
    urls.extend(
        well_known(issuer, "openid-configuration")
            .into_iter()
            .take(1),
    );
    if let Ok(appended) = url::Url::parse(&format!(
        "{}/.well-known/openid-configuration",
        issuer.as_str().trim_end_matches('/')
    )) && !urls.contains(&appended)
    {
        urls.push(appended);
    }
    urls
}

/// The metadata is the issuer's, and the server can serve a public client with PKCE.
fn check_server(
    server: &ServerMetadata,
    issuer: &str,
    loopback: bool,
) -> Result<(), UpstreamOAuthError> {
    let unsuitable = |reason: String| UpstreamOAuthError::Unsuitable {
        issuer: issuer.to_owned(),
        reason,
    };
    if server.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(unsuitable(format!(
            "published metadata for another issuer ({})",
            server.issuer
        )));
    }
    if !server
        .code_challenge_methods_supported
        .iter()
        .any(|m| m == "S256")
    {
        return Err(unsuitable("does not support PKCE with S256".into()));
    }
    for endpoint in [&server.authorization_endpoint, &server.token_endpoint]
        .into_iter()
        .chain(server.registration_endpoint.as_ref())
    {
        checked_url(endpoint, loopback)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_names_its_resource_metadata() {
        let header = r#"Bearer resource_metadata="https://h.example/.well-known/oauth-protected-resource/mcp", scope="tools""#;
        assert_eq!(
            challenge_resource_metadata(header).as_deref(),
            Some("https://h.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(challenge_resource_metadata("Basic realm=\"x\""), None);
    }

    #[test]
    fn well_known_urls_go_before_the_path_then_at_the_root() {
        let url = url::Url::parse("https://h.example/tenant/mcp?x=1").expect("url");
        let urls: Vec<String> = well_known(&url, "oauth-protected-resource")
            .iter()
            .map(url::Url::to_string)
            .collect();
        assert_eq!(
            urls,
            [
                "https://h.example/.well-known/oauth-protected-resource/tenant/mcp",
                "https://h.example/.well-known/oauth-protected-resource",
            ]
        );
        let issuer = url::Url::parse("https://as.example/").expect("url");
        let urls: Vec<String> = server_metadata_urls(&issuer)
            .iter()
            .map(url::Url::to_string)
            .collect();
        assert_eq!(
            urls,
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn plain_http_is_refused_except_between_loopback_hosts() {
        assert!(checked_url("http://as.example/token", true).is_err());
        assert!(checked_url("http://127.0.0.1:9/token", false).is_err());
        assert!(checked_url("http://127.0.0.1:9/token", true).is_ok());
        assert!(checked_url("https://as.example/token", false).is_ok());
    }

    #[test]
    fn a_server_without_s256_or_for_another_issuer_is_unsuitable() {
        let server = ServerMetadata {
            issuer: "https://as.example".into(),
            authorization_endpoint: "https://as.example/authorize".into(),
            token_endpoint: "https://as.example/token".into(),
            registration_endpoint: None,
            revocation_endpoint: None,
            code_challenge_methods_supported: vec!["plain".into()],
            scopes_supported: Vec::new(),
            token_endpoint_auth_methods_supported: Vec::new(),
            client_id_metadata_document_supported: false,
        };
        assert!(check_server(&server, "https://as.example/", false).is_err());
        let s256 = ServerMetadata {
            code_challenge_methods_supported: vec!["S256".into()],
            ..server
        };
        assert!(check_server(&s256, "https://as.example/", false).is_ok());
        assert!(check_server(&s256, "https://other.example", false).is_err());
    }
}
