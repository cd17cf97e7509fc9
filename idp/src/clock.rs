//! Time, injected: expiry of sessions, links and setup tokens is computed from a [`Clock`]
//! so that unit tests can move time instead of sleeping.

use std::fmt::Debug;
use std::sync::Mutex;

use time::OffsetDateTime;

/// A source of the current instant (UTC).
pub trait Clock: Debug + Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// The current instant as Unix seconds, the unit of every `*_at` column of `idp_*`.
    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until moved (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(at))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
