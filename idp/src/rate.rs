//! Sliding-window rate limits over `idp_rate_events`, shared by every replica through
//! the database. Each request records its event first and then counts the window, so
//! concurrent requests can never let more than the limit through (a refused request
//! counts too: a client that keeps hammering stays refused).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::db::Db;
use crate::error::IdpError;
use crate::on_pool;
use crate::secret::hash_token;

/// The prefix of every bucket this module writes (and prunes).
const PREFIX: &str = "email-link:";

/// The bucket of an address (normalised): its SHA-256, never the address itself.
pub(crate) fn address_bucket(email: &str) -> String {
    format!("{PREFIX}addr:{}", hash_token(email))
}

/// The bucket of a client address; IPv6 clients are counted per /64 (one host usually
/// holds a whole /64), IPv4-mapped addresses as IPv4.
pub(crate) fn ip_bucket(ip: &str) -> String {
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
    format!("{PREFIX}ip:{key}")
}

/// Counts events per bucket.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl RateLimiter {
    pub(crate) fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// Records one event in `bucket`; [`IdpError::RateLimited`] when the bucket now
    /// holds more than `limit` events within `window`. Events older than the window are
    /// deleted on the way.
    pub(crate) async fn hit(
        &self,
        bucket: &str,
        limit: u32,
        window: Duration,
    ) -> Result<(), IdpError> {
        let now = self.clock.unix();
        let window_secs = i64::try_from(window.as_secs())
            .unwrap_or(i64::MAX / 4)
            .max(1);
        let cutoff = now.saturating_sub(window_secs);
        let prune = "DELETE FROM idp_rate_events WHERE bucket LIKE $1 AND at <= $2";
        let insert = "INSERT INTO idp_rate_events (bucket, at) VALUES ($1, $2)";
        let count = "SELECT COUNT(*) FROM idp_rate_events WHERE bucket = $1 AND at > $2";
        let prefix = format!("{PREFIX}%");
        let n: i64 = on_pool!(&self.db, pool => {
            sqlx::query(prune).bind(&prefix).bind(cutoff).execute(pool).await?;
            sqlx::query(insert).bind(bucket).bind(now).execute(pool).await?;
            sqlx::query_scalar(count).bind(bucket).bind(cutoff).fetch_one(pool).await?
        });
        if n > i64::from(limit) {
            let kind = if bucket.starts_with(&format!("{PREFIX}ip:")) {
                "sign-in links from one client address"
            } else {
                "sign-in links for one email address"
            };
            return Err(IdpError::RateLimited(format!(
                "{kind}: {n} within {}s (limit {limit})",
                window_secs
            )));
        }
        Ok(())
    }
}
