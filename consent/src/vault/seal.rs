//! The vault's cryptography: key-encryption keys and their ids, and sealing with
//! XChaCha20-Poly1305 under associated data that binds a ciphertext to its record.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::hex;

const NONCE_LEN: usize = 24;

/// A key-encryption key: it wraps the data keys of the vault's records and never enters
/// the database. Its id (16 hex digits derived from the key, which they do not reveal)
/// is stored with each data key it wraps.
pub struct Kek {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({}, <secret>)", self.id)
    }
}

impl Kek {
    /// The key given as it is (`vault.key`).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let key = Zeroizing::new(key);
        let mut id = [0u8; 8];
        expand(&*key, b"warrant vault key id v1", &mut id);
        Self { id: hex(&id), key }
    }

    /// The key derived from the server's secret key (HKDF-SHA256), when no `vault.key`
    /// is set: the vault works with the embedded defaults.
    pub fn derived_from_secret_key(secret: &[u8; 32]) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        expand(secret, b"warrant vault key-encryption key v1", &mut *key);
        Self::from_bytes(*key)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

fn expand(ikm: &[u8], info: &[u8], out: &mut [u8]) {
    // The output lengths used here (8 and 32 bytes) are far below HKDF's limit.
    if Hkdf::<Sha256>::new(None, ikm).expand(info, out).is_err() {
        out.fill(0);
    }
}

/// What a sealed part of a record is bound to: its role, the record's id and owner (and,
/// for a data key, the id of the key that wraps it).
pub(super) fn bound_to(part: &str, id: &str, owner: &str, kek_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + part.len() + id.len() + owner.len() + kek_id.len());
    for piece in ["warrant vault v1", part, id, owner, kek_id] {
        aad.extend_from_slice(piece.as_bytes());
        aad.push(0);
    }
    aad
}

/// A fresh data key.
pub(super) fn data_key() -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut *key);
    key
}

/// `plaintext` encrypted under `key`, bound to `aad`: base64(nonce || ciphertext).
pub(super) fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> String {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let payload = Payload {
        msg: plaintext,
        aad,
    };
    // Encryption with a valid key and nonce does not fail.
    let ciphertext = cipher
        .encrypt(&XNonce::from(nonce), payload)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    STANDARD.encode(out)
}

/// The plaintext of [`seal`], or `None` when `sealed` was not sealed under `key` with
/// `aad` (another key, another record, or changed).
pub(super) fn open(key: &[u8; 32], aad: &[u8], sealed: &str) -> Option<Zeroizing<Vec<u8>>> {
    let bytes = STANDARD.decode(sealed).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// A data key out of its unwrapped bytes (`None` if they are not 32 bytes).
pub(super) fn as_key(bytes: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    let key: [u8; 32] = bytes.try_into().ok()?;
    Some(Zeroizing::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_binding() {
        let key = [7u8; 32];
        let aad = bound_to("value", "id1", "alice", "");
        let sealed = seal(&key, &aad, b"s3cret");
        assert_eq!(
            open(&key, &aad, &sealed).as_deref().map(Vec::as_slice),
            Some(&b"s3cret"[..])
        );
        assert!(open(&[8u8; 32], &aad, &sealed).is_none(), "another key");
        assert!(
            open(&key, &bound_to("value", "id2", "alice", ""), &sealed).is_none(),
            "another record"
        );
        assert!(
            open(&key, &bound_to("value", "id1", "bob", ""), &sealed).is_none(),
            "another owner"
        );
        assert!(open(&key, &aad, "AAAA").is_none(), "too short");
        assert_ne!(
            seal(&key, &aad, b"s3cret"),
            sealed,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn key_ids_differ_per_key_and_do_not_show_it() {
        let a = Kek::from_bytes([1u8; 32]);
        let b = Kek::from_bytes([2u8; 32]);
        assert_eq!(a.id().len(), 16);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), Kek::from_bytes([1u8; 32]).id(), "stable");
        assert!(!format!("{a:?}").contains("[1, 1"), "{a:?}");
        let derived = Kek::derived_from_secret_key(&[1u8; 32]);
        assert_ne!(derived.id(), a.id(), "a derived key is not the secret key");
        assert_ne!(derived.key(), &[1u8; 32]);
    }
}
