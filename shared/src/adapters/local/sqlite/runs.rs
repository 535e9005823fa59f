//! `RunStore` over the `runs` table. Run creation is the conditional write that makes
//! every duplicate delivery of one fire yield one run: `INSERT ... ON CONFLICT DO NOTHING`
//! on the run id, answered with the stored run when it was already there. Run updates are
//! conditional too: one `UPDATE ... WHERE status = ? AND attempt = ?`, so of several
//! executors racing on the same run exactly one wins.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{CachedStatement, Connection, Row, Transaction};

use super::codec::{
    MAX_PAGE, decode_cursor, finish_page, flag, from_json, from_nanos, nanos, page_size, to_json,
    ts,
};
use super::result_rows::{self, PreparedRows};
use super::run_body::{BodyIn, BodyOut, RunColumns};
use super::{SqliteStore, db_err, exec, query_all, query_opt};
use crate::domain::model::{Run, RunGuard};
use crate::ports::{Page, PageRequest, PortError, RunCreated, RunEventOutbox, RunFilter, RunStore};

/// The columns a run is read from, in the order `run_from_row` takes them.
macro_rules! run_columns {
    () => {
        "body, cell_rows, run_id, workspace_id, project_id, schedule_id, run_trigger, status,
         scheduled_for, created_at, expires_at, attempt, event_pending"
    };
}
const RUN_COLUMN_COUNT: usize = 13;

/// A run from a row of `SELECT run_columns!()`, its shared results read back in.
fn run_from_row(conn: &Connection, row: &Row<'_>) -> Result<Run, PortError> {
    let body: BodyIn = from_json(&row.get::<_, String>(0).map_err(db_err)?, "run")?;
    let mut run = body.into_run(RunColumns {
        run_id: row.get(2).map_err(db_err)?,
        workspace_id: row.get(3).map_err(db_err)?,
        project_id: row.get(4).map_err(db_err)?,
        schedule_id: row.get(5).map_err(db_err)?,
        run_trigger: row.get(6).map_err(db_err)?,
        status: row.get(7).map_err(db_err)?,
        scheduled_for: row.get(8).map_err(db_err)?,
        created_at: row.get(9).map_err(db_err)?,
        expires_at: row.get(10).map_err(db_err)?,
        attempt: row.get(11).map_err(db_err)?,
        event_pending: row.get(12).map_err(db_err)?,
    })?;
    if let Some(refs) = row.get::<_, Option<String>>(1).map_err(db_err)? {
        let refs: Vec<(usize, String)> = from_json(&refs, "run result references")?;
        for (index, id) in refs {
            let rows = result_rows::load(conn, &run.workspace_id, &id)?;
            if let Some(cell) = run.cells.get_mut(index) {
                cell.rows = rows;
            }
        }
    }
    Ok(run)
}

/// A run and the integer sort key its page cursor is made of, from a row of
/// `SELECT run_columns!(), <key columns>`.
fn keyed_run_from_row<const N: usize>(
    conn: &Connection,
    row: &Row<'_>,
) -> Result<(Run, [i64; N]), PortError> {
    let mut key = [0; N];
    for (i, part) in key.iter_mut().enumerate() {
        *part = row.get(RUN_COLUMN_COUNT + i).map_err(db_err)?;
    }
    Ok((run_from_row(conn, row)?, key))
}

/// The page of `size` runs out of the `size + 1` a keyed listing fetched.
fn keyed_page<const N: usize>(items: Vec<(Run, [i64; N])>, size: u32) -> Page<Run> {
    let page = finish_page(items, size, |(_, key)| key.map(|part| part.to_string()));
    Page {
        items: page.items.into_iter().map(|(run, _)| run).collect(),
        next_cursor: page.next_cursor,
    }
}

/// The key a cursor of a run listing carries, or `first` when there is no cursor.
fn cursor_key<const N: usize>(page: &PageRequest, first: i64) -> Result<[i64; N], PortError> {
    let Some(cursor) = &page.cursor else {
        return Ok([first; N]);
    };
    let parts = decode_cursor::<N>(cursor)?;
    let mut key = [0; N];
    for (part, text) in key.iter_mut().zip(&parts) {
        *part = text.parse().map_err(|_| PortError::InvalidCursor)?;
    }
    Ok(key)
}

