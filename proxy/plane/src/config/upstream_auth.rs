//! `[upstreams.NAME.auth]`: how an upstream learns who calls, and where the credential
//! Warrant injects comes from.
//!
//! ```toml
//! [upstreams.linear.auth]
//! mode = "person_key"        # none | shared | person_key | person_oauth | person_sso
//! header = "Authorization"   # HTTP upstreams: the header the key is sent in
//! scheme = "Bearer"          # written before the key, with a space ("" for none)
//! # env = "LINEAR_API_KEY"   # stdio upstreams: the environment variable instead
//! # value = { env = "KEY" }  # `shared` only: the key by reference, else from the vault
//!
//! [upstreams.tracker.auth]
//! mode = "person_oauth"      # each person connects their account; Warrant is the client
//! # client_id = "…"          # registered by an admin, else Warrant registers itself
//! # client_secret = { env = "TRACKER_CLIENT_SECRET" }
//! # scopes = ["read", "write"]
//! # registration = "auto"   # without client_id: "metadata_document" | "dynamic"
//!
//! [upstreams.wiki.auth]
//! mode = "person_sso"        # the person's own sign-in at an [auth.oidc] provider
//! provider = "corp"          # which one (may be left out when there is one)
//! audience = "https://wiki.example.com"   # exchanged for a token meant for this
//! # forward_sign_in_token = true          # instead: the sign-in token as it is
//! ```

use serde::{Deserialize, Serialize};

use warrant_consent::person_oauth::Registration;

use super::report::Problem;
use super::value::{ValueRef, resolve};

/// The vault record kind an upstream's API key is kept under (shared or a person's).
pub const API_KEY: &str = "api_key";
/// The most per-person connections one upstream keeps open at once, unless configured.
const DEFAULT_MAX_PEOPLE: usize = 64;
/// How long a person's connection may stay unused before it is closed, unless configured.
const DEFAULT_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// `[upstreams.NAME.auth]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ValueRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_people: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<ValueRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_sign_in_token: Option<bool>,
}

/// Whose credential an upstream is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// None from Warrant (whatever `headers` or `env` the upstream is configured with).
    None,
    /// One key for everyone: `value` by reference, or the vault's shared record.
    Shared,
    /// Each person's own key, from the vault; a connection per person.
    PersonKey,
    /// Each person's own OAuth connection, made once on their connections page with
    /// Warrant as the OAuth client; the access token (kept in the vault, refreshed) is
    /// the key. HTTP upstreams only.
    PersonOAuth,
    /// The person's own sign-in at an OpenID Connect provider the upstream trusts: a
    /// token exchanged for the upstream's audience (or, where the admin allows it, the
    /// sign-in token itself). HTTP upstreams only.
    PersonSso,
}

impl AuthMode {
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Shared => "shared",
            Self::PersonKey => "person_key",
            Self::PersonOAuth => "person_oauth",
            Self::PersonSso => "person_sso",
        }
    }

    /// Whether each person has a credential (and a connection) of their own.
    pub fn per_person(self) -> bool {
        matches!(self, Self::PersonKey | Self::PersonOAuth | Self::PersonSso)
    }
}

impl UpstreamAuth {
    /// Whether calls go through a connection per key read from the vault (a person's
    /// own, or a shared one kept there), rather than the upstream's one connection.
    pub fn keyed(&self) -> bool {
        self.mode.per_person() || self.from_vault
    }
}

/// Where the key goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlace {
    /// An HTTP header: `scheme` (if any), a space, and the key.
    Header { name: String, scheme: String },
    /// An environment variable of a stdio upstream's process.
    Env { name: String },
}

impl KeyPlace {
    /// The header or variable's value for `key`.
    pub fn value_for(&self, key: &str) -> String {
        match self {
            Self::Header { scheme, .. } if !scheme.is_empty() => format!("{scheme} {key}"),
            _ => key.to_owned(),
        }
    }

    /// The header or variable's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Header { name, .. } | Self::Env { name } => name,
        }
    }
}

