//! `RunPathStore`: the scheduled-run path in one request per step (docs/dynamodb.md,
//! "Per-run cost") — dispatch's reads as one `BatchGetItem`, the start as one
//! `UpdateItem … ALL_NEW`, the executor's reads as one `BatchGetItem`, and the end (run,
//! published results, active-run marker) as one write.
//!
//! The overlap check needs "is the schedule's latest run still going?" without querying
//! the run log, so every run of a schedule that starts out `PENDING` also writes the
//! schedule's **active-run marker** (`WS#w#S#s` / `ACTIVE_RUN`: the run id) in the same
//! transaction that creates it, and the write that ends it removes the marker if it is
//! still its own. Dispatch reads the marker with the schedule. A marker can only outlive
//! its run if the run item disappears while active (it never does: runs expire long after
//! they end), and even then it lapses at its own expiry and DynamoDB TTL deletes it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, TransactWriteItem};
use chrono::{DateTime, Duration, Utc};

use super::DynamoStore;
use super::codec::{Item, build_err, decode, encode_value, key, n, s, sdk_err, string_attr};
use super::table::{
    EXPIRES_AT, PK, PROJECT_SK, RUN_SK, SCHEDULE_SK, SK, connection_sk, member_sk, project_pk,
    run_pk, schedule_pk, ts, ttl, user_sk, version_sk, workspace_pk,
};
use crate::domain::model::{
    CachedResult, Connection, Member, Project, ProjectVersion, PublishedResults, Run, RunGuard,
    RunStatus, Schedule, StateEvent, User,
};
use crate::ports::{
    DispatchPath, ExecutionInputs, ExecutionPath, FireContext, FireRequest, PortError, RunStart,
    RunStore,
};

/// Sort key of a schedule's active-run marker (beside the schedule item).
pub(super) const ACTIVE_RUN_SK: &str = "ACTIVE_RUN";
/// Top-level attribute of the project item: the data connections of the published
/// version, written by `publish`.
pub(super) const PUBLISHED_CONNECTIONS: &str = "publishedConnections";
const MARKER_RUN: &str = "runId";
const MARKER_EXPIRES_TS: &str = "expiresTs";
/// How long a marker stands without its run ending: far beyond any run's life (queue
/// wait, the run timeout, retries), only a safety net.
const MARKER_LIFETIME_HOURS: i64 = 6;

/// The marker that tells dispatch `run` is the schedule's active run, when it should
/// have one: a scheduled or manual run created `PENDING`.
pub(super) fn marker_put(table: &str, run: &Run) -> Result<Option<TransactWriteItem>, PortError> {
    let Some(schedule_id) = &run.schedule_id else {
        return Ok(None);
    };
    if run.status.is_terminal() {
        return Ok(None);
    }
    let expires = run.created_at + Duration::hours(MARKER_LIFETIME_HOURS);
    let mut item = key(schedule_pk(&run.workspace_id, schedule_id), ACTIVE_RUN_SK);
    item.insert(MARKER_RUN.to_owned(), s(run.run_id.clone()));
    item.insert(MARKER_EXPIRES_TS.to_owned(), s(ts(&expires)));
    item.insert(EXPIRES_AT.to_owned(), n(ttl(&expires)));
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(build_err)?;
    Ok(Some(TransactWriteItem::builder().put(put).build()))
}

/// Removes the schedule's marker if it is `run`'s, when `run` has ended.
pub(super) fn marker_delete(
    table: &str,
    run: &Run,
) -> Result<Option<TransactWriteItem>, PortError> {
    let Some(schedule_id) = &run.schedule_id else {
        return Ok(None);
    };
    if !run.status.is_terminal() {
        return Ok(None);
    }
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(key(
            schedule_pk(&run.workspace_id, schedule_id),
            ACTIVE_RUN_SK,
        )))
        // A later run's marker (runs of an `ALLOW` schedule overlap) is left alone; the
        // refusal cancels the transaction and the caller writes again without it.
        .condition_expression("attribute_not_exists(#pk) OR #run = :run")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_names("#run", MARKER_RUN)
        .expression_attribute_values(":run", s(run.run_id.clone()))
        .build()
        .map_err(build_err)?;
    Ok(Some(TransactWriteItem::builder().delete(delete).build()))
}

/// Cache entries written in the transaction that ends a run (the rest after it):
/// DynamoDB takes 100 items and 4 MB per transaction, and the run and results items
/// already hold the same rows.
const MAX_INLINE_CACHE_ENTRIES: usize = 50;
const MAX_INLINE_CACHE_BYTES: usize = 1_000_000;

/// The items of the transaction that ends a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Run,
    Marker,
    Results,
}

/// The items of one `BatchGetItem`, found again by their key.
struct Found(HashMap<(String, String), Item>);

impl Found {
    fn new(items: Vec<Item>) -> Found {
        Found(
            items
                .into_iter()
                .filter_map(|item| {
                    let pk = string_attr(&item, PK)?.to_owned();
                    let sk = string_attr(&item, SK)?.to_owned();
                    Some(((pk, sk), item))
                })
                .collect(),
        )
    }

