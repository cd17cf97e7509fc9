//! OIDC federation (authorization code + PKCE, `state`, `nonce`, ID-token validation,
//! claim mapping, just-in-time provisioning, RP-initiated logout). To be built.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::IdpConfig;
use crate::error::IdpError;

/// The configured OIDC providers.
#[derive(Debug, Clone)]
pub struct Federation {
    config: Arc<IdpConfig>,
    #[allow(dead_code)] // used once the flows land
    clock: Arc<dyn Clock>,
}

impl Federation {
    pub fn new(config: Arc<IdpConfig>, clock: Arc<dyn Clock>) -> Result<Self, IdpError> {
        Ok(Self { config, clock })
    }

    /// `(name, display name)` of each provider, in configuration order.
    pub fn providers(&self) -> Vec<(String, String)> {
        self.config
            .oidc
            .iter()
            .map(|p| (p.name.clone(), p.display_name.clone()))
            .collect()
    }
}