/// `[upstreams.NAME.auth]`, checked.
#[derive(Debug, Clone)]
pub struct UpstreamAuth {
    pub mode: AuthMode,
    /// Where the key goes (`None` for mode `none`).
    pub place: Option<KeyPlace>,
    /// `shared`: the key by reference; `None` reads the vault's shared record.
    pub value: Option<ValueRef>,
    /// `shared` with no `value` in the file: the key is the vault's shared record (then
    /// `value` may hold what the vault held at start, for listing).
    pub from_vault: bool,
    /// Per-person modes: connections open at once, at most.
    pub max_people: usize,
    /// Per-person modes: a connection unused this long is closed.
    pub idle_timeout: std::time::Duration,
    /// `person_oauth`: the client an admin registered at the authorization server
    /// (`None`: Warrant registers itself there).
    pub client_id: Option<String>,
    /// `person_oauth`: the secret of `client_id`, by reference.
    pub client_secret: Option<ValueRef>,
    /// `person_oauth`: the scopes asked for.
    pub scopes: Vec<String>,
    /// `person_oauth` without `client_id`: how Warrant gets one there.
    pub registration: Registration,
    /// `person_sso`: the `[auth.oidc]` provider (`None`: the only one; checked with the
    /// whole configuration).
    pub provider: Option<String>,
    /// `person_sso`: the audience of the exchanged token.
    pub audience: Option<String>,
    /// `person_sso`: the sign-in token goes as it is, no exchange.
    pub forward_sign_in_token: bool,
    /// A connection the credentials stage built with one key (see
    /// [`super::with_key`]): a key the upstream refuses is replaced or reported there.
    pub carries_key: bool,
}

impl Default for UpstreamAuth {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            place: None,
            value: None,
            from_vault: false,
            max_people: DEFAULT_MAX_PEOPLE,
            idle_timeout: DEFAULT_IDLE,
            client_id: None,
            client_secret: None,
            scopes: Vec::new(),
            registration: Registration::Auto,
            provider: None,
            audience: None,
            forward_sign_in_token: false,
            carries_key: false,
        }
    }
}

/// Checks `auth` of an upstream that is `stdio` or not (HTTP).
pub(super) fn validate_auth(
    raw: Option<RawUpstreamAuth>,
    stdio: bool,
    path: &str,
    problems: &mut Vec<Problem>,
) -> UpstreamAuth {
    let Some(raw) = raw else {
        return UpstreamAuth::default();
    };
    let path = format!("{path}.auth");
    let mode = match raw.mode.as_deref() {
        None | Some("none") => AuthMode::None,
        Some("shared") => AuthMode::Shared,
        Some("person_key") => AuthMode::PersonKey,
        Some("person_oauth") => AuthMode::PersonOAuth,
        Some("person_sso") => AuthMode::PersonSso,
        Some(other) => {
            problems.push(Problem::new(
                format!("{path}.mode"),
                format!(
                    "{other:?} is not one of \"none\", \"shared\", \"person_key\", \
                     \"person_oauth\", \"person_sso\""
                ),
            ));
            AuthMode::None
        }
    };
    let mut auth = UpstreamAuth {
        mode,
        ..UpstreamAuth::default()
    };
    if mode == AuthMode::None {
        if raw.header.is_some() || raw.scheme.is_some() || raw.env.is_some() || raw.value.is_some()
        {
            problems.push(Problem::new(
                &path,
                "`header`, `scheme`, `env` and `value` need a mode that injects a key \
                 (\"shared\" or \"person_key\")",
            ));
        }
        return auth;
    }
    oauth_client(&raw, mode, stdio, &path, &mut auth, problems);
    sign_in_identity(&raw, mode, stdio, &path, &mut auth, problems);
    if matches!(mode, AuthMode::PersonOAuth | AuthMode::PersonSso) {
        return auth;
    }
    auth.place = place(&raw, stdio, &path, problems);
    auth.from_vault = mode == AuthMode::Shared && raw.value.is_none();
    match (&raw.value, mode) {
        (Some(_), AuthMode::PersonKey) => problems.push(Problem::new(
            format!("{path}.value"),
            "a per-person key comes from each person's connections page, not the file",
        )),
        (Some(value), _) => {
            if let ValueRef::Literal(text) = value
                && !text.contains("${")
            {
                problems.push(Problem::secret(
                    format!("{path}.value"),
                    "write secrets by reference, not inline: { env = \"VAR\" }, \
                     { file = \"/path\" } or \"${VAR}\" (or leave it out and store the key \
                     with `warrant vault set`)",
                ));
            } else if let Err(e) = resolve(value) {
                problems.push(Problem::new(format!("{path}.value"), e));
            }
            auth.value = Some(value.clone());
        }
        (None, _) => {}
    }
    if let Some(n) = raw.max_people {
        if n == 0 {
            problems.push(Problem::new(
                format!("{path}.max_people"),
                "must be at least 1",
            ));
        } else {
            auth.max_people = usize::try_from(n).unwrap_or(usize::MAX);
        }
    }
    auth.idle_timeout = super::value::duration(
        raw.idle_timeout,
        &format!("{path}.idle_timeout"),
        DEFAULT_IDLE,
        problems,
    );
    auth
}

