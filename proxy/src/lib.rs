//! # warrant-proxy — the data plane and the `warrant` binary
//!
//! The policy enforcement point: the `/mcp` endpoint clients talk to, the connections
//! to upstream MCP servers and their supervision, routing of every request to the right
//! upstream, and (with the consent issue) the per-call enforcement and credential
//! injection. It also wires the whole program: `warrant serve`, `check`, `import`,
//! `demo-server`.
//!
//! Inside, the data plane (`mcp`, `upstream`) never imports `ui`; only the composition
//! (`app`, `cli`) wires pages in.

pub mod app;
pub mod cli;
pub mod config;
pub mod forwarded;
pub mod mcp;
pub mod secret_key;
pub mod store;
