//! Stage 5, credentials: the connection that carries the right key. An upstream without
//! a key of Warrant's, or with a shared key written by reference, is called on its one
//! connection, configured at start (nothing to do per call). An upstream that takes each
//! person's own key (`auth.mode = "person_key"`), or whose shared key is kept in the
//! vault, is called on a connection built with that key (`upstream::keyed`): the
//! person's own, found by the token's person, so one person's key never serves another
//! person's call. For an upstream people connect with OAuth (`person_oauth`), the key is
//! the person's access token, renewed before it expires
//! (`warrant_consent::person_oauth`); for one that takes the person's own sign-in
//! (`person_sso`), a token exchanged for it from their sign-in token
//! (`warrant_consent::person_sso`). A person who has connected no key or account gets
//! the page where they connect it, and one whose connection is no longer accepted the
//! page where they make it again (`-32042` URL elicitation where the client declared
//! it).

use std::sync::Arc;
use std::time::Instant;

use warrant_consent::person_oauth::{Access, PersonOAuth, PersonOAuthError};
use warrant_consent::person_sso::PersonSso;
use warrant_consent::vault::{SHARED, Vault};

use crate::config::{API_KEY, AuthMode};
use crate::enforce::auth::Caller;
use crate::protocol::error::GatewayError;
use crate::upstream::keyed::{Current, Full, Keyed};
use crate::upstream::remote::Upstream;

/// Where a person connects their key: `{base}/account/connections?upstream=NAME`.
pub(crate) const CONNECT_PATH: &str = "/account/connections";

/// What the credentials stage needs: the vault, the people's OAuth connections, and the
/// gateway's public URL.
pub struct KeySource {
    pub vault: Vault,
    /// The upstreams people connect with OAuth (`None`: there are none).
    pub oauth: Option<Arc<PersonOAuth>>,
    /// The upstreams that take the person's sign-in identity (`None`: there are none).
    pub sso: Option<Arc<PersonSso>>,
    /// The URL people use (`server.public_url`, or the local one), for the connect link.
    pub public_url: url::Url,
}

impl KeySource {
    /// The page where a person connects their key for `upstream`.
    pub(crate) fn connect_url(&self, upstream: &str) -> String {
        let mut url = self.public_url.clone();
        url.set_path(CONNECT_PATH);
        url.query_pairs_mut()
            .clear()
            .append_pair("upstream", upstream);
        url.to_string()
    }
}

/// The connection a call goes on: `None` for the upstream's own.
pub(crate) struct Credentials(Option<Arc<Upstream>>);

impl Credentials {
    /// The upstream's own connection.
    pub(crate) const CONFIGURED: Self = Self(None);

    /// The connection built with the key, if the upstream has one per key.
    pub(crate) fn keyed(&self) -> Option<&Arc<Upstream>> {
        self.0.as_ref()
    }

    /// The upstream to call: the keyed connection, or `upstream` itself.
    pub(crate) fn upstream<'a>(&'a self, upstream: &'a Arc<Upstream>) -> &'a Arc<Upstream> {
        self.0.as_ref().unwrap_or(upstream)
    }
}

/// Whose key a call of `upstream` by `caller` (the token's; `None` without tokens)
/// goes with: the person's, or the shared one.
pub(crate) fn owner_of<'a>(
    upstream: &Upstream,
    caller: Option<&'a Caller>,
) -> Result<&'a str, GatewayError> {
    if !upstream.config.auth.mode.per_person() {
        return Ok(SHARED);
    }
    caller
        .map(|c| c.token.identity.user.as_str())
        .ok_or_else(|| GatewayError::UpstreamUnavailable {
            upstream: upstream.name().to_owned(),
            reason: "it takes each person's own key, and this call comes with no person's token"
                .into(),
        })
}

