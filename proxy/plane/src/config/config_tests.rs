use super::*;

fn check(src: &str) -> Result<Config, Report> {
    parse(src, "warrant.toml", &Overrides::default())
}

#[test]
fn an_empty_file_is_a_valid_config_with_defaults() {
    let config = check("").expect("valid");
    assert_eq!(config.server.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.mcp.separator, "__");
    assert!(config.upstreams.is_empty());
    assert_eq!(
        config.mcp.protocol_versions.len(),
        SUPPORTED_PROTOCOL_VERSIONS.len()
    );
}

#[test]
fn upstreams_mirror_the_mcp_servers_shape() {
    let config = check(
        r#"
[upstreams.files]
command = "npx"
args = ["-y", "some-server"]
env = { ROOT = "/tmp" }
start = "lazy"
call_timeout = "5s"

[upstreams.remote]
url = "https://mcp.example.com/mcp"
headers = { Authorization = { env = "PATH" } }
prefix = ""

[upstreams.old]
type = "sse"
url = "http://127.0.0.1:9/sse"
"#,
    )
    .expect("valid");
    let names: Vec<_> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["files", "old", "remote"]);
    assert_eq!(config.upstreams[0].transport.kind(), "stdio");
    assert_eq!(config.upstreams[0].start, StartMode::Lazy);
    assert_eq!(config.upstreams[0].call_timeout, Duration::from_secs(5));
    assert_eq!(config.upstreams[1].transport.kind(), "sse");
    assert_eq!(config.upstreams[2].transport.kind(), "streamable-http");
    assert_eq!(config.upstreams[2].prefix, "");
    assert_eq!(config.upstreams[2].max_connections, 64, "the default");
}

#[test]
fn sessions_are_one_unless_set_and_more_only_for_streamable_http() {
    let problems_of = |source: &str| -> Vec<(String, String)> {
        check(source)
            .expect_err("invalid")
            .problems
            .iter()
            .map(|p| (p.path.clone(), p.message.clone()))
            .collect()
    };
    let config = check("[upstreams.a]\nurl = \"http://127.0.0.1:9/mcp\"\n").expect("valid");
    assert_eq!(config.upstreams[0].sessions, 1, "the default");
    let config =
        check("[upstreams.a]\nurl = \"http://127.0.0.1:9/mcp\"\nsessions = 4\n").expect("valid");
    assert_eq!(config.upstreams[0].sessions, 4);
    for n in [0, 17] {
        assert_eq!(
            problems_of(&format!(
                "[upstreams.a]\nurl = \"http://127.0.0.1:9/mcp\"\nsessions = {n}\n"
            )),
            [(
                "upstreams.a.sessions".to_owned(),
                "must be between 1 and 16".to_owned()
            )]
        );
    }
    assert_eq!(
        problems_of("[upstreams.a]\ncommand = \"server\"\nsessions = 2\n"),
        [(
            "upstreams.a.sessions".to_owned(),
            "more than one session applies to Streamable HTTP upstreams (`url`) only".to_owned()
        )]
    );
    assert_eq!(
        problems_of(
            "[upstreams.a]\nurl = \"http://127.0.0.1:9/sse\"\ntype = \"sse\"\nsessions = 2\n"
        )
        .len(),
        1
    );
}

