//! The key ring: creation, encryption at rest, rotation, reload.

use std::time::Duration;

use super::*;

type StoredRow = (i64, String, String, Option<i64>);

async fn rows(db: &Db) -> Vec<StoredRow> {
    warrant_idp::on_pool!(db, pool => sqlx::query_as(
        "SELECT kid, public_key, private_key, retired_at FROM consent_keys ORDER BY kid"
    )
    .fetch_all(pool)
    .await)
    .expect("rows")
}

#[tokio::test]
async fn the_first_start_creates_one_encrypted_key_and_later_starts_reuse_it() {
    let f = fixture().await;
    assert_eq!(f.keys.active_kid(), Some(1));
    let stored = rows(&f.db).await;
    assert_eq!(stored.len(), 1);
    let (kid, public_hex, sealed, retired) = &stored[0];
    assert_eq!((*kid, retired), (1, &None));
    // The private key is not stored in clear (hex or raw inside the base64).
    let private_hex = f
        .keys
        .signing_key()
        .expect("active")
        .keypair
        .private()
        .to_bytes_hex();
    assert!(!sealed.contains(&private_hex));
    assert_ne!(sealed.as_str(), public_hex.as_str());
    let again = KeyRing::open(f.db.clone(), KEK, KeySettings::default(), f.clock.clone())
        .await
        .expect("reopen");
    assert_eq!(again.active_kid(), Some(1));
    assert_eq!(again.public_keys(), f.keys.public_keys());
    let published = &f.keys.public_keys()[0];
    assert_eq!(published.algorithm, "Ed25519");
    assert_eq!(published.public_key, *public_hex);
    assert_eq!(published.created_at, T0);
    let json = serde_json::to_value(published).expect("json");
    assert_eq!(json["kid"], 1);
    assert!(json.get("retired_at").is_none());
    // A token minted by the first ring verifies with the reopened one.
    let token = f.mint(consent(&["*"]));
    let verifier = Verifier::new(again, VerifierSettings::default());
    assert!(verifier.verify(&token, T0).is_ok());
}

