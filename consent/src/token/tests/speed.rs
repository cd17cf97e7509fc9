//! How long verification and authorization take. The debug run guards against losing
//! the `opt-level = 3` of the crypto crates (an unoptimized signature check takes tens
//! of milliseconds); the numbers for the README come from
//! `cargo test -p warrant-consent [--release] token_speed -- --nocapture --include-ignored`.

use std::time::{Duration, Instant};

use super::super::authorize::authorize_uncached;
use super::*;

fn per_op(total: Duration, n: u32) -> Duration {
    total / n
}

struct Measured {
    len: usize,
    /// Parse + signatures + identity, with an empty cache.
    verify: Duration,
    /// Cached verify + a full Datalog run: the per-call cost without remembered decisions.
    full: Duration,
    /// Cached verify + a remembered allow: the per-call cost of a call seen before.
    remembered: Duration,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "3-block token ({} chars): verify (cold) {:?}; per call, cached verify + \
             authorize: full Datalog {:?}, remembered allow {:?}",
            self.len, self.verify, self.full, self.remembered
        )
    }
}

async fn measure(rounds: u32) -> Measured {
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
    // Hot: cached verify + a full authorization, the per-call cost of a new call.
    let verified = f.verifier.verify(&token, T0).expect("verify");
    assert!(authorize_uncached(&verified, &call).allow);
    let start = Instant::now();
    for _ in 0..rounds * 10 {
        let verified = f.verifier.verify(&token, T0).expect("cached");
        assert!(authorize_uncached(&verified, &call).allow);
    }
    let full = per_op(start.elapsed(), rounds * 10);
    // Hot: cached verify + a remembered allow, the per-call cost of a call seen before.
    assert!(verified.remembers_decisions());
    assert!(authorize(&verified, &call).allow);
    let start = Instant::now();
    for _ in 0..rounds * 10 {
        let verified = f.verifier.verify(&token, T0).expect("cached");
        assert!(authorize(&verified, &call).allow);
    }
    let remembered = per_op(start.elapsed(), rounds * 10);
    Measured {
        len: token.len(),
        verify,
        full,
        remembered,
    }
}

#[tokio::test]
async fn token_speed_debug_guard() {
    let m = measure(50).await;
    println!("{m}");
    // Generous bounds for a loaded 2-core machine; the unoptimized build is ~50 ms.
    assert!(
        m.verify < Duration::from_millis(15),
        "verify took {:?}",
        m.verify
    );
    assert!(
        m.full < Duration::from_millis(15),
        "authorize took {:?}",
        m.full
    );
}

#[tokio::test]
#[ignore = "a measurement, run by hand with --nocapture"]
async fn token_speed_measure() {
    println!("{}", measure(2000).await);
}
