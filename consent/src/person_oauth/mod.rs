//! Each person's own OAuth connection to an upstream (`auth.mode = "person_oauth"`):
//! Warrant is the OAuth client of the upstream's authorization server (found by
//! [`crate::upstream_oauth`]; Warrant names itself there by its client ID metadata
//! document, registers itself dynamically, or uses the client id an admin configured:
//! [`Registration`]), a person connects their account there once (authorization code with
//! PKCE `S256`, `state`, and the upstream as `resource`), and Warrant keeps the tokens in
//! the vault under the person's id and refreshes them ahead of their expiry.
//!
//! A connection the authorization server no longer accepts (revoked, expired without a
//! refresh token, a registration it forgot) is marked in the vault and reported as
//! [`PersonOAuthError::Reconnect`]: the call that meets it says so with the link, and the
//! person's page says it must be made again; nothing fails silently and the server is
//! not asked again on every call. Two replicas that refresh one token at once cannot both
//! write it ([`Vault::replace_if`]): the one that loses uses the winner's token.
//!
//! Vault records: the registration under the shared owner, kind [`OAUTH_CLIENT`]; each
//! person's tokens under their id, kind [`OAUTH_TOKEN`]. Both are JSON, sealed like every
//! vault record, and never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use oauth2::basic::BasicErrorResponseType;
use oauth2::{
    AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RefreshToken,
    RequestTokenError, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use warrant_idp::Clock;
use zeroize::{Zeroize, Zeroizing};

use crate::upstream_oauth::{UpstreamOAuth, UpstreamOAuthError};

mod wire;

use crate::vault::{SHARED, Vault, VaultError};
use wire::{BoxedSend, oauth_client, send_bounded};

/// The vault record kind of a person's tokens for an upstream.
pub const OAUTH_TOKEN: &str = "oauth_token";
/// The vault record kind of Warrant's registration at an upstream's authorization server.
pub const OAUTH_CLIENT: &str = "oauth_client";
/// Where the authorization server sends the person back (under the public URL).
pub const CALLBACK_PATH: &str = "/account/connections/oauth/callback";
/// Warrant's client ID metadata document as the client of upstreams' authorization
/// servers (under the public URL; the URL is the client id).
pub const CLIENT_DOCUMENT_PATH: &str = "/oauth/upstream-client.json";

/// How Warrant gets a client id at an upstream's authorization server that the admin
/// gave none for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Its client ID metadata document where the server takes those and Warrant's
    /// public URL is `https` (a server elsewhere can fetch it), else dynamic
    /// registration, else the document.
    Auto,
    /// Always the client ID metadata document.
    MetadataDocument,
    /// Always dynamic client registration (RFC 7591).
    Dynamic,
}
/// A connection attempt must come back within this.
pub const FLOW_LIFETIME_SECS: i64 = 600;
/// A token is refreshed when less than this is left of its life (or less than half of
/// its life, for a short-lived one).
const REFRESH_AHEAD_SECS: i64 = 60;
/// A token response is at most this large.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Each request to an authorization server ends within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An upstream people connect with OAuth, as configured.
#[derive(Clone)]
pub struct OAuthUpstream {
    pub name: String,
    /// The upstream's MCP endpoint (where discovery starts).
    pub url: url::Url,
    /// A client id an admin registered at the authorization server; `None`: Warrant
    /// registers itself (dynamic client registration).
    pub client_id: Option<String>,
    /// The secret of `client_id`, for a confidential client.
    pub client_secret: Option<Zeroizing<String>>,
    /// The scopes asked for (none: the server's default).
    pub scopes: Vec<String>,
    /// How Warrant gets a client id there, when `client_id` is not given.
    pub registration: Registration,
}

