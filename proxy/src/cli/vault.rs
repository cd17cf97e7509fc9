//! `warrant vault status | rotate-key [--config FILE] [--data-dir DIR]
//! [--database-url URL]`: the credential vault's key-encryption keys.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use warrant_consent::vault::{KeyUse, Vault};
use warrant_idp::SystemClock;

use super::keys::{Place, load_config, open_db};

#[derive(Debug, clap::Subcommand)]
pub(super) enum VaultCommand {
    /// Show which key-encryption key wraps how many vault records (checking that every
    /// one of them is configured).
    Status {
        #[command(flatten)]
        place: Place,
    },
    /// Re-wrap every record's data key under the current key (`vault.key`, or the key
    /// derived from the server's secret key). Values do not change: running servers that
    /// have both the old and the new key keep serving calls meanwhile. Once it is done,
    /// the old key can leave `vault.previous_keys`.
    RotateKey {
        #[command(flatten)]
        place: Place,
    },
}

pub(super) fn run(command: VaultCommand) -> ExitCode {
    super::run_async(1, async move {
        let place = match &command {
            VaultCommand::Status { place } | VaultCommand::RotateKey { place } => place,
        };
        let config = load_config(place)?;
        let db = open_db(&config).await?;
        let secret_key = crate::secret_key::load_or_create(&config)?;
        let keys = crate::vault_keys::of(&config, &secret_key);
        drop(secret_key);
        let current = keys.current_id().to_owned();
        let vault = Vault::open(db.clone(), keys, Arc::new(SystemClock))
            .await
            .context("cannot open the credential vault")?;
        match command {
            VaultCommand::Status { .. } => {
                print_uses(&current, &vault.check_keys().await?);
            }
            VaultCommand::RotateKey { .. } => {
                let rotation = vault
                    .rotate()
                    .await
                    .context("cannot re-wrap the vault's data keys")?;
                println!(
                    "re-wrapped {} data keys under key {current}; {} were under it already",
                    rotation.rewrapped, rotation.current
                );
                print_uses(&current, &vault.check_keys().await?);
            }
        }
        db.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn print_uses(current: &str, uses: &[KeyUse]) {
    println!("current key-encryption key: {current}");
    if uses.is_empty() {
        println!("the vault holds no records");
    }
    for key in uses {
        let role = if key.current { "current" } else { "previous" };
        println!("{:<18} {:<9} {} records", key.kek_id, role, key.records);
    }
}
