//! Reading the policy from the database, checking a file against it, and applying the
//! difference in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use warrant_idp::db::Db;
use warrant_idp::on_pool;
use warrant_idp::users::{Users, normalize_email, plausible_email};

use super::{Change, Policy, PolicyError, PolicyState, diff};
use crate::catalog::Catalog;
use crate::ceilings::{Ceilings, SubjectKind};
use crate::token::Risk;

/// The policy as the database holds it, with what an export and a check need besides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    pub state: PolicyState,
    /// Every upstream the catalog knows → its tools → the class their annotations suggest.
    pub tools: BTreeMap<String, BTreeMap<String, Risk>>,
    /// Every user: email → id.
    pub user_ids: BTreeMap<String, String>,
    /// Every group someone is in → how many members.
    pub groups: BTreeMap<String, i64>,
    /// Ceilings set on user ids no user has any more (not part of the policy).
    pub orphans: Vec<(String, Risk)>,
}

/// What applying a policy file would change, checked against the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The changes, in the order [`diff`] gives them (empty: nothing to do).
    pub changes: Vec<Change>,
    /// Email → user id, for the users whose ceilings change.
    user_ids: BTreeMap<String, String>,
}

/// Reads and writes the policy; owns no table of its own (it writes the catalog's and
/// the ceilings' tables, with their semantics, in one transaction).
#[derive(Debug, Clone)]
pub struct PolicyStore {
    db: Db,
    users: Users,
}

impl PolicyStore {
    pub fn new(db: Db, users: Users) -> Self {
        Self { db, users }
    }

    /// The policy the database holds now.
    pub async fn current(&self) -> Result<Current, PolicyError> {
        let catalog = Catalog::new(self.db.clone());
        let mut current = Current::default();
        for server in catalog.servers().await? {
            if server.trusted.is_some() {
                current.state.trusted.insert(server.name.clone());
            }
            let mut tools = BTreeMap::new();
            for tool in catalog.tools_of(&server.name).await? {
                if let Some(risk) = tool.reviewed_risk() {
                    current
                        .state
                        .reviewed
                        .insert((server.name.clone(), tool.name.clone()), risk);
                }
                tools.insert(tool.name.clone(), tool.suggested_risk());
            }
            current.tools.insert(server.name, tools);
        }
        let mut emails = BTreeMap::new();
        for user in self.users.list().await? {
            emails.insert(user.id.clone(), user.email.clone());
            current.user_ids.insert(user.email, user.id);
        }
        current.groups = self.users.all_groups().await?.into_iter().collect();
        for entry in Ceilings::new(self.db.clone()).all().await? {
            match entry.kind {
                SubjectKind::Group => {
                    current.state.groups.insert(entry.subject, entry.ceiling);
                }
                SubjectKind::User => match emails.get(&entry.subject) {
                    Some(email) => {
                        current.state.users.insert(email.clone(), entry.ceiling);
                    }
                    None => current.orphans.push((entry.subject, entry.ceiling)),
                },
            }
        }
        Ok(current)
    }

