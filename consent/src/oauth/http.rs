//! The authorization server's HTTP endpoints: discovery metadata (RFC 8414, RFC 9728),
//! dynamic client registration (RFC 7591), the token endpoint (authorization code with
//! PKCE S256, refresh with rotation) and revocation (RFC 7009). `/authorize` and the
//! consent screen live in the UI crate and issue codes through [`super::Codes`].
//!
//! Every client mistake is answered in the RFC 6749 / 7591 JSON error shape, never a
//! 500; every token-endpoint response carries `Cache-Control: no-store`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warrant_idp::clock::Clock;
use warrant_idp::db::Db;
use warrant_idp::rate::{RateError, RateLimiter};
use warrant_idp::secret::constant_time_eq;

use super::cimd::{self, CimdError, DocumentFetcher, FetchNew};
pub use super::redirect_uris::{
    MAX_REDIRECT_URI_LEN, MAX_REDIRECT_URIS, default_application_type, is_loopback,
    redirect_uri_matches, redirect_uri_problem, redirect_uris_problem,
};
use super::resource::Resource;
use super::revocations::RevokedSet;
use super::{
    Client, ClientKind, Clients, CodeError, Codes, NewClient, NewRefreshToken, RefreshTokens,
    Revocations, StoreError,
};
use crate::grants::{Grant, Grants};
use crate::token::{KeyRing, MintRequest, Restriction, Risk, ToolPattern, Verifier, mint};

/// How long an access token lives by default (seconds): `oauth.access_token_ttl`.
pub const DEFAULT_ACCESS_TOKEN_LIFETIME_SECS: i64 = 600;

/// The scopes the server names in its metadata.
pub const SCOPES_SUPPORTED: &[&str] = &["mcp"];

/// What the endpoints need.
#[derive(Clone)]
pub struct OAuthState {
    db: Db,
    keys: KeyRing,
    verifier: Verifier,
    clock: Arc<dyn Clock>,
    issuer: String,
    resource: String,
    /// The resource and the loopback names it answers to.
    names: Resource,
    documents: DocumentFetcher,
    revoked: Option<RevokedSet>,
    access_token_ttl: i64,
    limits: Limits,
}

/// Per-client-address limits on the endpoints anyone can call.
#[derive(Clone)]
struct Limits {
    register: RateLimiter,
    token: RateLimiter,
    revoke: RateLimiter,
}

/// A limit: how many requests from one address within a window, and what they are.
struct Limit {
    count: u32,
    window: std::time::Duration,
    what: &'static str,
}

/// Registrations: an agent registers once per server; a host running many (CI behind
/// one address) stays well within this.
const REGISTER_LIMIT: Limit = Limit {
    count: 60,
    window: std::time::Duration::from_secs(3600),
    what: "client registrations from one address",
};
/// Token requests: codes and refreshes (each agent refreshes every few minutes).
const TOKEN_LIMIT: Limit = Limit {
    count: 300,
    window: std::time::Duration::from_secs(60),
    what: "token requests from one address",
};
/// Revocations (RFC 7009): a client revokes its tokens when it signs out, a handful at
/// a time; the endpoint checks client credentials, so it is no place to guess them.
const REVOKE_LIMIT: Limit = Limit {
    count: 60,
    window: std::time::Duration::from_secs(60),
    what: "token revocations from one address",
};

/// The peer address of the connection (forwarded headers are not trusted), when the
/// server provides it.
struct ClientIp(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip().to_string()),
        ))
    }
}

impl OAuthState {
    /// `public_url` is the URL people use; the issuer is it without a trailing slash and
    /// the protected resource is the issuer plus `/mcp`.
    pub fn new(
        db: Db,
        keys: KeyRing,
        verifier: Verifier,
        clock: Arc<dyn Clock>,
        public_url: &url::Url,
    ) -> Self {
        let issuer = issuer_of(public_url);
        let names = Resource::new(public_url);
        let resource = names.canonical().to_owned();
        let limits = Limits {
            register: RateLimiter::new(db.clone(), clock.clone(), "oauth-register:"),
            token: RateLimiter::new(db.clone(), clock.clone(), "oauth-token:"),
            revoke: RateLimiter::new(db.clone(), clock.clone(), "oauth-revoke:"),
        };
        Self {
            db,
            keys,
            verifier,
            clock,
            issuer,
            resource,
            names,
            documents: DocumentFetcher::for_public_url(public_url),
            revoked: None,
            access_token_ttl: DEFAULT_ACCESS_TOKEN_LIFETIME_SECS,
            limits,
        }
    }

