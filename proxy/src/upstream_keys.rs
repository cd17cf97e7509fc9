//! What the upstreams take from the vault at start, and the connection pages' view of
//! them: values written `{ vault = "KIND" }` or `${vault:KIND}`, shared keys kept in the
//! vault, the connection of a person's key opened at start, and the upstreams a person
//! or an admin gives a key to.

use std::collections::HashMap;
use std::sync::Arc;

use warrant_consent::person_oauth::{OAUTH_TOKEN, OAuthUpstream, PersonOAuth, PersonOAuthError};
use warrant_consent::person_sso::{PersonSso, SIGN_IN_TOKEN, SsoUpstream, sign_in_record};
use warrant_consent::vault::{SHARED, Vault, VaultError};
use warrant_idp::Clock;
use warrant_plane::Gateway;
use zeroize::Zeroizing;

use crate::config::{
    API_KEY, AuthMode, Config, KeyPlace, Secret, Transport, UpstreamConfig, ValueRef,
    fill_vault_refs, resolve, vault_kinds,
};

/// An upstream takes a value from the vault that the vault does not have (or cannot give).
#[derive(Debug, thiserror::Error)]
#[error("upstreams.{upstream} takes `{kind}` from the vault, but {reason}")]
pub struct VaultValueError {
    upstream: String,
    kind: String,
    reason: String,
}

/// `config` with what its upstreams take from the vault filled in: the values written
/// `{ vault = "KIND" }` or `${vault:KIND}` (a start whose vault lacks one is refused,
/// naming it), and the shared keys kept in the vault, for the upstreams' own connections
/// (listing what they offer; their calls read the vault themselves, see
/// `warrant_plane::upstream::keyed`: a shared key not set yet is reported, and the
/// upstream connects without one).
pub async fn with_vault_values(config: &Config, vault: &Vault) -> Result<Config, VaultValueError> {
    let mut config = config.clone();
    for upstream in &mut config.upstreams {
        let mut values = HashMap::new();
        for kind in vault_kinds(upstream) {
            if let Some(value) = shared_text(vault, upstream, &kind).await? {
                values.insert(kind, value);
            }
        }
        if let Err(missing) = fill_vault_refs(upstream, &values) {
            return Err(VaultValueError {
                upstream: upstream.name.clone(),
                kind: missing.join("`, `"),
                reason: format!(
                    "the vault has no such value for it: set it with `warrant vault set {} KIND` \
                     (or import the file it came from again with the same data directory)",
                    upstream.name
                ),
            });
        }
        if upstream.auth.from_vault {
            match shared_text(vault, upstream, API_KEY).await {
                Ok(Some(key)) => upstream.auth.value = Some(ValueRef::Given(key)),
                Ok(None) => tracing::warn!(
                    upstream = %upstream.name,
                    "its shared key is not set: set it on the server's admin page or with \
                     `warrant vault set {} {API_KEY}`",
                    upstream.name
                ),
                Err(e) => tracing::warn!(upstream = %upstream.name, "{e}"),
            }
        }
    }
    Ok(config)
}

/// The upstream's shared record `kind`, as text.
async fn shared_text(
    vault: &Vault,
    upstream: &UpstreamConfig,
    kind: &str,
) -> Result<Option<Secret>, VaultValueError> {
    let refused = |reason: String| VaultValueError {
        upstream: upstream.name.clone(),
        kind: kind.to_owned(),
        reason,
    };
    let value = vault
        .get(SHARED, &upstream.name, kind)
        .await
        .map_err(|e: VaultError| refused(format!("the vault cannot give it: {e}")))?;
    value
        .map(|v| {
            String::from_utf8(v.to_vec())
                .map(Secret::new)
                .map_err(|_| refused("it is not text".into()))
        })
        .transpose()
}

/// The upstreams people connect with OAuth (`auth.mode = "person_oauth"`), their
/// registrations and tokens kept in `vault`; `None` when there are none.
pub fn person_oauth(
    config: &Config,
    vault: &Vault,
    clock: Arc<dyn Clock>,
    public_url: &url::Url,
) -> Result<Option<Arc<PersonOAuth>>, PersonOAuthError> {
    let mut upstreams = Vec::new();
    for upstream in &config.upstreams {
        if upstream.auth.mode != AuthMode::PersonOAuth {
            continue;
        }
        let (Transport::StreamableHttp { url, .. } | Transport::Sse { url, .. }) =
            &upstream.transport
        else {
            // Refused by the configuration's checks.
            continue;
        };
        let client_secret = match &upstream.auth.client_secret {
            Some(value) => Some(Zeroizing::new(
                resolve(value)
                    .map_err(|e| {
                        PersonOAuthError::Flow(format!(
                            "upstreams.{}.auth.client_secret: {e}",
                            upstream.name
                        ))
                    })?
                    .expose()
                    .to_owned(),
            )),
            None => None,
        };
        upstreams.push(OAuthUpstream {
            name: upstream.name.clone(),
            url: url.clone(),
            client_id: upstream.auth.client_id.clone(),
            client_secret,
            scopes: upstream.auth.scopes.clone(),
            registration: upstream.auth.registration,
        });
    }
    if upstreams.is_empty() {
        return Ok(None);
    }
    PersonOAuth::new(vault.clone(), clock, public_url, "Warrant", upstreams)
        .map(|p| Some(Arc::new(p)))
}