impl std::fmt::Debug for OAuthUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthUpstream")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("scopes", &self.scopes)
            .field("registration", &self.registration)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PersonOAuthError {
    #[error("{upstream} is not a server people connect with OAuth")]
    UnknownUpstream { upstream: String },
    /// The connection must be made again by its person.
    #[error("your connection to {upstream} must be made again: {reason}")]
    Reconnect { upstream: String, reason: String },
    /// The authorization server cannot be reached or answered nonsense; try later.
    #[error("the authorization server of {upstream} cannot be used now: {reason}")]
    Unavailable { upstream: String, reason: String },
    /// A connection attempt that cannot finish (expired, replayed, refused).
    #[error("{0}")]
    Flow(String),
    #[error(transparent)]
    Discovery(#[from] UpstreamOAuthError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
}

/// Warrant's registration at one upstream's authorization server.
#[derive(Clone, Serialize, Deserialize)]
struct ClientRecord {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    revocation_endpoint: Option<String>,
    /// The upstream as the tokens' `resource`.
    resource: String,
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    /// The secret goes in the body (`client_secret_post`) rather than Basic.
    #[serde(default)]
    secret_in_body: bool,
    redirect_uri: String,
}

impl Drop for ClientRecord {
    fn drop(&mut self) {
        self.client_secret.zeroize();
    }
}

/// A person's tokens for an upstream.
#[derive(Clone, Serialize, Deserialize)]
struct TokenRecord {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    /// Unix seconds; `None`: the server said nothing of its life.
    #[serde(default)]
    expires_at: Option<i64>,
    obtained_at: i64,
    /// The registration the tokens were issued to.
    client_id: String,
    /// Why the authorization server no longer accepts this connection (then it must be
    /// made again).
    #[serde(default)]
    dead: Option<String>,
}

impl Drop for TokenRecord {
    fn drop(&mut self) {
        self.access_token.zeroize();
        self.refresh_token.zeroize();
    }
}

impl TokenRecord {
    /// When the token should be refreshed before use.
    fn refresh_at(&self) -> Option<i64> {
        self.expires_at.map(|expires| {
            let life = (expires - self.obtained_at).max(0);
            expires - REFRESH_AHEAD_SECS.min(life / 2)
        })
    }
}

/// A connection attempt, kept in the person's session until the authorization server
/// sends them back.
#[derive(Clone, Serialize, Deserialize)]
pub struct Flow {
    pub upstream: String,
    state: String,
    verifier: String,
    client_id: String,
    started_at: i64,
}

impl Flow {
    /// The `state` it was started with.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// Whether it is older than [`FLOW_LIFETIME_SECS`] at `now`.
    pub fn expired(&self, now: i64) -> bool {
        now - self.started_at > FLOW_LIFETIME_SECS
    }
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("upstream", &self.upstream)
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

/// A person's access token for an upstream, to call it with.
pub struct Access {
    pub token: Zeroizing<String>,
    /// The vault record's version (raised by every refresh).
    pub version: i64,
    /// How long it serves before it must be refreshed; `None`: no expiry known.
    pub refresh_in: Option<Duration>,
}

/// What a person's page says about their connection to an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    NotConnected,
    /// It serves until `expires_at` (Unix seconds; `None`: not said), or for as long as
    /// it is `renewed` (Warrant renews it before it expires).
    Connected {
        expires_at: Option<i64>,
        renewed: bool,
    },
    /// Made once, no longer accepted: the reason.
    Dead(String),
}

type Pair = (String, String);

/// Per-person OAuth connections of every upstream configured for them.
pub struct PersonOAuth {
    vault: Vault,
    clock: Arc<dyn Clock>,
    discovery: UpstreamOAuth,
    http: reqwest::Client,
    redirect_uri: String,
    /// The URL of Warrant's client ID metadata document.
    client_document: String,
    /// Warrant's public URL is `https`.
    public_https: bool,
    client_name: String,
    upstreams: HashMap<String, OAuthUpstream>,
    /// Registrations read or made, per upstream.
    clients: Mutex<HashMap<String, Arc<ClientRecord>>>,
    /// One refresh at a time per (person, upstream) on this replica.
    refreshing: Mutex<HashMap<Pair, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for PersonOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonOAuth")
            .field("redirect_uri", &self.redirect_uri)
            .field("upstreams", &self.upstreams.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PersonOAuth {
    /// The connections of `upstreams`, people coming back to `public_url` +
    /// [`CALLBACK_PATH`]; Warrant registers as `client_name` where it registers itself.
    pub fn new(
        vault: Vault,
        clock: Arc<dyn Clock>,
        public_url: &url::Url,
        client_name: &str,
        upstreams: Vec<OAuthUpstream>,
    ) -> Result<Self, PersonOAuthError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PersonOAuthError::Flow(format!("cannot build the HTTP client: {e}")))?;
        let under = |path: &str| {
            let mut url = public_url.clone();
            url.set_path(path);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        };
        Ok(Self {
            vault,
            clock,
            discovery: UpstreamOAuth::new()?,
            http,
            redirect_uri: under(CALLBACK_PATH),
            client_document: under(CLIENT_DOCUMENT_PATH),
            public_https: public_url.scheme() == "https",
            client_name: client_name.to_owned(),
            upstreams: upstreams.into_iter().map(|u| (u.name.clone(), u)).collect(),
            clients: Mutex::new(HashMap::new()),
            refreshing: Mutex::new(HashMap::new()),
        })
    }

    /// Where the authorization server sends people back.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Warrant's client ID metadata document (served at [`CLIENT_DOCUMENT_PATH`]): a
    /// public client that authenticates with PKCE alone and comes back to
    /// [`CALLBACK_PATH`].
    pub fn client_document(&self) -> serde_json::Value {
        serde_json::json!({
            "client_id": self.client_document,
            "client_name": self.client_name,
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })
    }

    /// Whether `upstream` is connected with OAuth per person.
    pub fn serves(&self, upstream: &str) -> bool {
        self.upstreams.contains_key(upstream)
    }

    fn target(&self, upstream: &str) -> Result<&OAuthUpstream, PersonOAuthError> {
        self.upstreams
            .get(upstream)
            .ok_or_else(|| PersonOAuthError::UnknownUpstream {
                upstream: upstream.to_owned(),
            })
    }

    /// Starts connecting a person to `upstream`: the authorization server's URL to send
    /// them to, and the attempt to keep in their session until they come back.
    pub async fn begin(&self, upstream: &str) -> Result<(url::Url, Flow), PersonOAuthError> {
        let target = self.target(upstream)?;
        let client = self.client(target).await?;
        let oauth = oauth_client(&client)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = oauth
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge)
            .add_extra_param("resource", client.resource.clone());
        for scope in &target.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state) = request.url();
        let flow = Flow {
            upstream: upstream.to_owned(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            client_id: client.client_id.clone(),
            started_at: self.clock.unix(),
        };
        Ok((url, flow))
    }

    /// Finishes `flow` for `owner` with the `code` the authorization server sent back:
    /// exchanges it and keeps the tokens.
    pub async fn finish(
        &self,
        owner: &str,
        flow: &Flow,
        code: &str,
    ) -> Result<(), PersonOAuthError> {
        let now = self.clock.unix();
        if flow.expired(now) {
            return Err(PersonOAuthError::Flow(format!(
                "the connection to {} took longer than {} minutes: connect again",
                flow.upstream,
                FLOW_LIFETIME_SECS / 60
            )));
        }
        let target = self.target(&flow.upstream)?;
        let client = self.client(target).await?;
        if client.client_id != flow.client_id {
            return Err(PersonOAuthError::Flow(format!(
                "Warrant's registration at {}'s authorization server changed meanwhile: \
                 connect again",
                flow.upstream
            )));
        }
        let oauth = oauth_client(&client)?;
        let http = self.http_client();
        let answer = oauth
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .add_extra_param("resource", client.resource.clone())
            .request_async(&http)
            .await;
        let tokens = match answer {
            Ok(tokens) => tokens,
            Err(RequestTokenError::ServerResponse(refused)) => {
                return Err(PersonOAuthError::Flow(format!(
                    "{}'s authorization server refused the connection ({}{})",
                    flow.upstream,
                    refused.error(),
                    refused
                        .error_description()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )));
            }
            Err(e) => return Err(unavailable(&flow.upstream, &e)),
        };
        let record = record_of(&tokens, None, &client.client_id, now);
        let json = Zeroizing::new(serde_json::to_vec(&record).map_err(stored_error)?);
        self.vault
            .put(owner, &flow.upstream, OAUTH_TOKEN, &json)
            .await?;
        Ok(())
    }

    /// `owner`'s access token for `upstream`, refreshed first when it is about to expire;
    /// `None`: no connection was made.
    pub async fn access_token(
        &self,
        owner: &str,
        upstream: &str,
    ) -> Result<Option<Access>, PersonOAuthError> {
        let now = self.clock.unix();
        let Some((record, version)) = self.stored(owner, upstream).await? else {
            return Ok(None);
        };
        if let Some(reason) = &record.dead {
            return Err(reconnect(upstream, reason));
        }
        if record.refresh_at().is_none_or(|at| now < at) {
            return Ok(Some(access(&record, version, now)));
        }
        // One refresh per person and upstream at a time here; whoever waited reads what
        // the first one stored.
        let lock = self.refresh_lock(owner, upstream);
        let one = lock.lock().await;
        let result = self.refresh(owner, upstream, now).await;
        drop(one);
        // The lock is dropped from the table once no other call waits on it.
        self.refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, l| !Arc::ptr_eq(l, &lock) || Arc::strong_count(l) > 2);
        result
    }

    /// The upstream refused `owner`'s token of `version` (HTTP 401): the next use
    /// refreshes it first.
    pub async fn refused(
        &self,
        owner: &str,
        upstream: &str,
        version: i64,
    ) -> Result<(), PersonOAuthError> {
        let Some((mut record, stored)) = self.stored(owner, upstream).await? else {
            return Ok(());
        };
        if stored != version {
            return Ok(());
        }
        let now = self.clock.unix();
        record.expires_at = Some(now);
        if record.refresh_token.is_none() {
            record.dead = Some(format!(
                "{upstream} refused the token, and its authorization server gave no refresh \
                 token"
            ));
        }
        self.replace(owner, upstream, &record, version).await?;
        Ok(())
    }

    /// Removes `owner`'s connection to `upstream`, revoking its tokens at the
    /// authorization server where it offers revocation (best effort, bounded); whether
    /// there was one.
    pub async fn disconnect(&self, owner: &str, upstream: &str) -> Result<bool, PersonOAuthError> {
        let stored = self.stored(owner, upstream).await?;
        if let Some((record, _)) = &stored
            && let Ok(target) = self.target(upstream)
            && let Ok(client) = self.client(target).await
        {
            self.revoke(&client, record).await;
        }
        Ok(self.vault.remove(owner, upstream, OAUTH_TOKEN).await?)
    }

    /// What `owner`'s page says of their connection to `upstream`.
    pub async fn status(&self, owner: &str, upstream: &str) -> Result<Status, PersonOAuthError> {
        Ok(match self.stored(owner, upstream).await? {
            None => Status::NotConnected,
            Some((record, _)) => match &record.dead {
                Some(reason) => Status::Dead(reason.clone()),
                None => Status::Connected {
                    expires_at: record.expires_at,
                    renewed: record.refresh_token.is_some(),
                },
            },
        })
    }

    async fn stored(
        &self,
        owner: &str,
        upstream: &str,
    ) -> Result<Option<(TokenRecord, i64)>, PersonOAuthError> {
        let Some((value, version)) = self.vault.fetch(owner, upstream, OAUTH_TOKEN).await? else {
            return Ok(None);
        };
        let record: TokenRecord =
            serde_json::from_slice(&value).map_err(|_| PersonOAuthError::Reconnect {
                upstream: upstream.to_owned(),
                reason: "its stored tokens cannot be read".into(),
            })?;
        Ok(Some((record, version)))
    }

    /// Writes `record` unless someone else wrote since `version`: whether it did.
    async fn replace(
        &self,
        owner: &str,
        upstream: &str,
        record: &TokenRecord,
        version: i64,
    ) -> Result<bool, PersonOAuthError> {
        let json = Zeroizing::new(serde_json::to_vec(record).map_err(stored_error)?);
        Ok(self
            .vault
            .replace_if(owner, upstream, OAUTH_TOKEN, &json, version)
            .await?)
    }

    fn refresh_lock(&self, owner: &str, upstream: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((owner.to_owned(), upstream.to_owned()))
            .or_default()
            .clone()
    }

    /// Refreshes `owner`'s token for `upstream` if it is still due (read again: another
    /// call may have refreshed it while this one waited).
    async fn refresh(
        &self,
        owner: &str,
        upstream: &str,
        now: i64,
    ) -> Result<Option<Access>, PersonOAuthError> {
        let Some((mut record, version)) = self.stored(owner, upstream).await? else {
            return Ok(None);
        };
        if let Some(reason) = &record.dead {
            return Err(reconnect(upstream, reason));
        }
        let expired = record.expires_at.is_some_and(|at| now >= at);
        if record.refresh_at().is_none_or(|at| now < at) {
            return Ok(Some(access(&record, version, now)));
        }
        let Some(refresh_token) = record.refresh_token.clone() else {
            if !expired {
                return Ok(Some(access(&record, version, now)));
            }
            let reason = "the token expired, and the authorization server gave no refresh \
                          token to renew it"
                .to_owned();
            return self
                .mark_dead(owner, upstream, record, version, reason)
                .await;
        };
        let refresh_token = Zeroizing::new(refresh_token);
        let target = self.target(upstream)?;
        let client = self.client(target).await?;
        let oauth = oauth_client(&client)?;
        let http = self.http_client();
        let answer = oauth
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_string()))
            .add_extra_param("resource", client.resource.clone())
            .request_async(&http)
            .await;
        match answer {
            Ok(tokens) => {
                let fresh = record_of(&tokens, record.refresh_token.take(), &client.client_id, now);
                if self.replace(owner, upstream, &fresh, version).await? {
                    tracing::debug!(upstream, "refreshed a person's upstream token");
                    return Ok(Some(access(&fresh, version + 1, now)));
                }
                // Another replica refreshed it first: use what it stored.
                self.current(owner, upstream).await
            }
            Err(RequestTokenError::ServerResponse(refused)) => {
                // Another replica may have used the refresh token first (a server that
                // rotates them refuses the second use): its tokens serve.
                if let Some((_, now_stored)) = self.stored(owner, upstream).await?
                    && now_stored != version
                {
                    return self.current(owner, upstream).await;
                }
                let code = refused.error();
                if matches!(
                    code,
                    BasicErrorResponseType::InvalidClient
                        | BasicErrorResponseType::UnauthorizedClient
                ) {
                    self.forget_client(upstream).await;
                }
                let reason = format!(
                    "its authorization server no longer accepts it ({code}{}): it was \
                     revoked or has expired",
                    refused
                        .error_description()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                );
                self.mark_dead(owner, upstream, record, version, reason)
                    .await
            }
            Err(e) if !expired => {
                tracing::warn!(upstream, error = %unavailable(upstream, &e), "cannot refresh a person's upstream token; using it until it expires");
                Ok(Some(access(&record, version, now)))
            }
            Err(e) => Err(unavailable(upstream, &e)),
        }
    }

    /// The stored token, as it is now.
    async fn current(
        &self,
        owner: &str,
        upstream: &str,
    ) -> Result<Option<Access>, PersonOAuthError> {
        match self.stored(owner, upstream).await? {
            None => Ok(None),
            Some((record, _)) if record.dead.is_some() => Err(reconnect(
                upstream,
                record.dead.as_deref().unwrap_or_default(),
            )),
            Some((record, version)) => Ok(Some(access(&record, version, self.clock.unix()))),
        }
    }

    /// Marks the connection as no longer accepted (calls stop asking the authorization
    /// server), and says so.
    async fn mark_dead(
        &self,
        owner: &str,
        upstream: &str,
        mut record: TokenRecord,
        version: i64,
        reason: String,
    ) -> Result<Option<Access>, PersonOAuthError> {
        tracing::info!(upstream, %reason, "a person's upstream connection must be made again");
        record.dead = Some(reason.clone());
        self.replace(owner, upstream, &record, version).await?;
        Err(reconnect(upstream, &reason))
    }

    /// Warrant's registration for `target`: remembered, read from the vault, or made now
    /// (discovery, then dynamic registration unless an admin configured a client id).
    async fn client(&self, target: &OAuthUpstream) -> Result<Arc<ClientRecord>, PersonOAuthError> {
        let fits = |c: &ClientRecord| {
            let by_document = c.client_id == self.client_document;
            c.redirect_uri == self.redirect_uri
                && match (&target.client_id, target.registration) {
                    (Some(id), _) => *id == c.client_id,
                    (None, Registration::MetadataDocument) => by_document,
                    (None, Registration::Dynamic) => !by_document,
                    (None, Registration::Auto) => true,
                }
        };
        if let Some(client) = self
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&target.name)
            .filter(|c| fits(c))
        {
            return Ok(client.clone());
        }
        let stored = self.vault.get(SHARED, &target.name, OAUTH_CLIENT).await?;
        let stored = stored.and_then(|v| serde_json::from_slice::<ClientRecord>(&v).ok());
        let client = match stored.filter(|c| fits(c)) {
            Some(client) => client,
            None => {
                let made = self.register(target).await?;
                let json = Zeroizing::new(serde_json::to_vec(&made).map_err(stored_error)?);
                self.vault
                    .put(SHARED, &target.name, OAUTH_CLIENT, &json)
                    .await?;
                tracing::info!(upstream = %target.name, issuer = %made.issuer, "registered with an upstream's authorization server");
                made
            }
        };
        let client = Arc::new(client);
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.name.clone(), client.clone());
        Ok(client)
    }

    async fn register(&self, target: &OAuthUpstream) -> Result<ClientRecord, PersonOAuthError> {
        let found = self.discovery.discover(&target.url).await?;
        let (client_id, client_secret) = match &target.client_id {
            Some(id) => (
                id.clone(),
                target.client_secret.as_ref().map(|s| s.to_string()),
            ),
            None if self.uses_document(target.registration, &found.server) => {
                (self.client_document.clone(), None)
            }
            None => {
                let registered = self
                    .discovery
                    .register(&found.server, &self.client_name, &self.redirect_uri)
                    .await?;
                (registered.client_id, registered.client_secret)
            }
        };
        let methods = &found.server.token_endpoint_auth_methods_supported;
        let secret_in_body = !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post");
        Ok(ClientRecord {
            issuer: found.server.issuer.clone(),
            authorization_endpoint: found.server.authorization_endpoint.clone(),
            token_endpoint: found.server.token_endpoint.clone(),
            revocation_endpoint: found.server.revocation_endpoint.clone(),
            resource: found.resource,
            client_id,
            client_secret,
            secret_in_body,
            redirect_uri: self.redirect_uri.clone(),
        })
    }

    /// Whether Warrant names itself by its client ID metadata document at `server`.
    fn uses_document(
        &self,
        registration: Registration,
        server: &crate::upstream_oauth::ServerMetadata,
    ) -> bool {
        let supported = server.client_id_metadata_document_supported;
        match registration {
            Registration::MetadataDocument => true,
            Registration::Dynamic => false,
            Registration::Auto => {
                supported && (self.public_https || server.registration_endpoint.is_none())
            }
        }
    }

    /// Forgets the registration at `upstream`'s authorization server (it no longer knows
    /// it): the next connection registers again.
    async fn forget_client(&self, upstream: &str) {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(upstream);
        if let Err(e) = self.vault.remove(SHARED, upstream, OAUTH_CLIENT).await {
            tracing::warn!(upstream, error = %e, "cannot forget a registration");
        }
    }

    /// Revokes `record`'s tokens at the authorization server (RFC 7009), if it offers
    /// revocation; failures are logged, never fatal.
    async fn revoke(&self, client: &ClientRecord, record: &TokenRecord) {
        let Some(endpoint) = &client.revocation_endpoint else {
            return;
        };
        let token = record
            .refresh_token
            .as_deref()
            .unwrap_or(&record.access_token);
        let mut form = vec![("token", token), ("client_id", client.client_id.as_str())];
        if let Some(secret) = client.client_secret.as_deref() {
            form.push(("client_secret", secret));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencoded(v)))
            .collect::<Vec<_>>()
            .join("&");
        let body = Zeroizing::new(body);
        let sent = self
            .http
            .post(endpoint)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(endpoint = %endpoint, status = %r.status(), "the authorization server did not revoke a token");
            }
            Err(e) => {
                tracing::warn!(endpoint = %endpoint, error = %e.without_url(), "cannot revoke a token");
            }
        }
    }

    /// The HTTP client the `oauth2` crate sends through: this module's client (time
    /// limits, no redirects), the answer's size bounded.
    fn http_client(&self) -> impl Fn(oauth2::HttpRequest) -> BoxedSend + '_ {
        move |request: oauth2::HttpRequest| {
            let http = self.http.clone();
            Box::pin(send_bounded(http, request)) as BoxedSend
        }
    }
}

