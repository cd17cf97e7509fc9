//! The command line: `warrant serve | check | import | keys | policy | vault | audit | token |
//! demo-server`.
//! Each subcommand lives in its own file; this one parses arguments and sets up logging.

mod audit;
mod check;
mod import;
mod keys;
mod policy;
mod record;
mod serve;
mod token;
mod vault;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Warrant: a consent-driven, identity-aware gateway for the Model Context Protocol.
#[derive(Debug, Parser)]
#[command(name = "warrant", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (with no config file: SQLite, the built-in demo upstream, loopback).
    Serve(serve::ServeArgs),
    /// Validate a configuration file: exit 0 when valid, 2 with every problem printed.
    Check {
        /// The configuration file (default: $WARRANT_CONFIG, else ./warrant.toml).
        #[arg(long, short, env = "WARRANT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Convert an `mcpServers` JSON file (Claude Desktop, Claude Code, Cursor) to warrant.toml.
    Import {
        /// The JSON file, e.g. .mcp.json or claude_desktop_config.json.
        file: PathBuf,
        /// Write the TOML here instead of standard output (an existing file is kept).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Where the secrets found go: the vault of this data directory or database.
        #[command(flatten)]
        place: keys::Place,
    },
    /// Manage the root keys that sign access tokens.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Policy as code: export the trusted upstreams, reviewed risk classes, group and user
    /// ceilings as a TOML file, or apply one (diff first, one transaction).
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// The credential vault's keys: which wraps what, and re-wrapping under a new one.
    Vault {
        #[command(subcommand)]
        command: vault::VaultCommand,
    },
    /// The audit ledger: verify every chain and checkpoint, print the checkpoint key.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Work with access tokens offline (narrow one for a subagent).
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Run the built-in demo MCP server on standard input/output.
    DemoServer,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets logging up once its configuration says where traces go.
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging();
    }
    match cli.command {
        Command::Check { config } => check::run(config),
        Command::Import {
            file,
            output,
            place,
        } => import::run(&file, output.as_deref(), &place),
        Command::Serve(args) => serve::run(args),
        Command::Keys { command } => keys::run(command),
        Command::Policy { command } => policy::run(command),
        Command::Token { command } => token::run(command),
        Command::Vault { command } => vault::run(command),
        Command::Audit { command } => audit::run(command),
        Command::DemoServer => run_async(1, async {
            warrant_plane::demo::serve_stdio().await?;
            Ok(ExitCode::SUCCESS)
        }),
    }
}

/// Runs a command on a runtime with `threads` worker threads; with one, everything
/// runs on the calling thread (no wake-ups across threads, the cheapest per request on
/// a small machine).
fn run_async(threads: usize, future: impl Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error (standard output carries the demo server's protocol and
/// the listening line). `RUST_LOG` sets the filter.
fn init_logging() {
    // Without a collector nothing can fail.
    let _ = crate::telemetry::init(None);
}
