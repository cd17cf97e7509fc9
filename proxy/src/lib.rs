//! # warrant-proxy — the `warrant` binary
//!
//! Composes the program: the data plane (`warrant-plane`: the `/mcp` endpoint, the
//! per-call pipeline, the upstream connections), the pages (`warrant-ui`) and the
//! authorization server (`warrant-consent`), and runs it: `warrant serve`, `check`,
//! `import`, `keys`, `policy`, `token`, `demo-server`.

pub mod app;
pub mod cli;
pub mod secret_key;
pub mod store;
pub mod telemetry;
pub mod upstream_keys;
pub mod vault_keys;

/// The configuration (owned by the data plane, which reads most of it).
pub use warrant_plane::config;
