//! `RateLimitStore` over `rate_limits`: one counter row per (key, window). The check and
//! the increment are one upsert whose `DO UPDATE` only fires below the limit, so concurrent
//! hits can never push a window past it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::ts;
use super::{SqliteStore, exec};
use crate::ports::{PortError, RateLimitStore};

/// Forgotten windows deleted per hit at most: an index range read on `expires_at`, so a hit
/// stays cheap however many windows are waiting.
const RECLAIM_PER_HIT: u32 = 8;

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn hit(
        &self,
        key: &str,
        window_start: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        limit: u32,
    ) -> Result<bool, PortError> {
        if limit == 0 {
            // The insert below would count a first hit; a zero limit counts none.
            return Ok(false);
        }
        let key = key.to_owned();
        let (start, expires_at) = (ts(&window_start), ts(&expires_at));
        self.write(move |tx| {
            // The current window has started, so every window that expired by its start
            // may be forgotten (windows of any length and key).
            exec(
                tx,
                "DELETE FROM rate_limits WHERE rowid IN (
                     SELECT rowid FROM rate_limits WHERE expires_at <= ?1 LIMIT ?2)",
                (&start, RECLAIM_PER_HIT),
            )?;
            let counted = exec(
                tx,
                "INSERT INTO rate_limits (rate_key, window_start, hits, expires_at)
                 VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (rate_key, window_start) DO UPDATE
                     SET hits = hits + 1, expires_at = MAX(expires_at, excluded.expires_at)
                     WHERE hits < ?4",
                (&key, &start, &expires_at, limit),
            )?;
            Ok(counted == 1)
        })
        .await
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

    fn windows(store: &SqliteStore) -> i64 {
        lock(&store.pool.writer)
            .query_row("SELECT COUNT(*) FROM rate_limits", [], |r| r.get(0))
            .expect("count")
    }

    #[tokio::test]
    async fn hits_forget_expired_windows_a_few_at_a_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("state.db")).expect("open");
        // Twenty one-minute windows of different keys, each kept two minutes.
        for i in 0..20 {
            assert!(
                store
                    .hit(&format!("k{i}"), minute(0), minute(2), 5)
                    .await
                    .expect("hit")
            );
        }
        assert!(store.hit("k0", minute(1), minute(3), 5).await.expect("hit"));
        assert_eq!(windows(&store), 21, "nothing has expired at 9:01");

        // From 9:02 on the first twenty are forgotten, a bounded batch per hit.
        assert!(store.hit("k0", minute(2), minute(4), 5).await.expect("hit"));
        assert_eq!(windows(&store), 22 - i64::from(RECLAIM_PER_HIT));
        for _ in 0..3 {
            assert!(store.hit("k1", minute(2), minute(4), 5).await.expect("hit"));
        }
        assert_eq!(
            windows(&store),
            3,
            "the 9:01 and the two 9:02 windows remain"
        );
    }
}
