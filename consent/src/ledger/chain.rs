//! What makes the ledger tamper-evident: the hash of a record (over every column, and
//! the record before it) and the Ed25519 key that signs checkpoints.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::hex;

/// The hash the first record of a chain follows.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One record as stored: every column the hash covers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub writer: String,
    pub seq: i64,
    /// Unix microseconds.
    pub at: i64,
    pub kind: String,
    pub user_id: Option<String>,
    pub agent: Option<String>,
    pub upstream: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<String>,
    pub risk: Option<String>,
    /// JSON.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Every column of a record, in table order (for `SELECT`).
pub(crate) const COLUMNS: &str = "writer, seq, at, kind, user_id, agent, upstream, tool, decision, risk, detail, prev_hash, hash";

/// A record as a row of [`COLUMNS`].
pub(crate) type Row = (
    String,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
);

impl From<Row> for Record {
    fn from(r: Row) -> Self {
        Self {
            writer: r.0,
            seq: r.1,
            at: r.2,
            kind: r.3,
            user_id: r.4,
            agent: r.5,
            upstream: r.6,
            tool: r.7,
            decision: r.8,
            risk: r.9,
            detail: r.10,
            prev_hash: r.11,
            hash: r.12,
        }
    }
}

impl Record {
    /// A record from a synchronous SQLite row of [`COLUMNS`].
    pub(crate) fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            writer: row.get(0)?,
            seq: row.get(1)?,
            at: row.get(2)?,
            kind: row.get(3)?,
            user_id: row.get(4)?,
            agent: row.get(5)?,
            upstream: row.get(6)?,
            tool: row.get(7)?,
            decision: row.get(8)?,
            risk: row.get(9)?,
            detail: row.get(10)?,
            prev_hash: row.get(11)?,
            hash: row.get(12)?,
        })
    }
}

impl Record {
    /// The hash this record's contents and predecessor give (what `hash` must be).
    pub fn computed_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"warrant ledger record v1\n");
        h.update(self.prev_hash.as_bytes());
        text(&mut h, &self.writer);
        h.update(self.seq.to_be_bytes());
        h.update(self.at.to_be_bytes());
        text(&mut h, &self.kind);
        for field in [
            &self.user_id,
            &self.agent,
            &self.upstream,
            &self.tool,
            &self.decision,
            &self.risk,
        ] {
            match field {
                None => h.update([0u8]),
                Some(value) => {
                    h.update([1u8]);
                    text(&mut h, value);
                }
            }
        }
        text(&mut h, &self.detail);
        hex(&h.finalize())
    }
}

/// A length-prefixed string: no two sequences of fields encode alike.
fn text(h: &mut Sha256, value: &str) {
    h.update((value.len() as u64).to_be_bytes());
    h.update(value.as_bytes());
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a checkpoint signs: the writer, the record and its hash, and when.
fn signed_bytes(writer: &str, seq: i64, hash: &str, at: i64) -> Vec<u8> {
    let mut out = b"warrant ledger checkpoint v1\n".to_vec();
    for part in [writer, &seq.to_string(), hash, &at.to_string()] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The key that signs checkpoints: Ed25519, derived from the server's secret key (so
/// every replica signs with the same key, and it is never stored).
pub struct CheckpointKey {
    signing: SigningKey,
    public: CheckpointPublicKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKey({}, <secret>)", self.public.id)
    }
}

impl CheckpointKey {
    pub fn derived_from_secret_key(secret: &[u8; 32]) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        if Hkdf::<Sha256>::new(None, secret)
            .expand(b"warrant ledger checkpoint key v1", &mut *seed)
            .is_err()
        {
            // 32 bytes is far below HKDF-SHA256's limit: unreachable.
            seed.fill(0);
        }
        let signing = SigningKey::from_bytes(&seed);
        let public = CheckpointPublicKey::new(signing.verifying_key());
        Self { signing, public }
    }

    pub fn public(&self) -> &CheckpointPublicKey {
        &self.public
    }

    /// The signature (hex) of a checkpoint at `writer`'s record `seq` with `hash`.
    pub fn sign(&self, writer: &str, seq: i64, hash: &str, at: i64) -> String {
        hex(&self
            .signing
            .sign(&signed_bytes(writer, seq, hash, at))
            .to_bytes())
    }
}

