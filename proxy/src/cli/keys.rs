//! `warrant keys list | rotate | revoke KID [--config FILE] [--data-dir DIR]
//! [--database-url URL]`: the root keys that sign access tokens.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warrant_consent::ledger::Entry;
use warrant_consent::token::{KeyRing, KeySettings, PublicKeyInfo};
use warrant_idp::SystemClock;
use warrant_idp::db::Db;

use super::record::CommandLedger;
use crate::config::{self, Config, Overrides};

#[derive(Debug, clap::Subcommand)]
pub(super) enum KeysCommand {
    /// List the token signing keys: the active one and the retired ones.
    List {
        #[command(flatten)]
        place: Place,
        /// Print JSON (the shape of /.well-known/warrant-keys.json) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create a new active signing key; the old one still verifies the tokens it signed
    /// until they have all expired. Running servers sign with it within a second.
    Rotate {
        #[command(flatten)]
        place: Place,
    },
    /// Revoke a compromised signing key at once: every token it signed is refused, on
    /// every running server within a second (no grace period). Revoking the active key
    /// first makes a new active key, so agents get working tokens when they refresh.
    Revoke {
        /// The key id (`warrant keys list` shows them).
        kid: u32,
        #[command(flatten)]
        place: Place,
    },
}

/// Where Warrant keeps its data: as for `warrant serve`.
#[derive(Debug, clap::Args)]
pub(super) struct Place {
    /// The configuration file; without one, the embedded defaults are used.
    #[arg(long, short, env = "WARRANT_CONFIG")]
    config: Option<PathBuf>,
    /// Where the embedded database and secret.key live [default: ./warrant-data].
    #[arg(long, env = "WARRANT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL (or SQLite) URL instead of the embedded database file.
    #[arg(long, env = "WARRANT_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

pub(super) fn run(command: KeysCommand) -> ExitCode {
    super::run_async(1, async move {
        match command {
            KeysCommand::List { place, json } => {
                let config = load_config(&place)?;
                let db = open_db(&config).await?;
                let list = KeyRing::list_stored(&db, &KeySettings::default()).await?;
                db.close().await;
                if json {
                    println!("{}", serde_json::json!({ "keys": list }));
                } else if list.is_empty() {
                    println!("no token signing keys yet: `warrant serve` creates the first one");
                } else {
                    print_table(&list);
                }
            }
            KeysCommand::Rotate { place } => {
                let config = load_config(&place)?;
                let db = open_db(&config).await?;
                let ledger = CommandLedger::open(&config, &db, "keys rotate").await?;
                let keys = open(&place).await?;
                let previous = keys.active_kid();
                let new = keys
                    .rotate()
                    .await
                    .context("cannot rotate the signing key")?;
                println!("key {} is now the active token signing key", new.kid);
                if let Some(old) =
                    previous.and_then(|kid| keys.public_keys().into_iter().find(|k| k.kid == kid))
                {
                    println!(
                        "key {} is retired: it verifies the tokens it signed until {}",
                        old.kid,
                        when(old.accepted_until)
                    );
                }
                println!("running servers sign with the new key within a second");
                ledger
                    .record(
                        Entry::event("keys.rotated")
                            .with("kid", new.kid)
                            .with("retired", previous),
                    )
                    .await?;
                db.close().await;
            }
            KeysCommand::Revoke { kid, place } => {
                let config = load_config(&place)?;
                let db = open_db(&config).await?;
                let known = KeyRing::list_stored(&db, &KeySettings::default()).await?;
                if !known.iter().any(|k| k.kid == kid) {
                    anyhow::bail!(
                        "no token signing key {kid}: `warrant keys list` shows the keys there are"
                    );
                }
                let ledger = CommandLedger::open(&config, &db, "keys revoke").await?;
                let keys = open(&place).await?;
                let (revoked, replacement) = keys
                    .revoke(kid)
                    .await
                    .with_context(|| format!("cannot revoke token signing key {kid}"))?;
                if let Some(new) = &replacement {
                    println!(
                        "key {} is now the active token signing key (key {kid} was active)",
                        new.kid
                    );
                }
                println!(
                    "key {} is revoked since {}: running servers refuse every token it signed \
                     within a second; agents get a token signed with the active key when they \
                     refresh",
                    revoked.kid,
                    when(revoked.revoked_at)
                );
                ledger
                    .record(
                        Entry::event("keys.revoked")
                            .with("kid", revoked.kid)
                            .with("replaced_by", replacement.as_ref().map(|k| k.kid)),
                    )
                    .await?;
                db.close().await;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn load_config(place: &Place) -> anyhow::Result<Config> {
    let overrides = Overrides {
        listen: None,
        data_dir: place.data_dir.clone(),
        database_url: place.database_url.clone(),
    };
    let config = match &place.config {
        Some(path) => config::load(path, &overrides),
        None => {
            let exe = std::env::current_exe().context("cannot find the warrant executable")?;
            config::embedded_default(&overrides, &exe)
        }
    };
    config.map_err(|report| anyhow::anyhow!("{report}"))
}

pub(super) async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let url = config
        .server
        .database_url
        .as_ref()
        .map(|s| s.expose().to_owned());
    let db = Db::open(url.as_deref(), &config.server.data_dir).await?;
    db.migrate().await?;
    Ok(db)
}

/// Opens the key ring the way `warrant serve` does (creating the first key, and the
/// secret key file, when there are none).
async fn open(place: &Place) -> anyhow::Result<KeyRing> {
    let config = load_config(place)?;
    let db = open_db(&config).await?;
    let kek = crate::secret_key::load_or_create(&config)?;
    let keys = KeyRing::open(db, *kek, KeySettings::default(), Arc::new(SystemClock)).await?;
    Ok(keys)
}

fn print_table(list: &[PublicKeyInfo]) {
    println!(
        "{:<5} {:<9} {:<22} {:<48} public key",
        "kid", "algorithm", "created", "status"
    );
    let now = OffsetDateTime::now_utc().unix_timestamp();
    for key in list {
        let status = match (key.revoked_at, key.accepted_until) {
            (Some(at), _) => format!("revoked {}: verifies nothing", when(Some(at))),
            (None, None) => "active: signs new tokens".to_owned(),
            (None, Some(until)) if now < until => {
                format!("retired: verifies until {}", when(Some(until)))
            }
            (None, Some(_)) => "retired: verifies nothing".to_owned(),
        };
        println!(
            "{:<5} {:<9} {:<22} {:<48} {}",
            key.kid,
            key.algorithm,
            when(Some(key.created_at)),
            status,
            key.public_key
        );
    }
}

fn when(unix: Option<i64>) -> String {
    unix.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}
