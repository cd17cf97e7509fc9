//! `warrant policy export [--output FILE]` and `warrant policy apply FILE [--yes]
//! [--dry-run] [--by WHO]`: the policy (trusted upstreams, reviewed risk classes, group
//! and user ceilings) as a TOML file a team keeps in version control (`docs/policy.md`).
//!
//! Exit codes of `apply`: 0 applied, nothing to change, or `--dry-run`; 1 the file is
//! invalid, the database failed, or the policy changed meanwhile (nothing applied);
//! 2 not confirmed (no `--yes` and standard input is not a terminal, or the answer was
//! not yes; nothing applied) — and, as for every command, a command line clap refuses.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use warrant_consent::ledger::Entry;
use warrant_consent::policy::{Policy, PolicyError, PolicyStore, render};
use warrant_idp::db::Db;
use warrant_idp::users::Users;
use warrant_idp::{Clock, SystemClock};

use super::keys::{Place, load_config, open_db};
use super::record::CommandLedger;

#[derive(Debug, clap::Subcommand)]
pub(super) enum PolicyCommand {
    /// Print the policy (trusted upstreams, reviewed risk classes, group and user
    /// ceilings) as a TOML policy file.
    Export {
        #[command(flatten)]
        place: Place,
        /// Write the file here (replacing it) instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Make the policy in the database equal to FILE: prints the diff, asks, then writes
    /// every change in one transaction. What the database has and FILE lacks is removed.
    #[command(
        after_help = "Exit codes: 0 applied, no changes, or --dry-run; 1 the file is \
        invalid, the database failed, or the policy changed meanwhile (nothing applied); \
        2 not confirmed (nothing applied).\nThe file format: docs/policy.md."
    )]
    Apply {
        /// The policy file (TOML, as `warrant policy export` writes it).
        file: PathBuf,
        #[command(flatten)]
        place: Place,
        /// Apply without asking (needed when standard input is not a terminal).
        #[arg(long, short)]
        yes: bool,
        /// Print the diff only; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who the changes are recorded as made by [default: "policy file FILE"].
        #[arg(long)]
        by: Option<String>,
    },
}

/// Exit code of an apply that was not confirmed.
const NOT_CONFIRMED: u8 = 2;

pub(super) fn run(command: PolicyCommand) -> ExitCode {
    super::run_async(1, async move {
        match command {
            PolicyCommand::Export { place, output } => export(&place, output.as_deref()).await,
            PolicyCommand::Apply {
                file,
                place,
                yes,
                dry_run,
                by,
            } => apply(&file, &place, yes, dry_run, by).await,
        }
    })
}

async fn store(place: &Place) -> anyhow::Result<(PolicyStore, crate::config::Config, Db)> {
    let config = load_config(place)?;
    let db = open_db(&config).await?;
    let users = Users::new(db.clone(), Arc::new(SystemClock));
    Ok((PolicyStore::new(db.clone(), users), config, db))
}

async fn export(place: &Place, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (store, config, _) = store(place).await?;
    let current = store
        .current()
        .await
        .context("cannot read the policy from the database")?;
    let text = render(&current, Some(config.policy.default_ceiling));
    match output {
        None => {
            print!("{text}");
            std::io::stdout().flush()?;
        }
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote the policy to {}; change it and apply it with `warrant policy apply {}`",
                path.display(),
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn apply(
    file: &Path,
    place: &Place,
    yes: bool,
    dry_run: bool,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
    let by = match by {
        Some(by) if by.trim().is_empty() => anyhow::bail!("--by needs a name"),
        Some(by) => by,
        None => format!("policy file {name}"),
    };
    let policy = Policy::parse(&text, &name)?;
    let (store, config, db) = store(place).await?;
    // `trust_annotations` set in the configuration is applied again at every start.
    for upstream in &config.upstreams {
        let wanted = policy
            .upstreams
            .get(&upstream.name)
            .is_some_and(|u| u.trust_annotations);
        if let Some(configured) = upstream.trust_annotations
            && configured != wanted
        {
            eprintln!(
                "warning: upstreams.{}.trust_annotations is {configured} in the configuration, \
                 which sets it again at every start of the gateway; {name} says {wanted}: \
                 set it in one place",
                upstream.name
            );
        }
    }
    let plan = match store.plan(&policy).await {
        Ok(plan) => plan,
        Err(e @ PolicyError::Invalid(_)) => anyhow::bail!("{name}: {e}"),
        Err(e) => return Err(e).context("cannot compare the policy file with the database"),
    };
    let count = plan.changes.len();
    if count == 0 {
        println!("no changes: the policy in the database already is {name}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{count} change{} to apply from {name}:",
        if count == 1 { "" } else { "s" }
    );
    for change in &plan.changes {
        println!("  {change}");
    }
    if dry_run {
        println!("dry run: nothing applied");
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            eprintln!(
                "error: not applied: standard input is not a terminal to confirm on; check \
                 the diff above and run again with --yes"
            );
            return Ok(ExitCode::from(NOT_CONFIRMED));
        }
        print!("apply these changes? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            eprintln!("not applied");
            return Ok(ExitCode::from(NOT_CONFIRMED));
        }
    }
    let ledger = CommandLedger::open(&config, &db, "policy apply").await?;
    store.apply(&plan, &by, SystemClock.unix()).await?;
    ledger
        .record(
            Entry::event("policy.applied")
                .with("by", &by)
                .with("file", &name)
                .with(
                    "changes",
                    plan.changes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                ),
        )
        .await?;
    println!(
        "applied {count} change{} as {by:?}; running gateways use them within a second",
        if count == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
