//! The aggregated views the gateway serves from, one per protocol era, with what they
//! are built from: the upstreams, the separator of exposed names, the change channel
//! (its epoch says when an upstream's offer or health changed) and the catalog's
//! decisions (its version says when an admin changed a class). A view is rebuilt only
//! when one of them moved; every request reads the current one (an `Arc`).

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use warrant_consent::catalog::CatalogView;

use super::aggregate::Aggregate;
use crate::locks::Locked;
use crate::protocol::era::Era;
use crate::protocol::error::GatewayError;
use crate::upstream::remote::Upstream;
use crate::upstream::state::{Changes, Health};

/// The views of both eras and what they are built from.
pub(crate) struct Views {
    upstreams: Vec<Arc<Upstream>>,
    separator: String,
    changes: Changes,
    /// Risk classes and quarantine, as admins decided (in memory).
    catalog: CatalogView,
    /// The aggregated view per era (legacy, modern): read on every call, a load without
    /// a lock; replaced (under `rebuild`) when something changed.
    slots: [ArcSwap<Aggregate>; 2],
    /// Held while a view is rebuilt, so that it is rebuilt once.
    rebuild: Mutex<()>,
}

impl Views {
    pub(crate) fn new(
        upstreams: Vec<Arc<Upstream>>,
        separator: String,
        changes: Changes,
        catalog: CatalogView,
    ) -> Self {
        Self {
            upstreams,
            separator,
            changes,
            catalog,
            slots: [ArcSwap::default(), ArcSwap::default()],
            rebuild: Mutex::new(()),
        }
    }

    pub(crate) fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    pub(crate) fn separator(&self) -> &str {
        &self.separator
    }

    pub(crate) fn changes(&self) -> &Changes {
        &self.changes
    }

    pub(crate) fn catalog(&self) -> &CatalogView {
        &self.catalog
    }

    /// The current aggregated view for clients of `era`, rebuilt first if an upstream
    /// or the catalog changed.
    pub(crate) fn current(&self, era: Era) -> Arc<Aggregate> {
        let slot = &self.slots[usize::from(era == Era::Modern)];
        if let Some(view) = self.fresh(slot) {
            return view;
        }
        let _rebuilding = self.rebuild.locked();
        if let Some(view) = self.fresh(slot) {
            return view;
        }
        let catalog = self.catalog.version();
        let mut fresh = Aggregate::build(
            self.changes.epoch(),
            era,
            &self.upstreams,
            &self.separator,
            &self.catalog.current(),
        );
        fresh.catalog_version = catalog;
        let fresh = Arc::new(fresh);
        slot.store(fresh.clone());
        fresh
    }

    /// The view in `slot`, if nothing changed since it was built.
    fn fresh(&self, slot: &ArcSwap<Aggregate>) -> Option<Arc<Aggregate>> {
        let (epoch, catalog) = (self.changes.epoch(), self.catalog.version());
        let view = slot.load_full();
        (view.epoch == epoch && view.catalog_version == catalog).then_some(view)
    }

    /// Lets lazy upstreams start and starting ones finish before a list is answered.
    pub(crate) async fn settle(&self, era: Era) {
        for upstream in &self.upstreams {
            if matches!(upstream.lane(era).health(), Health::Idle | Health::Starting) {
                let _ = upstream.ready(era).await;
            }
        }
    }

    /// The view of `era`; when `found` says it lacks what a request names, first lets
    /// the upstreams of that era start (a lane no client of the era has used yet).
    pub(crate) async fn settled(
        &self,
        era: Era,
        found: impl Fn(&Aggregate) -> bool,
    ) -> Arc<Aggregate> {
        let view = self.current(era);
        if found(&view) {
            return view;
        }
        self.settle(era).await;
        self.current(era)
    }

    /// Why a name that routes nowhere is unknown: maybe its upstream is down.
    pub(crate) fn unknown(&self, name: &str, not_found: GatewayError) -> GatewayError {
        for upstream in &self.upstreams {
            let prefix = &upstream.config.prefix;
            let owns = !prefix.is_empty()
                && name
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with(self.separator.as_str()));
            if owns && let Health::Down(reason) = upstream.health() {
                return GatewayError::UpstreamUnavailable {
                    upstream: upstream.name().to_owned(),
                    reason,
                };
            }
        }
        not_found
    }
}
