//! The credential vault's key-encryption keys, from the configuration: `vault.key` when
//! set (then the key derived from the server's secret key and `vault.previous_keys`
//! still read what they wrapped), else the key derived from the server's secret key.

use warrant_consent::vault::{Kek, VaultKeys};

use crate::config::{Config, decode_key_32};

/// The vault's keys for `config`, given its server secret key.
pub fn of(config: &Config, secret_key: &[u8; 32]) -> VaultKeys {
    let derived = Kek::derived_from_secret_key(secret_key);
    let configured =
        |secret: &crate::config::Secret| decode_key_32(secret.expose()).map(Kek::from_bytes);
    let previous = config.vault.previous_keys.iter().filter_map(configured);
    match config.vault.key.as_ref().and_then(configured) {
        Some(current) => VaultKeys::new(current, previous.chain([derived]).collect()),
        None => VaultKeys::new(derived, previous.collect()),
    }
}
