//! One configured OpenID provider as `openidconnect` sees it: its HTTP client (the
//! provider's timeout on every call, no redirects followed), its discovery document and
//! keys (cached, refreshed when stale or when a token names an unknown key), and the
//! `openidconnect` client built from them. The only module that names `openidconnect`'s
//! generic types.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AuthType, ClientId, ClientSecret, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdTokenFields, IssuerUrl, ProviderMetadataWithLogout, RedirectUrl,
    StandardErrorResponse, StandardTokenResponse, reqwest,
};
use tokio::sync::Mutex;

use super::claims::ExtraClaims;
use crate::clock::Clock;
use crate::config::OidcProviderConfig;
use crate::error::IdpError;

/// How long a discovery document and its keys are used before being fetched again.
const METADATA_TTL_SECS: i64 = 15 * 60;

/// The token endpoint's answer, with our extra claims in the ID token.
pub(super) type TokenResponse = StandardTokenResponse<
    IdTokenFields<
        ExtraClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

/// An `openidconnect` client built from discovery: authorization endpoint set, token
/// and userinfo endpoints as the provider publishes them.
pub(super) type OidcClient = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What discovery produced, ready to use.
#[derive(Debug, Clone)]
pub(super) struct Discovered {
    pub client: OidcClient,
    /// The issuer exactly as the provider spells it (`iss` of its tokens).
    pub issuer: String,
    /// RP-initiated logout, when the provider offers it.
    pub end_session_endpoint: Option<url::Url>,
    fetched_at: i64,
}

/// One provider: its settings, HTTP client and cached discovery.
#[derive(Debug)]
pub(super) struct Provider {
    pub config: OidcProviderConfig,
    pub http: reqwest::Client,
    redirect_uri: RedirectUrl,
    cache: Mutex<Option<Arc<Discovered>>>,
}

/// An error and its causes on one line, for the log.
pub(super) fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Provider {
    pub(super) fn new(config: OidcProviderConfig, redirect_uri: String) -> Result<Self, IdpError> {
        let fail = |reason: String| IdpError::Oidc {
            provider: config.name.clone(),
            reason,
        };
        let timeout = if config.timeout.is_zero() {
            Duration::from_secs(10)
        } else {
            config.timeout
        };
        // openidconnect requires a client that does not follow redirects: a redirect on
        // the token or keys endpoint could otherwise send requests anywhere (SSRF).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("warrant/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| fail(format!("cannot build its HTTP client: {}", describe(&e))))?;
        let redirect_uri = RedirectUrl::new(redirect_uri)
            .map_err(|e| fail(format!("invalid redirect URI: {e}")))?;
        Ok(Self {
            config,
            http,
            redirect_uri,
            cache: Mutex::new(None),
        })
    }

    fn fail(&self, reason: impl Into<String>) -> IdpError {
        IdpError::Oidc {
            provider: self.config.display_name.clone(),
            reason: format!("[{}] {}", self.config.name, reason.into()),
        }
    }

    /// The discovery document and keys: cached, fetched when missing, older than
    /// [`METADATA_TTL_SECS`], or when `refresh` (a token named a key we do not have).
    /// One fetch at a time per provider; a failed fetch is not cached.
    pub(super) async fn discovered(
        &self,
        clock: &dyn Clock,
        refresh: bool,
    ) -> Result<Arc<Discovered>, IdpError> {
        let mut cache = self.cache.lock().await;
        let now = clock.unix();
        if let Some(found) = cache.as_ref()
            && !refresh
            && now.saturating_sub(found.fetched_at) < METADATA_TTL_SECS
        {
            return Ok(found.clone());
        }
        let fresh = Arc::new(self.discover(now).await?);
        *cache = Some(fresh.clone());
        Ok(fresh)
    }

    /// The configured issuer, in the spellings it may have: `url` adds a `/` to a bare
    /// host (`https://id.example.com` becomes `https://id.example.com/`), while issuers
    /// are compared as exact strings, so a root issuer is tried without it first.
    fn issuer_candidates(&self) -> Vec<String> {
        let issuer = &self.config.issuer;
        let written = issuer.as_str().to_owned();
        if issuer.path() == "/" && issuer.query().is_none() {
            vec![written.trim_end_matches('/').to_owned(), written]
        } else {
            vec![written]
        }
    }

    async fn discover(&self, now: i64) -> Result<Discovered, IdpError> {
        let mut last_error = String::new();
        let mut metadata = None;
        for candidate in self.issuer_candidates() {
            let issuer = IssuerUrl::new(candidate.clone())
                .map_err(|e| self.fail(format!("invalid issuer {candidate:?}: {e}")))?;
            match ProviderMetadataWithLogout::discover_async(issuer, &self.http).await {
                Ok(found) => {
                    metadata = Some(found);
                    break;
                }
                // The other spelling may be the one the provider uses.
                Err(openidconnect::DiscoveryError::Validation(reason)) => last_error = reason,
                Err(e) => {
                    return Err(self.fail(format!("discovery failed: {}", describe(&e))));
                }
            }
        }
        let Some(metadata) = metadata else {
            return Err(self.fail(format!("discovery failed: {last_error}")));
        };
        let issuer = metadata.issuer().as_str().to_owned();
        let end_session_endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.url().clone());
        // Client authentication as the provider supports it: HTTP Basic (the default)
        // unless it only takes the secret in the request body.
        let methods = metadata.token_endpoint_auth_methods_supported();
        let body_only = methods.is_some_and(|m| {
            !m.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && m.contains(&CoreClientAuthMethod::ClientSecretPost)
        });
        let secret = self
            .config
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_owned()));
        let mut client = OidcClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            secret,
        )
        .set_redirect_uri(self.redirect_uri.clone());
        if body_only {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        tracing::debug!(provider = %self.config.name, %issuer, "OIDC discovery done");
        Ok(Discovered {
            client,
            issuer,
            end_session_endpoint,
            fetched_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(issuer: &str) -> Provider {
        let config = OidcProviderConfig {
            name: "corp".into(),
            display_name: "Corp".into(),
            issuer: url::Url::parse(issuer).expect("url"),
            client_id: "warrant".into(),
            client_secret: None,
            scopes: Vec::new(),
            groups_claim: "groups".into(),
            provision: true,
            trust_email: false,
            allowed_domains: Vec::new(),
            allowed_groups: Vec::new(),
            admin_groups: Vec::new(),
            timeout: Duration::from_secs(3),
        };
        Provider::new(
            config,
            "http://localhost:8080/auth/oidc/corp/callback".into(),
        )
        .expect("provider")
    }

    #[test]
    fn root_issuers_are_tried_in_both_spellings() {
        assert_eq!(
            provider("https://id.example.com").issuer_candidates(),
            ["https://id.example.com", "https://id.example.com/"]
        );
        assert_eq!(
            provider("https://kc.example.com/realms/corp").issuer_candidates(),
            ["https://kc.example.com/realms/corp"]
        );
    }

    #[test]
    fn errors_are_described_with_their_causes() {
        let inner = std::io::Error::other("connection refused");
        let outer = openidconnect::HttpClientError::<std::io::Error>::Io(inner);
        assert_eq!(describe(&outer), "I/O error: connection refused");
    }
}
