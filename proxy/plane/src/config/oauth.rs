//! `[oauth]`: Warrant's authorization server for agents: how long access tokens live,
//! and `[oauth.clients.ID]`, agents the operator registers in advance (the conformance
//! suite's `--client-id`, CI agents, a backend with a secret). They are stored at start
//! as static clients (`Clients::upsert_static`); one removed from the file stops working
//! at the next start.

use std::collections::BTreeMap;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use warrant_consent::oauth::StaticClient;
use warrant_consent::oauth::http::DEFAULT_ACCESS_TOKEN_LIFETIME_SECS;
use warrant_consent::oauth::http::{default_application_type, redirect_uris_problem};
use warrant_consent::token::DEFAULT_MAX_TOKEN_LIFETIME;

use super::report::Problem;
use super::value::{ValueRef, duration, secret};

/// `[oauth]` as written.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub access_token_ttl: Option<String>,
    #[serde(default)]
    pub clients: BTreeMap<String, RawStaticClient>,
}

/// `[oauth.clients.ID]` as written.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStaticClient {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub secret: Option<ValueRef>,
}

/// The checked `[oauth]` section.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// How long an access token lives (its grant may end it sooner).
    pub access_token_ttl: Duration,
    /// Configured clients, in id order.
    pub clients: Vec<StaticClient>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(
                DEFAULT_ACCESS_TOKEN_LIFETIME_SECS.unsigned_abs(),
            ),
            clients: Vec::new(),
        }
    }
}

/// The shortest access-token lifetime accepted.
const MIN_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(60);

/// Whether `id` may name a configured client: what fits in a URL query unescaped, and
/// never a URL (those name metadata documents).
fn is_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(super) fn validate_oauth(raw: RawOAuth, problems: &mut Vec<Problem>) -> OAuthConfig {
    let default = OAuthConfig::default().access_token_ttl;
    let access_token_ttl = duration(
        raw.access_token_ttl,
        "oauth.access_token_ttl",
        default,
        problems,
    );
    // A retired signing key verifies for this long after its retirement: no token may
    // outlive that grace.
    if access_token_ttl > DEFAULT_MAX_TOKEN_LIFETIME || access_token_ttl < MIN_ACCESS_TOKEN_TTL {
        problems.push(Problem::new(
            "oauth.access_token_ttl",
            format!(
                "must be between {} and {} (short-lived tokens: a revoked grant's last token \
                 ends with it)",
                humantime::format_duration(MIN_ACCESS_TOKEN_TTL),
                humantime::format_duration(DEFAULT_MAX_TOKEN_LIFETIME)
            ),
        ));
    }
    let clients = raw
        .clients
        .into_iter()
        .filter_map(|(id, c)| validate_client(id, c, problems))
        .collect();
    OAuthConfig {
        access_token_ttl,
        clients,
    }
}

fn validate_client(
    id: String,
    raw: RawStaticClient,
    problems: &mut Vec<Problem>,
) -> Option<StaticClient> {
    let path = format!("oauth.clients.{id}");
    let before = problems.len();
    if !is_client_id(&id) {
        problems.push(Problem::new(
            &path,
            "a client id uses only A-Z a-z 0-9 - _ . (at most 64): agents send it as client_id",
        ));
    }
    let name = match raw.name.as_deref().map(str::trim) {
        None => id.clone(),
        Some("") => {
            problems.push(Problem::new(format!("{path}.name"), "must not be empty"));
            id.clone()
        }
        Some(n) if n.chars().count() > 100 => {
            problems.push(Problem::new(
                format!("{path}.name"),
                "must be at most 100 characters (it is shown on the consent screen)",
            ));
            id.clone()
        }
        Some(n) => n.to_owned(),
    };
    let redirect_uris = raw.redirect_uris.unwrap_or_default();
    if let Some(problem) = redirect_uris_problem(&redirect_uris) {
        problems.push(Problem::new(format!("{path}.redirect_uris"), problem));
    }
    let secret = secret(raw.secret, &format!("{path}.secret"), problems);
    if secret.as_ref().is_some_and(|s| s.expose().len() < 16) {
        problems.push(Problem::secret(
            format!("{path}.secret"),
            "must be at least 16 characters (use a random value, e.g. `openssl rand -base64 32`)",
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(StaticClient {
        application_type: default_application_type(&redirect_uris).to_owned(),
        client_id: id,
        name,
        redirect_uris,
        secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> (OAuthConfig, Vec<Problem>) {
        let raw: RawOAuth = toml::from_str(toml_text).expect("parses");
        let mut problems = Vec::new();
        let config = validate_oauth(raw, &mut problems);
        (config, problems)
    }

    fn paths(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(|p| p.path.clone()).collect()
    }

    #[test]
    fn a_public_and_a_confidential_client() {
        // PATH is set in every test environment: a stand-in for the secret's variable.
        let (config, problems) = check(
            r#"
            [clients.ci-agent]
            name = "CI agent"
            redirect_uris = ["http://127.0.0.1/callback"]

            [clients.backend]
            redirect_uris = ["https://backend.example.com/oauth/cb"]
            secret = { env = "PATH" }
            "#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let [backend, ci] = config.clients.as_slice() else {
            panic!("two clients: {:?}", config.clients);
        };
        assert_eq!(ci.client_id, "ci-agent");
        assert_eq!(ci.name, "CI agent");
        assert_eq!(ci.application_type, "native");
        assert!(ci.secret.is_none());
        assert_eq!(backend.name, "backend", "the id when no name is given");
        assert_eq!(backend.application_type, "web");
        assert!(backend.secret.is_some());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let (config, problems) = check(
            r#"
            [clients."https://agent.example/c.json"]
            redirect_uris = ["http://127.0.0.1/callback"]

            [clients.nouris]
            name = "No URIs"

            [clients.bad-uri]
            redirect_uris = ["http://evil.example.com/cb"]

            [clients.inline]
            redirect_uris = ["http://127.0.0.1/callback"]
            secret = "hunter2hunter2hunter2"

            [clients.unset]
            redirect_uris = ["http://127.0.0.1/callback"]
            secret = { env = "WARRANT_SURELY_UNSET_SECRET_X" }

            [clients.blank]
            name = " "
            redirect_uris = ["http://127.0.0.1/callback"]
            "#,
        );
        assert!(config.clients.is_empty());
        assert_eq!(
            paths(&problems),
            vec![
                "oauth.clients.bad-uri.redirect_uris",
                "oauth.clients.blank.name",
                "oauth.clients.https://agent.example/c.json",
                "oauth.clients.inline.secret",
                "oauth.clients.nouris.redirect_uris",
                "oauth.clients.unset.secret",
            ]
        );
        assert!(
            problems.iter().all(|p| !p.message.contains("hunter2")),
            "secrets never appear in messages"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<RawOAuth>("[clients.a]\nredirect_uri = \"x\"\n")
            .expect_err("unknown key");
        assert!(e.message().contains("unknown field"), "{e}");
    }

    #[test]
    fn access_tokens_live_ten_minutes_unless_configured_within_bounds() {
        let (config, problems) = check("");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.access_token_ttl, Duration::from_secs(600));
        let (config, problems) = check("access_token_ttl = \"5m\"");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.access_token_ttl, Duration::from_secs(300));
        for bad in ["\"2h\"", "\"10s\"", "\"soon\""] {
            let (_, problems) = check(&format!("access_token_ttl = {bad}"));
            assert_eq!(paths(&problems), ["oauth.access_token_ttl"], "{bad}");
        }
    }
}
