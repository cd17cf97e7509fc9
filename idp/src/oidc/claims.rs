//! From a provider's claims to a person Warrant can sign in, and the access policy of
//! `[auth.oidc.NAME]`: pure functions over plain values, so every rule is unit-tested
//! without a provider.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::OidcProviderConfig;
use crate::error::IdpError;
use crate::users::{Role, normalize_email, plausible_email};

/// The claims of an ID token or a userinfo answer beyond the standard ones, by name:
/// where the configured `groups_claim` is found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    pub claims: HashMap<String, Value>,
}

impl openidconnect::AdditionalClaims for ExtraClaims {}

/// What one source (the ID token, or userinfo) said about the person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimSet {
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    /// The groups claim, `None` when the source does not carry it.
    pub groups: Option<Vec<String>>,
}

impl ClaimSet {
    /// Whether userinfo is worth asking: the email or the groups are missing.
    pub fn incomplete(&self) -> bool {
        self.email.is_none() || self.groups.is_none()
    }
}

/// The groups in a claim value: a list of strings (the usual form), or one string.
/// Anything else (numbers, objects) is ignored rather than guessed at.
pub fn groups_from(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        Value::String(s) if !s.trim().is_empty() => Some(vec![s.trim().to_owned()]),
        Value::Null => None,
        _ => Some(Vec::new()),
    }
}

/// The person a provider vouched for, mapped and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's `sub`.
    pub subject: String,
    /// Lower-cased.
    pub email: String,
    /// The provider said `email_verified: true` (with the email, from the same source).
    pub email_verified: bool,
    pub display_name: String,
    /// Sorted, without duplicates.
    pub groups: Vec<String>,
}