    /// Checks `policy` (its classes and names, and that every tool and user it names
    /// exists here) and computes what applying it would change. Every problem is
    /// reported at once.
    pub async fn plan(&self, policy: &Policy) -> Result<Plan, PolicyError> {
        let current = self.current().await?;
        let (desired, mut problems) = policy.check();
        // Every tool and user the file names, whether or not its class is valid.
        let unknown_tools: Vec<String> = policy
            .upstreams
            .iter()
            .flat_map(|(upstream, p)| p.tools.keys().map(move |tool| (upstream, tool)))
            .filter(|(upstream, tool)| {
                current
                    .tools
                    .get(*upstream)
                    .is_none_or(|tools| !tools.contains_key(*tool))
            })
            .map(|(upstream, tool)| format!("{upstream}.{tool}"))
            .collect();
        if !unknown_tools.is_empty() {
            problems.push(format!(
                "tools the catalog has never seen (a class can be set once the gateway has \
                 listed the tool: start it with the upstream configured, or check the \
                 names): {}",
                unknown_tools.join(", ")
            ));
        }
        let unknown_users: BTreeSet<String> = policy
            .users
            .keys()
            .map(|email| normalize_email(email))
            .filter(|email| plausible_email(email) && !current.user_ids.contains_key(email))
            .collect();
        if !unknown_users.is_empty() {
            problems.push(format!(
                "users with no account here (they get one on their first sign-in; set their \
                 ceiling after that): {}",
                Vec::from_iter(unknown_users).join(", ")
            ));
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        Ok(Plan {
            changes: diff(&current.state, &desired),
            user_ids: current.user_ids,
        })
    }

    /// Writes every change of `plan` in one transaction, recording `by` as who made
    /// them at `now` (Unix seconds). Each write is conditional on the value the plan
    /// saw: if anything changed since, nothing is written ([`PolicyError::Conflict`]).
    pub async fn apply(&self, plan: &Plan, by: &str, now: i64) -> Result<(), PolicyError> {
        if plan.changes.is_empty() {
            return Ok(());
        }
        let mut writes = Vec::with_capacity(plan.changes.len());
        for change in &plan.changes {
            writes.push(Write::of(change, &plan.user_ids)?);
        }
        on_pool!(&self.db, pool => {
            let mut tx = warrant_idp::db::begin_write(pool).await?;
            for (write, change) in writes.iter().zip(&plan.changes) {
                let mut done = true;
                for (sql, binds) in write.statements(by, now) {
                    let mut query = sqlx::query(sql);
                    for bind in binds {
                        query = match bind {
                            Bind::Text(text) => query.bind(text),
                            Bind::Int(n) => query.bind(n),
                        };
                    }
                    done &= query.execute(&mut *tx).await?.rows_affected() == 1;
                }
                if !done {
                    // Dropping the transaction rolls every earlier write back.
                    return Err(PolicyError::Conflict(change.to_string()));
                }
            }
            tx.commit().await?;
        });
        for change in &plan.changes {
            tracing::info!(change = %change, by, "policy changed");
        }
        Ok(())
    }
}

/// A value bound to a statement (`None` text binds NULL).
#[derive(Debug, Clone)]
enum Bind {
    Text(Option<String>),
    Int(Option<i64>),
}

/// One change as the statements that make it.
#[derive(Debug)]
enum Write {
    Trust {
        upstream: String,
        trusted: bool,
    },
    Review {
        upstream: String,
        tool: String,
        from: Option<Risk>,
        to: Option<Risk>,
    },
    Ceiling {
        kind: SubjectKind,
        subject: String,
        from: Option<Risk>,
        to: Option<Risk>,
    },
}

/// Trusts an upstream's annotations: inserts its row, or updates it only when it is not
/// trusted yet (no row written when it already is: a conflict).
const TRUST: &str = "INSERT INTO consent_servers \
    (name, annotations_trusted_by, annotations_trusted_at, updated_at) VALUES ($1, $2, $3, $3) \
    ON CONFLICT (name) DO UPDATE SET annotations_trusted_by = excluded.annotations_trusted_by, \
    annotations_trusted_at = excluded.annotations_trusted_at, updated_at = excluded.updated_at \
    WHERE consent_servers.annotations_trusted_at IS NULL";
const DISTRUST: &str = "UPDATE consent_servers SET annotations_trusted_by = NULL, \
    annotations_trusted_at = NULL, updated_at = $1 \
    WHERE name = $2 AND annotations_trusted_at IS NOT NULL";
/// Sets or clears a reviewed class, only if it is still the one the plan saw (`''`: none).
const REVIEW: &str = "UPDATE consent_catalog_tools SET risk_override = $1, reviewed_by = $2, \
    reviewed_at = $3 WHERE server = $4 AND name = $5 AND COALESCE(risk_override, '') = $6";
const CEILING_ADD: &str = "INSERT INTO consent_ceilings \
    (subject_kind, subject, ceiling, set_by, set_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (subject_kind, subject) DO NOTHING";
const CEILING_CHANGE: &str = "UPDATE consent_ceilings SET ceiling = $1, set_by = $2, \
    set_at = $3 WHERE subject_kind = $4 AND subject = $5 AND ceiling = $6";
const CEILING_REMOVE: &str =
    "DELETE FROM consent_ceilings WHERE subject_kind = $1 AND subject = $2 AND ceiling = $3";
/// Every ceiling change is kept in the history the admin pages show.
const CEILING_RECORD: &str = "INSERT INTO consent_ceiling_changes \
    (id, subject_kind, subject, ceiling, set_by, set_at) VALUES ($1, $2, $3, $4, $5, $6)";

impl Write {
    fn of(change: &Change, user_ids: &BTreeMap<String, String>) -> Result<Self, PolicyError> {
        Ok(match change.clone() {
            Change::Trust { upstream, trusted } => Self::Trust { upstream, trusted },
            Change::Review {
                upstream,
                tool,
                from,
                to,
            } => Self::Review {
                upstream,
                tool,
                from,
                to,
            },
            Change::Ceiling {
                kind,
                subject,
                from,
                to,
            } => {
                let subject = match kind {
                    SubjectKind::Group => subject,
                    SubjectKind::User => user_ids
                        .get(&subject)
                        .cloned()
                        .ok_or_else(|| PolicyError::Conflict(change.to_string()))?,
                };
                Self::Ceiling {
                    kind,
                    subject,
                    from,
                    to,
                }
            }
        })
    }

