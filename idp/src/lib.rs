//! # warrant-idp — who the human is
//!
//! This crate answers "which person is behind this request?": users, roles and groups,
//! browser sessions, and the ways a person signs in (OIDC federation, passkeys, email
//! magic links). Those arrive with the identity issue; today the crate holds the
//! foundation every other crate stands on:
//!
//! - [`db::Db`], the database handle (SQLite or PostgreSQL) and the migrations of the
//!   whole program. It lives here because `idp` is the bottom of the dependency chain
//!   (`idp <- consent <- ui <- proxy`); each crate still owns its own tables, named with
//!   its prefix, and other crates reach them only through the owner's API.

pub mod db;
