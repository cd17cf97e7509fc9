//! Trust ceilings (`consent_ceilings`, `consent_ceiling_changes`): the highest risk class
//! any agent acting for a user may reach, whatever the person consented to.
//!
//! - A **group** may have a default ceiling; a user in several groups that have one gets
//!   the **lowest** of them.
//! - A **user** may have an admin's **override**, which wins over every group, up or down.
//! - A user with neither has the configured default (`[policy] default_ceiling`).
//!
//! The per-call decision reads the ceiling from a [`CeilingView`]: an in-memory snapshot
//! (user → effective ceiling) swapped whole, re-read from the database every second by the
//! proxy and at once after a change made through the view, so lowering a ceiling applies
//! to the next call and the next listing without a query per call. Group memberships are
//! the identity provider's (`idp_user_groups`), read through its API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;

use serde::Serialize;
use warrant_idp::IdpError;
use warrant_idp::db::Db;
use warrant_idp::on_pool;
use warrant_idp::users::Users;

use crate::token::Risk;

/// What a ceiling is set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    User,
    Group,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(Self::User),
            "group" => Some(Self::Group),
            _ => None,
        }
    }
}

/// A ceiling as stored: on whom, which class, who set it and when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CeilingEntry {
    pub kind: SubjectKind,
    /// The user's id, or the group's name.
    pub subject: String,
    pub ceiling: Risk,
    /// The admin's user id.
    pub set_by: String,
    pub set_at: i64,
}

/// One change to a ceiling: set to a class, or cleared (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CeilingChange {
    pub kind: SubjectKind,
    pub subject: String,
    pub ceiling: Option<Risk>,
    pub set_by: String,
    pub set_at: i64,
}

/// What can go wrong reading or writing ceilings.
#[derive(Debug, thiserror::Error)]
pub enum CeilingError {
    #[error("ceiling storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("cannot read group memberships: {0}")]
    Groups(#[from] IdpError),
    #[error("cannot read the users' emails: {0}")]
    People(IdpError),
    #[error("the stored ceiling of {kind} {subject:?} is {value:?}, not a risk class")]
    Corrupt {
        kind: &'static str,
        subject: String,
        value: String,
    },
    #[error("{0:?} is not a usable group name")]
    BadGroup(String),
}

/// For pages: storage failures stay failures, an unusable name is the person's to fix.
impl From<CeilingError> for IdpError {
    fn from(e: CeilingError) -> Self {
        match e {
            CeilingError::Storage(e) => Self::Storage(e),
            CeilingError::Groups(e) | CeilingError::People(e) => e,
            CeilingError::BadGroup(name) => Self::Invalid(format!(
                "{name:?} is not a usable group name (at most 100 characters, no control \
                 characters)."
            )),
            e @ CeilingError::Corrupt { .. } => Self::Storage(sqlx::Error::Decode(Box::new(e))),
        }
    }
}

/// Whether `name` can be a group (what the admin's group form accepts).
pub fn usable_group(name: &str) -> bool {
    !name.trim().is_empty() && name.len() <= 100 && !name.chars().any(char::is_control)
}

/// The ceiling store.
#[derive(Debug, Clone)]
pub struct Ceilings {
    db: Db,
}

#[derive(sqlx::FromRow)]
struct Row {
    subject_kind: String,
    subject: String,
    ceiling: Option<String>,
    set_by: String,
    set_at: i64,
}

impl Row {
    fn change(self) -> Result<CeilingChange, CeilingError> {
        let corrupt = |kind: &'static str, value: &str| CeilingError::Corrupt {
            kind,
            subject: self.subject.clone(),
            value: value.to_owned(),
        };
        let kind = SubjectKind::parse(&self.subject_kind)
            .ok_or_else(|| corrupt("subject", &self.subject_kind))?;
        let ceiling = match &self.ceiling {
            None => None,
            Some(text) => Some(Risk::parse(text).ok_or_else(|| corrupt(kind.as_str(), text))?),
        };
        Ok(CeilingChange {
            kind,
            subject: self.subject,
            ceiling,
            set_by: self.set_by,
            set_at: self.set_at,
        })
    }

    fn entry(self) -> Result<CeilingEntry, CeilingError> {
        let change = self.change()?;
        let Some(ceiling) = change.ceiling else {
            return Err(CeilingError::Corrupt {
                kind: change.kind.as_str(),
                subject: change.subject,
                value: "NULL".into(),
            });
        };
        Ok(CeilingEntry {
            kind: change.kind,
            subject: change.subject,
            ceiling,
            set_by: change.set_by,
            set_at: change.set_at,
        })
    }
}