/// The public half of the checkpoint key: what `warrant audit verify` checks signatures
/// with. Its id is the first 8 bytes of its SHA-256, hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointPublicKey {
    key: VerifyingKey,
    id: String,
}

impl CheckpointPublicKey {
    fn new(key: VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        Self {
            id: hex(&digest[..8]),
            key,
        }
    }

    /// The key from its hex form (as `warrant audit key` prints it).
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes: [u8; 32] = unhex(text.trim())?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok().map(Self::new)
    }

    pub fn to_hex(&self) -> String {
        hex(self.key.as_bytes())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `signature` (hex) signs a checkpoint at `writer`'s record `seq`.
    pub fn verifies(&self, writer: &str, seq: i64, hash: &str, at: i64, signature: &str) -> bool {
        let Some(bytes) = unhex(signature).and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
            return false;
        };
        self.key
            .verify(
                &signed_bytes(writer, seq, hash, at),
                &Signature::from_bytes(&bytes),
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let mut r = Record {
            writer: "w".into(),
            seq: 1,
            at: 10,
            kind: "call".into(),
            user_id: Some("u".into()),
            agent: None,
            upstream: Some("up".into()),
            tool: Some("t".into()),
            decision: Some("allow".into()),
            risk: Some("low".into()),
            detail: "{}".into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        r.hash = r.computed_hash();
        r
    }

    #[test]
    fn every_column_is_covered_by_the_hash() {
        let base = record();
        type Change = Box<dyn Fn(&mut Record)>;
        let changes: Vec<Change> = vec![
            Box::new(|r| r.writer.push('x')),
            Box::new(|r| r.seq += 1),
            Box::new(|r| r.at += 1),
            Box::new(|r| r.kind.push('x')),
            Box::new(|r| r.user_id = None),
            Box::new(|r| r.agent = Some(String::new())),
            Box::new(|r| r.upstream = Some("upt".into())),
            Box::new(|r| r.tool = Some("tx".into())),
            Box::new(|r| r.decision = Some("deny".into())),
            Box::new(|r| r.risk = None),
            Box::new(|r| r.detail = "{ }".into()),
            Box::new(|r| r.prev_hash = r.hash.clone()),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut r = base.clone();
            change(&mut r);
            assert_ne!(r.computed_hash(), base.hash, "change {i} went unseen");
        }
        assert_eq!(base.computed_hash(), base.hash);
    }

    #[test]
    fn fields_do_not_run_into_each_other() {
        let mut a = record();
        let mut b = record();
        a.upstream = Some("ab".into());
        a.tool = Some("c".into());
        b.upstream = Some("a".into());
        b.tool = Some("bc".into());
        assert_ne!(a.computed_hash(), b.computed_hash());
    }

    #[test]
    fn checkpoints_verify_with_the_public_key_only() {
        let key = CheckpointKey::derived_from_secret_key(&[7u8; 32]);
        let other = CheckpointKey::derived_from_secret_key(&[8u8; 32]);
        let sig = key.sign("w", 5, GENESIS, 99);
        let public = CheckpointPublicKey::from_hex(&key.public().to_hex()).expect("hex");
        assert_eq!(&public, key.public());
        assert!(public.verifies("w", 5, GENESIS, 99, &sig));
        assert!(!public.verifies("w", 6, GENESIS, 99, &sig));
        assert!(!public.verifies("w", 5, GENESIS, 98, &sig));
        assert!(!public.verifies("v", 5, GENESIS, 99, &sig));
        assert!(!other.public().verifies("w", 5, GENESIS, 99, &sig));
        assert!(!public.verifies("w", 5, GENESIS, 99, "zz"));
        assert_ne!(key.public().id(), other.public().id());
        assert_eq!(key.public().id().len(), 16);
    }
}
