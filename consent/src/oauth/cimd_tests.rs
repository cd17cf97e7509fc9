//! Every SSRF rule and every document rule of `cimd.rs`, with literal addresses and an
//! injected resolver (no DNS), and a loopback HTTP server for the fetch itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap as AxHeaders;
use axum::response::IntoResponse;
use axum::routing::get;
use http::StatusCode;
use serde_json::json;

use super::*;

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---------------------------------------------------------------------------------
// The URL

#[test]
fn https_urls_with_a_path_are_accepted_with_any_port() {
    for ok in [
        "https://agent.example/client.json",
        "https://agent.example:8443/oauth/client.json",
        "https://agent.example:443/client.json",
        "https://agent.example/client?v=1",
        "https://93.184.216.34/client.json",
    ] {
        assert!(check_client_id(ok, false).is_ok(), "{ok}");
    }
}

#[test]
fn only_https_and_loopback_http_in_loopback_setups() {
    assert!(matches!(
        check_client_id("ftp://agent.example/client.json", true),
        Err(CimdError::NotHttps(_))
    ));
    assert!(matches!(
        check_client_id("http://agent.example/client.json", true),
        Err(CimdError::PlainHttp(_))
    ));
    for loopback in [
        "http://localhost/client.json",
        "http://127.0.0.1:9/client.json",
        "http://[::1]:9/client.json",
    ] {
        assert!(
            matches!(
                check_client_id(loopback, false),
                Err(CimdError::PlainHttp(_))
            ),
            "{loopback}: not while Warrant itself is public"
        );
        assert!(check_client_id(loopback, true).is_ok(), "{loopback}");
    }
    assert!(matches!(
        check_client_id("not a url", true),
        Err(CimdError::NotAUrl(_))
    ));
}

#[test]
fn userinfo_fragment_missing_path_and_dot_segments_are_refused() {
    for (bad, want) in [
        ("https://user@agent.example/c.json", "user"),
        ("https://user:pw@agent.example/c.json", "user"),
        ("https://agent.example/c.json#x", "fragment"),
        ("https://agent.example/c.json#", "fragment"),
        ("https://agent.example", "path"),
        ("https://agent.example/", "path"),
        ("https://agent.example/a/../c.json", "dot"),
        ("https://agent.example/./c.json", "dot"),
        ("https://agent.example/a/%2E%2E/c.json", "dot"),
    ] {
        let e = check_client_id(bad, true).expect_err(bad);
        let ok = match want {
            "user" => matches!(e, CimdError::Userinfo),
            "fragment" => matches!(e, CimdError::Fragment),
            "path" => matches!(e, CimdError::NoPath),
            _ => matches!(e, CimdError::DotSegment),
        };
        assert!(ok, "{bad}: {e:?}");
    }
}

#[test]
fn document_urls_are_told_from_registered_ids() {
    assert!(is_document_url("https://agent.example/c.json"));
    assert!(is_document_url("HTTP://localhost/c.json"));
    assert!(!is_document_url("ci-agent"));
    assert!(!is_document_url(
        "q0Z8mF3xYk2Lp9Wn4Rt7Vb1Cd6Ef5Gh0Ij3Kl8Mn2Op"
    ));
    assert!(!is_document_url("é"));
}

// ---------------------------------------------------------------------------------
// The addresses

