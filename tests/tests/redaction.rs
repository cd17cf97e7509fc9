//! The credentials Warrant gives an upstream (headers, environment) never reach the agent
//! in what the upstream answers: an upstream that echoes them has them replaced, on the
//! direct path and through rmcp, over HTTP and stdio.

use serde_json::{Value, json};
use warrant_e2e::raw::Raw;
use warrant_e2e::{Backend, TestGateway, fixture_http, stdio_upstream};

const CREDENTIAL: &str = "flaky-test-credential-4f9a1c";
const REDACTED: &str = "[redacted by Warrant]";

async fn call(gateway: &TestGateway, tool: &str, arguments: Value) -> String {
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;
    let reply = raw
        .request(
            7,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await;
    reply.response(7).to_string()
}

/// Over Streamable HTTP, with the credential in a header written by reference (a
/// variable that is not set, so its default: the credential).
async fn echoed_headers(direct: bool) -> (String, u64) {
    let (_upstream, url) = fixture_http("flaky_upstream").await;
    let config = format!(
        "[upstreams.flaky]\nurl = {url:?}\ndirect = {direct}\n\
         headers = {{ Authorization = \"${{WARRANT_TEST_UNSET_TOKEN:-Bearer {CREDENTIAL}}}\" }}\n"
    );
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let answer = call(&gateway, "flaky__headers", json!({})).await;
    let direct_calls = gateway.running.gateway.direct_calls();
    gateway.stop().await;
    (answer, direct_calls)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_credential_the_upstream_echoes_is_redacted_on_the_direct_path() {
    let (answer, direct_calls) = echoed_headers(true).await;
    assert_eq!(direct_calls, 1, "the direct path");
    assert!(!answer.contains(CREDENTIAL), "{answer}");
    assert!(
        answer.contains(&format!("authorization: {REDACTED}")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_credential_the_upstream_echoes_is_redacted_through_rmcp() {
    let (answer, direct_calls) = echoed_headers(false).await;
    assert_eq!(direct_calls, 0, "through rmcp");
    assert!(!answer.contains(CREDENTIAL), "{answer}");
    assert!(answer.contains(REDACTED), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_environment_credential_a_stdio_upstream_prints_is_redacted() {
    let config = format!(
        "{}env = {{ FLAKY_SECRET = \"${{WARRANT_TEST_UNSET_SECRET:-{CREDENTIAL}}}\", \
         FLAKY_MODE = \"plain-value-not-secret\" }}\n",
        stdio_upstream("flaky", "flaky_upstream", &[])
    );
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let secret = call(&gateway, "flaky__env", json!({"message": "FLAKY_SECRET"})).await;
    assert!(!secret.contains(CREDENTIAL), "{secret}");
    assert!(secret.contains(REDACTED), "{secret}");
    // A value written inline is not a credential: it is left as it is.
    let plain = call(&gateway, "flaky__env", json!({"message": "FLAKY_MODE"})).await;
    assert!(plain.contains("plain-value-not-secret"), "{plain}");
    gateway.stop().await;
}
