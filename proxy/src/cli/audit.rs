//! `warrant audit`: checking the audit ledger, and the key that vouches for it.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use warrant_consent::ledger::verify::{Report, verify};
use warrant_consent::ledger::{CheckpointKey, CheckpointPublicKey};
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
    /// Print the public key that verifies the ledger's checkpoints (keep a copy apart
    /// from the database: it is what proves the checkpoints were Warrant's).
    Key {
        #[command(flatten)]
        place: Place,
    },
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
                let url = config
                    .server
                    .database_url
                    .as_ref()
                    .map(|s| s.expose().to_owned());
                let db = Db::open(url.as_deref(), &config.server.data_dir).await?;
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
