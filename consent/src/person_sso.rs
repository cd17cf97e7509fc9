//! The person's own sign-in identity, passed through to an upstream that trusts the same
//! identity provider (`auth.mode = "person_sso"`). When a person signs in with an
//! OpenID Connect provider that such an upstream names, Warrant keeps the provider's
//! access token for them in the vault (owner: the person, upstream `oidc:PROVIDER`, kind
//! [`SIGN_IN_TOKEN`]). A call to the upstream then goes with:
//!
//! - a token the provider issues for the upstream's `audience` in exchange for the
//!   sign-in token (RFC 8693 token exchange, Warrant authenticating as the provider's
//!   client), kept in memory until a minute before it expires; or
//! - the sign-in token itself, only where the admin allowed exactly that
//!   (`forward_sign_in_token = true`), for a provider without token exchange.
//!
//! The agent's own Warrant token is never sent anywhere. A sign-in token that expired or
//! that the provider refuses is reported as [`PersonOAuthError::Reconnect`]: the person
//! signs in again (Warrant does not renew sign-in tokens).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use warrant_idp::Clock;
use warrant_idp::oidc::{ExchangeError, Federation, SignInTokens};
use zeroize::Zeroizing;

use crate::person_oauth::{Access, PersonOAuthError, Status};
use crate::vault::{Vault, VaultError};

/// The vault record kind of a person's sign-in token.
pub const SIGN_IN_TOKEN: &str = "sign_in_token";
/// An exchanged token is exchanged again when less than this is left of its life.
const RENEW_AHEAD_SECS: i64 = 60;

/// The vault's "upstream" a provider's sign-in tokens are kept under.
pub fn sign_in_record(provider: &str) -> String {
    format!("oidc:{provider}")
}

/// An upstream that takes the person's sign-in identity, as configured.
#[derive(Debug, Clone)]
pub struct SsoUpstream {
    pub name: String,
    /// The sign-in provider (`[auth.oidc.NAME]`) the upstream trusts.
    pub provider: String,
    /// Its display name, for the messages.
    pub provider_label: String,
    /// The audience the exchanged token is for (`None` with `forward_sign_in_token`).
    pub audience: Option<String>,
    /// The admin allowed the sign-in token itself to go to this upstream.
    pub forward_sign_in_token: bool,
}

/// An exchanged token, kept until it is about to expire.
struct Exchanged {
    token: Zeroizing<String>,
    /// Unix seconds.
    renew_at: Option<i64>,
    /// The sign-in record's version it was exchanged from.
    source: i64,
    /// Its own version (the connection built with it is replaced when it changes).
    version: i64,
}

type Pair = (String, String);

/// The sign-in identities of the upstreams that take them.
pub struct PersonSso {
    vault: Vault,
    clock: Arc<dyn Clock>,
    federation: Federation,
    upstreams: HashMap<String, SsoUpstream>,
    exchanged: Mutex<HashMap<Pair, Exchanged>>,
    /// Sign-in records (by version) an upstream refused as they are: sign in again.
    refused: Mutex<HashMap<Pair, i64>>,
    next_version: AtomicI64,
}

impl std::fmt::Debug for PersonSso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonSso")
            .field("upstreams", &self.upstreams)
            .finish_non_exhaustive()
    }
}

impl PersonSso {
    pub fn new(
        vault: Vault,
        clock: Arc<dyn Clock>,
        federation: Federation,
        upstreams: Vec<SsoUpstream>,
    ) -> Self {
        Self {
            vault,
            clock,
            federation,
            upstreams: upstreams.into_iter().map(|u| (u.name.clone(), u)).collect(),
            exchanged: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            next_version: AtomicI64::new(1),
        }
    }

    /// The upstream `name`, if it takes the person's sign-in identity.
    pub fn upstream(&self, name: &str) -> Option<&SsoUpstream> {
        self.upstreams.get(name)
    }

    /// Whether some upstream takes sign-ins at `provider` (then they are kept).
    pub fn wants(&self, provider: &str) -> bool {
        self.upstreams.values().any(|u| u.provider == provider)
    }

    /// The upstreams that take sign-ins at `provider`.
    pub fn upstreams_of(&self, provider: &str) -> Vec<String> {
        self.upstreams
            .values()
            .filter(|u| u.provider == provider)
            .map(|u| u.name.clone())
            .collect()
    }

    /// Keeps `user`'s sign-in `tokens` when an upstream takes their provider's identity.
    pub async fn keep(&self, user: &str, tokens: &SignInTokens) -> Result<(), VaultError> {
        if !self.wants(&tokens.provider) {
            return Ok(());
        }
        let json = Zeroizing::new(serde_json::to_vec(tokens).unwrap_or_default());
        self.vault
            .put(
                user,
                &sign_in_record(&tokens.provider),
                SIGN_IN_TOKEN,
                &json,
            )
            .await
    }