#[test]
fn a_sign_in_passed_through_names_its_provider_and_what_the_token_is_for() {
    let oidc = "[auth.oidc.corp]\nissuer = \"https://login.example.com/\"\n\
                client_id = \"warrant\"\nclient_secret = { env = \"PATH\" }\n";
    let upstream = |auth: &str| {
        format!(
            "{oidc}[upstreams.wiki]\nurl = \"https://wiki.example.com/mcp\"\n[upstreams.wiki.auth]\n{auth}"
        )
    };
    // The only provider is the one; the exchanged token's audience is required.
    let config = check(&upstream(
        "mode = \"person_sso\"\naudience = \"https://wiki.example.com\"\n",
    ))
    .expect("valid");
    let auth = &config.upstreams[0].auth;
    assert_eq!(auth.provider.as_deref(), Some("corp"));
    assert!(auth.keyed() && !auth.forward_sign_in_token);
    let paths = |source: &str| -> Vec<String> {
        check(source)
            .expect_err("invalid")
            .problems
            .into_iter()
            .map(|p| p.path)
            .collect()
    };
    assert_eq!(
        paths(&upstream("mode = \"person_sso\"\n")),
        ["upstreams.wiki.auth.audience"]
    );
    assert_eq!(
        paths(&upstream(
            "mode = \"person_sso\"\nprovider = \"other\"\nforward_sign_in_token = true\n"
        )),
        ["upstreams.wiki.auth.provider"]
    );
    assert_eq!(
        paths(&upstream(
            "mode = \"person_sso\"\naudience = \"a\"\nforward_sign_in_token = true\n"
        )),
        ["upstreams.wiki.auth.forward_sign_in_token"]
    );
    // Without any sign-in provider there is none to pass through.
    let report = check(
        "[upstreams.wiki]\nurl = \"https://wiki.example.com/mcp\"\n\
         auth = { mode = \"person_sso\", audience = \"a\" }\n",
    )
    .expect_err("no provider");
    assert_eq!(report.problems[0].path, "upstreams.wiki.auth.provider");
}

#[test]
fn a_key_per_person_needs_a_person_behind_each_call() {
    let upstream = "[upstreams.a]\nurl = \"http://127.0.0.1:9/mcp\"\n\
                    auth = { mode = \"person_key\" }\n";
    let config = check(upstream).expect("valid with tokens (the default)");
    assert!(config.upstreams[0].auth.keyed());
    let report = check(&format!("{upstream}[mcp]\nauthorization = \"none\"\n"))
        .expect_err("invalid without tokens");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.path == "upstreams.a.auth.mode" && p.message.contains("no")),
        "{report}"
    );
    // A shared key by reference is no connection per key; one from the vault is.
    let shared = check(
        "[upstreams.a]\nurl = \"http://127.0.0.1:9/mcp\"\n\
         auth = { mode = \"shared\", value = { env = \"HOME\" } }\n\
         [upstreams.b]\nurl = \"http://127.0.0.1:9/mcp\"\nauth = { mode = \"shared\" }\n",
    )
    .expect("valid");
    assert!(!shared.upstreams[0].auth.keyed());
    assert!(shared.upstreams[1].auth.keyed());
}

#[test]
fn max_connections_is_at_least_one() {
    let config = check("[upstreams.a]\nurl = \"http://127.0.0.1:9/mcp\"\nmax_connections = 3\n")
        .expect("valid");
    assert_eq!(config.upstreams[0].max_connections, 3);
    let report = check("[upstreams.a]\nurl = \"http://127.0.0.1:9/mcp\"\nmax_connections = 0\n")
        .expect_err("invalid");
    let problems: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.path.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(
        problems,
        [("upstreams.a.max_connections", "must be at least 1")]
    );
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let src = r#"[server]
listen = "nowhere"

[mcp]
separator = "::"

[upstreams.a]
command = "x"
url = "http://y"

[upstreams.b]
url = "ftp://z"
call_timeout = "soon"

[upstreams.c]
comand = "typo"
"#;
    let report = check(src).expect_err("invalid");
    let text = report.to_string();
    let paths: Vec<_> = report.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.listen",
            "mcp.separator",
            "upstreams.a",
            "upstreams.b.url",
            "upstreams.b.call_timeout",
            "upstreams.c"
        ],
        "{text}"
    );
    assert!(text.contains("--> warrant.toml:2\n"), "{text}");
    assert!(text.contains("12 | url = \"ftp://z\""), "{text}");
    assert!(text.contains("unknown field `comand`"), "{text}");
    assert!(text.ends_with("6 problems in warrant.toml"), "{text}");
}

