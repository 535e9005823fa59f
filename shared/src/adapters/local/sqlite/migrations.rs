//! The schema as an ordered list of migrations. A local database outlives the binary that
//! created it, so the schema only ever moves forward: new steps are appended (never edited)
//! and `migrate` applies the ones a file has not seen yet, all in one transaction, recording
//! each in `schema_migrations`.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::db_err;
use crate::ports::PortError;

pub(super) struct Migration {
    pub version: u32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration, in version order. Append only.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial schema",
        sql: V1_INITIAL,
    },
    Migration {
        version: 2,
        description: "run execution, results, connections, sql cache, rate limits",
        sql: V2_EXECUTION,
    },
    Migration {
        version: 3,
        description: "notifications: run event outbox, deliveries, integrations",
        sql: V3_NOTIFICATIONS,
    },
    Migration {
        version: 4,
        description: "leaner run indexes: run log by schedule alone, fire times from it",
        sql: V4_LEANER_RUN_INDEXES,
    },
    Migration {
        version: 5,
        description: "query results stored once, shared by runs and SQL-cache entries",
        sql: V5_SHARED_RESULT_ROWS,
    },
    Migration {
        version: 6,
        description: "narrower run keys: integer times, a sequence number in place of the run id",
        sql: V6_NARROW_RUN_KEYS,
    },
];

/// Timestamps are fixed-width RFC 3339 text (see `codec::ts`), booleans 0/1 integers.
/// Schedules and runs keep their full value as a JSON `body`, next to copies of the fields
/// queries filter and sort on, written together in one statement.
const V1_INITIAL: &str = r#"
CREATE TABLE workspaces (
    workspace_id            TEXT NOT NULL PRIMARY KEY,
    plan                    TEXT NOT NULL,
    auto_archive_after_days INTEGER,
    created_at              TEXT NOT NULL
) STRICT;

-- Users are recorded from verified tokens, whose workspace need not be stored yet, hence
-- no foreign key to workspaces.
CREATE TABLE users (
    workspace_id   TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    email          TEXT,
    workspace_role TEXT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
) STRICT;

-- Keyed by (workspace_id, project_id) so children can reference a project only within
-- their own workspace.
CREATE TABLE projects (
    workspace_id      TEXT NOT NULL REFERENCES workspaces (workspace_id),
    project_id        TEXT NOT NULL,
    title             TEXT NOT NULL,
    description       TEXT,
    created_by        TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    archived          INTEGER NOT NULL CHECK (archived IN (0, 1)),
    published_version INTEGER,
    last_activity_at  TEXT NOT NULL,
    PRIMARY KEY (workspace_id, project_id)
) STRICT;
CREATE INDEX projects_by_created ON projects (workspace_id, created_at, project_id);

CREATE TABLE project_members (
    workspace_id TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    role         TEXT NOT NULL,
    PRIMARY KEY (workspace_id, project_id, user_id),
    FOREIGN KEY (workspace_id, project_id) REFERENCES projects (workspace_id, project_id)
) STRICT;
-- "Projects I am a member of".
CREATE INDEX project_members_by_user ON project_members (workspace_id, user_id, project_id);

CREATE TABLE project_drafts (
    workspace_id TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    body         TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (workspace_id, project_id),
    FOREIGN KEY (workspace_id, project_id) REFERENCES projects (workspace_id, project_id)
) STRICT;

CREATE TABLE project_versions (
    workspace_id TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    body         TEXT NOT NULL,
    published_at TEXT NOT NULL,
    published_by TEXT NOT NULL,
    PRIMARY KEY (workspace_id, project_id, version),
    FOREIGN KEY (workspace_id, project_id) REFERENCES projects (workspace_id, project_id)
) STRICT;

-- schedule_id is globally unique (the trigger backend and the run log name schedules by
-- id alone).
CREATE TABLE schedules (
    schedule_id  TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    enabled      INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    hourly       INTEGER NOT NULL CHECK (hourly IN (0, 1)),
    created_at   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    body         TEXT NOT NULL,
    FOREIGN KEY (workspace_id, project_id) REFERENCES projects (workspace_id, project_id)
) STRICT;
-- Project listing (oldest first) and the limit counts.
CREATE INDEX schedules_by_project ON schedules (workspace_id, project_id, created_at, schedule_id);
-- The admin listing of a whole workspace.
CREATE INDEX schedules_by_workspace ON schedules (workspace_id, created_at, schedule_id);