/// The connection for a call of `upstream` with `owner`'s key (see [`owner_of`]).
/// `keyed` is the upstream's key connections, if its mode has them. `elicit`: the
/// client declared URL-mode elicitation.
pub(crate) async fn for_call(
    keyed: Option<&Keyed>,
    source: Option<&KeySource>,
    upstream: &Upstream,
    owner: &str,
    elicit: bool,
) -> Result<Credentials, GatewayError> {
    let Some(keyed) = keyed else {
        return Ok(Credentials::CONFIGURED);
    };
    let name = upstream.name();
    let unavailable = |reason: String| GatewayError::UpstreamUnavailable {
        upstream: name.to_owned(),
        reason,
    };
    let person = owner != SHARED;
    let now = Instant::now();
    let mut refused = None;
    let checked = match keyed.current(owner, now) {
        Current::Fresh(upstream) => return Ok(Credentials(Some(upstream))),
        Current::Recheck(version) => Some(version),
        Current::Refused(version) => {
            refused = Some(version);
            None
        }
        Current::None => None,
    };
    let Some(source) = source else {
        return Err(unavailable("the credential vault is not open".into()));
    };
    let mode = upstream.config.auth.mode;
    if matches!(mode, AuthMode::PersonOAuth | AuthMode::PersonSso) {
        if let Some(version) = refused {
            // Renewed before this call goes again; a renewal refused asks to reconnect.
            if let Some(oauth) = source
                .oauth
                .as_ref()
                .filter(|_| mode == AuthMode::PersonOAuth)
                && let Err(e) = oauth.refused(owner, name, version).await
            {
                tracing::warn!(upstream = %name, error = %e, "cannot mark a refused token");
            }
            if let Some(sso) = source.sso.as_ref().filter(|_| mode == AuthMode::PersonSso) {
                sso.refused(owner, name, version);
            }
        }
        return with_access_token(keyed, source, mode, name, owner, elicit, now).await;
    }
    if refused.is_some() {
        // A key the upstream refuses is not tried on and on: its owner replaces it.
        keyed.forget(owner);
        return Err(if person {
            GatewayError::Reconnect {
                upstream: name.to_owned(),
                url: source.connect_url(name),
                reason: "it refused your key (HTTP 401); connect a valid one".into(),
                elicit,
            }
        } else {
            unavailable(format!(
                "it refused its shared key (HTTP 401): an admin replaces it on the server's \
                 page or with `warrant vault set {name} {API_KEY}`"
            ))
        });
    }
    let vault_error = |e: warrant_consent::vault::VaultError| {
        tracing::warn!(upstream = %name, error = %e, "cannot read a key from the vault");
        unavailable("its key cannot be read from the vault (see the gateway's log)".into())
    };
    if let Some(version) = checked {
        let now_stored = source
            .vault
            .version(owner, name, API_KEY)
            .await
            .map_err(vault_error)?;
        if now_stored == Some(version)
            && let Some(upstream) = keyed.confirm(owner, version, now)
        {
            return Ok(Credentials(Some(upstream)));
        }
    }
    let Some((key, version)) = source
        .vault
        .fetch(owner, name, API_KEY)
        .await
        .map_err(vault_error)?
    else {
        keyed.forget(owner);
        return Err(if person {
            GatewayError::ConnectionRequired {
                upstream: name.to_owned(),
                url: source.connect_url(name),
                elicit,
            }
        } else {
            unavailable(format!(
                "its shared key is not set: an admin sets it on the server's page or with \
                 `warrant vault set {name} {API_KEY}`"
            ))
        });
    };
    let Ok(key) = std::str::from_utf8(&key) else {
        return Err(unavailable(
            "its stored key is not text; connect it again".into(),
        ));
    };
    install(keyed, name, owner, key, version, None, now)
}

/// The connection with `owner`'s access token for upstream `name` (their OAuth
/// connection's, or one exchanged from their sign-in, by `mode`), renewed first when it
/// is about to expire.
async fn with_access_token(
    keyed: &Keyed,
    source: &KeySource,
    mode: AuthMode,
    name: &str,
    owner: &str,
    elicit: bool,
    now: Instant,
) -> Result<Credentials, GatewayError> {
    let unavailable = |reason: String| GatewayError::UpstreamUnavailable {
        upstream: name.to_owned(),
        reason,
    };
    let token: Result<Option<Access>, PersonOAuthError> = match mode {
        AuthMode::PersonSso => match &source.sso {
            Some(sso) => sso.access_token(owner, name).await,
            None => return Err(unavailable("sign-in pass-through is not set up".into())),
        },
        _ => match &source.oauth {
            Some(oauth) => oauth.access_token(owner, name).await,
            None => {
                return Err(unavailable(
                    "people's OAuth connections are not set up".into(),
                ));
            }
        },
    };
    match token {
        Ok(Some(access)) => {
            // Renewed on the first call past its refresh time.
            let valid_until = access.refresh_in.map(|left| now + left);
            install(
                keyed,
                name,
                owner,
                &access.token,
                access.version,
                valid_until,
                now,
            )
        }
        Ok(None) => {
            keyed.forget(owner);
            Err(GatewayError::ConnectionRequired {
                upstream: name.to_owned(),
                url: source.connect_url(name),
                elicit,
            })
        }
        Err(PersonOAuthError::Reconnect { reason, .. }) => {
            keyed.forget(owner);
            Err(GatewayError::Reconnect {
                upstream: name.to_owned(),
                url: source.connect_url(name),
                reason,
                elicit,
            })
        }
        Err(PersonOAuthError::Unavailable { reason, .. }) => Err(unavailable(format!(
            "its authorization server cannot renew your connection now ({reason}); try again \
             shortly"
        ))),
        Err(e) => {
            tracing::warn!(upstream = %name, error = %e, "cannot read a person's OAuth connection");
            Err(unavailable(
                "your connection to it cannot be read (see the gateway's log)".into(),
            ))
        }
    }
}

/// `keyed`'s connection for `owner` with `key`, made now unless it is up.
fn install(
    keyed: &Keyed,
    name: &str,
    owner: &str,
    key: &str,
    version: i64,
    valid_until: Option<Instant>,
    now: Instant,
) -> Result<Credentials, GatewayError> {
    keyed
        .install(owner, key, version, valid_until, now)
        .map(|upstream| Credentials(Some(upstream)))
        .map_err(|Full { max }| GatewayError::UpstreamUnavailable {
            upstream: name.to_owned(),
            reason: format!(
                "it has {max} people's connections open, as many as its `auth.max_people` \
                 allows, all of them in use; try again shortly"
            ),
        })
}
