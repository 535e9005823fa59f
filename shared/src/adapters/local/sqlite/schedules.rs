//! `ScheduleStore` over the `schedules` table. The plan limits are counted and the row
//! written inside the same `BEGIN IMMEDIATE` transaction on the single writer connection,
//! so two concurrent creations can never both squeeze under a limit.

use async_trait::async_trait;
use rusqlite::{Connection, Row};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::codec::{after, finish_page, flag, from_json, page_size, to_json, ts};
use super::{SqliteStore, db_err, exec, query_all, query_opt};
use crate::domain::cadence::Cadence;
use crate::domain::model::Schedule;
use crate::ports::{
    LimitKind, Page, PageRequest, PortError, ScheduleFilter, ScheduleLimits, ScheduleStore,
    ScheduleTrigger,
};

fn schedule_from_row(row: &Row<'_>) -> Result<Schedule, PortError> {
    from_json(&row.get::<_, String>(0).map_err(db_err)?, "schedule")
}

/// Every schedule's trigger, with its body: the timer needs three of its fields.
const LIST_TRIGGERS: &str = "SELECT s.schedule_id, s.workspace_id, s.body,
         s.enabled AND NOT p.archived
     FROM schedules s
     JOIN projects p ON p.workspace_id = s.workspace_id AND p.project_id = s.project_id";

/// The fields of a schedule's body the timer needs; the others are skipped, not built.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TriggerFields {
    cadence: Cadence,
    timezone: String,
    updated_at: DateTime<Utc>,
}

fn trigger_from_row(row: &Row<'_>) -> Result<ScheduleTrigger, PortError> {
    let body = row.get_ref(2).map_err(db_err)?;
    let body = body
        .as_str()
        .map_err(|e| PortError::fatal(format!("sqlite: corrupt schedule: {e}")))?;
    let fields: TriggerFields = from_json(body, "schedule")?;
    Ok(ScheduleTrigger {
        schedule_id: row.get(0).map_err(db_err)?,
        workspace_id: row.get(1).map_err(db_err)?,
        cadence: fields.cadence,
        timezone: fields.timezone,
        updated_at: fields.updated_at,
        active: row.get(3).map_err(db_err)?,
    })
}

/// The keyset of project and workspace listings: oldest first, id as tie-break.
fn schedule_key(s: &Schedule) -> [String; 2] {
    [ts(&s.created_at), s.schedule_id.clone()]
}

/// What the limits are checked against: the project's schedules right now.
struct Counts {
    total: u32,
    by_creator: u32,
    hourly: u32,
}

/// Counts the project's schedules, leaving out `except` (the schedule being updated).
fn count(
    conn: &Connection,
    workspace_id: &str,
    project_id: &str,
    creator: &str,
    except: Option<&str>,
) -> Result<Counts, PortError> {
    query_opt(
        conn,
        "SELECT COUNT(*),
                COALESCE(SUM(created_by = ?3), 0),
                COALESCE(SUM(hourly), 0)
         FROM schedules
         WHERE workspace_id = ?1 AND project_id = ?2
           AND (?4 IS NULL OR schedule_id <> ?4)",
        (workspace_id, project_id, creator, except),
        |row| {
            Ok(Counts {
                total: row.get(0).map_err(db_err)?,
                by_creator: row.get(1).map_err(db_err)?,
                hourly: row.get(2).map_err(db_err)?,
            })
        },
    )?
    .ok_or_else(|| PortError::fatal("sqlite: COUNT returned no row"))
}

/// `true` when one more would exceed `max` (`None` = unlimited).
fn full(current: u32, max: Option<u32>) -> bool {
    max.is_some_and(|max| current >= max)
}

