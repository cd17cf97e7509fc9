//! The aggregated view of every ready upstream: tools and prompts renamed
//! `<prefix><separator><name>` (or kept as they are for an empty prefix), resources and
//! templates with their URIs unchanged, and the routes back from each exposed name or
//! URI to the upstream that serves it.
//!
//! There is one view per protocol era (an upstream may offer different things to the
//! clients of each, see `upstream::remote`). A view is rebuilt only when an upstream's
//! offer or health changes (an epoch counter says when); the per-request path reads it
//! through one `Arc`.
//!
//! Tools are classified by the catalog as the view is built ([`CatalogSnapshot`]): each
//! route carries the tool's effective risk class, and a tool whose definition differs
//! from the approved one (a rug pull) is quarantined — left out of the list and of the
//! routes, its name kept apart so that a call gets a clear refusal. Prompts and
//! resource templates are quarantined the same way (see [`super::records`]).

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use warrant_consent::catalog::CatalogSnapshot;
use warrant_consent::token::Risk;

use super::records::{prompt_record, template_record, tool_record};
use crate::protocol::era::Era;
use crate::protocol::error::GatewayError;
use crate::upstream::remote::Upstream;

/// Where an exposed name leads.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) upstream: Arc<Upstream>,
    /// The upstream's name (shared: a call's decision names it without a copy).
    pub(crate) server: Arc<str>,
    /// The name the upstream knows it by.
    pub(crate) original: Arc<str>,
    /// The tool declares no `x-mcp-header` parameters (whose `Mcp-Param-*` headers rmcp
    /// validates), so the direct path may carry its calls.
    pub(crate) plain: bool,
    /// The risk class calls are decided with: the catalog's effective class (prompts:
    /// `low`).
    pub(crate) risk: Risk,
}

/// A tool left out because it is quarantined: its upstream and its name there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Quarantined {
    pub(crate) upstream: String,
    pub(crate) original: String,
}

#[derive(Default)]
pub(crate) struct Aggregate {
    pub(crate) epoch: u64,
    /// The catalog version it was classified with.
    pub(crate) catalog_version: u64,
    pub(crate) tools: Vec<Tool>,
    pub(crate) prompts: Vec<Prompt>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) templates: Vec<ResourceTemplate>,
    tool_routes: HashMap<String, Route>,
    /// Exposed names of quarantined tools.
    quarantined: HashMap<String, Quarantined>,
    prompt_routes: HashMap<String, Route>,
    /// Exposed names of quarantined prompts.
    quarantined_prompts: HashMap<String, Quarantined>,
    /// Quarantined resource templates (`original`: the uriTemplate).
    quarantined_templates: Vec<(UriTemplate, Quarantined)>,
    resource_routes: HashMap<String, Arc<Upstream>>,
    template_routes: Vec<(UriTemplate, Arc<Upstream>)>,
    /// Names two upstreams both offer: the later upstream's copy is left out.
    pub(crate) collisions: Vec<String>,
}

/// Joins a prefix and a name; an empty prefix leaves the name as it is.
pub(crate) fn exposed_name(prefix: &str, separator: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}{separator}{name}")
    }
}