impl Ceilings {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Every ceiling set, users then groups, by subject.
    pub async fn all(&self) -> Result<Vec<CeilingEntry>, CeilingError> {
        let sql = "SELECT subject_kind, subject, ceiling, set_by, set_at FROM consent_ceilings \
                   ORDER BY subject_kind DESC, subject";
        let rows: Vec<Row> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).fetch_all(pool).await?
        });
        rows.into_iter().map(Row::entry).collect()
    }

    /// The ceiling set on one subject, if any.
    pub async fn get(
        &self,
        kind: SubjectKind,
        subject: &str,
    ) -> Result<Option<CeilingEntry>, CeilingError> {
        let sql = "SELECT subject_kind, subject, ceiling, set_by, set_at FROM consent_ceilings \
                   WHERE subject_kind = $1 AND subject = $2";
        let row: Option<Row> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(kind.as_str()).bind(subject).fetch_optional(pool).await?
        });
        row.map(Row::entry).transpose()
    }

    /// Sets (`Some`) or clears (`None`) the ceiling of a subject, and records the change
    /// with who made it and when, in one transaction.
    pub async fn set(
        &self,
        kind: SubjectKind,
        subject: &str,
        ceiling: Option<Risk>,
        by: &str,
        now: i64,
    ) -> Result<(), CeilingError> {
        if kind == SubjectKind::Group && !usable_group(subject) {
            return Err(CeilingError::BadGroup(subject.to_owned()));
        }
        let upsert = "INSERT INTO consent_ceilings (subject_kind, subject, ceiling, set_by, set_at) \
                      VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject_kind, subject) DO UPDATE \
                      SET ceiling = excluded.ceiling, set_by = excluded.set_by, \
                      set_at = excluded.set_at";
        let delete = "DELETE FROM consent_ceilings WHERE subject_kind = $1 AND subject = $2";
        let record = "INSERT INTO consent_ceiling_changes (id, subject_kind, subject, ceiling, \
                      set_by, set_at) VALUES ($1, $2, $3, $4, $5, $6)";
        let id = uuid::Uuid::now_v7().to_string();
        let name = ceiling.map(Risk::name);
        on_pool!(&self.db, pool => {
            let mut tx = warrant_idp::db::begin_write(pool).await?;
            match name {
                Some(name) => sqlx::query(upsert)
                    .bind(kind.as_str()).bind(subject).bind(name).bind(by).bind(now)
                    .execute(&mut *tx).await?,
                None => sqlx::query(delete)
                    .bind(kind.as_str()).bind(subject)
                    .execute(&mut *tx).await?,
            };
            sqlx::query(record)
                .bind(&id).bind(kind.as_str()).bind(subject).bind(name).bind(by).bind(now)
                .execute(&mut *tx).await?;
            tx.commit().await?;
        });
        tracing::info!(
            kind = kind.as_str(),
            subject,
            ceiling = name.unwrap_or("(cleared)"),
            by,
            "ceiling changed"
        );
        Ok(())
    }

    /// The latest changes to one subject's ceiling, newest first.
    pub async fn history(
        &self,
        kind: SubjectKind,
        subject: &str,
        limit: i64,
    ) -> Result<Vec<CeilingChange>, CeilingError> {
        let sql = "SELECT subject_kind, subject, ceiling, set_by, set_at \
                   FROM consent_ceiling_changes WHERE subject_kind = $1 AND subject = $2 \
                   ORDER BY set_at DESC, id DESC LIMIT $3";
        let rows: Vec<Row> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(kind.as_str()).bind(subject).bind(limit)
                .fetch_all(pool).await?
        });
        rows.into_iter().map(Row::change).collect()
    }
}

/// Where a user's effective ceiling comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "group")]
pub enum Source {
    /// The admin's override for this user.
    Override,
    /// The lowest default among the user's groups: this group's.
    Group(String),
    /// Neither: the configured default.
    Default,
}

/// A user's ceiling and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub ceiling: Risk,
    pub source: Source,
}

/// What the view holds: everything the per-call lookup needs, nothing to query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Snapshot {
    /// User id → the admin's override.
    overrides: HashMap<String, Risk>,
    /// Group → its default ceiling.
    groups: BTreeMap<String, Risk>,
    /// User id → the lowest ceiling among their groups that have one, and that group.
    from_groups: HashMap<String, (Risk, String)>,
}

