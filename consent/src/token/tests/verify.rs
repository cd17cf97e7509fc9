//! Verification: signatures, key ids, the cache and revocation.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;

use super::*;

#[tokio::test]
async fn the_identity_carries_every_authority_fact_and_the_chain() {
    let f = fixture().await;
    let token = f.mint(consent(&["github.*"]));
    let verified = f.verifier.verify(&token, T0).expect("verify");
    let id = &verified.identity;
    assert_eq!(
        (
            id.user.as_str(),
            id.agent.as_str(),
            id.grant.as_str(),
            id.audience.as_str()
        ),
        ("user-alice", "claude-code", "grant-1", AUDIENCE)
    );
    assert_eq!((id.expires_at, id.kid), (T0 + 600, 1));
    assert_eq!(id.chain.len(), 2);
    assert_eq!(id.chain[0].kind, BlockKind::Authority);
    assert_eq!(id.chain[1].kind, BlockKind::Consent);
    assert_eq!(id.chain[1].restriction, Some(consent(&["github.*"])));
    assert_eq!(id.revocation_ids.len(), 2);
    assert!(
        id.revocation_ids.iter().all(|r| r.len() == 128),
        "{:?}",
        id.revocation_ids
    );
}

#[tokio::test]
async fn garbage_and_tampered_tokens_are_refused() {
    let f = fixture().await;
    for garbage in ["", "not a token", "AAAA", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
        assert!(
            matches!(
                f.verifier.verify(garbage, T0),
                Err(TokenError::Malformed(_))
            ),
            "{garbage:?}"
        );
    }
    let huge = "A".repeat(MAX_TOKEN_LEN + 1);
    assert!(matches!(
        f.verifier.verify(&huge, T0),
        Err(TokenError::Malformed(_))
    ));

    let token = f.mint(consent(&["*"]));
    let mut bytes = URL_SAFE.decode(&token).expect("base64url");
    // Flip one byte of the user id inside the signed authority block.
    let at = bytes
        .windows(10)
        .position(|w| w == b"user-alice")
        .expect("the user id is in the token");
    bytes[at + 5] ^= 0x01;
    let tampered = URL_SAFE.encode(&bytes);
    assert!(matches!(
        f.verifier.verify(&tampered, T0),
        Err(TokenError::BadSignature)
    ));
    // So is a flip in the last signature.
    let mut bytes = URL_SAFE.decode(&token).expect("base64url");
    let last = bytes.len() - 10;
    bytes[last] ^= 0x80;
    let tampered = URL_SAFE.encode(&bytes);
    assert!(matches!(
        f.verifier.verify(&tampered, T0),
        Err(TokenError::BadSignature | TokenError::Malformed(_))
    ),);
    assert_eq!(f.verifier.cached(), 0, "refused tokens are never cached");
}

#[tokio::test]
async fn a_token_from_an_unknown_key_is_refused() {
    let f = fixture().await;
    let other = fixture().await;
    other.keys.rotate().await.expect("rotate");
    // Kid 2 does not exist here.
    let foreign = other.mint(consent(&["*"]));
    assert!(matches!(
        f.verifier.verify(&foreign, T0),
        Err(TokenError::UnknownKey(Some(2)))
    ));
    // Kid 1 exists, but it is another key: the signature does not verify.
    let other_first = fixture().await;
    let forged = other_first.mint(consent(&["*"]));
    assert!(matches!(
        f.verifier.verify(&forged, T0),
        Err(TokenError::BadSignature)
    ));
    // No kid at all.
    let keypair = biscuit_auth::KeyPair::new();
    let no_kid = biscuit_auth::Biscuit::builder()
        .fact("user(\"x\")")
        .expect("fact")
        .build(&keypair)
        .expect("build")
        .to_base64()
        .expect("b64");
    assert!(matches!(
        f.verifier.verify(&no_kid, T0),
        Err(TokenError::UnknownKey(None))
    ));
}

#[tokio::test]
async fn a_signed_token_without_warrant_facts_is_not_an_access_token() {
    let f = fixture().await;
    let key = f.keys.signing_key().expect("active");
    let bare = biscuit_auth::Biscuit::builder()
        .fact("user(\"x\")")
        .expect("fact")
        .root_key_id(key.kid)
        .build(&key.keypair)
        .expect("build")
        .to_base64()
        .expect("b64");
    assert!(matches!(
        f.verifier.verify(&bare, T0),
        Err(TokenError::NotWarrant(_))
    ));
}