    /// Counts a request from `ip` against `limit`.
    async fn limit(
        &self,
        limiter: &RateLimiter,
        ip: Option<&str>,
        limit: Limit,
    ) -> Result<(), OAuthError> {
        let Some(ip) = ip else { return Ok(()) };
        limiter
            .hit(
                &limiter.ip_bucket(ip),
                limit.count,
                limit.window,
                limit.what,
            )
            .await?;
        Ok(())
    }

    /// How long the access tokens issued here live (seconds; their grant may end them
    /// sooner). The key ring refuses lifetimes beyond its maximum.
    pub fn with_access_token_ttl(mut self, secs: i64) -> Self {
        self.access_token_ttl = secs;
        self
    }

    /// The live revocation set of the proxy: a token revoked at `/revoke` is added to
    /// it at once, so the next call with it is refused.
    pub fn with_revoked(mut self, revoked: RevokedSet) -> Self {
        self.revoked = Some(revoked);
        self
    }

    /// The issuer identifier (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The canonical resource: the gateway's `/mcp`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The resource with the loopback names it answers to.
    pub fn resource_names(&self) -> &Resource {
        &self.names
    }
}

/// The issuer identifier of a public URL: the URL without a trailing slash.
pub fn issuer_of(public_url: &url::Url) -> String {
    public_url.as_str().trim_end_matches('/').to_owned()
}

/// The routes of the authorization server (without `/authorize`).
pub fn router(state: OAuthState) -> Router {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(as_metadata))
        .route("/.well-known/openid-configuration", get(as_metadata))
        .route("/.well-known/oauth-protected-resource", get(pr_metadata))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(pr_metadata),
        )
        .route("/register", post(register))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .with_state(state)
}

async fn as_metadata(State(s): State<OAuthState>) -> Response {
    let i = &s.issuer;
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "registration_endpoint": format!("{i}/register"),
        "revocation_endpoint": format!("{i}/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "scopes_supported": SCOPES_SUPPORTED,
    }))
    .into_response()
}

/// The protected resource metadata (RFC 9728), naming the resource the way the client
/// reached it when that is a loopback alias of the public URL (see [`Resource`]).
async fn pr_metadata(State(s): State<OAuthState>, headers: HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    axum::Json(json!({
        "resource": s.names.as_reached(host),
        "authorization_servers": [s.issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": SCOPES_SUPPORTED,
        "resource_name": "Warrant",
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------
// Errors

/// An OAuth error response (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8707 `invalid_target`).
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
    basic_challenge: bool,
    /// Seconds for `Retry-After` (a rate limit).
    retry_after: Option<i64>,
}

impl OAuthError {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            description: description.into(),
            basic_challenge: false,
            retry_after: None,
        }
    }

    fn invalid_client(description: impl Into<String>, basic: bool) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_client",
            description: description.into(),
            basic_challenge: basic,
            retry_after: None,
        }
    }

    fn server(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "authorization server storage failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "server_error",
            description: "the server could not complete the request".into(),
            basic_challenge: false,
            retry_after: None,
        }
    }
}

impl From<RateError> for OAuthError {
    fn from(e: RateError) -> Self {
        match e.retry_after() {
            Some(secs) => {
                tracing::warn!(reason = %e, "authorization server request refused by a rate limit");
                Self {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: "temporarily_unavailable",
                    description: format!("{e}; try again in {secs} seconds"),
                    basic_challenge: false,
                    retry_after: Some(secs),
                }
            }
            None => Self::server(&e),
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        Self::server(&e)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"warrant\""),
            );
        }
        response
    }
}

/// Adds `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

// ---------------------------------------------------------------------------------
// Registration