impl Snapshot {
    fn build(entries: Vec<CeilingEntry>, members: &BTreeMap<String, Vec<String>>) -> Self {
        let mut snapshot = Self::default();
        for entry in entries {
            match entry.kind {
                SubjectKind::User => {
                    snapshot.overrides.insert(entry.subject, entry.ceiling);
                }
                SubjectKind::Group => {
                    snapshot.groups.insert(entry.subject, entry.ceiling);
                }
            }
        }
        // Groups in name order; only a strictly lower one replaces: ties name the first.
        for (group, ceiling) in &snapshot.groups {
            for user in members.get(group).into_iter().flatten() {
                let lower = snapshot
                    .from_groups
                    .get(user)
                    .is_none_or(|(current, _)| ceiling < current);
                if lower {
                    snapshot
                        .from_groups
                        .insert(user.clone(), (*ceiling, group.clone()));
                }
            }
        }
        snapshot
    }

    fn effective(&self, user: &str, default: Risk) -> Effective {
        if let Some(ceiling) = self.overrides.get(user) {
            return Effective {
                ceiling: *ceiling,
                source: Source::Override,
            };
        }
        if let Some((ceiling, group)) = self.from_groups.get(user) {
            return Effective {
                ceiling: *ceiling,
                source: Source::Group(group.clone()),
            };
        }
        Effective {
            ceiling: default,
            source: Source::Default,
        }
    }

    /// The users whose ceiling differs between `self` and `next`: only users with an
    /// override or a group default in either can differ (everyone else has `default`).
    fn affected(&self, next: &Self, default: Risk) -> BTreeSet<String> {
        self.overrides
            .keys()
            .chain(next.overrides.keys())
            .chain(self.from_groups.keys())
            .chain(next.from_groups.keys())
            .filter(|user| self.ceiling(user, default) != next.ceiling(user, default))
            .cloned()
            .collect()
    }

    fn ceiling(&self, user: &str, default: Risk) -> Risk {
        self.overrides
            .get(user)
            .or_else(|| self.from_groups.get(user).map(|(c, _)| c))
            .copied()
            .unwrap_or(default)
    }
}

/// How many refreshes' affected users a slow subscriber may fall behind by before it is
/// told it lagged (and then treats everyone as affected).
const AFFECTED_BACKLOG: usize = 64;

/// Every user's live ceiling, in memory (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct CeilingView {
    inner: Arc<ViewInner>,
}

struct ViewInner {
    store: Ceilings,
    users: Users,
    default: Risk,
    /// Read on every call: a load, no lock (written by the one refresh at a time).
    snapshot: ArcSwap<Snapshot>,
    /// User id → email: refusals name the person by email (read with the ceilings, so
    /// the per-call path has no query).
    emails: ArcSwap<HashMap<String, Arc<str>>>,
    /// Refreshes run one at a time, so a slow one never overwrites a newer one.
    refreshing: tokio::sync::Mutex<()>,
    /// Counts the refreshes that changed something.
    changes: tokio::sync::watch::Sender<u64>,
    /// The users whose ceiling a refresh changed, per refresh that changed one.
    affected: tokio::sync::broadcast::Sender<Arc<BTreeSet<String>>>,
}

impl std::fmt::Debug for CeilingView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CeilingView")
            .field("default", &self.inner.default)
            .finish_non_exhaustive()
    }
}

impl CeilingView {
    /// Reads every ceiling (and the members of every group that has one).
    pub async fn load(store: Ceilings, users: Users, default: Risk) -> Result<Self, CeilingError> {
        let view = Self {
            inner: Arc::new(ViewInner {
                store,
                users,
                default,
                snapshot: ArcSwap::default(),
                emails: ArcSwap::default(),
                refreshing: tokio::sync::Mutex::new(()),
                changes: tokio::sync::watch::channel(0).0,
                affected: tokio::sync::broadcast::channel(AFFECTED_BACKLOG).0,
            }),
        };
        view.refresh().await?;
        Ok(view)
    }

