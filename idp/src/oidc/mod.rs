//! Sign-in with any OpenID Connect provider (`[auth.oidc.NAME]`).
//!
//! ```text
//! browser          Warrant (ui + idp)                         provider
//!   │ GET /auth/oidc/NAME/start?next=/x                          │
//!   │──────────────▶ discovery (cached) ────────────────────────▶│
//!   │                state, nonce, PKCE verifier → session "oidc.flow"
//!   │◀── 303 authorization endpoint (code, S256 challenge) ──────│
//!   │──────────────────────────── log in, consent ──────────────▶│
//!   │◀──────────────── 303 /auth/oidc/NAME/callback?code&state ──│
//!   │──────────────▶ take "oidc.flow" (single use), check state  │
//!   │                code + verifier ──────────── token ────────▶│
//!   │                ID token: signature, iss, aud, exp, nonce   │
//!   │                userinfo, when the token lacks email/groups▶│
//!   │                policy (domains, groups), account, groups, role
//!   │◀── 303 next, new session id ───────────────────────────────│
//! ```
//!
//! Every call to a provider goes through its own HTTP client with the configured
//! timeout and no redirects ([`provider`]). Claim mapping and the access policy are pure
//! functions ([`claims`]). Failures are [`IdpError::Oidc`] (technical, logged; the
//! person sees "did not complete") or [`IdpError::NotAllowed`] (a reason for the person).

pub mod claims;
mod provider;

use std::sync::Arc;

use openidconnect::core::{CoreAuthenticationFlow, CoreGenderClaim, CoreJwsSigningAlgorithm};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClaimsVerificationError, CsrfToken, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, Scope, SignatureVerificationError,
    TokenResponse as _, UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use self::claims::{
    ClaimSet, ExtraClaims, Identity, check_access, groups_from, map_identity, missing_groups,
};
use self::provider::{Discovered, OidcClient, Provider, describe};
use crate::clock::Clock;
use crate::config::IdpConfig;
use crate::error::IdpError;
use crate::secret::constant_time_eq;
use crate::session::{ClientInfo, Login, Sessions};
use crate::users::{NewUser, Role, Status, User, Users};

/// Session key of the sign-in in progress (one per browser session; a new start
/// replaces it, the callback consumes it).
pub const FLOW_KEY: &str = "oidc.flow";

/// A token exchange's answer is at most this large.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// RFC 8693's grant type and token type.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A token exchange's answer: a token, or an OAuth error.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExchangeAnswer {
    Token {
        access_token: String,
        #[serde(default)]
        expires_in: Option<u64>,
    },
    Error {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    },
}

/// `application/x-www-form-urlencoded` text of `value` (also what HTTP Basic client
/// authentication encodes the id and secret with, RFC 6749 section 2.3.1).
fn form_encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// How long a person may take at the provider before the callback is refused.
const FLOW_TTL_SECS: i64 = 10 * 60;

/// What the start of a sign-in leaves in the session for its callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingFlow {
    provider: String,
    state: String,
    nonce: String,
    pkce_verifier: String,
    /// Where to go after signing in (already checked to stay on this site).
    next: String,
    started_at: i64,
}

/// The query of the provider's redirect back to `/auth/oidc/NAME/callback`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthResponse {
    pub code: Option<String>,
    pub state: Option<String>,
    /// RFC 9207: the issuer of this response, when the provider says it.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A completed sign-in.
#[derive(Debug, Clone)]
pub struct OidcSignIn {
    pub user: User,
    pub login: Login,
    /// The page the person asked for before signing in.
    pub next: String,
    /// The provider's access token for the person, for upstreams that take the person's
    /// own identity (`auth.mode = "person_sso"`); whoever does not keep it drops it.
    pub tokens: SignInTokens,
}

/// A person's access token from their sign-in at a provider.
#[derive(Clone, Serialize, Deserialize)]
pub struct SignInTokens {
    /// The provider (`[auth.oidc.NAME]`) it came from.
    pub provider: String,
    pub access_token: String,
    /// Unix seconds; `None`: the provider did not say.
    pub expires_at: Option<i64>,
}

impl Drop for SignInTokens {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.access_token.zeroize();
    }
}

impl std::fmt::Debug for SignInTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInTokens")
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A token the provider issued for another audience in exchange for a sign-in token
/// (RFC 8693).
pub struct Exchanged {
    pub access_token: zeroize::Zeroizing<String>,
    /// Seconds; `None`: the provider did not say.
    pub expires_in: Option<u64>,
}

