//! What can go wrong with a token or the keys that sign it.

/// Why a token was not accepted, or a key operation failed. Authorization refusals are
/// not errors: they are a [`super::Decision`] with `allow: false`.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a Biscuit token at all (bad base64, bad encoding, unsupported version).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature chain does not verify: the token was altered or forged.
    #[error("invalid token signature")]
    BadSignature,
    /// The token names a root key this gateway does not know (or names none).
    #[error("unknown token signing key {}", kid_text(.0))]
    UnknownKey(Option<u32>),
    /// The token's signing key was retired long enough ago that no token it signed can
    /// still be valid.
    #[error("token signing key {0} has expired")]
    KeyExpired(u32),
    /// The token's signing key was revoked (compromised): nothing it signed is accepted.
    #[error("token signing key {0} was revoked")]
    KeyRevoked(u32),
    /// The token's own lifetime is over.
    #[error("the token expired at {0} (Unix seconds)")]
    Expired(i64),
    /// The token was issued for another resource.
    #[error("the token is for {expected}, not for {actual}")]
    WrongAudience { expected: String, actual: String },
    /// The token or its grant was revoked (the caller's revocation set says so).
    #[error("the token has been revoked")]
    Revoked,
    /// The person the token acts for is disabled (named by email): none of their
    /// agents may act until an admin enables them and they approve the agent again.
    #[error("the account of {0} is disabled")]
    UserDisabled(String),
    /// The token verifies but lacks the facts every Warrant token has.
    #[error("not a Warrant access token: {0}")]
    NotWarrant(String),
    /// A mint or attenuation request that cannot be expressed (bad pattern, empty id…).
    #[error("invalid token request: {0}")]
    Invalid(String),
    /// A stored root key cannot be decrypted or does not match its public key (wrong
    /// `server.secret_key`?).
    #[error("cannot use stored token signing key {kid}: {reason}")]
    KeyDecrypt { kid: u32, reason: String },
    /// No active signing key (the ring was loaded without creating one).
    #[error("no active token signing key")]
    NoActiveKey,
    /// Biscuit refused to build or sign a token.
    #[error("cannot build the token: {0}")]
    Build(String),
    /// The key table could not be read or written.
    #[error("token key storage failed: {0}")]
    Storage(#[from] sqlx::Error),
}

fn kid_text(kid: &Option<u32>) -> String {
    match kid {
        Some(kid) => kid.to_string(),
        None => "(the token names no key id)".to_owned(),
    }
}
