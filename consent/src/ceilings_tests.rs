use std::sync::Arc;

use warrant_idp::SystemClock;

use super::*;

struct Fixture {
    db: Db,
    users: Users,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(None, dir.path()).await.expect("open");
    db.migrate().await.expect("migrate");
    Fixture {
        users: Users::new(db.clone(), Arc::new(SystemClock)),
        db,
        _dir: dir,
    }
}

impl Fixture {
    async fn user(&self, email: &str, groups: &[&str]) -> String {
        crate::test_db::member(&self.users, email, groups).await
    }

    async fn view(&self, default: Risk) -> CeilingView {
        CeilingView::load(Ceilings::new(self.db.clone()), self.users.clone(), default)
            .await
            .expect("load")
    }
}

#[tokio::test]
async fn a_user_with_nothing_set_has_the_default() {
    let f = fixture().await;
    let alice = f.user("alice@example.com", &["eng"]).await;
    let view = f.view(Risk::High).await;
    assert_eq!(
        view.effective(&alice),
        Effective {
            ceiling: Risk::High,
            source: Source::Default
        }
    );
    assert_eq!(view.ceiling("nobody"), Risk::High);
    assert_eq!(view.default_ceiling(), Risk::High);
}

#[tokio::test]
async fn the_view_names_people_by_email_and_sees_new_ones_on_refresh() {
    let f = fixture().await;
    let alice = f.user("alice@example.com", &[]).await;
    let view = f.view(Risk::High).await;
    assert_eq!(view.person(&alice).as_deref(), Some("alice@example.com"));
    let bob = f.user("bob@example.com", &[]).await;
    assert_eq!(view.person(&bob), None, "not read yet");
    let before = view.person(&alice);
    view.refresh().await.expect("refresh");
    assert_eq!(view.person(&bob).as_deref(), Some("bob@example.com"));
    let after = view.person(&alice);
    assert!(
        before.zip(after).is_some_and(|(a, b)| Arc::ptr_eq(&a, &b)),
        "an unchanged email keeps its shared copy"
    );
}

#[tokio::test]
async fn the_lowest_group_default_wins() {
    let f = fixture().await;
    let alice = f.user("alice@example.com", &["eng", "ops", "sales"]).await;
    let bob = f.user("bob@example.com", &["eng"]).await;
    let view = f.view(Risk::Medium).await;
    view.set_group("eng", Some(Risk::Critical), "admin", 10)
        .await
        .expect("set");
    view.set_group("ops", Some(Risk::Low), "admin", 11)
        .await
        .expect("set");
    // `sales` has no default: it does not count.
    assert_eq!(
        view.effective(&alice),
        Effective {
            ceiling: Risk::Low,
            source: Source::Group("ops".into())
        }
    );
    // A group default applies even above the configured default.
    assert_eq!(
        view.effective(&bob),
        Effective {
            ceiling: Risk::Critical,
            source: Source::Group("eng".into())
        }
    );
    // Two groups with the same lowest class: the first by name is named.
    view.set_group("sales", Some(Risk::Low), "admin", 12)
        .await
        .expect("set");
    assert_eq!(
        view.effective(&alice).source,
        Source::Group("ops".into()),
        "ops < sales"
    );
}

#[tokio::test]
async fn an_override_wins_over_groups_up_and_down() {
    let f = fixture().await;
    let alice = f.user("alice@example.com", &["eng"]).await;
    let view = f.view(Risk::Medium).await;
    view.set_group("eng", Some(Risk::Medium), "admin", 10)
        .await
        .expect("set");
    view.set_user(&alice, Some(Risk::Low), "admin", 11)
        .await
        .expect("down");
    assert_eq!(
        view.effective(&alice),
        Effective {
            ceiling: Risk::Low,
            source: Source::Override
        }
    );
    view.set_user(&alice, Some(Risk::Critical), "admin", 12)
        .await
        .expect("up");
    assert_eq!(view.ceiling(&alice), Risk::Critical);
    // Cleared: the group applies again.
    view.set_user(&alice, None, "admin", 13)
        .await
        .expect("clear");
    assert_eq!(
        view.effective(&alice),
        Effective {
            ceiling: Risk::Medium,
            source: Source::Group("eng".into())
        }
    );
}

#[tokio::test]
async fn changes_elsewhere_are_seen_on_refresh_and_local_ones_at_once() {
    let f = fixture().await;
    let alice = f.user("alice@example.com", &[]).await;
    let view = f.view(Risk::High).await;
    let mut changes = view.subscribe();
    let before = *changes.borrow_and_update();

    // Another replica (or the database by hand) lowers alice's ceiling.
    Ceilings::new(f.db.clone())
        .set(SubjectKind::User, &alice, Some(Risk::Low), "admin", 20)
        .await
        .expect("set elsewhere");
    assert_eq!(view.ceiling(&alice), Risk::High, "not read yet");
    assert!(view.refresh().await.expect("refresh"));
    assert_eq!(view.ceiling(&alice), Risk::Low);
    assert!(changes.has_changed().expect("open"));
    assert!(*changes.borrow_and_update() > before);
    // Nothing new: no change reported.
    assert!(!view.refresh().await.expect("refresh"));
    assert!(!changes.has_changed().expect("open"));

    // A group default, and a membership that changes in the identity provider.
    view.set_group("ops", Some(Risk::Medium), "admin", 21)
        .await
        .expect("set");
    view.set_user(&alice, None, "admin", 22)
        .await
        .expect("clear");
    assert_eq!(view.ceiling(&alice), Risk::High);
    changes.borrow_and_update();
    f.users
        .set_groups(&alice, "oidc:corp", &["ops".into()])
        .await
        .expect("groups");
    assert!(view.refresh().await.expect("refresh"));
    assert_eq!(
        view.effective(&alice),
        Effective {
            ceiling: Risk::Medium,
            source: Source::Group("ops".into())
        }
    );
    assert!(changes.has_changed().expect("open"));
    assert_eq!(
        view.group_ceilings().into_iter().collect::<Vec<_>>(),
        [("ops".to_owned(), Risk::Medium)]
    );
}