/// The upstreams that take the person's own sign-in identity (`auth.mode =
/// "person_sso"`), their sign-in tokens kept in `vault`; `None` when there are none.
pub fn person_sso(
    config: &Config,
    vault: &Vault,
    clock: Arc<dyn Clock>,
    federation: &warrant_idp::oidc::Federation,
) -> Option<Arc<PersonSso>> {
    let upstreams: Vec<SsoUpstream> = config
        .upstreams
        .iter()
        .filter(|u| u.auth.mode == AuthMode::PersonSso)
        .filter_map(|u| {
            // The configuration's checks named the provider (or the only one).
            let provider = u.auth.provider.clone()?;
            let provider_label = federation
                .display_name(&provider)
                .unwrap_or(&provider)
                .to_owned();
            Some(SsoUpstream {
                name: u.name.clone(),
                provider,
                provider_label,
                audience: u.auth.audience.clone(),
                forward_sign_in_token: u.auth.forward_sign_in_token,
            })
        })
        .collect();
    if upstreams.is_empty() {
        return None;
    }
    Some(Arc::new(PersonSso::new(
        vault.clone(),
        clock,
        federation.clone(),
        upstreams,
    )))
}

/// Opens, for each upstream that takes each person's own key or account, the
/// connection of the one set last: an upstream that lists what it offers only to a
/// caller with a key is then listed from the start (see `Gateway::connect_keyed`).
pub async fn connect_one_key_each(gateway: &Gateway, config: &Config, vault: &Vault) {
    let keyed: Vec<(&str, &str, String)> = config
        .upstreams
        .iter()
        .filter_map(|u| match u.auth.mode {
            AuthMode::PersonKey => Some((u.name.as_str(), API_KEY, u.name.clone())),
            AuthMode::PersonOAuth => Some((u.name.as_str(), OAUTH_TOKEN, u.name.clone())),
            AuthMode::PersonSso => u
                .auth
                .provider
                .as_deref()
                .map(|p| (u.name.as_str(), SIGN_IN_TOKEN, sign_in_record(p))),
            AuthMode::None | AuthMode::Shared => None,
        })
        .collect();
    if keyed.is_empty() {
        return;
    }
    let entries = match vault.list().await {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the vault's keys");
            return;
        }
    };
    for (upstream, kind, record) in keyed {
        let latest = entries
            .iter()
            .filter(|e| e.upstream == record && e.kind == kind && e.owner != SHARED)
            .max_by_key(|e| e.updated_at);
        if let Some(entry) = latest {
            gateway.connect_keyed(&entry.owner, upstream);
        }
    }
}

/// The connection pages: every upstream Warrant gives a key (auth mode not `none`), the
/// vault, and the gateway told of each change so it drops connections built with the
/// old key.
pub fn connections_ui(
    config: &Config,
    vault: &Vault,
    oauth: Option<Arc<PersonOAuth>>,
    sso: Option<Arc<PersonSso>>,
    gateway: &Gateway,
) -> warrant_ui::ConnectionsUi {
    let upstreams = config
        .upstreams
        .iter()
        .filter_map(|u| {
            let mode = match u.auth.mode {
                AuthMode::None => return None,
                AuthMode::Shared => warrant_ui::KeyMode::Shared,
                AuthMode::PersonKey => warrant_ui::KeyMode::PersonKey,
                AuthMode::PersonOAuth => warrant_ui::KeyMode::PersonOAuth,
                AuthMode::PersonSso => warrant_ui::KeyMode::PersonSso,
            };
            let place = match &u.auth.place {
                Some(KeyPlace::Header { name, scheme }) if scheme.is_empty() => {
                    format!("header {name}")
                }
                Some(KeyPlace::Header { name, scheme }) => format!("header {name} ({scheme})"),
                Some(KeyPlace::Env { name }) => format!("environment variable {name}"),
                None => String::from("place its configuration names"),
            };
            Some(warrant_ui::KeyedUpstream {
                name: u.name.clone(),
                mode,
                place,
                by_reference: u.auth.value.is_some(),
            })
        })
        .collect();
    let gateway = gateway.clone();
    warrant_ui::ConnectionsUi {
        vault: vault.clone(),
        kind: API_KEY,
        upstreams,
        changed: Arc::new(move |owner: &str, upstream: &str| {
            gateway.credential_changed(owner, upstream);
        }),
        oauth,
        sso,
    }
}
