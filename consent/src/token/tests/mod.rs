//! Tests of the token core: keys, mint → verify → authorize, attenuation, the cache,
//! golden vectors and property tests.

mod attenuate;
mod authorize;
mod cache;
mod golden;
mod keys;
mod props;
mod speed;
mod verify;

use std::sync::Arc;

use tempfile::TempDir;
use time::OffsetDateTime;
use warrant_idp::clock::ManualClock;
use warrant_idp::db::Db;

use super::*;

/// The resource every test token is for.
pub(super) const AUDIENCE: &str = "http://localhost:8080/mcp";
/// "Now" in the tests (2027-01-15).
pub(super) const T0: i64 = 1_800_000_000;
/// The key-encryption key of the tests.
pub(super) const KEK: [u8; 32] = [42; 32];

pub(super) struct Fixture {
    pub(super) _dir: TempDir,
    pub(super) db: Db,
    pub(super) clock: Arc<ManualClock>,
    pub(super) keys: KeyRing,
    pub(super) verifier: Verifier,
}

pub(super) async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(None, dir.path()).await.expect("open");
    db.migrate().await.expect("migrate");
    let clock = Arc::new(ManualClock::new(
        OffsetDateTime::from_unix_timestamp(T0).expect("valid instant"),
    ));
    let keys = KeyRing::open(db.clone(), KEK, KeySettings::default(), clock.clone())
        .await
        .expect("key ring");
    let verifier = Verifier::new(keys.clone(), VerifierSettings::default());
    Fixture {
        _dir: dir,
        db,
        clock,
        keys,
        verifier,
    }
}

pub(super) fn patterns(list: &[&str]) -> Vec<ToolPattern> {
    list.iter()
        .map(|p| ToolPattern::parse(p).expect("valid pattern"))
        .collect()
}

/// A consent that allows `allow`.
pub(super) fn consent(allow: &[&str]) -> Restriction {
    Restriction {
        allow: Some(patterns(allow)),
        ..Restriction::default()
    }
}

pub(super) fn request(consent: Restriction) -> MintRequest {
    MintRequest {
        user: "user-alice".into(),
        agent: "claude-code".into(),
        grant: "grant-1".into(),
        audience: AUDIENCE.into(),
        expires_at: T0 + 600,
        calls_per_hour: None,
        consent,
    }
}

/// A low-risk call to `server.tool` without arguments, one second after T0, by
/// alice@example.com (the person of [`Fixture::mint`]'s tokens).
pub(super) fn call(server: &str, tool: &str) -> CallFacts {
    CallFacts {
        now: T0 + 1,
        resource: AUDIENCE.into(),
        server: server.into(),
        tool: tool.into(),
        risk: Risk::Low,
        ceiling: None,
        args: CallArgs::new(),
        person: Some("alice@example.com".into()),
    }
}

impl Fixture {
    pub(super) fn mint(&self, consent: Restriction) -> String {
        mint(&self.keys, &request(consent), T0).expect("mint")
    }

    pub(super) fn decide(&self, token: &str, call: &CallFacts) -> Decision {
        let verified = self.verifier.verify(token, call.now).expect("verifies");
        let decision = authorize(&verified, call);
        assert!(
            decision.allow || !decision.reason.is_empty(),
            "a refusal always has a reason"
        );
        decision
    }
}