/// The run log's sort key: the nominal fire time, or the creation time of runs that have
/// none (manual runs), so they interleave where they happened.
fn log_at(run: &Run) -> i64 {
    nanos(&run.scheduled_for.unwrap_or(run.created_at))
}

/// A schedule's run log, newest first, from `runs_by_schedule` read backwards (its entries
/// end in `run_seq`, the rowid, which breaks ties); the workspace is checked on the row.
const LIST_SCHEDULE_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    ", log_at, run_seq FROM runs
     WHERE workspace_id = ?1 AND schedule_id = ?2
       AND (log_at, run_seq) < (?3, ?4)
       AND expires_at > ?5
     ORDER BY log_at DESC, run_seq DESC
     LIMIT ?6"
);

/// A project's runs: a NULL parameter switches its filter off, keeping one statement to
/// cache; `runs_by_project` yields the order and the filters are checked on the way.
const LIST_PROJECT_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs
     WHERE workspace_id = ?1 AND project_id = ?2
       AND (?3 IS NULL OR status = ?3)
       AND (?4 IS NULL OR run_trigger = ?4)
       AND expires_at > ?5
     ORDER BY created_at DESC, run_seq DESC
     LIMIT ?6 OFFSET ?7"
);

/// One run by id, in its workspace.
const GET_RUN: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE workspace_id = ?1 AND run_id = ?2"
);

/// The sweeper's view. The status list repeats the `WHERE` of the partial index
/// `runs_active` word for word, which is what lets SQLite use it.
const LIST_ACTIVE_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    ", run_seq FROM runs
     WHERE status IN ('PENDING', 'RUNNING') AND run_seq > ?1
     ORDER BY run_seq
     LIMIT ?2"
);

/// The outbox's view: runs whose event is still to be published. Repeats the `WHERE` of
/// the partial index `runs_event_pending`.
const LIST_PENDING_EVENTS: &str = concat!(
    "SELECT ",
    run_columns!(),
    ", run_seq FROM runs
     WHERE event_pending = 1 AND run_seq > ?1
     ORDER BY run_seq
     LIMIT ?2"
);

/// The latest fire of every stored schedule: the first run of its run log that has a fire
/// time (manual runs have none), read from the head of `runs_by_schedule`. Schedules
/// deleted since have no trigger to resume and are left out.
const LAST_FIRE_TIMES: &str = "SELECT schedule_id, fired FROM (
         SELECT s.schedule_id,
             (SELECT r.scheduled_for FROM runs r
              WHERE r.schedule_id = s.schedule_id AND r.workspace_id = s.workspace_id
                AND r.scheduled_for IS NOT NULL
              ORDER BY r.log_at DESC, r.run_seq DESC
              LIMIT 1) AS fired
         FROM schedules s)
     WHERE fired IS NOT NULL";

/// Every column of a row, in the order of the `INSERT` and `UPDATE` statements.
type RunRow = (
    String,
    String,
    String,
    Option<String>,
    &'static str,
    &'static str,
    Option<i64>,
    i64,
    i64,
    i64,
    u32,
    String,
    i64,
    Option<String>,
);

/// How many runs of a batch are encoded between two yields to the runtime (≈ 2 ms).
const ENCODE_CHUNK: usize = 1000;

/// A run ready to write: its row, and the results stored apart from its body.
struct EncodedRun {
    row: RunRow,
    shared: Vec<PreparedRows>,
    expires_at: DateTime<Utc>,
}

impl EncodedRun {
    /// Inside the transaction that wrote the row: the results it references are kept at
    /// least as long as the run.
    fn keep_results(&self, tx: &Transaction<'_>) -> Result<(), PortError> {
        if self.shared.is_empty() {
            return Ok(());
        }
        for prepared in &self.shared {
            result_rows::keep(tx, &self.row.1, &self.expires_at, prepared)?;
        }
        Ok(())
    }
}

