//! What the commands change (keys, the vault, the policy), recorded in the audit ledger
//! as the pages record what they change. A command opens a writer of its own before it
//! changes anything, so that a ledger that cannot be written stops it there; it records
//! what it did, then closes the writer (its head signed).

use std::time::Duration;

use anyhow::Context;
use warrant_consent::ledger::{CheckpointKey, Entry, Ledger, Options};
use warrant_idp::db::Db;

use crate::config::Config;

/// How long closing the writer may take.
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// A command's writer (`None` with `audit.enabled = false`).
pub(super) struct CommandLedger(Option<Ledger>);

impl CommandLedger {
    /// Opens a writer labelled with `command` on `db`; fails (and the command changes
    /// nothing) when the ledger cannot be written.
    pub(super) async fn open(config: &Config, db: &Db, command: &str) -> anyhow::Result<Self> {
        if !config.audit.enabled {
            return Ok(Self(None));
        }
        let secret = crate::secret_key::load_or_create(config)?;
        let key = CheckpointKey::derived_from_secret_key(&secret);
        drop(secret);
        let defaults = Options::default();
        let options = Options {
            label: format!("warrant {command} ({})", defaults.label),
            ..defaults
        };
        let ledger = Ledger::open(db, key, options)
            .await
            .context("cannot write the audit ledger, so nothing was changed")?;
        Ok(Self(Some(ledger)))
    }

    /// Records `entry` (with who ran the command, as the system knows them) and closes
    /// the writer.
    pub(super) async fn record(self, entry: Entry) -> anyhow::Result<()> {
        let Some(ledger) = self.0 else {
            return Ok(());
        };
        let entry = entry.with("os_user", std::env::var("USER").ok());
        let written = ledger.append(entry).await;
        ledger.close(CLOSE_BOUND).await;
        written
            .map(drop)
            .context("the change was made, but its audit record could not be written")
    }

    /// Closes the writer without a record (the command changed nothing).
    pub(super) async fn close(self) {
        if let Some(ledger) = self.0 {
            ledger.close(CLOSE_BOUND).await;
        }
    }
}