-- No foreign key to schedules: the run log of a deleted schedule is history and stays.
-- log_at = COALESCE(scheduled_for, created_at), the run log's sort key.
CREATE TABLE runs (
    run_id        TEXT NOT NULL PRIMARY KEY,
    workspace_id  TEXT NOT NULL,
    project_id    TEXT NOT NULL,
    schedule_id   TEXT,
    run_trigger   TEXT NOT NULL,
    status        TEXT NOT NULL,
    scheduled_for TEXT,
    created_at    TEXT NOT NULL,
    log_at        TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    body          TEXT NOT NULL,
    FOREIGN KEY (workspace_id, project_id) REFERENCES projects (workspace_id, project_id)
) STRICT;
-- A schedule's run log, newest first.
CREATE INDEX runs_by_schedule ON runs (workspace_id, schedule_id, log_at DESC, run_id DESC);
-- last_fire_times: MAX(scheduled_for) per schedule straight from the index.
CREATE INDEX runs_fire_times ON runs (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL AND scheduled_for IS NOT NULL;
-- Retention purge.
CREATE INDEX runs_by_expiry ON runs (expires_at);
"#;

/// Run execution (SPEC §5): conditional run updates, the project run listing and the
/// sweeper's view of active runs, plus the tables of published results, connections, the
/// SQL cache and rate-limit windows. Existing runs were all written before executors
/// existed, so their attempt is 0 (the body's `attempt` defaults to 0 too).
const V2_EXECUTION: &str = r#"
-- update_run compares status and attempt in one UPDATE ... WHERE.
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
-- A project's runs, newest created first, filtered by status or trigger in the scan.
CREATE INDEX runs_by_project ON runs (workspace_id, project_id, created_at DESC, run_id DESC);
-- The sweeper's view: only PENDING and RUNNING runs are in this index, so it stays small
-- however long the history grows.
CREATE INDEX runs_active ON runs (run_id) WHERE status IN ('PENDING', 'RUNNING');
-- Maintenance walks workspaces oldest first.
CREATE INDEX workspaces_by_created ON workspaces (created_at, workspace_id);
-- Auto-archive candidates: unarchived projects by last activity.
CREATE INDEX projects_inactive ON projects (workspace_id, last_activity_at, project_id)
    WHERE archived = 0;

-- One row per project: the outputs of the last run allowed to update the published app.
-- as_of is copied out of the body for the conditional replace.
CREATE TABLE published_results (
    workspace_id TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    as_of        TEXT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (workspace_id, project_id),
    FOREIGN KEY (workspace_id, project_id) REFERENCES projects (workspace_id, project_id)
) STRICT;

-- The configuration stays sealed inside the body; the store never sees it in clear.
CREATE TABLE connections (
    workspace_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (workspace_id, name)
) STRICT;

CREATE TABLE sql_cache (
    workspace_id TEXT NOT NULL,
    cache_key    TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (workspace_id, cache_key)
) STRICT;
CREATE INDEX sql_cache_by_expiry ON sql_cache (expires_at);

CREATE TABLE rate_limits (
    rate_key     TEXT NOT NULL,
    window_start TEXT NOT NULL,
    hits         INTEGER NOT NULL,
    expires_at   TEXT NOT NULL,
    PRIMARY KEY (rate_key, window_start)
) STRICT;
CREATE INDEX rate_limits_by_expiry ON rate_limits (expires_at);
"#;

/// Notifications (SPEC §7): the run-event outbox flag, the delivery records of run
/// notifications, and each workspace's integrations (sealed Slack webhooks, sealed webhook
/// signing secret). Runs written before this step have no event to publish.
const V3_NOTIFICATIONS: &str = r#"
-- A copy of the body's eventPending, set by the write that ends a run and cleared once its
-- event is published; the partial index keeps the outbox's listing small.
ALTER TABLE runs ADD COLUMN event_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_event_pending ON runs (run_id) WHERE event_pending = 1;

-- One row per delivery of a run's notifications (run, channel, recipient); claims and
-- attempts live in the body. Deleted with their run (retention purge).
CREATE TABLE deliveries (
    run_id       TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    delivery_id  TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (run_id, delivery_id)
) STRICT;

-- One row per workspace; the secrets inside the body are sealed.
CREATE TABLE integrations (
    workspace_id TEXT NOT NULL PRIMARY KEY,
    body         TEXT NOT NULL
) STRICT;
"#;

/// Fewer and narrower index entries per run: a burst of fires writes every run into every
/// index of `runs`, and that writing is what limits how fast the local timer records them
/// (BENCHMARKS.md §5). Schedule ids are globally unique, so the run log's index needs no
/// workspace in front (queries still filter by workspace, on the row); and the latest
/// fire of a schedule is the first scheduled run of its run log, as the DynamoDB store
/// reads it, so `runs_fire_times` goes.
const V4_LEANER_RUN_INDEXES: &str = r#"
DROP INDEX runs_fire_times;
DROP INDEX runs_by_schedule;
CREATE INDEX runs_by_schedule ON runs (schedule_id, log_at DESC, run_id DESC)
    WHERE schedule_id IS NOT NULL;
"#;

/// A result's rows (up to 1,000 per cell) are stored once and referenced by every run and
/// SQL-cache entry that shows them, instead of inside each body: a run answered from the
/// cache then writes a reference, not the rows again (BENCHMARKS.md §7). A row lives as
/// long as the longest-lived of the records that reference it (`expires_at` only grows).
/// `runs.cell_rows` lists a run's referenced results as `[[cell index, id], ...]`;
/// `sql_cache.rows_id` is the entry's. Small results stay inline (NULL here).
const V5_SHARED_RESULT_ROWS: &str = r#"
CREATE TABLE result_rows (
    id           TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    rows         TEXT NOT NULL
) STRICT;
CREATE INDEX result_rows_by_expiry ON result_rows (expires_at);
ALTER TABLE runs ADD COLUMN cell_rows TEXT;
ALTER TABLE sql_cache ADD COLUMN rows_id TEXT;
"#;

/// A burst of fires writes every run into the table and into every index of `runs`, and
/// that writing on the store's one writer is what bounds how fast the local timer records
/// them (BENCHMARKS.md §5). Each index entry was ~130 bytes of text and most of it the
/// same 36-character run id and 30-character times over again, so:
/// * times in the key columns are integer nanoseconds (`codec::nanos`), 8 bytes instead of
///   30 (bodies written since keep only the instants those cannot hold: `run_body`);
/// * `run_seq`, an integer primary key (the rowid, so it costs no index of its own and
///   never changes, unlike a plain rowid, under `VACUUM`), breaks ties in the listings in
///   place of the run id, which every index entry carries for free;
/// * the sweeper's and the outbox's partial indexes are keyed by `run_seq`, so a new run
///   is appended at their end instead of at a random place.
///
/// A column's type cannot change in place, so the table is rebuilt (foreign keys are off
/// while `migrate` runs, so dropping the old table does not cascade into `deliveries`,
/// whose reference then names the new one). Existing runs are numbered in creation order.
const V6_NARROW_RUN_KEYS: &str = r#"
CREATE TABLE runs_v6 (
    run_seq       INTEGER PRIMARY KEY,
    run_id        TEXT NOT NULL UNIQUE,
    workspace_id  TEXT NOT NULL,
    project_id    TEXT NOT NULL,
    schedule_id   TEXT,
    run_trigger   TEXT NOT NULL,
    status        TEXT NOT NULL,
    scheduled_for INTEGER,
    created_at    INTEGER NOT NULL,
    log_at        INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    attempt       INTEGER NOT NULL DEFAULT 0,
    event_pending INTEGER NOT NULL DEFAULT 0,
    body          TEXT NOT NULL,
    cell_rows     TEXT,
    FOREIGN KEY (workspace_id, project_id) REFERENCES projects (workspace_id, project_id)
) STRICT;
INSERT INTO runs_v6 (run_id, workspace_id, project_id, schedule_id, run_trigger, status,
    scheduled_for, created_at, log_at, expires_at, attempt, event_pending, body, cell_rows)
SELECT run_id, workspace_id, project_id, schedule_id, run_trigger, status,
    CAST(strftime('%s', substr(scheduled_for, 1, 19)) AS INTEGER) * 1000000000
        + CAST(substr(scheduled_for, 21, 9) AS INTEGER),
    CAST(strftime('%s', substr(created_at, 1, 19)) AS INTEGER) * 1000000000
        + CAST(substr(created_at, 21, 9) AS INTEGER),
    CAST(strftime('%s', substr(log_at, 1, 19)) AS INTEGER) * 1000000000
        + CAST(substr(log_at, 21, 9) AS INTEGER),
    CAST(strftime('%s', substr(expires_at, 1, 19)) AS INTEGER) * 1000000000
        + CAST(substr(expires_at, 21, 9) AS INTEGER),
    attempt, event_pending, body, cell_rows
FROM runs
ORDER BY created_at, run_id;
DROP TABLE runs;
ALTER TABLE runs_v6 RENAME TO runs;
-- A schedule's run log, read backwards for newest first.
CREATE INDEX runs_by_schedule ON runs (schedule_id, log_at) WHERE schedule_id IS NOT NULL;
-- A project's runs, read backwards for newest created first.
CREATE INDEX runs_by_project ON runs (workspace_id, project_id, created_at);
-- Retention purge.
CREATE INDEX runs_by_expiry ON runs (expires_at);
-- The sweeper's and the outbox's views, small however long the history grows.
CREATE INDEX runs_active ON runs (run_seq) WHERE status IN ('PENDING', 'RUNNING');
CREATE INDEX runs_event_pending ON runs (run_seq) WHERE event_pending = 1;
"#;

/// Brings the database up to the newest of `steps` and returns the versions it applied.
/// Refuses a file written by a newer build: running old code on a newer schema could
/// silently lose the columns it does not know.
pub(super) fn migrate(conn: &mut Connection, steps: &[Migration]) -> Result<Vec<u32>, PortError> {
    // A step that rebuilds a table drops the old one, which with foreign keys enforced
    // would cascade into the tables referencing it. SQLite's procedure for such changes:
    // foreign keys off around the transaction (the pragma is a no-op inside one), checked
    // in full before it commits.
    let enforced: bool = conn
        .pragma_query_value(None, "foreign_keys", |row| row.get(0))
        .map_err(db_err)?;
    conn.pragma_update(None, "foreign_keys", false)
        .map_err(db_err)?;
    let applied = apply(conn, steps);
    conn.pragma_update(None, "foreign_keys", enforced)
        .map_err(db_err)?;
    applied
}

fn apply(conn: &mut Connection, steps: &[Migration]) -> Result<Vec<u32>, PortError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     INTEGER NOT NULL PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at  TEXT NOT NULL
         ) STRICT;",
    )
    .map_err(db_err)?;
    let current: u32 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |row| row.get(0),
        )
        .map_err(db_err)?;
    let newest = steps.last().map_or(0, |m| m.version);
    if current > newest {
        return Err(PortError::fatal(format!(
            "sqlite: database schema version {current} is newer than this build knows ({newest})"
        )));
    }
    let mut applied = Vec::new();
    for step in steps.iter().filter(|m| m.version > current) {
        tx.execute_batch(step.sql).map_err(|e| {
            PortError::fatal(format!("sqlite: migration {} failed: {e}", step.version))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at)
             VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            (step.version, step.description),
        )
        .map_err(db_err)?;
        applied.push(step.version);
    }
    let dangling: Option<String> = if applied.is_empty() {
        None
    } else {
        tx.query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
            .optional()
            .map_err(db_err)?
    };
    if let Some(table) = dangling {
        return Err(PortError::fatal(format!(
            "sqlite: migration left a row of {table} without its parent"
        )));
    }
    tx.commit().map_err(db_err)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace and project every migrated run in these tests belongs to, as
    /// migration 1 lays them out.
    const WORKSPACE_AND_PROJECT: &str =
        "INSERT INTO workspaces VALUES ('w', 'TEAM', NULL, '2026-03-01T00:00:00.000000000Z');
         INSERT INTO projects VALUES ('w', 'p', 't', NULL, 'u',
             '2026-03-01T00:00:00.000000000Z', '2026-03-01T00:00:00.000000000Z', 0, NULL,
             '2026-03-01T00:00:00.000000000Z');";

    /// An in-memory database at the schema of the first `version` steps, foreign keys on
    /// as the store runs, with `WORKSPACE_AND_PROJECT` in it.
    fn at_version(version: usize) -> Connection {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "foreign_keys", true)
            .expect("foreign keys on, as the store runs");
        let applied = migrate(&mut conn, &MIGRATIONS[..version]).expect("migrate");
        assert_eq!(applied, (1..=version as u32).collect::<Vec<_>>());
        conn.execute_batch(WORKSPACE_AND_PROJECT)
            .expect("workspace and project");
        conn
    }

    /// The run ids `sql` lists, in its order.
    fn run_ids(conn: &Connection, sql: &str) -> Vec<String> {
        conn.prepare(sql)
            .and_then(|mut stmt| {
                stmt.query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("run ids")
    }

    #[test]
    fn versions_are_contiguous_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.description);
        }
    }

    #[test]
    fn reopening_applies_only_missing_steps() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("m.db");
        let steps = [
            Migration {
                version: 1,
                description: "a",
                sql: "CREATE TABLE a (x INTEGER) STRICT;",
            },
            Migration {
                version: 2,
                description: "b",
                sql: "CREATE TABLE b (x INTEGER) STRICT;",
            },
        ];
        let mut conn = Connection::open(&path).expect("open");
        assert_eq!(migrate(&mut conn, &steps[..1]).expect("first"), vec![1]);
        drop(conn);

        // Re-running step 1 would fail (table a exists), so success proves it was skipped.
        let mut conn = Connection::open(&path).expect("reopen");
        assert_eq!(migrate(&mut conn, &steps).expect("second"), vec![2]);
        assert_eq!(
            migrate(&mut conn, &steps).expect("third"),
            Vec::<u32>::new()
        );
        let recorded: Vec<u32> = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("versions");
        assert_eq!(recorded, vec![1, 2]);

        // An older build must not touch a newer file.
        let old = migrate(&mut conn, &steps[..1]);
        assert!(matches!(
            old,
            Err(PortError::Unavailable {
                retryable: false,
                ..
            })
        ));
    }

    #[test]
    fn a_failing_step_leaves_nothing_behind() {
        let mut conn = Connection::open_in_memory().expect("open");
        let steps = [
            Migration {
                version: 1,
                description: "ok",
                sql: "CREATE TABLE ok (x INTEGER) STRICT;",
            },
            Migration {
                version: 2,
                description: "broken",
                sql: "CREATE TABLE nope (",
            },
        ];
        assert!(migrate(&mut conn, &steps).is_err());
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('ok', 'schema_migrations')",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(tables, 0);
    }

    #[test]
    fn runs_written_before_migration_2_get_attempt_zero() {
        let mut conn = at_version(1);
        conn.execute_batch(
            "INSERT INTO runs VALUES ('r', 'w', 'p', NULL, 'API', 'RUNNING', NULL,
                 '2026-03-02T00:00:00.000000000Z', '2026-03-02T00:00:00.000000000Z',
                 '2026-06-01T00:00:00.000000000Z', '{}');",
        )
        .expect("v1 rows");
        assert_eq!(migrate(&mut conn, &MIGRATIONS[..2]).expect("rest"), vec![2]);
        let (attempt, active): (i64, i64) = conn
            .query_row(
                "SELECT attempt,
                        (SELECT COUNT(*) FROM runs INDEXED BY runs_active
                         WHERE status IN ('PENDING', 'RUNNING'))
                 FROM runs WHERE run_id = 'r'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("migrated run");
        assert_eq!(
            (attempt, active),
            (0, 1),
            "old runs are indexed as active too"
        );
    }

    #[test]
    fn runs_written_before_migration_3_have_no_pending_event() {
        let mut conn = at_version(2);
        conn.execute_batch(
            "INSERT INTO runs VALUES ('r', 'w', 'p', NULL, 'API', 'COMPLETED', NULL,
                 '2026-03-02T00:00:00.000000000Z', '2026-03-02T00:00:00.000000000Z',
                 '2026-06-01T00:00:00.000000000Z', '{}', 1);",
        )
        .expect("v2 rows");
        assert_eq!(migrate(&mut conn, &MIGRATIONS[..3]).expect("v3"), vec![3]);
        let pending: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM runs WHERE event_pending = 1",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(
            pending, 0,
            "an upgrade announces nothing that ended before it"
        );
        conn.execute("INSERT INTO deliveries VALUES ('r', 'd', 'w', '{}')", [])
            .expect("a delivery of the run");
        conn.execute("DELETE FROM runs WHERE run_id = 'r'", [])
            .expect("purge");
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
            .expect("count");
        assert_eq!(left, 0, "deliveries go with their run");
    }

    #[test]
    fn the_real_schema_applies_cleanly() {
        let mut conn = Connection::open_in_memory().expect("open");
        assert_eq!(
            migrate(&mut conn, MIGRATIONS).expect("migrates"),
            (1..=MIGRATIONS.len() as u32).collect::<Vec<_>>()
        );
    }

    #[test]
    fn runs_written_before_migration_4_are_in_the_new_run_log_index() {
        let mut conn = at_version(3);
        conn.execute_batch(
            "INSERT INTO runs VALUES ('r1', 'w', 'p', 's', 'SCHEDULED', 'COMPLETED',
                 '2026-03-02T00:00:00.000000000Z', '2026-03-02T00:00:00.000000000Z',
                 '2026-03-02T00:00:00.000000000Z', '2026-06-01T00:00:00.000000000Z', '{}', 1, 0);
             INSERT INTO runs VALUES ('r2', 'w', 'p', 's', 'MANUAL', 'COMPLETED', NULL,
                 '2026-03-03T00:00:00.000000000Z', '2026-03-03T00:00:00.000000000Z',
                 '2026-06-01T00:00:00.000000000Z', '{}', 1, 0);
             INSERT INTO runs VALUES ('r3', 'w', 'p', NULL, 'API', 'COMPLETED', NULL,
                 '2026-03-03T00:00:00.000000000Z', '2026-03-03T00:00:00.000000000Z',
                 '2026-06-01T00:00:00.000000000Z', '{}', 1, 0);",
        )
        .expect("v3 rows");
        assert_eq!(migrate(&mut conn, &MIGRATIONS[..4]).expect("v4"), vec![4]);
        let log = run_ids(
            &conn,
            "SELECT run_id FROM runs INDEXED BY runs_by_schedule
                 WHERE schedule_id = 's' ORDER BY log_at DESC, run_id DESC",
        );
        assert_eq!(log, ["r2", "r1"], "the schedule's runs, newest first");
        let fire_index: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'runs_fire_times'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(fire_index, 0, "runs_fire_times is gone");
    }

    #[test]
    fn migration_6_keeps_every_run_and_delivery_with_integer_times() {
        let mut conn = at_version(5);
        conn.execute_batch(
            "INSERT INTO runs VALUES ('r1', 'w', 'p', 's', 'SCHEDULED', 'COMPLETED',
                 '2026-03-02T00:00:00.000000000Z', '2026-03-02T00:00:00.000000007Z',
                 '2026-03-02T00:00:00.000000000Z', '2026-06-01T00:00:00.000000000Z', '{}', 1, 1,
                 NULL);
             INSERT INTO runs VALUES ('r0', 'w', 'p', 's', 'MANUAL', 'RUNNING', NULL,
                 '2026-03-03T00:00:00.500000000Z', '2026-03-03T00:00:00.500000000Z',
                 '2026-06-01T00:00:00.000000000Z', '{}', 1, 0, NULL);
             INSERT INTO deliveries VALUES ('r1', 'd', 'w', '{}');",
        )
        .expect("v5 rows");
        assert_eq!(migrate(&mut conn, MIGRATIONS).expect("v6"), vec![6]);

        let enforced: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .expect("pragma");
        assert!(enforced, "foreign keys are enforced again after migrating");
        let rows: Vec<(i64, String, Option<i64>, i64, i64)> = conn
            .prepare(
                "SELECT run_seq, run_id, scheduled_for, created_at, expires_at FROM runs
                 ORDER BY run_seq",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .expect("runs");
        let nanos = |s: &str| {
            super::super::codec::nanos(
                &chrono::DateTime::parse_from_rfc3339(s)
                    .expect("instant")
                    .to_utc(),
            )
        };
        assert_eq!(
            rows,
            [
                (
                    1,
                    "r1".to_owned(),
                    Some(nanos("2026-03-02T00:00:00Z")),
                    nanos("2026-03-02T00:00:00.000000007Z"),
                    nanos("2026-06-01T00:00:00Z"),
                ),
                (
                    2,
                    "r0".to_owned(),
                    None,
                    nanos("2026-03-03T00:00:00.5Z"),
                    nanos("2026-06-01T00:00:00Z"),
                ),
            ],
            "numbered in creation order, times to the nanosecond"
        );
        let log = run_ids(
            &conn,
            "SELECT run_id FROM runs INDEXED BY runs_by_schedule
                 WHERE schedule_id = 's' ORDER BY log_at DESC, run_seq DESC",
        );
        assert_eq!(log, ["r0", "r1"], "the schedule's runs, newest first");
        let (active, pending): (String, String) = conn
            .query_row(
                "SELECT (SELECT run_id FROM runs INDEXED BY runs_active
                         WHERE status IN ('PENDING', 'RUNNING')),
                        (SELECT run_id FROM runs INDEXED BY runs_event_pending
                         WHERE event_pending = 1)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("partial indexes");
        assert_eq!((active.as_str(), pending.as_str()), ("r0", "r1"));

        let deliveries: i64 = conn
            .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
            .expect("count");
        assert_eq!(deliveries, 1, "rebuilding runs cascaded into no delivery");
        conn.execute("DELETE FROM runs WHERE run_id = 'r1'", [])
            .expect("purge");
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
            .expect("count");
        assert_eq!(left, 0, "deliveries still go with their run");
    }
}
