//! Each person's own key for an upstream (`auth.mode = "person_key"`), injected by
//! Warrant on every call and never seen by the agent: an upstream that serves only
//! callers with a key it knows (`keyed_upstream`) is reached through Warrant with the
//! right person's key, over Streamable HTTP (a connection per person, the direct path
//! included) and over stdio (a process per person). A person without a key gets the page
//! where they connect one (`-32042` where the client declared URL elicitation); a key
//! replaced serves from the next call, a key removed stops serving.

use std::time::Duration;

use serde_json::{Value, json};
use warrant_e2e::peers::fixture_with;
use warrant_e2e::raw::{Raw, modern_call, modern_meta, modern_tool_names};
use warrant_e2e::{Backend, TestGateway, workspace_bin};

const ALICE_KEY: &str = "alice-key-7c1d9e2f4b";
const ALICE_NEW_KEY: &str = "alice-new-key-0a8b3c";
const BOB_KEY: &str = "bob-key-5e6f7a8b9c";
const KEYS: &str = "alice=alice-key-7c1d9e2f4b,alice2=alice-new-key-0a8b3c,bob=bob-key-5e6f7a8b9c";
const REDACTED: &str = "[redacted by Warrant]";

/// A person with an agent allowed every tool of `keyed`: their user id and token.
async fn person(gw: &TestGateway, email: &str) -> (String, String) {
    warrant_e2e::agent::member_with_agent(gw, email, &["keyed.*"]).await
}

/// Stores `key` as `user`'s for `keyed`, as the connections page does.
async fn connect(gw: &TestGateway, user: &str, key: &str) {
    gw.running
        .vault
        .put(user, "keyed", "api_key", key.as_bytes())
        .await
        .expect("store the key");
    gw.running.gateway.credential_changed(user, "keyed");
}

/// Waits until `token`'s agent sees `keyed__whoami`, and classes the tools low.
async fn wait_for_tools(gw: &TestGateway, token: &str) {
    warrant_e2e::agent::review_low(gw, "keyed", &["whoami", "echo_key", "requests"]).await;
    warrant_e2e::agent::wait_until_listed(gw, token, "keyed__whoami").await;
}

async fn whoami(gw: &TestGateway, token: &str) -> String {
    modern_call(&gw.url(), Some(token), "keyed__whoami", json!({}))
        .await
        .result_text(7)
}

/// `resources/read` of `keyed://whoami` in a session with `token`: the text read.
async fn read_whoami(gw: &TestGateway, token: &str) -> String {
    let mut raw = Raw::new(&gw.url());
    raw.bearer = Some(token.to_owned());
    raw.initialize("2025-11-25").await;
    let reply = raw
        .request(5, "resources/read", json!({"uri": "keyed://whoami"}))
        .await;
    let response = reply.response(5);
    response["result"]["contents"][0]["text"]
        .as_str()
        .map_or_else(|| response.to_string(), str::to_owned)
}

/// A 2026-07-28 `tools/call` from a client that declared URL-mode elicitation.
async fn call_declaring_url_elicitation(gw: &TestGateway, token: &str) -> Value {
    let mut raw = Raw::new(&gw.url());
    raw.bearer = Some(token.to_owned());
    let mut meta = modern_meta();
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({"elicitation": {"url": {}}});
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "keyed__whoami", "arguments": {}, "_meta": meta}});
    raw.post(
        body.to_string(),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "keyed__whoami"),
        ],
    )
    .await
    .response(7)
}