    fn take(&mut self, pk: String, sk: impl Into<String>) -> Option<Item> {
        self.0.remove(&(pk, sk.into()))
    }
}

impl DynamoStore {
    /// Everything of a fire but the schedule, for a schedule already known.
    async fn fire_records(
        &self,
        schedule: Schedule,
        mut found: Option<Found>,
        now: DateTime<Utc>,
    ) -> Result<FireContext, PortError> {
        let ws = schedule.workspace_id.as_str();
        let project_key = project_pk(ws, &schedule.project_id);
        let keys = [
            (project_key.clone(), PROJECT_SK.to_owned()),
            (workspace_pk(ws), user_sk(&schedule.created_by)),
            (project_key.clone(), member_sk(&schedule.created_by)),
            (
                schedule_pk(ws, &schedule.schedule_id),
                ACTIVE_RUN_SK.to_owned(),
            ),
        ];
        let mut found = match found.take() {
            Some(found) => found,
            None => Found::new(
                self.batch_get(
                    keys.iter()
                        .map(|(p, k)| key(p.clone(), k.clone()))
                        .collect(),
                )
                .await?,
            ),
        };
        let [(p_pk, p_sk), (u_pk, u_sk), (m_pk, m_sk), (a_pk, a_sk)] = keys;
        let project_item = found.take(p_pk, p_sk);
        let published_connections = project_item
            .as_ref()
            .and_then(|item| item.get(PUBLISHED_CONNECTIONS))
            .and_then(|v| v.as_l().ok())
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_s().ok().cloned())
                    .collect::<Vec<String>>()
            });
        let project: Option<Project> = project_item
            .map(|item| decode(item, "project"))
            .transpose()?;
        let creator: Option<User> = found
            .take(u_pk, u_sk)
            .map(|item| decode(item, "user"))
            .transpose()?;
        let creator_role = found
            .take(m_pk, m_sk)
            .map(|item| decode::<Member>(item, "member"))
            .transpose()?
            .map(|m| m.role);
        let now_ts = ts(&now);
        let previous_run_active = found.take(a_pk, a_sk).is_some_and(|marker| {
            string_attr(&marker, MARKER_EXPIRES_TS).is_some_and(|expires| expires > now_ts.as_str())
        });
        Ok(FireContext {
            schedule,
            project: project.map(Arc::new),
            creator: creator.map(Arc::new),
            creator_role,
            previous_run_active,
            published_connections,
        })
    }
}

#[async_trait]
impl DispatchPath for DynamoStore {
    async fn load_fire(
        &self,
        request: &FireRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<FireContext>, PortError> {
        let ws = request.workspace_id.as_str();
        let schedule_key = (schedule_pk(ws, &request.schedule_id), SCHEDULE_SK);
        let (Some(project_id), Some(created_by)) = (&request.project_id, &request.created_by)
        else {
            // Without the trigger's hints: the schedule first, then the rest at once.
            let Some(item) = self.get_item(key(schedule_key.0, schedule_key.1)).await? else {
                return Ok(None);
            };
            let schedule: Schedule = decode(item, "schedule")?;
            return self.fire_records(schedule, None, now).await.map(Some);
        };
        let project_key = project_pk(ws, project_id);
        let keys = vec![
            key(schedule_key.0.clone(), schedule_key.1),
            key(project_key.clone(), PROJECT_SK),
            key(workspace_pk(ws), user_sk(created_by)),
            key(project_key, member_sk(created_by)),
            key(schedule_key.0.clone(), ACTIVE_RUN_SK),
        ];
        let mut found = Found::new(self.batch_get(keys).await?);
        let Some(item) = found.take(schedule_key.0, schedule_key.1) else {
            return Ok(None);
        };
        let schedule: Schedule = decode(item, "schedule")?;
        // The hints name the schedule's own project and creator, which never change; a
        // trigger carrying others is stale or forged, so its reads are not used.
        let trusted = schedule.project_id == *project_id && schedule.created_by == *created_by;
        let found = trusted.then_some(found);
        self.fire_records(schedule, found, now).await.map(Some)
    }
}

#[async_trait]
impl ExecutionPath for DynamoStore {
    async fn load_execution(
        &self,
        workspace_id: &str,
        project_id: &str,
        version: u32,
        connections: &[String],
    ) -> Result<ExecutionInputs, PortError> {
        let version_key = (project_pk(workspace_id, project_id), version_sk(version));
        let mut keys = vec![key(version_key.0.clone(), version_key.1.clone())];
        keys.extend(
            connections
                .iter()
                .map(|name| key(workspace_pk(workspace_id), connection_sk(name))),
        );
        let mut found = Found::new(self.batch_get(keys).await?);
        let version: Option<ProjectVersion> = found
            .take(version_key.0, version_key.1)
            .map(|item| decode(item, "version"))
            .transpose()?;
        let mut loaded = HashMap::new();
        for name in connections {
            if let Some(item) = found.take(workspace_pk(workspace_id), connection_sk(name)) {
                let connection: Connection = super::connections::decode_connection(item)?;
                loaded.insert(name.clone(), connection);
            }
        }
        // Connections the message did not name (a project published before the names
        // were kept, or a message from an older dispatch): one more read.
        let missing: Vec<String> = version
            .iter()
            .flat_map(|v| v.body.connection_names())
            .filter(|name| !connections.contains(name))
            .collect();
        if !missing.is_empty() {
            let keys = missing
                .iter()
                .map(|name| key(workspace_pk(workspace_id), connection_sk(name)))
                .collect();
            let mut found = Found::new(self.batch_get(keys).await?);
            for name in missing {
                if let Some(item) = found.take(workspace_pk(workspace_id), connection_sk(&name)) {
                    loaded.insert(name, super::connections::decode_connection(item)?);
                }
            }
        }
        Ok(ExecutionInputs {
            version,
            connections: loaded,
        })
    }

