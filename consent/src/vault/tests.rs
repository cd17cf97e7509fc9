use std::sync::Arc;

use warrant_idp::SystemClock;

use super::*;
use crate::test_db;

async fn db(dir: &std::path::Path) -> Db {
    let db = test_db::open(dir, "vault").await;
    db.migrate().await.expect("migrate");
    db
}

fn keys(current: u8, previous: &[u8]) -> VaultKeys {
    VaultKeys::new(
        Kek::from_bytes([current; 32]),
        previous.iter().map(|&p| Kek::from_bytes([p; 32])).collect(),
    )
}

async fn vault(db: &Db, current: u8, previous: &[u8]) -> Result<Vault, VaultError> {
    Vault::open(db.clone(), keys(current, previous), Arc::new(SystemClock)).await
}

fn text(value: Option<Plain>) -> Option<String> {
    value.map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Every text column of the vault table, for looking for a value in clear.
async fn table_text(db: &Db) -> String {
    type Everything = (String, String, String, String, String, String, String);
    let rows: Vec<Everything> = on_pool!(db, pool => {
        sqlx::query_as("SELECT id, owner, upstream, kind, kek_id, data_key, value FROM consent_vault")
            .fetch_all(pool).await
    })
    .expect("read");
    format!("{rows:?}")
}

#[tokio::test]
async fn values_are_stored_sealed_and_read_back_by_their_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path()).await;
    let vault = vault(&db, 1, &[]).await.expect("open");
    vault
        .put(SHARED, "github", "api_key", b"ghp_shared_secret_1")
        .await
        .expect("put");
    vault
        .put("alice", "linear", "api_key", b"lin_alice_secret_2")
        .await
        .expect("put");
    vault
        .put("bob", "linear", "api_key", b"lin_bob_secret_3")
        .await
        .expect("put");

    assert_eq!(
        text(vault.get(SHARED, "github", "api_key").await.expect("get")).as_deref(),
        Some("ghp_shared_secret_1")
    );
    assert_eq!(
        text(vault.get("alice", "linear", "api_key").await.expect("get")).as_deref(),
        Some("lin_alice_secret_2")
    );
    assert_eq!(
        text(vault.get("bob", "linear", "api_key").await.expect("get")).as_deref(),
        Some("lin_bob_secret_3")
    );
    assert_eq!(
        vault.get("carol", "linear", "api_key").await.expect("get"),
        None
    );
    assert_eq!(
        vault.get(SHARED, "linear", "api_key").await.expect("get"),
        None
    );

    let stored = table_text(&db).await;
    for secret in [
        "ghp_shared_secret_1",
        "lin_alice_secret_2",
        "lin_bob_secret_3",
        "secret",
    ] {
        assert!(!stored.contains(secret), "{secret} in clear in {stored}");
    }

    // A new value replaces the old one, on this replica at once (not from the cache).
    vault
        .put("alice", "linear", "api_key", b"lin_alice_new")
        .await
        .expect("put");
    assert_eq!(
        text(vault.get("alice", "linear", "api_key").await.expect("get")).as_deref(),
        Some("lin_alice_new")
    );
    let entries = vault.list().await.expect("list");
    assert_eq!(entries.len(), 3);
    let alice = entries
        .iter()
        .find(|e| e.owner == "alice")
        .expect("alice's");
    assert_eq!(alice.version, 2);

    assert!(
        vault
            .remove("bob", "linear", "api_key")
            .await
            .expect("remove")
    );
    assert_eq!(
        vault.get("bob", "linear", "api_key").await.expect("get"),
        None
    );
    assert!(
        !vault
            .remove("bob", "linear", "api_key")
            .await
            .expect("remove")
    );
    assert_eq!(vault.remove_owner("alice").await.expect("remove"), 1);
    assert_eq!(
        vault.get("alice", "linear", "api_key").await.expect("get"),
        None
    );
    db.close().await;
}

