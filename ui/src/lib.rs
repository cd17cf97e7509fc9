//! # warrant-ui — the pages people see
//!
//! Server-rendered pages (askama): sign-in, the consent screen, "My agents", and the
//! admin console (servers, tools and risk, users and ceilings, agents, grants, audit).
//! They arrive with the identity, consent and enforcement issues. Until then the gateway
//! serves no pages, only the MCP endpoint and health probes; this crate states where
//! the pages will live so the dependency direction (`idp <- consent <- ui <- proxy`) is
//! fixed from the start.
