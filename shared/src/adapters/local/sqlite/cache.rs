//! `SqlCacheStore` over `sql_cache`: query results by (workspace, key). Reads hide expired
//! entries; writes overwrite and reclaim a few expired ones on the way, so the table does
//! not grow without bound and no separate sweeper is needed. Entries this process wrote or
//! read recently are answered from memory (`cache_memo`), without decoding.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Transaction;

use super::codec::{from_json, to_json, ts};
use super::{SqliteStore, db_err, exec, query_opt, result_rows};
use crate::domain::model::{CachedResult, Run};
use crate::ports::{PortError, SqlCacheStore};

/// Expired entries deleted per write at most: enough to keep up with the writes that
/// create them, small enough that a write never stalls on a backlog.
const RECLAIM_PER_WRITE: u32 = 8;

#[async_trait]
impl SqlCacheStore for SqliteStore {
    async fn get_cached(
        &self,
        workspace_id: &str,
        key: &str,
        as_of: DateTime<Utc>,
    ) -> Result<Option<CachedResult>, PortError> {
        let memo = &self.pool.cache_memo;
        if let Some(hit) = memo.get(workspace_id, key, as_of) {
            return Ok(Some(hit));
        }
        let generation = memo.generation();
        let as_of = ts(&as_of);
        let stored: Option<CachedResult> = self
            .read(|conn| {
                query_opt(
                    conn,
                    "SELECT body, rows_id FROM sql_cache
                     WHERE workspace_id = ?1 AND cache_key = ?2 AND expires_at > ?3",
                    (workspace_id, key, &as_of),
                    |row| {
                        let body = row.get::<_, String>(0).map_err(db_err)?;
                        let mut entry: CachedResult = from_json(&body, "cached result")?;
                        if let Some(id) = row.get::<_, Option<String>>(1).map_err(db_err)? {
                            entry.rows = result_rows::load(conn, workspace_id, &id)?;
                        }
                        Ok(entry)
                    },
                )
            })
            .await?;
        if let Some(entry) = &stored {
            memo.fill(entry, generation);
        }
        Ok(stored)
    }

    async fn put_cached(&self, entry: &CachedResult) -> Result<(), PortError> {
        let outcome = self.put_in_table(entry).await;
        self.remember(entry, &outcome);
        outcome
    }
}

impl SqliteStore {
    /// Empties this process's memory of SQL-cache entries; the table keeps them. For
    /// measuring reads from the table, and for tests.
    pub fn forget_cached_results(&self) {
        self.pool.cache_memo.clear();
    }

    /// Keeps in memory an entry just written to the table, or forgets the key if writing
    /// failed: the table then holds the old entry or the new one, and the next read decides.
    fn remember(&self, entry: &CachedResult, written: &Result<(), PortError>) {
        match written {
            Ok(()) => self.pool.cache_memo.put(entry),
            Err(_) => self.pool.cache_memo.forget(&entry.workspace_id, &entry.key),
        }
    }

    /// [`remember`](Self::remember) for an entry a run's end wrote; a failure is logged
    /// and otherwise ignored, as a SQL-cache write never fails the run.
    pub(super) fn remember_cached(
        &self,
        entry: &CachedResult,
        written: Result<(), PortError>,
        run: &Run,
    ) {
        self.remember(entry, &written);
        if let Err(e) = written {
            tracing::warn!(run_id = %run.run_id, schedule_id = ?run.schedule_id, error = %e,
                "SQL cache write failed");
        }
    }

    async fn put_in_table(&self, entry: &CachedResult) -> Result<(), PortError> {
        let encoded = EncodedEntry::of(entry)?;
        self.write(move |tx| encoded.write(tx)).await
    }
}

/// A cache entry ready to be written: encoded before the writer is taken.
pub(super) struct EncodedEntry {
    workspace_id: String,
    key: String,
    expires_at: DateTime<Utc>,
    /// The entry's creation time stands in for "now": whatever expired before it is
    /// unreadable by anyone.
    now: String,
    body: String,
    /// Rows of many rows are stored apart, shared with the runs that show them.
    shared: Option<result_rows::PreparedRows>,
}

impl EncodedEntry {
    pub(super) fn of(entry: &CachedResult) -> Result<EncodedEntry, PortError> {
        let shared = result_rows::prepare(&entry.rows)?;
        let body = match &shared {
            None => to_json(entry)?,
            Some(_) => to_json(&CachedResult {
                rows: Default::default(),
                ..entry.clone()
            })?,
        };
        Ok(EncodedEntry {
            workspace_id: entry.workspace_id.clone(),
            key: entry.key.clone(),
            expires_at: entry.expires_at,
            now: ts(&entry.created_at),
            body,
            shared,
        })
    }

