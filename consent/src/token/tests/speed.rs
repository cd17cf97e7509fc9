//! How long verification and authorization take. The debug run guards against losing
//! the `opt-level = 3` of the crypto crates (an unoptimized signature check takes tens
//! of milliseconds); the numbers for the README come from
//! `cargo test -p warrant-consent [--release] token_speed -- --nocapture --include-ignored`.

use std::time::{Duration, Instant};

use super::*;

fn per_op(total: Duration, n: u32) -> Duration {
    total / n
}

async fn measure(rounds: u32) -> (Duration, Duration, usize) {
    let f = fixture().await;
    let consent = Restriction {
        deny: patterns(&["github.delete_*"]),
        max_risk: Some(Risk::High),
        args: vec![ArgConstraint::parse("path=prefix:/srv/").expect("valid")],
        ..consent(&["github.*", "fs.*"])
    };
    let token = attenuate(
        &f.mint(consent),
        &Restriction {
            allow: Some(patterns(&["fs.read_*"])),
            expires_at: Some(T0 + 300),
            ..Restriction::default()
        },
    )
    .expect("attenuate");
    let call = CallFacts {
        args: [("path".to_owned(), "/srv/a".to_owned())].into(),
        ..super::call("fs", "read_file")
    };
    // Cold: a fresh verifier each time (signature chain + identity).
    let start = Instant::now();
    for _ in 0..rounds {
        let verifier = Verifier::new(f.keys.clone(), VerifierSettings::default());
        verifier.verify(&token, T0).expect("verify");
    }
    let verify = per_op(start.elapsed(), rounds);
    // Hot: cached verify + authorize, the per-call cost.
    let verified = f.verifier.verify(&token, T0).expect("verify");
    assert!(authorize(&verified, &call).allow);
    let start = Instant::now();
    for _ in 0..rounds * 10 {
        let verified = f.verifier.verify(&token, T0).expect("cached");
        assert!(authorize(&verified, &call).allow);
    }
    let per_call = per_op(start.elapsed(), rounds * 10);
    (verify, per_call, token.len())
}

#[tokio::test]
async fn token_speed_debug_guard() {
    let (verify, per_call, len) = measure(50).await;
    println!(
        "3-block token ({len} chars): verify (cold) {verify:?}, cached verify + authorize {per_call:?}"
    );
    // Generous bounds for a loaded 2-core machine; the unoptimized build is ~50 ms.
    assert!(verify < Duration::from_millis(15), "verify took {verify:?}");
    assert!(
        per_call < Duration::from_millis(15),
        "authorize took {per_call:?}"
    );
}

#[tokio::test]
#[ignore = "a measurement, run by hand with --nocapture"]
async fn token_speed_measure() {
    let (verify, per_call, len) = measure(2000).await;
    println!(
        "3-block token ({len} chars): verify (cold) {verify:?}, cached verify + authorize {per_call:?}"
    );
}