    async fn start_pending_run(
        &self,
        workspace_id: &str,
        run_id: &str,
        start: RunStart,
    ) -> Result<Option<Run>, PortError> {
        let running = RunStatus::Running.as_str();
        let event = StateEvent::new("STATUS", running, start.at);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(run_pk(workspace_id, run_id), RUN_SK)))
            .update_expression(
                "SET #status = :running, #d.#status = :running, \
                 #attempt = #attempt + :one, #d.#attempt = #d.#attempt + :one, \
                 #d.#start = :at, #d.#lease = :lease, \
                 #d.#events = list_append(#d.#events, :event)",
            )
            .condition_expression("#status = :pending")
            .expression_attribute_names("#d", super::table::DATA)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#attempt", "attempt")
            .expression_attribute_names("#start", "startTime")
            .expression_attribute_names("#lease", "leaseUntil")
            .expression_attribute_names("#events", "stateEvents")
            .expression_attribute_values(":running", s(running))
            .expression_attribute_values(":pending", s(RunStatus::Pending.as_str()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":at", encode_value(&start.at, "instant")?)
            .expression_attribute_values(":lease", encode_value(&start.lease_until, "instant")?)
            .expression_attribute_values(
                ":event",
                AttributeValue::L(vec![encode_value(&event, "state event")?]),
            )
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes {
                Some(item) => Ok(Some(decode(item, "run")?)),
                None => Err(PortError::fatal(
                    "dynamodb UpdateItem: the started run did not come back",
                )),
            },
            // Not PENDING, or no such run (the condition fails on a missing item too).
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_err("UpdateItem", e)),
        }
    }

    async fn end_run(
        &self,
        run: &Run,
        expected: RunGuard,
        results: Option<&PublishedResults>,
        cache: &[CachedResult],
    ) -> Result<bool, PortError> {
        // Entries too many or too large for one transaction beside the run are written
        // on their own, after it.
        let size: usize = cache
            .iter()
            .map(|e| {
                serde_json::to_vec(e)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX / 2)
            })
            .sum();
        let (inline, separate) =
            if cache.len() <= MAX_INLINE_CACHE_ENTRIES && size <= MAX_INLINE_CACHE_BYTES {
                (cache, &[][..])
            } else {
                (&[][..], cache)
            };
        let mut parts = vec![Part::Marker, Part::Results];
        let stored = loop {
            let mut items = vec![super::runs::guarded_put(&self.table, run, expected)?];
            let mut included = vec![Part::Run];
            if parts.contains(&Part::Marker)
                && let Some(marker) = marker_delete(&self.table, run)?
            {
                items.push(marker);
                included.push(Part::Marker);
            }
            if parts.contains(&Part::Results)
                && let Some(results) = results
            {
                items.push(super::results::newer_results_put(&self.table, results)?);
                included.push(Part::Results);
            }
            for entry in inline {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(super::cache::cache_item(entry)?))
                    .build()
                    .map_err(build_err)?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            if items.len() == 1 {
                self.update_run(run, expected).await?;
                break false;
            }
            match self.transact("TransactWriteItems", items).await? {
                Ok(()) => break included.contains(&Part::Results),
                Err(failed) => {
                    if failed.first().copied().unwrap_or(false) {
                        // The run changed meanwhile (killed, timed out): as `update_run`.
                        return Err(super::runs::guard_refused(self, run).await);
                    }
                    // Newer results exist, or the marker is a later run's: the run's own
                    // write goes ahead without the refused parts.
                    let refused: Vec<Part> = included
                        .iter()
                        .zip(failed.iter().chain(std::iter::repeat(&false)))
                        .filter(|(_, f)| **f)
                        .map(|(p, _)| *p)
                        .collect();
                    if refused.is_empty() {
                        return Err(PortError::unavailable(
                            "dynamodb end_run: transaction refused without a reason",
                        ));
                    }
                    parts.retain(|p| !refused.contains(p));
                }
            }
        };
        crate::ports::put_cache_entries(self, run, separate).await;
        Ok(stored)
    }
}
