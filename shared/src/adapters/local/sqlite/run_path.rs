//! `RunPathStore` for the embedded store. The records of a batch of fires (the schedules,
//! their projects, creators, the creators' roles and each schedule's latest run) are read
//! with three queries, whatever the batch's size: the schedules with their latest runs,
//! then the distinct projects and creators they name. So the local timer can dispatch the
//! thousands of fires that fall due on the same minute without a round trip per record; a
//! single fire is a batch of one. The executor's steps are composed from the single-record
//! methods (`ComposedRunPath`), every one a local call; the start and the end are the
//! guarded `update_run`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};

use super::cache::EncodedEntry;
use super::codec::{from_json, nanos, to_json};
use super::projects::{P_PROJECT_COLUMNS, project_from_row, role_from_text};
use super::runs::RunUpdate;
use super::workspaces::user_from_row;
use super::{SqliteStore, db_err};
use crate::domain::model::{
    CachedResult, ProjectRole, PublishedResults, Run, RunGuard, RunStatus, Schedule, User,
};
use crate::ports::{
    ComposedRunPath, DispatchPath, ExecutionInputs, ExecutionPath, FireContext, FireRequest,
    PortError, ResultsStore, RunStart,
};

/// The schedules of the fires named by `?1`, a JSON array of `[workspaceId, scheduleId]`
/// pairs, with each schedule's latest run status; `j.key` is a pair's position in it. A
/// schedule that does not exist in the request's workspace yields no row. The latest run
/// is the first of the schedule's run log (`runs_by_schedule`) that has not expired at
/// `?2`, as `list_schedule_runs` reads it.
const LOAD_SCHEDULES: &str = "SELECT j.key, s.body,
         (SELECT r.status FROM runs r
          WHERE r.workspace_id = s.workspace_id AND r.schedule_id = s.schedule_id
            AND r.expires_at > ?2
          ORDER BY r.log_at DESC, r.run_seq DESC
          LIMIT 1)
     FROM json_each(?1) j
     JOIN schedules s
       ON s.schedule_id = j.value ->> 1 AND s.workspace_id = j.value ->> 0";

/// The projects named by `?1`, `[workspaceId, projectId]` pairs; the key comes last.
static LOAD_PROJECTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {P_PROJECT_COLUMNS}, j.key
         FROM json_each(?1) j
         JOIN projects p ON p.workspace_id = j.value ->> 0 AND p.project_id = j.value ->> 1"
    )
});

/// The creators named by `?1`, `[workspaceId, projectId, userId]` triples: the user of
/// the workspace (NULLs when gone) and their role on the project (NULL: not a member).
const LOAD_CREATORS: &str = "SELECT u.workspace_id, u.user_id, u.email, u.workspace_role,
         m.role, j.key
     FROM json_each(?1) j
     LEFT JOIN users u ON u.workspace_id = j.value ->> 0 AND u.user_id = j.value ->> 2
     LEFT JOIN project_members m
       ON m.workspace_id = j.value ->> 0 AND m.project_id = j.value ->> 1
      AND m.user_id = j.value ->> 2";

/// Column positions of the keys (`j.key`) in `LOAD_PROJECTS` and `LOAD_CREATORS`.
const PROJECT_KEY: usize = 10;
const CREATOR_ROLE: usize = 4;
const CREATOR_KEY: usize = 5;

/// What a creator is to a fire: the user, and their role on the schedule's project.
type Creator = (Option<Arc<User>>, Option<ProjectRole>);

