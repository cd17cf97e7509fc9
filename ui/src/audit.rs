//! The audit log: an admin's view of every record of the ledger, and each person's view
//! of the records of their own agents (`/account/activity`), with filters and keyset
//! paging (newest first); each record opens with its full reason, the chain of agents
//! and its place in the chain of hashes.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use warrant_consent::ledger::chain::Record;
use warrant_consent::ledger::query::{self, Cursor, Filter};
use warrant_consent::ledger::{LedgerError, now_micros};
use warrant_consent::oauth::Clients;
use warrant_idp::IdpError;

use crate::UiState;
use crate::extract::{Admin, SignedIn};
use crate::page::{PageError, path_segment};

/// Records on one page.
const PER_PAGE: usize = 50;

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/admin/audit", get(admin_log))
        .route("/admin/audit/{writer}/{seq}", get(admin_record))
        .route("/account/activity", get(own_log))
        .route("/account/activity/{writer}/{seq}", get(own_record))
}

/// The filters as the form sends them (each kept to fill the form again).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    upstream: String,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    risk: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    before: String,
}

impl Filters {
    /// The query string of these filters (without the page), for links.
    fn query(&self) -> String {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("since", &self.since),
            ("until", &self.until),
            ("person", &self.person),
            ("agent", &self.agent),
            ("upstream", &self.upstream),
            ("tool", &self.tool),
            ("decision", &self.decision),
            ("risk", &self.risk),
            ("kind", &self.kind),
        ] {
            if !value.trim().is_empty() {
                pairs.append_pair(key, value.trim());
            }
        }
        pairs.finish()
    }
}