/// Why a token exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The provider refused the sign-in token (expired, revoked): sign in again.
    #[error("{provider} no longer accepts your sign-in ({reason})")]
    Refused { provider: String, reason: String },
    /// The provider cannot be used for it now, or at all (no token exchange).
    #[error("{provider}: {reason}")]
    Unavailable { provider: String, reason: String },
}

/// The configured OIDC providers.
#[derive(Debug, Clone)]
pub struct Federation {
    config: Arc<IdpConfig>,
    clock: Arc<dyn Clock>,
    providers: Arc<Vec<Provider>>,
}

/// The path of a provider's redirect URI (`/auth/oidc/NAME/callback`).
pub fn callback_path(name: &str) -> String {
    format!("/auth/oidc/{name}/callback")
}

impl Federation {
    pub fn new(config: Arc<IdpConfig>, clock: Arc<dyn Clock>) -> Result<Self, IdpError> {
        let providers = config
            .oidc
            .iter()
            .map(|p| Provider::new(p.clone(), config.url(&callback_path(&p.name))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config,
            clock,
            providers: Arc::new(providers),
        })
    }

    /// `(name, display name)` of each provider, in configuration order.
    pub fn providers(&self) -> Vec<(String, String)> {
        self.config
            .oidc
            .iter()
            .map(|p| (p.name.clone(), p.display_name.clone()))
            .collect()
    }

    /// The display name of a configured provider.
    pub fn display_name(&self, name: &str) -> Option<&str> {
        self.provider(name).map(|p| p.config.display_name.as_str())
    }

    fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.config.name == name)
    }

    fn known(&self, name: &str) -> Result<&Provider, IdpError> {
        self.provider(name)
            .ok_or(IdpError::NotFound("sign-in provider"))
    }

    /// Starts a sign-in: discovery (cached), a fresh `state`, `nonce` and PKCE (S256)
    /// verifier kept in the session, and the provider's authorization URL to send the
    /// browser to. `next` is kept only if it is a path on this site
    /// ([`crate::next::local_path`]); otherwise the person lands on `/account`.
    pub async fn start(
        &self,
        session: &Session,
        provider: &str,
        next: &str,
    ) -> Result<String, IdpError> {
        let p = self.known(provider)?;
        let discovered = p.discovered(self.clock.as_ref(), false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = discovered
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(p.config.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .url();
        let flow = PendingFlow {
            provider: provider.to_owned(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            next: crate::next::local_path(next)
                .unwrap_or("/account")
                .to_owned(),
            started_at: self.clock.unix(),
        };
        session
            .insert(FLOW_KEY, &flow)
            .await
            .map_err(|e| IdpError::Session(e.to_string()))?;
        tracing::info!(provider, "OIDC sign-in started");
        Ok(url.to_string())
    }

    /// Forgets the sign-in in progress (the provider answered with an error).
    pub async fn abandon(&self, session: &Session) -> Result<(), IdpError> {
        session
            .remove::<PendingFlow>(FLOW_KEY)
            .await
            .map(|_| ())
            .map_err(|e| IdpError::Session(e.to_string()))
    }

    /// Completes a sign-in from the provider's redirect: the flow of this session (used
    /// once), its `state`, the code exchange with the PKCE verifier, the ID token
    /// (signature, issuer, audience, expiry, nonce), the claims (userinfo for what the
    /// token lacks), the provider's access policy, the account (linked identity, else
    /// email, else just-in-time provisioning when allowed), its groups and role; then
    /// the session is signed in with a new id.
    pub async fn callback(
        &self,
        users: &Users,
        sessions: &Sessions,
        session: &Session,
        provider: &str,
        response: &AuthResponse,
        client_info: ClientInfo,
    ) -> Result<OidcSignIn, IdpError> {
        let p = self.known(provider)?;
        let (identity, next, tokens) = self.verify(p, session, response).await?;
        check_access(&p.config, &identity)?;
        let mut user = self.account(users, p, &identity).await?;
        if user.status == Status::Disabled {
            return Err(IdpError::Disabled(user.id));
        }
        let source = format!("oidc:{}", p.config.name);
        users
            .set_groups(&user.id, &source, &identity.groups)
            .await?;
        if let Some(role) = claims::role_from_groups(&p.config, &identity.groups)
            && role != user.role
        {
            users.set_role(&user.id, role).await?;
            user.role = role;
        }
        let login = sessions
            .sign_in(session, &user, &source, client_info)
            .await?;
        users.record_login(&user.id).await?;
        Ok(OidcSignIn {
            user,
            login,
            next,
            tokens,
        })
    }

    /// Exchanges `subject_token` (a person's sign-in access token from `provider`) at the
    /// provider's token endpoint for a token meant for `audience` (RFC 8693 token
    /// exchange, Warrant authenticating as the provider's client).
    pub async fn exchange(
        &self,
        provider: &str,
        subject_token: &str,
        audience: &str,
    ) -> Result<Exchanged, ExchangeError> {
        let unavailable = |reason: String| ExchangeError::Unavailable {
            provider: provider.to_owned(),
            reason,
        };
        let p = self
            .provider(provider)
            .ok_or_else(|| unavailable("no such sign-in provider".into()))?;
        let discovered = p
            .discovered(self.clock.as_ref(), false)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let Some(endpoint) = discovered.client.token_uri() else {
            return Err(unavailable("it publishes no token endpoint".into()));
        };
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("audience", audience),
        ];
        let secret = p.config.client_secret.as_ref().map(|s| s.expose());
        let mut request = p.http.post(endpoint.url().clone());
        match (secret, discovered.client.auth_type()) {
            (Some(secret), openidconnect::AuthType::BasicAuth) => {
                request = request.basic_auth(
                    form_encoded(&p.config.client_id),
                    Some(form_encoded(secret)),
                );
            }
            (Some(secret), _) => {
                form.push(("client_id", &p.config.client_id));
                form.push(("client_secret", secret));
            }
            (None, _) => form.push(("client_id", &p.config.client_id)),
        }
        let body = zeroize::Zeroizing::new(
            form.iter()
                .map(|(k, v)| format!("{k}={}", form_encoded(v)))
                .collect::<Vec<_>>()
                .join("&"),
        );
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| unavailable(format!("token exchange: {}", describe(&e.without_url()))))?;
        let status = response.status();
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(format!("token exchange: {}", describe(&e.without_url()))))?
        {
            if bytes.len() + chunk.len() > MAX_TOKEN_RESPONSE {
                return Err(unavailable(format!(
                    "token exchange: its answer is larger than {MAX_TOKEN_RESPONSE} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let answer: ExchangeAnswer = serde_json::from_slice(&bytes)
            .map_err(|_| unavailable(format!("token exchange: not a token response ({status})")))?;
        match answer {
            ExchangeAnswer::Token {
                access_token,
                expires_in,
            } if status.is_success() => Ok(Exchanged {
                access_token: zeroize::Zeroizing::new(access_token),
                expires_in,
            }),
            ExchangeAnswer::Error {
                error,
                error_description,
            } => {
                let reason = match error_description {
                    Some(d) => format!("{error}: {}", d.chars().take(200).collect::<String>()),
                    None => error.clone(),
                };
                if error == "invalid_grant" {
                    Err(ExchangeError::Refused {
                        provider: p.config.display_name.clone(),
                        reason,
                    })
                } else if error == "unsupported_grant_type" {
                    Err(unavailable(format!(
                        "it does not support token exchange ({reason}); an admin may allow \
                         the sign-in token itself for this upstream instead \
                         (`forward_sign_in_token`)"
                    )))
                } else {
                    Err(unavailable(format!("token exchange refused: {reason}")))
                }
            }
            ExchangeAnswer::Token { .. } => {
                Err(unavailable(format!("token exchange answered {status}")))
            }
        }
    }

    /// The provider's RP-initiated logout URL for a session signed in through it, when
    /// the provider publishes an `end_session_endpoint`: with `client_id` and a way back
    /// to Warrant's sign-in page. No `id_token_hint`: the ID token is not kept after
    /// sign-in (OpenID Connect RP-Initiated Logout 1.0 allows `client_id` instead; the
    /// provider may then ask the person to confirm).
    pub async fn logout_url(&self, login: &Login) -> Option<String> {
        let name = login.method.strip_prefix("oidc:")?;
        let p = self.provider(name)?;
        let discovered = match p.discovered(self.clock.as_ref(), false).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "no provider logout: discovery failed");
                return None;
            }
        };
        let mut url = discovered.end_session_endpoint.clone()?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("client_id", &p.config.client_id);
            query.append_pair(
                "post_logout_redirect_uri",
                &self.config.url("/signin?signed_out=1"),
            );
        }
        Some(url.to_string())
    }

    /// Everything up to a checked identity: returns it with the `next` path of the
    /// flow. The ID token itself is dropped once checked.
    async fn verify(
        &self,
        p: &Provider,
        session: &Session,
        response: &AuthResponse,
    ) -> Result<(Identity, String, SignInTokens), IdpError> {
        let fail = |reason: String| IdpError::Oidc {
            provider: p.config.display_name.clone(),
            reason: format!("[{}] {reason}", p.config.name),
        };
        // Single use: the flow leaves the session whatever happens next.
        let flow: Option<PendingFlow> = session
            .remove(FLOW_KEY)
            .await
            .map_err(|e| IdpError::Session(e.to_string()))?;
        let Some(flow) = flow else {
            return Err(fail(
                "no sign-in in progress in this browser session (callback replayed, or \
                 started elsewhere)"
                    .into(),
            ));
        };
        if flow.provider != p.config.name {
            return Err(fail(format!(
                "the sign-in in progress is with {:?}",
                flow.provider
            )));
        }
        if self.clock.unix().saturating_sub(flow.started_at) > FLOW_TTL_SECS {
            return Err(fail("the sign-in took longer than 10 minutes".into()));
        }
        let state_ok = response
            .state
            .as_deref()
            .is_some_and(|s| constant_time_eq(s, &flow.state));
        if !state_ok {
            return Err(fail(
                "the state parameter does not match the session".into(),
            ));
        }
        let Some(code) = response.code.as_deref().filter(|c| !c.is_empty()) else {
            return Err(fail("the callback carries no authorization code".into()));
        };
        let discovered = p.discovered(self.clock.as_ref(), false).await?;
        if let Some(iss) = &response.iss
            && iss != &discovered.issuer
        {
            return Err(fail(format!(
                "the response comes from issuer {iss:?}, not {:?}",
                discovered.issuer
            )));
        }

        let token = discovered
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| fail(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
            .request_async(&p.http)
            .await
            .map_err(|e| fail(format!("code exchange failed: {}", token_error(&e))))?;
        let Some(id_token) = token.id_token() else {
            return Err(fail("the token response has no ID token".into()));
        };
        let nonce = Nonce::new(flow.nonce.clone());

        // Verify with the cached keys; a key we do not know may be a rotation: fetch
        // the keys again, once.
        let mut discovered = discovered;
        let mut refreshed = false;
        let id_claims = loop {
            let verified = id_token
                .claims(&discovered.client.id_token_verifier(), &nonce)
                .cloned();
            match verified {
                Ok(c) => break c,
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if !refreshed => {
                    refreshed = true;
                    discovered = p.discovered(self.clock.as_ref(), true).await?;
                }
                Err(e) => {
                    return Err(fail(format!("ID token rejected: {}", describe(&e))));
                }
            }
        };
        check_access_token_hash(&discovered, id_token, token.access_token(), &id_claims)
            .map_err(fail)?;

        let subject = id_claims.subject().as_str().to_owned();
        let from_token = ClaimSet {
            email: id_claims.email().map(|e| e.as_str().to_owned()),
            email_verified: id_claims.email_verified(),
            name: id_claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            preferred_username: id_claims
                .preferred_username()
                .map(|n| n.as_str().to_owned()),
            groups: id_claims
                .additional_claims()
                .claims
                .get(&p.config.groups_claim)
                .and_then(groups_from),
        };
        let from_userinfo = if from_token.incomplete() {
            userinfo(p, &discovered.client, token.access_token(), &id_claims)
                .await
                .map_err(fail)?
        } else {
            None
        };
        let tokens = SignInTokens {
            provider: p.config.name.clone(),
            access_token: token.access_token().secret().clone(),
            expires_at: token.expires_in().map(|d| {
                self.clock
                    .unix()
                    .saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            }),
        };
        if let Some(why) = missing_groups(&p.config, &from_token, from_userinfo.as_ref()) {
            tracing::warn!(provider = %p.config.name, "{why}");
        }
        let identity = map_identity(
            &p.config.display_name,
            &subject,
            &from_token,
            from_userinfo.as_ref(),
        )?;
        Ok((identity, flow.next, tokens))
    }

    /// The user for a verified identity: the one linked to this provider's subject, else
    /// the one with this email (then linked), else a new one when the provider
    /// provisions — by email only when the provider said the email is verified or is
    /// trusted for its emails (`trust_email`). A disabled user is returned as is (the
    /// caller refuses it).
    async fn account(
        &self,
        users: &Users,
        p: &Provider,
        identity: &Identity,
    ) -> Result<User, IdpError> {
        let name = &p.config.name;
        if let Some(user) = users.by_identity(name, &identity.subject).await? {
            if user.status != Status::Disabled {
                users
                    .link_identity(name, &identity.subject, &user.id)
                    .await?;
            }
            return Ok(user);
        }
        if !identity.email_verified && !p.config.trust_email {
            // Anyone may put any address in an unverified email: tying it to the account
            // of that address (or creating one) would hand that account over.
            tracing::warn!(provider = %name, "sign-in refused: the email is not marked verified");
            return Err(IdpError::NotAllowed {
                provider: p.config.display_name.clone(),
                reason: "it did not say that your email address is verified, so Warrant \
                         cannot tell that the account of that address is yours; verify the \
                         address there, or ask an administrator"
                    .into(),
            });
        }
        let user = match users.by_email(&identity.email).await? {
            Some(user) => user,
            None if p.config.provision => {
                let role =
                    claims::role_from_groups(&p.config, &identity.groups).unwrap_or(Role::Member);
                let new = NewUser {
                    email: identity.email.clone(),
                    display_name: identity.display_name.clone(),
                    role,
                    status: Status::Active,
                };
                match users.create(new).await {
                    Ok(user) => {
                        tracing::info!(provider = %name, user = %user.id, "user provisioned at first sign-in");
                        user
                    }
                    // Created by a concurrent sign-in a moment ago.
                    Err(IdpError::EmailTaken) => users
                        .by_email(&identity.email)
                        .await?
                        .ok_or(IdpError::NotFound("user"))?,
                    Err(e) => return Err(e),
                }
            }
            None => {
                return Err(IdpError::NotAllowed {
                    provider: p.config.display_name.clone(),
                    reason: "Warrant has no account for you yet; ask an administrator to \
                             invite you"
                        .into(),
                });
            }
        };
        if user.status != Status::Disabled {
            users
                .link_identity(name, &identity.subject, &user.id)
                .await?;
        }
        Ok(user)
    }
}

/// The token endpoint's error, with the provider's own error code when it sent one.
fn token_error<RE: std::error::Error + 'static>(
    e: &openidconnect::RequestTokenError<
        RE,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => {
            let mut text = r.error().to_string();
            if let Some(d) = r.error_description() {
                text.push_str(": ");
                text.push_str(d);
            }
            text
        }
        other => describe(other),
    }
}

