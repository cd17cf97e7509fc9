//! # warrant-idp — who the human is
//!
//! This crate answers "which person is behind this request?": users, roles and groups
//! ([`users`]), browser sessions stored in the database ([`session`]), and the ways a
//! person signs in: OIDC federation with any provider ([`oidc`]), passkeys
//! ([`passkey`]), email magic links and invitations ([`email`]), and the one-time link
//! that registers the first admin ([`setup`]). It holds no HTTP handlers and no pages:
//! `warrant-ui` renders the pages and calls these services.
//!
//! It is also the bottom of the dependency chain (`idp <- consent <- ui, plane <- proxy`),
//! so it
//! holds [`db::Db`], the database handle and migrations of the whole program; each crate
//! still owns its own tables (named with its prefix: `idp_*` here) and others reach them
//! only through the owner's API.

pub mod clock;
pub mod config;
pub mod db;
pub mod email;
pub mod error;
pub mod next;
pub mod oidc;
pub mod passkey;
pub mod rate;
pub mod secret;
pub mod session;
pub mod setup;
pub mod users;

use std::sync::Arc;

pub use clock::{Clock, SystemClock};
pub use config::IdpConfig;
pub use error::IdpError;

/// The identity services of one Warrant, built once at start and shared (cheap clones).
#[derive(Debug, Clone)]
pub struct Idp {
    pub config: Arc<IdpConfig>,
    pub db: db::Db,
    pub clock: Arc<dyn Clock>,
    pub users: users::Users,
    pub sessions: session::Sessions,
    pub oidc: oidc::Federation,
    pub passkeys: passkey::Passkeys,
    pub links: email::MagicLinks,
    pub setup: setup::Setup,
}

impl Idp {
    /// Builds the services over a migrated database.
    pub fn new(db: db::Db, config: IdpConfig, clock: Arc<dyn Clock>) -> Result<Self, IdpError> {
        let config = Arc::new(config);
        let users = users::Users::new(db.clone(), clock.clone());
        let sessions = session::Sessions::new(db.clone(), clock.clone(), &config);
        let oidc = oidc::Federation::new(config.clone(), clock.clone())?;
        let passkeys = passkey::Passkeys::new(db.clone(), config.clone(), clock.clone())?;
        let links = email::MagicLinks::new(db.clone(), config.clone(), clock.clone())?;
        let setup = setup::Setup::new(db.clone(), config.clone(), clock.clone());
        Ok(Self {
            config,
            db,
            clock,
            users,
            sessions,
            oidc,
            passkeys,
            links,
            setup,
        })
    }
}
