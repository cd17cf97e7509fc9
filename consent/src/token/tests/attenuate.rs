//! Attenuation: a narrowed token allows less, never more.

use biscuit_auth::{BlockBuilder, UnverifiedBiscuit};

use super::*;

fn narrow(token: &str, r: Restriction) -> String {
    attenuate(token, &r).expect("attenuate")
}

fn tools(list: &[&str]) -> Restriction {
    Restriction {
        allow: Some(patterns(list)),
        ..Restriction::default()
    }
}

#[tokio::test]
async fn a_narrowing_removes_tools_and_is_described_in_the_chain() {
    let f = fixture().await;
    let parent = f.mint(consent(&["github.*", "fs.*"]));
    let child = narrow(&parent, tools(&["github.get_*"]));
    assert!(f.decide(&child, &call("github", "get_user")).allow);
    let no = f.decide(&child, &call("github", "create_issue"));
    assert!(!no.allow);
    assert_eq!(
        no.reason,
        "the narrowing in block 2 of the token does not include tool github.create_issue (it allows github.get_*)"
    );
    assert!(!f.decide(&child, &call("fs", "read")).allow);
    assert!(
        f.decide(&parent, &call("fs", "read")).allow,
        "the parent is unchanged"
    );
    let id = &f.verifier.verify(&child, T0).expect("verify").identity;
    assert_eq!(id.chain.len(), 3);
    assert_eq!(id.chain[2].kind, BlockKind::Narrowing);
    assert_eq!(id.chain[2].restriction, Some(tools(&["github.get_*"])));
    assert_eq!(id.user, "user-alice", "the identity is the parent's");
}

#[tokio::test]
async fn a_narrowing_cannot_widen() {
    let f = fixture().await;
    let parent = f.mint(Restriction {
        deny: patterns(&["github.delete_*"]),
        max_risk: Some(Risk::Medium),
        ..consent(&["github.*"])
    });
    // Asking for everything in a later block changes nothing.
    let wide = narrow(
        &parent,
        Restriction {
            max_risk: Some(Risk::Critical),
            expires_at: Some(T0 + 1_000_000),
            ..tools(&["*"])
        },
    );
    assert!(!f.decide(&wide, &call("fs", "read")).allow);
    assert!(!f.decide(&wide, &call("github", "delete_repo")).allow);
    assert!(
        !f.decide(
            &wide,
            &CallFacts {
                risk: Risk::High,
                ..call("github", "x")
            }
        )
        .allow
    );
    let verified = f.verifier.verify(&wide, T0).expect("verify");
    assert!(
        !authorize(
            &verified,
            &CallFacts {
                now: T0 + 601,
                ..call("github", "x")
            }
        )
        .allow
    );
    assert!(matches!(
        f.verifier.verify(&wide, T0 + 601),
        Err(TokenError::Expired(_))
    ));

    // Nor does a hand-written block that states facts and policies: block facts are
    // seen only by that block's own checks, and blocks cannot hold policies.
    let forged = BlockBuilder::new()
        .code(format!(
            "user(\"mallory\"); server(\"fs\"); tool(\"read\"); risk(0); resource(\"{AUDIENCE}\"); \
             time(2000-01-01T00:00:00Z); expires(2100-01-01T00:00:00Z); check if true;"
        ))
        .expect("datalog");
    let appended = UnverifiedBiscuit::from_base64(&parent)
        .and_then(|t| t.append(forged))
        .and_then(|t| t.to_base64())
        .expect("append");
    let decision = f.decide(&appended, &call("fs", "read"));
    assert!(!decision.allow, "{decision:?}");
    let verified = f.verifier.verify(&appended, T0).expect("verify");
    assert_eq!(verified.identity.user, "user-alice");
    assert_eq!(verified.identity.chain[2].kind, BlockKind::Other);
    assert!(
        BlockBuilder::new().code("allow if true;").is_err(),
        "a block cannot hold a policy"
    );
}

#[tokio::test]
async fn shorter_life_risk_and_argument_narrowings() {
    let f = fixture().await;
    let parent = f.mint(consent(&["*"]));
    let child = narrow(
        &parent,
        Restriction {
            expires_at: Some(T0 + 60),
            max_risk: Some(Risk::Low),
            args: vec![ArgConstraint::parse("path=prefix:/srv/").expect("valid")],
            ..Restriction::default()
        },
    );
    let ok = CallFacts {
        args: [("path".to_owned(), "/srv/a".to_owned())].into(),
        ..call("fs", "read")
    };
    assert!(f.decide(&child, &ok).allow);
    let late = f.decide(
        &child,
        &CallFacts {
            now: T0 + 61,
            ..ok.clone()
        },
    );
    assert_eq!(
        late.reason,
        format!(
            "the narrowing in block 2 of the token expired at {} (Unix seconds)",
            T0 + 60
        )
    );
    let risky = f.decide(
        &child,
        &CallFacts {
            risk: Risk::Medium,
            ..ok.clone()
        },
    );
    assert!(
        risky
            .reason
            .contains("above what the narrowing in block 2 of the token allows (at most low)"),
        "{}",
        risky.reason
    );
    let outside = f.decide(
        &child,
        &CallFacts {
            args: [("path".to_owned(), "/etc".to_owned())].into(),
            ..ok.clone()
        },
    );
    assert!(
        outside
            .reason
            .contains("argument \"path\" must start with \"/srv/\""),
        "{}",
        outside.reason
    );

    // Chains: each narrowing adds to the previous ones.
    let grandchild = narrow(&child, tools(&["fs.read"]));
    assert!(f.decide(&grandchild, &ok).allow);
    assert!(
        !f.decide(
            &grandchild,
            &CallFacts {
                tool: "write".into(),
                ..ok.clone()
            }
        )
        .allow
    );
    assert!(
        !f.decide(
            &grandchild,
            &CallFacts {
                risk: Risk::Medium,
                ..ok
            }
        )
        .allow
    );
    assert_eq!(
        f.verifier
            .verify(&grandchild, T0)
            .expect("verify")
            .identity
            .chain
            .len(),
        4
    );
}

#[test]
fn attenuation_needs_a_token_and_a_restriction() {
    assert!(matches!(
        attenuate(
            "not a token",
            &Restriction {
                max_risk: Some(Risk::Low),
                ..Restriction::default()
            }
        ),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        attenuate("AAAA", &Restriction::default()),
        Err(TokenError::Invalid(_))
    ));
}
