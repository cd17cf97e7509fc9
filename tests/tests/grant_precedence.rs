//! The precedence of a grant's patterns, one row per rule, decided on real calls through
//! Warrant to two real upstreams (the demo server and server-everything): explicit deny,
//! wildcard deny, explicit allow, wildcard allow, a whole server, default deny. Deny
//! wins over any allow, so the first two rules beat the next three.

use serde_json::{Value, json};
use warrant_e2e::agent::{register_public, token_for_grant};
use warrant_e2e::raw::Reply;
use warrant_e2e::{Backend, TestGateway, demo_upstream, everything_stdio_upstream};

/// A 2026-07-28 `tools/call` with `token`.
async fn call(gw: &TestGateway, token: &str, tool: &str, arguments: Value) -> Reply {
    warrant_e2e::raw::modern_call(&gw.url(), Some(token), tool, arguments).await
}

fn arguments(tool: &str) -> Value {
    match tool {
        "demo__read_note" => json!({"title": "x"}),
        "demo__write_note" => json!({"title": "x", "body": "y"}),
        "demo__send_payment" => json!({"to": "alice", "amount_cents": 100, "currency": "eur"}),
        "ev__echo" => json!({"message": "hi"}),
        "ev__get-sum" => json!({"a": 2, "b": 3}),
        _ => json!({}),
    }
}

/// One rule: the grant's patterns, and for each call whether it goes through (or the
/// words of its refusal).
struct Row {
    rule: &'static str,
    allow: &'static [&'static str],
    deny: &'static [&'static str],
    calls: &'static [(&'static str, Result<(), &'static str>)],
}

const ROWS: &[Row] = &[
    Row {
        rule: "explicit deny beats a wildcard allow",
        allow: &["demo.*"],
        deny: &["demo.send_payment"],
        calls: &[
            ("demo__send_payment", Err("denies tool demo.send_payment")),
            ("demo__write_note", Ok(())),
        ],
    },
    Row {
        rule: "wildcard deny beats an explicit allow",
        allow: &["demo.send_payment", "demo.read_note"],
        deny: &["demo.send_*"],
        calls: &[
            ("demo__send_payment", Err("denies tool demo.send_payment")),
            ("demo__read_note", Ok(())),
        ],
    },
    Row {
        rule: "explicit allow",
        allow: &["ev.echo"],
        deny: &[],
        calls: &[
            ("ev__echo", Ok(())),
            ("ev__get-sum", Err("does not include tool ev.get-sum")),
        ],
    },
    Row {
        rule: "wildcard allow",
        allow: &["ev.get-*"],
        deny: &[],
        calls: &[
            ("ev__get-sum", Ok(())),
            ("ev__echo", Err("does not include tool ev.echo")),
        ],
    },
    Row {
        rule: "a whole server",
        allow: &["ev.*"],
        deny: &[],
        calls: &[
            ("ev__echo", Ok(())),
            ("ev__get-sum", Ok(())),
            (
                "demo__read_note",
                Err("does not include tool demo.read_note"),
            ),
        ],
    },
    Row {
        rule: "default deny",
        allow: &[],
        deny: &[],
        calls: &[
            ("demo__read_note", Err("demo.read_note")),
            ("ev__echo", Err("ev.echo")),
        ],
    },
];

#[tokio::test]
async fn each_rule_of_the_precedence_decides_real_calls() {
    let config = format!(
        "{}trust_annotations = true\n\n{}trust_annotations = true\n",
        demo_upstream("demo"),
        everything_stdio_upstream("ev")
    );
    let gw = TestGateway::start_protected(&config, Backend::current()).await;
    let (_browser, user) = warrant_e2e::agent::first_admin_signed_in(&gw).await;
    let client = register_public(&gw, "Table").await;
    let resource = format!("{}/mcp", gw.public_url());
    // The catalog classifies the tools off the request path: wait until both upstreams'
    // tools are decided with their annotated classes.
    let everything = token_for_grant(&gw, &user, &client, &resource, &["*"], &[]).await;
    let started = std::time::Instant::now();
    loop {
        let echo = call(&gw, &everything.access, "ev__echo", arguments("ev__echo")).await;
        let read = call(
            &gw,
            &everything.access,
            "demo__read_note",
            arguments("demo__read_note"),
        )
        .await;
        if (echo.status == 200 && read.status == 200)
            || started.elapsed() > std::time::Duration::from_secs(20)
        {
            assert_eq!((echo.status, read.status), (200, 200), "{echo:?} {read:?}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    for row in ROWS {
        let token = token_for_grant(&gw, &user, &client, &resource, row.allow, row.deny).await;
        for (tool, expected) in row.calls {
            let reply = call(&gw, &token.access, tool, arguments(tool)).await;
            match expected {
                Ok(()) => {
                    assert_eq!(reply.status, 200, "{}: {tool}: {reply:?}", row.rule);
                    let response = reply.response(7);
                    assert!(
                        response.get("result").is_some(),
                        "{}: {tool} went through: {response}",
                        row.rule
                    );
                }
                Err(words) => {
                    assert_eq!(reply.status, 403, "{}: {tool}: {reply:?}", row.rule);
                    let message = reply.response(7)["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    assert!(
                        message.contains(words),
                        "{}: {tool}: {words:?} in {message:?}",
                        row.rule
                    );
                }
            }
        }
    }
    gw.stop().await;
}
