//! `RunStore`: the run item (`WS#w#R#r`), listed in its schedule's run log (GSI1, newest
//! fire first), among its project's runs (GSI2, newest first) and, while `PENDING` or
//! `RUNNING`, in the sharded active-run index (GSI3) the sweeper walks. Once ended with
//! its run event still to publish, the run moves to GSI3's pending-event partitions
//! (the outbox, `outbox.rs`) in the same write.
//!
//! Creation is a `PutItem` conditional on `attribute_not_exists(PK)`: any number of
//! duplicate deliveries of one fire yield one run, and the refused ones get the stored run
//! back from the failed condition (`ReturnValuesOnConditionCheckFailure`) without another
//! read. Updates replace the item conditional on the stored `status` and `attempt`.
//! Retention is DynamoDB TTL on `expiresAt`; TTL deletion lags (up to days), so every
//! read filters expired runs by the exact instant.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use super::DynamoStore;
use super::codec::{
    Filter, Item, Listing, MAX_PAGE, build_err, decode, encode, key, n, s, sdk_err,
};
use super::run_path::{marker_delete, marker_put};
use super::table::{
    BY_PARENT, BY_WORKSPACE, DATA, EXPIRES_AT, GSI1PK, GSI1SK, GSI2PK, GSI2SK, GSI3PK, GSI3SK,
    OPERATOR, PK, RUN_SK, active_runs_shard, all_schedules_shard, at_then, pending_events_shard,
    run_pk, runs_of_project, runs_of_schedule, shard_of, ts, ttl,
};
use crate::domain::model::{Run, RunGuard, Schedule};
use crate::ports::{Page, PageRequest, PortError, RunCreated, RunFilter, RunStore};

/// Top-level copies of the fields conditions and filters read.
const STATUS: &str = "status";
const ATTEMPT: &str = "attempt";
const TRIGGER: &str = "runTrigger";
/// The exact expiry instant (fixed-width text); `expiresAt` holds TTL epoch seconds.
const EXPIRES_TS: &str = "expiresTs";
/// The fire time of scheduled runs (absent on manual and API runs).
const FIRED_TS: &str = "firedTs";

/// How many schedules' run logs `last_fire_times` reads at once.
const FIRE_TIME_READERS: usize = 16;

fn run_item(run: &Run) -> Result<Item, PortError> {
    let ws = run.workspace_id.as_str();
    let pk = run_pk(ws, &run.run_id);
    let mut item = key(pk.clone(), RUN_SK);
    if let Some(schedule_id) = &run.schedule_id {
        // The run log sorts by the nominal fire time, or by creation for runs without
        // one (run now), so they interleave where they happened.
        let log_at = run.scheduled_for.unwrap_or(run.created_at);
        item.insert(GSI1PK.to_owned(), s(runs_of_schedule(ws, schedule_id)));
        item.insert(GSI1SK.to_owned(), s(at_then(&log_at, &run.run_id)));
    }
    item.insert(GSI2PK.to_owned(), s(runs_of_project(ws, &run.project_id)));
    item.insert(GSI2SK.to_owned(), s(at_then(&run.created_at, &run.run_id)));
    if !run.status.is_terminal() {
        // Sparse: a run leaves the sweeper's index when it ends.
        item.insert(
            GSI3PK.to_owned(),
            s(active_runs_shard(shard_of(&run.run_id))),
        );
        item.insert(
            GSI3SK.to_owned(),
            s(format!("{}#{pk}", ts(&run.created_at))),
        );
    } else if run.event_pending {
        // The outbox, sparse too: the write that ends a run (with `event_pending` set) puts
        // it into the pending-event partitions in that same request, and
        // `mark_event_published` takes it out again. Only ended runs have an event, so the
        // two uses of GSI3 never meet on one item.
        let ended = run.end_time.unwrap_or(run.created_at);
        item.insert(
            GSI3PK.to_owned(),
            s(pending_events_shard(shard_of(&run.run_id))),
        );
        item.insert(GSI3SK.to_owned(), s(format!("{}#{pk}", ts(&ended))));
    }
    item.insert(STATUS.to_owned(), s(run.status.as_str()));
    item.insert(ATTEMPT.to_owned(), n(run.attempt));
    item.insert(TRIGGER.to_owned(), s(run.run_trigger.as_str()));
    item.insert(EXPIRES_AT.to_owned(), n(ttl(&run.expires_at)));
    item.insert(EXPIRES_TS.to_owned(), s(ts(&run.expires_at)));
    if let Some(fired) = &run.scheduled_for {
        item.insert(FIRED_TS.to_owned(), s(ts(fired)));
    }
    item.insert(DATA.to_owned(), encode(run, "run")?);
    Ok(item)
}

