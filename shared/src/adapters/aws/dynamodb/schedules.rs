//! `ScheduleStore`: the schedule item (`WS#w#S#s`, listed per project in GSI1, per
//! workspace in GSI2 and across workspaces in the sharded GSI3) and, in the project's
//! partition, counter items that make the plan limits race-free: every insert, update and
//! delete changes the schedule and the counters in one `TransactWriteItems`, and each
//! counter update carries its limit as a `ConditionExpression`. Two concurrent creations
//! can never both squeeze under a limit; the cancellation reasons name the limit reached.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};

use super::DynamoStore;
use super::codec::{Filter, Item, Listing, b, build_err, decode, encode, key, n, s};
use super::table::{
    BY_PARENT, BY_WORKSPACE, COUNT_HOURLY_SK, COUNT_SCHEDULES_SK, DATA, GSI1PK, GSI1SK, GSI2PK,
    GSI2SK, GSI3PK, GSI3SK, OPERATOR, PK, PROJECT_SK, SCHEDULE_SK, all_schedules_shard, at_then,
    count_creator_sk, project_pk, schedule_pk, schedules_of_project, schedules_of_workspace,
    shard_of,
};
use crate::domain::model::{Project, Schedule};
use crate::ports::{
    LimitKind, Page, PageRequest, PortError, ScheduleFilter, ScheduleLimits, ScheduleStore,
};

/// Top-level copies of the fields conditions and filters read.
const VERSION: &str = "version";
const HOURLY: &str = "hourly";
const CREATED_BY: &str = "createdBy";
const PROJECT_ID: &str = "projectId";
const ENABLED: &str = "enabled";
/// The count attribute of a counter item.
const COUNT: &str = "n";

/// Attempts of an update or delete that keeps finding the schedule changed under it.
const WRITE_ATTEMPTS: u32 = 10;

fn schedule_item(sch: &Schedule) -> Result<Item, PortError> {
    let ws = sch.workspace_id.as_str();
    let pk = schedule_pk(ws, &sch.schedule_id);
    let mut item = key(pk.clone(), SCHEDULE_SK);
    item.insert(
        GSI1PK.to_owned(),
        s(schedules_of_project(ws, &sch.project_id)),
    );
    let order = at_then(&sch.created_at, &sch.schedule_id);
    item.insert(GSI1SK.to_owned(), s(order.clone()));
    item.insert(GSI2PK.to_owned(), s(schedules_of_workspace(ws)));
    item.insert(GSI2SK.to_owned(), s(order));
    item.insert(
        GSI3PK.to_owned(),
        s(all_schedules_shard(shard_of(&sch.schedule_id))),
    );
    item.insert(GSI3SK.to_owned(), s(pk));
    item.insert(VERSION.to_owned(), n(sch.version));
    item.insert(HOURLY.to_owned(), b(sch.hourly));
    item.insert(CREATED_BY.to_owned(), s(sch.created_by.clone()));
    item.insert(PROJECT_ID.to_owned(), s(sch.project_id.clone()));
    item.insert(ENABLED.to_owned(), b(sch.enabled));
    item.insert(DATA.to_owned(), encode(sch, "schedule")?);
    Ok(item)
}

/// The counters a schedule counts toward, each with the limit that guards it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Counter {
    PerProject,
    PerCreator,
    HourlyPerProject,
}

impl Counter {
    fn kind(self) -> LimitKind {
        match self {
            Counter::PerProject => LimitKind::PerProject,
            Counter::PerCreator => LimitKind::PerCreator,
            Counter::HourlyPerProject => LimitKind::HourlyPerProject,
        }
    }

    fn limit(self, limits: &ScheduleLimits) -> Option<u32> {
        match self {
            Counter::PerProject => limits.max_per_project,
            Counter::PerCreator => limits.max_per_creator,
            Counter::HourlyPerProject => limits.max_hourly_per_project,
        }
    }
}

/// A counter item: which counter, of which project (and creator).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct CounterKey {
    counter: Counter,
    project_pk: String,
    sort_key: String,
}

