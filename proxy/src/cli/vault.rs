//! `warrant vault status | rotate-key | set | list | remove [--config FILE]
//! [--data-dir DIR] [--database-url URL]`: the credential vault's keys, and its records
//! (values read from standard input, never shown).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use warrant_consent::ledger::Entry;
use warrant_consent::vault::{KeyUse, SHARED, Vault};
use warrant_idp::SystemClock;
use warrant_idp::db::Db;
use warrant_idp::users::Users;

use super::keys::{Place, load_config, open_db};
use super::record::CommandLedger;

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
    /// Store a credential for an upstream, read from standard input (a trailing newline
    /// is dropped): shared by everyone, or a person's own with --person. Replaces what
    /// was stored; the value is never shown again.
    Set {
        #[command(flatten)]
        record: Record,
        #[command(flatten)]
        place: Place,
    },
    /// List the stored credentials: upstream, kind, whose, key, version (never values).
    List {
        #[command(flatten)]
        place: Place,
    },
    /// Remove a stored credential.
    Remove {
        #[command(flatten)]
        record: Record,
        #[command(flatten)]
        place: Place,
    },
}

/// One record of the vault, as `set` and `remove` name it.
#[derive(Debug, clap::Args)]
pub(super) struct Record {
    /// The upstream's name (`[upstreams.NAME]`).
    upstream: String,
    /// What the value is, e.g. `api_key`.
    kind: String,
    /// The person (by email) whose own credential it is.
    #[arg(long)]
    person: Option<String>,
}

/// The vault of a data directory or database, opened as `warrant serve` opens it.
pub(super) struct Opened {
    pub(super) config: crate::config::Config,
    pub(super) db: Db,
    pub(super) vault: Vault,
    /// The id of the key-encryption key new records are wrapped by.
    pub(super) current: String,
}

/// Opens the vault `place` names (its configuration, database and secret key).
pub(super) async fn open_vault(place: &Place) -> anyhow::Result<Opened> {
    let config = load_config(place)?;
    let db = open_db(&config).await?;
    let secret_key = crate::secret_key::load_or_create(&config)?;
    let keys = crate::vault_keys::of(&config, &secret_key);
    drop(secret_key);
    let current = keys.current_id().to_owned();
    let vault = Vault::open(db.clone(), keys, Arc::new(SystemClock))
        .await
        .context("cannot open the credential vault")?;
    Ok(Opened {
        config,
        db,
        vault,
        current,
    })
}

pub(super) fn run(command: VaultCommand) -> ExitCode {
    super::run_async(1, async move {
        let place = match &command {
            VaultCommand::Status { place }
            | VaultCommand::RotateKey { place }
            | VaultCommand::Set { place, .. }
            | VaultCommand::List { place }
            | VaultCommand::Remove { place, .. } => place,
        };
        let Opened {
            config,
            db,
            vault,
            current,
        } = open_vault(place).await?;
        match command {
            VaultCommand::Status { .. } => {
                print_uses(&current, &vault.check_keys().await?);
            }
            VaultCommand::RotateKey { .. } => {
                let ledger = CommandLedger::open(&config, &db, "vault rotate-key").await?;
                let rotation = vault
                    .rotate()
                    .await
                    .context("cannot re-wrap the vault's data keys")?;
                println!(
                    "re-wrapped {} data keys under key {current}; {} were under it already",
                    rotation.rewrapped, rotation.current
                );
                ledger
                    .record(
                        Entry::event("vault.key_rotated")
                            .with("key", &current)
                            .with("rewrapped", rotation.rewrapped),
                    )
                    .await?;
                print_uses(&current, &vault.check_keys().await?);
            }
            VaultCommand::Set {
                record:
                    Record {
                        upstream,
                        kind,
                        person,
                    },
                ..
            } => {
                let owner = owner(&db, person.as_deref()).await?;
                let value = read_value()?;
                let ledger = CommandLedger::open(&config, &db, "vault set").await?;
                vault
                    .put(&owner, &upstream, &kind, value.as_bytes())
                    .await?;
                ledger
                    .record(
                        Entry::event("vault.stored")
                            .upstream(&upstream)
                            .with("kind", &kind)
                            .with("owner", whose(person.as_deref())),
                    )
                    .await?;
                println!(
                    "stored {kind} for upstream {upstream} ({})",
                    whose(person.as_deref())
                );
            }
            VaultCommand::List { .. } => {
                let emails: std::collections::HashMap<String, String> =
                    Users::new(db.clone(), Arc::new(SystemClock))
                        .emails()
                        .await?
                        .into_iter()
                        .collect();
                let entries = vault.list().await?;
                if entries.is_empty() {
                    println!("the vault holds no credentials");
                }
                for entry in entries {
                    let whose = if entry.owner == SHARED {
                        "shared".to_owned()
                    } else {
                        emails
                            .get(&entry.owner)
                            .cloned()
                            .unwrap_or_else(|| "a removed person".to_owned())
                    };
                    println!(
                        "{:<20} {:<16} {:<32} key {} version {}",
                        entry.upstream, entry.kind, whose, entry.kek_id, entry.version
                    );
                }
            }
            VaultCommand::Remove {
                record:
                    Record {
                        upstream,
                        kind,
                        person,
                    },
                ..
            } => {
                let owner = owner(&db, person.as_deref()).await?;
                let ledger = CommandLedger::open(&config, &db, "vault remove").await?;
                if !vault.remove(&owner, &upstream, &kind).await? {
                    ledger.close().await;
                    anyhow::bail!(
                        "no {kind} is stored for upstream {upstream} ({})",
                        whose(person.as_deref())
                    );
                }
                println!(
                    "removed {kind} for upstream {upstream} ({})",
                    whose(person.as_deref())
                );
                ledger
                    .record(
                        Entry::event("vault.removed")
                            .upstream(&upstream)
                            .with("kind", &kind)
                            .with("owner", whose(person.as_deref())),
                    )
                    .await?;
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

/// The vault owner of `person` (an email), or the shared owner.
async fn owner(db: &Db, person: Option<&str>) -> anyhow::Result<String> {
    let Some(email) = person else {
        return Ok(SHARED.to_owned());
    };
    let users = Users::new(db.clone(), Arc::new(SystemClock));
    let user = users
        .by_email(email)
        .await?
        .ok_or_else(|| anyhow::anyhow!("nobody with the email {email} is known to Warrant"))?;
    Ok(user.id)
}

fn whose(person: Option<&str>) -> String {
    person.map_or_else(
        || "shared by everyone".to_owned(),
        |email| format!("{email}'s own"),
    )
}

/// The value on standard input, without its trailing newline; never empty.
fn read_value() -> anyhow::Result<zeroize::Zeroizing<String>> {
    use std::io::Read as _;
    let mut value = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut value)
        .context("cannot read the value from standard input")?;
    let trimmed = value.trim_end_matches(['\r', '\n']).len();
    value.truncate(trimmed);
    anyhow::ensure!(
        !value.is_empty(),
        "no value on standard input: pipe it in, e.g. `warrant vault set NAME api_key < key.txt`"
    );
    Ok(value)
}
