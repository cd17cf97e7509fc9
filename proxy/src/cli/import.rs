//! `warrant import FILE [--output F]`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Overrides};

pub(super) fn run(file: &Path, output: Option<&Path>) -> ExitCode {
    let json = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let (raw, text) = match config::import_mcp_servers(&json) {
        Ok(result) => result,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    // Say what still needs doing (a referenced variable that is not set here, say).
    let mut problems = Vec::new();
    config::validate(&raw, &Overrides::default(), &mut problems);
    for problem in &problems {
        eprintln!("note: {}: {}", problem.path, problem.message);
    }
    match output {
        None => {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
        Some(path) => {
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .and_then(|mut f| f.write_all(text.as_bytes()));
            if let Err(e) = written {
                eprintln!(
                    "error: cannot write {} (an existing file is never replaced): {e}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            eprintln!(
                "wrote {} with {} upstream{}; check it with `warrant check --config {}`",
                path.display(),
                raw.upstreams.len(),
                if raw.upstreams.len() == 1 { "" } else { "s" },
                path.display()
            );
        }
    }
    ExitCode::SUCCESS
}
