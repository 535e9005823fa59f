//! `RunStore` over the `runs` table. Run creation is the conditional write that makes
//! every duplicate delivery of one fire yield one run: `INSERT ... ON CONFLICT DO NOTHING`
//! on the run id, answered with the stored run when it was already there.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Row;

use super::codec::{before, finish_page, from_json, page_size, parse_ts, to_json, ts};
use super::{SqliteStore, db_err, exec, query_all, query_opt};
use crate::domain::model::Run;
use crate::ports::{Page, PageRequest, PortError, RunCreated, RunStore};

fn run_from_row(row: &Row<'_>) -> Result<Run, PortError> {
    from_json(&row.get::<_, String>(0).map_err(db_err)?, "run")
}

/// The run log's sort key: the nominal fire time, or the creation time of runs that have
/// none (manual runs), so they interleave where they happened.
fn log_at(run: &Run) -> String {
    ts(&run.scheduled_for.unwrap_or(run.created_at))
}

fn run_key(run: &Run) -> [String; 2] {
    [log_at(run), run.run_id.clone()]
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_run_if_absent(&self, run: &Run) -> Result<RunCreated, PortError> {
        let r = run.clone();
        let body = to_json(&r)?;
        self.write(move |tx| {
            let inserted = exec(
                tx,
                "INSERT INTO runs (run_id, workspace_id, project_id, schedule_id, run_trigger,
                     status, scheduled_for, created_at, log_at, expires_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (run_id) DO NOTHING",
                rusqlite::params![
                    r.run_id,
                    r.workspace_id,
                    r.project_id,
                    r.schedule_id,
                    r.run_trigger.as_str(),
                    r.status.as_str(),
                    r.scheduled_for.as_ref().map(ts),
                    ts(&r.created_at),
                    log_at(&r),
                    ts(&r.expires_at),
                    body,
                ],
            )?;
            if inserted == 1 {
                return Ok(RunCreated::Created);
            }
            // The id is taken. Hand back the stored run, but only within the same
            // workspace: another tenant's run is neither overwritten nor revealed.
            query_opt(
                tx,
                "SELECT body FROM runs WHERE workspace_id = ?1 AND run_id = ?2",
                (&r.workspace_id, &r.run_id),
                run_from_row,
            )?
            .map(|existing| RunCreated::Existing(Box::new(existing)))
            .ok_or(PortError::AlreadyExists)
        })
        .await
    }

    async fn get_run(&self, workspace_id: &str, run_id: &str) -> Result<Option<Run>, PortError> {
        let (ws, id) = (workspace_id.to_owned(), run_id.to_owned());
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT body FROM runs WHERE workspace_id = ?1 AND run_id = ?2",
                (&ws, &id),
                run_from_row,
            )
        })
        .await
    }

    async fn list_schedule_runs(
        &self,
        workspace_id: &str,
        schedule_id: &str,
        as_of: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Run>, PortError> {
        let (ws, schedule) = (workspace_id.to_owned(), schedule_id.to_owned());
        let as_of = ts(&as_of);
        let size = page_size(page);
        let [before_at, before_id] = before::<2>(page)?;
        self.read(move |conn| {
            let items = query_all(
                conn,
                "SELECT body FROM runs
                 WHERE workspace_id = ?1 AND schedule_id = ?2
                   AND (log_at, run_id) < (?3, ?4)
                   AND expires_at > ?5
                 ORDER BY log_at DESC, run_id DESC
                 LIMIT ?6",
                (&ws, &schedule, &before_at, &before_id, &as_of, size + 1),
                run_from_row,
            )?;
            Ok(finish_page(items, size, run_key))
        })
        .await
    }

    async fn last_fire_times(&self) -> Result<Vec<(String, DateTime<Utc>)>, PortError> {
        self.read(|conn| {
            query_all(
                conn,
                "SELECT schedule_id, MAX(scheduled_for) FROM runs
                 WHERE schedule_id IS NOT NULL AND scheduled_for IS NOT NULL
                 GROUP BY schedule_id",
                [],
                |row| {
                    let at: String = row.get(1).map_err(db_err)?;
                    Ok((row.get(0).map_err(db_err)?, parse_ts(&at)?))
                },
            )
        })
        .await
    }
}