/// The replacement of a run, conditional on its guard (as a transaction item).
pub(super) fn guarded_put(
    table: &str,
    run: &Run,
    expected: RunGuard,
) -> Result<TransactWriteItem, PortError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(run_item(run)?))
        .condition_expression("attribute_exists(#pk) AND #status = :status AND #attempt = :attempt")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_names("#status", STATUS)
        .expression_attribute_names("#attempt", ATTEMPT)
        .expression_attribute_values(":status", s(expected.status.as_str()))
        .expression_attribute_values(":attempt", n(expected.attempt))
        .build()
        .map_err(build_err)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Why a guarded write of `run` was refused: a stale guard, or no such run.
pub(super) async fn guard_refused(store: &DynamoStore, run: &Run) -> PortError {
    match store
        .get_item(key(run_pk(&run.workspace_id, &run.run_id), RUN_SK))
        .await
    {
        Ok(Some(_)) => PortError::VersionMismatch,
        Ok(None) => PortError::NotFound,
        Err(e) => e,
    }
}

/// Keeps runs not yet expired at `as_of` (expiring exactly at `as_of` is expired).
fn unexpired(filter: &mut Filter, as_of: &DateTime<Utc>) {
    filter.and(
        "#f_expires > :f_as_of",
        ("#f_expires", EXPIRES_TS),
        Some((":f_as_of", s(ts(as_of)))),
    );
}

fn decode_runs(items: Vec<Item>) -> Result<Vec<Run>, PortError> {
    items.into_iter().map(|item| decode(item, "run")).collect()
}

impl DynamoStore {
    /// The newest fire time in a schedule's run log, if it has scheduled runs.
    async fn last_fire_time(
        &self,
        schedule: &Schedule,
    ) -> Result<Option<DateTime<Utc>>, PortError> {
        let mut listing = Listing::new(
            "fire-times",
            BY_PARENT,
            runs_of_schedule(&schedule.workspace_id, &schedule.schedule_id),
        );
        listing.forward = false;
        listing
            .filter
            .and("attribute_exists(#f_fired)", ("#f_fired", FIRED_TS), None);
        // Scheduled runs sort by their fire time, so the first one found is the latest.
        let newest = self.query_items(&listing, None, 1).await?;
        Ok(decode_runs(newest)?
            .into_iter()
            .next()
            .and_then(|run| run.scheduled_for))
    }
}

