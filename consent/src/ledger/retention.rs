//! Retention by age: each chain's oldest records are removed up to its last checkpoint
//! older than the cutoff. That checkpoint stays, and the writer remembers the record it
//! signs (`pruned_seq`, `pruned_hash`): the chain then starts after a signed record, so
//! `verify` tells records removed by retention from records removed by someone else.

use warrant_idp::db::{Db, begin_write};
use warrant_idp::on_pool;

use super::LedgerError;

/// What one pruning removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Chains that lost records.
    pub chains: u64,
    pub records: u64,
}

/// For each writer, the last checkpoint signed before the cutoff, past what was pruned.
const CANDIDATES_SQL: &str = "SELECT c.writer, c.seq, c.hash FROM consent_ledger_checkpoints c \
     JOIN consent_ledger_writers w ON w.writer = c.writer \
     WHERE c.at < $1 AND c.seq > w.pruned_seq \
     AND c.seq = (SELECT MAX(m.seq) FROM consent_ledger_checkpoints m \
                  WHERE m.writer = c.writer AND m.at < $1)";

/// Records removed per transaction: short enough never to hold SQLite's write lock for
/// long (the ledger's writer waits for it in place).
const CHUNK: i64 = 5_000;

/// Removes the records older than `cutoff` (Unix microseconds) that a checkpoint older
/// than the cutoff covers. Per chain: first the new start is claimed (conditional on
/// nobody having pruned it further meanwhile: replicas may prune at once), then the
/// records before it are removed in short transactions; an interrupted removal is
/// finished by the next one (verify skips what is left before the start).
pub async fn prune(db: &Db, cutoff: i64) -> Result<Pruned, LedgerError> {
    let failed = |e: sqlx::Error| LedgerError::Unavailable(e.to_string());
    let candidates: Vec<(String, i64, String)> =
        on_pool!(db, pool => sqlx::query_as(CANDIDATES_SQL)
        .bind(cutoff)
        .fetch_all(pool)
        .await)
        .map_err(failed)?;
    for (writer, seq, hash) in candidates {
        on_pool!(db, pool => {
            let mut tx = begin_write(pool).await.map_err(failed)?;
            let claimed = sqlx::query(
                "UPDATE consent_ledger_writers SET pruned_seq = $1, pruned_hash = $2 \
                 WHERE writer = $3 AND pruned_seq < $1",
            )
            .bind(seq)
            .bind(&hash)
            .bind(&writer)
            .execute(&mut *tx)
            .await
            .map_err(failed)?
            .rows_affected();
            if claimed > 0 {
                sqlx::query(
                    "DELETE FROM consent_ledger_checkpoints WHERE writer = $1 AND seq < $2",
                )
                .bind(&writer)
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
                tx.commit().await.map_err(failed)?;
            }
            Ok::<(), LedgerError>(())
        })?;
    }
    // What every chain has before its start, in short transactions.
    let leftovers: Vec<(String, i64, i64)> = on_pool!(db, pool => sqlx::query_as(
        "SELECT r.writer, MIN(r.seq), w.pruned_seq FROM consent_ledger_records r \
         JOIN consent_ledger_writers w ON w.writer = r.writer \
         WHERE r.seq <= w.pruned_seq GROUP BY r.writer, w.pruned_seq",
    )
    .fetch_all(pool)
    .await)
    .map_err(failed)?;
    let mut pruned = Pruned::default();
    for (writer, first, last) in leftovers {
        pruned.chains += 1;
        let mut from = first;
        while from <= last {
            let to = (from + CHUNK - 1).min(last);
            let removed = on_pool!(db, pool => sqlx::query(
                "DELETE FROM consent_ledger_records WHERE writer = $1 AND seq >= $2 AND seq <= $3",
            )
            .bind(&writer)
            .bind(from)
            .bind(to)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
            .map_err(failed)?;
            pruned.records += removed;
            from = to + 1;
        }
    }
    Ok(pruned)
}