#[test]
fn every_non_public_range_is_refused() {
    let cases: &[(&str, &str)] = &[
        ("10.0.0.5", "a private network address"),
        ("172.16.0.1", "a private network address"),
        ("172.31.255.255", "a private network address"),
        ("192.168.1.1", "a private network address"),
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        (
            "169.254.169.254",
            "a link-local address (where cloud metadata services answer)",
        ),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("100.127.255.254", "a shared (carrier-grade NAT) address"),
        ("0.0.0.0", "an unspecified address"),
        ("0.1.2.3", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("255.255.255.255", "the broadcast address"),
        ("192.0.2.1", "a documentation address"),
        ("198.51.100.7", "a documentation address"),
        ("203.0.113.9", "a documentation address"),
        ("240.0.0.1", "a reserved address"),
        ("198.18.0.1", "a reserved address"),
        ("192.0.0.8", "a reserved address"),
        ("::1", "a loopback address"),
        ("::", "an unspecified address"),
        ("fe80::1", "a link-local address"),
        ("febf::1", "a link-local address"),
        ("fc00::1", "a unique local (private) address"),
        ("fd12:3456::1", "a unique local (private) address"),
        ("fec0::1", "a site-local (private) address"),
        ("ff02::1", "a multicast address"),
        ("2001:db8::1", "a documentation address"),
        ("100::1", "a reserved address"),
        ("::ffff:10.0.0.5", "a private network address"),
        (
            "::ffff:169.254.169.254",
            "a link-local address (where cloud metadata services answer)",
        ),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::10.0.0.5", "a private network address"),
        (
            "64:ff9b::a00:5",
            "a NAT64 address (it reaches IPv4 through a translator)",
        ),
        (
            "64:ff9b::808:808",
            "a NAT64 address (it reaches IPv4 through a translator)",
        ),
        (
            "64:ff9b:1::a00:5",
            "a NAT64 address (it reaches IPv4 through a translator)",
        ),
        (
            "64:ff9b:1:ffff::1",
            "a NAT64 address (it reaches IPv4 through a translator)",
        ),
        ("2001::1", "a Teredo tunnel address"),
        (
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "a Teredo tunnel address",
        ),
        ("2002:a00:5::1", "a private network address"),
        ("2002:c0a8:101::1", "a private network address"),
    ];
    for (ip, want) in cases {
        let ip: IpAddr = ip.parse().expect("an address");
        assert_eq!(address_problem(ip, false), Some(*want), "{ip}");
    }
}

#[test]
fn public_addresses_pass_and_loopback_only_by_the_rule() {
    for ip in [
        "93.184.216.34",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.1",
        "172.32.0.1",
        "2606:4700::1111",
        "::ffff:93.184.216.34",
        "2002:5db8:d822::1",
    ] {
        let ip: IpAddr = ip.parse().expect("an address");
        assert_eq!(address_problem(ip, false), None, "{ip}");
    }
    for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
        let ip: IpAddr = ip.parse().expect("an address");
        assert_eq!(address_problem(ip, true), None, "{ip}");
    }
    // The loopback rule admits loopback, nothing else.
    let private: IpAddr = "10.0.0.5".parse().expect("an address");
    assert!(address_problem(private, true).is_some());
}

/// A resolver from a table, counting its lookups.
#[derive(Debug, Default)]
struct Table {
    names: HashMap<String, Result<Vec<IpAddr>, String>>,
    lookups: AtomicUsize,
}

impl Table {
    fn with(mut self, name: &str, ips: &[&str]) -> Self {
        let ips = ips
            .iter()
            .map(|ip| ip.parse().expect("an address"))
            .collect();
        self.names.insert(name.into(), Ok(ips));
        self
    }

    fn failing(mut self, name: &str) -> Self {
        self.names.insert(name.into(), Err("no such host".into()));
        self
    }
}

impl Resolver for Table {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let answer = match self.names.get(host) {
            Some(Ok(ips)) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
            Some(Err(e)) => Err(std::io::Error::other(e.clone())),
            None => Err(std::io::Error::other("not in the table")),
        };
        Box::pin(async move { answer })
    }
}

fn fetcher(allow_loopback: bool, table: Table) -> (DocumentFetcher, Arc<Table>) {
    let table = Arc::new(table);
    let fetcher = DocumentFetcher::new(allow_loopback).with_resolver(table.clone());
    (fetcher, table)
}

