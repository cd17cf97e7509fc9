//! Remembered decisions: a call allowed once is answered without the Datalog only when
//! the answer cannot differ (every block Warrant's, not past the earliest end, the same
//! resource, tool, risk, ceiling and constrained arguments). The property test in
//! `props.rs` compares cached and uncached decisions on random tokens and calls.

use std::collections::HashMap;

use biscuit_auth::builder::Term;
use biscuit_auth::{BlockBuilder, UnverifiedBiscuit};

use super::super::authorize::authorize_uncached;
use super::*;

fn verified(f: &Fixture, token: &str) -> Arc<VerifiedToken> {
    f.verifier.verify(token, T0).expect("verifies")
}

/// Appends a block whose context claims to be Warrant's `claimed` restriction but
/// whose checks are `source` (with `{at}` bound to `at`).
fn append_lying_block(token: &str, claimed: &Restriction, source: &str, at: i64) -> String {
    let params = HashMap::from([(
        "at".to_owned(),
        Term::Date(u64::try_from(at).expect("after 1970")),
    )]);
    let context = serde_json::to_string(claimed).expect("json");
    let block = BlockBuilder::new()
        .code_with_params(source, params, HashMap::new())
        .expect("block")
        .context(format!("warrant/v1 {context}"));
    UnverifiedBiscuit::from_base64(token)
        .expect("parse")
        .append(block)
        .expect("append")
        .to_base64()
        .expect("b64")
}

#[tokio::test]
async fn tokens_warrant_writes_remember_their_decisions() {
    let f = fixture().await;
    let token = f.mint(Restriction {
        deny: patterns(&["github.delete_*"]),
        max_risk: Some(Risk::High),
        expires_at: Some(T0 + 500),
        args: vec![
            ArgConstraint::parse("path=prefix:/srv/").expect("valid"),
            ArgConstraint::parse("mode=oneof:rw,ro,a b,0").expect("valid"),
        ],
        ..consent(&["github.*", "fs.read*file", "*_user"])
    });
    assert!(verified(&f, &token).remembers_decisions());
    let narrowed = attenuate(
        &token,
        &Restriction {
            allow: Some(patterns(&["fs.*"])),
            expires_at: Some(T0 + 300),
            args: vec![ArgConstraint::parse("owner=me").expect("valid")],
            ..Restriction::default()
        },
    )
    .expect("attenuate");
    assert!(verified(&f, &narrowed).remembers_decisions());
}

#[tokio::test]
async fn a_block_whose_checks_are_not_its_description_turns_the_cache_off() {
    let f = fixture().await;
    let token = f.mint(consent(&["fs.*"]));
    // It says "nothing more" but holds a not-before check: a call allowed later must
    // never be taken for one allowed earlier, and the other way round.
    let lying = append_lying_block(
        &token,
        &Restriction {
            max_risk: Some(Risk::Critical),
            ..Restriction::default()
        },
        "check if time($time), $time >= {at};",
        T0 + 10,
    );
    let v = verified(&f, &lying);
    assert!(!v.remembers_decisions());
    let at = |now| CallFacts {
        now,
        ..call("fs", "read")
    };
    assert!(authorize(&v, &at(T0 + 20)).allow);
    assert!(authorize(&v, &at(T0 + 20)).allow);
    assert!(!authorize(&v, &at(T0 + 5)).allow, "not before T0 + 10");

    // It hides an earlier end: the cache would otherwise outlive it.
    let hidden_end = append_lying_block(
        &token,
        &Restriction {
            max_risk: Some(Risk::Critical),
            ..Restriction::default()
        },
        "check if time($time), $time <= {at};",
        T0 + 10,
    );
    let v = verified(&f, &hidden_end);
    assert!(!v.remembers_decisions());
    assert!(authorize(&v, &at(T0 + 5)).allow);
    assert!(!authorize(&v, &at(T0 + 11)).allow);

    // A block without a Warrant description at all.
    let other = UnverifiedBiscuit::from_base64(&token)
        .expect("parse")
        .append(
            BlockBuilder::new()
                .code("check if tool($tool), $tool != \"write\";")
                .expect("block"),
        )
        .expect("append")
        .to_base64()
        .expect("b64");
    assert!(!verified(&f, &other).remembers_decisions());
}

#[tokio::test]
async fn a_remembered_allow_ends_at_the_earliest_end_in_the_token() {
    let f = fixture().await;
    let token = attenuate(
        &f.mint(consent(&["fs.*"])),
        &Restriction {
            expires_at: Some(T0 + 5),
            ..Restriction::default()
        },
    )
    .expect("attenuate");
    let v = verified(&f, &token);
    let at = |now| CallFacts {
        now,
        ..call("fs", "read")
    };
    assert!(authorize(&v, &at(T0 + 1)).allow);
    assert!(
        authorize(&v, &at(T0 + 5)).allow,
        "remembered, still in time"
    );
    let late = authorize(&v, &at(T0 + 6));
    assert!(!late.allow, "past the narrowing's end: {late:?}");
    assert_eq!(late, authorize_uncached(&v, &at(T0 + 6)));
}

#[tokio::test]
async fn only_constrained_arguments_and_the_call_itself_make_the_key() {
    let f = fixture().await;
    let token = f.mint(Restriction {
        args: vec![ArgConstraint::parse("path=prefix:/srv/").expect("valid")],
        max_risk: Some(Risk::Medium),
        ..consent(&["fs.*"])
    });
    let v = verified(&f, &token);
    let with = |path: &str, other: &str| CallFacts {
        args: [
            ("path".to_owned(), path.to_owned()),
            ("other".to_owned(), other.to_owned()),
        ]
        .into(),
        ..call("fs", "read")
    };
    assert!(authorize(&v, &with("/srv/a", "x")).allow);
    assert!(authorize(&v, &with("/srv/a", "y")).allow);
    assert!(!authorize(&v, &with("/etc/passwd", "x")).allow);
    let no_path = CallFacts {
        args: [("other".to_owned(), "x".to_owned())].into(),
        ..call("fs", "read")
    };
    assert!(!authorize(&v, &no_path).allow, "a missing argument refuses");
    let risky = CallFacts {
        risk: Risk::High,
        ..with("/srv/a", "x")
    };
    assert!(!authorize(&v, &risky).allow, "the risk is part of the key");
    let capped = CallFacts {
        ceiling: Some(Risk::Low),
        risk: Risk::Medium,
        ..with("/srv/a", "x")
    };
    assert!(authorize(&v, &with("/srv/a", "x")).allow);
    assert!(
        !authorize(&v, &capped).allow,
        "the ceiling is part of the key"
    );
    let elsewhere = CallFacts {
        resource: "http://elsewhere.example/mcp".into(),
        ..with("/srv/a", "x")
    };
    assert!(
        !authorize(&v, &elsewhere).allow,
        "the resource is part of the key"
    );
    assert!(!authorize(&v, &call("github", "read")).allow);
}

#[tokio::test]
async fn many_distinct_calls_stay_bounded_and_correct() {
    let f = fixture().await;
    let token = f.mint(Restriction {
        args: vec![ArgConstraint::parse("path=prefix:/srv/").expect("valid")],
        ..consent(&["fs.*"])
    });
    let v = verified(&f, &token);
    for i in 0..500 {
        let c = CallFacts {
            args: [("path".to_owned(), format!("/srv/{}", i % 97))].into(),
            ..call("fs", &format!("tool{}", i % 13))
        };
        assert_eq!(authorize(&v, &c), authorize_uncached(&v, &c));
    }
}
