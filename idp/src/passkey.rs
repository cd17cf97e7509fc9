//! Passkeys (WebAuthn with webauthn-rs): registration, sign-in, several per user,
//! removal. To be built.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::IdpConfig;
use crate::db::Db;
use crate::error::IdpError;

/// Passkey ceremonies and the `idp_passkeys` table.
#[derive(Debug, Clone)]
pub struct Passkeys {
    #[allow(dead_code)] // used once the ceremonies land
    db: Db,
    #[allow(dead_code)]
    config: Arc<IdpConfig>,
    #[allow(dead_code)]
    clock: Arc<dyn Clock>,
}

impl Passkeys {
    pub fn new(db: Db, config: Arc<IdpConfig>, clock: Arc<dyn Clock>) -> Result<Self, IdpError> {
        Ok(Self { db, config, clock })
    }
}
