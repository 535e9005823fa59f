//! The SQLite connector: one warehouse file opened read-write, plus the run's private
//! scratch database attached as schema `scratch`.
//!
//! * rusqlite is blocking, so every call runs inside `spawn_blocking`.
//! * Binds use `?N` placeholders; their count must match the statement's.
//! * Results: INTEGER and REAL become JSON numbers (non-finite reals become the strings
//!   `"NaN"`, `"Infinity"`, `"-Infinity"`, which JSON cannot hold as numbers), TEXT a string,
//!   BLOB a standard base64 string, NULL `null`. Only the first `max_rows` rows are kept;
//!   the rest are stepped through and counted, never stored.
//! * Cancellation calls SQLite's interrupt (repeatedly, until the statement returns, so an
//!   interrupt that lands between two statements or before the first step is not lost).
//! * `<workdir>/scratch.db` is attached as `scratch`; then the attach limit is set to zero,
//!   so a template can neither `ATTACH` another file (the service's state database, say)
//!   nor `VACUUM INTO` one (which attaches internally). Defensive mode keeps
//!   `PRAGMA writable_schema` tricks from corrupting the warehouse.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::types::{Value as SqliteValue, ValueRef};
use rusqlite::{Connection, ErrorCode, InterruptHandle, OpenFlags};
use tokio_util::sync::CancellationToken;

use crate::ports::sql::{BoundSql, Dialect, QueryError, QueryOutput, SqlConnector, SqlValue};

/// How long a statement waits for another writer's lock on the warehouse.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a cancelled query is interrupted again until it returns.
const INTERRUPT_EVERY: Duration = Duration::from_millis(50);

/// A SQLite warehouse for one run.
pub struct SqliteConnector {
    conn: Arc<Mutex<Connection>>,
    interrupt: Arc<InterruptHandle>,
}

impl SqliteConnector {
    /// Opens the existing database file `database` read-write (never creating it) and
    /// attaches `<workdir>/scratch.db` as `scratch` (creating `workdir` if need be). Blocking: call from a blocking context.
    pub fn open_blocking(database: &Path, workdir: &Path) -> Result<Self, QueryError> {
        // No SQLITE_OPEN_CREATE: a mistyped path fails instead of creating an empty
        // warehouse; no SQLITE_OPEN_URI: the name is a plain path, never `file:…?…`.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(database, flags).map_err(|e| {
            QueryError::Unavailable(format!("cannot open the SQLite database: {e}"))
        })?;
        let setup = |e: rusqlite::Error| {
            QueryError::Unavailable(format!("cannot prepare the SQLite connection: {e}"))
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(setup)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
            .map_err(setup)?;
        let scratch = workdir.join("scratch.db");
        let scratch = scratch.to_str().ok_or_else(|| {
            QueryError::Unavailable("the run's working directory is not a UTF-8 path".into())
        })?;
        // The executor leaves the directory to the connectors that need one, so that a
        // run answered from the SQL cache creates none.
        std::fs::create_dir_all(workdir).map_err(|e| {
            QueryError::Unavailable(format!("cannot create the run's working directory: {e}"))
        })?;
        // ATTACH inherits the main database's open flags, which lack CREATE on purpose;
        // an empty file is a valid empty database, so create that first.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(scratch)
            .map_err(|e| {
                QueryError::Unavailable(format!("cannot create the run's scratch database: {e}"))
            })?;
        conn.execute("ATTACH DATABASE ?1 AS scratch", [scratch])
            .map_err(setup)?;
        // From here on no further database can be attached, by ATTACH or VACUUM INTO.
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
            .map_err(setup)?;
        let interrupt = Arc::new(conn.get_interrupt_handle());
        Ok(SqliteConnector {
            conn: Arc::new(Mutex::new(conn)),
            interrupt,
        })
    }

    /// [`open_blocking`](Self::open_blocking) on the blocking pool.
    pub async fn open(database: &Path, workdir: &Path) -> Result<Self, QueryError> {
        let (database, workdir) = (database.to_owned(), workdir.to_owned());
        tokio::task::spawn_blocking(move || Self::open_blocking(&database, &workdir))
            .await
            .map_err(|_| QueryError::Unavailable("opening the SQLite database failed".into()))?
    }
}