/// `person_sso`'s settings (the token goes as `Authorization: Bearer`), and none of them
/// with another mode.
fn sign_in_identity(
    raw: &RawUpstreamAuth,
    mode: AuthMode,
    stdio: bool,
    path: &str,
    auth: &mut UpstreamAuth,
    problems: &mut Vec<Problem>,
) {
    let fields =
        raw.provider.is_some() || raw.audience.is_some() || raw.forward_sign_in_token.is_some();
    if mode != AuthMode::PersonSso {
        if fields {
            problems.push(Problem::new(
                path,
                "`provider`, `audience` and `forward_sign_in_token` belong to mode \
                 \"person_sso\"",
            ));
        }
        return;
    }
    if stdio {
        problems.push(Problem::new(
            format!("{path}.mode"),
            "\"person_sso\" needs an HTTP upstream (a `url`): the token goes in a header",
        ));
    }
    if raw.header.is_some()
        || raw.scheme.is_some()
        || raw.env.is_some()
        || raw.value.is_some()
        || raw.client_id.is_some()
        || raw.client_secret.is_some()
        || raw.scopes.is_some()
    {
        problems.push(Problem::new(
            path,
            "with \"person_sso\" the person's token goes as `Authorization: Bearer`: \
             `header`, `scheme`, `env`, `value`, `client_id`, `client_secret` and `scopes` \
             do not apply",
        ));
    }
    auth.place = Some(KeyPlace::Header {
        name: "Authorization".into(),
        scheme: "Bearer".into(),
    });
    auth.provider = raw.provider.clone();
    auth.audience = raw.audience.clone().filter(|a| !a.is_empty());
    auth.forward_sign_in_token = raw.forward_sign_in_token.unwrap_or(false);
    match (&auth.audience, auth.forward_sign_in_token) {
        (None, false) => problems.push(Problem::new(
            format!("{path}.audience"),
            "required: the audience the provider issues the exchanged token for (or, only \
             for a provider without token exchange, `forward_sign_in_token = true`)",
        )),
        (Some(_), true) => problems.push(Problem::new(
            format!("{path}.forward_sign_in_token"),
            "the sign-in token goes as it is: no `audience` to exchange it for",
        )),
        _ => {}
    }
}