#[tokio::test]
async fn a_literal_private_address_is_refused_before_any_lookup_or_connection() {
    init();
    let (f, table) = fetcher(false, Table::default());
    let e = f
        .fetch("https://10.0.0.5/client.json")
        .await
        .expect_err("refused");
    assert_eq!(
        e.to_string(),
        "Warrant will not fetch the agent's description from a private network address (10.0.0.5)"
    );
    let e = f
        .fetch("https://[::ffff:169.254.169.254]/latest/meta-data")
        .await
        .expect_err("refused");
    assert!(matches!(e, CimdError::Forbidden { .. }), "{e:?}");
    let e = f
        .fetch("https://127.0.0.1/client.json")
        .await
        .expect_err("refused");
    assert!(
        e.to_string().contains("a loopback address (127.0.0.1)"),
        "{e}"
    );
    assert_eq!(table.lookups.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_name_is_refused_when_any_of_its_addresses_is_not_public() {
    init();
    let table = Table::default()
        .with("private.example", &["10.1.2.3"])
        .with("mixed.example", &["93.184.216.34", "169.254.169.254"])
        .with("cgnat.example", &["100.64.1.1"])
        .with("mapped.example", &["::ffff:192.168.0.1"])
        .with("empty.example", &[])
        .failing("gone.example");
    let (f, table) = fetcher(false, table);
    let cases = [
        (
            "https://private.example/c.json",
            "a private network address (10.1.2.3)",
        ),
        (
            "https://mixed.example/c.json",
            "a link-local address (where cloud metadata services answer) (169.254.169.254)",
        ),
        (
            "https://cgnat.example/c.json",
            "a shared (carrier-grade NAT) address (100.64.1.1)",
        ),
        (
            "https://mapped.example/c.json",
            "a private network address (::ffff:192.168.0.1)",
        ),
    ];
    for (url, want) in cases {
        let e = f.fetch(url).await.expect_err(url);
        assert!(matches!(e, CimdError::Forbidden { .. }), "{url}: {e:?}");
        assert!(e.to_string().ends_with(want), "{url}: {e}");
    }
    let e = f
        .fetch("https://empty.example/c.json")
        .await
        .expect_err("no address");
    assert!(matches!(e, CimdError::NoAddress { .. }), "{e:?}");
    let e = f
        .fetch("https://gone.example/c.json")
        .await
        .expect_err("not found");
    assert!(matches!(e, CimdError::Resolve { .. }), "{e:?}");
    assert!(
        !e.to_string().contains("no such host"),
        "details stay in the log"
    );
    assert!(e.is_transient());
    assert_eq!(table.lookups.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn plain_http_to_localhost_must_resolve_to_loopback() {
    init();
    let (f, _) = fetcher(true, Table::default().with("localhost", &["93.184.216.34"]));
    let e = f
        .fetch("http://localhost/c.json")
        .await
        .expect_err("refused");
    assert!(matches!(e, CimdError::PlainHttp(_)), "{e:?}");
}

// ---------------------------------------------------------------------------------
// The fetch, against a loopback server

#[derive(Clone, Default)]
struct Site {
    hits: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    /// Overrides the document of `/ok.json`.
    doc: Arc<Mutex<Option<serde_json::Value>>>,
}

fn doc_for(headers: &AxHeaders, path: &str) -> serde_json::Value {
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    json!({
        "client_id": format!("http://{host}{path}"),
        "client_name": "Loopback agent",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "token_endpoint_auth_method": "none",
        "logo_uri": "https://ignored.example/logo.png",
    })
}

async fn serve(site: Site) -> String {
    let app = Router::new()
        .route(
            "/ok.json",
            get(|State(s): State<Site>, h: AxHeaders| async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                if s.down.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                let doc = s
                    .doc
                    .lock()
                    .map(|d| d.clone())
                    .unwrap_or_default()
                    .unwrap_or_else(|| doc_for(&h, "/ok.json"));
                (
                    [
                        (
                            http::header::CONTENT_TYPE,
                            "application/json; charset=utf-8",
                        ),
                        (http::header::CACHE_CONTROL, "public, max-age=60"),
                    ],
                    doc.to_string(),
                )
                    .into_response()
            }),
        )
        .route(
            "/other.json",
            get(|h: AxHeaders| async move {
                let mut doc = doc_for(&h, "/other.json");
                doc["client_id"] = json!("https://someone-else.example/client.json");
                axum::Json(doc)
            }),
        )
        .route(
            "/redirect.json",
            get(|| async { axum::response::Redirect::temporary("/ok.json") }),
        )
        .route("/missing.json", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/html.json",
            get(|| async { axum::response::Html("<html></html>") }),
        )
        .route(
            "/big.json",
            get(|| async {
                let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_DOCUMENT_BYTES));
                ([(http::header::CONTENT_TYPE, "application/json")], body)
            }),
        )
        .route(
            "/slow.json",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "{}"
            }),
        )
        .with_state(site);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A server that answers every request with a JSON head, no Content-Length, and
