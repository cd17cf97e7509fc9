//! The catalog as the proxy needs it on every request, without asking the database:
//! an in-memory [`CatalogSnapshot`] of what admins decided (approved definition hashes
//! of tools, prompts and resource templates, reviewed classes, trusted upstreams),
//! swapped whole when it changes.
//!
//! [`CatalogView`] re-reads it after every catalog write made through it, and the
//! binary refreshes it every second so that another replica's admin changes apply
//! within that second (like the revocation set). Whoever builds listings subscribes to
//! it ([`CatalogView::subscribe`]) and rebuilds when it changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::definition::{ToolRecord, effective_risk};
use super::entries::{EntryKind, EntryRecord, EntryTransition};
use super::{Catalog, CatalogError};
use crate::token::Risk;

/// What an admin decided about one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The approved definition's hash (the first one seen, or the one an admin
    /// approved since); `None` for a tool recorded before hashes existed.
    pub approved_hash: Option<String>,
    /// The class an admin set on review.
    pub reviewed: Option<Risk>,
}

/// Everything the proxy decides tools with, as of one read of the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogSnapshot {
    tools: HashMap<String, HashMap<String, Decided>>,
    trusted: HashSet<String>,
    /// Per server, the approved hash of each prompt and resource template.
    entries: HashMap<String, HashMap<(EntryKind, String), String>>,
}

/// How the catalog classifies a tool as an upstream offers it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// The class calls are decided with.
    pub risk: Risk,
    /// Its definition differs from the approved one: not offered, calls refused.
    pub quarantined: bool,
}

impl CatalogSnapshot {
    /// A snapshot from its parts (tests, and [`Catalog::snapshot`]).
    pub fn new(
        tools: impl IntoIterator<Item = (String, String, Decided)>,
        trusted: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut by_server: HashMap<String, HashMap<String, Decided>> = HashMap::new();
        for (server, tool, decided) in tools {
            by_server.entry(server).or_default().insert(tool, decided);
        }
        Self {
            tools: by_server,
            trusted: trusted.into_iter().collect(),
            entries: HashMap::new(),
        }
    }

    /// With the approved hashes of prompts and resource templates:
    /// `(server, kind, name, approved hash)`.
    pub fn with_entries(
        mut self,
        entries: impl IntoIterator<Item = (String, EntryKind, String, String)>,
    ) -> Self {
        for (server, kind, name, hash) in entries {
            self.entries
                .entry(server)
                .or_default()
                .insert((kind, name), hash);
        }
        self
    }

    /// Whether `entry` as `server` offers it now is quarantined: its definition (hashed
    /// here) differs from the approved one — at once, before the catalog has even
    /// recorded the change. An entry never recorded is new: not quarantined.
    pub fn entry_quarantined(&self, server: &str, entry: &EntryRecord) -> bool {
        self.entries
            .get(server)
            .and_then(|e| e.get(&(entry.kind, entry.name.clone())))
            .is_some_and(|approved| *approved != entry.definition_hash())
    }

    /// Whether an admin trusts `server`'s annotations.
    pub fn trusts(&self, server: &str) -> bool {
        self.trusted.contains(server)
    }

    /// What was decided about `server`'s `tool`, if it was ever recorded.
    pub fn decided(&self, server: &str, tool: &str) -> Option<&Decided> {
        self.tools.get(server).and_then(|t| t.get(tool))
    }

    /// Classifies `tool` as `server` offers it now, its definition hashed here: a
    /// definition that differs from the approved one is quarantined at once, before
    /// the catalog has even recorded the change. A tool never recorded is new: not
    /// quarantined, and `critical` unless its upstream's annotations are trusted.
    pub fn classify(&self, server: &str, tool: &ToolRecord) -> Classified {
        let decided = self.decided(server, &tool.name);
        let quarantined = decided
            .and_then(|d| d.approved_hash.as_deref())
            .is_some_and(|approved| approved != tool.definition_hash());
        Classified {
            risk: effective_risk(
                decided.and_then(|d| d.reviewed),
                self.trusts(server),
                tool.suggested_risk(),
            ),
            quarantined,
        }
    }
}