impl Identity {
    /// The domain part of the email address.
    pub fn email_domain(&self) -> &str {
        self.email.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

/// Builds the identity from the ID token's claims and, for what the token lacks, the
/// userinfo answer. The email and its `email_verified` come from the same source; an
/// email the provider says it has not verified is refused (it could be anyone's). One
/// without the claim is mapped as unverified: it may sign in to the account already
/// linked to the provider's subject, never tie itself to one by email.
pub fn map_identity(
    provider: &str,
    subject: &str,
    id_token: &ClaimSet,
    userinfo: Option<&ClaimSet>,
) -> Result<Identity, IdpError> {
    let not_allowed = |reason: &str| IdpError::NotAllowed {
        provider: provider.to_owned(),
        reason: reason.to_owned(),
    };
    let (email, verified) = match (&id_token.email, userinfo) {
        (Some(email), _) => (email.clone(), id_token.email_verified),
        (None, Some(info)) if info.email.is_some() => {
            (info.email.clone().unwrap_or_default(), info.email_verified)
        }
        _ => {
            return Err(not_allowed(
                "it did not share an email address with Warrant",
            ));
        }
    };
    if verified == Some(false) {
        return Err(not_allowed(
            "it has not verified your email address; verify it there first",
        ));
    }
    let email = normalize_email(&email);
    if !plausible_email(&email) {
        return Err(not_allowed("the email address it shared is not valid"));
    }
    let pick = |f: fn(&ClaimSet) -> &Option<String>| {
        f(id_token)
            .as_deref()
            .or_else(|| userinfo.and_then(|u| f(u).as_deref()))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let display_name = pick(|c| &c.name)
        .or_else(|| pick(|c| &c.preferred_username))
        .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
    let mut groups = id_token
        .groups
        .clone()
        .or_else(|| userinfo.and_then(|u| u.groups.clone()))
        .unwrap_or_default();
    groups.sort();
    groups.dedup();
    Ok(Identity {
        subject: subject.to_owned(),
        email,
        email_verified: verified == Some(true),
        display_name: display_name.chars().take(200).collect(),
        groups,
    })
}

/// The provider's `allowed_domains` and `allowed_groups`. The reason is shown to the
/// person, so it names their own domain or nothing at all.
pub fn check_access(config: &OidcProviderConfig, identity: &Identity) -> Result<(), IdpError> {
    let refuse = |reason: String| IdpError::NotAllowed {
        provider: config.display_name.clone(),
        reason,
    };
    let domain = identity.email_domain();
    if !config.allowed_domains.is_empty()
        && !config
            .allowed_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    {
        return Err(refuse(format!(
            "email addresses at {domain} are not allowed here"
        )));
    }
    if !config.allowed_groups.is_empty()
        && !identity
            .groups
            .iter()
            .any(|g| config.allowed_groups.contains(g))
    {
        return Err(refuse(
            "you are not in a group that may use Warrant; ask an administrator".to_owned(),
        ));
    }
    Ok(())
}

/// The role the provider's groups give, when the provider decides roles
/// (`admin_groups` configured); `None` leaves the role to Warrant's admins.
pub fn role_from_groups(config: &OidcProviderConfig, groups: &[String]) -> Option<Role> {
    if config.admin_groups.is_empty() {
        return None;
    }
    Some(if groups.iter().any(|g| config.admin_groups.contains(g)) {
        Role::Admin
    } else {
        Role::Member
    })
}

/// Why a sign-in through a provider configured with groups (`admin_groups` or
/// `allowed_groups`) carried none: neither the ID token nor userinfo had the groups claim.
/// `None` when groups are not configured or the claim was there (even empty). The text
/// is for the log: it names the claim and the scopes asked for, and what to change.
pub fn missing_groups(
    config: &OidcProviderConfig,
    id_token: &ClaimSet,
    userinfo: Option<&ClaimSet>,
) -> Option<String> {
    if config.admin_groups.is_empty() && config.allowed_groups.is_empty() {
        return None;
    }
    if id_token.groups.is_some() || userinfo.is_some_and(|u| u.groups.is_some()) {
        return None;
    }
    let uses = match (
        config.admin_groups.is_empty(),
        config.allowed_groups.is_empty(),
    ) {
        (false, false) => "admin_groups and allowed_groups",
        (false, true) => "admin_groups",
        _ => "allowed_groups",
    };
    let scope_hint = if config.scopes.iter().any(|s| s == "groups") {
        "the provider must be configured to release it (a groups mapper or claim rule)"
    } else {
        "the scopes asked for do not include \"groups\", which most providers require \
         before they send it"
    };
    Some(format!(
        "the sign-in through {} carried no {:?} claim in the ID token or userinfo, so \
         {uses} cannot apply ({}): {scope_hint}; scopes asked for: openid {}",
        config.name,
        config.groups_claim,
        if config.allowed_groups.is_empty() {
            "the person signs in as a member"
        } else {
            "the person is refused as in no allowed group"
        },
        config.scopes.join(" "),
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn provider() -> OidcProviderConfig {
        OidcProviderConfig {
            name: "corp".into(),
            display_name: "Corp SSO".into(),
            issuer: url::Url::parse("https://id.example.com").expect("url"),
            client_id: "warrant".into(),
            client_secret: None,
            scopes: vec!["email".into(), "profile".into()],
            groups_claim: "groups".into(),
            provision: true,
            trust_email: false,
            allowed_domains: Vec::new(),
            allowed_groups: Vec::new(),
            admin_groups: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }

    fn claims(email: Option<&str>, verified: Option<bool>) -> ClaimSet {
        ClaimSet {
            email: email.map(str::to_owned),
            email_verified: verified,
            ..ClaimSet::default()
        }
    }

    fn identity(email: &str, groups: &[&str]) -> Identity {
        Identity {
            subject: "s".into(),
            email: email.into(),
            email_verified: true,
            display_name: "x".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn groups_claim_shapes() {
        assert_eq!(
            groups_from(&json!(["eng", " ops ", "", 3])),
            Some(vec!["eng".to_owned(), "ops".to_owned()])
        );
        assert_eq!(groups_from(&json!("admins")), Some(vec!["admins".into()]));
        assert_eq!(groups_from(&json!(null)), None);
        assert_eq!(groups_from(&json!({"a": 1})), Some(Vec::new()));
    }

    #[test]
    fn email_from_the_token_first_then_userinfo() {
        let token = ClaimSet {
            name: Some("Alice A.".into()),
            ..claims(Some(" Alice@Example.COM "), Some(true))
        };
        let id = map_identity("Corp", "sub-1", &token, None).expect("mapped");
        assert_eq!(id.email, "alice@example.com");
        assert_eq!(id.display_name, "Alice A.");
        assert_eq!(id.subject, "sub-1");
        assert_eq!(id.email_domain(), "example.com");

        let info = ClaimSet {
            groups: Some(vec!["ops".into(), "eng".into(), "ops".into()]),
            ..claims(Some("bob@example.com"), None)
        };
        let id = map_identity("Corp", "sub-2", &claims(None, None), Some(&info)).expect("mapped");
        assert_eq!(id.email, "bob@example.com");
        assert_eq!(
            id.display_name, "bob",
            "the local part when no name is given"
        );
        assert_eq!(id.groups, ["eng", "ops"]);
    }

    #[test]
    fn groups_from_the_token_win_over_userinfo() {
        let token = ClaimSet {
            groups: Some(vec!["a".into()]),
            ..claims(Some("a@example.com"), Some(true))
        };
        let info = ClaimSet {
            groups: Some(vec!["b".into()]),
            preferred_username: Some("al".into()),
            ..ClaimSet::default()
        };
        let id = map_identity("Corp", "s", &token, Some(&info)).expect("mapped");
        assert_eq!(id.groups, ["a"]);
        assert_eq!(id.display_name, "al");
    }

    #[test]
    fn unverified_missing_or_bad_email_is_refused() {
        for (set, words) in [
            (claims(Some("a@example.com"), Some(false)), "not verified"),
            (claims(None, None), "did not share an email"),
            (claims(Some("not-an-email"), None), "not valid"),
        ] {
            let err = map_identity("Corp", "s", &set, None).expect_err("refused");
            assert!(matches!(err, IdpError::NotAllowed { .. }), "{err:?}");
            assert!(err.user_message().contains(words), "{}", err.user_message());
        }
        // Verified in userinfo but unverified there: the source of the email decides.
        let info = claims(Some("a@example.com"), Some(false));
        assert!(map_identity("Corp", "s", &claims(None, None), Some(&info)).is_err());
        // Absent `email_verified` is mapped, as unverified (the account lookup by email
        // then refuses it unless the provider is trusted for its emails).
        let unproven = map_identity("Corp", "s", &claims(Some("a@example.com"), None), None);
        assert!(!unproven.expect("mapped").email_verified);
        let proven = map_identity(
            "Corp",
            "s",
            &claims(Some("a@example.com"), Some(true)),
            None,
        );
        assert!(proven.expect("mapped").email_verified);
    }

    #[test]
    fn domains_and_groups_policy() {
        let mut config = provider();
        assert!(check_access(&config, &identity("a@example.org", &[])).is_ok());

        config.allowed_domains = vec!["example.com".into()];
        assert!(check_access(&config, &identity("a@example.com", &[])).is_ok());
        let err = check_access(&config, &identity("a@example.org", &[])).expect_err("refused");
        assert_eq!(
            err.user_message(),
            "Your Corp SSO account cannot sign in here: email addresses at example.org are \
             not allowed here."
        );
        // A subdomain is another domain.
        assert!(check_access(&config, &identity("a@eu.example.com", &[])).is_err());

        config.allowed_groups = vec!["warrant-users".into()];
        assert!(check_access(&config, &identity("a@example.com", &["eng"])).is_err());
        assert!(
            check_access(
                &config,
                &identity("a@example.com", &["eng", "warrant-users"])
            )
            .is_ok()
        );
    }

    #[test]
    fn roles_follow_admin_groups_only_when_configured() {
        let mut config = provider();
        assert_eq!(role_from_groups(&config, &["admins".into()]), None);
        config.admin_groups = vec!["admins".into()];
        assert_eq!(
            role_from_groups(&config, &["eng".into(), "admins".into()]),
            Some(Role::Admin)
        );
        assert_eq!(
            role_from_groups(&config, &["eng".into()]),
            Some(Role::Member)
        );
    }

    #[test]
    fn extra_claims_keep_unknown_claims() {
        let parsed: ExtraClaims =
            serde_json::from_value(json!({"groups": ["a"], "https://x/roles": "r"}))
                .expect("parse");
        assert_eq!(parsed.claims["groups"], json!(["a"]));
        assert_eq!(parsed.claims["https://x/roles"], json!("r"));
    }

    #[test]
    fn missing_groups_are_explained_only_when_groups_are_configured() {
        let mut config = provider();
        let none = ClaimSet::default();
        assert_eq!(
            missing_groups(&config, &none, None),
            None,
            "no groups configured"
        );

        config.admin_groups = vec!["warrant-admins".into()];
        let why = missing_groups(&config, &none, Some(&none)).expect("explained");
        assert!(why.contains("\"groups\" claim"), "{why}");
        assert!(why.contains("admin_groups"), "{why}");
        assert!(why.contains("signs in as a member"), "{why}");
        assert!(why.contains("do not include \"groups\""), "{why}");
        assert!(why.contains("openid email profile"), "{why}");

        config.scopes.push("groups".into());
        config.allowed_groups = vec!["eng".into()];
        let why = missing_groups(&config, &none, None).expect("explained");
        assert!(why.contains("admin_groups and allowed_groups"), "{why}");
        assert!(why.contains("refused"), "{why}");
        assert!(why.contains("configured to release it"), "{why}");

        let with_groups = ClaimSet {
            groups: Some(Vec::new()),
            ..ClaimSet::default()
        };
        assert_eq!(missing_groups(&config, &none, Some(&with_groups)), None);
        assert_eq!(missing_groups(&config, &with_groups, None), None);
    }
}