#[async_trait]
impl SqlConnector for SqliteConnector {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn query(
        &self,
        sql: &BoundSql,
        max_rows: usize,
        cancel: &CancellationToken,
    ) -> Result<QueryOutput, QueryError> {
        if cancel.is_cancelled() {
            return Err(QueryError::Cancelled);
        }
        let conn = Arc::clone(&self.conn);
        let statement = sql.clone();
        let token = cancel.clone();
        // Stops the statement from inside SQLite (its progress handler) when the run is
        // cancelled or when this future is dropped, e.g. by a shutting-down runtime: a
        // blocking query must never outlive the run that started it.
        let stop = StopOnDrop {
            flag: Arc::new(AtomicBool::new(false)),
            interrupt: Arc::clone(&self.interrupt),
        };
        let flag = Arc::clone(&stop.flag);
        let mut task = tokio::task::spawn_blocking(move || {
            // A poisoned lock only means an earlier query panicked; the connection itself
            // is still consistent (SQLite rolls back the failed statement).
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            conn.progress_handler(PROGRESS_OPS, Some(move || flag.load(Ordering::Relaxed)));
            let result = run_query(&conn, &statement, max_rows, &token);
            conn.progress_handler(PROGRESS_OPS, None::<fn() -> bool>);
            result
        });
        tokio::select! {
            joined = &mut task => return flatten(joined),
            () = cancel.cancelled() => {}
        }
        stop.flag.store(true, Ordering::Relaxed);
        loop {
            self.interrupt.interrupt();
            if tokio::time::timeout(INTERRUPT_EVERY, &mut task)
                .await
                .is_ok()
            {
                return Err(QueryError::Cancelled);
            }
        }
    }
}

/// How many virtual-machine instructions SQLite runs between looks at the stop flag.
const PROGRESS_OPS: std::ffi::c_int = 1_000;

struct StopOnDrop {
    flag: Arc<AtomicBool>,
    interrupt: Arc<InterruptHandle>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Relaxed);
        self.interrupt.interrupt();
    }
}

fn flatten(
    joined: Result<Result<QueryOutput, QueryError>, tokio::task::JoinError>,
) -> Result<QueryOutput, QueryError> {
    joined.map_err(|_| QueryError::Failed("the SQLite query task failed".into()))?
}

fn run_query(
    conn: &Connection,
    sql: &BoundSql,
    max_rows: usize,
    cancel: &CancellationToken,
) -> Result<QueryOutput, QueryError> {
    let fail = |e: rusqlite::Error| classify(e, cancel);
    let mut stmt = conn.prepare(&sql.sql).map_err(fail)?;
    let expected = stmt.parameter_count();
    if expected != sql.binds.len() {
        return Err(QueryError::Failed(format!(
            "the statement has {expected} parameter(s) but {} value(s) were bound",
            sql.binds.len()
        )));
    }
    for (i, bind) in sql.binds.iter().enumerate() {
        let value = match bind {
            SqlValue::Null => SqliteValue::Null,
            SqlValue::Bool(b) => SqliteValue::Integer(i64::from(*b)),
            SqlValue::Int(n) => SqliteValue::Integer(*n),
            SqlValue::Float(f) => SqliteValue::Real(*f),
            SqlValue::Text(t) => SqliteValue::Text(t.clone()),
        };
        stmt.raw_bind_parameter(i + 1, value).map_err(fail)?;
    }
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut row_count: u64 = 0;
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next().map_err(fail)? {
        if cancel.is_cancelled() {
            return Err(QueryError::Cancelled);
        }
        row_count += 1;
        if rows.len() < max_rows {
            let mut values = Vec::with_capacity(width);
            for c in 0..width {
                values.push(to_json(row.get_ref(c).map_err(fail)?));
            }
            rows.push(values);
        }
    }
    Ok(QueryOutput {
        columns,
        rows,
        row_count,
    })
}

/// An interrupted statement is a cancellation; anything else is SQLite's own message.
fn classify(e: rusqlite::Error, cancel: &CancellationToken) -> QueryError {
    if cancel.is_cancelled() || e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) {
        return QueryError::Cancelled;
    }
    QueryError::Failed(e.to_string())
}

fn to_json(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => float_json(f),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => base64::engine::general_purpose::STANDARD.encode(b).into(),
    }
}