#[test]
fn unknown_keys_are_refused_everywhere() {
    for src in [
        "bogus = 1",
        "[server]\nlisten2 = \"x\"",
        "[mcp]\nsep = \"x\"",
    ] {
        let report = check(src).expect_err(src);
        assert!(
            report.to_string().contains("unknown field"),
            "{src}: {report}"
        );
    }
}

#[test]
fn syntax_errors_point_at_their_line() {
    let report = check("[server]\nlisten = \n").expect_err("invalid");
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].line, Some(2), "{report}");
}

#[test]
fn duplicate_prefixes_and_bad_names_are_refused() {
    let report = check(
        "[upstreams.a]\ncommand = \"x\"\nprefix = \"p\"\n[upstreams.b]\ncommand = \"y\"\nprefix = \"p\"\n[upstreams.\"bad name\"]\ncommand = \"z\"\n",
    )
    .expect_err("invalid");
    let text = report.to_string();
    assert!(
        text.contains("upstreams.b.prefix: prefix \"p\" is also the prefix of upstream \"a\""),
        "{text}"
    );
    assert!(
        text.contains("upstreams.bad name: an upstream name may use only"),
        "{text}"
    );
}

#[test]
fn missing_secrets_are_named_not_printed() {
    let report = check(
        "[upstreams.a]\nurl = \"http://h/mcp\"\nheaders = { Authorization = \"Bearer ${WARRANT_TEST_UNSET_TOKEN}\" }\n",
    )
    .expect_err("invalid");
    let text = report.to_string();
    assert!(text.contains("upstreams.a.headers.Authorization: environment variable WARRANT_TEST_UNSET_TOKEN is not set"), "{text}");
}

#[test]
fn overrides_win_over_the_file() {
    let overrides = Overrides {
        listen: Some("127.0.0.1:9999".into()),
        data_dir: Some("/tmp/w".into()),
        database_url: Some("postgres://u@h/db".into()),
    };
    let config = parse("[server]\nlisten = \"127.0.0.1:1\"\n", "t", &overrides).expect("valid");
    assert_eq!(config.server.listen.port(), 9999);
    assert_eq!(config.server.data_dir, PathBuf::from("/tmp/w"));
    assert_eq!(
        config.server.database_url.as_ref().map(Secret::expose),
        Some("postgres://u@h/db")
    );
}

#[test]
fn disabled_upstreams_are_skipped() {
    let config = check("[upstreams.a]\ncommand = \"x\"\nenabled = false\n").expect("valid");
    assert!(config.upstreams.is_empty());
}

#[test]
fn import_converts_mcp_servers_json() {
    let json = r#"{"mcpServers": {
        "everything": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"]},
        "my remote": {"type": "http", "url": "https://h/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}},
        "legacy": {"type": "sse", "url": "http://h/sse", "autoApprove": []},
        "keys": {"command": "srv", "env": {"API_KEY": "literal", "MODE": "fast"}, "disabled": true}
    }}"#;
    let imported = import_mcp_servers(json).expect("import");
    let text = &imported.text;
    assert_eq!(imported.config.upstreams.len(), 4);
    assert!(text.contains("[upstreams.my-remote]"), "{text}");
    assert!(text.contains("type = \"sse\""), "{text}");
    // A reference stays a reference; a literal secret goes to the vault.
    assert!(text.contains("Bearer ${TOKEN}"), "{text}");
    assert!(!text.contains("literal"), "{text}");
    assert!(
        text.contains("[upstreams.keys.env.API_KEY]\nvault = \"env.API_KEY\""),
        "{text}"
    );
    assert!(text.contains("MODE = \"fast\""), "{text}");
    let moved: Vec<_> = imported
        .moved
        .iter()
        .map(|m| (m.upstream.as_str(), m.kind.as_str(), m.value.expose()))
        .collect();
    assert_eq!(moved, [("keys", "env.API_KEY", "literal")]);
    // The output is itself a valid configuration (given the referenced variable).
    let reparsed: RawConfig = toml::from_str(text).expect("valid TOML");
    assert_eq!(reparsed.upstreams.len(), 4);
}

