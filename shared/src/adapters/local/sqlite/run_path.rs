//! `RunPathStore` for the embedded store. The records of a batch of fires (the schedules,
//! their projects, creators, the creators' roles and each schedule's latest run) are read
//! with one query, so the local timer can dispatch the thousands of fires that fall due on
//! the same minute without a round trip per record; a single fire is a batch of one. The
//! executor's steps are composed from the single-record methods (`ComposedRunPath`), every
//! one a local call; the start and the end are the guarded `update_run`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::ValueRef;

use super::codec::{from_json, nanos, to_json};
use super::projects::{P_PROJECT_COLUMNS, project_from_row, role_from_text};
use super::workspaces::user_from_row;
use super::{SqliteStore, db_err};
use crate::domain::model::{
    CachedResult, Project, PublishedResults, Run, RunGuard, RunStatus, User,
};
use crate::ports::{
    ComposedRunPath, DispatchPath, ExecutionInputs, ExecutionPath, FireContext, FireRequest,
    PortError, RunStart,
};

/// The records of the fires named by `?1`, a JSON array of `[workspaceId, scheduleId]`
/// pairs; `j.key` is a pair's position in it. A schedule that does not exist in the
/// request's workspace yields no row. The latest run is the first of the schedule's run
/// log (`runs_by_schedule`) that has not expired at `?2`, as `list_schedule_runs` reads it.
static LOAD_FIRES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {P_PROJECT_COLUMNS},
             j.key, s.body,
             u.workspace_id, u.user_id, u.email, u.workspace_role,
             m.role,
             (SELECT r.status FROM runs r
              WHERE r.workspace_id = s.workspace_id AND r.schedule_id = s.schedule_id
                AND r.expires_at > ?2
              ORDER BY r.log_at DESC, r.run_seq DESC
              LIMIT 1)
         FROM json_each(?1) j
         JOIN schedules s
           ON s.schedule_id = j.value ->> 1 AND s.workspace_id = j.value ->> 0
         LEFT JOIN projects p
           ON p.workspace_id = s.workspace_id AND p.project_id = s.project_id
         LEFT JOIN users u
           ON u.workspace_id = s.workspace_id AND u.user_id = s.created_by
         LEFT JOIN project_members m
           ON m.workspace_id = s.workspace_id AND m.project_id = s.project_id
          AND m.user_id = s.created_by"
    )
});

/// Column positions in `LOAD_FIRES` after the project's.
const POSITION: usize = 10;
const SCHEDULE: usize = 11;
const USER: usize = 12;
const ROLE: usize = 16;
const LATEST_STATUS: usize = 17;

/// Records that many fires of a batch share (a project's schedules, a workspace's few
/// creators), decoded once per batch and copied for the others: decoding a project
/// parses three timestamps, a copy does not (BENCHMARKS.md §5).
struct Decoded<T>(HashMap<String, HashMap<String, T>>);

impl<T: Clone> Decoded<T> {
    fn new() -> Self {
        Decoded(HashMap::new())
    }

    /// The record `(workspace, id)` of a row whose columns are NULL when it is absent (an
    /// outer join), decoded the first time it is seen.
    fn get(
        &mut self,
        row: &Row<'_>,
        key: [usize; 2],
        decode: impl FnOnce() -> Result<T, PortError>,
    ) -> Result<Option<T>, PortError> {
        let (Some(workspace), Some(id)) = (text_or_null(row, key[0])?, text_or_null(row, key[1])?)
        else {
            return Ok(None);
        };
        if let Some(seen) = self.0.get(workspace).and_then(|ids| ids.get(id)) {
            return Ok(Some(seen.clone()));
        }
        let value = decode()?;
        self.0
            .entry(workspace.to_owned())
            .or_default()
            .insert(id.to_owned(), value.clone());
        Ok(Some(value))
    }
}

/// A text column read in place, without a copy.
fn text_or_null<'r>(row: &'r Row<'_>, index: usize) -> Result<Option<&'r str>, PortError> {
    match row.get_ref(index).map_err(db_err)? {
        ValueRef::Null => Ok(None),
        value => value
            .as_str()
            .map(Some)
            .map_err(|e| PortError::fatal(format!("sqlite: {e}"))),
    }
}