/// `bytes` of body, then closes: the limit must hold while streaming.
async fn serve_unbounded(bytes: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 1024];
                let mut sent = 0;
                while sent < bytes {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len();
                }
            });
        }
    });
    format!("http://{addr}")
}

fn local() -> DocumentFetcher {
    init();
    DocumentFetcher::new(true)
}

#[tokio::test]
async fn a_loopback_document_is_fetched_when_warrant_is_loopback_too() {
    let base = serve(Site::default()).await;
    let url = format!("{base}/ok.json");
    let fetched = local().fetch(&url).await.expect("fetched");
    assert_eq!(fetched.client.client_id, url);
    assert_eq!(fetched.client.name, "Loopback agent");
    assert_eq!(
        fetched.client.redirect_uris,
        vec!["http://127.0.0.1/callback".to_owned()]
    );
    assert_eq!(fetched.client.application_type, "native");
    assert_eq!(
        fetched.fresh_secs, MIN_FRESH_SECS,
        "max-age=60 is raised to 5 min"
    );
    // The same server is out of reach of a public gateway.
    init();
    let e = DocumentFetcher::new(false)
        .fetch(&url)
        .await
        .expect_err("refused");
    assert!(matches!(e, CimdError::PlainHttp(_)), "{e:?}");
}

#[tokio::test]
async fn the_connection_goes_to_the_checked_address() {
    let base = serve(Site::default()).await;
    let port = url::Url::parse(&base)
        .ok()
        .and_then(|u| u.port())
        .expect("a port");
    let table = Arc::new(Table::default().with("localhost", &["127.0.0.1"]));
    let f = local().with_resolver(table.clone());
    let url = format!("http://localhost:{port}/ok.json");
    let fetched = f.fetch(&url).await.expect("fetched");
    assert_eq!(fetched.client.client_id, url);
    assert_eq!(
        table.lookups.load(Ordering::SeqCst),
        1,
        "resolved once, here"
    );
}