/// `person_oauth`'s settings (the token goes as `Authorization: Bearer`), and none of
/// them with another mode.
fn oauth_client(
    raw: &RawUpstreamAuth,
    mode: AuthMode,
    stdio: bool,
    path: &str,
    auth: &mut UpstreamAuth,
    problems: &mut Vec<Problem>,
) {
    let oauth_fields = raw.client_id.is_some()
        || raw.client_secret.is_some()
        || raw.scopes.is_some()
        || raw.registration.is_some();
    if mode != AuthMode::PersonOAuth {
        if oauth_fields {
            problems.push(Problem::new(
                path,
                "`client_id`, `client_secret`, `scopes` and `registration` belong to mode \
                 \"person_oauth\"",
            ));
        }
        return;
    }
    if stdio {
        problems.push(Problem::new(
            format!("{path}.mode"),
            "\"person_oauth\" needs an HTTP upstream (a `url`): OAuth tokens go in a \
             header",
        ));
    }
    if raw.header.is_some() || raw.scheme.is_some() || raw.env.is_some() || raw.value.is_some() {
        problems.push(Problem::new(
            path,
            "with \"person_oauth\" the person's access token goes as `Authorization: \
             Bearer`: `header`, `scheme`, `env` and `value` do not apply",
        ));
    }
    auth.place = Some(KeyPlace::Header {
        name: "Authorization".into(),
        scheme: "Bearer".into(),
    });
    auth.client_id = raw.client_id.clone();
    if auth.client_id.as_deref().is_some_and(str::is_empty) {
        problems.push(Problem::new(format!("{path}.client_id"), "is empty"));
    }
    if let Some(secret) = &raw.client_secret {
        if raw.client_id.is_none() {
            problems.push(Problem::new(
                format!("{path}.client_secret"),
                "needs the `client_id` it belongs to",
            ));
        }
        if let ValueRef::Literal(text) = secret
            && !text.contains("${")
        {
            problems.push(Problem::secret(
                format!("{path}.client_secret"),
                "write secrets by reference, not inline: { env = \"VAR\" }, \
                 { file = \"/path\" } or \"${VAR}\"",
            ));
        } else if let Err(e) = resolve(secret) {
            problems.push(Problem::new(format!("{path}.client_secret"), e));
        }
        auth.client_secret = Some(secret.clone());
    }
    auth.registration = match raw.registration.as_deref() {
        None | Some("auto") => Registration::Auto,
        Some("metadata_document") => Registration::MetadataDocument,
        Some("dynamic") => Registration::Dynamic,
        Some(other) => {
            problems.push(Problem::new(
                format!("{path}.registration"),
                format!("{other:?} is not one of \"auto\", \"metadata_document\", \"dynamic\""),
            ));
            Registration::Auto
        }
    };
    if raw.registration.is_some() && raw.client_id.is_some() {
        problems.push(Problem::new(
            format!("{path}.registration"),
            "with a `client_id` there is nothing to register",
        ));
    }
    auth.scopes = raw.scopes.clone().unwrap_or_default();
    if let Some(bad) = auth
        .scopes
        .iter()
        .find(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        problems.push(Problem::new(
            format!("{path}.scopes"),
            format!("{bad:?} is not one scope (no spaces)"),
        ));
    }
}

