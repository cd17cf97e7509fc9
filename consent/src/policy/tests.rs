//! Policy files against a real database: SQLite, or PostgreSQL when
//! `WARRANT_TEST_BACKEND=postgres` (a fresh database on `WARRANT_TEST_DATABASE_URL`).

use std::sync::Arc;

use serde_json::json;
use warrant_idp::SystemClock;
use warrant_idp::db::Db;
use warrant_idp::users::Users;

use super::*;
use crate::catalog::{Catalog, ToolRecord};
use crate::ceilings::Ceilings;

struct Fixture {
    db: Db,
    users: Users,
    store: PolicyStore,
    _dir: tempfile::TempDir,
}

async fn open_db(dir: &std::path::Path) -> Db {
    crate::test_db::open(dir, "warrant_policy").await
}

fn tool(name: &str, annotations: serde_json::Value) -> ToolRecord {
    ToolRecord {
        name: name.into(),
        title: None,
        description: Some(format!("the {name} tool")),
        annotations: Some(annotations),
        input_schema: json!({"type": "object"}),
        output_schema: None,
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_db(dir.path()).await;
    db.migrate().await.expect("migrate");
    let users = Users::new(db.clone(), Arc::new(SystemClock));
    Catalog::new(db.clone())
        .record(
            "demo",
            &[
                tool("read_note", json!({"readOnlyHint": true})),
                tool("write_note", json!({})),
                tool("send_payment", json!({"destructiveHint": true})),
            ],
            100,
        )
        .await
        .expect("record demo");
    Catalog::new(db.clone())
        .record("files", &[tool("list", json!({"readOnlyHint": true}))], 100)
        .await
        .expect("record files");
    Fixture {
        store: PolicyStore::new(db.clone(), users.clone()),
        db,
        users,
        _dir: dir,
    }
}

impl Fixture {
    async fn user(&self, email: &str, groups: &[&str]) -> String {
        crate::test_db::member(&self.users, email, groups).await
    }

    /// A deployment with something of everything: a trusted upstream, reviews, a group
    /// ceiling and a user's ceiling.
    async fn populated(&self) -> String {
        let alice = self.user("alice@example.com", &["engineering"]).await;
        self.user("bob@example.com", &["sales"]).await;
        let catalog = Catalog::new(self.db.clone());
        catalog
            .set_trusted("demo", Some("admin"), 200)
            .await
            .expect("trust");
        catalog
            .review("demo", "send_payment", Some(Risk::Critical), "admin", 200)
            .await
            .expect("review");
        catalog
            .review("files", "list", Some(Risk::Low), "admin", 200)
            .await
            .expect("review");
        let ceilings = Ceilings::new(self.db.clone());
        ceilings
            .set(
                SubjectKind::Group,
                "engineering",
                Some(Risk::High),
                "admin",
                200,
            )
            .await
            .expect("group");
        ceilings
            .set(SubjectKind::User, &alice, Some(Risk::Medium), "admin", 200)
            .await
            .expect("user");
        alice
    }

    async fn plan(&self, text: &str) -> Result<Plan, PolicyError> {
        self.store
            .plan(&Policy::parse(text, "test.toml").expect("parses"))
            .await
    }

    async fn state(&self) -> PolicyState {
        self.store.current().await.expect("current").state
    }
}

fn lines(plan: &Plan) -> Vec<String> {
    plan.changes.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn an_export_applied_again_changes_nothing() {
    let f = fixture().await;
    f.populated().await;
    let current = f.store.current().await.expect("current");
    let text = render(&current, Some(Risk::High));
    assert!(
        text.contains("[upstreams.demo]\ntrust_annotations = true\n"),
        "{text}"
    );
    assert!(text.contains("send_payment = \"critical\"\n"), "{text}");
    assert!(
        text.contains("# read_note = \"low\"  # not reviewed; its annotations suggest low"),
        "{text}"
    );
    assert!(
        text.contains("[groups.engineering]\nceiling = \"high\"\n"),
        "{text}"
    );
    assert!(
        text.contains("[users.\"alice@example.com\"]\nceiling = \"medium\"\n"),
        "{text}"
    );
    assert!(
        text.contains("# Groups without a ceiling (members): sales (1)"),
        "{text}"
    );
    assert!(text.contains("default ceiling, high"), "{text}");

    let parsed = Policy::parse(&text, "export.toml").expect("the export parses");
    assert_eq!(parsed.validate().expect("valid"), current.state);
    assert_eq!(
        parsed,
        current.state.to_policy(current.tools.keys().cloned()),
        "the file says exactly what the database holds"
    );
    let plan = f.store.plan(&parsed).await.expect("plan");
    assert_eq!(lines(&plan), Vec::<String>::new(), "identity: no changes");
    f.store
        .apply(&plan, "policy file export.toml", 300)
        .await
        .expect("apply");
    assert_eq!(f.state().await, current.state);
}

#[tokio::test]
async fn the_diff_names_every_change_with_old_and_new() {
    let f = fixture().await;
    f.populated().await;
    f.user("carol@example.com", &[]).await;
    // demo no longer trusted, send_payment lowered, write_note reviewed, files.list
    // unreviewed again (absent), engineering lowered, ops added, alice removed, carol added.
    let plan = f
        .plan(
            r#"
            [upstreams.demo]
            trust_annotations = false
            [upstreams.demo.tools]
            send_payment = "high"
            write_note = "medium"
            [upstreams.files]
            trust_annotations = true
            [groups.engineering]
            ceiling = "medium"
            [groups."ops team"]
            ceiling = "low"
            [users."Carol@Example.com"]
            ceiling = "critical"
            "#,
        )
        .await
        .expect("plan");
    assert_eq!(
        lines(&plan),
        [
            "~ upstreams.demo.trust_annotations: true → false",
            "~ upstreams.files.trust_annotations: false → true",
            "~ upstreams.demo.tools.send_payment: critical → high",
            "+ upstreams.demo.tools.write_note = \"medium\"",
            "- upstreams.files.tools.list = \"low\" (removed: unreviewed again)",
            "~ groups.engineering.ceiling: high → medium",
            "+ groups.\"ops team\".ceiling = \"low\"",
            "- users.\"alice@example.com\".ceiling = \"medium\" (removed: no own ceiling: groups or the default apply)",
            "+ users.\"carol@example.com\".ceiling = \"critical\"",
        ]
    );
}

#[tokio::test]
async fn apply_makes_the_database_the_file_and_removes_what_the_file_lacks() {
    let f = fixture().await;
    let alice = f.populated().await;
    let plan = f
        .plan(
            r#"
            [upstreams.demo.tools]
            read_note = "low"
            [groups.sales]
            ceiling = "low"
            "#,
        )
        .await
        .expect("plan");
    assert_eq!(plan.changes.len(), 7, "{:#?}", lines(&plan));
    f.store
        .apply(&plan, "policy file team.toml", 300)
        .await
        .expect("apply");

    let state = f.state().await;
    assert_eq!(
        state,
        PolicyState {
            trusted: BTreeSet::new(),
            reviewed: [(("demo".to_owned(), "read_note".to_owned()), Risk::Low)].into(),
            groups: [("sales".to_owned(), Risk::Low)].into(),
            users: BTreeMap::new(),
        },
        "trust, reviews and ceilings absent from the file are gone"
    );
    let catalog = Catalog::new(f.db.clone());
    let read = catalog
        .tool("demo", "read_note")
        .await
        .expect("tool")
        .expect("known");
    assert_eq!(read.reviewed_by.as_deref(), Some("policy file team.toml"));
    assert_eq!(read.reviewed_at, Some(300));
    let pay = catalog
        .tool("demo", "send_payment")
        .await
        .expect("tool")
        .expect("known");
    assert_eq!(
        (pay.risk_override, pay.reviewed_by, pay.reviewed_at),
        (None, None, None)
    );
    assert_eq!(catalog.trust_of("demo").await.expect("trust"), None);

    let ceilings = Ceilings::new(f.db.clone());
    let sales = ceilings
        .get(SubjectKind::Group, "sales")
        .await
        .expect("get")
        .expect("set");
    assert_eq!(
        (sales.set_by.as_str(), sales.set_at),
        ("policy file team.toml", 300)
    );
    let history = ceilings
        .history(SubjectKind::User, &alice, 10)
        .await
        .expect("history");
    assert_eq!(history[0].ceiling, None, "the removal is in the history");
    assert_eq!(history[0].set_by, "policy file team.toml");

    // Applying the same file again: nothing left to change.
    let again = f
        .plan("[upstreams.demo.tools]\nread_note = \"low\"\n[groups.sales]\nceiling = \"low\"\n")
        .await
        .expect("plan");
    assert!(again.changes.is_empty(), "{:?}", lines(&again));
}

#[tokio::test]
async fn a_file_with_one_invalid_entry_changes_nothing_and_names_every_problem() {
    let f = fixture().await;
    f.populated().await;
    let before = f.state().await;
    let err = f
        .plan(
            r#"
            [upstreams.demo.tools]
            read_note = "low"
            send_payment = "extreme"
            forget_everything = "low"
            [upstreams.ghost.tools]
            haunt = "high"
            [groups.engineering]
            ceiling = "low"
            [groups."   "]
            ceiling = "low"
            [users."nobody@example.com"]
            ceiling = "low"
            [users."not an email"]
            ceiling = "low"
            [users."ghost@example.com"]
            ceiling = "sky-high"
            "#,
        )
        .await
        .expect_err("refused");
    let PolicyError::Invalid(problems) = &err else {
        panic!("not a validation error: {err}")
    };
    let text = err.to_string();
    assert!(text.contains("nothing was applied"), "{text}");
    for expected in [
        "upstreams.demo.tools.send_payment: \"extreme\" is not a risk class",
        "groups.\"   \": \"   \" is not a usable group name",
        "users.\"not an email\": \"not an email\" is not an email address",
        "tools the catalog has never seen",
        "demo.forget_everything, ghost.haunt",
        "users with no account here",
        "nobody@example.com",
        "users.\"ghost@example.com\".ceiling: \"sky-high\" is not a risk class",
        "ghost@example.com, nobody@example.com",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert_eq!(f.state().await, before, "nothing changed");
}

#[tokio::test]
async fn a_change_made_meanwhile_aborts_the_whole_apply() {
    let f = fixture().await;
    let alice = f.populated().await;
    let before = f.state().await;
    // Trust, a review and a group ceiling change first; alice's ceiling last.
    let plan = f
        .plan(
            r#"
            [upstreams.files]
            trust_annotations = true
            [upstreams.files.tools]
            list = "medium"
            [upstreams.demo]
            trust_annotations = true
            [upstreams.demo.tools]
            send_payment = "critical"
            [groups.engineering]
            ceiling = "low"
            [users."alice@example.com"]
            ceiling = "low"
            "#,
        )
        .await
        .expect("plan");
    assert_eq!(plan.changes.len(), 4, "{:#?}", lines(&plan));
    // Another admin changes alice's ceiling after the diff was shown.
    Ceilings::new(f.db.clone())
        .set(
            SubjectKind::User,
            &alice,
            Some(Risk::High),
            "other admin",
            250,
        )
        .await
        .expect("set");
    let err = f
        .store
        .apply(&plan, "policy file", 300)
        .await
        .expect_err("conflict");
    assert!(
        matches!(&err, PolicyError::Conflict(line) if line.contains("alice@example.com")),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was applied"), "{err}");
    let mut expected = before;
    expected
        .users
        .insert("alice@example.com".into(), Risk::High);
    assert_eq!(
        f.state().await,
        expected,
        "the earlier writes of the same apply were rolled back"
    );
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_the_parser() {
    let err = Policy::parse("[upstreams.demo]\ntrust = true\n", "p.toml").expect_err("unknown");
    assert!(
        err.to_string()
            .contains("p.toml is not a valid policy file"),
        "{err}"
    );
    assert!(err.to_string().contains("unknown field `trust`"), "{err}");
    let err = Policy::parse("[teams.x]\nceiling = \"low\"\n", "p.toml").expect_err("unknown");
    assert!(err.to_string().contains("unknown field `teams`"), "{err}");
    let err = Policy::parse("[groups.x]\n", "p.toml").expect_err("no ceiling");
    assert!(err.to_string().contains("missing field `ceiling`"), "{err}");
    assert_eq!(
        Policy::parse("", "empty.toml").expect("an empty file is a valid policy"),
        Policy::default()
    );
}

#[test]
fn keys_are_quoted_only_when_they_must_be() {
    assert_eq!(key("read_note"), "read_note");
    assert_eq!(key("ops-team"), "ops-team");
    assert_eq!(key("alice@example.com"), "\"alice@example.com\"");
    assert_eq!(key("say \"hi\""), quoted("say \"hi\""));
    let text = format!("{} = 1", key("a \"b\" c"));
    let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
    assert!(parsed.contains_key("a \"b\" c"));
}

#[test]
fn a_user_named_twice_in_different_case_is_refused() {
    let policy = Policy::parse(
        "[users.\"Alice@Example.com\"]\nceiling = \"low\"\n[users.\"alice@example.com\"]\nceiling = \"high\"\n",
        "p.toml",
    )
    .expect("parses");
    let problems = policy.validate().expect_err("named twice");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("named twice"), "{problems:?}");
}
