//! What the tool catalog sees of an upstream's offer: its tools, prompts and resource
//! templates as catalog records (from rmcp's types), what the composition is told when
//! an upstream's lists are (re)read, and how a quarantined prompt or template shows.
//!
//! Rug-pull protection for prompts and resource templates works like the tools':
//! the aggregate leaves a quarantined prompt out of `prompts/list` and refuses its
//! `prompts/get` (and completions) with -32020, naming it; a quarantined template is
//! left out of `resources/templates/list`, and a `resources/read` (or subscription) of
//! a URI that only a quarantined template matches is refused the same way. A URI that
//! a listed resource or another, approved template serves is routed as usual.

use std::sync::Arc;

use rmcp::model::{Prompt, ResourceTemplate, Tool};
use warrant_consent::catalog::{CatalogSnapshot, EntryKind, EntryRecord, ToolRecord};

use crate::enforce::audience::Reclassified;
use crate::protocol::era::Era;
use crate::upstream::remote::Upstream;
use crate::upstream::state::Change;

/// What the composition learns about upstreams as it happens: their tools, prompts and
/// resource templates (for the catalog) and their health (for the history). Called
/// from one task, in order.
pub trait Observer: Send + Sync + 'static {
    fn tools(&self, upstream: &str, tools: Vec<ToolRecord>);
    /// The full list of an upstream's prompts, or of its resource templates (`kind`).
    fn entries(&self, upstream: &str, kind: EntryKind, entries: Vec<EntryRecord>);
    fn health(&self, upstream: &str, state: &'static str, reason: Option<String>);
}

/// A tool as the catalog records it.
pub(crate) fn tool_record(tool: &Tool) -> ToolRecord {
    ToolRecord {
        name: tool.name.to_string(),
        title: tool.title.clone(),
        description: tool.description.as_ref().map(|d| d.to_string()),
        annotations: tool
            .annotations
            .as_ref()
            .and_then(|a| serde_json::to_value(a).ok()),
        input_schema: serde_json::Value::Object((*tool.input_schema).clone()),
        output_schema: tool
            .output_schema
            .as_ref()
            .map(|s| serde_json::Value::Object((**s).clone())),
    }
}

/// A prompt as the catalog records it: name, title, description, arguments.
pub(crate) fn prompt_record(prompt: &Prompt) -> EntryRecord {
    EntryRecord::prompt(
        prompt.name.clone(),
        prompt.title.clone(),
        prompt.description.clone(),
        prompt
            .arguments
            .as_ref()
            .and_then(|a| serde_json::to_value(a).ok()),
    )
}

/// A resource template as the catalog records it: uriTemplate, name, title,
/// description, MIME type, annotations.
pub(crate) fn template_record(template: &ResourceTemplate) -> EntryRecord {
    EntryRecord::template(
        template.uri_template.clone(),
        template.name.clone(),
        template.title.clone(),
        template.description.clone(),
        template.mime_type.clone(),
        template
            .annotations
            .as_ref()
            .and_then(|a| serde_json::to_value(a).ok()),
    )
}

/// What clients of either era are offered, once each (the legacy copy of an entry
/// both eras offer), as catalog records.
fn both_eras<T>(
    legacy: &[T],
    modern: &[T],
    key: impl Fn(&T) -> &str,
    record: impl Fn(&T) -> EntryRecord,
) -> Vec<EntryRecord> {
    legacy
        .iter()
        .chain(
            modern
                .iter()
                .filter(|m| !legacy.iter().any(|l| key(l) == key(m))),
        )
        .map(record)
        .collect()
}

/// Tells `observer` about `upstream`'s prompts (after a change of its prompts or its
/// health) and resource templates (after a change of its resources or its health).
/// An empty list (an upstream down, or offering none) records nothing.
pub(crate) fn observe_entries(observer: &impl Observer, upstream: &Upstream, change: Change) {
    let (legacy, modern) = (upstream.offer(Era::Legacy), upstream.offer(Era::Modern));
    if matches!(change, Change::Prompts | Change::Health) {
        let prompts = both_eras(&legacy.prompts, &modern.prompts, |p| &p.name, prompt_record);
        if !prompts.is_empty() {
            observer.entries(upstream.name(), EntryKind::Prompt, prompts);
        }
    }
    if matches!(change, Change::Resources | Change::Health) {
        let templates = both_eras(
            &legacy.templates,
            &modern.templates,
            |t| &t.uri_template,
            template_record,
        );
        if !templates.is_empty() {
            observer.entries(upstream.name(), EntryKind::ResourceTemplate, templates);
        }
    }
}

/// The lists whose clients must hear of a catalog change from `before` to `after`:
/// prompts when a prompt an upstream offers now entered or left quarantine, resources
/// when a resource template did.
pub(crate) fn entry_lists_changed(
    upstreams: &[Arc<Upstream>],
    before: &CatalogSnapshot,
    after: &CatalogSnapshot,
) -> Vec<Change> {
    let differs = |server: &str, record: &EntryRecord| {
        before.entry_quarantined(server, record) != after.entry_quarantined(server, record)
    };
    let offered = |pick: &dyn Fn(&Upstream, Era) -> bool| {
        upstreams.iter().any(|u| {
            [Era::Legacy, Era::Modern]
                .into_iter()
                .any(|era| pick(u, era))
        })
    };
    let mut changes = Vec::new();
    if offered(&|u, era| {
        let offer = u.offer(era);
        offer
            .prompts
            .iter()
            .any(|p| differs(u.name(), &prompt_record(p)))
    }) {
        changes.push(Change::Prompts);
    }
    if offered(&|u, era| {
        let offer = u.offer(era);
        offer
            .templates
            .iter()
            .any(|t| differs(u.name(), &template_record(t)))
    }) {
        changes.push(Change::Resources);
    }
    changes
}

/// The tools upstreams offer now (to clients of either era) that `after` classifies
/// otherwise than `before`.
pub(crate) fn reclassified(
    upstreams: &[Arc<Upstream>],
    before: &CatalogSnapshot,
    after: &CatalogSnapshot,
) -> Vec<Reclassified> {
    let mut changed: Vec<Reclassified> = Vec::new();
    for upstream in upstreams {
        for era in [Era::Legacy, Era::Modern] {
            for tool in &upstream.offer(era).tools {
                let record = tool_record(tool);
                let (was, is) = (
                    before.classify(upstream.name(), &record),
                    after.classify(upstream.name(), &record),
                );
                let known = changed
                    .iter()
                    .any(|c| c.server == upstream.name() && c.tool == record.name);
                if was != is && !known {
                    changed.push(Reclassified {
                        server: upstream.name().to_owned(),
                        tool: record.name,
                        before: was.risk,
                        after: is.risk,
                    });
                }
            }
        }
    }
    changed
}