fn strings(body: &Value, field: &str) -> Result<Option<Vec<String>>, OAuthError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    OAuthError::new(
                        "invalid_client_metadata",
                        format!("{field} must be an array of strings"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(OAuthError::new(
            "invalid_client_metadata",
            format!("{field} must be an array of strings"),
        )),
    }
}

fn string<'a>(body: &'a Value, field: &str) -> Result<Option<&'a str>, OAuthError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(OAuthError::new(
            "invalid_client_metadata",
            format!("{field} must be a string"),
        )),
    }
}

async fn register(State(s): State<OAuthState>, ClientIp(ip): ClientIp, body: Bytes) -> Response {
    if let Err(e) = s
        .limit(&s.limits.register, ip.as_deref(), REGISTER_LIMIT)
        .await
    {
        return e.into_response();
    }
    match register_inner(&s, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn register_inner(s: &OAuthState, body: &[u8]) -> Result<Response, OAuthError> {
    let body: Value = serde_json::from_slice(body).map_err(|_| {
        OAuthError::new("invalid_client_metadata", "the body must be a JSON object")
    })?;
    if !body.is_object() {
        return Err(OAuthError::new(
            "invalid_client_metadata",
            "the body must be a JSON object",
        ));
    }
    let redirect_uris = strings(&body, "redirect_uris")?.unwrap_or_default();
    if let Some(problem) = redirect_uris_problem(&redirect_uris) {
        return Err(OAuthError::new("invalid_redirect_uri", problem));
    }
    let method = string(&body, "token_endpoint_auth_method")?.unwrap_or("none");
    if !matches!(
        method,
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return Err(OAuthError::new(
            "invalid_client_metadata",
            format!(
                "token_endpoint_auth_method {method:?} is not supported (none, \
                 client_secret_basic, client_secret_post)"
            ),
        ));
    }
    let grant_types = strings(&body, "grant_types")?
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    if let Some(g) = grant_types
        .iter()
        .find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
    {
        return Err(OAuthError::new(
            "invalid_client_metadata",
            format!("grant type {g:?} is not supported"),
        ));
    }
    let response_types = strings(&body, "response_types")?.unwrap_or_else(|| vec!["code".into()]);
    if let Some(r) = response_types.iter().find(|r| r.as_str() != "code") {
        return Err(OAuthError::new(
            "invalid_client_metadata",
            format!("response type {r:?} is not supported"),
        ));
    }
    let application_type = match string(&body, "application_type")? {
        Some(t @ ("native" | "web")) => t.to_owned(),
        Some(other) => {
            return Err(OAuthError::new(
                "invalid_client_metadata",
                format!("application_type {other:?} is neither native nor web"),
            ));
        }
        None => default_application_type(&redirect_uris).to_owned(),
    };
    let name = string(&body, "client_name")?
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("Unnamed agent");
    let name: String = name.chars().take(100).collect();
    let now = s.clock.unix();
    let (client, secret) = Clients::new(s.db.clone())
        .register(
            NewClient {
                kind: ClientKind::Dcr,
                client_id: None,
                name,
                redirect_uris,
                application_type,
                token_endpoint_auth_method: method.to_owned(),
            },
            now,
        )
        .await?;
    let mut out = json!({
        "client_id": client.client_id,
        "client_id_issued_at": now,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "grant_types": grant_types,
        "response_types": response_types,
        "application_type": client.application_type,
    });
    if let (Some(secret), Some(map)) = (secret, out.as_object_mut()) {
        map.insert("client_secret".into(), Value::String(secret));
        map.insert("client_secret_expires_at".into(), json!(0));
    }
    Ok(no_store(
        (StatusCode::CREATED, axum::Json(out)).into_response(),
    ))
}

// ---------------------------------------------------------------------------------
// Client authentication

fn form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(OAuthError::new(
                "invalid_request",
                "a parameter is repeated",
            ));
        }
    }
    Ok(out)
}

