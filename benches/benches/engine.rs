//! Requirement 7: the execution engine's cost around the SQL itself.
//!
//! `cargo bench -p scheduled-runs-benches --bench engine`
//!
//! The real embedded deployment (SQLite store, `ExecutorService`, the SQLite connector) in
//! a temporary directory. The demo warehouse gets a table `events` of 100,000 rows. A
//! published project has a chain of `CELLS` SQL cells, each a Jinja template that binds the
//! run's input and the upstream cell's `rowCount`:
//!
//!   cheap:   SELECT id, k, v, label FROM events WHERE id <= {{ rows }} [AND {{ cells.prev.rowCount }} >= 0]
//!   scan:    SELECT k, COUNT(*), SUM(v), MIN(label) FROM events WHERE k < {{ rows }} [...] GROUP BY k ORDER BY k
//!
//! For rows ∈ {1, 100, 1000}, measured side by side in one process:
//! * `sql`: the rendered statement alone on a plain rusqlite connection to the same file
//!   (prepare, bind, step every row, read every value): the SQL itself;
//! * `engine`: `ExecutorService::execute` of a whole run (conditional start and finish
//!   writes, working directory, connector open, DAG plan, templating, binding, the
//!   connector's result capture, the SQL-cache write), divided by the number of cells;
//! * `cached`: the same run with `useCachedSqlResults: true` after the cache is warm.
//!
//! Overhead per cell = engine − sql. Medians over `ENGINE_BENCH_ITERATIONS` runs (200);
//! `ENGINE_BENCH_ROWS` (e.g. `1000`) and `ENGINE_BENCH_SHAPE` (`cheap` or `scan`) narrow the
//! run down, for profiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::Connection;
use scheduled_runs::demo::{DEMO_WAREHOUSE, demo_admin};
use scheduled_runs::domain::model::{
    AppDef, Cell, CellType, InputDef, InputType, Run, RunStatus, RunTrigger, StateEvent,
    VersionBody,
};
use scheduled_runs::embedded::{Embedded, EmbeddedConfig};
use scheduled_runs::ports::{Clock, RunMessage, RunStore, SystemClock};
use scheduled_runs::services::executor::ExecuteOutcome;
use scheduled_runs_benches::{machine, percentile};

const CELLS: usize = 5;
const TABLE_ROWS: i64 = 100_000;

struct Shape {
    name: &'static str,
    /// The SQL of a cell; `{prev}` is replaced by the upstream condition.
    sql: &'static str,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "cheap",
        sql: "SELECT id, k, v, label FROM events WHERE id <= {{ rows }}{prev} ORDER BY id",
    },
    Shape {
        name: "scan",
        sql: "SELECT k, COUNT(*) AS n, SUM(v) AS total, MIN(label) AS first FROM events \
              WHERE k < {{ rows }}{prev} GROUP BY k ORDER BY k",
    },
];

fn version(shape: &Shape) -> VersionBody {
    let cells = (0..CELLS)
        .map(|i| {
            let prev = if i == 0 {
                String::new()
            } else {
                format!(" AND {{{{ cells.c{}.rowCount }}}} >= 0", i - 1)
            };
            Cell {
                id: format!("c{i}"),
                cell_type: CellType::Sql,
                connection: "warehouse".into(),
                sql: shape.sql.replace("{prev}", &prev),
            }
        })
        .collect();
    VersionBody {
        inputs: vec![InputDef {
            name: "rows".into(),
            input_type: InputType::Number,
            default: serde_json::json!(10),
            options: Vec::new(),
        }],
        cells,
        app: AppDef {
            cells: vec![format!("c{}", CELLS - 1)],
        },
    }
}

