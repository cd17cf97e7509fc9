//! Email magic links and invitations over SMTP (lettre). To be built.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::IdpConfig;
use crate::db::Db;
use crate::error::IdpError;

/// Sign-in links by email, and the `idp_email_tokens` / `idp_rate_events` tables.
#[derive(Debug, Clone)]
pub struct MagicLinks {
    #[allow(dead_code)] // used once the links land
    db: Db,
    config: Arc<IdpConfig>,
    #[allow(dead_code)]
    clock: Arc<dyn Clock>,
}

impl MagicLinks {
    pub fn new(db: Db, config: Arc<IdpConfig>, clock: Arc<dyn Clock>) -> Result<Self, IdpError> {
        Ok(Self { db, config, clock })
    }

    /// Whether sign-in by email is offered (an SMTP server is configured).
    pub fn enabled(&self) -> bool {
        self.config.email.is_some()
    }
}
