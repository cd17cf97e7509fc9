//! Revoked access tokens (`consent_token_revocations`): Biscuit revocation ids (hex),
//! kept until the token they belong to would have expired anyway.

use warrant_idp::db::Db;
use warrant_idp::on_pool;

use super::StoreError;

/// The access-token revocation list.
#[derive(Debug, Clone)]
pub struct Revocations {
    db: Db,
}

impl Revocations {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Adds revocation ids, kept until `expires_at` (adding one twice is harmless).
    pub async fn add(&self, ids: &[String], expires_at: i64) -> Result<(), StoreError> {
        let sql = "INSERT INTO consent_token_revocations (revocation_id, expires_at) \
                   VALUES ($1, $2) ON CONFLICT (revocation_id) DO NOTHING";
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            for id in ids {
                sqlx::query(sql).bind(id).bind(expires_at).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether any of `ids` (a token's revocation ids, hex) is revoked.
    pub async fn any_revoked(&self, ids: &[String]) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM consent_token_revocations WHERE revocation_id = $1";
        for id in ids {
            let n: i64 = on_pool!(&self.db, pool => {
                sqlx::query_scalar(sql).bind(id).fetch_one(pool).await?
            });
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Forgets revocations whose tokens have expired; returns how many.
    pub async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM consent_token_revocations WHERE expires_at <= $1";
        Ok(on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(now).execute(pool).await?.rows_affected()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revoked_ids_are_found_until_purged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(None, dir.path()).await.expect("open");
        db.migrate().await.expect("migrate");
        let revocations = Revocations::new(db);
        let ids = vec!["aa01".to_owned(), "bb02".to_owned()];
        assert!(!revocations.any_revoked(&ids).await.expect("check"));
        revocations.add(&ids[..1], 500).await.expect("add");
        revocations
            .add(&ids[..1], 500)
            .await
            .expect("adding twice is harmless");
        assert!(revocations.any_revoked(&ids).await.expect("check"));
        assert!(!revocations.any_revoked(&ids[1..]).await.expect("check"));
        assert_eq!(revocations.purge(499).await.expect("purge"), 0);
        assert_eq!(revocations.purge(500).await.expect("purge"), 1);
        assert!(!revocations.any_revoked(&ids).await.expect("check"));
    }
}
