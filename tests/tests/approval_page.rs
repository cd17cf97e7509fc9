//! The approval page shows everything a person approves: the arguments in full (every
//! value whole, nested objects and arrays whole, pretty-printed) in an expandable block
//! under the short preview, with characters that hide themselves or turn the text around
//! them spelled out (`⟨U+202E⟩`) and values of secret-looking keys still masked.
//!
//! As in `approvals.rs`: the demo server is the upstream, every demo tool is critical
//! (nobody reviewed it), and `default_ceiling = "critical"` lets the token reach it.

use serde_json::{Value, json};
use warrant_e2e::raw::Raw;
use warrant_e2e::{Backend, TestGateway, demo_upstream};

const TOOL: &str = "demo__send_payment";
const APPROVAL_REQUIRED: i64 = -32012;

async fn gateway() -> TestGateway {
    let config = format!(
        "{}\n[policy]\ndefault_ceiling = \"critical\"\n",
        demo_upstream("demo")
    );
    TestGateway::start_protected(&config, Backend::current()).await
}

/// A held call of a session client that declared no elicitation: the approval URL from
/// its refusal.
async fn held(gw: &TestGateway, token: &str, arguments: Value) -> String {
    let mut raw = Raw::new(&gw.url());
    raw.bearer = Some(token.to_owned());
    raw.initialize("2025-06-18").await;
    let reply = raw
        .request(
            1,
            "tools/call",
            json!({"name": TOOL, "arguments": arguments}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let refused = reply.response(1);
    assert_eq!(refused["error"]["code"], APPROVAL_REQUIRED, "{refused}");
    refused["error"]["data"]["approvalUrl"]
        .as_str()
        .expect("approvalUrl")
        .to_owned()
}

#[tokio::test]
async fn the_approval_page_shows_the_whole_arguments_with_hidden_characters_spelled_out() {
    let gw = gateway().await;
    let agent = warrant_e2e::agent::admin_approves_agent(&gw, "Payment Bot").await;

    let long: String = "0123456789abcdefghij".repeat(10);
    assert_eq!(long.chars().count(), 200);
    let arguments = json!({
        "to": "alice",
        "amount_cents": 1250,
        "currency": "eur",
        "memo": long,
        "attachment": "invoice-\u{202E}fdp.exe",
        "details": {"level2": {"level3": {"iban": "DE89370400440532013000"}}},
        "lines": [{"item": "consulting", "hours": 7}],
        "api_token": "s3cret-never-shown",
    });
    let url = held(&gw, &agent.tokens.access, arguments).await;

    let page = agent.browser.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    assert!(
        body.contains("<details"),
        "the full arguments are an expandable block: {body}"
    );
    assert!(
        body.contains(&long),
        "a 200-character value is shown whole: {body}"
    );
    assert!(
        body.contains("DE89370400440532013000") && body.contains("level3"),
        "a value three objects deep is shown: {body}"
    );
    assert!(
        body.contains("consulting"),
        "the items of an array are shown: {body}"
    );
    assert!(
        body.contains("invoice-⟨U+202E⟩fdp.exe"),
        "the direction override is spelled out: {body}"
    );
    assert!(
        !body.contains('\u{202E}'),
        "the raw direction override never reaches the page: {body}"
    );
    assert!(
        !body.contains("s3cret-never-shown"),
        "a secret-looking key's value stays masked: {body}"
    );
}
