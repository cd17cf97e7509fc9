//! The stages of one `tools/call`, each with one job; [`super::pipeline`] runs them in
//! order.

pub mod authenticate;
pub mod credentials;
pub mod decide;
pub mod forward;
pub mod forward_rmcp;
pub mod hold;
pub mod inspect;
pub mod outcome;
pub mod parse;
pub mod record;
