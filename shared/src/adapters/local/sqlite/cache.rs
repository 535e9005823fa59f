//! `SqlCacheStore` over `sql_cache`: query results by (workspace, key). Reads hide expired
//! entries; writes overwrite and reclaim a few expired ones on the way, so the table does
//! not grow without bound and no separate sweeper is needed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::{from_json, to_json, ts};
use super::{SqliteStore, db_err, exec, query_opt};
use crate::domain::model::CachedResult;
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
        let (ws, key) = (workspace_id.to_owned(), key.to_owned());
        let as_of = ts(&as_of);
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT body FROM sql_cache
                 WHERE workspace_id = ?1 AND cache_key = ?2 AND expires_at > ?3",
                (&ws, &key, &as_of),
                |row| from_json(&row.get::<_, String>(0).map_err(db_err)?, "cached result"),
            )
        })
        .await
    }

    async fn put_cached(&self, entry: &CachedResult) -> Result<(), PortError> {
        let (ws, key) = (entry.workspace_id.clone(), entry.key.clone());
        let expires_at = ts(&entry.expires_at);
        // The entry's creation time stands in for "now": whatever expired before it is
        // unreadable by anyone.
        let now = ts(&entry.created_at);
        let body = to_json(entry)?;
        self.write(move |tx| {
            exec(
                tx,
                "INSERT INTO sql_cache (workspace_id, cache_key, expires_at, body)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, cache_key)
                 DO UPDATE SET expires_at = excluded.expires_at, body = excluded.body",
                (&ws, &key, &expires_at, &body),
            )?;
            exec(
                tx,
                "DELETE FROM sql_cache WHERE rowid IN (
                     SELECT rowid FROM sql_cache WHERE expires_at <= ?1 LIMIT ?2)",
                (&now, RECLAIM_PER_WRITE),
            )?;
            Ok(())
        })
        .await
    }
}