type IdClaims = openidconnect::IdTokenClaims<ExtraClaims, CoreGenderClaim>;

/// `at_hash`, when the ID token carries one: the access token is the one issued with it.
fn check_access_token_hash(
    discovered: &Discovered,
    id_token: &openidconnect::IdToken<
        ExtraClaims,
        CoreGenderClaim,
        openidconnect::core::CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    access_token: &openidconnect::AccessToken,
    claims: &IdClaims,
) -> Result<(), String> {
    let Some(expected) = claims.access_token_hash() else {
        return Ok(());
    };
    let verifier = discovered.client.id_token_verifier();
    let alg = id_token
        .signing_alg()
        .map_err(|e| format!("ID token algorithm: {e}"))?;
    let key = id_token
        .signing_key(&verifier)
        .map_err(|e| format!("ID token key: {e}"))?;
    let actual = AccessTokenHash::from_token(access_token, alg, key)
        .map_err(|e| format!("access token hash: {e}"))?;
    if &actual != expected {
        return Err("the access token does not match the ID token's at_hash".into());
    }
    Ok(())
}

/// The userinfo claims (for the subject of the ID token), when the provider has a
/// userinfo endpoint.
async fn userinfo(
    p: &Provider,
    client: &OidcClient,
    access_token: &openidconnect::AccessToken,
    id_claims: &IdClaims,
) -> Result<Option<ClaimSet>, String> {
    let Ok(request) = client.user_info(access_token.clone(), Some(id_claims.subject().clone()))
    else {
        return Ok(None);
    };
    let info: UserInfoClaims<ExtraClaims, CoreGenderClaim> =
        request
            .request_async(&p.http)
            .await
            .map_err(|e| format!("userinfo failed: {}", describe(&e)))?;
    Ok(Some(ClaimSet {
        email: info.email().map(|e| e.as_str().to_owned()),
        email_verified: info.email_verified(),
        name: info
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        preferred_username: info.preferred_username().map(|n| n.as_str().to_owned()),
        groups: info
            .additional_claims()
            .claims
            .get(&p.config.groups_claim)
            .and_then(groups_from),
    }))
}
