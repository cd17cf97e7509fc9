//! `warrant token attenuate --token T|- [--tools P,...] [--deny P,...] [--ttl 5m]
//! [--max-risk R] [--arg NAME=VALUE|NAME=prefix:VALUE|NAME=oneof:a,b]`: narrows an
//! access token offline (no key, no server) and prints the narrowed token.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;
use warrant_consent::token::{ArgConstraint, Restriction, Risk, ToolPattern, attenuate};

#[derive(Debug, clap::Subcommand)]
pub(super) enum TokenCommand {
    /// Narrow a token for a subagent: fewer tools, a shorter life, argument
    /// constraints. The result can never do more than the token it came from.
    Attenuate(AttenuateArgs),
}

#[derive(Debug, clap::Args)]
pub(super) struct AttenuateArgs {
    /// The token to narrow, or `-` to read it from standard input.
    #[arg(long)]
    token: String,
    /// Keep only these tools (patterns like github.*, fs.read_*, *_user), comma-separated.
    #[arg(long, value_delimiter = ',')]
    tools: Vec<String>,
    /// Refuse these tools (patterns), comma-separated.
    #[arg(long, value_delimiter = ',')]
    deny: Vec<String>,
    /// End the narrowed token's life this long from now (e.g. 5m, 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// The highest risk class allowed: low, medium, high or critical.
    #[arg(long)]
    max_risk: Option<String>,
    /// An argument constraint: NAME=VALUE, NAME=prefix:VALUE or NAME=oneof:a,b (repeatable).
    #[arg(long = "arg")]
    args: Vec<String>,
}

pub(super) fn run(command: TokenCommand) -> ExitCode {
    let TokenCommand::Attenuate(args) = command;
    match narrow(&args) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn narrow(args: &AttenuateArgs) -> anyhow::Result<String> {
    let token = if args.token == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the token from standard input")?;
        text
    } else {
        args.token.clone()
    };
    let patterns = |list: &[String]| -> anyhow::Result<Vec<ToolPattern>> {
        Ok(ToolPattern::parse_list(&list.join(","))?)
    };
    let expires_at = match args.ttl {
        Some(ttl) => {
            let secs = i64::try_from(ttl.as_secs()).context("--ttl is too long")?;
            Some(
                OffsetDateTime::now_utc()
                    .unix_timestamp()
                    .saturating_add(secs),
            )
        }
        None => None,
    };
    let max_risk = match &args.max_risk {
        Some(text) => Some(Risk::parse(text).with_context(|| {
            format!("--max-risk {text:?}: expected low, medium, high or critical")
        })?),
        None => None,
    };
    let narrowing = Restriction {
        allow: (!args.tools.is_empty())
            .then(|| patterns(&args.tools))
            .transpose()?,
        deny: patterns(&args.deny)?,
        max_risk,
        args: args
            .args
            .iter()
            .map(|a| ArgConstraint::parse(a))
            .collect::<Result<_, _>>()?,
        expires_at,
    };
    Ok(attenuate(token.trim(), &narrowing)?)
}