#[test]
fn import_moves_secrets_out_of_urls_and_arguments() {
    let json = r#"{"mcpServers": {
        "search": {"url": "https://u:p%40ss@h.example/mcp?region=eu&apiKey=k%2B1"},
        "gh": {"command": "srv", "args": ["--token", "t-123", "--org=acme", "--api-key=zz9", "ghp_abc"],
               "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_def", "LOG": "sk-looks-like-a-key"}}
    }}"#;
    let imported = import_mcp_servers(json).expect("import");
    let text = &imported.text;
    for secret in [
        "p%40ss", "p@ss", "k%2B1", "t-123", "zz9", "ghp_abc", "ghp_def", "sk-looks",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(
        text.contains("https://h.example/mcp?region=eu&apiKey=${vault:url.apiKey}"),
        "{text}"
    );
    assert!(
        text.contains("\"--token\", \"${vault:arg.1}\", \"--org=acme\", \"--api-key=${vault:arg.3}\", \"${vault:arg.4}\""),
        "{text}"
    );
    let value = |kind: &str| {
        imported
            .moved
            .iter()
            .find(|m| m.kind == kind)
            .map(|m| m.value.expose().to_owned())
    };
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("u:p@ss");
    assert_eq!(
        value("header.Authorization"),
        Some(format!("Basic {basic}"))
    );
    assert_eq!(value("url.apiKey").as_deref(), Some("k+1"));
    assert_eq!(value("arg.1").as_deref(), Some("t-123"));
    assert_eq!(value("arg.3").as_deref(), Some("zz9"));
    assert_eq!(value("arg.4").as_deref(), Some("ghp_abc"));
    assert_eq!(value("env.LOG").as_deref(), Some("sk-looks-like-a-key"));
    // What the configuration refers to is what was moved, and it validates.
    let mut problems = Vec::new();
    let config = validate(&imported.config, &Overrides::default(), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    for upstream in &config.expect("valid").upstreams {
        for kind in super::vault_kinds(upstream) {
            assert!(value(&kind).is_some(), "{kind} was moved");
        }
    }
}

#[test]
fn import_refuses_what_it_cannot_map() {
    assert!(matches!(
        import_mcp_servers("{}"),
        Err(ImportError::NoServers)
    ));
    assert!(import_mcp_servers(r#"{"mcpServers": {"x": {"type": "sse"}}}"#).is_err());
    assert!(import_mcp_servers("not json").is_err());
}

#[test]
fn auth_section_with_providers_and_mail() {
    let config = check(
        r#"
[auth]
session_idle = "1h"
session_absolute = "12h"

[auth.oidc.corp]
display_name = "Corp SSO"
issuer = "https://login.example.com/"
client_id = "warrant"
client_secret = { env = "PATH" }
allowed_domains = ["@Example.com"]
admin_groups = ["warrant-admins"]

[auth.oidc.local]
issuer = "http://127.0.0.1:9999"
client_id = "public-client"

[auth.email]
smtp_host = "127.0.0.1"
smtp_port = 2525
tls = "none"
from = "Warrant <warrant@example.com>"
link_ttl = "10m"
"#,
    )
    .expect("valid");
    let auth = &config.auth;
    assert_eq!(auth.session_idle, Duration::from_secs(3600));
    assert_eq!(auth.session_absolute, Duration::from_secs(12 * 3600));
    assert_eq!(auth.oidc.len(), 2);
    let corp = &auth.oidc[0];
    assert_eq!(corp.name, "corp");
    assert_eq!(corp.display_name, "Corp SSO");
    assert_eq!(corp.allowed_domains, ["example.com"]);
    assert_eq!(corp.scopes, ["email", "profile"]);
    assert!(corp.client_secret.is_some());
    assert!(corp.provision);
    assert!(!corp.trust_email, "emails are not trusted unless said so");
    assert!(auth.oidc[1].client_secret.is_none(), "a public client");
    let email = auth.email.as_ref().expect("email configured");
    assert_eq!(email.smtp_port, 2525);
    assert_eq!(email.link_ttl, Duration::from_secs(600));
    assert_eq!(email.per_address_limit, 5);
}

#[test]
fn auth_problems_are_all_reported() {
    let report = check(
        r#"
[auth]
session_idle = "2d"
session_absolute = "1d"

[auth.oidc."bad name"]
issuer = "http://login.example.com"
client_secret = "inline-secret"

[auth.email]
tls = "ssl"
password = { env = "WARRANT_TEST_UNSET_VARIABLE" }
"#,
    )
    .expect_err("invalid");
    let text = report.to_string();
    for expected in [
        "auth.session_idle",
        "provider names use only",
        "must be an https URL",
        "auth.oidc.bad name.client_id",
        "write secrets by reference",
        "auth.email.smtp_host",
        "\"ssl\" is not one of none, starttls, tls",
        "auth.email.from",
        "WARRANT_TEST_UNSET_VARIABLE",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("inline-secret"), "a secret is never echoed");
}

#[test]
fn unknown_auth_keys_are_refused() {
    let report = check("[auth.oidc.x]\nissuer = \"https://a.example\"\nclient_id = \"c\"\nclient_secrets = \"x\"\n")
        .expect_err("unknown key");
    assert!(report.to_string().contains("client_secrets"), "{report}");
}

#[test]
fn secret_key_must_be_32_bytes_of_base64() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let ok = check(&format!(
        "[server]\nsecret_key = \"${{WARRANT_TEST_KEY_OK:-{key}}}\"\n"
    ))
    .expect("valid");
    let secret = ok.server.secret_key.expect("set");
    assert_eq!(decode_key_32(secret.expose()).map(|k| k[31]), Some(31));

    let report = check("[server]\nsecret_key = \"${WARRANT_TEST_KEY_SHORT:-c2hvcnQ=}\"\n")
        .expect_err("too short");
    let text = report.to_string();
    assert!(text.contains("must be 32 random bytes"), "{text}");
    assert!(
        !text.contains("c2hvcnQ"),
        "the value is never printed: {text}"
    );
}

#[test]
fn policy_default_ceiling_is_a_risk_class() {
    assert_eq!(
        check("").expect("valid").policy.default_ceiling,
        DEFAULT_CEILING
    );
    let config = check("[policy]\ndefault_ceiling = \"medium\"\n").expect("valid");
    assert_eq!(
        config.policy.default_ceiling,
        warrant_consent::token::Risk::Medium
    );
    let report = check("[policy]\ndefault_ceiling = \"extreme\"\n").expect_err("not a class");
    assert!(
        report.to_string().contains("policy.default_ceiling"),
        "{report}"
    );
    let report = check("[policy]\nceiling = \"low\"\n").expect_err("unknown key");
    assert!(report.to_string().contains("ceiling"), "{report}");
}

#[test]
fn policy_approval_timeout_is_a_bounded_duration() {
    assert_eq!(
        check("").expect("valid").policy.approval_timeout,
        Duration::from_secs(300)
    );
    let config = check("[policy]\napproval_timeout = \"90s\"\n").expect("valid");
    assert_eq!(config.policy.approval_timeout, Duration::from_secs(90));
    for bad in ["\"soon\"", "\"0s\"", "\"500ms\"", "\"2d\""] {
        let report = check(&format!("[policy]\napproval_timeout = {bad}\n"))
            .expect_err("not a valid timeout");
        assert!(
            report.to_string().contains("policy.approval_timeout"),
            "{bad}: {report}"
        );
    }
}
