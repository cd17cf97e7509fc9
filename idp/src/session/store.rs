//! The tower-sessions store over `idp_sessions`, on both backends. Unlike a plain
//! key-value store it keeps the signed-in user in its own column, so a person's sessions
//! can be listed and ended together (sign-out everywhere, a disabled account), and it
//! keeps only the SHA-256 of each session id: a copy of the table opens no session.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::LOGIN_KEY;
use crate::clock::Clock;
use crate::db::Db;
use crate::on_pool;
use crate::secret::hash_token;

/// Sessions stored in the shared database.
#[derive(Debug, Clone)]
pub struct DbSessionStore {
    db: Db,
    clock: Arc<dyn Clock>,
}

/// The handle by which a session is listed and revoked: the hash of its id.
pub fn session_handle(id: &Id) -> String {
    hash_token(&id.to_string())
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

/// The user id recorded at sign-in, if the session carries one.
fn user_of(data: &HashMap<String, serde_json::Value>) -> Option<String> {
    data.get(LOGIN_KEY)?
        .get("user_id")?
        .as_str()
        .map(str::to_owned)
}

/// When the record ends: its idle expiry, or the absolute end of the sign-in if sooner.
fn expires_at(record: &Record) -> i64 {
    let idle = record.expiry_date.unix_timestamp();
    let absolute = record
        .data
        .get(LOGIN_KEY)
        .and_then(|login| login.get("absolute_expires_at"))
        .and_then(serde_json::Value::as_i64);
    absolute.map_or(idle, |absolute| idle.min(absolute))
}

impl DbSessionStore {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// Deletes expired sessions; returns how many.
    pub async fn delete_expired(&self) -> Result<u64, sqlx::Error> {
        let sql = "DELETE FROM idp_sessions WHERE expires_at <= $1";
        let now = self.clock.unix();
        Ok(
            on_pool!(&self.db, pool => sqlx::query(sql).bind(now).execute(pool).await?.rows_affected()),
        )
    }

    async fn insert(&self, record: &Record) -> Result<bool, session_store::Error> {
        let sql = "INSERT INTO idp_sessions (id_hash, user_id, data, created_at, last_seen_at, \
                   expires_at) VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (id_hash) DO NOTHING";
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        let now = self.clock.unix();
        let inserted = on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(session_handle(&record.id))
                .bind(user_of(&record.data))
                .bind(&data)
                .bind(now)
                .bind(expires_at(record))
                .execute(pool)
                .await
                .map_err(backend)?
                .rows_affected()
        });
        Ok(inserted == 1)
    }
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // 128 random bits collide essentially never; retry anyway rather than overwrite.
        for _ in 0..8 {
            if self.insert(record).await? {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(backend("could not allocate a unique session id"))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let sql = "UPDATE idp_sessions SET user_id = $2, data = $3, last_seen_at = $4, \
                   expires_at = $5 WHERE id_hash = $1";
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        let now = self.clock.unix();
        let updated = on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(session_handle(&record.id))
                .bind(user_of(&record.data))
                .bind(&data)
                .bind(now)
                .bind(expires_at(record))
                .execute(pool)
                .await
                .map_err(backend)?
                .rows_affected()
        });
        // A session revoked while this request ran stays revoked: it is not re-created.
        let _ = updated;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let sql = "SELECT data, expires_at FROM idp_sessions WHERE id_hash = $1 AND \
                   expires_at > $2";
        let now = self.clock.unix();
        let row: Option<(String, i64)> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql)
                .bind(session_handle(id))
                .bind(now)
                .fetch_optional(pool)
                .await
                .map_err(backend)?
        });
        let Some((data, expires_at)) = row else {
            return Ok(None);
        };
        let data = serde_json::from_str(&data).map_err(backend)?;
        let expiry_date = OffsetDateTime::from_unix_timestamp(expires_at).map_err(backend)?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let sql = "DELETE FROM idp_sessions WHERE id_hash = $1";
        on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(session_handle(id)).execute(pool).await.map_err(backend)?.rows_affected()
        });
        Ok(())
    }
}
