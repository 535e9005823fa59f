//! `RateLimitStore`: one counter item per (key, window) (`RATE#k#windowStart` / `RATE`).
//! The check and the increment are one `UpdateItem` whose condition admits it only below
//! the limit, so concurrent hits can never push a window past it. Windows are forgotten
//! by TTL on `expiresAt`.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use chrono::{DateTime, Utc};

use super::DynamoStore;
use super::codec::{key, n, sdk_err};
use super::table::{EXPIRES_AT, RATE_SK, rate_pk, ttl};
use crate::ports::{PortError, RateLimitStore};

const HITS: &str = "hits";

#[async_trait]
impl RateLimitStore for DynamoStore {
    async fn hit(
        &self,
        key_name: &str,
        window_start: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        limit: u32,
    ) -> Result<bool, PortError> {
        if limit == 0 {
            // A zero limit counts nothing (and writes nothing).
            return Ok(false);
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(rate_pk(key_name, &window_start), RATE_SK)))
            .update_expression("ADD #hits :one SET #expires = :expires")
            .condition_expression("attribute_not_exists(#hits) OR #hits < :limit")
            .expression_attribute_names("#hits", HITS)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":expires", n(ttl(&expires_at)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_err("UpdateItem", e)),
        }
    }
}
