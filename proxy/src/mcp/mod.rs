//! Everything MCP: the aggregating server clients talk to ([`gateway`]), the
//! upstream connections behind it ([`upstream`], [`connect`], [`client`], [`sse`]), the
//! Streamable HTTP endpoint ([`http`]) and the built-in demo server ([`demo`]). This is
//! the only module that uses `rmcp` types; see `README.md` beside it for the bridging.

mod aggregate;
pub mod approve;
pub mod auth;
mod bodies;
pub mod budget;
mod catalog;
mod client;
mod connect;
pub mod demo;
mod direct;
pub mod error;
pub mod gateway;
mod handler;
pub mod http;
mod message;
mod park;
mod sessions;
mod sse;
mod upstream;

pub use approve::{ApprovalDesk, Notify};
pub use auth::{Caller, McpAuth};
pub use gateway::{Audience, Gateway, Observer, UpstreamStatus};
pub use upstream::Health;