/// The row of `r`: its columns, and a JSON body of the fields no column holds
/// (`run_body`). Results of many rows are stored apart (`result_rows`): the body keeps
/// them empty and `cell_rows` says where they are.
fn columns(r: &Run) -> Result<EncodedRun, PortError> {
    let mut shared = Vec::new();
    let mut refs = Vec::new();
    for (index, cell) in r.cells.iter().enumerate() {
        if let Some(prepared) = result_rows::prepare(&cell.rows)? {
            refs.push((index, prepared.id().to_string()));
            shared.push(prepared);
        }
    }
    let (body, cell_rows) = if refs.is_empty() {
        (to_json(&BodyOut::of(r, &r.cells))?, None)
    } else {
        // A clone shares the rows, so emptying the shared ones copies nothing.
        let mut cells = r.cells.clone();
        for (index, _) in &refs {
            cells[*index].rows = Default::default();
        }
        (to_json(&BodyOut::of(r, &cells))?, Some(to_json(&refs)?))
    };
    let row = (
        r.run_id.clone(),
        r.workspace_id.clone(),
        r.project_id.clone(),
        r.schedule_id.clone(),
        r.run_trigger.as_str(),
        r.status.as_str(),
        r.scheduled_for.as_ref().map(nanos),
        nanos(&r.created_at),
        log_at(r),
        nanos(&r.expires_at),
        r.attempt,
        body,
        flag(r.event_pending),
        cell_rows,
    );
    Ok(EncodedRun {
        row,
        shared,
        expires_at: r.expires_at,
    })
}

const INSERT_RUN: &str = "INSERT INTO runs (run_id, workspace_id, project_id, schedule_id,
         run_trigger, status, scheduled_for, created_at, log_at, expires_at, attempt, body,
         event_pending, cell_rows)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
     ON CONFLICT (run_id) DO NOTHING";

/// The conditional create of one run, inside the caller's transaction, with `insert`
/// (`INSERT_RUN`) prepared by the caller once for a whole batch: taking a statement from
/// the connection's cache hashes its text twice, which cost a burst's writer more than
/// binding the run (BENCHMARKS.md §5).
fn insert_if_absent(
    tx: &Transaction<'_>,
    insert: &mut CachedStatement<'_>,
    run: &EncodedRun,
) -> Result<RunCreated, PortError> {
    let row = &run.row;
    let (run_id, workspace_id) = (&row.0, &row.1);
    let inserted = insert
        .execute(rusqlite::params![
            row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10, row.11,
            row.12, row.13,
        ])
        .map_err(db_err)?;
    if inserted == 1 {
        run.keep_results(tx)?;
        return Ok(RunCreated::Created);
    }
    // The id is taken. Hand back the stored run, but only within the same workspace:
    // another tenant's run is neither overwritten nor revealed.
    query_opt(tx, GET_RUN, (workspace_id, run_id), |r| run_from_row(tx, r))?
        .map(|existing| RunCreated::Existing(Box::new(existing)))
        .ok_or(PortError::AlreadyExists)
}

/// The guarded replacement of a run's record, encoded before the writer is taken.
pub(super) struct RunUpdate {
    encoded: EncodedRun,
    expected: RunGuard,
}

impl RunUpdate {
    pub(super) fn of(run: &Run, expected: RunGuard) -> Result<RunUpdate, PortError> {
        Ok(RunUpdate {
            encoded: columns(run)?,
            expected,
        })
    }

    /// Replaces the record inside the caller's transaction if it is still at `expected`.
    pub(super) fn apply(&self, tx: &Transaction<'_>) -> Result<(), PortError> {
        let row = &self.encoded.row;
        // The guard is in the WHERE clause, so checking and replacing are one step.
        // The workspace and id of the row never change (?1, ?2 only select it).
        let changed = exec(
            tx,
            "UPDATE runs SET project_id = ?3, schedule_id = ?4, run_trigger = ?5,
                 status = ?6, scheduled_for = ?7, created_at = ?8, log_at = ?9,
                 expires_at = ?10, attempt = ?11, body = ?12, event_pending = ?13,
                 cell_rows = ?16
             WHERE run_id = ?1 AND workspace_id = ?2 AND status = ?14 AND attempt = ?15",
            rusqlite::params![
                row.0,
                row.1,
                row.2,
                row.3,
                row.4,
                row.5,
                row.6,
                row.7,
                row.8,
                row.9,
                row.10,
                row.11,
                row.12,
                self.expected.status.as_str(),
                self.expected.attempt,
                row.13,
            ],
        )?;
        if changed == 1 {
            return self.encoded.keep_results(tx);
        }
        // Nothing matched: tell a stale guard from a run that is not there (in this
        // workspace; another tenant's run of the same id is not revealed).
        let exists = query_opt(
            tx,
            "SELECT 1 FROM runs WHERE workspace_id = ?1 AND run_id = ?2",
            (&row.1, &row.0),
            |_| Ok(()),
        )?;
        Err(match exists {
            Some(()) => PortError::VersionMismatch,
            None => PortError::NotFound,
        })
    }
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_run_if_absent(&self, run: &Run) -> Result<RunCreated, PortError> {
        let encoded = columns(run)?;
        self.write(move |tx| {
            let mut insert = tx.prepare_cached(INSERT_RUN).map_err(db_err)?;
            insert_if_absent(tx, &mut insert, &encoded)
        })
        .await
    }

