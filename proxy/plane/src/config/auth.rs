//! `[auth]`: sign-in providers, the SMTP server for email links, session lifetimes.
//! Checked into the plain settings of `warrant-idp`; the public URL (base of redirect
//! URIs, links and the WebAuthn origin) is added at start, once the address is bound.

use std::time::Duration;

use warrant_idp::config::{EmailConfig, OidcProviderConfig, SmtpTls};

use super::raw::{RawAuth, RawEmail, RawOidc};
use super::report::Problem;
use super::value::{duration, secret};

/// The checked `[auth]` section.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub session_idle: Duration,
    pub session_absolute: Duration,
    pub setup_link_ttl: Duration,
    pub oidc: Vec<OidcProviderConfig>,
    pub email: Option<EmailConfig>,
}

const DEFAULT_IDLE: Duration = Duration::from_secs(8 * 3600);
const DEFAULT_ABSOLUTE: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_SETUP_TTL: Duration = Duration::from_secs(15 * 60);
const DEFAULT_OIDC_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_LINK_TTL: Duration = Duration::from_secs(15 * 60);
const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(15 * 60);
const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn validate_auth(raw: RawAuth, problems: &mut Vec<Problem>) -> AuthConfig {
    let session_idle = duration(
        raw.session_idle,
        "auth.session_idle",
        DEFAULT_IDLE,
        problems,
    );
    let session_absolute = duration(
        raw.session_absolute,
        "auth.session_absolute",
        DEFAULT_ABSOLUTE,
        problems,
    );
    if session_idle > session_absolute {
        problems.push(Problem::new(
            "auth.session_idle",
            "must not be longer than auth.session_absolute",
        ));
    }
    let setup_link_ttl = duration(
        raw.setup_link_ttl,
        "auth.setup_link_ttl",
        DEFAULT_SETUP_TTL,
        problems,
    );
    let oidc = raw
        .oidc
        .into_iter()
        .filter_map(|(name, p)| validate_oidc(name, p, problems))
        .collect();
    let email = raw.email.and_then(|e| validate_email(e, problems));
    AuthConfig {
        session_idle,
        session_absolute,
        setup_link_ttl,
        oidc,
        email,
    }
}

