//! Property tests: random tool patterns, random consents and random chains of
//! narrowings. The Datalog decision equals the Rust model (every block must allow the
//! call), so no allowed call is outside any block's allowance; every refusal has a reason.

use biscuit_auth::builder::Algorithm;
use biscuit_auth::{Biscuit, KeyPair, PrivateKey};
use proptest::prelude::*;

use super::super::authorize::authorize_uncached;
use super::super::mint;
use super::*;

const SERVERS: &[&str] = &["github", "fs", "db"];
/// Pieces of tool names, with regex metacharacters and dots among them.
const PIECES: &[&str] = &[
    "get_", "list_", "delete_", "user", "repo", "a.b", "(x)", "+", "_",
];

fn root() -> KeyPair {
    KeyPair::from(&PrivateKey::from_bytes(&[9; 32], Algorithm::Ed25519).expect("key"))
}

fn tool_name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 1..4).prop_map(|p| p.concat())
}

/// A pattern text: a server part and a tool part of pieces with stars among them.
fn pattern() -> impl Strategy<Value = ToolPattern> {
    let server = prop::sample::select(vec!["*", "github", "fs", "db", "git*"]);
    let part = prop_oneof![
        3 => prop::sample::select(PIECES).prop_map(str::to_owned),
        2 => Just("*".to_owned()),
    ];
    (server, prop::collection::vec(part, 1..4)).prop_map(|(server, parts)| {
        ToolPattern::parse(&format!("{server}.{}", parts.concat()))
            .expect("generated pattern parses")
    })
}

fn risk() -> impl Strategy<Value = Risk> {
    prop::sample::select(vec![Risk::Low, Risk::Medium, Risk::High, Risk::Critical])
}

fn constraint() -> impl Strategy<Value = ArgConstraint> {
    let name = prop::sample::select(vec!["path", "mode"]);
    let value = prop::sample::select(vec!["/tmp/", "/tmp/a", "r", "ro", ""]);
    let rule = prop_oneof![
        value.clone().prop_map(|v| ArgRule::Equals(v.to_owned())),
        value.clone().prop_map(|v| ArgRule::Prefix(v.to_owned())),
        prop::collection::vec(value, 1..3)
            .prop_map(|vs| ArgRule::OneOf(vs.into_iter().map(str::to_owned).collect())),
    ];
    (name, rule, prop::collection::vec(pattern(), 0..2)).prop_map(|(name, rule, tools)| {
        ArgConstraint {
            name: name.to_owned(),
            rule,
            tools,
        }
    })
}

fn restriction(always_allow_list: bool) -> impl Strategy<Value = Restriction> {
    let allow = prop::collection::vec(pattern(), 0..4);
    (
        allow,
        any::<bool>(),
        prop::collection::vec(pattern(), 0..3),
        prop::option::of(risk()),
        prop::collection::vec(constraint(), 0..2),
        prop::option::of(0i64..30),
    )
        .prop_map(
            move |(allow, has_allow, deny, max_risk, args, expires)| Restriction {
                allow: (always_allow_list || has_allow).then_some(allow),
                deny,
                max_risk,
                args,
                expires_at: expires.map(|e| T0 + e),
            },
        )
}

#[derive(Debug, Clone)]
struct Call {
    now: i64,
    server: String,
    tool: String,
    risk: Risk,
    args: CallArgs,
}

fn calls() -> impl Strategy<Value = Vec<Call>> {
    let arg = prop::sample::select(vec!["/tmp/a", "/tmp/", "/etc", "r", "ro", "rw", ""]);
    let call = (
        0i64..35,
        prop::sample::select(SERVERS),
        tool_name(),
        risk(),
        prop::option::of(arg.clone()),
        prop::option::of(arg),
    )
        .prop_map(|(now, server, tool, risk, path, mode)| {
            let mut args = CallArgs::new();
            if let Some(path) = path {
                args.insert("path".into(), path.to_owned());
            }
            if let Some(mode) = mode {
                args.insert("mode".into(), mode.to_owned());
            }
            Call {
                now: T0 + now,
                server: server.to_owned(),
                tool,
                risk,
                args,
            }
        });
    prop::collection::vec(call, 1..10)
}

