use super::*;
use crate::oauth::test_support::fixture;
use warrant_idp::clock::ManualClock;

const START: i64 = 1_800_000_000;

struct Setup {
    _f: crate::oauth::test_support::Fixture,
    clock: Arc<ManualClock>,
    approvals: Approvals,
    key: CallKey,
}

async fn setup() -> Setup {
    let f = fixture(START).await;
    let clock = Arc::new(ManualClock::new(
        time::OffsetDateTime::from_unix_timestamp(START).expect("instant"),
    ));
    let approvals = Approvals::new(f.db.clone(), clock.clone(), Duration::from_secs(300));
    let args: Map<String, Value> =
        serde_json::from_value(serde_json::json!({"to": "alice", "amount": 5})).expect("map");
    let key = CallKey {
        user_id: f.user_id.clone(),
        client_id: f.client_id.clone(),
        grant_id: f.grant.id.clone(),
        server: "demo".into(),
        tool: "send_payment".into(),
        args_hash: args_hash(Some(&args)),
    };
    Setup {
        _f: f,
        clock,
        approvals,
        key,
    }
}

/// What the page shows of a call: `preview`, and the whole arguments of the setup's call.
fn shown(preview: &str) -> Shown {
    Shown {
        preview: preview.to_owned(),
        arguments: String::from("{\n  \"amount\": 5,\n  \"to\": \"alice\"\n}"),
    }
}

#[tokio::test]
async fn a_single_approval_lets_the_same_call_through_once() {
    let s = setup().await;
    assert!(s.approvals.admit(&s.key).await.expect("admit").is_none());
    let (approval, new) = s
        .approvals
        .request(&s.key, &shown("to: \"alice\""))
        .await
        .expect("ask");
    assert!(new);
    assert!(plausible_id(&approval.id), "{}", approval.id);
    assert_eq!(approval.status, Status::Pending);
    assert_eq!(approval.expires_at, START + 300);
    let (again, new) = s
        .approvals
        .request(&s.key, &shown("x"))
        .await
        .expect("ask again");
    assert!(!new, "a pending approval of the same call is reused");
    assert_eq!(again.id, approval.id);

    // Other arguments: another approval.
    let mut other = s.key.clone();
    other.args_hash = args_hash(None);
    let (third, new) = s
        .approvals
        .request(&other, &shown(""))
        .await
        .expect("other call");
    assert!(new);
    assert_ne!(third.id, approval.id);

    assert!(matches!(
        s.approvals
            .decide(
                &approval.id,
                "someone-else",
                Decision::Deny,
                Method::Session
            )
            .await,
        Err(ApprovalError::NotFound)
    ));
    let decided = s
        .approvals
        .decide(
            &approval.id,
            &s.key.user_id,
            Decision::Approve(Scope::Once),
            Method::Session,
        )
        .await
        .expect("decide");
    assert_eq!(decided.status, Status::Approved);
    assert_eq!(decided.decided_by.as_deref(), Some(s.key.user_id.as_str()));
    assert_eq!(decided.method, Some(Method::Session));
    assert!(matches!(
        s.approvals
            .decide(
                &approval.id,
                &s.key.user_id,
                Decision::Deny,
                Method::Session
            )
            .await,
        Err(ApprovalError::Closed(Status::Approved))
    ));
    assert!(s.approvals.admit(&other).await.expect("admit").is_none());
    let used = s.approvals.admit(&s.key).await.expect("admit");
    assert!(used.is_some_and(|a| a.used_at.is_some()));
    assert!(
        s.approvals.admit(&s.key).await.expect("admit").is_none(),
        "once means once"
    );
}

#[tokio::test]
async fn an_approval_for_the_grant_covers_every_later_call_of_the_tool() {
    let s = setup().await;
    let (approval, _) = s.approvals.request(&s.key, &shown("")).await.expect("ask");
    s.approvals
        .decide(
            &approval.id,
            &s.key.user_id,
            Decision::Approve(Scope::Grant),
            Method::Passkey,
        )
        .await
        .expect("decide");
    let mut later = s.key.clone();
    later.args_hash = args_hash(None);
    for _ in 0..3 {
        assert!(s.approvals.admit(&later).await.expect("admit").is_some());
    }
    let mut other_tool = s.key.clone();
    other_tool.tool = "delete_all_notes".into();
    assert!(
        s.approvals
            .admit(&other_tool)
            .await
            .expect("admit")
            .is_none()
    );
    let mut other_grant = s.key.clone();
    other_grant.grant_id = "another-grant".into();
    assert!(
        s.approvals
            .admit(&other_grant)
            .await
            .expect("admit")
            .is_none()
    );
}

