//! The enforcement layer: who is calling (the access token), what the call may do (the
//! decision: grant, ceiling, constraints), budgets, and holding critical calls for a
//! person's approval. Knows nothing of upstream connections.

pub mod approve;
pub mod audience;
pub mod auth;
pub mod budget;