fn person_key_config(upstream: &str) -> String {
    format!("{upstream}[upstreams.keyed.auth]\nmode = \"person_key\"\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_person_calls_an_http_upstream_with_their_own_key_and_is_asked_to_connect_one() {
    let (_upstream, url) = fixture_with(
        "keyed_upstream",
        &[
            "--keys",
            KEYS,
            "--resources",
            "http",
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let config = person_key_config(&format!("[upstreams.keyed]\nurl = {url:?}\n"));
    let gw = TestGateway::start_protected(&config, Backend::current()).await;
    let (alice, alice_token) = person(&gw, "alice@example.com").await;
    let (bob, bob_token) = person(&gw, "bob@example.com").await;

    // Without any person's key, the upstream serves nobody: nothing is listed yet.
    let names = modern_tool_names(&gw.url(), Some(&alice_token)).await;
    assert!(!names.iter().any(|n| n.starts_with("keyed__")), "{names:?}");

    // Alice connects her key: the upstream is listed through her connection.
    connect(&gw, &alice, ALICE_KEY).await;
    wait_for_tools(&gw, &alice_token).await;
    assert!(whoami(&gw, &alice_token).await.starts_with("alice ("));

    // Bob has no key: he is sent to the page, by a client without URL elicitation...
    let reply = modern_call(&gw.url(), Some(&bob_token), "keyed__whoami", json!({})).await;
    let error = &reply.response(7)["error"];
    assert_eq!(error["code"], -32015, "{error}");
    let page = format!("{}/account/connections?upstream=keyed", gw.public_url());
    assert_eq!(error["data"]["url"], page.as_str(), "{error}");
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains(&page)),
        "{error}"
    );
    // ... and with -32042 by one that declared it.
    let response = call_declaring_url_elicitation(&gw, &bob_token).await;
    let error = &response["error"];
    assert_eq!(error["code"], -32042, "{response}");
    let elicitation = &error["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url", "{response}");
    assert_eq!(elicitation["url"], page.as_str(), "{response}");
    assert!(elicitation["elicitationId"].is_string(), "{response}");

    // Once Bob connects, the same call works, with his key.
    connect(&gw, &bob, BOB_KEY).await;
    assert!(whoami(&gw, &bob_token).await.starts_with("bob ("));
    // Resources are read on each person's own connection too.
    assert_eq!(read_whoami(&gw, &alice_token).await, "alice");
    assert_eq!(read_whoami(&gw, &bob_token).await, "bob");

    // Concurrent calls of both: nobody ever gets the other's answer.
    let mut calls = Vec::new();
    for i in 0..40 {
        let (token, expected) = if i % 2 == 0 {
            (alice_token.clone(), "alice (")
        } else {
            (bob_token.clone(), "bob (")
        };
        let mcp = gw.url();
        calls.push(tokio::spawn(async move {
            let reply = modern_call(&mcp, Some(&token), "keyed__whoami", json!({})).await;
            (reply.result_text(7), expected)
        }));
    }
    for call in calls {
        let (answer, expected) = call.await.expect("the call");
        assert!(answer.starts_with(expected), "{expected}: {answer}");
    }
    assert!(
        gw.running.gateway.direct_calls() > 0,
        "the calls with keys take the direct path"
    );
    assert_eq!(gw.running.gateway.keyed_connections("keyed"), 2);

    // A key the upstream echoes never reaches the agent.
    let echoed = modern_call(&gw.url(), Some(&alice_token), "keyed__echo_key", json!({}))
        .await
        .result_text(7);
    assert!(!echoed.contains(ALICE_KEY), "{echoed}");
    assert!(echoed.contains(REDACTED), "{echoed}");

    // A replaced key serves from the next call; a removed one stops serving.
    connect(&gw, &alice, ALICE_NEW_KEY).await;
    assert!(whoami(&gw, &alice_token).await.starts_with("alice2 ("));
    gw.running
        .vault
        .remove(&alice, "keyed", "api_key")
        .await
        .expect("remove");
    gw.running.gateway.credential_changed(&alice, "keyed");
    let reply = modern_call(&gw.url(), Some(&alice_token), "keyed__whoami", json!({})).await;
    assert_eq!(reply.response(7)["error"]["code"], -32015, "{reply:?}");
    // Bob's connection is untouched.
    assert!(whoami(&gw, &bob_token).await.starts_with("bob ("));
    // A person disabled: the connection with their key ends.
    gw.running
        .idp
        .users
        .set_status(&bob, warrant_idp::users::Status::Disabled)
        .await
        .expect("disable bob");
    let mut open = usize::MAX;
    for _ in 0..100 {
        open = gw.running.gateway.keyed_connections("keyed");
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0, "bob's connection ended");
    gw.stop().await;
}

/// A key replaced elsewhere (another replica, or `warrant vault set`: this gateway is not
/// told) serves within the 10 seconds a connection keeps its key before asking the vault
/// again.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_replaced_on_another_replica_serves_within_ten_seconds() {
    let (_upstream, url) = fixture_with(
        "keyed_upstream",
        &["--keys", KEYS, "http", "--listen", "127.0.0.1:0"],
    )
    .await;
    let config = person_key_config(&format!("[upstreams.keyed]\nurl = {url:?}\n"));
    let gw = TestGateway::start_protected(&config, Backend::current()).await;
    let (alice, alice_token) = person(&gw, "alice@example.com").await;
    connect(&gw, &alice, ALICE_KEY).await;
    wait_for_tools(&gw, &alice_token).await;
    assert!(whoami(&gw, &alice_token).await.starts_with("alice ("));
    let set = gw
        .warrant(
            &[
                "vault",
                "set",
                "keyed",
                "api_key",
                "--person",
                "alice@example.com",
            ],
            ALICE_NEW_KEY,
        )
        .await;
    assert!(set.status.success(), "{set:?}");
    let replaced = std::time::Instant::now();
    let mut answer = String::new();
    while replaced.elapsed() < Duration::from_secs(12) {
        answer = whoami(&gw, &alice_token).await;
        if answer.starts_with("alice2 (") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(answer.starts_with("alice2 ("), "{answer}");
    assert!(
        replaced.elapsed() <= Duration::from_secs(11),
        "served after {:?}",
        replaced.elapsed()
    );
    gw.stop().await;
}

/// `warrant vault rotate-key` while calls with a person's key go on, each of them reading
/// the key afresh from the vault as it is being re-wrapped: no call fails.
#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_vault_key_while_calls_read_keys_loses_no_call() {
    const NEW_VAULT_KEY: &str = "bmV3IHZhdWx0IGtleSBmb3IgdGhlIHRlc3QgISEhISE=";
    let (_upstream, url) = fixture_with(
        "keyed_upstream",
        &["--keys", KEYS, "http", "--listen", "127.0.0.1:0"],
    )
    .await;
    // The gateway writes with the key derived from its secret key and can read with the
    // new one too (a previous key), as every replica must before the rotation to it.
    let config = format!(
        "{}[vault]\nprevious_keys = [\"${{WARRANT_TEST_UNSET_VAULT_KEY:-{NEW_VAULT_KEY}}}\"]\n",
        person_key_config(&format!("[upstreams.keyed]\nurl = {url:?}\n"))
    );
    let gw = TestGateway::start_protected(&config, Backend::current()).await;
    let (alice, alice_token) = person(&gw, "alice@example.com").await;
    // Alice's key and 300 others under the derived key, so the rotation takes a while.
    gw.running
        .vault
        .put(&alice, "keyed", "api_key", ALICE_KEY.as_bytes())
        .await
        .expect("put");
    for i in 0..300 {
        gw.running
            .vault
            .put(
                &format!("someone-{i}"),
                "other",
                "api_key",
                b"filler-key-value",
            )
            .await
            .expect("put");
    }
    gw.running.gateway.credential_changed(&alice, "keyed");
    wait_for_tools(&gw, &alice_token).await;
    assert!(whoami(&gw, &alice_token).await.starts_with("alice ("));

    // A new connection for the key (as after every change of it) never takes the tools
    // out of the lists while it connects: the next call finds them and is served.
    for i in 0..10 {
        gw.running.gateway.credential_changed(&alice, "keyed");
        let answer = whoami(&gw, &alice_token).await;
        assert!(
            answer.starts_with("alice ("),
            "call {i} after a change: {answer}"
        );
    }
    let configs = tempfile::tempdir().expect("tempdir");
    let rotate_config = configs.path().join("warrant.toml");
    std::fs::write(
        &rotate_config,
        format!("[vault]\nkey = \"{NEW_VAULT_KEY}\"\n"),
    )
    .expect("write");
    let mut rotate = gw.cli(&["vault", "rotate-key"]);
    rotate.arg("--config").arg(&rotate_config);
    let rotation = tokio::spawn(warrant_e2e::run_cli(rotate, ""));
    let mut calls = 0;
    while !rotation.is_finished() || calls < 20 {
        // The key is read afresh from the vault for the next call.
        gw.running.gateway.credential_changed(&alice, "keyed");
        let answer = whoami(&gw, &alice_token).await;
        assert!(answer.starts_with("alice ("), "call {calls}: {answer}");
        calls += 1;
    }
    let rotated = rotation.await.expect("the rotation ran");
    let printed = String::from_utf8_lossy(&rotated.stdout).into_owned()
        + &String::from_utf8_lossy(&rotated.stderr);
    assert!(rotated.status.success(), "{printed}");
    assert!(printed.contains("re-wrapped 301 data keys"), "{printed}");
    assert!(whoami(&gw, &alice_token).await.starts_with("alice ("));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_upstream_runs_one_process_per_person_with_their_key_in_its_environment() {
    let path = workspace_bin("keyed_upstream");
    let upstream = format!(
        "[upstreams.keyed]\ncommand = {:?}\nargs = [\"--keys\", {KEYS:?}]\n",
        path.display().to_string()
    );
    let config = format!(
        "{upstream}[upstreams.keyed.auth]\nmode = \"person_key\"\nenv = \"KEYED_API_KEY\"\n"
    );
    let gw = TestGateway::start_protected(&config, Backend::current()).await;
    let (alice, alice_token) = person(&gw, "alice@example.com").await;
    let (bob, bob_token) = person(&gw, "bob@example.com").await;
    connect(&gw, &alice, ALICE_KEY).await;
    wait_for_tools(&gw, &alice_token).await;
    connect(&gw, &bob, BOB_KEY).await;
    let pid = |answer: &str| answer.rsplit("pid ").next().unwrap_or_default().to_owned();
    let alices = whoami(&gw, &alice_token).await;
    let bobs = whoami(&gw, &bob_token).await;
    assert!(alices.starts_with("alice ("), "{alices}");
    assert!(bobs.starts_with("bob ("), "{bobs}");
    assert_ne!(pid(&alices), pid(&bobs), "one process per person");
    // The key in the process's environment, echoed, is redacted too.
    let echoed = modern_call(&gw.url(), Some(&bob_token), "keyed__echo_key", json!({}))
        .await
        .result_text(7);
    assert!(!echoed.contains(BOB_KEY), "{echoed}");
    assert!(echoed.contains(REDACTED), "{echoed}");
    gw.stop().await;
}