#[tokio::test]
async fn redirects_statuses_and_content_types_are_refused() {
    let base = serve(Site::default()).await;
    let f = local();
    let e = f
        .fetch(&format!("{base}/redirect.json"))
        .await
        .expect_err("redirect");
    assert!(
        matches!(e, CimdError::Redirected { status: 307, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("does not follow redirects"));
    let e = f
        .fetch(&format!("{base}/missing.json"))
        .await
        .expect_err("404");
    assert!(matches!(e, CimdError::Status { status: 404, .. }), "{e:?}");
    assert!(!e.is_transient(), "a 404 is no outage");
    let e = f
        .fetch(&format!("{base}/html.json"))
        .await
        .expect_err("html");
    assert!(
        matches!(e, CimdError::ContentType(ref t) if t.starts_with("text/html")),
        "{e:?}"
    );
    let e = f
        .fetch(&format!("{base}/other.json"))
        .await
        .expect_err("mismatch");
    assert!(matches!(e, CimdError::ClientIdMismatch { .. }), "{e:?}");
}

#[tokio::test]
async fn documents_over_64_kib_are_refused_declared_or_streamed() {
    let base = serve(Site::default()).await;
    let e = local()
        .fetch(&format!("{base}/big.json"))
        .await
        .expect_err("too large");
    assert!(matches!(e, CimdError::TooLarge { limit: 65_536 }), "{e:?}");
    let endless = serve_unbounded(10 * 1024 * 1024).await;
    let started = std::time::Instant::now();
    let e = local()
        .fetch(&format!("{endless}/client.json"))
        .await
        .expect_err("too large");
    assert!(matches!(e, CimdError::TooLarge { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stops reading at the limit"
    );
    assert_eq!(
        e.to_string(),
        "the agent's description is larger than 65536 bytes"
    );
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let base = serve(Site::default()).await;
    let f = local().with_timeouts(Duration::from_millis(300), Duration::from_millis(500));
    let started = std::time::Instant::now();
    let url = format!("{base}/slow.json");
    let e = f.fetch(&url).await.expect_err("timeout");
    assert!(matches!(e, CimdError::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(e.is_transient());
    assert!(e.to_string().contains("did not arrive within"), "{e}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let e = local()
        .fetch(&format!("http://{addr}/c.json"))
        .await
        .expect_err("refused");
    assert!(matches!(e, CimdError::Unreachable { .. }), "{e:?}");
    assert!(e.is_transient());
}

// ---------------------------------------------------------------------------------
// The document

const URL: &str = "https://agent.example/client.json";

fn doc(extra: serde_json::Value) -> Vec<u8> {
    let mut d = json!({
        "client_id": URL,
        "client_name": "Agent",
        "redirect_uris": ["http://localhost/callback", "https://agent.example/cb"],
    });
    if let (Some(map), Some(extra)) = (d.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            map.insert(k.clone(), v.clone());
        }
    }
    d.to_string().into_bytes()
}

#[test]
fn a_valid_document_gives_a_public_client_and_unknown_fields_are_ignored() {
    let c = validate(
        URL,
        &doc(json!({"logo_uri": "x", "grant_types": ["authorization_code"], "x-whatever": {}})),
    )
    .expect("valid");
    assert_eq!(c.client_id, URL);
    assert_eq!(c.name, "Agent");
    assert_eq!(c.redirect_uris.len(), 2);
    assert_eq!(c.application_type, "native");
    let web = validate(
        URL,
        &doc(json!({"redirect_uris": ["https://agent.example/cb"], "token_endpoint_auth_method": "none"})),
    )
    .expect("valid");
    assert_eq!(web.application_type, "web");
    let long = validate(URL, &doc(json!({"client_name": "n".repeat(500)}))).expect("valid");
    assert_eq!(long.name.len(), 100);
}

#[test]
fn every_document_rule_has_its_refusal() {
    assert!(matches!(
        validate(URL, b"not json"),
        Err(CimdError::NotJson(_))
    ));
    assert!(matches!(validate(URL, b"[1,2]"), Err(CimdError::NotObject)));
    assert!(matches!(
        validate(
            URL,
            br#"{"client_name":"A","redirect_uris":["https://a.example/cb"]}"#
        ),
        Err(CimdError::Missing("client_id"))
    ));
    for other in [
        "https://agent.example/client.json/",
        "https://AGENT.example/client.json",
        "https://agent.example/other.json",
    ] {
        assert!(
            matches!(
                validate(URL, &doc(json!({"client_id": other}))),
                Err(CimdError::ClientIdMismatch { .. })
            ),
            "{other}: exact match only"
        );
    }
    assert!(matches!(
        validate(URL, &doc(json!({"client_id": 5}))),
        Err(CimdError::Invalid {
            field: "client_id",
            ..
        })
    ));
    assert!(matches!(
        validate(URL, &doc(json!({"client_name": null}))),
        Err(CimdError::Missing("client_name"))
    ));
    assert!(matches!(
        validate(URL, &doc(json!({"client_name": "  "}))),
        Err(CimdError::Missing("client_name"))
    ));
    assert!(matches!(
        validate(URL, &doc(json!({"redirect_uris": null}))),
        Err(CimdError::Missing("redirect_uris"))
    ));
    for bad in [
        json!({"redirect_uris": "https://a.example/cb"}),
        json!({"redirect_uris": [1]}),
        json!({"redirect_uris": []}),
        json!({"redirect_uris": ["javascript:alert(1)"]}),
        json!({"redirect_uris": ["http://evil.example/cb"]}),
        json!({"redirect_uris": ["https://a.example/cb#f"]}),
        json!({"redirect_uris": (0..21).map(|i| format!("https://a.example/{i}")).collect::<Vec<_>>()}),
        json!({"redirect_uris": [format!("https://a.example/{}", "x".repeat(2001))]}),
        json!({"application_type": "desktop"}),
    ] {
        let e = validate(URL, &doc(bad.clone())).expect_err("refused");
        assert!(matches!(e, CimdError::Invalid { .. }), "{bad}: {e:?}");
    }
    for method in [
        "private_key_jwt",
        "client_secret_basic",
        "client_secret_post",
    ] {
        let e = validate(URL, &doc(json!({"token_endpoint_auth_method": method})))
            .expect_err("confidential");
        assert!(matches!(e, CimdError::Confidential(_)), "{e:?}");
        assert!(e.to_string().contains("public clients only"), "{e}");
    }
}

#[test]
fn freshness_follows_max_age_within_bounds() {
    let h = |v: &str| {
        let mut m = http::HeaderMap::new();
        m.insert(header::CACHE_CONTROL, v.parse().expect("header"));
        m
    };
    assert_eq!(freshness(&http::HeaderMap::new()), DEFAULT_FRESH_SECS);
    assert_eq!(freshness(&h("max-age=7200")), 7200);
    assert_eq!(freshness(&h("public, max-age=60")), MIN_FRESH_SECS);
    assert_eq!(freshness(&h("max-age=9999999")), MAX_FRESH_SECS);
    assert_eq!(freshness(&h("no-store")), MIN_FRESH_SECS);
    assert_eq!(freshness(&h("max-age=nonsense")), DEFAULT_FRESH_SECS);
}

// ---------------------------------------------------------------------------------
// The cache

async fn store() -> (tempfile::TempDir, Clients) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = warrant_idp::db::Db::open(None, dir.path())
        .await
        .expect("open");
    db.migrate().await.expect("migrate");
    (dir, Clients::new(db))
}

#[tokio::test]
async fn a_document_is_cached_refetched_when_stale_and_kept_through_a_short_outage() {
    let site = Site::default();
    let base = serve(site.clone()).await;
    let url = format!("{base}/ok.json");
    let (_dir, clients) = store().await;
    let f = local();
    let t0 = 1_000_000;

    let first = find_client(&clients, &f, &url, t0, FetchNew::Yes)
        .await
        .expect("found")
        .expect("a client");
    assert_eq!(first.kind, ClientKind::Metadata);
    assert!(!first.confidential);
    assert_eq!(first.document_fetched_at, Some(t0));
    assert_eq!(first.document_fresh_until, Some(t0 + MIN_FRESH_SECS));
    assert_eq!(site.hits.load(Ordering::SeqCst), 1);

    // Fresh: from the cache.
    find_client(&clients, &f, &url, t0 + 60, FetchNew::No)
        .await
        .expect("found")
        .expect("a client");
    assert_eq!(site.hits.load(Ordering::SeqCst), 1);

    // Stale: fetched again, and a changed name replaces the cached one.
    let mut changed = doc_for(&AxHeaders::new(), "");
    changed["client_id"] = json!(url);
    changed["client_name"] = json!("Renamed agent");
    if let Ok(mut d) = site.doc.lock() {
        *d = Some(changed);
    }
    let t1 = t0 + MIN_FRESH_SECS + 1;
    let renamed = find_client(&clients, &f, &url, t1, FetchNew::No)
        .await
        .expect("found")
        .expect("a client");
    assert_eq!(renamed.name, "Renamed agent");
    assert_eq!(renamed.document_fetched_at, Some(t1));
    assert_eq!(site.hits.load(Ordering::SeqCst), 2);

    // Down (503): the stale copy serves within the grace, not after.
    site.down.store(true, Ordering::SeqCst);
    let t2 = t1 + MIN_FRESH_SECS + 10;
    let kept = find_client(&clients, &f, &url, t2, FetchNew::Yes)
        .await
        .expect("the cached copy")
        .expect("a client");
    assert_eq!(kept.name, "Renamed agent");
    let late = t1 + MIN_FRESH_SECS + STALE_GRACE_SECS + 1;
    let e = find_client(&clients, &f, &url, late, FetchNew::Yes)
        .await
        .expect_err("beyond the grace");
    assert!(matches!(e, CimdError::Status { status: 503, .. }), "{e:?}");
}

#[tokio::test]
async fn an_invalid_refetch_is_not_covered_by_the_grace() {
    let site = Site::default();
    let base = serve(site.clone()).await;
    let url = format!("{base}/ok.json");
    let (_dir, clients) = store().await;
    let f = local();
    find_client(&clients, &f, &url, 10, FetchNew::Yes)
        .await
        .expect("found");
    if let Ok(mut d) = site.doc.lock() {
        *d = Some(
            json!({"client_id": "https://elsewhere.example/c.json", "client_name": "X", "redirect_uris": ["https://x.example/cb"]}),
        );
    }
    let e = find_client(&clients, &f, &url, 10 + MIN_FRESH_SECS + 1, FetchNew::Yes)
        .await
        .expect_err("refused");
    assert!(matches!(e, CimdError::ClientIdMismatch { .. }), "{e:?}");
}

#[tokio::test]
async fn the_token_endpoint_does_not_fetch_unknown_documents() {
    let site = Site::default();
    let base = serve(site.clone()).await;
    let (_dir, clients) = store().await;
    let found = find_client(
        &clients,
        &local(),
        &format!("{base}/ok.json"),
        10,
        FetchNew::No,
    )
    .await
    .expect("no error");
    assert!(found.is_none());
    assert_eq!(site.hits.load(Ordering::SeqCst), 0);
    // Nor does it look a URL up when the rules forbid it, cached or not.
    let e = find_client(
        &clients,
        &DocumentFetcher::new(false),
        &format!("{base}/ok.json"),
        10,
        FetchNew::No,
    )
    .await
    .expect_err("refused");
    assert!(matches!(e, CimdError::PlainHttp(_)), "{e:?}");
}

#[tokio::test]
async fn a_document_cannot_take_over_another_kind_of_client() {
    let (_dir, clients) = store().await;
    let taken = DocumentClient {
        client_id: "ci-agent".into(),
        name: "x".into(),
        redirect_uris: vec!["https://x.example/cb".into()],
        application_type: "web".into(),
    };
    clients
        .upsert_static(
            &[super::super::StaticClient {
                client_id: "ci-agent".into(),
                name: "CI".into(),
                redirect_uris: vec!["http://127.0.0.1/callback".into()],
                application_type: "native".into(),
                secret: None,
            }],
            1,
        )
        .await
        .expect("static");
    let e = clients
        .store_document(&taken, 1, 2)
        .await
        .expect_err("refused");
    assert!(matches!(e, StoreError::ClientIdTaken(_)), "{e:?}");
    let kept = clients.get("ci-agent").await.expect("get").expect("kept");
    assert_eq!(kept.kind, ClientKind::Static);
    assert_eq!(kept.name, "CI");
}