#[tokio::test]
async fn undecided_approvals_expire_and_cannot_be_decided_late() {
    let s = setup().await;
    let (approval, _) = s.approvals.request(&s.key, &shown("")).await.expect("ask");
    s.clock.advance(Duration::from_secs(301));
    let got = s
        .approvals
        .get(&approval.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.status, Status::Expired);
    assert!(matches!(
        s.approvals
            .decide(
                &approval.id,
                &s.key.user_id,
                Decision::Approve(Scope::Once),
                Method::Session
            )
            .await,
        Err(ApprovalError::Closed(Status::Expired))
    ));
    let (fresh, new) = s
        .approvals
        .request(&s.key, &shown(""))
        .await
        .expect("ask again");
    assert!(new, "an expired approval is not reused");
    assert_ne!(fresh.id, approval.id);
    let mine = s
        .approvals
        .for_user(&s.key.user_id, 10)
        .await
        .expect("list");
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].id, fresh.id, "pending first");
    assert_eq!(mine[1].status, Status::Expired);
}

#[tokio::test]
async fn withdrawing_a_persons_approvals_ends_the_pending_ones_only() {
    let s = setup().await;
    let (pending, _) = s.approvals.request(&s.key, &shown("")).await.expect("ask");
    let mut other = s.key.clone();
    other.args_hash = args_hash(None);
    let (decided, _) = s.approvals.request(&other, &shown("")).await.expect("ask");
    s.approvals
        .decide(&decided.id, &s.key.user_id, Decision::Deny, Method::Session)
        .await
        .expect("deny");
    assert_eq!(
        s.approvals
            .withdraw_pending_of(&s.key.user_id)
            .await
            .expect("withdraw"),
        1
    );
    let got = |id: String| {
        let approvals = s.approvals.clone();
        async move { approvals.get(&id).await.expect("get").expect("found") }
    };
    assert_eq!(got(pending.id.clone()).await.status, Status::Withdrawn);
    assert_eq!(got(decided.id.clone()).await.status, Status::Denied);
    assert!(matches!(
        s.approvals
            .decide(
                &pending.id,
                &s.key.user_id,
                Decision::Approve(Scope::Once),
                Method::Session
            )
            .await,
        Err(ApprovalError::Closed(Status::Withdrawn))
    ));
    assert_eq!(
        s.approvals
            .withdraw_pending_of("someone-else")
            .await
            .expect("none"),
        0
    );
}

#[tokio::test]
async fn resume_checks_the_call_and_consumes_a_single_approval() {
    let s = setup().await;
    let (approval, _) = s.approvals.request(&s.key, &shown("")).await.expect("ask");
    let pending = s
        .approvals
        .resume(&approval.id, &s.key)
        .await
        .expect("resume");
    assert_eq!(pending.map(|a| a.status), Some(Status::Pending));
    let mut other = s.key.clone();
    other.client_id = "another-agent".into();
    assert!(
        s.approvals
            .resume(&approval.id, &other)
            .await
            .expect("resume")
            .is_none()
    );
    s.approvals
        .decide(
            &approval.id,
            &s.key.user_id,
            Decision::Deny,
            Method::Session,
        )
        .await
        .expect("deny");
    let denied = s
        .approvals
        .resume(&approval.id, &s.key)
        .await
        .expect("resume");
    assert_eq!(denied.map(|a| a.status), Some(Status::Denied));
    assert!(s.approvals.admit(&s.key).await.expect("admit").is_none());
}

#[test]
fn the_hash_ignores_key_order_and_the_preview_hides_secrets() {
    let a: Map<String, Value> =
        serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "s"}}"#).expect("a");
    let b: Map<String, Value> =
        serde_json::from_str(r#"{"a": {"x": "s", "y": [1, 2]}, "b": 1}"#).expect("b");
    assert_eq!(args_hash(Some(&a)), args_hash(Some(&b)));
    assert_eq!(args_hash(None), args_hash(Some(&Map::new())));
    assert_ne!(args_hash(Some(&a)), args_hash(None));
    assert_eq!(args_hash(None).len(), 64);

    let args: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "to": "alice",
        "api_token": "sk-very-secret",
        "note": "x".repeat(500),
        "items": [1, 2, 3],
        "amount_cents": 1250
    }))
    .expect("args");
    let text = preview(Some(&args));
    assert!(!text.contains("sk-very-secret"), "{text}");
    assert!(text.contains("api_token: •••"), "{text}");
    assert!(text.contains("to: \"alice\""), "{text}");
    assert!(text.contains("items: [3 items]"), "{text}");
    assert!(text.contains("amount_cents: 1250"), "{text}");
    assert!(text.chars().count() <= PREVIEW_CHARS, "{text}");
    assert!(!text.contains(&"x".repeat(41)), "{text}");
    assert_eq!(preview(None), "(no arguments)");
}