/// The record of a token response at `now`; `kept_refresh` is the refresh token before,
/// kept when the server does not rotate it.
fn record_of(
    tokens: &oauth2::basic::BasicTokenResponse,
    kept_refresh: Option<String>,
    client_id: &str,
    now: i64,
) -> TokenRecord {
    TokenRecord {
        access_token: tokens.access_token().secret().clone(),
        refresh_token: tokens
            .refresh_token()
            .map(|t| t.secret().clone())
            .or(kept_refresh),
        expires_at: tokens
            .expires_in()
            .map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
        obtained_at: now,
        client_id: client_id.to_owned(),
        dead: None,
    }
}

fn access(record: &TokenRecord, version: i64, now: i64) -> Access {
    Access {
        token: Zeroizing::new(record.access_token.clone()),
        version,
        refresh_in: record
            .refresh_at()
            .map(|at| Duration::from_secs(at.saturating_sub(now).max(0).unsigned_abs())),
    }
}

fn reconnect(upstream: &str, reason: &str) -> PersonOAuthError {
    PersonOAuthError::Reconnect {
        upstream: upstream.to_owned(),
        reason: reason.to_owned(),
    }
}

fn unavailable<E: std::error::Error>(
    upstream: &str,
    error: &RequestTokenError<E, oauth2::basic::BasicErrorResponse>,
) -> PersonOAuthError {
    let reason = match error {
        RequestTokenError::Request(e) => e.to_string(),
        RequestTokenError::Parse(e, _) => format!("not a token response: {e}"),
        other => other.to_string(),
    };
    PersonOAuthError::Unavailable {
        upstream: upstream.to_owned(),
        reason,
    }
}

fn stored_error(e: serde_json::Error) -> PersonOAuthError {
    PersonOAuthError::Flow(format!("cannot encode the record: {e}"))
}

/// `application/x-www-form-urlencoded` text of `value`.
fn urlencoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests;
