use super::*;
use crate::oauth::test_support::fixture_on_test_backend;

/// 2027-01-15T08:00:00Z, the start of an hour.
const H0: i64 = 1_800_003_600 - 1_800_003_600 % HOUR;

#[tokio::test]
async fn calls_are_counted_up_to_the_budget_and_the_refusal_says_when_it_renews() {
    let f = fixture_on_test_backend(H0).await;
    let budgets = Budgets::new(f.db.clone());
    let grant = &f.grant.id;
    assert_eq!(budgets.charge(grant, 3, H0 + 10), Ok(1));
    assert_eq!(budgets.charge(grant, 3, H0 + 11), Ok(2));
    assert_eq!(budgets.charge(grant, 3, H0 + 12), Ok(3));
    let refused = budgets.charge(grant, 3, H0 + 13).expect_err("the fourth");
    assert_eq!(
        refused,
        Exhausted {
            budget: 3,
            used: 3,
            resets_at: H0 + HOUR
        }
    );
    let words = refused.describe(H0 + 13);
    assert!(
        words.contains("3 of 3 calls per hour") && words.contains("in 3587 s"),
        "{words}"
    );
    assert_eq!(budgets.used(grant, H0 + 14), 3, "a refusal is not counted");
    // Another grant has its own count.
    assert_eq!(budgets.charge("other-grant", 3, H0 + 15), Ok(1));
    // The next hour renews it.
    assert_eq!(budgets.charge(grant, 3, H0 + HOUR), Ok(1));

    budgets.flush(H0 + HOUR).await.expect("flush");
    assert_eq!(budgets.stored(grant, H0 / HOUR).await.expect("read"), 3);
    assert_eq!(
        budgets.stored(grant, H0 / HOUR + 1).await.expect("read"),
        1,
        "each hour's calls are stored with their hour"
    );
    assert_eq!(budgets.used(grant, H0 + HOUR + 1), 1);
}

#[tokio::test]
async fn replicas_share_a_budget_through_the_database() {
    let f = fixture_on_test_backend(H0).await;
    let (a, b) = (Budgets::new(f.db.clone()), Budgets::new(f.db.clone()));
    let grant = &f.grant.id;
    assert_eq!(a.charge(grant, 3, H0 + 1), Ok(1));
    assert_eq!(a.charge(grant, 3, H0 + 1), Ok(2));
    a.flush(H0 + 2).await.expect("flush a");
    assert_eq!(a.stored(grant, H0 / HOUR).await.expect("read"), 2);
    // B has seen no call of this grant: its first flush tells it the hour's count.
    b.flush(H0 + 2).await.expect("flush b");
    assert_eq!(b.used(grant, H0 + 2), 2);
    assert_eq!(b.charge(grant, 3, H0 + 3), Ok(3));
    assert!(b.charge(grant, 3, H0 + 3).is_err(), "B's view: 3 of 3");
    b.flush(H0 + 4).await.expect("flush b");
    a.flush(H0 + 4).await.expect("flush a");
    assert_eq!(a.used(grant, H0 + 4), 3, "A hears of B's call");
    let refused = a.charge(grant, 3, H0 + 5).expect_err("A's view: 3 of 3");
    assert_eq!(refused.used, 3);
    assert_eq!(a.stored(grant, H0 / HOUR).await.expect("read"), 3);
    // A flush with nothing new adds nothing.
    a.flush(H0 + 6).await.expect("flush a");
    b.flush(H0 + 6).await.expect("flush b");
    assert_eq!(a.stored(grant, H0 / HOUR).await.expect("read"), 3);
}