#[test]
fn the_preview_shows_invisible_and_direction_changing_characters() {
    let args: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "file\u{202E}txt.exe": "invoice\u{202E}fdp.exe",
        "path": "a\u{2066}b\u{2069}c",
        "zero": "d\u{200B}e\u{FEFF}f\u{061C}g"
    }))
    .expect("args");
    let text = preview(Some(&args));
    for hidden in [
        '\u{202E}', '\u{2066}', '\u{2069}', '\u{200B}', '\u{FEFF}', '\u{061C}',
    ] {
        assert!(!text.contains(hidden), "{hidden:?} passes through: {text}");
    }
    assert!(text.contains("file⟨U+202E⟩txt.exe: "), "{text}");
    assert!(text.contains("\"invoice⟨U+202E⟩fdp.exe\""), "{text}");
    assert!(text.contains("\"a⟨U+2066⟩b⟨U+2069⟩c\""), "{text}");
    assert!(text.contains("\"d⟨U+200B⟩e⟨U+FEFF⟩f⟨U+061C⟩g\""), "{text}");
}

#[tokio::test]
async fn the_whole_arguments_are_stored_as_shown() {
    let s = setup().await;
    let args: Map<String, Value> =
        serde_json::from_value(serde_json::json!({"to": "alice", "amount": 5})).expect("map");
    let (approval, _) = s
        .approvals
        .request(&s.key, &Shown::of(Some(&args)))
        .await
        .expect("ask");
    let stored = s
        .approvals
        .get(&approval.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(
        stored.arguments.as_deref(),
        Some("{\n  \"amount\": 5,\n  \"to\": \"alice\"\n}")
    );
    assert_eq!(stored.preview, "amount: 5, to: \"alice\"");
}

#[test]
fn the_whole_arguments_show_every_value_and_mask_secrets_at_every_depth() {
    let long = "y".repeat(500);
    let args: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "to": "alice\u{202E}",
        "note": long,
        "nested": {"deeper": {"deepest": [1, {"api_token": "sk-inner"}], "empty": {}}},
        "password": "hunter2",
        "list": []
    }))
    .expect("args");
    let text = arguments(Some(&args));
    assert!(text.contains(&format!("\"note\": \"{long}\"")), "{text}");
    assert!(text.contains("\"deepest\": [\n"), "{text}");
    assert!(text.contains("\"empty\": {}"), "{text}");
    assert!(text.contains("\"list\": []"), "{text}");
    assert!(text.contains("\"api_token\": \"•••\""), "{text}");
    assert!(text.contains("\"password\": \"•••\""), "{text}");
    assert!(
        !text.contains("sk-inner") && !text.contains("hunter2"),
        "{text}"
    );
    // Keys sorted, as in the hash; pretty-printed.
    let list = text.find("\"list\"").expect("list");
    let nested = text.find("\"nested\"").expect("nested");
    assert!(list < nested, "{text}");
    assert!(text.starts_with("{\n  \""), "{text}");
    assert_eq!(arguments(None), "{}");

    let shown = visible_text(&text);
    assert!(shown.contains("\"alice⟨U+202E⟩\""), "{shown}");
    assert!(!shown.contains('\u{202E}'), "{shown}");
    assert_eq!(shown.lines().count(), text.lines().count(), "{shown}");
}

#[test]
fn arguments_beyond_64_kib_are_cut_with_a_note() {
    let args: Map<String, Value> =
        serde_json::from_value(serde_json::json!({"blob": "é".repeat(40_000)})).expect("args");
    let text = arguments(Some(&args));
    let (kept, note) = text.split_once("\n… ").expect("a note");
    assert!(kept.len() <= ARGUMENTS_BYTES, "{}", kept.len());
    assert!(kept.len() > ARGUMENTS_BYTES - 4, "{}", kept.len());
    assert!(
        note.contains(&format!("truncated at {} bytes", kept.len())),
        "{note}"
    );
    assert!(note.contains("80016 bytes long"), "{note}");
}
