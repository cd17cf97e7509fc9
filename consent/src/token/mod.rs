//! Access tokens: Biscuit tokens that tie every call of an agent to the human who
//! approved it, the agent, and the grant. See `README.md` beside this file for the
//! token model; the only Biscuit Datalog of the program is written in `datalog.rs`.
//!
//! - [`KeyRing`] — the root keys (Ed25519, key ids, rotation, encrypted at rest);
//! - [`mint`] — a token from plain data ([`MintRequest`]);
//! - [`attenuate`] — narrow a token offline (no key needed);
//! - [`Verifier`] — verify (cached) and read the [`Identity`];
//! - [`authorize`] — decide one call ([`CallFacts`] → [`Decision`]).

mod attenuate;
mod authorize;
mod call;
mod datalog;
mod error;
mod identity;
mod keys;
mod mint;
mod pattern;
mod remembered;
mod restriction;
mod verify;

#[cfg(test)]
mod tests;

pub use attenuate::attenuate;
pub use authorize::{Decision, authorize, remembered};
pub use call::{CallFacts, CallRef, MAX_ARGS, call_args};
pub use error::TokenError;
pub use identity::{BlockKind, BlockSummary, Identity};
pub use keys::{ALGORITHM, DEFAULT_MAX_TOKEN_LIFETIME, KeyRing, KeySettings, PublicKeyInfo};
pub use mint::{MintRequest, mint};
pub use pattern::{Segment, ToolPattern};
pub use restriction::{ArgConstraint, ArgRule, CallArgs, Restriction, Risk};
pub use verify::{
    DEFAULT_CACHE_CAPACITY, MAX_TOKEN_LEN, Revocations, VerifiedToken, Verifier, VerifierSettings,
};
