//! The embedded deployment's state store: every store port (`WorkspaceStore`,
//! `ProjectStore`, `ScheduleStore`, `RunStore`, `ResultsStore`, `ConnectionStore`,
//! `SqlCacheStore`, `RateLimitStore`, and for notifications `RunEventOutbox`,
//! `DeliveryStore`, `IntegrationStore`) over one SQLite file, so the local binary needs no
//! database server and keeps its state across restarts.
//!
//! Design, in short:
//! * **One writer, several readers.** SQLite allows one writer at a time anyway; funnelling
//!   every write through one connection behind a mutex, each in a `BEGIN IMMEDIATE`
//!   transaction, makes read-check-write sequences (limits, versions, next version number)
//!   race-free without retry loops. WAL mode lets a small pool of reader connections read
//!   committed snapshots concurrently with that writer.
//! * **Writes off the async runtime, reads on it.** rusqlite is synchronous. A write may
//!   wait for the writer mutex behind another transaction, so every write runs in
//!   `tokio::task::spawn_blocking` and never stalls a runtime worker. A read is one short
//!   statement on a committed WAL snapshot, which does not wait for the writer; it runs on
//!   the calling task, because handing it to the blocking pool and back (two thread
//!   switches and their wake-ups) cost more than the read itself and was most of the time
//!   an API request spent (BENCHMARKS.md §6). There is a reader connection per CPU, so
//!   runtime workers reading at once find one free.
//! * **Versioned migrations** (`migrations.rs`) are applied in one transaction at open.
//! * **Tenant isolation in the SQL.** Every statement a tenant can reach filters by
//!   `workspace_id`; composite foreign keys make a schedule or run of one workspace unable
//!   to point at another workspace's project.
//!
//! The shared contract suite (`tests/src/contract.rs`) pins the observable behaviour; the
//! DynamoDB adapter runs the same suite.

mod cache;
mod cache_memo;
mod codec;
mod connections;
mod deliveries;
mod integrations;
mod migrations;
mod projects;
mod rate_limits;
mod result_rows;
mod results;
mod run_body;
mod run_path;
mod runs;
mod schedules;
mod workspaces;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::ports::PortError;

/// Reader connections kept open at least. Reads run on the runtime's workers (one per CPU),
/// so there is one per CPU when there are more than this; more would only cost file
/// handles and page cache.
const MIN_READERS: usize = 4;

/// The writer's page cache, in KiB (SQLite's default is 2 MiB). The local timer writes the
/// runs of thousands of fires in one transaction, and run ids are hashes, so a batch
/// dirties pages all over the run indexes: they have to stay in memory until the commit
/// (rather than spill into the WAL mid-transaction) and the next batch finds them there.
/// Pages are allocated as they are used, up to this.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// How long the writer stays idle before the checkpointer copies the WAL into the database
/// file, and how long it may stay busy without one (see `Checkpointer`).
const CHECKPOINT_IDLE: Duration = Duration::from_millis(250);
const CHECKPOINT_BUSY: Duration = Duration::from_secs(5);

/// A WAL file larger than this is emptied once it is all copied into the database file: a
/// burst of writes between two checkpoints can grow it to hundreds of MB, which need not
/// stay on disk. The checkpointer does it (see `Checkpointer::checkpoint`), not the writer.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// How long the checkpointer waits for the writer and the readers to let it empty the WAL;
/// new writes wait for it meanwhile, so it gives up soon and tries after the next write.
const TRUNCATE_WAIT: Duration = Duration::from_millis(50);

/// How long a statement waits for a lock held by *another process* (e.g. the operator CLI
/// writing to the same file) before giving up with a retryable error. Inside this process
/// the writer mutex already serialises writes.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store. Cheap to clone: clones share the same connections.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("readers", &self.pool.readers.len())
            .finish_non_exhaustive()
    }
}