#[tokio::test]
async fn verified_tokens_are_cached_but_revocation_is_checked_every_time() {
    let f = fixture().await;
    let token = f.mint(consent(&["*"]));
    let first = f.verifier.verify(&token, T0).expect("verify");
    let second = f.verifier.verify(&token, T0 + 1).expect("verify again");
    assert!(
        Arc::ptr_eq(&first, &second),
        "the second answer comes from the cache"
    );
    assert_eq!(f.verifier.cached(), 1);

    let none: HashSet<String> = HashSet::new();
    assert!(f.verifier.verify_unrevoked(&token, T0, &none).is_ok());
    let grant: HashSet<String> = ["grant-1".to_owned()].into();
    assert!(matches!(
        f.verifier.verify_unrevoked(&token, T0, &grant),
        Err(TokenError::Revoked)
    ));
    let block = first.identity.revocation_ids[1].clone();
    let by_block = move |id: &str| id == block;
    assert!(matches!(
        f.verifier.verify_unrevoked(&token, T0, &by_block),
        Err(TokenError::Revoked)
    ));
    // A narrowed copy is revoked with its parent's blocks.
    let child = attenuate(
        &token,
        &Restriction {
            max_risk: Some(Risk::Low),
            ..Restriction::default()
        },
    )
    .expect("attenuate");
    assert!(matches!(
        f.verifier.verify_unrevoked(&child, T0, &by_block),
        Err(TokenError::Revoked)
    ));
    // Expiry is checked on a cache hit as well.
    assert!(matches!(
        f.verifier.verify(&token, T0 + 601),
        Err(TokenError::Expired(_))
    ));
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let f = fixture().await;
    let verifier = Verifier::new(f.keys.clone(), VerifierSettings { cache_capacity: 3 });
    let token = f.mint(consent(&["*"]));
    for i in 0..10 {
        let narrowed = attenuate(
            &token,
            &Restriction {
                expires_at: Some(T0 + 100 + i),
                ..Restriction::default()
            },
        )
        .expect("attenuate");
        verifier.verify(&narrowed, T0).expect("verify");
        assert!(verifier.cached() <= 3);
    }
    assert_eq!(verifier.cached(), 3);
}

#[tokio::test]
async fn the_call_budget_is_read_from_the_authority_block_only() {
    let f = fixture().await;
    let plain = mint(&f.keys, &request(consent(&["*"])), T0).expect("mint");
    let verified = f.verifier.verify(&plain, T0).expect("verify");
    assert_eq!(verified.identity.calls_per_hour, None, "no budget");

    let budgeted = mint(
        &f.keys,
        &MintRequest {
            calls_per_hour: Some(3),
            ..request(consent(&["*"]))
        },
        T0,
    )
    .expect("mint");
    let verified = f.verifier.verify(&budgeted, T0).expect("verify");
    assert_eq!(verified.identity.calls_per_hour, Some(3));
    // The budget is data for the gateway: it neither refuses nor stops remembering.
    assert!(f.decide(&budgeted, &call("fs", "read")).allow);
    assert!(verified.remembers_decisions(), "the token is Warrant's own");

    // A narrowing keeps it; a hand-written block stating a bigger one changes nothing
    // (its facts are its own).
    let narrowed = attenuate(&budgeted, &consent(&["fs.*"])).expect("attenuate");
    let verified = f.verifier.verify(&narrowed, T0).expect("verify");
    assert_eq!(verified.identity.calls_per_hour, Some(3));
    let forged = biscuit_auth::BlockBuilder::new()
        .code("calls_per_hour(1000000);")
        .expect("datalog");
    let appended = biscuit_auth::UnverifiedBiscuit::from_base64(&budgeted)
        .and_then(|t| t.append(forged))
        .and_then(|t| t.to_base64())
        .expect("append");
    let verified = f.verifier.verify(&appended, T0).expect("verify");
    assert_eq!(verified.identity.calls_per_hour, Some(3));

    for bad in [0, -1] {
        let refused = mint(
            &f.keys,
            &MintRequest {
                calls_per_hour: Some(bad),
                ..request(consent(&["*"]))
            },
            T0,
        );
        assert!(matches!(refused, Err(TokenError::Invalid(_))), "{bad}");
    }
}