/// The counter items `sch` counts toward, in the fixed order in which limits are checked
/// (project, creator, hourly), so every backend names the same limit first.
fn counted_in(sch: &Schedule) -> Vec<CounterKey> {
    let project = project_pk(&sch.workspace_id, &sch.project_id);
    let mut keys = vec![
        CounterKey {
            counter: Counter::PerProject,
            project_pk: project.clone(),
            sort_key: COUNT_SCHEDULES_SK.to_owned(),
        },
        CounterKey {
            counter: Counter::PerCreator,
            project_pk: project.clone(),
            sort_key: count_creator_sk(&sch.created_by),
        },
    ];
    if sch.hourly {
        keys.push(CounterKey {
            counter: Counter::HourlyPerProject,
            project_pk: project,
            sort_key: COUNT_HOURLY_SK.to_owned(),
        });
    }
    keys
}

/// `ADD n :delta` on a counter item; with `limit`, only while the count is below it.
fn count(
    table: &str,
    counter: &CounterKey,
    delta: i64,
    limit: Option<u32>,
) -> Result<TransactWriteItem, PortError> {
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(key(
            counter.project_pk.clone(),
            counter.sort_key.clone(),
        )))
        .update_expression("ADD #n :delta")
        .expression_attribute_names("#n", COUNT)
        .expression_attribute_values(":delta", n(delta));
    if let Some(max) = limit {
        // A missing counter is a count of zero, which is below every positive limit; a
        // zero limit admits nothing (a comparison with a missing attribute is false).
        let condition = if max == 0 {
            "#n < :max"
        } else {
            "attribute_not_exists(#n) OR #n < :max"
        };
        update = update
            .condition_expression(condition)
            .expression_attribute_values(":max", n(max));
    }
    Ok(TransactWriteItem::builder()
        .update(update.build().map_err(build_err)?)
        .build())
}

fn project_exists(table: &str, project_pk: String) -> Result<TransactWriteItem, PortError> {
    Ok(TransactWriteItem::builder()
        .condition_check(
            ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(key(project_pk, PROJECT_SK)))
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build()
                .map_err(build_err)?,
        )
        .build())
}

/// The condition that the stored schedule is still the one read (same version and the
/// same counted attributes), so the counter changes computed from it are right.
fn unchanged(stored: &Schedule) -> (&'static str, Vec<(&'static str, AttributeValue)>) {
    (
        "#version = :v AND #hourly = :h AND #creator = :c AND #project = :p",
        vec![
            (":v", n(stored.version)),
            (":h", b(stored.hourly)),
            (":c", s(stored.created_by.clone())),
            (":p", s(stored.project_id.clone())),
        ],
    )
}

impl DynamoStore {
    async fn stored_schedule(
        &self,
        workspace_id: &str,
        schedule_id: &str,
    ) -> Result<Option<Schedule>, PortError> {
        self.get_item(key(schedule_pk(workspace_id, schedule_id), SCHEDULE_SK))
            .await?
            .map(|item| decode(item, "schedule"))
            .transpose()
    }

    fn decode_schedules(items: Vec<Item>) -> Result<Vec<Schedule>, PortError> {
        items
            .into_iter()
            .map(|item| decode(item, "schedule"))
            .collect()
    }
}

#[async_trait]
impl ScheduleStore for DynamoStore {
    async fn insert_schedule(
        &self,
        schedule: &Schedule,
        limits: &ScheduleLimits,
    ) -> Result<(), PortError> {
        let counters = counted_in(schedule);
        let mut items = vec![
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(schedule_item(schedule)?))
                        .condition_expression("attribute_not_exists(#pk)")
                        .expression_attribute_names("#pk", PK)
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
        ];
        for counter in &counters {
            items.push(count(
                &self.table,
                counter,
                1,
                counter.counter.limit(limits),
            )?);
        }
        // The schedule hangs off a project of its own workspace, or nothing is written.
        items.push(project_exists(
            &self.table,
            project_pk(&schedule.workspace_id, &schedule.project_id),
        )?);