    /// Every run in one transaction. A run the store refuses on its own (its id taken in
    /// another workspace, its project missing) fails alone, as it would one by one; any
    /// other failure rolls the whole batch back and fails every run of it.
    async fn create_runs_if_absent(&self, runs: &[Run]) -> Vec<Result<RunCreated, PortError>> {
        let count = runs.len();
        // Encoded before the writer is taken, so other writers need not wait for it, and
        // on this task: handing the runs to the blocking pool meant cloning them, which
        // cost more than encoding them (BENCHMARKS.md §5). A chunk at a time, so a batch
        // of thousands never holds the runtime's worker for more than a moment.
        let mut rows = Vec::with_capacity(count);
        for (i, chunk) in runs.chunks(ENCODE_CHUNK).enumerate() {
            if i > 0 {
                tokio::task::yield_now().await;
            }
            rows.extend(chunk.iter().map(columns));
        }
        let written = self
            .write(move |tx| {
                let mut insert = tx.prepare_cached(INSERT_RUN).map_err(db_err)?;
                let mut created = Vec::with_capacity(rows.len());
                for row in &rows {
                    let result = match row {
                        // A run that could not be encoded never reaches the table.
                        Err(e) => Err(e.clone()),
                        Ok(row) => match insert_if_absent(tx, &mut insert, row) {
                            // Refused for this run alone: SQLite undid the failed
                            // statement and the transaction goes on.
                            Err(e @ (PortError::AlreadyExists | PortError::NotFound)) => Err(e),
                            Err(e) => return Err(e),
                            created => created,
                        },
                    };
                    created.push(result);
                }
                // The rows go back with the answer and are freed by this task once the
                // writer is free: freeing thousands of them is no work for the writer.
                Ok((created, rows))
            })
            .await;
        match written {
            Ok((created, _rows)) => created,
            Err(e) => vec![Err(e); count],
        }
    }

    async fn get_run(&self, workspace_id: &str, run_id: &str) -> Result<Option<Run>, PortError> {
        let (ws, id) = (workspace_id.to_owned(), run_id.to_owned());
        self.read(move |conn| query_opt(conn, GET_RUN, (&ws, &id), |r| run_from_row(conn, r)))
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
        let as_of = nanos(&as_of);
        let size = page_size(page);
        let [before_at, before_seq] = cursor_key(page, i64::MAX)?;
        self.read(move |conn| {
            let items = query_all(
                conn,
                LIST_SCHEDULE_RUNS,
                (&ws, &schedule, before_at, before_seq, as_of, size + 1),
                |r| keyed_run_from_row(conn, r),
            )?;
            Ok(keyed_page::<2>(items, size))
        })
        .await
    }

    async fn last_fire_times(&self) -> Result<Vec<(String, DateTime<Utc>)>, PortError> {
        self.read(|conn| {
            query_all(conn, LAST_FIRE_TIMES, [], |row| {
                let at: i64 = row.get(1).map_err(db_err)?;
                Ok((row.get(0).map_err(db_err)?, from_nanos(at)))
            })
        })
        .await
    }

    async fn update_run(&self, run: &Run, expected: RunGuard) -> Result<(), PortError> {
        let update = RunUpdate::of(run, expected)?;
        self.write(move |tx| update.apply(tx)).await
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
        let (ws, project) = (workspace_id.to_owned(), project_id.to_owned());
        let status = filter.status.map(|s| s.as_str());
        let trigger = filter.trigger.map(|t| t.as_str());
        let as_of = nanos(&as_of);
        let limit = limit.min(MAX_PAGE);
        self.read(move |conn| {
            query_all(
                conn,
                LIST_PROJECT_RUNS,
                rusqlite::params![ws, project, status, trigger, as_of, limit, offset],
                |r| run_from_row(conn, r),
            )
        })
        .await
    }