fn is_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn lowercase_list(list: Option<Vec<String>>) -> Vec<String> {
    list.unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().trim_start_matches('@').to_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn validate_oidc(
    name: String,
    raw: RawOidc,
    problems: &mut Vec<Problem>,
) -> Option<OidcProviderConfig> {
    let path = format!("auth.oidc.{name}");
    let before = problems.len();
    if !is_provider_name(&name) {
        problems.push(Problem::new(
            &path,
            "provider names use only A-Z a-z 0-9 - _ (they appear in URLs)",
        ));
    }
    let issuer = match raw.issuer.as_deref().map(url::Url::parse) {
        None => {
            problems.push(Problem::new(format!("{path}.issuer"), "is required"));
            None
        }
        Some(Ok(url)) if url.scheme() == "https" => Some(url),
        Some(Ok(url))
            if url.scheme() == "http"
                && url.host_str().is_some_and(|h| {
                    h == "localhost"
                        || h.parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                }) =>
        {
            Some(url)
        }
        Some(Ok(_)) => {
            problems.push(Problem::new(
                format!("{path}.issuer"),
                "must be an https URL (plain http only on loopback, for tests)",
            ));
            None
        }
        Some(Err(e)) => {
            problems.push(Problem::new(format!("{path}.issuer"), e.to_string()));
            None
        }
    };
    let client_id = raw.client_id.filter(|c| !c.trim().is_empty());
    if client_id.is_none() {
        problems.push(Problem::new(format!("{path}.client_id"), "is required"));
    }
    let client_secret = secret(
        raw.client_secret,
        &format!("{path}.client_secret"),
        problems,
    );
    let timeout = duration(
        raw.timeout,
        &format!("{path}.timeout"),
        DEFAULT_OIDC_TIMEOUT,
        problems,
    );
    let scopes = raw
        .scopes
        .unwrap_or_else(|| vec!["email".into(), "profile".into()])
        .into_iter()
        .filter(|s| s != "openid")
        .collect();
    if problems.len() > before {
        return None;
    }
    Some(OidcProviderConfig {
        display_name: raw.display_name.unwrap_or_else(|| name.clone()),
        name,
        issuer: issuer?,
        client_id: client_id?,
        client_secret,
        scopes,
        groups_claim: raw.groups_claim.unwrap_or_else(|| "groups".into()),
        provision: raw.provision.unwrap_or(true),
        trust_email: raw.trust_email.unwrap_or(false),
        allowed_domains: lowercase_list(raw.allowed_domains),
        allowed_groups: raw.allowed_groups.unwrap_or_default(),
        admin_groups: raw.admin_groups.unwrap_or_default(),
        timeout,
    })
}

/// What is valid but probably not what the operator meant, with the key path: a
/// provider that uses groups (`admin_groups`, `allowed_groups`) without asking for the
/// `groups` scope, which most providers need before they send the claim (without it
/// everyone signs in as a member, or nobody passes `allowed_groups`).
pub(super) fn warnings(auth: &AuthConfig) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for p in &auth.oidc {
        let uses: Vec<&str> = [
            ("admin_groups", !p.admin_groups.is_empty()),
            ("allowed_groups", !p.allowed_groups.is_empty()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if uses.is_empty() || p.scopes.iter().any(|s| s == "groups") {
            continue;
        }
        warnings.push(Problem::new(
            format!("auth.oidc.{}.scopes", p.name),
            format!(
                "{} is set but the scopes do not include \"groups\": most providers \
                 (Okta, Auth0, Keycloak without a mapper) send the {:?} claim only when \
                 asked, and without it {}. Add \"groups\" to scopes, unless the provider \
                 sends the claim unasked (Microsoft Entra ID does).",
                uses.join(" and "),
                p.groups_claim,
                if p.allowed_groups.is_empty() {
                    "every person signs in as a member"
                } else {
                    "nobody is in an allowed group"
                }
            ),
        ));
    }
    warnings
}

fn validate_email(raw: RawEmail, problems: &mut Vec<Problem>) -> Option<EmailConfig> {
    let before = problems.len();
    let smtp_host = raw.smtp_host.filter(|h| !h.trim().is_empty());
    if smtp_host.is_none() {
        problems.push(Problem::new("auth.email.smtp_host", "is required"));
    }
    let tls = match raw.tls.as_deref().unwrap_or("starttls") {
        "none" => SmtpTls::None,
        "starttls" => SmtpTls::StartTls,
        "tls" => SmtpTls::Tls,
        other => {
            problems.push(Problem::new(
                "auth.email.tls",
                format!("{other:?} is not one of none, starttls, tls"),
            ));
            SmtpTls::StartTls
        }
    };
    let smtp_port = raw.smtp_port.unwrap_or(match tls {
        SmtpTls::None => 25,
        SmtpTls::StartTls => 587,
        SmtpTls::Tls => 465,
    });
    let from = raw.from.filter(|f| f.contains('@'));
    if from.is_none() {
        problems.push(Problem::new(
            "auth.email.from",
            "is required: the sender, like \"Warrant <warrant@example.com>\"",
        ));
    }
    let password = secret(raw.password, "auth.email.password", problems);
    if password.is_some() && raw.username.is_none() {
        problems.push(Problem::new(
            "auth.email.username",
            "is required when a password is given",
        ));
    }
    let positive = |n: Option<u32>, path: &str, default: u32, problems: &mut Vec<Problem>| match n {
        Some(0) => {
            problems.push(Problem::new(path, "must be at least 1"));
            default
        }
        Some(n) => n,
        None => default,
    };
    let config = EmailConfig {
        smtp_port,
        tls,
        username: raw.username,
        password,
        link_ttl: duration(
            raw.link_ttl,
            "auth.email.link_ttl",
            DEFAULT_LINK_TTL,
            problems,
        ),
        invite_ttl: duration(
            raw.invite_ttl,
            "auth.email.invite_ttl",
            DEFAULT_INVITE_TTL,
            problems,
        ),
        per_address_limit: positive(
            raw.per_address_limit,
            "auth.email.per_address_limit",
            5,
            problems,
        ),
        per_ip_limit: positive(raw.per_ip_limit, "auth.email.per_ip_limit", 20, problems),
        rate_window: duration(
            raw.rate_window,
            "auth.email.rate_window",
            DEFAULT_RATE_WINDOW,
            problems,
        ),
        timeout: duration(
            raw.timeout,
            "auth.email.timeout",
            DEFAULT_SMTP_TIMEOUT,
            problems,
        ),
        smtp_host: smtp_host.unwrap_or_default(),
        from: from.unwrap_or_default(),
    };
    (problems.len() == before).then_some(config)
}
