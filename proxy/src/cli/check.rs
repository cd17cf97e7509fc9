//! `warrant check [--config FILE]`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Overrides};

/// Exit code of `warrant check` for an invalid configuration.
pub(super) const INVALID: u8 = 2;

/// What `warrant check` and `warrant serve` say of a configuration without upstreams:
/// a configuration file replaces the embedded defaults, the demo upstream included.
pub(super) fn no_upstreams_hint() -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "warrant".into());
    format!(
        "no upstreams: agents will see no tools. A configuration file replaces the built-in \
         defaults, the demo upstream with them; to keep the demo, add\n\
         \n    [upstreams.demo]\n    command = {exe:?}\n    args = [\"demo-server\"]\n    \
         trust_annotations = true\n\n\
         or an [upstreams.NAME] of your own (docs/configuration.md)."
    )
}

pub(super) fn run(path: Option<PathBuf>) -> ExitCode {
    let explicit = path.is_some();
    let path = path.unwrap_or_else(|| PathBuf::from("warrant.toml"));
    if !explicit && !path.exists() {
        println!(
            "no warrant.toml here: `warrant serve` uses the embedded defaults (SQLite, the demo upstream)"
        );
        return ExitCode::SUCCESS;
    }
    let loaded = config::load(&path, &Overrides::default());
    if let Ok(config) = &loaded {
        for warning in config.warnings() {
            println!("warning: {}: {}", warning.path, warning.message);
        }
    }
    match loaded {
        Ok(config) if config.upstreams.is_empty() => {
            println!("{}: valid, but {}", path.display(), no_upstreams_hint());
            ExitCode::SUCCESS
        }
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
