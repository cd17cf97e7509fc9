//! Golden vectors: a fixed key pair and fixed facts give exactly the stored token, and
//! the stored token verifies and prints as the stored Datalog. A change here is a
//! change of the token format: existing tokens would stop verifying or mean something
//! else. Regenerate (after deciding that is intended) with
//! `WARRANT_UPDATE_GOLDEN=1 cargo test -p warrant-consent golden`.

use std::path::PathBuf;

use biscuit_auth::builder::Algorithm;
use biscuit_auth::{Biscuit, KeyPair, PrivateKey};

use super::super::{datalog, mint};
use super::*;

fn key(byte: u8) -> KeyPair {
    KeyPair::from(&PrivateKey::from_bytes(&[byte; 32], Algorithm::Ed25519).expect("key"))
}

fn golden_request() -> MintRequest {
    MintRequest {
        user: "018f6a2e-7b3c-7def-8abc-0123456789ab".into(),
        agent: "https://claude.ai/oauth/claude-code-client-metadata".into(),
        grant: "grant-018f6a2e".into(),
        audience: "https://warrant.example.com/mcp".into(),
        expires_at: 1_900_000_600,
        calls_per_hour: None,
        consent: Restriction {
            allow: Some(patterns(&["github.*", "fs.read_*", "*_user"])),
            deny: patterns(&["github.delete_*"]),
            max_risk: Some(Risk::High),
            args: vec![ArgConstraint {
                tools: patterns(&["fs.*"]),
                ..ArgConstraint::parse("path=prefix:/srv/data/").expect("valid")
            }],
            expires_at: Some(1_902_000_000),
        },
    }
}

fn golden_narrowing() -> Restriction {
    Restriction {
        allow: Some(patterns(&["github.get_*", "fs.read_file"])),
        args: vec![ArgConstraint::parse("mode=oneof:r,ro").expect("valid")],
        expires_at: Some(1_900_000_300),
        ..Restriction::default()
    }
}

fn golden_token() -> Biscuit {
    let token = mint::build(&key(1), 7, &golden_request(), Some([&key(2), &key(3)])).expect("mint");
    token
        .append_with_keypair(
            &key(4),
            datalog::restriction(&golden_narrowing()).expect("block"),
        )
        .expect("append")
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/token/tests/golden")
        .join(name)
}

fn check(name: &str, actual: &str) {
    let file = path(name);
    if std::env::var("WARRANT_UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&file, actual).expect("write golden file");
    }
    let expected = std::fs::read_to_string(&file).expect("golden file");
    assert_eq!(
        actual,
        expected,
        "{} differs from the token built now",
        file.display()
    );
}

#[test]
fn fixed_keys_and_facts_give_the_stored_token() {
    let token = golden_token();
    check("token.b64", &(token.to_base64().expect("b64") + "\n"));
    check("token.datalog", &(token.print() + "\n"));
}

#[test]
fn the_stored_token_verifies_and_decides_as_it_always_did() {
    let stored = std::fs::read_to_string(path("token.b64")).expect("golden token");
    let biscuit = Biscuit::from_base64(stored.trim(), key(1).public()).expect("verifies");
    assert_eq!(biscuit.root_key_id(), Some(7));
    let datalog = std::fs::read_to_string(path("token.datalog")).expect("golden datalog");
    assert_eq!(biscuit.print() + "\n", datalog);
    let verified = VerifiedToken::new(biscuit).expect("identity");
    assert_eq!(
        verified.identity.user,
        "018f6a2e-7b3c-7def-8abc-0123456789ab"
    );
    assert_eq!(verified.identity.expires_at, 1_900_000_600);
    assert_eq!(
        verified
            .identity
            .chain
            .iter()
            .map(|b| b.kind)
            .collect::<Vec<_>>(),
        [
            BlockKind::Authority,
            BlockKind::Consent,
            BlockKind::Narrowing
        ]
    );
    let at = |server: &str, tool: &str, args: &[(&str, &str)]| CallFacts {
        now: 1_900_000_000,
        resource: "https://warrant.example.com/mcp".into(),
        server: server.into(),
        tool: tool.into(),
        risk: Risk::Low,
        ceiling: None,
        args: args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        person: None,
    };
    let cases = [
        (at("github", "get_user", &[("mode", "r")]), true),
        (at("github", "get_user", &[]), false),
        (at("github", "create_issue", &[("mode", "r")]), false),
        (
            at(
                "fs",
                "read_file",
                &[("mode", "ro"), ("path", "/srv/data/x")],
            ),
            true,
        ),
        (
            at("fs", "read_file", &[("mode", "ro"), ("path", "/etc/x")]),
            false,
        ),
        (at("github", "delete_user", &[("mode", "r")]), false),
        (
            CallFacts {
                now: 1_900_000_301,
                ..at("github", "get_user", &[("mode", "r")])
            },
            false,
        ),
        (
            CallFacts {
                risk: Risk::Critical,
                ..at("github", "get_user", &[("mode", "r")])
            },
            false,
        ),
    ];
    for (call, expected) in cases {
        let decision = authorize(&verified, &call);
        assert_eq!(decision.allow, expected, "{call:?}: {decision:?}");
    }
}
