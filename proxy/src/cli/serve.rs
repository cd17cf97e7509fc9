//! `warrant serve [--config FILE] [--listen ADDR] [--data-dir DIR]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::app;
use crate::config::{self, Config, McpAuthorization, Overrides};

#[derive(Debug, clap::Args)]
pub(super) struct ServeArgs {
    /// The configuration file; without one, the embedded defaults are used.
    #[arg(long, short, env = "WARRANT_CONFIG")]
    config: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "WARRANT_LISTEN")]
    listen: Option<String>,
    /// Where the embedded database lives [default: ./warrant-data].
    #[arg(long, env = "WARRANT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL (or SQLite) URL instead of the embedded database file.
    #[arg(long, env = "WARRANT_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

/// Loads the configuration, then runs the gateway on a runtime sized by it.
pub(super) fn run(args: ServeArgs) -> ExitCode {
    let (config, embedded) = match load(&args) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let traces = match crate::telemetry::init(Some(&config.telemetry)) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let threads = config.server.worker_threads;
    let code = super::run_async(threads, serve(config, embedded));
    // The last spans go before the process ends.
    drop(traces);
    code
}

fn load(args: &ServeArgs) -> Result<(Config, bool), ExitCode> {
    let overrides = Overrides {
        listen: args.listen.clone(),
        data_dir: args.data_dir.clone(),
        database_url: args.database_url.clone(),
    };
    let config = match &args.config {
        Some(path) => config::load(path, &overrides),
        None => match std::env::current_exe() {
            Ok(exe) => config::embedded_default(&overrides, &exe),
            Err(e) => {
                eprintln!("error: cannot find the warrant executable: {e}");
                return Err(ExitCode::FAILURE);
            }
        },
    };
    match config {
        Ok(config) => Ok((config, args.config.is_none())),
        Err(report) => {
            eprintln!("{report}");
            Err(ExitCode::from(super::check::INVALID))
        }
    }
}

async fn serve(config: Config, embedded: bool) -> anyhow::Result<ExitCode> {
    let upstreams = config.upstreams.len();
    let database = if config.server.database_url.is_some() {
        "PostgreSQL/URL"
    } else {
        "SQLite"
    };
    let data_dir = config.server.data_dir.clone();
    let authorization = config.mcp.authorization;
    for warning in config.warnings() {
        eprintln!("warning: {}: {}", warning.path, warning.message);
    }
    let running = app::start(config).await?;
    // The URL clients must use: the resource their tokens are for.
    let url = running.client_url();
    // The one line scripts wait for.
    println!("Warrant listening on {url}");
    if let Some(link) = &running.setup_link {
        println!("{}", running.idp.setup.announcement(link));
    }
    let _ = std::io::stdout().flush();
    eprintln!(
        "  bound to {}; {upstreams} upstream{}{}; database: {database} (data dir {})",
        running.local_addr,
        if upstreams == 1 { "" } else { "s" },
        if embedded {
            " (the built-in demo server)"
        } else {
            ""
        },
        data_dir.display()
    );
    if upstreams == 0 {
        eprintln!("  {}", super::check::no_upstreams_hint());
    }
    for status in running.gateway.status() {
        match &status.reason {
            Some(reason) => eprintln!(
                "  upstream {} [{}]: {} ({reason})",
                status.name, status.transport, status.state
            ),
            None => eprintln!(
                "  upstream {} [{}]: {}, {} tools",
                status.name, status.transport, status.state, status.tools
            ),
        }
    }
    match authorization {
        McpAuthorization::OAuth => eprintln!(
            "  Agents connect with OAuth: a client that connects opens Warrant's consent page \
             ({}) where a signed-in person approves it.",
            running.public_url
        ),
        McpAuthorization::None => eprintln!(
            "  mcp.authorization = \"none\": agents need no token, so Warrant serves loopback only \
             and any local program can call every tool."
        ),
    }
    for line in client_snippets(&url) {
        eprintln!("  {line}");
    }

    let shutdown = running.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    running.wait().await.context("the HTTP server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// How to connect the common clients to `url`, each in the format that client reads.
pub(crate) fn client_snippets(url: &str) -> [String; 3] {
    [
        format!("Claude Code:               claude mcp add --transport http warrant {url}"),
        format!(
            "Cursor (mcp.json), .mcp.json: {{\"mcpServers\": {{\"warrant\": {{\"type\": \"http\", \"url\": \"{url}\"}}}}}}"
        ),
        format!(
            "VS Code (.vscode/mcp.json): {{\"servers\": {{\"warrant\": {{\"type\": \"http\", \"url\": \"{url}\"}}}}}}"
        ),
    ]
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