    /// The token `owner`'s calls of `upstream` go with; `None`: they have not signed in
    /// with its provider.
    pub async fn access_token(
        &self,
        owner: &str,
        upstream: &str,
    ) -> Result<Option<Access>, PersonOAuthError> {
        let target =
            self.upstreams
                .get(upstream)
                .ok_or_else(|| PersonOAuthError::UnknownUpstream {
                    upstream: upstream.to_owned(),
                })?;
        let Some((tokens, version)) = self.sign_in(owner, &target.provider).await? else {
            return Ok(None);
        };
        let now = self.clock.unix();
        let reconnect = |reason: String| PersonOAuthError::Reconnect {
            upstream: upstream.to_owned(),
            reason,
        };
        if tokens.expires_at.is_some_and(|at| at <= now) {
            return Err(reconnect(format!(
                "your sign-in at {} has expired: sign in with it again",
                target.provider_label
            )));
        }
        let key = (owner.to_owned(), upstream.to_owned());
        if self
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            == Some(&version)
        {
            return Err(reconnect(format!(
                "{upstream} refused your sign-in at {}: sign in with it again",
                target.provider_label
            )));
        }
        let until_sign_in_expires = |at: Option<i64>| match (at, tokens.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if target.forward_sign_in_token {
            return Ok(Some(access(
                &tokens.access_token,
                version,
                tokens.expires_at,
                now,
            )));
        }
        let audience = target.audience.as_deref().unwrap_or_default();
        if let Some(found) = self
            .exchanged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|e| e.source == version && e.renew_at.is_none_or(|at| now < at))
        {
            return Ok(Some(access(
                &found.token,
                found.version,
                until_sign_in_expires(found.renew_at),
                now,
            )));
        }
        let exchanged = self
            .federation
            .exchange(&target.provider, &tokens.access_token, audience)
            .await
            .map_err(|e| match e {
                ExchangeError::Refused { reason, .. } => reconnect(format!(
                    "{} no longer accepts your sign-in ({reason}): sign in with it again",
                    target.provider_label
                )),
                ExchangeError::Unavailable { reason, .. } => PersonOAuthError::Unavailable {
                    upstream: upstream.to_owned(),
                    reason,
                },
            })?;
        let renew_at = exchanged.expires_in.map(|secs| {
            let life = i64::try_from(secs).unwrap_or(i64::MAX);
            now.saturating_add(life - RENEW_AHEAD_SECS.min(life / 2))
        });
        let kept = Exchanged {
            token: exchanged.access_token,
            renew_at,
            source: version,
            version: self.next_version.fetch_add(1, Ordering::Relaxed),
        };
        let access = access(
            &kept.token,
            kept.version,
            until_sign_in_expires(kept.renew_at),
            now,
        );
        self.exchanged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, kept);
        Ok(Some(access))
    }

    /// The upstream refused the token of `version` (HTTP 401): an exchanged token is
    /// exchanged again; the sign-in token itself is not offered again.
    pub fn refused(&self, owner: &str, upstream: &str, version: i64) {
        let key = (owner.to_owned(), upstream.to_owned());
        let forward = self
            .upstreams
            .get(upstream)
            .is_some_and(|u| u.forward_sign_in_token);
        if forward {
            self.refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, version);
        } else {
            let mut exchanged = self
                .exchanged
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if exchanged.get(&key).is_some_and(|e| e.version == version) {
                exchanged.remove(&key);
            }
        }
    }

    /// What `owner`'s page says of `upstream`: whether they signed in with its provider,
    /// and whether that sign-in still serves.
    pub async fn status(&self, owner: &str, upstream: &str) -> Result<Status, PersonOAuthError> {
        let Some(target) = self.upstreams.get(upstream) else {
            return Ok(Status::NotConnected);
        };
        Ok(match self.sign_in(owner, &target.provider).await? {
            None => Status::NotConnected,
            Some((tokens, _)) if tokens.expires_at.is_some_and(|at| at <= self.clock.unix()) => {
                Status::Dead("your sign-in there has expired".into())
            }
            Some((tokens, _)) => Status::Connected {
                expires_at: tokens.expires_at,
                renewed: false,
            },
        })
    }

    async fn sign_in(
        &self,
        owner: &str,
        provider: &str,
    ) -> Result<Option<(SignInTokens, i64)>, PersonOAuthError> {
        let Some((value, version)) = self
            .vault
            .fetch(owner, &sign_in_record(provider), SIGN_IN_TOKEN)
            .await?
        else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&value)
            .ok()
            .map(|tokens| (tokens, version)))
    }
}

fn access(token: &str, version: i64, renew_at: Option<i64>, now: i64) -> Access {
    Access {
        token: Zeroizing::new(token.to_owned()),
        version,
        refresh_in: renew_at
            .map(|at| Duration::from_secs(at.saturating_sub(now).max(0).unsigned_abs())),
    }
}