/// Authenticates the client of a token or revocation request: HTTP Basic
/// (`client_secret_basic`), a `client_secret` form field (`client_secret_post`), or a
/// bare `client_id` for a public client.
async fn authenticate(
    s: &OAuthState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Client, OAuthError> {
    let basic = basic_credentials(headers)?;
    let (client_id, secret, used_basic) = match basic {
        Some((id, secret)) => (id, Some(secret), true),
        None => {
            let Some(id) = params.get("client_id") else {
                return Err(OAuthError::invalid_client("client_id is missing", false));
            };
            (id.clone(), params.get("client_secret").cloned(), false)
        }
    };
    if let (true, Some(form_id)) = (used_basic, params.get("client_id"))
        && *form_id != client_id
    {
        return Err(OAuthError::new(
            "invalid_request",
            "client_id differs from the authenticated client",
        ));
    }
    // A metadata document client is known here only if /authorize read its document
    // (no code can exist otherwise): a stale copy is fetched again, an unknown URL is
    // not fetched at all, so this unauthenticated endpoint cannot be used to make
    // Warrant fetch arbitrary URLs.
    let found = cimd::find_client(
        &Clients::new(s.db.clone()),
        &s.documents,
        &client_id,
        s.clock.unix(),
        FetchNew::No,
    )
    .await
    .map_err(|e| match e {
        CimdError::Store(e) => OAuthError::from(e),
        other => {
            tracing::warn!(client = %client_id, error = %other, detail = ?other, "client metadata document refused");
            OAuthError::invalid_client(other.to_string(), used_basic)
        }
    })?;
    let Some(client) = found else {
        return Err(OAuthError::invalid_client("unknown client", used_basic));
    };
    if client.confidential {
        match secret {
            Some(secret) if client.secret_matches(&secret) => {}
            _ => {
                return Err(OAuthError::invalid_client(
                    "client authentication failed",
                    used_basic,
                ));
            }
        }
    } else if secret.is_some_and(|s| !s.is_empty()) {
        return Err(OAuthError::invalid_client(
            "this public client has no secret",
            used_basic,
        ));
    }
    Ok(client)
}

fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("malformed Basic credentials", true);
    let value = value.to_str().map_err(|_| bad())?;
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

// ---------------------------------------------------------------------------------
// Token endpoint

async fn token(
    State(s): State<OAuthState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = s.limit(&s.limits.token, ip.as_deref(), TOKEN_LIMIT).await {
        return no_store(e.into_response());
    }
    let response = match token_inner(&s, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    no_store(response)
}

/// The resource a token request names, which must be Warrant's (RFC 8707); none means
/// the canonical one.
fn target(s: &OAuthState, params: &HashMap<String, String>) -> Result<String, OAuthError> {
    match params.get("resource") {
        None => Ok(s.resource.clone()),
        Some(r) if s.names.accepts(r) => Ok(s.resource.clone()),
        Some(r) => Err(OAuthError::new(
            "invalid_target",
            format!(
                "this server issues tokens for {} only, not {r:?}",
                s.resource
            ),
        )),
    }
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::new("invalid_request", format!("{name} is missing")))
}

/// The S256 PKCE check (RFC 7636 §4.6), in constant time.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    valid && constant_time_eq(&computed, challenge)
}

