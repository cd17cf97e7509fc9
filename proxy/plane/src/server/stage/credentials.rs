//! Stage 5, credentials: what the upstream is given to know who calls. Today every
//! upstream gets the headers (or environment) of its configuration, resolved at start
//! and the same for every person (`upstream::target`, `upstream::connect`), so this
//! stage adds nothing yet; the vault puts a person's own key or OAuth token here.

use crate::enforce::auth::Authorized;

/// The credentials that go with one call, beyond the upstream's configured ones.
#[derive(Debug, Default)]
pub(crate) struct Credentials {}

/// The credentials for an allowed call (none beyond the configured ones yet; `None`
/// without tokens).
pub(crate) fn for_call(_call: Option<&Authorized>) -> Credentials {
    Credentials::default()
}
