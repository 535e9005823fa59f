//! `RunEventOutbox`: the runs whose run event is still to be published. There is no flag
//! to scan for: the write that ends a run with `event_pending` set also gives the run item
//! GSI3 keys in a `PENDING_EVENTS#n` partition (`runs.rs`), so the index holds exactly the
//! pending runs and listing them is a `Query` per shard. Publishing removes those keys and
//! the record's `eventPending` in one `UpdateItem` that touches nothing else.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use super::DynamoStore;
use super::codec::{decode, key, s, sdk_err};
use super::table::{
    DATA, GSI3PK, GSI3SK, OPERATOR, PENDING_EVENTS_PREFIX, RUN_SK, pending_events_shard, run_pk,
};
use crate::domain::model::Run;
use crate::ports::{Page, PageRequest, PortError, RunEventOutbox};

/// The record field that mirrors the index keys (`Run::event_pending`).
const EVENT_PENDING: &str = "eventPending";

#[async_trait]
impl RunEventOutbox for DynamoStore {
    async fn list_pending_events(&self, page: &PageRequest) -> Result<Page<Run>, PortError> {
        // Sharded like the active runs: every ended run passes through these partitions,
        // so one partition key would take all of those index writes.
        let (items, next_cursor) = self
            .sharded_page("pending-events", OPERATOR, pending_events_shard, page)
            .await?;
        Ok(Page {
            items: items
                .into_iter()
                .map(|item| decode(item, "run"))
                .collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    async fn mark_event_published(
        &self,
        workspace_id: &str,
        run_id: &str,
    ) -> Result<(), PortError> {
        // Only the flag and its index keys change, so a concurrent writer's record stays
        // as it wrote it. The condition keeps a missing run missing (an `UpdateItem`
        // would otherwise create a bare item) and leaves runs without a pending event, or
        // still active, alone.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(run_pk(workspace_id, run_id), RUN_SK)))
            .update_expression("REMOVE #gpk, #gsk, #d.#pending")
            .condition_expression("begins_with(#gpk, :pending)")
            .expression_attribute_names("#gpk", GSI3PK)
            .expression_attribute_names("#gsk", GSI3SK)
            .expression_attribute_names("#d", DATA)
            .expression_attribute_names("#pending", EVENT_PENDING)
            .expression_attribute_values(":pending", s(PENDING_EVENTS_PREFIX))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already published, never pending, or no such run (in this workspace).
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_err("UpdateItem", e)),
        }
    }
}