/// A decision not cut short by the Datalog time limit (100 ms in a debug build, which
/// a loaded machine can reach): such a refusal depends on the machine, not on the
/// token, so it is taken again (a few times at most).
fn settled(decide: impl Fn() -> Decision) -> Decision {
    let mut decision = decide();
    for _ in 0..5 {
        if !decision.reason.contains("exceed the evaluation limits") {
            break;
        }
        decision = decide();
    }
    decision
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn datalog_matches_the_model_and_narrowing_never_widens(
        consent in restriction(true),
        chain in prop::collection::vec(restriction(false), 0..4),
        calls in calls(),
    ) {
        let root = root();
        let token = mint::build(&root, 1, &request(consent.clone()), None).expect("mint");
        let mut text = token.to_base64().expect("b64");
        let mut blocks = vec![consent];
        for narrowing in chain {
            if narrowing == Restriction::default() {
                continue;
            }
            text = attenuate(&text, &narrowing).expect("attenuate");
            blocks.push(narrowing);
        }
        let biscuit = Biscuit::from_base64(&text, root.public()).expect("verifies");
        let verified = VerifiedToken::new(biscuit).expect("identity");
        prop_assert_eq!(verified.identity.chain.len(), blocks.len() + 1);
        for c in &calls {
            let facts = CallFacts {
                now: c.now,
                resource: AUDIENCE.into(),
                server: c.server.clone(),
                tool: c.tool.clone(),
                risk: c.risk,
                ceiling: None,
                args: c.args.clone(),
                person: None,
            };
            let decision = authorize(&verified, &facts);
            let model_call = restriction::ModelCall {
                now: c.now,
                server: &c.server,
                tool: &c.tool,
                risk: c.risk,
                args: &c.args,
            };
            let model = blocks.iter().all(|b| b.allows(&model_call));
            prop_assert_eq!(decision.allow, model, "call {:?}, blocks {:?}: {:?}", c, blocks, decision);
            if decision.allow {
                for block in &blocks {
                    prop_assert!(block.allows(&model_call), "allowed outside {:?}", block);
                }
            } else {
                prop_assert!(!decision.reason.trim().is_empty());
                prop_assert!(!decision.failed_checks.is_empty(), "{:?}", decision);
            }
        }
    }

    /// Issue 5's invariant, with a live ceiling: for random catalogs (each call's tool
    /// gets a random class), ceilings, consents and chains of narrowings, a call is
    /// allowed exactly when its class is within the ceiling and every block allows it —
    /// so no allowed call exceeds the ceiling, the grant or any block — and every
    /// refusal names a reason (the ceiling's, when the ceiling is what refuses).
    #[test]
    fn no_allowed_call_exceeds_the_ceiling_the_grant_or_any_block(
        consent in restriction(true),
        chain in prop::collection::vec(restriction(false), 0..3),
        calls in calls(),
        ceiling in prop::option::of(risk()),
    ) {
        let root = root();
        let token = mint::build(&root, 1, &request(consent.clone()), None).expect("mint");
        let mut text = token.to_base64().expect("b64");
        let mut blocks = vec![consent];
        for narrowing in chain {
            if narrowing != Restriction::default() {
                text = attenuate(&text, &narrowing).expect("attenuate");
                blocks.push(narrowing);
            }
        }
        let biscuit = Biscuit::from_base64(&text, root.public()).expect("verifies");
        let verified = VerifiedToken::new(biscuit).expect("identity");
        for c in &calls {
            let facts = CallFacts {
                now: c.now,
                resource: AUDIENCE.into(),
                server: c.server.clone(),
                tool: c.tool.clone(),
                risk: c.risk,
                ceiling,
                args: c.args.clone(),
                person: None,
            };
            let decision = settled(|| authorize(&verified, &facts));
            let model_call = restriction::ModelCall {
                now: c.now,
                server: &c.server,
                tool: &c.tool,
                risk: c.risk,
                args: &c.args,
            };
            let within = ceiling.is_none_or(|max| c.risk <= max);
            let blocks_allow = blocks.iter().all(|b| b.allows(&model_call));
            prop_assert_eq!(decision.allow, within && blocks_allow, "call {:?} ceiling {:?}: {:?}", c, ceiling, decision);
            if !decision.allow {
                prop_assert!(!decision.reason.trim().is_empty(), "{:?}", decision);
                if !within && blocks_allow {
                    prop_assert!(decision.reason.contains("ceiling"), "{:?}", decision);
                }
            }
        }
    }

    /// The remembered decisions (`authorize`) equal a full Datalog run
    /// (`authorize_uncached`) on every call: random consents and narrowings (all
    /// Warrant's, so the cache applies), random calls replayed at other times (before,
    /// at and after each block's end), with and without a ceiling.
    #[test]
    fn remembered_decisions_equal_the_datalog(
        consent in restriction(true),
        chain in prop::collection::vec(restriction(false), 0..4),
        calls in calls(),
        shifts in prop::collection::vec(-10i64..20, 1..4),
        ceiling in prop::option::of(risk()),
    ) {
        let root = root();
        let token = mint::build(&root, 1, &request(consent), None).expect("mint");
        let mut text = token.to_base64().expect("b64");
        for narrowing in chain {
            if narrowing != Restriction::default() {
                text = attenuate(&text, &narrowing).expect("attenuate");
            }
        }
        let biscuit = Biscuit::from_base64(&text, root.public()).expect("verifies");
        let verified = VerifiedToken::new(biscuit).expect("identity");
        prop_assert!(verified.remembers_decisions(), "a token Warrant wrote: {}", verified.print());
        for shift in std::iter::once(0).chain(shifts) {
            for c in &calls {
                for ceiling in [None, ceiling] {
                    let facts = CallFacts {
                        now: c.now + shift,
                        resource: AUDIENCE.into(),
                        server: c.server.clone(),
                        tool: c.tool.clone(),
                        risk: c.risk,
                        ceiling,
                        args: c.args.clone(),
                        person: None,
                    };
                    let fresh = settled(|| authorize_uncached(&verified, &facts));
                    let cached = settled(|| authorize(&verified, &facts));
                    prop_assert_eq!(&cached, &fresh, "call {:?} at {}", c, facts.now);
                    // And once more, now that an allow is remembered.
                    prop_assert_eq!(settled(|| authorize(&verified, &facts)), fresh);
                }
            }
        }
    }

    #[test]
    fn pattern_text_round_trips_and_matching_agrees_with_datalog_regexes(
        p in pattern(),
        tool in tool_name(),
    ) {
        let again = ToolPattern::parse(&p.to_string()).expect("reparse");
        prop_assert_eq!(&again, &p);
        prop_assert_eq!(again.matches("github", &tool), p.matches("github", &tool));
    }
}
