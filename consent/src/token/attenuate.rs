//! Narrowing a token offline: anyone holding a token can append a block of checks
//! without any private key (Biscuit's signature chain carries the next key pair). A
//! block can only add checks, and every block's checks must pass, so a narrowed token
//! never allows more than the token it came from.

use biscuit_auth::UnverifiedBiscuit;

use super::TokenError;
use super::datalog;
use super::restriction::Restriction;

/// Appends a block with `narrowing`'s checks to `token` (base64url) and returns the
/// narrowed token. The signature is not verified here (no key is needed); the gateway
/// verifies the whole chain when the token is used.
pub fn attenuate(token: &str, narrowing: &Restriction) -> Result<String, TokenError> {
    if narrowing == &Restriction::default() {
        return Err(TokenError::Invalid(
            "a narrowing needs at least one restriction (tools, deny, risk, arguments or a shorter life)"
                .into(),
        ));
    }
    let unverified = UnverifiedBiscuit::from_base64(token.trim())
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    let block = datalog::restriction(narrowing)?;
    unverified
        .append(block)
        .and_then(|t| t.to_base64())
        .map_err(|e| TokenError::Build(e.to_string()))
}