struct Pool {
    writer: Mutex<Connection>,
    readers: Box<[Mutex<Connection>]>,
    next_reader: AtomicUsize,
    checkpointer: Checkpointer,
    /// Decoded SQL-cache entries in front of `sql_cache` (see `cache_memo`).
    cache_memo: cache_memo::CacheMemo,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to
    /// date. The parent directory must exist. This blocks briefly; call it at start-up.
    pub fn open(path: &Path) -> Result<SqliteStore, PortError> {
        // The writer is opened (and migrated) first so the readers, which must not create
        // anything, find the file, the WAL and the schema in place.
        let mut writer = Connection::open(path).map_err(db_err)?;
        configure(&writer)?;
        writer
            .pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(db_err)?;
        // The checkpointer's thread copies the WAL into the file, not the writer's commits.
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(db_err)?;
        migrations::migrate(&mut writer, migrations::MIGRATIONS)?;

        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let readers = (0..cpus.max(MIN_READERS))
            .map(|_| {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(db_err)?;
                configure(&conn)?;
                // A reader must never write: a write here would bypass the writer mutex
                // and its race-free checks.
                conn.pragma_update(None, "query_only", true)
                    .map_err(db_err)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>, PortError>>()?;

        let checkpointer = Checkpointer::start(path)?;
        Ok(SqliteStore {
            pool: Arc::new(Pool {
                writer: Mutex::new(writer),
                readers: readers.into_boxed_slice(),
                next_reader: AtomicUsize::new(0),
                checkpointer,
                cache_memo: cache_memo::CacheMemo::new(cache_memo::DEFAULT_BUDGET),
            }),
        })
    }

    /// Runs `f` on a reader connection, on the calling task (see the module comment).
    async fn read<T, F>(&self, f: F) -> Result<T, PortError>
    where
        F: FnOnce(&Connection) -> Result<T, PortError>,
    {
        self.pool.with_reader(f)
    }

    /// Runs `f` inside a `BEGIN IMMEDIATE` transaction on the writer connection, on the
    /// blocking thread pool; commits when `f` succeeds and rolls back when it fails.
    async fn write<T, F>(&self, f: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, PortError> + Send + 'static,
    {
        let pool = Arc::clone(&self.pool);
        tokio::task::spawn_blocking(move || pool.with_writer(f))
            .await
            .map_err(|e| PortError::fatal(format!("sqlite write task failed: {e}")))?
    }
}

impl Pool {
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        // First free reader, so a burst of reads spreads over all connections ...
        for reader in self.readers.iter() {
            match reader.try_lock() {
                Ok(conn) => return f(&conn),
                Err(TryLockError::Poisoned(poisoned)) => return f(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        // ... and when all are busy, queue on one chosen round-robin so waiters spread too.
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        f(&lock(&self.readers[i]))
    }

    fn with_writer<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        let mut conn = lock(&self.writer);
        // IMMEDIATE takes the write lock up front, so what `f` reads cannot change before
        // it writes, also against other processes using the file.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        // On error the transaction is dropped, which rolls it back.
        let out = f(&tx)?;
        tx.commit().map_err(db_err)?;
        drop(conn);
        self.checkpointer.committed();
        Ok(out)
    }
}

/// Copies the WAL back into the database file on a thread of its own, with its own
/// connection. SQLite's automatic checkpoint runs inside the commit that crosses its
/// threshold, so the writer, and every write queued behind it, stopped for the copy and
/// its `fsync` (BENCHMARKS.md §5). A `PASSIVE` checkpoint here runs beside the writer
/// instead, once the writer has been idle for `CHECKPOINT_IDLE` (after a burst, not in the
/// middle of it, where it would take the CPU the burst needs), or every `CHECKPOINT_BUSY`
/// while it never is, so the WAL stays bounded under a steady load. The thread ends when
/// the store is dropped.
struct Checkpointer {
    commits: Option<SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Closing the store waits for the thread, whose connection is the last one open (the
/// pool's fields drop in order, this one last): SQLite then checkpoints what is left and
/// removes the WAL, so the next open, maybe in the next process, starts from a clean file
/// rather than replaying the WAL.
impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.commits.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, PortError> {
        let conn = Connection::open(path).map_err(db_err)?;
        configure(&conn)?;
        conn.busy_timeout(TRUNCATE_WAIT).map_err(db_err)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        // One pending signal is enough: the checkpoint copies every commit before it.
        let (commits, signals) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || Checkpointer::run(&conn, &wal, &signals))
            .map_err(|e| PortError::fatal(format!("sqlite: checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            commits: Some(commits),
            thread: Some(thread),
        })
    }

    fn committed(&self) {
        // Full means a checkpoint is already due.
        if let Some(commits) = &self.commits {
            let _ = commits.try_send(());
        }
    }

    fn run(conn: &Connection, wal: &Path, signals: &Receiver<()>) {
        while signals.recv().is_ok() {
            let since = std::time::Instant::now();
            loop {
                match signals.recv_timeout(CHECKPOINT_IDLE) {
                    Ok(()) if since.elapsed() < CHECKPOINT_BUSY => {}
                    Ok(()) | Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            // A failed checkpoint (another process holding the file) is retried after the
            // next commit; until then the WAL only grows.
            if let Err(e) = Checkpointer::checkpoint(conn, wal) {
                tracing::warn!(error = %e, "sqlite checkpoint failed");
            }
        }
    }

    /// Copies the WAL into the database file and, when that copied all of it and the WAL
    /// file is larger than `WAL_SIZE_LIMIT`, empties the file. SQLite's own limit
    /// (`journal_size_limit`) would truncate it in the first commit after the WAL starts
    /// over, which is the first write of the next burst: dropping hundreds of MB from the
    /// page cache took that commit 0.2–0.4 s (BENCHMARKS.md §5). Here it happens on this
    /// thread while the writer is idle; a `TRUNCATE` checkpoint holds off writes while it
    /// runs, but it has nothing left to copy, and it gives up after `TRUNCATE_WAIT` when
    /// the writer or a reader is busy (the next checkpoint tries again).
    fn checkpoint(conn: &Connection, wal: &Path) -> rusqlite::Result<()> {
        let (busy, frames, copied): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        let oversized = std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_SIZE_LIMIT);
        if busy == 0 && copied == frames && oversized {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    }
}

/// Runs a query and decodes every row with `decode`, which may fail on corrupt data (a
/// `query_map` closure could only return driver errors).
fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, PortError>,
) -> Result<Vec<T>, PortError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = stmt.query(params).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// Executes one cached statement and returns the number of rows it changed.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize, PortError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute(params))
        .map_err(db_err)
}

/// Like `query_all` for a query that yields at most one row.
fn query_opt<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, PortError>,
) -> Result<Option<T>, PortError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = stmt.query(params).map_err(db_err)?;
    rows.next().map_err(db_err)?.map(decode).transpose()
}

/// A poisoned mutex only means a thread panicked while holding the connection; any
/// transaction it had open was rolled back when its guard dropped, so the connection is
/// still sound and the store keeps serving instead of failing forever.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Per-connection settings (SQLite keeps none of these in the file except WAL).
fn configure(conn: &Connection) -> Result<(), PortError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
    // journal_mode answers with the mode in force; anything but WAL (e.g. a file system
    // without shared memory) would silently serialise readers behind the writer.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(PortError::fatal(format!(
            "sqlite: could not enable WAL journal mode (got {mode})"
        )));
    }
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(db_err)?;
    // Plans are chosen when a statement is prepared, not again for the values bound to it.
    // Otherwise SQLite recompiles a cached statement on every run that binds its `LIMIT`
    // or a value it compares with a partial index's condition (every listing), which cost
    // more than running it. Every partial index's condition is a literal in the queries
    // that use it, so no plan depends on a bound value.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(db_err)?;
    // NORMAL is durable across application crashes in WAL mode; only an OS crash or power
    // loss may lose the last transactions, which is the usual trade for a local server.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db_err)?;
    Ok(())
}

