//! Warrant as the OAuth client of an upstream's authorization server: against a second
//! Warrant whose `/mcp` requires OAuth, it finds the authorization server the way MCP
//! clients do (the `401`'s resource metadata, then the server's metadata) and registers
//! itself there; an upstream that asks for no token is told apart.

use warrant_consent::oauth::Clients;
use warrant_consent::upstream_oauth::{UpstreamOAuth, UpstreamOAuthError};
use warrant_e2e::{Backend, TestGateway};

#[tokio::test(flavor = "multi_thread")]
async fn warrant_discovers_and_registers_at_another_warrants_authorization_server() {
    let upstream = TestGateway::start_protected("", Backend::current()).await;
    let oauth = UpstreamOAuth::new().expect("client");
    let mcp = url::Url::parse(&upstream.url()).expect("url");
    let found = oauth.discover(&mcp).await.expect("discovered");
    // The resource is named on the origin it was reached at (a loopback alias here).
    assert_eq!(found.resource, upstream.url());
    assert_eq!(
        found.server.issuer.trim_end_matches('/'),
        upstream.public_url().trim_end_matches('/')
    );
    assert!(
        found
            .server
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256"),
        "{:?}",
        found.server
    );
    let callback = "http://localhost:9/account/connections/oauth/callback";
    let registered = oauth
        .register(&found.server, "Warrant (connections)", callback)
        .await
        .expect("registered");
    assert!(registered.client_secret.is_none(), "a public client");
    let client = Clients::new(upstream.running.db.clone())
        .get(&registered.client_id)
        .await
        .expect("lookup")
        .expect("the upstream's authorization server knows the client");
    assert_eq!(client.name, "Warrant (connections)");
    assert_eq!(client.redirect_uris, [callback]);

    // A server that answers without a token needs no per-person connection.
    let open = TestGateway::start("", Backend::current()).await;
    let open_mcp = url::Url::parse(&open.url()).expect("url");
    match oauth.discover(&open_mcp).await {
        Err(UpstreamOAuthError::NotProtected { status, .. }) => assert_ne!(status, 401),
        other => panic!("an open server: {other:?}"),
    }
    open.stop().await;
    upstream.stop().await;
}
