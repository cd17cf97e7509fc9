//! The upstream layer: one supervised connection per upstream and protocol era (a
//! [`lane::Lane`]), the gateway as the upstream's client, and the direct data path that
//! forwards a `tools/call` without rmcp.

pub mod asker;
pub mod bridge;
pub mod client;
pub mod connect;
pub mod connections;
pub mod direct;
pub mod direct_wire;
pub mod inflight;
pub mod keyed;
pub mod lane;
pub mod legacy_sse;
pub mod remote;
pub mod session;
pub mod session_pool;
pub mod shared;
pub mod state;
pub mod target;