    /// The statements, each of which must write exactly one row.
    fn statements(&self, by: &str, now: i64) -> Vec<(&'static str, Vec<Bind>)> {
        let text = |s: &str| Bind::Text(Some(s.to_owned()));
        let class = |r: Option<Risk>| Bind::Text(r.map(|r| r.name().to_owned()));
        match self {
            Self::Trust {
                upstream,
                trusted: true,
            } => vec![(TRUST, vec![text(upstream), text(by), Bind::Int(Some(now))])],
            Self::Trust {
                upstream,
                trusted: false,
            } => vec![(DISTRUST, vec![Bind::Int(Some(now)), text(upstream)])],
            Self::Review {
                upstream,
                tool,
                from,
                to,
            } => {
                let (by, at) = match to {
                    Some(_) => (text(by), Bind::Int(Some(now))),
                    None => (Bind::Text(None), Bind::Int(None)),
                };
                let was = text(from.map_or("", Risk::name));
                vec![(
                    REVIEW,
                    vec![class(*to), by, at, text(upstream), text(tool), was],
                )]
            }
            Self::Ceiling {
                kind,
                subject,
                from,
                to,
            } => {
                let kind = kind.as_str();
                let write = match (from, to) {
                    (None, _) => (
                        CEILING_ADD,
                        vec![
                            text(kind),
                            text(subject),
                            class(*to),
                            text(by),
                            Bind::Int(Some(now)),
                        ],
                    ),
                    (Some(_), Some(_)) => (
                        CEILING_CHANGE,
                        vec![
                            class(*to),
                            text(by),
                            Bind::Int(Some(now)),
                            text(kind),
                            text(subject),
                            class(*from),
                        ],
                    ),
                    (Some(_), None) => (
                        CEILING_REMOVE,
                        vec![text(kind), text(subject), class(*from)],
                    ),
                };
                let record = (
                    CEILING_RECORD,
                    vec![
                        text(&uuid::Uuid::now_v7().to_string()),
                        text(kind),
                        text(subject),
                        class(*to),
                        text(by),
                        Bind::Int(Some(now)),
                    ],
                );
                vec![write, record]
            }
        }
    }
}
