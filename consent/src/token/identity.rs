//! Who a verified token acts for, and what each of its blocks is: the plain data the
//! proxy, the ledger and the pages read of a token.

use serde::Serialize;

use super::TokenError;
use super::restriction::Restriction;

/// What a block of the token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Block 0, signed with the root key: user, agent, grant, audience, expiry.
    Authority,
    /// Block 1, written by Warrant at mint: the human's consent.
    Consent,
    /// A later block written in Warrant's format (by `warrant token attenuate` or an
    /// agent using this library): a narrowing.
    Narrowing,
    /// A later block in another shape (another Biscuit library, a third-party block):
    /// its checks apply all the same, it just has no description.
    Other,
}

/// One block of the chain, for logs, the ledger and "My agents".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockSummary {
    pub index: usize,
    pub kind: BlockKind,
    /// What the block restricts, as the block describes itself (Warrant blocks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restriction: Option<Restriction>,
}

/// Who a verified token acts for: what the proxy needs on every call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub user: String,
    pub agent: String,
    pub grant: String,
    pub audience: String,
    /// The access token's end (Unix seconds); narrowings may end earlier.
    pub expires_at: i64,
    /// The grant's call budget per clock hour, from the authority block (`None`: no
    /// budget). Facts of later blocks are invisible here: a narrowing cannot change it.
    pub calls_per_hour: Option<i64>,
    /// The root key that signed it.
    pub kid: u32,
    /// Every block, authority first; its length is the chain length.
    pub chain: Vec<BlockSummary>,
    /// One revocation id per block (hex), in block order.
    pub revocation_ids: Vec<String>,
}

impl Identity {
    /// Refuses early (before any Datalog) a token issued for another resource; the
    /// authorization checks the audience again on every call.
    pub fn require_audience(&self, resource: &str) -> Result<(), TokenError> {
        if self.audience == resource {
            Ok(())
        } else {
            Err(TokenError::WrongAudience {
                expected: self.audience.clone(),
                actual: resource.to_owned(),
            })
        }
    }
}