fn write_events(path: &std::path::Path) {
    let mut conn = Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(
        "DROP TABLE IF EXISTS events;
         CREATE TABLE events (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v REAL NOT NULL,
                              label TEXT NOT NULL);",
    )
    .unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO events (id, k, v, label) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for id in 1..=TABLE_ROWS {
            insert
                .execute(rusqlite::params![
                    id,
                    id % 1000,
                    (id * 37 % 1000) as f64 / 7.0,
                    format!("event {id}")
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// The SQL of a cell, rendered, run on a plain connection: every row stepped, every value
/// read. `prev` binds the upstream row count as the engine would.
fn sql_alone(conn: &Connection, shape: &Shape, first: bool, rows: i64) -> Duration {
    let sql = if first {
        shape.sql.replace("{{ rows }}", "?1").replace("{prev}", "")
    } else {
        shape
            .sql
            .replace("{{ rows }}", "?1")
            .replace("{prev}", " AND ?2 >= 0")
    };
    let started = Instant::now();
    let mut stmt = conn.prepare(&sql).unwrap();
    stmt.raw_bind_parameter(1, rows).unwrap();
    if !first {
        stmt.raw_bind_parameter(2, rows).unwrap();
    }
    let width = stmt.column_count();
    let mut cursor = stmt.raw_query();
    let mut n = 0;
    while let Some(row) = cursor.next().unwrap() {
        for c in 0..width {
            std::hint::black_box(row.get_ref(c).unwrap());
        }
        n += 1;
    }
    std::hint::black_box(n);
    started.elapsed()
}

fn new_run(project_id: &str, version: u32, rows: i64, cached: bool) -> Run {
    let admin = demo_admin();
    let now = Utc::now();
    let mut input_params = serde_json::Map::new();
    input_params.insert("rows".into(), serde_json::json!(rows));
    Run {
        run_id: uuid_like(),
        project_id: project_id.into(),
        workspace_id: admin.workspace_id,
        schedule_id: None,
        run_trigger: RunTrigger::Api,
        status: RunStatus::Pending,
        scheduled_for: None,
        project_version: Some(version),
        created_by: admin.user_id,
        created_at: now,
        start_time: None,
        end_time: None,
        skip_reason: None,
        update_published_results: false,
        use_cached_sql_results: cached,
        input_params,
        trace_id: "bench".into(),
        state_events: vec![StateEvent::new("STATUS", "PENDING", now)],
        expires_at: now + chrono::Duration::days(1),
        attempt: 0,
        lease_until: None,
        cells: Vec::new(),
        error: None,
        notification_settings: Default::default(),
        event_pending: false,
        notifications: Vec::new(),
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("bench-run-{:08}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One whole run through the executor; its duration.
async fn execute(embedded: &Embedded, run: Run) -> Duration {
    embedded.store.create_run_if_absent(&run).await.unwrap();
    let message = RunMessage::for_run(&run);
    let started = Instant::now();
    let outcome = embedded.executor.execute(&message).await.unwrap();
    let elapsed = started.elapsed();
    match outcome {
        ExecuteOutcome::Finished(run) => {
            assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
            assert_eq!(run.cells.len(), CELLS);
        }
        ExecuteOutcome::Ignored => panic!("the run was not executed"),
    }
    elapsed
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 50.0)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() {
    println!("machine: {}", machine());
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::new(
        dir.path().to_path_buf(),
        "http://localhost:8080".into(),
        b"bench-secret".to_vec(),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let embedded = Embedded::open(&config, clock).unwrap();
    embedded.seed_demo().await.unwrap();
    let warehouse = config.warehouse_dir().join(DEMO_WAREHOUSE);
    write_events(&warehouse);
    let plain = Connection::open(&warehouse).unwrap();
    let admin = demo_admin();

    let iterations: usize = env("ENGINE_BENCH_ITERATIONS").map_or(200, |v| v.parse().unwrap());
    let only_rows: Option<i64> = env("ENGINE_BENCH_ROWS").map(|v| v.parse().unwrap());
    let only_shape = env("ENGINE_BENCH_SHAPE");
    println!(
        "{CELLS} cells per run, medians of {iterations} runs; per cell: sql = the statement alone, engine = whole run / {CELLS}, cached = whole run on cache hits / {CELLS}"
    );
    println!(
        "{:<6} {:>5} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "shape", "rows", "sql", "engine", "overhead", "cached", "exec/hit"
    );
    for shape in SHAPES {
        if only_shape.as_deref().is_some_and(|s| s != shape.name) {
            continue;
        }
        let project = embedded
            .state
            .projects
            .create(&admin, shape.name, None)
            .await
            .unwrap();
        let project_id = project.project.project_id;
        embedded
            .state
            .projects
            .put_draft(&admin, &project_id, &version(shape))
            .await
            .unwrap();
        let version = embedded
            .state
            .projects
            .publish(&admin, &project_id)
            .await
            .unwrap()
            .version;
        for rows in [1i64, 100, 1000] {
            if only_rows.is_some_and(|r| r != rows) {
                continue;
            }
            // Warm up: statement caches, page cache, the SQL cache entries.
            for _ in 0..10 {
                execute(&embedded, new_run(&project_id, version, rows, false)).await;
            }
            let mut sql = Vec::new();
            let mut engine = Vec::new();
            let mut cached = Vec::new();
            for _ in 0..iterations {
                let mut alone = Duration::ZERO;
                for i in 0..CELLS {
                    alone += sql_alone(&plain, shape, i == 0, rows);
                }
                sql.push(alone / CELLS as u32);
                engine.push(
                    execute(&embedded, new_run(&project_id, version, rows, false)).await
                        / CELLS as u32,
                );
                cached.push(
                    execute(&embedded, new_run(&project_id, version, rows, true)).await
                        / CELLS as u32,
                );
            }
            let (sql, engine, cached) = (median(sql), median(engine), median(cached));
            println!(
                "{:<6} {:>5} {:>12} {:>12} {:>12} {:>12} {:>9.1}×",
                shape.name,
                rows,
                us(sql),
                us(engine),
                us(engine.saturating_sub(sql)),
                us(cached),
                engine.as_secs_f64() / cached.as_secs_f64()
            );
        }
    }
}