    /// [`write`](Self::write) under a savepoint of its own, so that a failure undoes this
    /// entry alone and the caller's transaction goes on: the inner result is the entry's,
    /// the outer one the transaction's (a savepoint that cannot be taken or undone).
    pub(super) fn write_alone(
        &self,
        tx: &Transaction<'_>,
    ) -> Result<Result<(), PortError>, PortError> {
        tx.execute_batch("SAVEPOINT cache_entry").map_err(db_err)?;
        let outcome = self.write(tx);
        if outcome.is_err() {
            tx.execute_batch("ROLLBACK TO cache_entry")
                .map_err(db_err)?;
        }
        tx.execute_batch("RELEASE cache_entry").map_err(db_err)?;
        Ok(outcome)
    }

    /// Writes the entry (replacing any of its key) inside the caller's transaction.
    pub(super) fn write(&self, tx: &Transaction<'_>) -> Result<(), PortError> {
        let rows_id = self.shared.as_ref().map(|p| p.id().to_string());
        exec(
            tx,
            "INSERT INTO sql_cache (workspace_id, cache_key, expires_at, body, rows_id)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (workspace_id, cache_key)
             DO UPDATE SET expires_at = excluded.expires_at, body = excluded.body,
                 rows_id = excluded.rows_id",
            (
                &self.workspace_id,
                &self.key,
                &ts(&self.expires_at),
                &self.body,
                &rows_id,
            ),
        )?;
        if let Some(prepared) = &self.shared {
            result_rows::keep(tx, &self.workspace_id, &self.expires_at, prepared)?;
        }
        exec(
            tx,
            "DELETE FROM sql_cache WHERE rowid IN (
                 SELECT rowid FROM sql_cache WHERE expires_at <= ?1 LIMIT ?2)",
            (&self.now, RECLAIM_PER_WRITE),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::adapters::local::sqlite::lock;

    fn minute(m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 3, 9, m, 0)
            .single()
            .expect("valid instant")
    }

    fn entry(key: &str, created_at: DateTime<Utc>, expires_at: DateTime<Utc>) -> CachedResult {
        CachedResult {
            workspace_id: "w".to_owned(),
            key: key.to_owned(),
            columns: vec!["n".to_owned()],
            rows: vec![vec![serde_json::json!(1)]].into(),
            row_count: 1,
            created_at,
            expires_at,
        }
    }

    #[tokio::test]
    async fn writes_reclaim_expired_entries_a_few_at_a_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("state.db")).expect("open");
        for i in 0..10 {
            store
                .put_cached(&entry(&format!("old{i}"), minute(0), minute(5)))
                .await
                .expect("put");
        }
        let entries = || -> i64 {
            lock(&store.pool.writer)
                .query_row("SELECT COUNT(*) FROM sql_cache", [], |r| r.get(0))
                .expect("count")
        };
        store
            .put_cached(&entry("new", minute(4), minute(9)))
            .await
            .expect("put");
        assert_eq!(entries(), 11, "nothing has expired at 9:04");
        store
            .put_cached(&entry("new", minute(5), minute(10)))
            .await
            .expect("put");
        assert_eq!(entries(), 11 - i64::from(RECLAIM_PER_WRITE));
        assert!(
            store
                .get_cached("w", "new", minute(6))
                .await
                .expect("get")
                .is_some(),
            "the entry just written is not reclaimed"
        );
    }

    #[tokio::test]
    async fn reads_are_answered_from_memory_and_from_the_table_once_memory_is_cleared() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("state.db")).expect("open");
        store
            .put_cached(&entry("k", minute(0), minute(30)))
            .await
            .expect("put");
        // Change the row behind the store's back: only a read of the table sees it.
        lock(&store.pool.writer)
            .execute(
                "UPDATE sql_cache SET body = json_set(body, '$.rowCount', 7)",
                [],
            )
            .expect("update");
        let read = || async {
            store
                .get_cached("w", "k", minute(1))
                .await
                .expect("get")
                .expect("fresh")
                .row_count
        };
        assert_eq!(read().await, 1, "from memory");
        store.forget_cached_results();
        assert_eq!(read().await, 7, "from the table");
        lock(&store.pool.writer)
            .execute("DELETE FROM sql_cache", [])
            .expect("delete");
        assert_eq!(read().await, 7, "the table's entry was kept in memory");
        assert!(
            store
                .get_cached("w", "k", minute(30))
                .await
                .expect("get")
                .is_none(),
            "expired in memory as in the table"
        );
    }
}
