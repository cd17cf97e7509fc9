//! `warrant check [--config FILE]`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Overrides};

/// Exit code of `warrant check` for an invalid configuration.
pub(super) const INVALID: u8 = 2;

pub(super) fn run(path: Option<PathBuf>) -> ExitCode {
    let explicit = path.is_some();
    let path = path.unwrap_or_else(|| PathBuf::from("warrant.toml"));
    if !explicit && !path.exists() {
        println!(
            "no warrant.toml here: `warrant serve` uses the embedded defaults (SQLite, the demo upstream)"
        );
        return ExitCode::SUCCESS;
    }
    match config::load(&path, &Overrides::default()) {
        Ok(config) => {
            println!(
                "{}: valid ({} upstream{}: {})",
                path.display(),
                config.upstreams.len(),
                if config.upstreams.len() == 1 { "" } else { "s" },
                config
                    .upstreams
                    .iter()
                    .map(|u| format!("{} [{}]", u.name, u.transport.kind()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(report) => {
            eprintln!("{report}");
            ExitCode::from(INVALID)
        }
    }
}