async fn token_inner(
    s: &OAuthState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let params = form(body)?;
    let grant_type = required(&params, "grant_type")?.to_owned();
    if !matches!(grant_type.as_str(), "authorization_code" | "refresh_token") {
        return Err(OAuthError::new(
            "unsupported_grant_type",
            format!("grant_type {grant_type:?} is not supported"),
        ));
    }
    let client = authenticate(s, headers, &params).await?;
    let resource = target(s, &params)?;
    let now = s.clock.unix();
    if grant_type == "authorization_code" {
        let code = required(&params, "code")?;
        // Required, unless /authorize was allowed to omit it: a client with exactly one
        // registered redirect URI (OAuth 2.1 §4.1.3).
        let redirect_uri = params.get("redirect_uri").map(String::as_str);
        let verifier = required(&params, "code_verifier")?;
        let codes = Codes::new(s.db.clone());
        let row = codes.redeem(code, now).await.map_err(|e| match e {
            CodeError::Store(e) => OAuthError::from(e),
            other => OAuthError::new("invalid_grant", other.to_string()),
        })?;
        if row.client_id != client.client_id {
            return Err(OAuthError::new(
                "invalid_grant",
                "the code was issued to another client",
            ));
        }
        let implied =
            client.redirect_uris.len() == 1 && client.redirect_uris[0] == row.redirect_uri;
        if redirect_uri.map_or(!implied, |uri| uri != row.redirect_uri) {
            return Err(OAuthError::new(
                "invalid_grant",
                "redirect_uri differs from the one sent to /authorize",
            ));
        }
        if !pkce_s256_matches(verifier, &row.code_challenge) {
            return Err(OAuthError::new(
                "invalid_grant",
                "the code_verifier does not match the code_challenge",
            ));
        }
        if row.resource != resource {
            return Err(OAuthError::new(
                "invalid_target",
                "the resource differs from the one authorized",
            ));
        }
        let grant = live_grant(s, &row.grant_id, now).await?;
        let (access, expires_in, revocation_ids, access_expires) = mint_for(s, &grant, now)?;
        codes
            .record_access_token(code, &revocation_ids, access_expires)
            .await?;
        let refresh = RefreshTokens::new(s.db.clone())
            .issue(
                &NewRefreshToken {
                    family_id: row.family_id,
                    client_id: client.client_id.clone(),
                    user_id: row.user_id,
                    grant_id: grant.id.clone(),
                    resource: resource.clone(),
                    scope: row.scope.clone(),
                    expires_at: grant.expires_at,
                    access_revocation_ids: revocation_ids,
                    access_expires_at: access_expires,
                },
                now,
            )
            .await?;
        return Ok(token_response(
            &access,
            expires_in,
            &refresh,
            row.scope.as_deref(),
        ));
    }
    let presented = required(&params, "refresh_token")?;
    let refresh = RefreshTokens::new(s.db.clone());
    let row = refresh
        .spend(presented, &client.client_id, now)
        .await
        .map_err(|e| match e {
            super::RefreshError::Store(e) => OAuthError::from(e),
            super::RefreshError::Reused { ref revoked } => {
                // Refused on this replica's /mcp at once; the others read the list.
                if let Some(set) = &s.revoked {
                    set.insert(revoked);
                }
                OAuthError::new("invalid_grant", e.to_string())
            }
            other => OAuthError::new("invalid_grant", other.to_string()),
        })?;
    if row.resource != resource {
        return Err(OAuthError::new(
            "invalid_target",
            "the resource differs from the one authorized",
        ));
    }
    let grant = live_grant(s, &row.grant_id, now).await?;
    let (access, expires_in, revocation_ids, access_expires) = mint_for(s, &grant, now)?;
    let next = refresh
        .issue(
            &NewRefreshToken {
                family_id: row.family_id,
                client_id: client.client_id.clone(),
                user_id: row.user_id,
                grant_id: grant.id.clone(),
                resource,
                scope: row.scope.clone(),
                expires_at: grant.expires_at,
                access_revocation_ids: revocation_ids,
                access_expires_at: access_expires,
            },
            now,
        )
        .await?;
    Ok(token_response(
        &access,
        expires_in,
        &next,
        row.scope.as_deref(),
    ))
}

/// The grant behind a code or refresh token, if it is live and its person is not
/// disabled.
async fn live_grant(s: &OAuthState, id: &str, now: i64) -> Result<Grant, OAuthError> {
    let grant = match Grants::new(s.db.clone()).get(id).await? {
        Some(g) if g.is_live(now) => g,
        _ => {
            return Err(OAuthError::new(
                "invalid_grant",
                "the consent behind this request has ended or was revoked",
            ));
        }
    };
    let users = warrant_idp::users::Users::new(s.db.clone(), s.clock.clone());
    match users.get(&grant.user_id).await {
        Ok(Some(person)) if person.status != warrant_idp::users::Status::Disabled => Ok(grant),
        Ok(Some(person)) => Err(OAuthError::new(
            "invalid_grant",
            format!(
                "the account of {} is disabled: an admin can enable it, then the person \
                 approves this agent again",
                person.email
            ),
        )),
        Ok(None) => Err(OAuthError::new(
            "invalid_grant",
            "the person behind this consent no longer exists",
        )),
        Err(e) => Err(OAuthError::server(&e)),
    }
}