/// Runs `sql`, whose `?1` is a JSON array of `count` keys, and decodes each row into the
/// slot of the key it answers (its `j.key`, in column `key`): one slot per key, `None`
/// where no row came back.
fn keyed<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    count: usize,
    key: usize,
    decode: impl Fn(&Row<'_>) -> Result<T, PortError>,
) -> Result<Vec<Option<T>>, PortError> {
    let mut slots: Vec<Option<T>> = std::iter::repeat_with(|| None).take(count).collect();
    let mut statement = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = statement.query(params).map_err(db_err)?;
    while let Some(row) = rows.next().map_err(db_err)? {
        let position: i64 = row.get(key).map_err(db_err)?;
        let slot = usize::try_from(position)
            .ok()
            .and_then(|position| slots.get_mut(position))
            .ok_or_else(|| PortError::fatal("sqlite: json_each key out of range"))?;
        *slot = Some(decode(row)?);
    }
    Ok(slots)
}

/// A fire's schedule and its latest run's status, from a row of `LOAD_SCHEDULES`.
fn schedule_from_row(row: &Row<'_>) -> Result<(Schedule, Option<RunStatus>), PortError> {
    // Decoded from SQLite's own buffer: a copy into a `String` first cost every fire an
    // allocation and a copy of its body.
    let body = row
        .get_ref(1)
        .and_then(|v| Ok(v.as_str()?))
        .map_err(db_err)?;
    let schedule = from_json(body, "schedule")?;
    let latest_status = row
        .get::<_, Option<String>>(2)
        .map_err(db_err)?
        .map(|status| {
            RunStatus::parse(&status)
                .ok_or_else(|| PortError::fatal(format!("sqlite: corrupt run status {status:?}")))
        })
        .transpose()?;
    Ok((schedule, latest_status))
}

fn creator_from_row(row: &Row<'_>) -> Result<Creator, PortError> {
    let user = match row.get_ref(0).map_err(db_err)? {
        ValueRef::Null => None,
        _ => Some(Arc::new(user_from_row(row, 0)?)),
    };
    let role = row
        .get::<_, Option<String>>(CREATOR_ROLE)
        .map_err(db_err)?
        .map(|role| role_from_text(&role))
        .transpose()?;
    Ok((user, role))
}

