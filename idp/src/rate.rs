//! Sliding-window rate limits over `idp_rate_events`, shared by every replica through
//! the database. Each request records its event first and then counts the window, so
//! concurrent requests can never let more than the limit through (a refused request
//! counts too: a client that keeps hammering stays refused).
//!
//! A [`RateLimiter`] owns the buckets under its prefix (`email-link:`,
//! `oauth-register:`, …) and prunes only those; each prefix uses one window.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::db::Db;
use crate::on_pool;
use crate::secret::hash_token;

/// A bucket that holds more events than its limit allows.
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    #[error("too many {what}: {count} within {window_secs} s (limit {limit})")]
    Limited {
        what: String,
        count: i64,
        limit: u32,
        window_secs: i64,
    },
    #[error("rate limit storage failed: {0}")]
    Storage(#[from] sqlx::Error),
}

impl RateError {
    /// Seconds after which a refused client may try again (the window, at worst).
    pub fn retry_after(&self) -> Option<i64> {
        match self {
            Self::Limited { window_secs, .. } => Some(*window_secs),
            Self::Storage(_) => None,
        }
    }
}

/// Counts events per bucket under one prefix.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    db: Db,
    clock: Arc<dyn Clock>,
    prefix: &'static str,
}

impl RateLimiter {
    /// `prefix` names the limiter's buckets, e.g. `"oauth-register:"`.
    pub fn new(db: Db, clock: Arc<dyn Clock>, prefix: &'static str) -> Self {
        Self { db, clock, prefix }
    }

    /// The bucket of a client address; IPv6 clients are counted per /64 (one host
    /// usually holds a whole /64), IPv4-mapped addresses as IPv4.
    pub fn ip_bucket(&self, ip: &str) -> String {
        let key = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            Ok(IpAddr::V4(v4)) => v4.to_string(),
            Err(_) => ip.to_owned(),
        };
        format!("{}ip:{key}", self.prefix)
    }

    /// The bucket of a secret-ish key (an email address): its SHA-256, never the key.
    pub fn hashed_bucket(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{}", self.prefix, hash_token(key))
    }

    /// Records one event in `bucket`; [`RateError::Limited`] (naming `what`) when the
    /// bucket now holds more than `limit` events within `window`. Events of this
    /// limiter older than the window are deleted on the way.
    pub async fn hit(
        &self,
        bucket: &str,
        limit: u32,
        window: Duration,
        what: &str,
    ) -> Result<(), RateError> {
        let now = self.clock.unix();
        let window_secs = i64::try_from(window.as_secs())
            .unwrap_or(i64::MAX / 4)
            .max(1);
        let cutoff = now.saturating_sub(window_secs);
        let prune = "DELETE FROM idp_rate_events WHERE bucket LIKE $1 AND at <= $2";
        let insert = "INSERT INTO idp_rate_events (bucket, at) VALUES ($1, $2)";
        let count = "SELECT COUNT(*) FROM idp_rate_events WHERE bucket = $1 AND at > $2";
        let pattern = format!("{}%", self.prefix);
        let n: i64 = on_pool!(&self.db, pool => {
            sqlx::query(prune).bind(&pattern).bind(cutoff).execute(pool).await?;
            sqlx::query(insert).bind(bucket).bind(now).execute(pool).await?;
            sqlx::query_scalar(count).bind(bucket).bind(cutoff).fetch_one(pool).await?
        });
        if n > i64::from(limit) {
            return Err(RateError::Limited {
                what: what.to_owned(),
                count: n,
                limit,
                window_secs,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::clock::ManualClock;

    async fn limiter() -> (tempfile::TempDir, Arc<ManualClock>, RateLimiter) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(None, dir.path()).await.expect("open");
        db.migrate().await.expect("migrate");
        let clock = Arc::new(ManualClock::new(
            OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("instant"),
        ));
        let rate = RateLimiter::new(db, clock.clone(), "test-limit:");
        (dir, clock, rate)
    }

    #[tokio::test]
    async fn the_window_slides_and_buckets_are_separate() {
        let (_dir, clock, rate) = limiter().await;
        let window = Duration::from_secs(60);
        rate.hit("test-limit:a", 2, window, "things")
            .await
            .expect("first");
        rate.hit("test-limit:a", 2, window, "things")
            .await
            .expect("second");
        let refused = rate.hit("test-limit:a", 2, window, "things").await;
        match refused {
            Err(e @ RateError::Limited { .. }) => {
                assert_eq!(e.retry_after(), Some(60));
                assert_eq!(e.to_string(), "too many things: 3 within 60 s (limit 2)");
            }
            other => panic!("{other:?}"),
        }
        rate.hit("test-limit:b", 2, window, "things")
            .await
            .expect("another bucket");
        clock.advance(Duration::from_secs(61));
        rate.hit("test-limit:a", 2, window, "things")
            .await
            .expect("the window slid");
    }

    #[tokio::test]
    async fn buckets_hide_keys_and_group_ipv6() {
        let (_dir, _clock, rate) = limiter().await;
        let bucket = rate.hashed_bucket("addr", "alice@example.com");
        assert!(bucket.starts_with("test-limit:addr:"));
        assert!(!bucket.contains("alice"));
        assert_eq!(rate.ip_bucket("192.0.2.7"), "test-limit:ip:192.0.2.7");
        assert_eq!(
            rate.ip_bucket("2001:db8:1:2:aaaa::1"),
            rate.ip_bucket("2001:db8:1:2:bbbb::9")
        );
        assert_ne!(
            rate.ip_bucket("2001:db8:1:2::1"),
            rate.ip_bucket("2001:db8:1:3::1")
        );
        assert_eq!(
            rate.ip_bucket("::ffff:192.0.2.7"),
            rate.ip_bucket("192.0.2.7")
        );
    }
}
