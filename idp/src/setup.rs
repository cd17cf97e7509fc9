//! The first-admin bootstrap: a one-time setup link printed at start when no admin
//! exists. To be built.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::IdpConfig;
use crate::db::Db;

/// One-time setup links (`idp_setup_tokens`).
#[derive(Debug, Clone)]
pub struct Setup {
    #[allow(dead_code)] // used once the bootstrap lands
    db: Db,
    #[allow(dead_code)]
    config: Arc<IdpConfig>,
    #[allow(dead_code)]
    clock: Arc<dyn Clock>,
}

impl Setup {
    pub fn new(db: Db, config: Arc<IdpConfig>, clock: Arc<dyn Clock>) -> Self {
        Self { db, config, clock }
    }
}
