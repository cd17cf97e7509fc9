//! # warrant-consent — what an agent may do, for whom
//!
//! The policy decision point. It owns the **tool catalog**: every tool every upstream has offered,
//! recorded as the gateway discovers it, which the risk classification builds on; and the
//! **access tokens** (`token`): root keys, minting, offline attenuation, verification and
//! the per-call authorization; the **grants** a person gives an agent (`grants`) and the
//! counts of their call budgets (`budgets`); stopping every agent of a person at once
//! when they are disabled (`people`); and the
//! **OAuth 2.1 authorization server** (`oauth`): client registration, codes, refresh
//! tokens, revocation, and its HTTP endpoints (`/authorize` itself is a page of the UI);
//! and **policy as code** (`policy`): the admin decisions as one TOML file, exported and
//! applied in one transaction; the **credential vault** (`vault`), and Warrant as the
//! OAuth client of upstreams' authorization servers (`upstream_oauth` finds and
//! registers, `person_oauth` keeps each person's connection); and the **audit ledger**
//! (`ledger`): every decision and event, hash-chained per writer, with signed checkpoints.
//!
//! Tables owned here are prefixed `consent_`.

pub mod approvals;
pub mod budgets;
pub mod catalog;
pub mod ceilings;
pub mod grants;
pub mod ledger;
pub mod oauth;
pub mod people;
pub mod person_oauth;
pub mod person_sso;
pub mod policy;
pub mod token;
pub mod upstream_oauth;
pub mod vault;

#[cfg(test)]
mod test_db;

/// `bytes` as lowercase hexadecimal (ids, hashes, signatures).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