/// JSON has no NaN or infinities; those become their conventional names as strings.
pub(crate) fn float_json(f: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(f) {
        Some(n) => serde_json::Value::Number(n),
        None if f.is_nan() => "NaN".into(),
        None if f > 0.0 => "Infinity".into(),
        None => "-Infinity".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Instant;

    struct Fixture {
        _dir: tempfile::TempDir,
        db: std::path::PathBuf,
        workdir: std::path::PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("warehouse.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, note TEXT);
             INSERT INTO t VALUES (1, 'alice', 1.5, x'00ff', NULL), (2, 'bob', 2.0, NULL, 'x');",
        )
        .unwrap();
        // Not created: opening a connector makes it.
        let workdir = dir.path().join("runs").join("run-1");
        Fixture {
            _dir: dir,
            db,
            workdir,
        }
    }

    fn bound(sql: &str, binds: Vec<SqlValue>) -> BoundSql {
        BoundSql {
            sql: sql.into(),
            binds,
        }
    }

    async fn run(
        conn: &SqliteConnector,
        sql: &str,
        binds: Vec<SqlValue>,
    ) -> Result<QueryOutput, QueryError> {
        conn.query(&bound(sql, binds), 1000, &CancellationToken::new())
            .await
    }

    #[tokio::test]
    async fn opening_makes_the_run_working_directory_with_its_scratch_database() {
        let f = fixture();
        assert!(!f.workdir.exists());
        let c = SqliteConnector::open(&f.db, &f.workdir).await.unwrap();
        assert!(f.workdir.join("scratch.db").is_file());
        run(&c, "CREATE TABLE scratch.tmp AS SELECT 1 AS one", vec![])
            .await
            .expect("the scratch database is writable");
    }

    #[tokio::test]
    async fn types_convert_to_json() {
        let f = fixture();
        let c = SqliteConnector::open(&f.db, &f.workdir).await.unwrap();
        let out = run(
            &c,
            "SELECT id, name, score, data, note, 1e999, -1e999 FROM t ORDER BY id",
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(
            out.columns,
            vec!["id", "name", "score", "data", "note", "1e999", "-1e999"]
        );
        assert_eq!(
            out.rows,
            vec![
                vec![
                    json!(1),
                    json!("alice"),
                    json!(1.5),
                    json!("AP8="),
                    json!(null),
                    json!("Infinity"),
                    json!("-Infinity")
                ],
                vec![
                    json!(2),
                    json!("bob"),
                    json!(2.0),
                    json!(null),
                    json!("x"),
                    json!("Infinity"),
                    json!("-Infinity")
                ],
            ]
        );
        assert_eq!(out.row_count, 2);
    }

    #[tokio::test]
    async fn binds_are_typed_parameters() {
        let f = fixture();
        let c = SqliteConnector::open(&f.db, &f.workdir).await.unwrap();
        let out = run(
            &c,
            "SELECT ?1, ?2, ?3, ?4, ?5, typeof(?5)",
            vec![
                SqlValue::Int(7),
                SqlValue::Float(0.25),
                SqlValue::Bool(true),
                SqlValue::Null,
                SqlValue::Text("hi".into()),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            out.rows,
            vec![vec![
                json!(7),
                json!(0.25),
                json!(1),
                json!(null),
                json!("hi"),
                json!("text")
            ]]
        );
        let e = run(&c, "SELECT ?1, ?2", vec![SqlValue::Int(1)])
            .await
            .unwrap_err();
        assert!(
            matches!(e, QueryError::Failed(ref m) if m.contains("parameter")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn injection_attempt_is_harmless() {
        let f = fixture();
        let c = SqliteConnector::open(&f.db, &f.workdir).await.unwrap();
        let hostile = "'; DROP TABLE t; --";
        let out = run(
            &c,
            "SELECT count(*) FROM t WHERE name = ?1",
            vec![SqlValue::Text(hostile.into())],
        )
        .await
        .unwrap();
        assert_eq!(out.rows, vec![vec![json!(0)]]);
        let out = run(&c, "SELECT count(*) FROM t", vec![]).await.unwrap();
        assert_eq!(out.rows, vec![vec![json!(2)]]);
        // Several statements in one cell are refused rather than half-run.
        let e = run(&c, "SELECT 1; DROP TABLE t", vec![]).await.unwrap_err();
        assert!(matches!(e, QueryError::Failed(_)), "{e:?}");
        let out = run(&c, "SELECT count(*) FROM t", vec![]).await.unwrap();
        assert_eq!(out.rows, vec![vec![json!(2)]]);
    }

    #[tokio::test]
    async fn rows_are_capped_but_fully_counted() {
        let f = fixture();
        let c = SqliteConnector::open(&f.db, &f.workdir).await.unwrap();
        let out = c
            .query(
                &bound(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2500) SELECT x FROM n",
                    vec![],
                ),
                1000,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(out.rows.len(), 1000);
        assert_eq!(out.rows[999], vec![json!(1000)]);
        assert_eq!(out.row_count, 2500);
    }

    #[tokio::test]
    async fn statements_without_rows_work() {
        let f = fixture();
        let c = SqliteConnector::open(&f.db, &f.workdir).await.unwrap();
        let out = run(&c, "CREATE TABLE scratch.tmp (x)", vec![])
            .await
            .unwrap();
        assert_eq!(out.row_count, 0);
        let out = run(
            &c,
            "INSERT INTO scratch.tmp VALUES (?1)",
            vec![SqlValue::Int(1)],
        )
        .await
        .unwrap();
        assert!(out.columns.is_empty());
        let e = run(&c, "SELEC nonsense", vec![]).await.unwrap_err();
        assert!(
            matches!(e, QueryError::Failed(ref m) if m.contains("syntax")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn cancellation_interrupts_a_long_query() {
        let f = fixture();
        let c = SqliteConnector::open(&f.db, &f.workdir).await.unwrap();
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        // Would run for many minutes: a single step computing a huge aggregate.
        let e = c
            .query(
                &bound(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n",
                    vec![],
                ),
                1000,
                &cancel,
            )
            .await
            .unwrap_err();
        assert_eq!(e, QueryError::Cancelled);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // The connection is still usable afterwards.
        let out = run(&c, "SELECT 1", vec![]).await.unwrap();
        assert_eq!(out.rows, vec![vec![json!(1)]]);
        // An already-cancelled token never starts the query.
        let e = c
            .query(&bound("SELECT 1", vec![]), 10, &cancel)
            .await
            .unwrap_err();
        assert_eq!(e, QueryError::Cancelled);
    }

    #[tokio::test]
    async fn scratch_is_private_to_each_workdir() {
        let f = fixture();
        let first = SqliteConnector::open(&f.db, &f.workdir).await.unwrap();
        run(&first, "CREATE TABLE scratch.notes (x TEXT)", vec![])
            .await
            .unwrap();
        run(
            &first,
            "INSERT INTO scratch.notes VALUES ('secret')",
            vec![],
        )
        .await
        .unwrap();
        let out = run(&first, "SELECT x FROM scratch.notes", vec![])
            .await
            .unwrap();
        assert_eq!(out.rows, vec![vec![json!("secret")]]);
        assert!(f.workdir.join("scratch.db").exists());

        let other = f.workdir.parent().unwrap().join("run-2");
        std::fs::create_dir(&other).unwrap();
        let second = SqliteConnector::open(&f.db, &other).await.unwrap();
        let e = run(&second, "SELECT x FROM scratch.notes", vec![])
            .await
            .unwrap_err();
        assert!(
            matches!(e, QueryError::Failed(ref m) if m.contains("no such table")),
            "{e:?}"
        );
        // The warehouse itself is shared (and writable).
        let out = run(&second, "SELECT count(*) FROM main.t", vec![])
            .await
            .unwrap();
        assert_eq!(out.rows, vec![vec![json!(2)]]);
    }

    #[tokio::test]
    async fn attaching_other_files_is_refused() {
        let f = fixture();
        let c = SqliteConnector::open(&f.db, &f.workdir).await.unwrap();
        let target = f.workdir.parent().unwrap().join("state.db");
        let path = target.to_str().unwrap().to_owned();
        let e = run(
            &c,
            "ATTACH DATABASE ?1 AS other",
            vec![SqlValue::Text(path.clone())],
        )
        .await
        .unwrap_err();
        assert!(matches!(e, QueryError::Failed(_)), "{e:?}");
        // VACUUM INTO attaches its target internally, so it is refused too.
        let e = run(&c, "VACUUM INTO ?1", vec![SqlValue::Text(path)])
            .await
            .unwrap_err();
        assert!(matches!(e, QueryError::Failed(_)), "{e:?}");
        assert!(!target.exists());
        // Detaching scratch does not free a slot for another file either.
        run(&c, "DETACH DATABASE scratch", vec![]).await.unwrap();
        let e = run(
            &c,
            "ATTACH DATABASE ?1 AS other",
            vec![SqlValue::Text(f.db.to_str().unwrap().to_owned())],
        )
        .await
        .unwrap_err();
        assert!(matches!(e, QueryError::Failed(_)), "{e:?}");
    }

    #[tokio::test]
    async fn missing_database_is_unavailable_not_created() {
        let f = fixture();
        let missing = f.workdir.join("nope.db");
        let e = SqliteConnector::open(&missing, &f.workdir)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, QueryError::Unavailable(_)), "{e:?}");
        assert!(!missing.exists());
    }
}
