//! `warrant import FILE [--output F] [--data-dir DIR | --database-url URL]`: an
//! `mcpServers` file as `[upstreams.NAME]` tables, its secrets moved to the vault.

use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use warrant_consent::vault::SHARED;

use super::keys::Place;
use super::vault::{Opened, open_vault};
use crate::config::{self, Imported, Overrides};

pub(super) fn run(file: &Path, output: Option<&Path>, place: &Place) -> ExitCode {
    let json = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let imported = match config::import_mcp_servers(&json) {
        Ok(result) => result,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    // An existing file is never replaced; found out before anything is stored.
    let mut out = match output.map(|path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| (path, e))
    }) {
        None => None,
        Some(Ok(file)) => Some(file),
        Some(Err((path, e))) => {
            eprintln!(
                "error: cannot write {} (an existing file is never replaced): {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if !imported.moved.is_empty() {
        let stored = super::run_async(1, async {
            store(&imported, place).await.map(|()| ExitCode::SUCCESS)
        });
        if stored != ExitCode::SUCCESS {
            if let Some(path) = output {
                let _ = std::fs::remove_file(path);
            }
            return stored;
        }
    }
    // Say what still needs doing (a referenced variable that is not set here, say).
    let mut problems = Vec::new();
    config::validate(&imported.config, &Overrides::default(), &mut problems);
    for problem in &problems {
        eprintln!("note: {}: {}", problem.path, problem.message);
    }
    let written = match out.as_mut() {
        None => {
            print!("{}", imported.text);
            std::io::stdout().flush()
        }
        Some(file) => file.write_all(imported.text.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("error: cannot write the configuration: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(path) = output {
        let count = imported.config.upstreams.len();
        eprintln!(
            "wrote {} with {count} upstream{}; check it with `warrant check --config {}`",
            path.display(),
            if count == 1 { "" } else { "s" },
            path.display()
        );
    }
    ExitCode::SUCCESS
}

/// Stores every secret found in the vault of the data directory (or database) given, as
/// its upstream's shared record, and lists what was moved (never a value).
async fn store(imported: &Imported, place: &Place) -> anyhow::Result<()> {
    let Opened {
        config, db, vault, ..
    } = open_vault(place).await?;
    for secret in &imported.moved {
        vault
            .put(
                SHARED,
                &secret.upstream,
                &secret.kind,
                secret.value.expose().as_bytes(),
            )
            .await
            .with_context(|| {
                format!(
                    "cannot store upstreams.{}'s {} in the vault",
                    secret.upstream, secret.found_in
                )
            })?;
        eprintln!(
            "moved to the vault: upstreams.{}: {} (as `{}`)",
            secret.upstream, secret.found_in, secret.kind
        );
    }
    db.close().await;
    eprintln!(
        "{} secret{} moved to the vault in {}; serve with the same data directory (or database)",
        imported.moved.len(),
        if imported.moved.len() == 1 { "" } else { "s" },
        config.server.data_dir.display()
    );
    Ok(())
}
