//! `warrant audit`: checking the audit ledger, and the key that vouches for it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use warrant_consent::ledger::query::{self, Exported, Filter};
use warrant_consent::ledger::verify::{Report, verify};
use warrant_consent::ledger::{CheckpointKey, CheckpointPublicKey, LedgerError};
use warrant_idp::db::Db;

use super::keys::{Place, load_config};

#[derive(Debug, clap::Subcommand)]
pub(super) enum AuditCommand {
    /// Check every chain and signed checkpoint of the ledger: exit 0 when intact, 1 naming
    /// the first record of each chain that was altered, removed, inserted or reordered.
    Verify {
        #[command(flatten)]
        place: Place,
        /// The checkpoint key (hex, as `warrant audit key` prints it), to check a copy
        /// of the database without the server's secret key.
        #[arg(long)]
        public_key: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write records as JSON Lines (one object per line), oldest first, for a SIEM or
    /// an archive.
    Export(Box<ExportArgs>),
    /// Print the public key that verifies the ledger's checkpoints (keep a copy apart
    /// from the database: it is what proves the checkpoints were Warrant's).
    Key {
        #[command(flatten)]
        place: Place,
    },
}

/// `warrant audit export`: where, and which records.
#[derive(Debug, clap::Args)]
pub(super) struct ExportArgs {
    #[command(flatten)]
    place: Place,
    /// From this time on: RFC 3339 (`2026-12-01T00:00:00Z`) or an age (`24h`, `7d`).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (the same forms).
    #[arg(long)]
    until: Option<String>,
    /// Only the records of this person (email or user id).
    #[arg(long)]
    person: Option<String>,
    /// Only this agent's (its client id).
    #[arg(long)]
    agent: Option<String>,
    #[arg(long)]
    upstream: Option<String>,
    /// The tool's name at its upstream.
    #[arg(long)]
    tool: Option<String>,
    #[arg(long, value_parser = ["allow", "deny"])]
    decision: Option<String>,
    #[arg(long, value_parser = ["low", "medium", "high", "critical"])]
    risk: Option<String>,
    /// `call`, `call.outcome`, `ledger.opened`, …
    #[arg(long)]
    kind: Option<String>,
    /// Write here instead of standard output (an existing file is kept).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub(super) fn run(command: AuditCommand) -> ExitCode {
    super::run_async(1, async move {
        match command {
            AuditCommand::Key { place } => {
                let key = secret_key_checkpoints(&place)?;
                println!("{}", key.to_hex());
                eprintln!("key id {}", key.id());
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Export(args) => {
                let ExportArgs {
                    place,
                    since,
                    until,
                    person,
                    agent,
                    upstream,
                    tool,
                    decision,
                    risk,
                    kind,
                    output,
                } = *args;
                let now = warrant_consent::ledger::now_micros();
                let mut filter = Filter {
                    since: since.as_deref().map(|t| instant(t, now)).transpose()?,
                    until: until.as_deref().map(|t| instant(t, now)).transpose()?,
                    kind,
                    user_id: None,
                    agent,
                    upstream,
                    tool,
                    decision,
                    risk,
                };
                let config = load_config(&place)?;
                let db = open(&config).await?;
                if let Some(person) = person {
                    filter.user_id = Some(person_id(&db, &person).await?);
                }
                let mut out: Box<dyn Write> = match &output {
                    Some(path) => Box::new(std::io::BufWriter::new(
                        std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(path)
                            .with_context(|| format!("cannot create {}", path.display()))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                };
                let count = query::each(&db, &filter, |record| {
                    serde_json::to_writer(&mut out, &Exported::from(record))
                        .map_err(|e| LedgerError::Read(e.to_string()))?;
                    out.write_all(b"\n")
                        .map_err(|e| LedgerError::Read(e.to_string()))
                })
                .await?;
                out.flush()?;
                db.close().await;
                eprintln!("{count} records exported");
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Verify {
                place,
                public_key,
                json,
            } => {
                let key = match public_key {
                    Some(hex) => CheckpointPublicKey::from_hex(&hex).context(
                        "--public-key is not an Ed25519 public key in hex (64 hex digits)",
                    )?,
                    None => secret_key_checkpoints(&place)?,
                };
                let config = load_config(&place)?;
                let db = open(&config).await?;
                let started = Instant::now();
                let report = verify(&db, &key).await?;
                let took = started.elapsed();
                db.close().await;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print_report(&report, took);
                }
                Ok(if report.intact() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
        }
    })
}

/// The database of `config`, as it is (not migrated: reading changes nothing).
async fn open(config: &crate::config::Config) -> anyhow::Result<Db> {
    let url = config
        .server
        .database_url
        .as_ref()
        .map(|s| s.expose().to_owned());
    Ok(Db::open(url.as_deref(), &config.server.data_dir).await?)
}

/// An instant given on the command line (see [`query::instant`]).
fn instant(text: &str, now: i64) -> anyhow::Result<i64> {
    query::instant(text, now).map_err(anyhow::Error::msg)
}

/// The user id of `person` (an email, or a user id as it is).
async fn person_id(db: &Db, person: &str) -> anyhow::Result<String> {
    if !person.contains('@') {
        return Ok(person.to_owned());
    }
    let users = warrant_idp::users::Users::new(
        db.clone(),
        std::sync::Arc::new(warrant_idp::clock::SystemClock),
    );
    let user = users
        .by_email(person)
        .await?
        .with_context(|| format!("nobody with the email {person}"))?;
    Ok(user.id)
}

/// The checkpoint key of the server whose secret key `place` names.
fn secret_key_checkpoints(place: &Place) -> anyhow::Result<CheckpointPublicKey> {
    let config = load_config(place)?;
    let secret = crate::secret_key::load_existing(&config)?.context(
        "no secret key here (server.secret_key, or secret.key in the data directory): \
         give the checkpoint key with --public-key",
    )?;
    Ok(CheckpointKey::derived_from_secret_key(&secret)
        .public()
        .clone())
}

fn print_report(report: &Report, took: std::time::Duration) {
    println!(
        "{} records in {} chains, {} checkpoints, checked with key {} in {:.2} s",
        report.records,
        report.chains.len(),
        report.checkpoints,
        report.key_id,
        took.as_secs_f64()
    );
    for chain in &report.chains {
        let unsigned = if chain.signed_seq < chain.last_seq {
            format!(
                "; records {}–{} not signed yet ({})",
                chain.signed_seq + 1,
                chain.last_seq,
                if chain.closed {
                    "after it closed"
                } else {
                    "still writing, or it stopped without closing"
                }
            )
        } else {
            String::new()
        };
        println!(
            "  chain {} ({}): {} records, signed through {}{}{}",
            chain.writer,
            if chain.label.is_empty() {
                "unregistered"
            } else {
                &chain.label
            },
            chain.records,
            chain.signed_seq,
            if chain.closed { ", closed" } else { "" },
            unsigned
        );
    }
    if report.intact() {
        println!("intact: every record is in its chain and every checkpoint verifies");
        return;
    }
    println!("NOT INTACT: the first bad record of each chain:");
    for p in report.first_problems() {
        println!("  chain {} record {}: {}", p.writer, p.seq, p.detail);
    }
    let more = report.problems.len() - report.first_problems().len();
    if more > 0 {
        println!("  ({more} more problems after these: --json lists every one)");
    }
}
