//! Analytics and the graph, for admins: calls, refusals and latency percentiles over
//! time, per upstream, tool or agent (`/admin/analytics`), and which agents, acting for
//! whom, reach which upstreams and tools (`/admin/graph`). Drawn by Warrant itself
//! ([`crate::chart`]).

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use warrant_consent::ledger::analytics::{self, By, Stats};
use warrant_consent::ledger::{LedgerError, now_micros};
use warrant_consent::oauth::Clients;
use warrant_idp::IdpError;

use crate::UiState;
use crate::chart::{self, Link};
use crate::extract::Admin;
use crate::page::PageError;

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/admin/analytics", get(page))
        .route("/admin/graph", get(graph))
}

const HOUR: i64 = 3_600_000_000;

/// The ranges offered: value, label, length, step.
const RANGES: [(&str, &str, i64, i64); 3] = [
    ("24h", "the last 24 hours", 24 * HOUR, HOUR),
    ("7d", "the last 7 days", 7 * 24 * HOUR, 6 * HOUR),
    ("30d", "the last 30 days", 30 * 24 * HOUR, 24 * HOUR),
];

#[derive(Debug, Default, Deserialize)]
struct Choice {
    #[serde(default)]
    range: String,
    #[serde(default)]
    by: String,
}

struct GroupRow {
    name: String,
    href: String,
    calls: u64,
    refused: u64,
    bar: String,
    p50: String,
    p95: String,
    p99: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "analytics.html")]
struct AnalyticsPage {
    ranges: Vec<(&'static str, &'static str)>,
    range: &'static str,
    range_query: String,
    bys: [(&'static str, &'static str); 3],
    by: &'static str,
    by_label: &'static str,
    summary: String,
    step: &'static str,
    calls_chart: String,
    latency_chart: String,
    groups: Vec<GroupRow>,
    more: usize,
    steps: Vec<(String, u64, u64, String, String, String)>,
}

struct EdgeRow {
    person: String,
    agent: String,
    target: String,
    href: String,
    calls: u64,
    refused: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "graph.html")]
struct GraphPage {
    ranges: Vec<(&'static str, &'static str)>,
    range: &'static str,
    range_query: String,
    summary: String,
    graph: String,
    edges: Vec<EdgeRow>,
    more: bool,
}

fn read_error(e: LedgerError) -> PageError {
    PageError(IdpError::Session(format!("reading the audit ledger: {e}")))
}

/// The range chosen (the last 24 hours unless another is named).
fn range_of(choice: &str) -> (&'static str, &'static str, i64, i64) {
    RANGES
        .iter()
        .find(|r| r.0 == choice)
        .copied()
        .unwrap_or(RANGES[0])
}

fn ms(us: Option<u64>) -> String {
    us.map(|us| {
        if us >= 10_000 {
            format!("{:.0} ms", us as f64 / 1000.0)
        } else {
            format!("{:.1} ms", us as f64 / 1000.0)
        }
    })
    .unwrap_or_else(|| "—".into())
}

/// An instant (Unix µs) as `12-07 14:00`, for the steps of a chart.
fn step_label(at: i64, step: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1000) else {
        return "?".into();
    };
    if step >= 24 * HOUR {
        format!("{:02}-{:02}", u8::from(t.month()), t.day())
    } else {
        format!(
            "{:02}-{:02} {:02}:00",
            u8::from(t.month()),
            t.day(),
            t.hour()
        )
    }
}

async fn page(
    State(state): State<UiState>,
    Admin(_admin): Admin,
    Query(choice): Query<Choice>,
) -> Result<Response, PageError> {
    let (range, label, length, step) = range_of(&choice.range);
    let by = By::parse(&choice.by).unwrap_or(By::Upstream);
    // Steps aligned to the step, the last one ending after now.
    let now = now_micros();
    let until = (now / step + 1) * step;
    let since = until - length;
    let report = analytics::report(&state.idp.db, since, until, step, by, 20)
        .await
        .map_err(read_error)?;
    let labels: Vec<String> = (0..report.steps.len())
        .map(|i| step_label(since + step * i as i64, step))
        .collect();
    let allowed: Vec<u64> = report.steps.iter().map(|s| s.calls).collect();
    let refused: Vec<u64> = report.steps.iter().map(|s| s.refused).collect();
    let pick = |f: fn(&Stats) -> Option<u64>| report.steps.iter().map(f).collect::<Vec<_>>();
    let (p50, p95, p99) = (pick(|s| s.p50_us), pick(|s| s.p95_us), pick(|s| s.p99_us));
    let total: u64 = allowed.iter().sum();
    let total_refused: u64 = refused.iter().sum();
    let agents = agent_names(&state, report.groups.iter().map(|g| g.key.as_str()), by).await;
    let busiest = report
        .groups
        .first()
        .map_or(1, |g| g.stats.calls + g.stats.refused);
    let groups = report
        .groups
        .iter()
        .map(|g| {
            let filter = match by {
                By::Upstream => format!("upstream={}", encode(&g.key)),
                By::Tool => {
                    let (upstream, tool) = g.key.split_once(" · ").unwrap_or(("", &g.key));
                    format!("upstream={}&tool={}", encode(upstream), encode(tool))
                }
                By::Agent => format!("agent={}", encode(&g.key)),
            };
            GroupRow {
                name: agents.get(&g.key).cloned().unwrap_or_else(|| {
                    if g.key.is_empty() {
                        "(none)".into()
                    } else {
                        g.key.clone()
                    }
                }),
                href: format!("/admin/audit?kind=call&{filter}"),
                calls: g.stats.calls,
                refused: g.stats.refused,
                bar: chart::bar(g.stats.calls, busiest, g.stats.refused),
                p50: ms(g.stats.p50_us),
                p95: ms(g.stats.p95_us),
                p99: ms(g.stats.p99_us),
            }
        })
        .collect();
    let steps = report
        .steps
        .iter()
        .zip(&labels)
        .map(|(s, l)| {
            (
                l.clone(),
                s.calls,
                s.refused,
                ms(s.p50_us),
                ms(s.p95_us),
                ms(s.p99_us),
            )
        })
        .collect();
    Ok(AnalyticsPage {
        ranges: RANGES.iter().map(|r| (r.0, r.1)).collect(),
        range,
        range_query: format!("?range={range}"),
        bys: [("upstream", "server"), ("tool", "tool"), ("agent", "agent")],
        by: by.name(),
        by_label: match by {
            By::Upstream => "Server",
            By::Tool => "Server · tool",
            By::Agent => "Agent",
        },
        summary: format!("In {label}: {total} calls allowed, {total_refused} refused."),
        step: match step {
            s if s >= 24 * HOUR => "a day",
            s if s >= 6 * HOUR => "6 hours",
            _ => "an hour",
        },
        calls_chart: chart::calls(
            "Calls allowed and refused per step",
            &allowed,
            &refused,
            &labels,
        ),
        latency_chart: chart::latency("Latency percentiles per step", [&p50, &p95, &p99], &labels),
        groups,
        more: report.more_groups,
        steps,
    }
    .into_response())
}