#[tokio::test]
async fn every_change_is_recorded_with_who_and_when() {
    let f = fixture().await;
    let alice = f.user("alice@example.com", &[]).await;
    let store = Ceilings::new(f.db.clone());
    store
        .set(SubjectKind::User, &alice, Some(Risk::Low), "admin-1", 100)
        .await
        .expect("set");
    store
        .set(SubjectKind::User, &alice, Some(Risk::High), "admin-2", 200)
        .await
        .expect("raise");
    let entry = store
        .get(SubjectKind::User, &alice)
        .await
        .expect("get")
        .expect("set");
    assert_eq!(
        (entry.ceiling, entry.set_by.as_str(), entry.set_at),
        (Risk::High, "admin-2", 200)
    );
    store
        .set(SubjectKind::User, &alice, None, "admin-1", 300)
        .await
        .expect("clear");
    assert!(
        store
            .get(SubjectKind::User, &alice)
            .await
            .expect("get")
            .is_none()
    );
    let history = store
        .history(SubjectKind::User, &alice, 10)
        .await
        .expect("history");
    let seen: Vec<(Option<Risk>, &str, i64)> = history
        .iter()
        .map(|c| (c.ceiling, c.set_by.as_str(), c.set_at))
        .collect();
    assert_eq!(
        seen,
        [
            (None, "admin-1", 300),
            (Some(Risk::High), "admin-2", 200),
            (Some(Risk::Low), "admin-1", 100)
        ]
    );
    assert!(store.all().await.expect("all").is_empty());
}

#[tokio::test]
async fn unusable_group_names_are_refused() {
    let f = fixture().await;
    let store = Ceilings::new(f.db.clone());
    for bad in ["", "  ", "a\nb", &"x".repeat(101)] {
        assert!(
            matches!(
                store
                    .set(SubjectKind::Group, bad, Some(Risk::Low), "admin", 1)
                    .await,
                Err(CeilingError::BadGroup(_))
            ),
            "{bad:?}"
        );
    }
}

/// The per-call lookup and the periodic refresh, measured (`cargo test -p
/// warrant-consent ceiling_speed -- --ignored --nocapture`).
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn ceiling_speed() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for i in 0..1000 {
        let group = format!("g{}", i % 50);
        ids.push(f.user(&format!("u{i}@example.com"), &[&group, "all"]).await);
    }
    let view = f.view(Risk::High).await;
    for g in 0..50 {
        let class = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical][g % 4];
        view.set_group(&format!("g{g}"), Some(class), "admin", 1)
            .await
            .expect("set");
    }
    view.set_group("all", Some(Risk::Critical), "admin", 1)
        .await
        .expect("set");
    for id in ids.iter().step_by(10) {
        view.set_user(id, Some(Risk::Medium), "admin", 2)
            .await
            .expect("set");
    }
    let started = std::time::Instant::now();
    let rounds = 10;
    for _ in 0..rounds {
        view.refresh().await.expect("refresh");
    }
    let refresh = started.elapsed() / rounds;
    let started = std::time::Instant::now();
    let mut sum = 0;
    for _ in 0..100 {
        for id in &ids {
            sum += view.ceiling(id).level();
        }
    }
    let lookup = started.elapsed() / (100 * u32::try_from(ids.len()).unwrap_or(1));
    println!(
        "1000 users, 51 groups with a ceiling, 100 overrides: refresh {refresh:?}, lookup {lookup:?} (sum {sum})"
    );
}

#[tokio::test]
async fn a_refresh_names_exactly_the_users_whose_ceiling_moved() {
    let f = fixture().await;
    let alice = f.user("alice@example.com", &["eng"]).await;
    let bob = f.user("bob@example.com", &["eng"]).await;
    let carol = f.user("carol@example.com", &[]).await;
    let view = f.view(Risk::High).await;
    let mut affected = view.subscribe_affected();
    let mut next = || {
        affected
            .try_recv()
            .map(|users| users.iter().cloned().collect::<Vec<_>>())
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    view.set_group("eng", Some(Risk::Medium), "admin", 10)
        .await
        .expect("set");
    assert_eq!(
        next().expect("eng moved"),
        sorted(vec![alice.clone(), bob.clone()])
    );
    view.set_user(&carol, Some(Risk::Low), "admin", 11)
        .await
        .expect("set");
    assert_eq!(next().expect("carol moved"), vec![carol.clone()]);
    // Back to the default: a move too.
    view.set_group("eng", Some(Risk::High), "admin", 12)
        .await
        .expect("set");
    assert_eq!(
        next().expect("eng moved back"),
        sorted(vec![alice.clone(), bob])
    );
    // Changes that move nobody's ceiling name nobody: a group without members, an
    // override equal to what the group gives.
    view.set_group("empty", Some(Risk::Low), "admin", 13)
        .await
        .expect("set");
    view.set_user(&alice, Some(Risk::High), "admin", 14)
        .await
        .expect("set");
    assert!(next().is_err(), "nobody's ceiling moved");
}
