//! The identity provider's settings, already checked. The binary reads them from the
//! `[auth]` section of `warrant.toml` (see `docs/configuration.md`) and builds these
//! plain values; nothing here parses files or reads the environment.

use std::time::Duration;

use url::Url;

use crate::secret::SecretString;

/// Everything `idp` needs to run sign-in and sessions.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// The URL people use to reach Warrant (`http://localhost:8080`): base of every link
    /// in mails, OIDC redirect URIs and the WebAuthn origin.
    pub public_url: Url,
    /// Whether cookies carry `Secure` (true unless Warrant serves plain HTTP on loopback).
    pub secure_cookies: bool,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute: Duration,
    /// How long the first-admin setup link printed at start stays valid.
    pub setup_link_ttl: Duration,
    /// OIDC providers, in the order the sign-in page shows them.
    pub oidc: Vec<OidcProviderConfig>,
    /// Email magic links; `None` when no SMTP server is configured.
    pub email: Option<EmailConfig>,
}

impl IdpConfig {
    /// Settings for a gateway reachable at `public_url`, with the defaults of the
    /// configuration reference and no provider or mail server.
    pub fn new(public_url: Url) -> Self {
        let secure_cookies = public_url.scheme() == "https";
        Self {
            public_url,
            secure_cookies,
            session_idle: Duration::from_secs(8 * 3600),
            session_absolute: Duration::from_secs(7 * 24 * 3600),
            setup_link_ttl: Duration::from_secs(15 * 60),
            oidc: Vec::new(),
            email: None,
        }
    }

    /// `public_url` joined with an absolute path (`/auth/oidc/x/callback`).
    pub fn url(&self, path: &str) -> String {
        let base = self.public_url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }
}

/// One OpenID Connect provider (`[auth.oidc.NAME]`).
#[derive(Debug, Clone)]
pub struct OidcProviderConfig {
    /// The table name: used in URLs (`/auth/oidc/NAME/start`) and as the identity source.
    pub name: String,
    /// The button label ("Sign in with …").
    pub display_name: String,
    pub issuer: Url,
    pub client_id: String,
    /// `None` for a public client (PKCE only).
    pub client_secret: Option<SecretString>,
    /// Scopes asked for besides `openid` (default `email`, `profile`).
    pub scopes: Vec<String>,
    /// The claim that lists the user's groups (default `groups`).
    pub groups_claim: String,
    /// Create unknown users at their first sign-in (just-in-time provisioning).
    pub provision: bool,
    /// Trust the provider's emails without `email_verified = true` when tying a sign-in
    /// to an account by email (linking or creating); off by default.
    pub trust_email: bool,
    /// Only these email domains may sign in (empty: any).
    pub allowed_domains: Vec<String>,
    /// Only members of one of these groups may sign in (empty: any).
    pub allowed_groups: Vec<String>,
    /// Members of one of these groups get the `admin` role; others `member`.
    pub admin_groups: Vec<String>,
    /// Timeout of each call to the provider (discovery, token, keys).
    pub timeout: Duration,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (loopback relays and tests only).
    None,
    /// STARTTLS upgrade, required.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// Email magic links and invitations (`[auth.email]`).
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The sender mailbox (`Warrant <warrant@example.com>`).
    pub from: String,
    /// How long a sign-in link is valid.
    pub link_ttl: Duration,
    /// How long an invitation link is valid.
    pub invite_ttl: Duration,
    /// Links one address may ask for per `rate_window`.
    pub per_address_limit: u32,
    /// Links one client IP may ask for per `rate_window`.
    pub per_ip_limit: u32,
    pub rate_window: Duration,
    /// Timeout of the SMTP conversation.
    pub timeout: Duration,
}
