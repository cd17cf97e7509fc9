//! mint → verify → authorize, one kind of check at a time.

use super::*;

fn allowed(f: &Fixture, token: &str, call: &CallFacts) -> bool {
    f.decide(token, call).allow
}

#[tokio::test]
async fn an_allowed_tool_is_allowed_and_others_are_refused_with_a_reason() {
    let f = fixture().await;
    let token = f.mint(consent(&["github.create_issue", "github.get_*"]));
    let ok = f.decide(&token, &call("github", "create_issue"));
    assert!(ok.allow, "{ok:?}");
    assert!(ok.failed_checks.is_empty());
    assert!(
        ok.reason.is_empty(),
        "nothing is formatted for an allowed call: {ok:?}"
    );
    let verified = f.verifier.verify(&token, T0 + 1).expect("verifies");
    let described = ok.describe(&verified, "github", "create_issue");
    assert!(
        described.contains("grant-1") && described.contains("github.create_issue"),
        "{described}"
    );

    let no = f.decide(&token, &call("github", "delete_repo"));
    assert!(!no.allow);
    assert!(
        no.reason
            .starts_with("the grant does not include tool github.delete_repo"),
        "{}",
        no.reason
    );
    assert!(
        no.reason.contains("github.create_issue, github.get_*"),
        "{}",
        no.reason
    );
    assert_eq!(no.failed_checks.len(), 1, "{:?}", no.failed_checks);
    assert!(no.failed_checks[0].starts_with("block 1: check if server($server), tool($tool)"));
}