#[tokio::test]
async fn a_value_copied_onto_another_row_does_not_decrypt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path()).await;
    let vault = vault(&db, 1, &[]).await.expect("open");
    vault
        .put("alice", "linear", "api_key", b"alice's key")
        .await
        .expect("put");
    vault
        .put("mallory", "linear", "api_key", b"mallory's key")
        .await
        .expect("put");
    // Mallory, with write access to the database, copies Alice's sealed parts onto her row.
    on_pool!(&db, pool => {
        sqlx::query(
            "UPDATE consent_vault SET data_key = (SELECT data_key FROM consent_vault WHERE owner = 'alice'), \
             value = (SELECT value FROM consent_vault WHERE owner = 'alice') WHERE owner = 'mallory'",
        )
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
    })
    .expect("copy");
    let fresh = vault_fresh(&db).await;
    let error = fresh
        .get("mallory", "linear", "api_key")
        .await
        .expect_err("refused");
    assert!(matches!(error, VaultError::Undecryptable { .. }), "{error}");
    assert!(
        error.to_string().contains("copied from another row"),
        "{error}"
    );
    assert_eq!(
        text(fresh.get("alice", "linear", "api_key").await.expect("get")).as_deref(),
        Some("alice's key")
    );
    db.close().await;
}

/// The same keys, a fresh cache (another replica).
async fn vault_fresh(db: &Db) -> Vault {
    vault(db, 1, &[]).await.expect("open")
}

#[tokio::test]
async fn a_missing_or_wrong_key_stops_the_open_and_rotation_rewraps_while_reads_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path()).await;
    let old = vault(&db, 1, &[]).await.expect("open");
    for n in 0..20 {
        old.put(
            &format!("person{n}"),
            "linear",
            "api_key",
            format!("key {n}").as_bytes(),
        )
        .await
        .expect("put");
    }
    let old_id = Kek::from_bytes([1; 32]).id().to_owned();

    // A wrong key: the start is refused, naming the key that is missing.
    let error = vault(&db, 2, &[]).await.err().expect("refused");
    assert!(
        matches!(&error, VaultError::MissingKey { kek_id, count: 20 } if *kek_id == old_id),
        "{error}"
    );
    assert!(error.to_string().contains("vault.previous_keys"), "{error}");

    // The new key with the old one as previous: everything reads; rotation re-wraps while
    // another replica keeps reading.
    let both = vault(&db, 2, &[1]).await.expect("open");
    let uses = both.check_keys().await.expect("check");
    assert_eq!(
        uses,
        [KeyUse {
            kek_id: old_id.clone(),
            records: 20,
            current: false
        }]
    );
    let reader = vault(&db, 2, &[1]).await.expect("open");
    let reading = tokio::spawn(async move {
        let mut read = 0;
        for round in 0..5 {
            for n in 0..20 {
                let value = reader
                    .get(&format!("person{n}"), "linear", "api_key")
                    .await
                    .expect("a read during the rotation");
                assert_eq!(text(value), Some(format!("key {n}")), "round {round}");
                read += 1;
            }
            tokio::task::yield_now().await;
        }
        read
    });
    let rotation = both.rotate().await.expect("rotate");
    assert_eq!(
        rotation,
        Rotation {
            rewrapped: 20,
            current: 0
        }
    );
    assert_eq!(reading.await.expect("reader"), 100);
    assert_eq!(
        both.rotate().await.expect("again"),
        Rotation {
            rewrapped: 0,
            current: 20
        }
    );

    // Now the old key can go; alone, it no longer opens the vault.
    let new_only = vault(&db, 2, &[])
        .await
        .expect("open with the new key alone");
    assert_eq!(
        text(
            new_only
                .get("person7", "linear", "api_key")
                .await
                .expect("get")
        )
        .as_deref(),
        Some("key 7")
    );
    assert!(matches!(
        vault(&db, 1, &[]).await,
        Err(VaultError::MissingKey { .. })
    ));
    db.close().await;
}

#[tokio::test]
async fn a_conditional_replace_loses_to_a_write_it_did_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path()).await;
    let vault = vault(&db, 1, &[]).await.expect("open");
    assert!(
        !vault
            .replace_if("alice", "linear", "oauth_token", b"t0", 1)
            .await
            .expect("replace nothing"),
        "nothing stored: nothing replaced"
    );
    vault
        .put("alice", "linear", "oauth_token", b"t1")
        .await
        .expect("put");
    let (_, read) = vault
        .fetch("alice", "linear", "oauth_token")
        .await
        .expect("fetch")
        .expect("stored");
    // Two writers read the same version; the first wins, the second is told.
    assert!(
        vault
            .replace_if("alice", "linear", "oauth_token", b"t2", read)
            .await
            .expect("first")
    );
    assert!(
        !vault
            .replace_if("alice", "linear", "oauth_token", b"t3", read)
            .await
            .expect("second")
    );
    let (value, version) = vault
        .fetch("alice", "linear", "oauth_token")
        .await
        .expect("fetch")
        .expect("stored");
    assert_eq!(&value[..], b"t2");
    assert_eq!(version, read + 1);
}