impl Aggregate {
    /// The view clients of `era` get.
    pub(crate) fn build(
        epoch: u64,
        era: Era,
        upstreams: &[Arc<Upstream>],
        separator: &str,
        catalog: &CatalogSnapshot,
    ) -> Self {
        let mut view = Self {
            epoch,
            ..Self::default()
        };
        for upstream in upstreams {
            let offer = upstream.offer(era);
            let server: Arc<str> = upstream.name().into();
            let prefix = upstream.config.prefix.as_str();
            for tool in &offer.tools {
                let name = exposed_name(prefix, separator, &tool.name);
                if view.tool_routes.contains_key(&name) || view.quarantined.contains_key(&name) {
                    view.collide("tool", &name, upstream);
                    continue;
                }
                let classified = catalog.classify(upstream.name(), &tool_record(tool));
                if classified.quarantined {
                    view.quarantined.insert(
                        name,
                        Quarantined {
                            upstream: upstream.name().to_owned(),
                            original: tool.name.to_string(),
                        },
                    );
                    continue;
                }
                let mut exposed = tool.clone();
                exposed.name = name.clone().into();
                view.tools.push(exposed);
                let plain = !serde_json::to_string(&tool.input_schema)
                    .is_ok_and(|schema| schema.contains("x-mcp-header"));
                let risk = classified.risk;
                view.tool_routes.insert(
                    name,
                    Route {
                        upstream: upstream.clone(),
                        server: server.clone(),
                        original: tool.name.as_ref().into(),
                        plain,
                        risk,
                    },
                );
            }
            for prompt in &offer.prompts {
                let name = exposed_name(prefix, separator, &prompt.name);
                if view.prompt_routes.contains_key(&name)
                    || view.quarantined_prompts.contains_key(&name)
                {
                    view.collide("prompt", &name, upstream);
                    continue;
                }
                if catalog.entry_quarantined(upstream.name(), &prompt_record(prompt)) {
                    let quarantined = Quarantined {
                        upstream: upstream.name().to_owned(),
                        original: prompt.name.clone(),
                    };
                    view.quarantined_prompts.insert(name, quarantined);
                    continue;
                }
                let mut exposed = prompt.clone();
                exposed.name = name.clone();
                view.prompts.push(exposed);
                view.prompt_routes.insert(
                    name,
                    Route {
                        upstream: upstream.clone(),
                        server: server.clone(),
                        original: prompt.name.as_str().into(),
                        plain: true,
                        risk: Risk::Low,
                    },
                );
            }
            for resource in &offer.resources {
                if view.resource_routes.contains_key(&resource.uri) {
                    view.collide("resource", &resource.uri, upstream);
                    continue;
                }
                view.resources.push(resource.clone());
                view.resource_routes
                    .insert(resource.uri.clone(), upstream.clone());
            }
            for template in &offer.templates {
                let parsed = UriTemplate::parse(&template.uri_template);
                if catalog.entry_quarantined(upstream.name(), &template_record(template)) {
                    let quarantined = Quarantined {
                        upstream: upstream.name().to_owned(),
                        original: template.uri_template.clone(),
                    };
                    view.quarantined_templates.push((parsed, quarantined));
                    continue;
                }
                view.templates.push(template.clone());
                view.template_routes.push((parsed, upstream.clone()));
            }
        }
        view
    }

    fn collide(&mut self, what: &str, name: &str, upstream: &Upstream) {
        tracing::error!(
            upstream = %upstream.name(),
            name,
            "{what} name collides with another upstream's; left out (set a distinct `prefix`)"
        );
        self.collisions
            .push(format!("{what} {name:?} of upstream {:?}", upstream.name()));
    }

    pub(crate) fn tool(&self, name: &str) -> Option<&Route> {
        self.tool_routes.get(name)
    }

    /// The quarantined tool an exposed name stands for, if it is one.
    pub(crate) fn quarantined(&self, name: &str) -> Option<&Quarantined> {
        self.quarantined.get(name)
    }

    /// Whether `name` is a tool of this view, offered or quarantined.
    pub(crate) fn knows_tool(&self, name: &str) -> bool {
        self.tool_routes.contains_key(name) || self.quarantined.contains_key(name)
    }

    pub(crate) fn prompt(&self, name: &str) -> Option<&Route> {
        self.prompt_routes.get(name)
    }

    /// The quarantined prompt an exposed name stands for, if it is one.
    pub(crate) fn quarantined_prompt(&self, name: &str) -> Option<&Quarantined> {
        self.quarantined_prompts.get(name)
    }