#[tokio::test]
async fn wildcards_match_whole_names() {
    let f = fixture().await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str, bool)]);
    let cases: &[Case<'_>] = &[
        ("*", &[("github", "x", true), ("fs", "read_file", true)]),
        (
            "github.*",
            &[("github", "delete_repo", true), ("gitlab", "x", false)],
        ),
        (
            "get_*",
            &[
                ("github", "get_user", true),
                ("fs", "get_", true),
                ("fs", "forget_x", false),
            ],
        ),
        (
            "*_user",
            &[("idp", "get_user", true), ("idp", "get_users", false)],
        ),
        (
            "*.list_*",
            &[("a", "list_x", true), ("a", "xlist_x", false)],
        ),
        (
            "fs.read*file",
            &[
                ("fs", "read_file", true),
                ("fs", "readfile", true),
                ("fs", "read_files", false),
                ("fsx", "read_file", false),
            ],
        ),
        ("fs.a.b*", &[("fs", "a.bc", true), ("fs", "aXbc", false)]),
        ("fs.*(x)*", &[("fs", "1(x)2", true), ("fs", "1x2", false)]),
        (
            "github.create_issue",
            &[
                ("github", "create_issue", true),
                ("github", "create_issues", false),
                ("github", "create_issu", false),
            ],
        ),
    ];
    for (pattern, calls) in cases {
        let token = f.mint(consent(&[pattern]));
        for (server, tool, expected) in *calls {
            let decision = f.decide(&token, &call(server, tool));
            assert_eq!(
                decision.allow, *expected,
                "pattern {pattern} on {server}.{tool}: {decision:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_empty_allow_list_allows_nothing() {
    let f = fixture().await;
    let token = f.mint(consent(&[]));
    let no = f.decide(&token, &call("github", "get_user"));
    assert!(!no.allow);
    assert!(no.reason.contains("it allows no tools"), "{}", no.reason);
}

#[tokio::test]
async fn deny_wins_over_allow() {
    let f = fixture().await;
    let token = f.mint(Restriction {
        deny: patterns(&["github.delete_*", "*_admin"]),
        ..consent(&["github.*", "fs.*"])
    });
    assert!(allowed(&f, &token, &call("github", "create_issue")));
    let no = f.decide(&token, &call("github", "delete_repo"));
    assert!(!no.allow);
    assert_eq!(no.reason, "the grant denies tool github.delete_repo");
    assert!(
        no.failed_checks[0].starts_with("block 1: reject if"),
        "{:?}",
        no.failed_checks
    );
    assert!(!allowed(&f, &token, &call("fs", "make_admin")));
    assert!(allowed(&f, &token, &call("fs", "admin_list")));
}

#[tokio::test]
async fn max_risk_and_the_live_ceiling() {
    let f = fixture().await;
    let token = f.mint(Restriction {
        max_risk: Some(Risk::Medium),
        ..consent(&["*"])
    });
    for (risk, expected) in [
        (Risk::Low, true),
        (Risk::Medium, true),
        (Risk::High, false),
        (Risk::Critical, false),
    ] {
        let decision = f.decide(
            &token,
            &CallFacts {
                risk,
                ..call("github", "x")
            },
        );
        assert_eq!(decision.allow, expected, "{risk}: {decision:?}");
        if !expected {
            assert_eq!(
                decision.reason,
                format!(
                    "tool github.x is {risk} risk, above what the grant allows (at most medium)"
                )
            );
        }
    }
    let capped = CallFacts {
        risk: Risk::Medium,
        ceiling: Some(Risk::Low),
        ..call("github", "x")
    };
    let no = f.decide(&token, &capped);
    assert!(!no.allow);
    assert!(
        no.reason
            .contains("above the ceiling of alice@example.com (low)"),
        "{}",
        no.reason
    );
    assert!(!no.reason.contains("user-alice"), "{}", no.reason);
    // A person the ceiling view has not read yet is still not named by id.
    let unnamed = f.decide(
        &token,
        &CallFacts {
            person: None,
            ..capped
        },
    );
    assert!(
        unnamed.reason.contains("above the person's ceiling (low)")
            && !unnamed.reason.contains("user-alice"),
        "{}",
        unnamed.reason
    );
    assert!(
        no.failed_checks[0].starts_with("gateway: check if risk"),
        "{:?}",
        no.failed_checks
    );
}

fn with_args(mut call: CallFacts, args: &[(&str, &str)]) -> CallFacts {
    call.args = args
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    call
}

#[tokio::test]
async fn argument_constraints() {
    let f = fixture().await;
    let token = f.mint(Restriction {
        args: vec![
            ArgConstraint::parse("path=prefix:/tmp/").expect("valid"),
            ArgConstraint::parse("mode=oneof:r,ro").expect("valid"),
            ArgConstraint {
                tools: patterns(&["github.create_issue"]),
                ..ArgConstraint::parse("repo=acme/site").expect("valid")
            },
        ],
        ..consent(&["*"])
    });
    let fs = |args: &[(&str, &str)]| with_args(call("fs", "read_file"), args);
    assert!(allowed(
        &f,
        &token,
        &fs(&[("path", "/tmp/a"), ("mode", "r")])
    ));
    assert!(allowed(
        &f,
        &token,
        &fs(&[("path", "/tmp/"), ("mode", "ro"), ("x", "1")])
    ));

    let no = f.decide(&token, &fs(&[("path", "/etc/passwd"), ("mode", "r")]));
    assert!(!no.allow);
    assert_eq!(
        no.reason,
        "the grant requires: argument \"path\" must start with \"/tmp/\""
    );
    let no = f.decide(&token, &fs(&[("path", "/tmp/a"), ("mode", "rw")]));
    assert_eq!(
        no.reason,
        "the grant requires: argument \"mode\" must be one of [\"r\", \"ro\"]"
    );
    let no = f.decide(&token, &fs(&[("mode", "r")]));
    assert!(!no.allow, "a constrained argument must be present");
    assert!(no.reason.contains("\"path\""), "{}", no.reason);

    // Scoped to one tool: required there, ignored elsewhere.
    let issue = |args: &[(&str, &str)]| with_args(call("github", "create_issue"), args);
    let base = [("path", "/tmp/x"), ("mode", "r")];
    assert!(allowed(
        &f,
        &token,
        &issue(&[base[0], base[1], ("repo", "acme/site")])
    ));
    let no = f.decide(&token, &issue(&[base[0], base[1], ("repo", "acme/other")]));
    assert!(!no.allow);
    assert!(
        no.reason
            .contains("argument \"repo\" must be \"acme/site\" (for github.create_issue)"),
        "{}",
        no.reason
    );
    assert!(!allowed(&f, &token, &issue(&base)));
    assert!(allowed(
        &f,
        &token,
        &with_args(call("github", "get_user"), &base)
    ));
}

#[test]
fn call_arguments_from_json() {
    let json = serde_json::json!({"s": "text", "n": 42, "f": 1.5, "b": true, "z": null, "a": [1], "o": {}});
    let args = call_args(json.as_object().expect("object"));
    let expected: Vec<(&str, &str)> = vec![("b", "true"), ("f", "1.5"), ("n", "42"), ("s", "text")];
    assert_eq!(
        args.iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        expected
    );
}

#[tokio::test]
async fn the_access_token_and_the_grant_expire() {
    let f = fixture().await;
    let token = f.mint(Restriction {
        expires_at: Some(T0 + 100),
        ..consent(&["*"])
    });
    assert!(allowed(
        &f,
        &token,
        &CallFacts {
            now: T0 + 100,
            ..call("a", "b")
        }
    ));
    let no = f.decide(
        &token,
        &CallFacts {
            now: T0 + 101,
            ..call("a", "b")
        },
    );
    assert!(!no.allow);
    assert_eq!(
        no.reason,
        format!(
            "the grant expired at {} (Unix seconds); the user must approve this agent again",
            T0 + 100
        )
    );

    // The access token's own expiry is in the authority block (T0 + 600): authorize
    // refuses it, and verify refuses it before that.
    let late = T0 + 601;
    let verified = f.verifier.verify(&token, T0).expect("verifies now");
    let no = authorize(
        &verified,
        &CallFacts {
            now: late,
            ..call("a", "b")
        },
    );
    assert!(!no.allow);
    assert!(
        no.reason.contains("the access token expired at"),
        "{}",
        no.reason
    );
    assert!(matches!(
        f.verifier.verify(&token, late),
        Err(TokenError::Expired(at)) if at == T0 + 600
    ));
}

#[tokio::test]
async fn the_wrong_audience_is_refused() {
    let f = fixture().await;
    let token = f.mint(consent(&["*"]));
    let other = CallFacts {
        resource: "https://elsewhere.example/mcp".into(),
        ..call("a", "b")
    };
    let identity = &f.verifier.verify(&token, T0).expect("verify").identity;
    assert!(identity.require_audience(AUDIENCE).is_ok());
    assert!(matches!(
        identity.require_audience("https://elsewhere.example/mcp"),
        Err(TokenError::WrongAudience { .. })
    ));
    let no = f.decide(&token, &other);
    assert!(!no.allow);
    assert_eq!(
        no.reason,
        format!(
            "the token is for {AUDIENCE}, not for https://elsewhere.example/mcp; get a token for this resource"
        )
    );
}

#[tokio::test]
async fn every_failing_check_is_reported_and_decisions_are_plain_data() {
    let f = fixture().await;
    let token = f.mint(Restriction {
        max_risk: Some(Risk::Low),
        ..consent(&["fs.*"])
    });
    let bad = CallFacts {
        risk: Risk::High,
        resource: "http://other/mcp".into(),
        ..call("github", "x")
    };
    let first = f.decide(&token, &bad);
    assert!(!first.allow);
    assert_eq!(first.failed_checks.len(), 3, "{first:?}");
    for part in [
        "the token is for http://localhost:8080/mcp, not for http://other/mcp",
        "the grant does not include tool github.x (it allows fs.*)",
        "tool github.x is high risk, above what the grant allows (at most low)",
    ] {
        assert!(
            first.reason.contains(part),
            "{part:?} missing in {}",
            first.reason
        );
    }
    // Pure: the same inputs give the same decision, which survives JSON.
    assert_eq!(f.decide(&token, &bad), first);
    let json = serde_json::to_string(&first).expect("serialize");
    let back: Decision = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, first);
}

#[tokio::test]
async fn values_are_bound_never_spliced_into_datalog() {
    let f = fixture().await;
    let evil = r#"x"); check if true; allow if true; user("y"#;
    let request = MintRequest {
        user: evil.into(),
        agent: "agent\"\n".into(),
        ..request(Restriction {
            deny: patterns(&[r#"github.a"b"#]),
            args: vec![ArgConstraint::parse(r#"p"=q\"#).expect("valid")],
            ..consent(&[r#"github.*") || true || ("#])
        })
    };
    let token = mint(&f.keys, &request, T0).expect("mint");
    let verified = f.verifier.verify(&token, T0).expect("verify");
    assert_eq!(verified.identity.user, evil);
    assert_eq!(verified.identity.agent, "agent\"\n");
    // The odd pattern is a literal server name: nothing else is allowed.
    let no = authorize(&verified, &call("github", "x"));
    assert!(!no.allow, "{no:?}");
    for (block, checks, rejects) in [(0, 2, 0), (1, 2, 1)] {
        let source = verified.biscuit.print_block_source(block).expect("block");
        let starts = |what: &str| source.lines().filter(|l| l.starts_with(what)).count();
        assert_eq!(starts("check if"), checks, "{source}");
        assert_eq!(starts("reject if"), rejects, "{source}");
        assert_eq!(starts("allow if"), 0, "{source}");
    }
}

#[tokio::test]
async fn minting_refuses_what_cannot_be_a_valid_token() {
    let f = fixture().await;
    let too_long = MintRequest {
        expires_at: T0 + f.keys.max_lifetime_secs() + 1,
        ..request(consent(&["*"]))
    };
    assert!(matches!(
        mint(&f.keys, &too_long, T0),
        Err(TokenError::Invalid(_))
    ));
    let past = MintRequest {
        expires_at: T0,
        ..request(consent(&["*"]))
    };
    assert!(matches!(
        mint(&f.keys, &past, T0),
        Err(TokenError::Invalid(_))
    ));
    let no_list = request(Restriction::default());
    assert!(matches!(
        mint(&f.keys, &no_list, T0),
        Err(TokenError::Invalid(_))
    ));
    let no_user = MintRequest {
        user: String::new(),
        ..request(consent(&["*"]))
    };
    assert!(matches!(
        mint(&f.keys, &no_user, T0),
        Err(TokenError::Invalid(_))
    ));
}
