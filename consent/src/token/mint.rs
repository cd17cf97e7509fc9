//! Minting an access token from plain data: the authority block (who, for whom, which
//! grant, for which resource, until when) and the human's consent block.

use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::{Biscuit, KeyPair};
use serde::{Deserialize, Serialize};

use super::TokenError;
use super::datalog::{self, AuthorityFacts};
use super::keys::KeyRing;
use super::restriction::Restriction;

/// Everything an access token says, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintRequest {
    /// The human's stable id.
    pub user: String,
    /// The agent's OAuth client id.
    pub agent: String,
    /// The grant (the human's consent record) this token derives from.
    pub grant: String,
    /// The canonical URL of the resource the token is for (the gateway's `/mcp`).
    pub audience: String,
    /// The end of the access token's life (Unix seconds).
    pub expires_at: i64,
    /// The grant's call budget per clock hour, when it has one: a fact of the authority
    /// block (`calls_per_hour(n)`) that the gateway counts calls against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_hour: Option<i64>,
    /// What the human consented to; `allow` must be set (`*` for every tool). Its
    /// `expires_at` is the grant's own end, when it has one.
    pub consent: Restriction,
}

/// Mints an access token signed with the ring's active key; `now` is Unix seconds.
/// Refuses a lifetime longer than the ring's maximum (a retired key's grace period
/// must outlast every token it signed).
pub fn mint(keys: &KeyRing, request: &MintRequest, now: i64) -> Result<String, TokenError> {
    if request.expires_at <= now {
        return Err(TokenError::Invalid(
            "the token would already be expired".into(),
        ));
    }
    if request.expires_at - now > keys.max_lifetime_secs() {
        return Err(TokenError::Invalid(format!(
            "an access token lives at most {} seconds",
            keys.max_lifetime_secs()
        )));
    }
    let key = keys.signing_key()?;
    let token = build(&key.keypair, key.kid, request, None)?;
    token
        .to_base64()
        .map_err(|e| TokenError::Build(e.to_string()))
}

/// Builds the token; `next_keys` fixes the per-block key pairs (golden vectors), else
/// they are random as Biscuit intends.
pub(crate) fn build(
    root: &KeyPair,
    kid: u32,
    request: &MintRequest,
    next_keys: Option<[&KeyPair; 2]>,
) -> Result<Biscuit, TokenError> {
    if request.consent.allow.is_none() {
        return Err(TokenError::Invalid(
            "a consent lists the tools it allows (`*` for every tool)".into(),
        ));
    }
    let authority = datalog::authority(
        &AuthorityFacts {
            user: &request.user,
            agent: &request.agent,
            grant: &request.grant,
            audience: &request.audience,
            expires_at: request.expires_at,
            calls_per_hour: request.calls_per_hour,
        },
        kid,
    )?;
    let consent = datalog::restriction(&request.consent)?;
    let err = |e: biscuit_auth::error::Token| TokenError::Build(e.to_string());
    match next_keys {
        None => authority
            .build(root)
            .and_then(|token| token.append(consent))
            .map_err(err),
        Some([first, second]) => authority
            .build_with_key_pair(root, SymbolTable::new(), first)
            .and_then(|token| token.append_with_keypair(second, consent))
            .map_err(err),
    }
}