/// Mints an access token for `grant`; returns it, its lifetime, its revocation ids and
/// its expiry.
fn mint_for(
    s: &OAuthState,
    grant: &Grant,
    now: i64,
) -> Result<(String, i64, Vec<String>, i64), OAuthError> {
    let expires_at = (now + s.access_token_ttl).min(grant.expires_at);
    let patterns = |list: &[String]| -> Result<Vec<ToolPattern>, OAuthError> {
        list.iter()
            .map(|p| ToolPattern::parse(p).map_err(|e| OAuthError::server(&e)))
            .collect()
    };
    let max_risk = match &grant.max_risk {
        Some(r) => Some(
            serde_json::from_value::<Risk>(Value::String(r.clone()))
                .map_err(|e| OAuthError::server(&e))?,
        ),
        None => None,
    };
    let consent = Restriction {
        allow: Some(patterns(&grant.allow)?),
        deny: patterns(&grant.deny)?,
        max_risk,
        // The person's argument constraints: the consent block's Datalog enforces them,
        // and a refusal names the argument and what it must be.
        args: grant.args.clone(),
        expires_at: Some(grant.expires_at),
    };
    let request = MintRequest {
        user: grant.user_id.clone(),
        agent: grant.client_id.clone(),
        grant: grant.id.clone(),
        audience: grant.resource.clone(),
        expires_at,
        calls_per_hour: grant.calls_per_hour,
        consent,
    };
    let token = mint(&s.keys, &request, now).map_err(|e| OAuthError::server(&e))?;
    let verified = s
        .verifier
        .verify(&token, now)
        .map_err(|e| OAuthError::server(&e))?;
    let ids = verified.identity.revocation_ids.clone();
    tracing::info!(grant = %grant.id, client = %grant.client_id, "access token issued");
    Ok((token, expires_at - now, ids, expires_at))
}

fn token_response(access: &str, expires_in: i64, refresh: &str, scope: Option<&str>) -> Response {
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": refresh,
    });
    if let (Some(scope), Some(map)) = (scope, body.as_object_mut()) {
        map.insert("scope".into(), Value::String(scope.to_owned()));
    }
    axum::Json(body).into_response()
}

// ---------------------------------------------------------------------------------
// Revocation

async fn revoke(
    State(s): State<OAuthState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = s.limit(&s.limits.revoke, ip.as_deref(), REVOKE_LIMIT).await {
        return no_store(e.into_response());
    }
    let response = match revoke_inner(&s, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    no_store(response)
}

async fn revoke_inner(
    s: &OAuthState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let params = form(body)?;
    let client = authenticate(s, headers, &params).await?;
    let token = required(&params, "token")?;
    let now = s.clock.unix();
    // RFC 7009: an unknown token, or another client's, is answered 200 all the same.
    if let Some(grant) = RefreshTokens::new(s.db.clone())
        .revoke(token, &client.client_id, now)
        .await?
    {
        // RFC 7009 §2.1: the access tokens of the same authorization end with it. They
        // carry the grant's id, so revoking the grant ends every one of them at once (and
        // the agent asks the person again next time).
        Grants::new(s.db.clone()).revoke(&grant, now).await?;
        if let Some(revoked) = &s.revoked {
            revoked.insert(std::slice::from_ref(&grant));
        }
        tracing::info!(client = %client.client_id, %grant, "refresh token revoked, and its grant");
        return Ok(StatusCode::OK.into_response());
    }
    if let Ok(verified) = s.verifier.verify(token, now)
        && verified.identity.agent == client.client_id
    {
        Revocations::new(s.db.clone())
            .add(
                &verified.identity.revocation_ids,
                verified.identity.expires_at,
            )
            .await?;
        if let Some(revoked) = &s.revoked {
            revoked.insert(&verified.identity.revocation_ids);
        }
        tracing::info!(client = %client.client_id, "access token revoked");
    }
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_follows_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_s256_matches(verifier, challenge));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            challenge
        ));
        assert!(!pkce_s256_matches("short", challenge));
    }
}