    async fn list_active_runs(&self, page: &PageRequest) -> Result<Page<Run>, PortError> {
        let size = page_size(page);
        let [after_seq] = cursor_key(page, i64::MIN)?;
        self.read(move |conn| {
            let items = query_all(conn, LIST_ACTIVE_RUNS, (after_seq, size + 1), |r| {
                keyed_run_from_row(conn, r)
            })?;
            Ok(keyed_page::<1>(items, size))
        })
        .await
    }

    async fn purge_expired_runs(&self, as_of: DateTime<Utc>, limit: u32) -> Result<u64, PortError> {
        // Reads already hide expired runs, so this only reclaims space (the local stand-in
        // for DynamoDB's TTL deletion), in bounded batches so the writer is never held long.
        let (as_of, as_of_text) = (nanos(&as_of), ts(&as_of));
        self.write(move |tx| {
            let n = exec(
                tx,
                "DELETE FROM runs WHERE run_seq IN (
                     SELECT run_seq FROM runs WHERE expires_at <= ?1 LIMIT ?2)",
                (as_of, limit),
            )?;
            // Stored results outlive every record that references them, so those expired
            // by now are no one's any more.
            result_rows::purge(tx, &as_of_text, limit)?;
            Ok(n as u64)
        })
        .await
    }
}

/// The outbox lives in the `runs` table: `event_pending` is a copy of the body's flag,
/// written by the same statements, and indexed only where it is set.
#[async_trait]
impl RunEventOutbox for SqliteStore {
    async fn list_pending_events(&self, page: &PageRequest) -> Result<Page<Run>, PortError> {
        let size = page_size(page);
        let [after_seq] = cursor_key(page, i64::MIN)?;
        self.read(move |conn| {
            let items = query_all(conn, LIST_PENDING_EVENTS, (after_seq, size + 1), |r| {
                keyed_run_from_row(conn, r)
            })?;
            Ok(keyed_page::<1>(items, size))
        })
        .await
    }