    /// Refuses a URI that no listed resource and no offered template serves, but a
    /// quarantined template matches (else an upstream could still be guessed for it).
    pub(crate) fn template_quarantine(&self, uri: &str) -> Result<(), GatewayError> {
        if self.resource(uri).is_some() {
            return Ok(());
        }
        match self
            .quarantined_templates
            .iter()
            .find(|(t, _)| t.matches(uri))
        {
            Some((_, q)) => Err(GatewayError::EntryQuarantined {
                kind: "resource template",
                name: q.original.clone(),
                upstream: q.upstream.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The upstream serving a resource URI: a listed resource, else a matching template.
    pub(crate) fn resource(&self, uri: &str) -> Option<&Arc<Upstream>> {
        self.resource_routes.get(uri).or_else(|| {
            self.template_routes
                .iter()
                .find(|(template, _)| template.matches(uri))
                .map(|(_, upstream)| upstream)
        })
    }

    /// The upstream that declared a resource template (for completions).
    pub(crate) fn template(&self, uri_template: &str) -> Option<&Arc<Upstream>> {
        self.templates
            .iter()
            .zip(&self.template_routes)
            .find(|(t, _)| t.uri_template == uri_template)
            .map(|(_, (_, upstream))| upstream)
    }
}

/// One page of a list, and the cursor of the next page. The cursor is the offset of
/// the next item, as text; anything else is refused.
pub(crate) fn page<T: Clone>(
    items: &[T],
    cursor: Option<&str>,
    size: usize,
) -> Result<(Vec<T>, Option<String>), String> {
    let start = match cursor {
        None => 0,
        Some(c) => match c.parse::<usize>() {
            Ok(n) if n <= items.len() => n,
            _ => return Err(c.to_owned()),
        },
    };
    let end = start.saturating_add(size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[start..end].to_vec(), next))
}

/// A URI template (RFC 6570), enough to route a URI: literals must match exactly, a
/// `{var}` matches one path segment, `{+var}` / `{#var}` / `{/var}` and friends match
/// any run of characters.
#[derive(Debug, Clone)]
pub(crate) struct UriTemplate(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Segment,
    Any,
}

impl UriTemplate {
    pub(crate) fn parse(template: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                parts.push(Part::Literal(rest[open..].to_owned()));
                rest = "";
                break;
            };
            let expr = &rest[open + 1..open + close];
            let any = expr.starts_with(['+', '#', '/', '?', '&', ';', '.']) || expr.ends_with('*');
            parts.push(if any { Part::Any } else { Part::Segment });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Self(parts)
    }

    pub(crate) fn matches(&self, uri: &str) -> bool {
        matches_parts(&self.0, uri)
    }
}

fn matches_parts(parts: &[Part], uri: &str) -> bool {
    match parts.split_first() {
        None => uri.is_empty(),
        Some((Part::Literal(lit), rest)) => uri
            .strip_prefix(lit.as_str())
            .is_some_and(|u| matches_parts(rest, u)),
        Some((var, rest)) => {
            // Try every split point: a variable takes at least one character.
            let limit = match var {
                Part::Segment => uri.find(['/', '?', '#']).unwrap_or(uri.len()),
                _ => uri.len(),
            };
            (1..=limit)
                .filter(|i| uri.is_char_boundary(*i))
                .any(|i| matches_parts(rest, &uri[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_join_with_the_separator_unless_the_prefix_is_empty() {
        assert_eq!(exposed_name("gh", "__", "create_issue"), "gh__create_issue");
        assert_eq!(exposed_name("", "__", "create_issue"), "create_issue");
        assert_eq!(exposed_name("a", ".", "b"), "a.b");
    }

    #[test]
    fn pages_walk_the_whole_list() {
        let items: Vec<u32> = (0..5).collect();
        let (first, next) = page(&items, None, 2).expect("page");
        assert_eq!((first, next.as_deref()), (vec![0, 1], Some("2")));
        let (second, next) = page(&items, Some("2"), 2).expect("page");
        assert_eq!((second, next.as_deref()), (vec![2, 3], Some("4")));
        let (last, next) = page(&items, Some("4"), 2).expect("page");
        assert_eq!((last, next), (vec![4], None));
        assert_eq!(page(&items, Some("9"), 2).expect_err("past the end"), "9");
        assert_eq!(page(&items, Some("x"), 2).expect_err("not a cursor"), "x");
        let empty: Vec<u32> = Vec::new();
        assert_eq!(page(&empty, None, 2).expect("page"), (vec![], None));
    }

    #[test]
    fn uri_templates_route_uris() {
        let t = UriTemplate::parse("test://template/{id}/data");
        assert!(t.matches("test://template/42/data"));
        assert!(!t.matches("test://template/4/2/data"));
        assert!(!t.matches("test://template//data"));
        assert!(!t.matches("test://other/42/data"));
        let any = UriTemplate::parse("file://{+path}");
        assert!(any.matches("file:///etc/hosts"));
        let tail = UriTemplate::parse("demo://resource/static/document/{name}");
        assert!(tail.matches("demo://resource/static/document/a.md"));
        assert!(!tail.matches("demo://resource/static/document/"));
    }
}
