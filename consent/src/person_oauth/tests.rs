use super::*;

fn record(expires_in: Option<i64>, obtained_at: i64) -> TokenRecord {
    TokenRecord {
        access_token: "a".into(),
        refresh_token: Some("r".into()),
        expires_at: expires_in.map(|e| obtained_at + e),
        obtained_at,
        client_id: "c".into(),
        dead: None,
    }
}

#[test]
fn a_token_is_refreshed_a_minute_ahead_or_at_half_its_life() {
    assert_eq!(
        record(Some(3600), 1000).refresh_at(),
        Some(1000 + 3600 - 60)
    );
    assert_eq!(record(Some(60), 1000).refresh_at(), Some(1000 + 30));
    assert_eq!(record(Some(0), 1000).refresh_at(), Some(1000));
    assert_eq!(record(None, 1000).refresh_at(), None);
}

#[test]
fn records_and_flows_print_no_secret() {
    let flow = Flow {
        upstream: "linear".into(),
        state: "state-secret".into(),
        verifier: "verifier-secret".into(),
        client_id: "c".into(),
        started_at: 5,
    };
    let printed = format!("{flow:?}");
    assert!(!printed.contains("secret"), "{printed}");
    assert!(flow.expired(5 + FLOW_LIFETIME_SECS + 1));
    assert!(!flow.expired(5 + FLOW_LIFETIME_SECS));
    let upstream = OAuthUpstream {
        name: "linear".into(),
        url: url::Url::parse("https://mcp.example/").expect("url"),
        client_id: Some("id".into()),
        client_secret: Some(Zeroizing::new("client-secret-value".into())),
        scopes: vec![],
        registration: Registration::Auto,
    };
    assert!(!format!("{upstream:?}").contains("client-secret-value"));
}