/// The live snapshot (see the module documentation). Cheap to clone.
#[derive(Debug, Clone)]
pub struct CatalogView {
    catalog: Catalog,
    snapshot: Arc<watch::Sender<Arc<CatalogSnapshot>>>,
    /// Counts snapshot changes (bumped after the new snapshot is in place).
    version: Arc<AtomicU64>,
    /// Refreshes run one at a time: one that read the database before a write must not
    /// replace the snapshot of one that read it after (an admin's change would be lost
    /// until the next refresh).
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl CatalogView {
    /// Reads the snapshot from the database.
    pub async fn load(catalog: Catalog) -> Result<Self, CatalogError> {
        let snapshot = catalog.snapshot().await?;
        Ok(Self {
            catalog,
            snapshot: Arc::new(watch::channel(Arc::new(snapshot)).0),
            version: Arc::new(AtomicU64::new(1)),
            refreshing: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The store behind the view. Writes through it are seen by the next
    /// [`Self::refresh`]; the admin operations of the view refresh at once.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The current snapshot (cheap: an `Arc`).
    pub fn current(&self) -> Arc<CatalogSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// How many times the snapshot changed: read it before [`Self::current`], and a
    /// view built from that snapshot is current while the version has not moved.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Told of every snapshot that differs from the one before.
    pub fn subscribe(&self) -> watch::Receiver<Arc<CatalogSnapshot>> {
        self.snapshot.subscribe()
    }

    /// Re-reads the snapshot; true when it changed (subscribers are told).
    pub async fn refresh(&self) -> Result<bool, CatalogError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let fresh = self.catalog.snapshot().await?;
        let version = &self.version;
        Ok(self.snapshot.send_if_modified(|current| {
            if **current == fresh {
                false
            } else {
                *current = Arc::new(fresh);
                version.fetch_add(1, Ordering::AcqRel);
                true
            }
        }))
    }

    /// Records an upstream's tool list (see [`Catalog::record`]) and refreshes.
    pub async fn record(
        &self,
        server: &str,
        tools: &[ToolRecord],
        now: i64,
    ) -> Result<Vec<super::Transition>, CatalogError> {
        let transitions = self.catalog.record(server, tools, now).await?;
        self.refresh().await?;
        Ok(transitions)
    }

    /// Records an upstream's prompts or resource templates (see
    /// [`Catalog::record_entries`]) and refreshes.
    pub async fn record_entries(
        &self,
        server: &str,
        kind: EntryKind,
        entries: &[EntryRecord],
        now: i64,
    ) -> Result<Vec<EntryTransition>, CatalogError> {
        let transitions = self
            .catalog
            .record_entries(server, kind, entries, now)
            .await?;
        self.refresh().await?;
        Ok(transitions)
    }

    /// Approves a prompt's or resource template's current definition (see
    /// [`Catalog::approve_entry`]) and refreshes.
    pub async fn approve_entry(
        &self,
        server: &str,
        kind: EntryKind,
        name: &str,
        hash: &str,
        by: &str,
        now: i64,
    ) -> Result<super::Approval, CatalogError> {
        let outcome = self
            .catalog
            .approve_entry(server, kind, name, hash, by, now)
            .await?;
        self.refresh().await?;
        Ok(outcome)
    }

    /// Sets a tool's reviewed class (see [`Catalog::review`]) and refreshes.
    pub async fn review(
        &self,
        server: &str,
        tool: &str,
        risk: Option<Risk>,
        by: &str,
        now: i64,
    ) -> Result<bool, CatalogError> {
        let found = self.catalog.review(server, tool, risk, by, now).await?;
        self.refresh().await?;
        Ok(found)
    }

    /// Approves a tool's current definition (see [`Catalog::approve`]) and refreshes.
    pub async fn approve(
        &self,
        server: &str,
        tool: &str,
        hash: &str,
        by: &str,
        now: i64,
    ) -> Result<super::Approval, CatalogError> {
        let outcome = self.catalog.approve(server, tool, hash, by, now).await?;
        self.refresh().await?;
        Ok(outcome)
    }

    /// Trusts (or stops trusting) an upstream's annotations and refreshes.
    pub async fn set_trusted(
        &self,
        server: &str,
        by: Option<&str>,
        now: i64,
    ) -> Result<(), CatalogError> {
        self.catalog.set_trusted(server, by, now).await?;
        self.refresh().await?;
        Ok(())
    }
}
