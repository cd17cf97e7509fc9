//! `[vault]`: the key-encryption keys of the credential vault. Without a `key`, the
//! vault's key is derived from the server's secret key, so the embedded defaults work;
//! with one, that key wraps every new data key, and `previous_keys` (with the key
//! derived from the secret key) still unwrap what they wrapped until `warrant vault
//! rotate-key` has re-wrapped it.

use serde::{Deserialize, Serialize};

use super::report::Problem;
use super::value::{Secret, ValueRef, is_key_32_base64, resolve};

/// `[vault]` as written.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawVault {
    pub key: Option<ValueRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_keys: Vec<ValueRef>,
}

/// The checked `[vault]` section: keys as 32 bytes in base64.
#[derive(Debug, Clone, Default)]
pub struct VaultConfig {
    /// The current key-encryption key; `None`: derived from the server's secret key.
    pub key: Option<Secret>,
    /// Earlier keys, for reading what they wrapped.
    pub previous_keys: Vec<Secret>,
}

const KEY_FORMAT: &str =
    "must be 32 random bytes in base64 (e.g. the output of `openssl rand -base64 32`)";

pub(super) fn validate_vault(raw: RawVault, problems: &mut Vec<Problem>) -> VaultConfig {
    let mut key_at = |value: &ValueRef, path: String| match resolve(value) {
        Ok(secret) if is_key_32_base64(secret.expose()) => Some(secret),
        Ok(_) => {
            problems.push(Problem::secret(&path, KEY_FORMAT));
            None
        }
        Err(e) => {
            problems.push(Problem::new(&path, e));
            None
        }
    };
    let key = raw.key.as_ref().and_then(|k| key_at(k, "vault.key".into()));
    let previous_keys = raw
        .previous_keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| key_at(k, format!("vault.previous_keys[{i}]")))
        .collect();
    VaultConfig { key, previous_keys }
}