    async fn mark_event_published(
        &self,
        workspace_id: &str,
        run_id: &str,
    ) -> Result<(), PortError> {
        let (ws, id) = (workspace_id.to_owned(), run_id.to_owned());
        self.write(move |tx| {
            // One statement touching the flag only, so a concurrent writer's body stays.
            exec(
                tx,
                "UPDATE runs SET event_pending = 0
                 WHERE workspace_id = ?1 AND run_id = ?2 AND event_pending = 1",
                (&ws, &id),
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::adapters::local::sqlite::lock;
    use crate::domain::model::{
        CachedResult, CellResult, CellStatus, Plan, Project, Rows, RunStatus, RunTrigger,
        StateEvent, Workspace,
    };
    use crate::ports::{ProjectStore, SqlCacheStore, WorkspaceStore};

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, hour, 0, 0)
            .single()
            .expect("valid instant")
    }

    /// A store with workspace `w` and its project `p`.
    async fn store_with_project(dir: &std::path::Path) -> SqliteStore {
        let store = SqliteStore::open(&dir.join("state.db")).expect("open");
        store
            .create_workspace(&Workspace {
                workspace_id: "w".into(),
                plan: Plan::Team,
                auto_archive_after_days: None,
                created_at: at(0),
            })
            .await
            .expect("workspace");
        store
            .create_project(&Project {
                project_id: "p".into(),
                workspace_id: "w".into(),
                title: "p".into(),
                description: None,
                created_by: "u".into(),
                created_at: at(0),
                updated_at: at(0),
                archived: false,
                published_version: None,
                last_activity_at: at(0),
            })
            .await
            .expect("project");
        store
    }

    fn run(run_id: &str, project_id: &str) -> Run {
        Run {
            run_id: run_id.into(),
            project_id: project_id.into(),
            workspace_id: "w".into(),
            schedule_id: None,
            run_trigger: RunTrigger::Api,
            status: RunStatus::Pending,
            scheduled_for: None,
            project_version: Some(1),
            created_by: "u".into(),
            created_at: at(1),
            start_time: None,
            end_time: None,
            skip_reason: None,
            update_published_results: false,
            use_cached_sql_results: true,
            input_params: serde_json::Map::new(),
            trace_id: "t".into(),
            state_events: vec![StateEvent::new("STATUS", "PENDING", at(1))],
            expires_at: at(20),
            attempt: 0,
            lease_until: None,
            cells: Vec::new(),
            error: None,
            notification_settings: Default::default(),
            event_pending: false,
            notifications: Vec::new(),
        }
    }

    /// A completed run showing `rows` in its one cell.
    fn run_showing(run_id: &str, rows: &Rows, expires_at: DateTime<Utc>) -> Run {
        Run {
            status: RunStatus::Completed,
            expires_at,
            cells: vec![CellResult {
                cell_id: "c".into(),
                status: CellStatus::Completed,
                columns: vec!["n".into(), "label".into()],
                rows: rows.clone(),
                row_count: rows.len() as u64,
                duration_ms: 1,
                cache_hit: false,
                error: None,
            }],
            ..run(run_id, "p")
        }
    }

    fn many_rows(n: usize) -> Rows {
        (0..n)
            .map(|i| vec![serde_json::json!(i), serde_json::json!(format!("row {i}"))])
            .collect::<Vec<_>>()
            .into()
    }

    /// (id, expires_at) of every stored result.
    fn stored_results(store: &SqliteStore) -> Vec<(String, String)> {
        let conn = lock(&store.pool.writer);
        let mut stmt = conn
            .prepare("SELECT id, expires_at FROM result_rows ORDER BY id")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows")
    }

    #[tokio::test]
    async fn a_result_shown_by_runs_and_a_cache_entry_is_stored_once_and_read_back_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_project(dir.path()).await;
        let rows = many_rows(result_rows::SHARED_MIN_ROWS + 4);
        store
            .create_run_if_absent(&run_showing("r1", &rows, at(10)))
            .await
            .expect("first run");
        store
            .put_cached(&CachedResult {
                workspace_id: "w".into(),
                key: "k".into(),
                columns: vec!["n".into(), "label".into()],
                rows: rows.clone(),
                row_count: rows.len() as u64,
                created_at: at(1),
                expires_at: at(12),
            })
            .await
            .expect("cache entry");
        // A second run answered from that entry.
        store
            .create_run_if_absent(&run_showing("r2", &rows, at(11)))
            .await
            .expect("second run");

        let stored = stored_results(&store);
        assert_eq!(stored.len(), 1, "one copy: {stored:?}");
        assert_eq!(stored[0].0, rows.id().to_string());
        assert_eq!(
            stored[0].1,
            ts(&at(12)),
            "as long as its longest-lived record"
        );
        let inline: i64 = lock(&store.pool.writer)
            .query_row(
                "SELECT SUM(json_array_length(body, '$.cells[0].rows')) FROM runs",
                [],
                |r| r.get(0),
            )
            .expect("bodies");
        assert_eq!(inline, 0, "the bodies hold no rows");

        for id in ["r1", "r2"] {
            let read = store.get_run("w", id).await.expect("get").expect("found");
            assert_eq!(read.cells[0].rows, rows, "{id}");
            assert_eq!(
                read.cells[0].rows.id(),
                rows.id(),
                "{id} keeps the identity"
            );
        }
        let listed = store
            .list_project_runs("w", "p", &RunFilter::default(), at(2), 0, 10)
            .await
            .expect("list");
        assert!(listed.iter().all(|r| r.cells[0].rows == rows));
        store.forget_cached_results();
        let entry = store
            .get_cached("w", "k", at(2))
            .await
            .expect("get")
            .expect("fresh");
        assert_eq!(entry.rows, rows);
        assert!(
            store.get_run("other", "r1").await.expect("get").is_none(),
            "another workspace reads nothing"
        );
    }

    #[tokio::test]
    async fn stored_results_go_once_their_last_record_has_expired() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_project(dir.path()).await;
        let (short, long) = (many_rows(20), many_rows(30));
        store
            .create_run_if_absent(&run_showing("r1", &short, at(5)))
            .await
            .expect("run");
        store
            .create_run_if_absent(&run_showing("r2", &long, at(9)))
            .await
            .expect("run");
        assert_eq!(stored_results(&store).len(), 2);
        store.purge_expired_runs(at(5), 100).await.expect("purge");
        assert_eq!(
            stored_results(&store),
            [(long.id().to_string(), ts(&at(9)))],
            "r1's result went with it, r2's stays"
        );
        let r2 = store.get_run("w", "r2").await.expect("get").expect("found");
        assert_eq!(r2.cells[0].rows, long);
        store.purge_expired_runs(at(9), 100).await.expect("purge");
        assert!(stored_results(&store).is_empty());
    }

