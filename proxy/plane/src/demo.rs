//! `warrant demo-server`: a small MCP server over stdio, the upstream of the embedded
//! defaults. Its tools span the risk levels, each with MCP tool annotations, so the
//! risk classes and ceilings have something real to act on: reading a note (read-only),
//! writing one (a reversible write), deleting all notes (destructive) and sending a
//! payment (destructive, open world, money). Notes live in memory; payments are only
//! recorded, never sent anywhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::locks::Locked;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Clone, Default)]
pub struct DemoServer {
    notes: Arc<Mutex<BTreeMap<String, String>>>,
    payments: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadNote {
    /// The title of the note.
    pub title: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteNote {
    /// The title of the note (an existing note of that title is replaced).
    pub title: String,
    /// The text of the note.
    pub body: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteAll {
    /// Must be true: a guard against an accidental call.
    pub confirm: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SendPayment {
    /// Who receives the money (an account name or IBAN).
    pub to: String,
    /// Amount in cents.
    pub amount_cents: u64,
    /// ISO 4217 currency code, e.g. EUR.
    pub currency: String,
}

#[tool_router]
impl DemoServer {
    pub fn new() -> Self {
        Self::default()
    }

    #[tool(
        description = "Read the note with the given title.",
        annotations(title = "Read a note", read_only_hint = true, open_world_hint = false)
    )]
    fn read_note(&self, Parameters(args): Parameters<ReadNote>) -> Result<String, String> {
        let notes = self.notes.locked();
        notes
            .get(&args.title)
            .cloned()
            .ok_or_else(|| format!("there is no note titled {:?}", args.title))
    }

    #[tool(
        description = "List the titles of all notes.",
        annotations(title = "List notes", read_only_hint = true, open_world_hint = false)
    )]
    fn list_notes(&self) -> Result<String, String> {
        let notes = self.notes.locked();
        if notes.is_empty() {
            return Ok("no notes yet".into());
        }
        Ok(notes.keys().cloned().collect::<Vec<_>>().join("\n"))
    }

    #[tool(
        description = "Write a note (replacing any note with the same title).",
        annotations(
            title = "Write a note",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn write_note(&self, Parameters(args): Parameters<WriteNote>) -> Result<String, String> {
        let mut notes = self.notes.locked();
        let replaced = notes.insert(args.title.clone(), args.body).is_some();
        Ok(format!(
            "{} note {:?}",
            if replaced { "replaced" } else { "saved" },
            args.title
        ))
    }

    #[tool(
        description = "Delete every note. Cannot be undone.",
        annotations(
            title = "Delete all notes",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn delete_all_notes(&self, Parameters(args): Parameters<DeleteAll>) -> Result<String, String> {
        if !args.confirm {
            return Err("nothing deleted: pass confirm = true".into());
        }
        let mut notes = self.notes.locked();
        let count = notes.len();
        notes.clear();
        Ok(format!("deleted {count} notes"))
    }

    #[tool(
        description = "Send a payment. Moves real money in a real deployment; the demo only records it.",
        annotations(
            title = "Send a payment",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    fn send_payment(&self, Parameters(args): Parameters<SendPayment>) -> Result<String, String> {
        if args.amount_cents == 0 {
            return Err("the amount must be greater than zero".into());
        }
        let currency = args.currency.to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!(
                "{:?} is not an ISO 4217 currency code",
                args.currency
            ));
        }
        let mut payments = self.payments.locked();
        payments.push(format!("{} {} to {}", args.amount_cents, currency, args.to));
        Ok(format!(
            "payment #{} recorded: {}.{:02} {} to {} (demo: no money moved)",
            payments.len(),
            args.amount_cents / 100,
            args.amount_cents % 100,
            currency,
            args.to
        ))
    }
}

#[tool_handler(
    name = "warrant-demo",
    instructions = "A notes and payments demo with tools of every risk level."
)]
impl ServerHandler for DemoServer {}

/// Serves the demo over stdin/stdout until the client closes the connection.
pub async fn serve_stdio() -> anyhow::Result<()> {
    let running = DemoServer::new().serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}