    /// Re-reads the ceilings and memberships; returns whether any user's ceiling (or a
    /// group's default) changed, in which case subscribers are told.
    pub async fn refresh(&self) -> Result<bool, CeilingError> {
        let _one_at_a_time = self.inner.refreshing.lock().await;
        let entries = self.inner.store.all().await?;
        let groups: Vec<String> = entries
            .iter()
            .filter(|e| e.kind == SubjectKind::Group)
            .map(|e| e.subject.clone())
            .collect();
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if !groups.is_empty() {
            for (user, group) in self.inner.users.members_of(&groups).await? {
                members.entry(group).or_default().push(user);
            }
        }
        let fresh = Snapshot::build(entries, &members);
        self.refresh_emails().await?;
        // Refreshes run one at a time: nothing else writes between the load and the store.
        let affected = {
            let current = self.inner.snapshot.load();
            if **current == fresh {
                None
            } else {
                let affected = current.affected(&fresh, self.inner.default);
                self.inner.snapshot.store(Arc::new(fresh));
                Some(affected)
            }
        };
        let Some(affected) = affected else {
            return Ok(false);
        };
        self.inner.changes.send_modify(|n| *n += 1);
        if !affected.is_empty() {
            // Nobody listening is fine: the next listing is decided with the new view.
            let _ = self.inner.affected.send(Arc::new(affected));
        }
        Ok(true)
    }

    /// Re-reads every user's email; an unchanged one keeps its shared copy.
    async fn refresh_emails(&self) -> Result<(), CeilingError> {
        let rows = self
            .inner
            .users
            .emails()
            .await
            .map_err(CeilingError::People)?;
        let current = self.emails();
        let unchanged = rows.len() == current.len()
            && rows
                .iter()
                .all(|(id, email)| current.get(id).is_some_and(|e| **e == **email));
        if unchanged {
            return Ok(());
        }
        let fresh: HashMap<String, Arc<str>> = rows
            .into_iter()
            .map(|(id, email)| {
                let shared = match current.get(&id) {
                    Some(e) if **e == *email => Arc::clone(e),
                    _ => Arc::from(email),
                };
                (id, shared)
            })
            .collect();
        self.inner.emails.store(Arc::new(fresh));
        Ok(())
    }

    fn emails(&self) -> Arc<HashMap<String, Arc<str>>> {
        self.inner.emails.load_full()
    }

    /// The user's email, to name them in a refusal (no I/O; `None` for a user the view
    /// has not read yet).
    pub fn person(&self, user: &str) -> Option<Arc<str>> {
        self.inner.emails.load().get(user).cloned()
    }

    /// The user's live ceiling (the per-call lookup: no I/O).
    pub fn ceiling(&self, user: &str) -> Risk {
        let snapshot = self.inner.snapshot.load();
        snapshot.ceiling(user, self.inner.default)
    }

    /// The user's live ceiling and where it comes from.
    pub fn effective(&self, user: &str) -> Effective {
        let snapshot = self.inner.snapshot.load();
        snapshot.effective(user, self.inner.default)
    }

    /// The ceiling of users with neither an override nor a group default.
    pub fn default_ceiling(&self) -> Risk {
        self.inner.default
    }

    /// The groups that have a default ceiling, as last read.
    pub fn group_ceilings(&self) -> BTreeMap<String, Risk> {
        let snapshot = self.inner.snapshot.load();
        snapshot.groups.clone()
    }

    /// The store behind the view (history, entries with who set them).
    pub fn store(&self) -> &Ceilings {
        &self.inner.store
    }

    /// A receiver that sees a new value whenever a refresh changed something.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// A receiver of the users whose live ceiling changed, one set per refresh that
    /// changed any (a group default without members changes nobody's). A receiver that
    /// lags behind gets `RecvError::Lagged` and should treat everyone as affected.
    pub fn subscribe_affected(&self) -> tokio::sync::broadcast::Receiver<Arc<BTreeSet<String>>> {
        self.inner.affected.subscribe()
    }

    /// Sets or clears a user's override, effective at once in this process (other
    /// replicas read it within their refresh period).
    pub async fn set_user(
        &self,
        user: &str,
        ceiling: Option<Risk>,
        by: &str,
        now: i64,
    ) -> Result<(), CeilingError> {
        self.inner
            .store
            .set(SubjectKind::User, user, ceiling, by, now)
            .await?;
        self.refresh().await.map(drop)
    }

    /// Sets or clears a group's default ceiling, effective at once in this process.
    pub async fn set_group(
        &self,
        group: &str,
        ceiling: Option<Risk>,
        by: &str,
        now: i64,
    ) -> Result<(), CeilingError> {
        self.inner
            .store
            .set(SubjectKind::Group, group, ceiling, by, now)
            .await?;
        self.refresh().await.map(drop)
    }
}

#[cfg(test)]
#[path = "ceilings_tests.rs"]
mod tests;
