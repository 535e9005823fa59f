//! `SqlCacheStore`: query results by (workspace, key), one item each
//! (`WS#w#CACHE#k` / `CACHE`) in a partition of its own so cache traffic never heats a
//! workspace's partition. Entries expire by TTL on `expiresAt`; reads check the exact
//! instant, since TTL deletion lags.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::DynamoStore;
use super::codec::{Item, decode, encode, key, n, sdk_err};
use super::table::{CACHE_SK, DATA, EXPIRES_AT, cache_pk, ttl};
use crate::domain::model::CachedResult;
use crate::ports::{PortError, SqlCacheStore};

/// The item of a cache entry.
pub(super) fn cache_item(entry: &CachedResult) -> Result<Item, PortError> {
    let mut item = key(cache_pk(&entry.workspace_id, &entry.key), CACHE_SK);
    item.insert(EXPIRES_AT.to_owned(), n(ttl(&entry.expires_at)));
    item.insert(DATA.to_owned(), encode(entry, "cached result")?);
    Ok(item)
}

#[async_trait]
impl SqlCacheStore for DynamoStore {
    async fn get_cached(
        &self,
        workspace_id: &str,
        key_hash: &str,
        as_of: DateTime<Utc>,
    ) -> Result<Option<CachedResult>, PortError> {
        let Some(item) = self
            .get_item(key(cache_pk(workspace_id, key_hash), CACHE_SK))
            .await?
        else {
            return Ok(None);
        };
        let entry: CachedResult = decode(item, "cached result")?;
        // Expired at its expiry instant.
        Ok((entry.expires_at > as_of).then_some(entry))
    }

    async fn put_cached(&self, entry: &CachedResult) -> Result<(), PortError> {
        let item = cache_item(entry)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_err("PutItem", e))?;
        Ok(())
    }
}