fn place(
    raw: &RawUpstreamAuth,
    stdio: bool,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<KeyPlace> {
    if stdio {
        if raw.header.is_some() || raw.scheme.is_some() {
            problems.push(Problem::new(
                path,
                "a stdio upstream gets its key in an environment variable: set `env`, \
                 not `header` or `scheme`",
            ));
        }
        let Some(name) = raw.env.clone() else {
            problems.push(Problem::new(
                format!("{path}.env"),
                "required for a stdio upstream: the environment variable the key goes in",
            ));
            return None;
        };
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            problems.push(Problem::new(
                format!("{path}.env"),
                format!("{name:?} is not an environment variable name"),
            ));
            return None;
        }
        return Some(KeyPlace::Env { name });
    }
    if raw.env.is_some() {
        problems.push(Problem::new(
            format!("{path}.env"),
            "an HTTP upstream gets its key in a header: set `header` (default \
             \"Authorization\"), not `env`",
        ));
    }
    let name = raw
        .header
        .clone()
        .unwrap_or_else(|| "Authorization".to_owned());
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        problems.push(Problem::new(
            format!("{path}.header"),
            format!("{name:?} is not a header name"),
        ));
        return None;
    }
    let scheme = raw.scheme.clone().unwrap_or_else(|| {
        if name.eq_ignore_ascii_case("authorization") {
            "Bearer".to_owned()
        } else {
            String::new()
        }
    });
    if scheme.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.push(Problem::new(
            format!("{path}.scheme"),
            format!("{scheme:?} must be one word, such as \"Bearer\""),
        ));
    }
    Some(KeyPlace::Header { name, scheme })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawUpstreamAuth, stdio: bool) -> (UpstreamAuth, Vec<Problem>) {
        let mut problems = Vec::new();
        let auth = validate_auth(Some(raw), stdio, "upstreams.x", &mut problems);
        (auth, problems)
    }

    #[test]
    fn person_key_over_http_defaults_to_a_bearer_authorization_header() {
        let (auth, problems) = check(
            RawUpstreamAuth {
                mode: Some("person_key".into()),
                ..Default::default()
            },
            false,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(auth.mode, AuthMode::PersonKey);
        let place = auth.place.expect("a place");
        assert_eq!(place.value_for("k1"), "Bearer k1");
        assert_eq!(place.name(), "Authorization");
    }

    #[test]
    fn another_header_takes_the_key_as_it_is() {
        let (auth, problems) = check(
            RawUpstreamAuth {
                mode: Some("shared".into()),
                header: Some("X-Api-Key".into()),
                ..Default::default()
            },
            false,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(auth.place.expect("a place").value_for("k1"), "k1");
    }

    #[test]
    fn stdio_needs_env_and_refuses_headers() {
        let (_, problems) = check(
            RawUpstreamAuth {
                mode: Some("person_key".into()),
                header: Some("X-Api-Key".into()),
                ..Default::default()
            },
            true,
        );
        let fields: Vec<_> = problems.iter().map(|p| p.path.clone()).collect();
        assert!(
            fields.contains(&"upstreams.x.auth".to_owned()),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"upstreams.x.auth.env".to_owned()),
            "{fields:?}"
        );
    }

    #[test]
    fn an_inline_shared_key_and_an_unknown_mode_are_refused() {
        let (_, problems) = check(
            RawUpstreamAuth {
                mode: Some("shared".into()),
                value: Some(ValueRef::Literal("sk-live-123".into())),
                ..Default::default()
            },
            false,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (_, problems) = check(
            RawUpstreamAuth {
                mode: Some("oauth".into()),
                ..Default::default()
            },
            false,
        );
        assert!(problems[0].message.contains("person_key"), "{problems:?}");
    }

    #[test]
    fn person_oauth_sends_a_bearer_token_over_http_only() {
        let (auth, problems) = check(
            RawUpstreamAuth {
                mode: Some("person_oauth".into()),
                scopes: Some(vec!["read".into()]),
                ..Default::default()
            },
            false,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(auth.mode.per_person() && auth.keyed());
        assert_eq!(auth.place.expect("a place").value_for("t"), "Bearer t");
        assert_eq!(auth.scopes, ["read"]);
        let (_, problems) = check(
            RawUpstreamAuth {
                mode: Some("person_oauth".into()),
                env: Some("TOKEN".into()),
                ..Default::default()
            },
            true,
        );
        let fields: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            fields,
            ["upstreams.x.auth.mode", "upstreams.x.auth"],
            "{problems:?}"
        );
    }

    #[test]
    fn registration_is_chosen_only_where_warrant_registers() {
        let (auth, problems) = check(
            RawUpstreamAuth {
                mode: Some("person_oauth".into()),
                registration: Some("metadata_document".into()),
                ..Default::default()
            },
            false,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(auth.registration, Registration::MetadataDocument);
        let (_, problems) = check(
            RawUpstreamAuth {
                mode: Some("person_oauth".into()),
                client_id: Some("warrant".into()),
                registration: Some("dynamic".into()),
                ..Default::default()
            },
            false,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (_, problems) = check(
            RawUpstreamAuth {
                mode: Some("person_oauth".into()),
                registration: Some("manual".into()),
                ..Default::default()
            },
            false,
        );
        assert_eq!(problems[0].path, "upstreams.x.auth.registration");
    }

    #[test]
    fn an_oauth_client_secret_is_by_reference_with_its_client_id() {
        let (_, problems) = check(
            RawUpstreamAuth {
                mode: Some("person_oauth".into()),
                client_secret: Some(ValueRef::Literal("s3cr3t".into())),
                ..Default::default()
            },
            false,
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        let (_, problems) = check(
            RawUpstreamAuth {
                mode: Some("person_key".into()),
                client_id: Some("warrant".into()),
                ..Default::default()
            },
            false,
        );
        assert!(problems[0].message.contains("person_oauth"), "{problems:?}");
    }
}