struct RowView {
    href: String,
    time: String,
    kind: String,
    person: String,
    agent: String,
    target: String,
    risk: String,
    decision: String,
    reason: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct LogPage {
    title: &'static str,
    intro: &'static str,
    admin: bool,
    base: &'static str,
    f: Filters,
    decisions: [(&'static str, &'static str); 3],
    risks: [(&'static str, &'static str); 5],
    notes: Vec<String>,
    rows: Vec<RowView>,
    newest: bool,
    first: String,
    older: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit_record.html")]
struct RecordPage {
    admin: bool,
    back: &'static str,
    kind: String,
    time: String,
    decision: String,
    reason: String,
    person: String,
    agent: String,
    target: String,
    risk: String,
    facts: Vec<(String, String)>,
    chain: Vec<String>,
    writer: String,
    label: String,
    seq: i64,
    hash: String,
    prev_hash: String,
    detail: String,
}

fn read_error(e: LedgerError) -> PageError {
    PageError(IdpError::Session(format!("reading the audit ledger: {e}")))
}

async fn admin_log(
    State(state): State<UiState>,
    Admin(_admin): Admin,
    Query(f): Query<Filters>,
) -> Result<Response, PageError> {
    log(&state, f, None).await
}

async fn own_log(
    State(state): State<UiState>,
    person: SignedIn,
    Query(f): Query<Filters>,
) -> Result<Response, PageError> {
    log(&state, f, Some(&person.user.id)).await
}

/// The log, of everyone (`own` is `None`: an admin) or of the person `own`.
async fn log(state: &UiState, mut f: Filters, own: Option<&str>) -> Result<Response, PageError> {
    let mut notes = Vec::new();
    let now = now_micros();
    let instant = |text: &str, notes: &mut Vec<String>| {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        match query::instant(text, now) {
            Ok(at) => Some(at),
            Err(e) => {
                notes.push(format!("Not used: {e}."));
                None
            }
        }
    };
    let some = |text: &str| {
        Some(text.trim())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    let mut filter = Filter {
        since: instant(&f.since, &mut notes),
        until: instant(&f.until, &mut notes),
        kind: some(&f.kind),
        user_id: None,
        agent: some(&f.agent),
        upstream: some(&f.upstream),
        tool: some(&f.tool),
        decision: some(&f.decision).filter(|d| matches!(d.as_str(), "allow" | "deny")),
        risk: some(&f.risk)
            .filter(|r| matches!(r.as_str(), "low" | "medium" | "high" | "critical")),
    };
    match own {
        Some(user) => {
            f.person.clear();
            filter.user_id = Some(user.to_owned());
        }
        None => {
            if let Some(email) = some(&f.person) {
                match state.idp.users.by_email(&email).await? {
                    Some(user) => filter.user_id = Some(user.id),
                    None => {
                        notes.push(format!("Nobody has the email address {email}."));
                        // Matches nothing, rather than everyone.
                        filter.user_id = Some(String::new());
                    }
                }
            }
        }
    }
    let before = Cursor::parse(f.before.trim());
    let page = query::page(&state.idp.db, &filter, before.as_ref(), PER_PAGE)
        .await
        .map_err(read_error)?;
    let base = if own.is_some() {
        "/account/activity"
    } else {
        "/admin/audit"
    };
    let names = Names::of(state, &page.records).await;
    let rows = page
        .records
        .iter()
        .map(|r| RowView {
            href: format!("{base}/{}/{}", path_segment(&r.writer), r.seq),
            time: when_micros(r.at),
            kind: r.kind.clone(),
            person: names.person(r.user_id.as_deref()),
            agent: names.agent(r.agent.as_deref()),
            target: target(r),
            risk: r.risk.clone().unwrap_or_default(),
            decision: r.decision.clone().unwrap_or_default(),
            reason: short(&reason_of(r), 100),
        })
        .collect();
    let query = f.query();
    let link = |cursor: Option<&Cursor>| {
        let mut to = format!("{base}?{query}");
        if let Some(c) = cursor {
            if !query.is_empty() {
                to.push('&');
            }
            to.push_str("before=");
            to.push_str(&c.to_string());
        }
        to
    };
    Ok(LogPage {
        title: if own.is_some() {
            "Your agents' activity"
        } else {
            "Audit log"
        },
        intro: if own.is_some() {
            "What your agents asked for, and what was allowed or refused, and what you \
             did here, as the audit ledger recorded it."
        } else {
            "Every decision and change the audit ledger recorded. Open a record for its \
             full reason and the chain of agents."
        },
        admin: own.is_none(),
        base,
        decisions: [("", "any"), ("allow", "allowed"), ("deny", "refused")],
        risks: [
            ("", "any"),
            ("low", "low"),
            ("medium", "medium"),
            ("high", "high"),
            ("critical", "critical"),
        ],
        notes,
        rows,
        newest: before.is_none(),
        first: link(None),
        older: page.older.as_ref().map(|c| link(Some(c))),
        f,
    }
    .into_response())
}

async fn admin_record(
    State(state): State<UiState>,
    Admin(_admin): Admin,
    Path((writer, seq)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    record(&state, &writer, seq, None).await
}

async fn own_record(
    State(state): State<UiState>,
    person: SignedIn,
    Path((writer, seq)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    record(&state, &writer, seq, Some(&person.user.id)).await
}

/// One record; for `own`, only one of theirs (anything else is not found).
async fn record(
    state: &UiState,
    writer: &str,
    seq: i64,
    own: Option<&str>,
) -> Result<Response, PageError> {
    let found = query::one(&state.idp.db, writer, seq)
        .await
        .map_err(read_error)?
        .filter(|r| own.is_none_or(|me| r.user_id.as_deref() == Some(me)))
        .ok_or(IdpError::NotFound("record"))?;
    let names = Names::of(state, std::slice::from_ref(&found)).await;
    let detail: serde_json::Value = serde_json::from_str(&found.detail).unwrap_or_default();
    let mut facts = Vec::new();
    if let Some(map) = detail.as_object() {
        for (key, value) in map {
            if matches!(key.as_str(), "reason" | "chain" | "more") {
                continue;
            }
            facts.push((label_of(key), plain(value)));
        }
        if let Some(more) = map.get("more").and_then(|m| m.as_object()) {
            for (key, value) in more {
                facts.push((label_of(key), plain(value)));
            }
        }
    }
    let chain = detail
        .get("chain")
        .and_then(|c| c.as_array())
        .map(|blocks| blocks.iter().map(plain).collect())
        .unwrap_or_default();
    let label = query::writer_label(&state.idp.db, &found.writer)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    Ok(RecordPage {
        admin: own.is_none(),
        back: if own.is_some() {
            "/account/activity"
        } else {
            "/admin/audit"
        },
        kind: found.kind.clone(),
        time: when_micros(found.at),
        decision: found.decision.clone().unwrap_or_default(),
        reason: reason_of(&found),
        person: names.person(found.user_id.as_deref()),
        agent: names.agent_in_full(found.agent.as_deref()),
        target: target(&found),
        risk: found.risk.clone().unwrap_or_default(),
        facts,
        chain,
        writer: found.writer.clone(),
        label,
        seq: found.seq,
        hash: found.hash.clone(),
        prev_hash: found.prev_hash.clone(),
        detail: serde_json::to_string_pretty(&detail).unwrap_or_default(),
    }
    .into_response())
}

/// The people and agents a page names, the way the other pages name them (email,
/// client name).
struct Names {
    people: HashMap<String, String>,
    agents: HashMap<String, String>,
}

impl Names {
    async fn of(state: &UiState, records: &[Record]) -> Self {
        let mut people = HashMap::new();
        let mut agents = HashMap::new();
        let clients = Clients::new(state.idp.db.clone());
        for r in records {
            if let Some(id) = &r.user_id
                && !people.contains_key(id)
                && let Ok(Some(user)) = state.idp.users.get(id).await
            {
                people.insert(id.clone(), user.email);
            }
            if let Some(id) = &r.agent
                && !agents.contains_key(id)
                && let Ok(Some(client)) = clients.get(id).await
            {
                agents.insert(id.clone(), client.name);
            }
        }
        Self { people, agents }
    }

    fn person(&self, id: Option<&str>) -> String {
        id.map(|id| {
            self.people
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("a removed person ({id})"))
        })
        .unwrap_or_default()
    }

    /// The agent's name (its client id when it has none any more).
    fn agent(&self, id: Option<&str>) -> String {
        id.map(|id| {
            self.agents
                .get(id)
                .cloned()
                .unwrap_or_else(|| id.to_owned())
        })
        .unwrap_or_default()
    }

    /// The agent's name and client id, for a record's own page.
    fn agent_in_full(&self, id: Option<&str>) -> String {
        id.map(|id| match self.agents.get(id) {
            Some(name) => format!("{name} ({id})"),
            None => id.to_owned(),
        })
        .unwrap_or_default()
    }
}

fn target(r: &Record) -> String {
    match (&r.upstream, &r.tool) {
        (Some(u), Some(t)) => format!("{u} · {t}"),
        (Some(u), None) => u.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => String::new(),
    }
}

/// Why: a refusal's reason; for an event, what it says beyond the columns.
fn reason_of(r: &Record) -> String {
    let detail: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
    if let Some(reason) = detail.get("reason").and_then(|v| v.as_str()) {
        return reason.to_owned();
    }
    if let Some(outcome) = detail.get("outcome").and_then(|v| v.as_str()) {
        let latency = detail
            .get("latency_us")
            .and_then(serde_json::Value::as_u64)
            .map(|us| format!(" in {:.1} ms", us as f64 / 1000.0))
            .unwrap_or_default();
        return format!("{}{latency}", outcome.replace('_', " "));
    }
    if let Some(subject) = detail
        .pointer("/more/subject/email")
        .and_then(|v| v.as_str())
    {
        return format!("about {subject}");
    }
    String::new()
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push('…');
    cut
}

/// A JSON value for reading: strings as they are, the rest as compact JSON.
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `latency_us` → `latency us`, for a label.
fn label_of(key: &str) -> String {
    key.replace('_', " ")
}

/// Unix microseconds as `2026-12-07 23:41:07.123` (UTC).
fn when_micros(at: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1000) else {
        return "?".into();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_links_keep_every_filter_and_drop_empty_ones() {
        let f = Filters {
            person: "ada@example.com".into(),
            decision: "deny".into(),
            tool: "  ".into(),
            ..Filters::default()
        };
        assert_eq!(f.query(), "person=ada%40example.com&decision=deny");
        assert_eq!(
            when_micros(1_765_150_867_123_456),
            "2025-12-07 23:41:07.123"
        );
        assert_eq!(short("abcdef", 3), "abc…");
    }
}