#[tokio::test]
async fn a_wrong_secret_key_or_a_moved_ciphertext_is_refused() {
    let f = fixture().await;
    let wrong = KeyRing::load(
        f.db.clone(),
        [7; 32],
        KeySettings::default(),
        f.clock.clone(),
    )
    .await;
    match wrong {
        Err(TokenError::KeyDecrypt { kid: 1, reason }) => {
            assert!(reason.contains("secret key"), "{reason}");
        }
        other => panic!("expected a decryption error, got {other:?}"),
    }
    // The kid is the associated data: a ciphertext moved to another kid does not decrypt.
    f.keys.rotate().await.expect("rotate");
    warrant_idp::on_pool!(&f.db, pool => sqlx::query(
        "UPDATE consent_keys SET private_key = (SELECT private_key FROM consent_keys WHERE kid = 1) WHERE kid = 2"
    )
    .execute(pool)
    .await
    .map(drop))
    .expect("swap");
    let moved = KeyRing::load(f.db.clone(), KEK, KeySettings::default(), f.clock.clone()).await;
    assert!(
        matches!(moved, Err(TokenError::KeyDecrypt { kid: 2, .. })),
        "{moved:?}"
    );
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_the_old_key_expires() {
    let f = fixture().await;
    let old = f.mint(consent(&["*"]));
    f.clock.advance(Duration::from_secs(10));
    let new_key = f.keys.rotate().await.expect("rotate");
    assert_eq!(new_key.kid, 2);
    assert_eq!(f.keys.active_kid(), Some(2));
    let stored = rows(&f.db).await;
    assert_eq!(stored[0].3, Some(T0 + 10), "the old key is retired");
    assert_eq!(stored[1].3, None);
    let listed = f.keys.public_keys();
    assert_eq!(listed[0].accepted_until, Some(T0 + 10 + 3600));

    let rotated_at = T0 + 10;
    let fresh = mint(
        &f.keys,
        &MintRequest {
            expires_at: rotated_at + 3600,
            ..request(consent(&["*"]))
        },
        rotated_at,
    )
    .expect("mint with the new key");
    // A fresh verifier: nothing cached.
    let verifier = Verifier::new(f.keys.clone(), VerifierSettings::default());
    assert_eq!(
        verifier.verify(&old, rotated_at).expect("old").identity.kid,
        1
    );
    assert_eq!(
        verifier
            .verify(&fresh, rotated_at)
            .expect("new")
            .identity
            .kid,
        2
    );

    // After retired_at + the longest token lifetime, key 1 verifies nothing, cached or not.
    let after = rotated_at + 3600;
    let cold = Verifier::new(f.keys.clone(), VerifierSettings::default());
    assert!(matches!(
        cold.verify(&old, after),
        Err(TokenError::KeyExpired(1))
    ));
    assert!(matches!(
        verifier.verify(&old, after),
        Err(TokenError::KeyExpired(1))
    ));
    assert!(verifier.verify(&fresh, after).is_ok());
}

#[tokio::test]
async fn another_replica_sees_a_rotation_after_reload() {
    let f = fixture().await;
    let replica = KeyRing::open(f.db.clone(), KEK, KeySettings::default(), f.clock.clone())
        .await
        .expect("second replica");
    assert_eq!(replica.active_kid(), Some(1));
    f.keys.rotate().await.expect("rotate");
    let token = f.mint(consent(&["*"]));
    let verifier = Verifier::new(replica.clone(), VerifierSettings::default());
    assert!(matches!(
        verifier.verify(&token, T0),
        Err(TokenError::UnknownKey(Some(2)))
    ));
    replica.reload().await.expect("reload");
    assert_eq!(replica.active_kid(), Some(2));
    assert!(verifier.verify(&token, T0).is_ok());
    // Both replicas now mint with key 2.
    let from_replica = mint(&replica, &request(consent(&["*"])), T0).expect("mint");
    assert_eq!(
        f.verifier
            .verify(&from_replica, T0)
            .expect("verify")
            .identity
            .kid,
        2
    );
}

#[tokio::test]
async fn revoking_a_key_refuses_its_tokens_at_once_cached_or_not_on_every_replica() {
    let f = fixture().await;
    let replica = KeyRing::open(f.db.clone(), KEK, KeySettings::default(), f.clock.clone())
        .await
        .expect("second replica");
    let token = f.mint(consent(&["*"]));
    let here = Verifier::new(f.keys.clone(), VerifierSettings::default());
    let there = Verifier::new(replica.clone(), VerifierSettings::default());
    assert!(here.verify(&token, T0).is_ok(), "now cached here");
    assert!(there.verify(&token, T0).is_ok(), "and there");

    // The active key: a new one is made first, so that minting goes on.
    let (revoked, replacement) = f.keys.revoke(1).await.expect("revoke");
    assert_eq!(revoked.revoked_at, Some(T0));
    assert_eq!(revoked.accepted_until, Some(T0));
    assert_eq!(replacement.map(|k| k.kid), Some(2));
    assert_eq!(f.keys.active_kid(), Some(2));
    assert!(matches!(
        here.verify(&token, T0),
        Err(TokenError::KeyRevoked(1))
    ));
    assert!(
        f.keys.published().iter().all(|k| k.kid != 1),
        "a revoked key is not published"
    );
    // Another replica: refused from its next reload on, cached or not.
    replica.reload().await.expect("reload");
    assert!(matches!(
        there.verify(&token, T0),
        Err(TokenError::KeyRevoked(1))
    ));
    assert_eq!(replica.active_kid(), Some(2));
    let stored = KeyRing::list_stored(&f.db, &KeySettings::default())
        .await
        .expect("list");
    assert_eq!(stored[0].revoked_at, Some(T0));
    assert_eq!(stored[1].revoked_at, None);

    // A retired key is revoked without a new one; twice or unknown is refused.
    f.keys.rotate().await.expect("rotate");
    let (_, replacement) = f.keys.revoke(2).await.expect("revoke retired");
    assert!(replacement.is_none());
    assert_eq!(f.keys.active_kid(), Some(3));
    assert!(matches!(
        f.keys.revoke(2).await,
        Err(TokenError::Invalid(_))
    ));
    assert!(matches!(
        f.keys.revoke(9).await,
        Err(TokenError::UnknownKey(Some(9)))
    ));
}

#[tokio::test]
async fn a_ring_loaded_without_keys_cannot_mint() {
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(None, dir.path()).await.expect("open");
    db.migrate().await.expect("migrate");
    let clock = Arc::new(ManualClock::new(
        OffsetDateTime::from_unix_timestamp(T0).expect("instant"),
    ));
    let empty = KeyRing::load(db, KEK, KeySettings::default(), clock)
        .await
        .expect("load");
    assert!(empty.public_keys().is_empty());
    assert!(matches!(
        mint(&empty, &request(consent(&["*"])), T0),
        Err(TokenError::NoActiveKey)
    ));
}