        let failed = match self.transact("TransactWriteItems", items).await? {
            Ok(()) => return Ok(()),
            Err(failed) => failed,
        };
        // A taken id is reported before any limit, so a retried insert that had
        // succeeded says what actually happened; then the limits in their fixed order.
        if failed.first() == Some(&true) {
            return Err(PortError::AlreadyExists);
        }
        for (i, counter) in counters.iter().enumerate() {
            if failed.get(i + 1) == Some(&true) {
                return Err(PortError::LimitReached(counter.counter.kind()));
            }
        }
        Err(PortError::NotFound)
    }

    async fn get_schedule(
        &self,
        workspace_id: &str,
        schedule_id: &str,
    ) -> Result<Option<Schedule>, PortError> {
        self.stored_schedule(workspace_id, schedule_id).await
    }

    async fn list_project_schedules(
        &self,
        workspace_id: &str,
        project_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Schedule>, PortError> {
        let listing = Listing::new(
            "project-schedules",
            BY_PARENT,
            schedules_of_project(workspace_id, project_id),
        );
        let (items, next_cursor) = self.page(&listing, page).await?;
        Ok(Page {
            items: Self::decode_schedules(items)?,
            next_cursor,
        })
    }

    async fn list_workspace_schedules(
        &self,
        workspace_id: &str,
        filter: &ScheduleFilter,
        page: &PageRequest,
    ) -> Result<Page<Schedule>, PortError> {
        // With a project, that project's partition; else the workspace's. Creator and
        // enabled are filters on the way (an admin listing of one workspace).
        let mut listing = match &filter.project_id {
            Some(project_id) => Listing::new(
                "admin-project-schedules",
                BY_PARENT,
                schedules_of_project(workspace_id, project_id),
            ),
            None => Listing::new(
                "admin-schedules",
                BY_WORKSPACE,
                schedules_of_workspace(workspace_id),
            ),
        };
        let mut conditions = Filter::default();
        if let Some(creator) = &filter.created_by {
            conditions.and(
                "#f_creator = :f_creator",
                ("#f_creator", CREATED_BY),
                Some((":f_creator", s(creator.clone()))),
            );
        }
        if let Some(enabled) = filter.enabled {
            conditions.and(
                "#f_enabled = :f_enabled",
                ("#f_enabled", ENABLED),
                Some((":f_enabled", b(enabled))),
            );
        }
        listing.filter = conditions;
        let (items, next_cursor) = self.page(&listing, page).await?;
        Ok(Page {
            items: Self::decode_schedules(items)?,
            next_cursor,
        })
    }

    async fn update_schedule(
        &self,
        schedule: &Schedule,
        expected_version: u64,
        limits: &ScheduleLimits,
    ) -> Result<(), PortError> {
        for _ in 0..WRITE_ATTEMPTS {
            let stored = self
                .stored_schedule(&schedule.workspace_id, &schedule.schedule_id)
                .await?
                .ok_or(PortError::NotFound)?;
            if stored.version != expected_version {
                return Err(PortError::VersionMismatch);
            }
            let (condition, values) = unchanged(&stored);
            let mut put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(schedule_item(schedule)?))
                .condition_expression(condition)
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_names("#hourly", HOURLY)
                .expression_attribute_names("#creator", CREATED_BY)
                .expression_attribute_names("#project", PROJECT_ID);
            for (placeholder, value) in values {
                put = put.expression_attribute_values(placeholder, value);
            }
            let mut items = vec![
                TransactWriteItem::builder()
                    .put(put.build().map_err(build_err)?)
                    .build(),
            ];

            // The counters move by the difference between what the stored schedule and
            // the new one count toward. Only the hourly limit can be newly broken by an
            // update (a daily schedule turned hourly); creation limits are not rechecked.
            let mut deltas: BTreeMap<CounterKey, i64> = BTreeMap::new();
            for counter in counted_in(&stored) {
                *deltas.entry(counter).or_default() -= 1;
            }
            for counter in counted_in(schedule) {
                *deltas.entry(counter).or_default() += 1;
            }
            let mut checked = Vec::new();
            for (counter, delta) in deltas.iter().filter(|(_, d)| **d != 0) {
                let limit = (counter.counter == Counter::HourlyPerProject && *delta > 0)
                    .then(|| counter.counter.limit(limits))
                    .flatten();
                checked.push(limit.is_some());
                items.push(count(&self.table, counter, *delta, limit)?);
            }
            let moved = stored.project_id != schedule.project_id;
            if moved {
                items.push(project_exists(
                    &self.table,
                    project_pk(&schedule.workspace_id, &schedule.project_id),
                )?);
            }

            let failed = match self.transact("TransactWriteItems", items).await? {
                Ok(()) => return Ok(()),
                Err(failed) => failed,
            };
            if failed.first() == Some(&true) {
                // Changed since it was read: read again (it may be gone or newer now).
                continue;
            }
            if checked
                .iter()
                .enumerate()
                .any(|(i, guarded)| *guarded && failed.get(i + 1) == Some(&true))
            {
                return Err(PortError::LimitReached(LimitKind::HourlyPerProject));
            }
            return Err(PortError::NotFound);
        }
        Err(PortError::unavailable(
            "dynamodb update_schedule: the schedule kept changing",
        ))
    }

    async fn delete_schedule(
        &self,
        workspace_id: &str,
        schedule_id: &str,
    ) -> Result<(), PortError> {
        for _ in 0..WRITE_ATTEMPTS {
            // Runs keep their schedule id: the run log of a deleted schedule is history.
            let stored = self
                .stored_schedule(workspace_id, schedule_id)
                .await?
                .ok_or(PortError::NotFound)?;
            let (condition, values) = unchanged(&stored);
            let mut delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(
                    schedule_pk(workspace_id, schedule_id),
                    SCHEDULE_SK,
                )))
                .condition_expression(condition)
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_names("#hourly", HOURLY)
                .expression_attribute_names("#creator", CREATED_BY)
                .expression_attribute_names("#project", PROJECT_ID);
            for (placeholder, value) in values {
                delete = delete.expression_attribute_values(placeholder, value);
            }
            let mut items = vec![
                TransactWriteItem::builder()
                    .delete(delete.build().map_err(build_err)?)
                    .build(),
            ];
            for counter in counted_in(&stored) {
                items.push(count(&self.table, &counter, -1, None)?);
            }
            if self.transact("TransactWriteItems", items).await?.is_ok() {
                return Ok(());
            }
        }
        Err(PortError::unavailable(
            "dynamodb delete_schedule: the schedule kept changing",
        ))
    }

    async fn list_all_schedules(
        &self,
        page: &PageRequest,
    ) -> Result<Page<(Schedule, bool)>, PortError> {
        let (items, next_cursor) = self
            .sharded_page("all-schedules", OPERATOR, all_schedules_shard, page)
            .await?;
        let schedules = Self::decode_schedules(items)?;
        // Whether a trigger should fire depends on the project too; one batch read of the
        // page's projects answers it (archiving does not touch every schedule).
        let wanted: HashSet<(String, String)> = schedules
            .iter()
            .map(|sch| (sch.workspace_id.clone(), sch.project_id.clone()))
            .collect();
        let keys = wanted
            .iter()
            .map(|(ws, project)| key(project_pk(ws, project), PROJECT_SK))
            .collect();
        let mut archived: HashMap<(String, String), bool> = HashMap::new();
        for item in self.batch_get(keys).await? {
            let project: Project = decode(item, "project")?;
            archived.insert((project.workspace_id, project.project_id), project.archived);
        }
        let items = schedules
            .into_iter()
            .map(|sch| {
                let project_archived = archived
                    .get(&(sch.workspace_id.clone(), sch.project_id.clone()))
                    .copied()
                    // A schedule whose project is gone has nothing to run.
                    .unwrap_or(true);
                let active = sch.enabled && !project_archived;
                (sch, active)
            })
            .collect();
        Ok(Page { items, next_cursor })
    }
}
