//! # warrant-plane — Warrant's data plane
//!
//! The policy enforcement point: the `/mcp` endpoint clients talk to, the stages every
//! request passes, and the connections to the upstream MCP servers behind it. It cannot
//! reach the pages (`warrant-ui` is not a dependency); the `warrant` binary
//! (`warrant-proxy`) composes it with the pages and the authorization server.
//!
//! Layers, each importing only from the layers below it (a test checks it):
//!
//! | layer | modules | job |
//! |---|---|---|
//! | base | `locks` (below all), [`config`], [`forwarded`], [`periodic`] | one rule for poisoned locks; the configuration, the client's address behind a proxy, background work |
//! | protocol | [`protocol`] | protocol eras, JSON-RPC messages, the error vocabulary |
//! | upstream, enforce | [`upstream`], [`enforce`] | connections to upstreams and the direct path; tokens, decisions, budgets, approvals |
//! | view | [`view`] | the aggregated lists of every upstream, per era |
//! | server | [`server`] | the HTTP edge, the MCP handler, client sessions |
//!
//! [`demo`] is the built-in demo upstream (`warrant demo-server`), outside the layers.

pub mod config;
pub mod demo;
pub mod enforce;
pub mod forwarded;
pub(crate) mod locks;
pub mod metrics;
pub mod periodic;
pub mod protocol;
pub mod server;
pub mod upstream;
pub mod view;

pub use enforce::approve::{ApprovalDesk, Notify};
pub use enforce::audience::{Audience, Reclassified};
pub use enforce::auth::{Caller, McpAuth};
pub use server::gateway::{Gateway, UpstreamStatus};
pub use upstream::state::Health;
pub use view::records::Observer;

/// Unit tests count allocations: the system allocator, counted.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// The allocations `f` makes: the fewest of five runs (another test's thread running at
/// the same time can only add to a count).
#[cfg(test)]
pub(crate) fn allocations(mut f: impl FnMut()) -> usize {
    (0..5)
        .map(|_| {
            let region = stats_alloc::Region::new(ALLOCATOR);
            f();
            region.change().allocations
        })
        .min()
        .unwrap_or(0)
}