/// Translates driver errors into the port's vocabulary. Constraint violations carry
/// meaning: a taken primary key is `AlreadyExists`, a missing parent row (foreign key) is
/// `NotFound`. Lock contention with another process is worth retrying; the rest is not.
fn db_err(e: rusqlite::Error) -> PortError {
    if let rusqlite::Error::SqliteFailure(failure, _) = &e {
        match failure.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return PortError::unavailable(format!("sqlite: {e}"));
            }
            ErrorCode::ConstraintViolation => match failure.extended_code {
                rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => return PortError::AlreadyExists,
                rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return PortError::NotFound,
                _ => {}
            },
            _ => {}
        }
    }
    PortError::fatal(format!("sqlite: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_twice_reuses_the_schema_and_enables_wal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        let first = SqliteStore::open(&path).expect("first open");
        drop(first);
        let store = SqliteStore::open(&path).expect("second open");
        let conn = lock(&store.pool.writer);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal mode");
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .expect("foreign keys");
        assert_eq!(fk, 1);
    }

    /// One committed write through the store's writer.
    fn write_a_workspace(store: &SqliteStore) {
        store
            .pool
            .with_writer(|tx| {
                tx.execute(
                    "INSERT INTO workspaces (workspace_id, plan, created_at) VALUES ('w', 'TEAM', 'x')",
                    [],
                )
                .map_err(db_err)
            })
            .expect("write");
    }

    #[test]
    fn the_wal_is_copied_into_the_file_once_the_writer_is_idle() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        let store = SqliteStore::open(&path).expect("open");
        let file_len = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let before = file_len();
        write_a_workspace(&store);
        // Nothing but the checkpointer's thread writes the database file itself in WAL mode.
        let waited = std::time::Instant::now();
        while file_len() <= before && waited.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            file_len() > before,
            "the database file stayed at {before} bytes: no checkpoint"
        );
    }

    #[test]
    fn a_wal_grown_past_its_limit_is_emptied_once_the_writer_is_idle() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        let store = SqliteStore::open(&path).expect("open");
        store
            .pool
            .with_writer(|tx| {
                tx.execute_batch(&format!(
                    "CREATE TABLE filler (b BLOB); INSERT INTO filler VALUES (zeroblob({}));",
                    WAL_SIZE_LIMIT + 1024 * 1024
                ))
                .map_err(db_err)
            })
            .expect("write");
        let wal = dir.path().join("state.db-wal");
        let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(wal_len() > WAL_SIZE_LIMIT, "the write went to the WAL");
        let waited = std::time::Instant::now();
        while wal_len() > WAL_SIZE_LIMIT && waited.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(wal_len(), 0, "the WAL was emptied, not left at its peak");
        let copied: i64 = lock(&store.pool.readers[0])
            .query_row("SELECT length(b) FROM filler", [], |row| row.get(0))
            .expect("read");
        assert_eq!(copied as u64, WAL_SIZE_LIMIT + 1024 * 1024);
    }

    #[test]
    fn closing_the_store_leaves_no_wal_to_replay() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        let store = SqliteStore::open(&path).expect("open");
        write_a_workspace(&store);
        let wal = dir.path().join("state.db-wal");
        assert!(wal.exists(), "the write went to the WAL");
        drop(store);
        assert!(
            !wal.exists(),
            "the WAL was checkpointed and removed at close"
        );
    }

    #[test]
    fn readers_refuse_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("state.db")).expect("open");
        let result = store.pool.with_reader(|conn| {
            conn.execute(
                "INSERT INTO workspaces (workspace_id, plan, created_at) VALUES ('w', 'TEAM', 'x')",
                [],
            )
            .map_err(db_err)
        });
        assert!(result.is_err(), "a reader connection wrote: {result:?}");
    }

    #[test]
    fn constraint_errors_map_to_port_errors() {
        let conn = Connection::open_in_memory().expect("in-memory db");
        conn.pragma_update(None, "foreign_keys", true)
            .expect("fk on");
        conn.execute_batch(
            "CREATE TABLE parent (id TEXT PRIMARY KEY);
             CREATE TABLE child (id TEXT PRIMARY KEY, parent TEXT REFERENCES parent(id));
             INSERT INTO parent VALUES ('p');",
        )
        .expect("schema");
        let dup = conn
            .execute("INSERT INTO parent VALUES ('p')", [])
            .map_err(db_err);
        assert!(matches!(dup, Err(PortError::AlreadyExists)), "{dup:?}");
        let orphan = conn
            .execute("INSERT INTO child VALUES ('c', 'nope')", [])
            .map_err(db_err);
        assert!(matches!(orphan, Err(PortError::NotFound)), "{orphan:?}");
    }
}