async fn graph(
    State(state): State<UiState>,
    Admin(_admin): Admin,
    Query(choice): Query<Choice>,
) -> Result<Response, PageError> {
    const PATHS: usize = 40;
    let (range, label, length, _) = range_of(&choice.range);
    let until = now_micros() + 1;
    let reach = analytics::reach(&state.idp.db, until - length, until, PATHS + 1)
        .await
        .map_err(read_error)?;
    let more = reach.len() > PATHS;
    let reach = &reach[..reach.len().min(PATHS)];
    let mut people_names = HashMap::new();
    for r in reach {
        if !people_names.contains_key(&r.user_id) {
            let email = match state.idp.users.get(&r.user_id).await {
                Ok(Some(u)) => u.email,
                _ if r.user_id.is_empty() => "(no token)".to_owned(),
                _ => format!("a removed person ({})", r.user_id),
            };
            people_names.insert(r.user_id.clone(), email);
        }
    }
    let agents = agent_names(&state, reach.iter().map(|r| r.agent.as_str()), By::Agent).await;
    let agent_name = |id: &str| {
        agents.get(id).cloned().unwrap_or_else(|| {
            if id.is_empty() {
                "(no token)".into()
            } else {
                id.to_owned()
            }
        })
    };
    // The columns, each name once, in order of first appearance (busiest first).
    let mut columns: [Vec<String>; 3] = Default::default();
    let mut index = |column: usize, key: &str| -> usize {
        match columns[column].iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                columns[column].push(key.to_owned());
                columns[column].len() - 1
            }
        }
    };
    let mut links: HashMap<(usize, usize, usize), (u64, u64)> = HashMap::new();
    for r in reach {
        let person = index(0, &r.user_id);
        let agent = index(1, &format!("{}\u{0}{}", r.user_id, r.agent));
        let server = index(2, &r.upstream);
        for key in [(0, person, agent), (1, agent, server)] {
            let link = links.entry(key).or_default();
            link.0 += r.calls;
            link.1 += r.refused;
        }
    }
    let names: [Vec<String>; 3] = [
        columns[0]
            .iter()
            .map(|id| people_names.get(id).cloned().unwrap_or_default())
            .collect(),
        columns[1]
            .iter()
            .map(|key| agent_name(key.split_once('\u{0}').map_or(key.as_str(), |k| k.1)))
            .collect(),
        columns[2].clone(),
    ];
    let mut links: Vec<Link> = links
        .into_iter()
        .map(|((column, from, to), (calls, refused))| Link {
            column,
            from,
            to,
            calls,
            refused,
        })
        .collect();
    links.sort_by_key(|l| (l.column, l.from, l.to));
    let edges = reach
        .iter()
        .map(|r| EdgeRow {
            person: people_names.get(&r.user_id).cloned().unwrap_or_default(),
            agent: agent_name(&r.agent),
            target: format!("{} · {}", r.upstream, r.tool),
            href: format!(
                "/admin/audit?kind=call&agent={}&upstream={}&tool={}",
                encode(&r.agent),
                encode(&r.upstream),
                encode(&r.tool)
            ),
            calls: r.calls,
            refused: r.refused,
        })
        .collect();
    let calls: u64 = reach.iter().map(|r| r.calls + r.refused).sum();
    Ok(GraphPage {
        ranges: RANGES.iter().map(|r| (r.0, r.1)).collect(),
        range,
        range_query: format!("?range={range}"),
        summary: format!("In {label}: {calls} calls on the paths shown."),
        graph: chart::graph(
            "People, their agents and the servers they reach",
            [&names[0], &names[1], &names[2]],
            &links,
        ),
        edges,
        more,
    }
    .into_response())
}

/// The names of the agents among `keys` (client id → "name (id)"), when grouping by
/// agent.
async fn agent_names<'a>(
    state: &UiState,
    keys: impl Iterator<Item = &'a str>,
    by: By,
) -> HashMap<String, String> {
    let mut names = HashMap::new();
    if by != By::Agent {
        return names;
    }
    let clients = Clients::new(state.idp.db.clone());
    for id in keys {
        if id.is_empty() || names.contains_key(id) {
            continue;
        }
        if let Ok(Some(client)) = clients.get(id).await {
            names.insert(id.to_owned(), format!("{} ({id})", client.name));
        }
    }
    names
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