/// Writes every column from `s`; the indexed columns are copies of fields of the JSON body.
fn columns(s: &Schedule) -> Result<impl rusqlite::Params, PortError> {
    Ok((
        s.schedule_id.clone(),
        s.workspace_id.clone(),
        s.project_id.clone(),
        s.created_by.clone(),
        flag(s.enabled),
        flag(s.hourly),
        ts(&s.created_at),
        // SQLite integers are i64; a version beyond that is corrupt, not a value to wrap.
        i64::try_from(s.version)
            .map_err(|_| PortError::fatal("sqlite: schedule version out of range"))?,
        to_json(s)?,
    ))
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn insert_schedule(
        &self,
        schedule: &Schedule,
        limits: &ScheduleLimits,
    ) -> Result<(), PortError> {
        let s = schedule.clone();
        let limits = *limits;
        self.write(move |tx| {
            // An id that is taken fails as AlreadyExists before any limit, so a retried
            // insert that had succeeded reports what actually happened.
            let taken = query_opt(
                tx,
                "SELECT 1 FROM schedules WHERE schedule_id = ?1",
                [&s.schedule_id],
                |_| Ok(()),
            )?;
            if taken.is_some() {
                return Err(PortError::AlreadyExists);
            }
            // Counting reads every schedule of the project, so it is done only when a limit
            // applies to this schedule (an editor's daily schedule on TEAM has none).
            let limited = limits.max_per_project.is_some()
                || limits.max_per_creator.is_some()
                || (s.hourly && limits.max_hourly_per_project.is_some());
            if limited {
                let counts = count(tx, &s.workspace_id, &s.project_id, &s.created_by, None)?;
                // Checked in this order, so every backend names the same limit when several
                // are reached at once.
                if full(counts.total, limits.max_per_project) {
                    return Err(PortError::LimitReached(LimitKind::PerProject));
                }
                if full(counts.by_creator, limits.max_per_creator) {
                    return Err(PortError::LimitReached(LimitKind::PerCreator));
                }
                if s.hourly && full(counts.hourly, limits.max_hourly_per_project) {
                    return Err(PortError::LimitReached(LimitKind::HourlyPerProject));
                }
            }
            // The composite foreign key turns a project missing in this workspace into
            // NotFound.
            exec(
                tx,
                "INSERT INTO schedules (schedule_id, workspace_id, project_id, created_by,
                     enabled, hourly, created_at, version, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                columns(&s)?,
            )?;
            Ok(())
        })
        .await
    }

    async fn get_schedule(
        &self,
        workspace_id: &str,
        schedule_id: &str,
    ) -> Result<Option<Schedule>, PortError> {
        let (ws, id) = (workspace_id.to_owned(), schedule_id.to_owned());
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT body FROM schedules WHERE workspace_id = ?1 AND schedule_id = ?2",
                (&ws, &id),
                schedule_from_row,
            )
        })
        .await
    }

    async fn list_project_schedules(
        &self,
        workspace_id: &str,
        project_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Schedule>, PortError> {
        let (ws, project) = (workspace_id.to_owned(), project_id.to_owned());
        let size = page_size(page);
        let [after_created, after_id] = after::<2>(page)?;
        self.read(move |conn| {
            let items = query_all(
                conn,
                "SELECT body FROM schedules
                 WHERE workspace_id = ?1 AND project_id = ?2
                   AND (created_at, schedule_id) > (?3, ?4)
                 ORDER BY created_at, schedule_id
                 LIMIT ?5",
                (&ws, &project, &after_created, &after_id, size + 1),
                schedule_from_row,
            )?;
            Ok(finish_page(items, size, schedule_key))
        })
        .await
    }

    async fn list_workspace_schedules(
        &self,
        workspace_id: &str,
        filter: &ScheduleFilter,
        page: &PageRequest,
    ) -> Result<Page<Schedule>, PortError> {
        let ws = workspace_id.to_owned();
        let filter = filter.clone();
        let size = page_size(page);
        let [after_created, after_id] = after::<2>(page)?;
        self.read(move |conn| {
            // A NULL parameter switches its filter off, keeping one statement to cache.
            let items = query_all(
                conn,
                "SELECT body FROM schedules
                 WHERE workspace_id = ?1
                   AND (?2 IS NULL OR project_id = ?2)
                   AND (?3 IS NULL OR created_by = ?3)
                   AND (?4 IS NULL OR enabled = ?4)
                   AND (created_at, schedule_id) > (?5, ?6)
                 ORDER BY created_at, schedule_id
                 LIMIT ?7",
                (
                    &ws,
                    &filter.project_id,
                    &filter.created_by,
                    filter.enabled.map(flag),
                    &after_created,
                    &after_id,
                    size + 1,
                ),
                schedule_from_row,
            )?;
            Ok(finish_page(items, size, schedule_key))
        })
        .await
    }

    async fn update_schedule(
        &self,
        schedule: &Schedule,
        expected_version: u64,
        limits: &ScheduleLimits,
    ) -> Result<(), PortError> {
        let s = schedule.clone();
        let limits = *limits;
        self.write(move |tx| {
            let stored: i64 = query_opt(
                tx,
                "SELECT version FROM schedules WHERE workspace_id = ?1 AND schedule_id = ?2",
                (&s.workspace_id, &s.schedule_id),
                |row| row.get(0).map_err(db_err),
            )?
            .ok_or(PortError::NotFound)?;
            if u64::try_from(stored).ok() != Some(expected_version) {
                return Err(PortError::VersionMismatch);
            }
            // Only the hourly limit can be newly broken by an update (turning a daily
            // schedule hourly); the schedule itself must not count against it.
            if s.hourly && limits.max_hourly_per_project.is_some() {
                let counts = count(
                    tx,
                    &s.workspace_id,
                    &s.project_id,
                    &s.created_by,
                    Some(&s.schedule_id),
                )?;
                if full(counts.hourly, limits.max_hourly_per_project) {
                    return Err(PortError::LimitReached(LimitKind::HourlyPerProject));
                }
            }
            exec(
                tx,
                "UPDATE schedules SET workspace_id = ?2, project_id = ?3, created_by = ?4,
                     enabled = ?5, hourly = ?6, created_at = ?7, version = ?8, body = ?9
                 WHERE schedule_id = ?1",
                columns(&s)?,
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_schedule(
        &self,
        workspace_id: &str,
        schedule_id: &str,
    ) -> Result<(), PortError> {
        let (ws, id) = (workspace_id.to_owned(), schedule_id.to_owned());
        self.write(move |tx| {
            // Runs keep their schedule_id: the run log of a deleted schedule is history.
            let deleted = exec(
                tx,
                "DELETE FROM schedules WHERE workspace_id = ?1 AND schedule_id = ?2",
                (&ws, &id),
            )?;
            if deleted == 0 {
                return Err(PortError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn list_all_schedules(
        &self,
        page: &PageRequest,
    ) -> Result<Page<(Schedule, bool)>, PortError> {
        let size = page_size(page);
        let [after_id] = after::<1>(page)?;
        self.read(move |conn| {
            // By id alone: this walks every workspace, and the primary key is the cheapest
            // stable order to resume from.
            let items = query_all(
                conn,
                "SELECT s.body, s.enabled AND NOT p.archived
                 FROM schedules s
                 JOIN projects p
                   ON p.workspace_id = s.workspace_id AND p.project_id = s.project_id
                 WHERE s.schedule_id > ?1
                 ORDER BY s.schedule_id
                 LIMIT ?2",
                (&after_id, size + 1),
                |row| Ok((schedule_from_row(row)?, row.get(1).map_err(db_err)?)),
            )?;
            Ok(finish_page(items, size, |(s, _)| [s.schedule_id.clone()]))
        })
        .await
    }

    /// One query for all of them: the local timer loads every schedule when it starts.
    async fn list_schedule_triggers(&self) -> Result<Vec<ScheduleTrigger>, PortError> {
        self.read(|conn| query_all(conn, LIST_TRIGGERS, [], trigger_from_row))
            .await
    }
}