/// One row of `LOAD_FIRES`: the position of the request it answers and its context.
fn fire_from_row(
    row: &Row<'_>,
    projects: &mut Decoded<Project>,
    users: &mut Decoded<User>,
) -> Result<(usize, FireContext), PortError> {
    let position: i64 = row.get(POSITION).map_err(db_err)?;
    let position = usize::try_from(position)
        .map_err(|_| PortError::fatal("sqlite: json_each key out of range"))?;
    let schedule = from_json(&row.get::<_, String>(SCHEDULE).map_err(db_err)?, "schedule")?;
    // Absent records come back as NULLs from the outer joins.
    let project = projects.get(row, [0, 1], || project_from_row(row))?;
    let creator = users.get(row, [USER, USER + 1], || user_from_row(row, USER))?;
    let creator_role = row
        .get::<_, Option<String>>(ROLE)
        .map_err(db_err)?
        .map(|role| role_from_text(&role))
        .transpose()?;
    let latest_status = row
        .get::<_, Option<String>>(LATEST_STATUS)
        .map_err(db_err)?
        .map(|status| {
            RunStatus::parse(&status)
                .ok_or_else(|| PortError::fatal(format!("sqlite: corrupt run status {status:?}")))
        })
        .transpose()?;
    Ok((
        position,
        FireContext {
            schedule,
            project,
            creator,
            creator_role,
            previous_run_active: latest_status.is_some_and(|s| !s.is_terminal()),
            published_connections: None,
        },
    ))
}

impl SqliteStore {
    fn composed(&self) -> ComposedRunPath {
        ComposedRunPath::over(Arc::new(self.clone()))
    }
}

#[async_trait]
impl DispatchPath for SqliteStore {
    async fn load_fire(
        &self,
        request: &FireRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<FireContext>, PortError> {
        let mut fires = self.load_fires(&[request], now).await?;
        Ok(fires.pop().flatten())
    }

    async fn load_fires(
        &self,
        requests: &[&FireRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<FireContext>>, PortError> {
        let keys: Vec<[&str; 2]> = requests
            .iter()
            .map(|r| [r.workspace_id.as_str(), r.schedule_id.as_str()])
            .collect();
        let keys = to_json(&keys)?;
        let now = nanos(&now);
        let count = requests.len();
        self.read(move |conn| {
            // Each row goes straight to its request's slot: a batch's contexts are large,
            // and collecting them first moved every one twice (BENCHMARKS.md §5).
            let mut fires: Vec<Option<FireContext>> = vec![None; count];
            let (mut projects, mut users) = (Decoded::new(), Decoded::new());
            let mut statement = conn.prepare_cached(&LOAD_FIRES).map_err(db_err)?;
            let mut rows = statement.query((&keys, now)).map_err(db_err)?;
            while let Some(row) = rows.next().map_err(db_err)? {
                let (position, fire) = fire_from_row(row, &mut projects, &mut users)?;
                let slot = fires
                    .get_mut(position)
                    .ok_or_else(|| PortError::fatal("sqlite: json_each key out of range"))?;
                *slot = Some(fire);
            }
            Ok(fires)
        })
        .await
    }
}

#[async_trait]
impl ExecutionPath for SqliteStore {
    async fn load_execution(
        &self,
        workspace_id: &str,
        project_id: &str,
        version: u32,
        connections: &[String],
    ) -> Result<ExecutionInputs, PortError> {
        self.composed()
            .load_execution(workspace_id, project_id, version, connections)
            .await
    }

    async fn start_pending_run(
        &self,
        workspace_id: &str,
        run_id: &str,
        start: RunStart,
    ) -> Result<Option<Run>, PortError> {
        self.composed()
            .start_pending_run(workspace_id, run_id, start)
            .await
    }

    async fn end_run(
        &self,
        run: &Run,
        expected: RunGuard,
        results: Option<&PublishedResults>,
        cache: &[CachedResult],
    ) -> Result<bool, PortError> {
        self.composed().end_run(run, expected, results, cache).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::sqlite::lock;

    #[test]
    fn fires_are_read_by_key_from_the_request_list() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("state.db")).expect("open");
        let conn = lock(&store.pool.writer);
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", *LOAD_FIRES))
            .expect("prepare");
        let plan = stmt
            .query_map(("[]", ""), |row| row.get::<_, String>(3))
            .expect("explain")
            .collect::<Result<Vec<_>, _>>()
            .expect("plan rows")
            .join("\n");
        // The request list drives the join: every table is a key lookup, never a scan.
        assert!(plan.contains("SCAN j"), "{plan}");
        for table in [
            "s USING INDEX",
            "p USING",
            "u USING",
            "m USING",
            "r USING INDEX runs_by_schedule",
        ] {
            assert!(plan.contains(table), "{table}: {plan}");
        }
        assert_eq!(plan.matches("SCAN").count(), 1, "{plan}");
    }
}
