//! The server layer: the `/mcp` edge ([`edge`]), the gateway that composes the layers
//! below ([`gateway`]), the MCP methods ([`handler`]), client sessions and parked calls.

pub mod bodies;
pub mod clients;
pub mod edge;
pub mod gateway;
pub mod handler;
pub mod park;
pub mod pipeline;
pub mod relay;
pub mod sessions;
pub mod stage;