/// Positions of distinct keys: many fires of a batch share a project and a creator, whose
/// records are read and decoded once per batch instead of once per fire (BENCHMARKS.md §5).
struct Distinct<'a, const N: usize> {
    positions: HashMap<[&'a str; N], usize>,
    keys: Vec<[&'a str; N]>,
}

impl<'a, const N: usize> Distinct<'a, N> {
    fn new() -> Self {
        Distinct {
            positions: HashMap::new(),
            keys: Vec::new(),
        }
    }

    /// The position of `key`, added if new.
    fn position(&mut self, key: [&'a str; N]) -> usize {
        *self.positions.entry(key).or_insert_with(|| {
            self.keys.push(key);
            self.keys.len() - 1
        })
    }
}

/// Reads the records of a batch of fires: their schedules (with the latest run status)
/// first, then the distinct projects and creators those schedules name.
fn read_fires(
    conn: &Connection,
    keys: &str,
    now: i64,
    count: usize,
) -> Result<Vec<Option<FireContext>>, PortError> {
    // One snapshot for the three reads, as one query would have.
    let snapshot = conn.unchecked_transaction().map_err(db_err)?;
    let schedules = keyed(
        &snapshot,
        LOAD_SCHEDULES,
        (keys, now),
        count,
        0,
        schedule_from_row,
    )?;
    let mut projects = Distinct::<2>::new();
    let mut creators = Distinct::<3>::new();
    let shared: Vec<Option<(usize, usize)>> = schedules
        .iter()
        .map(|slot| {
            slot.as_ref().map(|(s, _)| {
                let (workspace, project) = (s.workspace_id.as_str(), s.project_id.as_str());
                (
                    projects.position([workspace, project]),
                    creators.position([workspace, project, s.created_by.as_str()]),
                )
            })
        })
        .collect();
    let project_records = keyed(
        &snapshot,
        &LOAD_PROJECTS,
        [to_json(&projects.keys)?],
        projects.keys.len(),
        PROJECT_KEY,
        |row| project_from_row(row).map(Arc::new),
    )?;
    let creator_records = keyed(
        &snapshot,
        LOAD_CREATORS,
        [to_json(&creators.keys)?],
        creators.keys.len(),
        CREATOR_KEY,
        creator_from_row,
    )?;
    drop(snapshot);
    // Sized up front: collecting into a `Result` starts from an empty vector and grows it
    // by doubling, copying the contexts each time (1% of a burst's profile).
    let mut fires = Vec::with_capacity(count);
    for (slot, shared) in schedules.into_iter().zip(shared) {
        let (Some((schedule, latest_status)), Some((project, creator))) = (slot, shared) else {
            fires.push(None);
            continue;
        };
        let project = project_records.get(project).cloned().flatten();
        let (creator, creator_role) = creator_records
            .get(creator)
            .cloned()
            .flatten()
            .unwrap_or((None, None));
        fires.push(Some(FireContext {
            schedule,
            project,
            creator,
            creator_role,
            previous_run_active: latest_status.is_some_and(|s| !s.is_terminal()),
            published_connections: None,
        }));
    }
    Ok(fires)
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
        self.read(move |conn| read_fires(conn, &keys, now, count))
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

    /// The run's guarded update and its SQL-cache entries are one write transaction: as a
    /// write of its own each, an entry cost every executed cell a trip to the writer and a
    /// commit (60–70 µs a cell of 1,000 rows; BENCHMARKS.md §7). Each entry has a savepoint
    /// of its own, so one that fails is undone alone and logged, as a failed cache write
    /// always was, and the run's end stands. Published results follow as their own
    /// conditional write.
    async fn end_run(
        &self,
        run: &Run,
        expected: RunGuard,
        results: Option<&PublishedResults>,
        cache: &[CachedResult],
    ) -> Result<bool, PortError> {
        let update = RunUpdate::of(run, expected)?;
        let entries: Vec<Result<EncodedEntry, PortError>> =
            cache.iter().map(EncodedEntry::of).collect();
        let written = self
            .write(move |tx| {
                update.apply(tx)?;
                entries
                    .iter()
                    .map(|entry| match entry {
                        Ok(entry) => entry.write_alone(tx),
                        Err(e) => Ok(Err(e.clone())),
                    })
                    .collect::<Result<Vec<_>, PortError>>()
            })
            .await?;
        for (entry, outcome) in cache.iter().zip(written) {
            self.remember_cached(entry, outcome, run);
        }
        match results {
            Some(results) => self.put_results_if_newer(results).await,
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local::sqlite::lock;

    /// The query plan of `sql`, one line per step.
    fn plan(store: &SqliteStore, sql: &str, params: impl rusqlite::Params) -> String {
        let conn = lock(&store.pool.writer);
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("prepare");
        stmt.query_map(params, |row| row.get::<_, String>(3))
            .expect("explain")
            .collect::<Result<Vec<_>, _>>()
            .expect("plan rows")
            .join("\n")
    }

    #[test]
    fn fires_are_read_by_key_from_the_request_list() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("state.db")).expect("open");
        // Each request list drives its join: every table is a key lookup, never a scan.
        let cases = [
            (
                plan(&store, LOAD_SCHEDULES, ("[]", 0)),
                &["s USING INDEX", "r USING INDEX runs_by_schedule"][..],
            ),
            (plan(&store, &LOAD_PROJECTS, ["[]"]), &["p USING INDEX"][..]),
            (
                plan(&store, LOAD_CREATORS, ["[]"]),
                &["u USING INDEX", "m USING INDEX"][..],
            ),
        ];
        for (plan, tables) in cases {
            assert!(plan.contains("SCAN j"), "{plan}");
            for table in tables {
                assert!(plan.contains(table), "{table}: {plan}");
            }
            assert_eq!(plan.matches("SCAN").count(), 1, "{plan}");
        }
    }
}
