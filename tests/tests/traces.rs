//! Traces of the per-call pipeline sent to an OpenTelemetry collector: `warrant serve`
//! with `[telemetry]` pointed at an OTLP/HTTP receiver in the test, which decodes what
//! arrives with the OpenTelemetry project's own protobuf definitions: a `tools/call`
//! span with the tool's name, and its record and forward stages under it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::json;
use warrant_e2e::{Backend, Raw, fixture_http, fresh_postgres};

/// Every span received: (name, parent span id, span id, trace id, attributes as text).
type Spans = Arc<Mutex<Vec<(String, Vec<u8>, Vec<u8>, Vec<u8>, String)>>>;

async fn receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let request =
                    ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP trace export");
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|a| a.key == "service.name")
                        .map(|a| format!("{:?}", a.value))
                        .unwrap_or_default();
                    assert!(service.contains("warrant-test"), "{service}");
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            kept.lock().expect("lock").push((
                                span.name,
                                span.parent_span_id,
                                span.span_id,
                                span.trace_id,
                                format!("{:?}", span.attributes),
                            ));
                        }
                    }
                }
                http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_is_traced_stage_by_stage_to_the_collector() {
    let (_upstream, upstream_url) = fixture_http("flaky_upstream").await;
    let (collector, spans) = receiver().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!(
            "[mcp]\nauthorization = \"none\"\n\n[telemetry]\notlp_endpoint = {collector:?}\n\
             service_name = \"warrant-test\"\n\n[upstreams.flaky]\nurl = {upstream_url:?}\n"
        ),
    )
    .expect("config");
    let database_url = match Backend::current() {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres().await),
    };
    let (mut warrant, url) = warrant_e2e::served::serve_config(
        &config,
        &dir.path().join("data"),
        database_url.as_deref(),
    )
    .await;
    let mut raw = Raw::new(&url);
    raw.initialize("2025-11-25").await;
    let reply = raw
        .request(
            1,
            "tools/call",
            json!({"name": "flaky__echo", "arguments": {"message": "traced"}}),
        )
        .await;
    assert_eq!(reply.result_text(1), "traced");
    // A clean stop sends the last batch.
    let pid = warrant.id().expect("pid");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    tokio::time::timeout(Duration::from_secs(30), warrant.wait())
        .await
        .expect("stops within 30 s")
        .expect("wait");

    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all = spans.lock().expect("lock").clone();
        if all.iter().any(|s| s.0 == "tools/call") || Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let call = all
        .iter()
        .find(|s| s.0 == "tools/call")
        .unwrap_or_else(|| panic!("a tools/call span: {all:?}"));
    assert!(
        call.4.contains("flaky__echo"),
        "the tool's name: {}",
        call.4
    );
    // Without tokens (`mcp.authorization = "none"`) nothing is decided: the call is
    // recorded and forwarded.
    for stage in ["record", "forward"] {
        let span = all
            .iter()
            .find(|s| s.0 == stage)
            .unwrap_or_else(|| panic!("a {stage} span: {all:?}"));
        assert_eq!(span.1, call.2, "{stage} is a child of the call");
        assert_eq!(span.3, call.3, "{stage} is in the call's trace");
    }
}