    #[tokio::test]
    async fn rows_are_kept_to_the_hour_so_the_runs_of_that_hour_write_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_project(dir.path()).await;
        let rows = many_rows(result_rows::SHARED_MIN_ROWS);
        let minutes = |m: i64| at(9) + chrono::Duration::minutes(m);
        store
            .create_run_if_absent(&run_showing("r1", &rows, minutes(10)))
            .await
            .expect("run");
        assert_eq!(
            stored_results(&store),
            [(rows.id().to_string(), ts(&at(10)))],
            "to the whole hour after its record's expiry"
        );
        lock(&store.pool.writer)
            .execute_batch(
                "CREATE TEMP TABLE rows_written (id TEXT);
                 CREATE TEMP TRIGGER log_rows_written AFTER UPDATE ON result_rows
                 BEGIN INSERT INTO rows_written VALUES (NEW.id); END;",
            )
            .expect("log the writes");
        let written = || -> i64 {
            lock(&store.pool.writer)
                .query_row("SELECT COUNT(*) FROM rows_written", [], |r| r.get(0))
                .expect("count")
        };
        for (run_id, expiry) in [("r2", minutes(40)), ("r3", minutes(60)), ("r4", minutes(5))] {
            store
                .create_run_if_absent(&run_showing(run_id, &rows, expiry))
                .await
                .expect("run");
        }
        assert_eq!(written(), 0, "kept long enough already: read, not written");
        store
            .create_run_if_absent(&run_showing("r5", &rows, minutes(61)))
            .await
            .expect("run");
        assert_eq!(written(), 1);
        assert_eq!(
            stored_results(&store),
            [(rows.id().to_string(), ts(&at(11)))],
            "a record of the next hour keeps them to its end"
        );
        let read = store.get_run("w", "r5").await.expect("get").expect("found");
        assert_eq!(read.cells[0].rows, rows);
    }

    #[tokio::test]
    async fn small_results_stay_in_the_run_body() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_project(dir.path()).await;
        let rows = many_rows(result_rows::SHARED_MIN_ROWS - 1);
        store
            .create_run_if_absent(&run_showing("r", &rows, at(5)))
            .await
            .expect("run");
        assert!(stored_results(&store).is_empty());
        let read = store.get_run("w", "r").await.expect("get").expect("found");
        assert_eq!(read.cells[0].rows, rows);
    }

    #[tokio::test]
    async fn a_run_refused_on_its_own_does_not_fail_its_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_project(dir.path()).await;
        let created = store
            .create_runs_if_absent(&[run("r1", "p"), run("r2", "no-such-project"), run("r3", "p")])
            .await;
        assert!(matches!(created[0], Ok(RunCreated::Created)), "{created:?}");
        assert!(
            matches!(created[1], Err(PortError::NotFound)),
            "{created:?}"
        );
        assert!(matches!(created[2], Ok(RunCreated::Created)), "{created:?}");
        for id in ["r1", "r3"] {
            assert!(store.get_run("w", id).await.expect("get").is_some());
        }
    }

    #[tokio::test]
    async fn a_failure_inside_a_batch_writes_none_of_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_project(dir.path()).await;
        let batch = [run("r1", "p"), run("r2", "p"), run("r3", "p")];
        // The store fails on the second run, after the first was written.
        lock(&store.pool.writer)
            .execute_batch(
                "CREATE TEMP TRIGGER fail_r2 BEFORE INSERT ON runs WHEN NEW.run_id = 'r2'
                 BEGIN SELECT RAISE(ABORT, 'injected'); END;",
            )
            .expect("trigger");
        let created = store.create_runs_if_absent(&batch).await;
        assert_eq!(created.len(), 3);
        assert!(created.iter().all(Result::is_err), "{created:?}");
        for id in ["r1", "r2", "r3"] {
            assert_eq!(store.get_run("w", id).await.expect("get"), None, "{id}");
        }
        // Retried once the store is well again: every run created, once.
        lock(&store.pool.writer)
            .execute_batch("DROP TRIGGER fail_r2;")
            .expect("drop trigger");
        let created = store.create_runs_if_absent(&batch).await;
        assert!(
            created.iter().all(|c| matches!(c, Ok(RunCreated::Created))),
            "{created:?}"
        );
        let again = store.create_runs_if_absent(&batch).await;
        assert!(
            again
                .iter()
                .all(|c| matches!(c, Ok(RunCreated::Existing(_)))),
            "{again:?}"
        );
    }

    /// The details of SQLite's plan for `sql`, one line per step.
    fn plan(store: &SqliteStore, sql: &str, params: usize) -> String {
        let conn = lock(&store.pool.writer);
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("prepare");
        let nulls = vec![rusqlite::types::Null; params];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .expect("explain");
        rows.collect::<Result<Vec<_>, _>>()
            .expect("plan rows")
            .join("\n")
    }

    #[test]
    fn run_listings_read_their_indexes_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("state.db")).expect("open");

        let schedule = plan(&store, LIST_SCHEDULE_RUNS, 6);
        assert!(
            schedule.contains("USING INDEX runs_by_schedule"),
            "{schedule}"
        );
        assert!(
            !schedule.contains("TEMP B-TREE"),
            "no sort step: {schedule}"
        );

        // One seek into the head of each schedule's run log, not a pass over all runs.
        let fire_times = plan(&store, LAST_FIRE_TIMES, 0);
        assert!(
            fire_times.contains("USING INDEX runs_by_schedule"),
            "{fire_times}"
        );
        assert!(!fire_times.contains("TEMP B-TREE"), "{fire_times}");

        let project = plan(&store, LIST_PROJECT_RUNS, 7);
        assert!(project.contains("USING INDEX runs_by_project"), "{project}");
        assert!(!project.contains("TEMP B-TREE"), "no sort step: {project}");

        // A partial index is only used when the query repeats its condition; a drift
        // between the two would silently scan the whole history.
        let active = plan(&store, LIST_ACTIVE_RUNS, 2);
        assert!(active.contains("USING INDEX runs_active"), "{active}");
        assert!(!active.contains("TEMP B-TREE"), "no sort step: {active}");

        let pending = plan(&store, LIST_PENDING_EVENTS, 2);
        assert!(
            pending.contains("USING INDEX runs_event_pending"),
            "{pending}"
        );
        assert!(!pending.contains("TEMP B-TREE"), "no sort step: {pending}");
    }

    /// The run's end and its cache entries are one transaction; an entry the store refuses
    /// is undone alone and the run's end stands, while a stale guard writes nothing.
    #[tokio::test]
    async fn a_run_ends_with_its_cache_entries_and_a_refused_entry_fails_alone() {
        use crate::ports::ExecutionPath;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_project(dir.path()).await;
        let pending = run("r1", "p");
        store.create_run_if_absent(&pending).await.expect("created");
        lock(&store.pool.writer)
            .execute_batch(
                "CREATE TEMP TRIGGER refuse_bad BEFORE INSERT ON sql_cache
                 WHEN NEW.cache_key = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .expect("trigger");
        let entry = |key: &str| CachedResult {
            workspace_id: "w".into(),
            key: key.into(),
            columns: vec!["n".into()],
            rows: vec![vec![serde_json::json!(1)]].into(),
            row_count: 1,
            created_at: at(2),
            expires_at: at(10),
        };
        let mut ended = pending.clone();
        ended.status = RunStatus::Completed;
        ended.end_time = Some(at(2));
        let published = store
            .end_run(
                &ended,
                pending.guard(),
                None,
                &[entry("good"), entry("bad"), entry("also")],
            )
            .await
            .expect("the run ends");
        assert!(!published);
        let stored = store.get_run("w", "r1").await.expect("read").expect("run");
        assert_eq!(stored.status, RunStatus::Completed);
        store.forget_cached_results();
        for (key, kept) in [("good", true), ("bad", false), ("also", true)] {
            let found = store.get_cached("w", key, at(3)).await.expect("read");
            assert_eq!(found.is_some(), kept, "{key}");
        }
        // The guard is stale now: nothing of this end is written.
        let late = store
            .end_run(&ended, pending.guard(), None, &[entry("late")])
            .await;
        assert!(matches!(late, Err(PortError::VersionMismatch)), "{late:?}");
        store.forget_cached_results();
        let found = store.get_cached("w", "late", at(3)).await.expect("read");
        assert!(found.is_none(), "{found:?}");
    }
}