#[async_trait]
impl RunStore for DynamoStore {
    async fn create_run_if_absent(&self, run: &Run) -> Result<RunCreated, PortError> {
        let item = run_item(run)?;
        if let Some(marker) = marker_put(&self.table, run)? {
            // With the schedule's active-run marker: both or neither.
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build()
                .map_err(build_err)?;
            let items = vec![TransactWriteItem::builder().put(put).build(), marker];
            return match self.transact("TransactWriteItems", items).await? {
                Ok(()) => Ok(RunCreated::Created),
                Err(_) => match self
                    .get_item(key(run_pk(&run.workspace_id, &run.run_id), RUN_SK))
                    .await?
                {
                    Some(item) => Ok(RunCreated::Existing(Box::new(decode(item, "run")?))),
                    None => Err(PortError::unavailable(
                        "dynamodb create_run_if_absent: the existing run vanished",
                    )),
                },
            };
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let e = match result {
            Ok(_) => return Ok(RunCreated::Created),
            Err(e) => e,
        };
        let Some(PutItemError::ConditionalCheckFailedException(failed)) = e.as_service_error()
        else {
            return Err(sdk_err("PutItem", e));
        };
        // The id is taken (in this workspace: the key holds it, so another tenant's run of
        // the same id is neither overwritten nor revealed). Hand back the stored run.
        let stored = match failed.item() {
            Some(item) => Some(item.clone()),
            None => {
                self.get_item(key(run_pk(&run.workspace_id, &run.run_id), RUN_SK))
                    .await?
            }
        };
        match stored {
            Some(item) => Ok(RunCreated::Existing(Box::new(decode(item, "run")?))),
            // Deleted between the refused write and the read (TTL): try again later.
            None => Err(PortError::unavailable(
                "dynamodb create_run_if_absent: the existing run vanished",
            )),
        }
    }

    async fn get_run(&self, workspace_id: &str, run_id: &str) -> Result<Option<Run>, PortError> {
        self.get_item(key(run_pk(workspace_id, run_id), RUN_SK))
            .await?
            .map(|item| decode(item, "run"))
            .transpose()
    }

    async fn list_schedule_runs(
        &self,
        workspace_id: &str,
        schedule_id: &str,
        as_of: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Run>, PortError> {
        let mut listing = Listing::new(
            "schedule-runs",
            BY_PARENT,
            runs_of_schedule(workspace_id, schedule_id),
        );
        listing.forward = false;
        unexpired(&mut listing.filter, &as_of);
        let (items, next_cursor) = self.page(&listing, page).await?;
        Ok(Page {
            items: decode_runs(items)?,
            next_cursor,
        })
    }

    async fn last_fire_times(&self) -> Result<Vec<(String, DateTime<Utc>)>, PortError> {
        // An operator path (the local timer resuming): every schedule, then the head of
        // each one's run log, a bounded number at a time. Schedules deleted since have no
        // trigger to resume and are left out.
        let mut schedules: Vec<Schedule> = Vec::new();
        let mut request = PageRequest::first(MAX_PAGE);
        loop {
            let (items, next) = self
                .sharded_page("all-schedules", OPERATOR, all_schedules_shard, &request)
                .await?;
            for item in items {
                schedules.push(decode(item, "schedule")?);
            }
            match next {
                Some(cursor) => request.cursor = Some(cursor),
                None => break,
            }
        }
        let mut times = Vec::new();
        for chunk in schedules.chunks(FIRE_TIME_READERS) {
            let mut readers = JoinSet::new();
            for schedule in chunk.iter().cloned() {
                let store = self.clone();
                readers.spawn(async move {
                    let at = store.last_fire_time(&schedule).await?;
                    Ok::<_, PortError>(at.map(|at| (schedule.schedule_id, at)))
                });
            }
            while let Some(joined) = readers.join_next().await {
                let found = joined
                    .map_err(|e| PortError::fatal(format!("dynamodb: fire-time reader: {e}")))??;
                times.extend(found);
            }
        }
        Ok(times)
    }

    async fn update_run(&self, run: &Run, expected: RunGuard) -> Result<(), PortError> {
        if let Some(marker) = marker_delete(&self.table, run)? {
            // The end of a schedule's run also takes down its active-run marker.
            let items = vec![guarded_put(&self.table, run, expected)?, marker];
            match self.transact("TransactWriteItems", items).await? {
                Ok(()) => return Ok(()),
                Err(failed) if failed.first().copied().unwrap_or(false) => {
                    return Err(guard_refused(self, run).await);
                }
                // The marker is a later run's: the run is written alone, below.
                Err(_) => {}
            }
        }
        // The guard is the condition, so checking and replacing are one step; of several
        // executors racing on the same run exactly one wins.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(run_item(run)?))
            .condition_expression(
                "attribute_exists(#pk) AND #status = :status AND #attempt = :attempt",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#attempt", ATTEMPT)
            .expression_attribute_values(":status", s(expected.status.as_str()))
            .expression_attribute_values(":attempt", n(expected.attempt))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let e = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(PutItemError::ConditionalCheckFailedException(failed)) = e.as_service_error()
        else {
            return Err(sdk_err("PutItem", e));
        };
        // Tell a stale guard from a run that is not there (in this workspace).
        let exists = match failed.item() {
            Some(_) => true,
            None => self
                .get_item(key(run_pk(&run.workspace_id, &run.run_id), RUN_SK))
                .await?
                .is_some(),
        };
        Err(if exists {
            PortError::VersionMismatch
        } else {
            PortError::NotFound
        })
    }

    async fn list_project_runs(
        &self,
        workspace_id: &str,
        project_id: &str,
        filter: &RunFilter,
        as_of: DateTime<Utc>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Run>, PortError> {
        let limit = limit.min(MAX_PAGE) as usize;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The API pages by offset; on DynamoDB that reads the skipped runs too (bounded
        // by the project's retained history). Filters apply on the way.
        let mut listing = Listing::new(
            "project-runs",
            BY_WORKSPACE,
            runs_of_project(workspace_id, project_id),
        );
        listing.forward = false;
        unexpired(&mut listing.filter, &as_of);
        if let Some(status) = filter.status {
            listing.filter.and(
                "#f_status = :f_status",
                ("#f_status", STATUS),
                Some((":f_status", s(status.as_str()))),
            );
        }
        if let Some(trigger) = filter.trigger {
            listing.filter.and(
                "#f_trigger = :f_trigger",
                ("#f_trigger", TRIGGER),
                Some((":f_trigger", s(trigger.as_str()))),
            );
        }
        let items = self
            .query_items(&listing, None, offset as usize + limit)
            .await?;
        decode_runs(items.into_iter().skip(offset as usize).collect())
    }

    async fn list_active_runs(&self, page: &PageRequest) -> Result<Page<Run>, PortError> {
        let (items, next_cursor) = self
            .sharded_page("active-runs", OPERATOR, active_runs_shard, page)
            .await?;
        Ok(Page {
            items: decode_runs(items)?,
            next_cursor,
        })
    }

    async fn purge_expired_runs(
        &self,
        _as_of: DateTime<Utc>,
        _limit: u32,
    ) -> Result<u64, PortError> {
        // DynamoDB's TTL on `expiresAt` deletes expired runs by itself (and reads already
        // hide them), so there is nothing to do here.
        Ok(0)
    }
}
