//! Requirement 7: the execution engine's cost around the SQL itself, and what a SQL-cache
//! hit saves.
//!
//! ```text
//! cargo bench -p scheduled-runs-benches --bench engine
//! # with the PostgreSQL rows as well:
//! infra/local/postgres.sh start && source .test-env/postgres.env
//! cargo bench -p scheduled-runs-benches --bench engine
//! ```
//!
//! The real embedded deployment (SQLite store, `ExecutorService`, the connectors) in a
//! temporary directory. Two warehouses hold the same table of 100,000 rows: the demo SQLite
//! file (`events`) and, when `SCHEDULED_RUNS_TEST_POSTGRES_URL` is set, PostgreSQL
//! (`scheduled_runs_bench.events`, the production warehouse type). Published projects have a
//! chain of SQL cells, each a Jinja template that binds the run's input and the upstream
//! cell's `rowCount`, in two shapes:
//!
//!   cheap:   SELECT id, k, v, label FROM events WHERE id <= {{ rows }} [AND {{ cells.prev.rowCount }} >= 0] ORDER BY id
//!   scan:    SELECT k, COUNT(*), SUM(v), MIN(label) FROM events WHERE k < {{ rows }} [...] GROUP BY k ORDER BY k
//!
//! For rows ∈ {1, 100, 1000}, measured side by side in one process, interleaved:
//! * `sql`: the rendered statement alone on a plain connection (rusqlite, or tokio-postgres
//!   already connected): prepare, bind, read every value of every row: the SQL itself.
//!   The SQLite statement runs on a thread of the blocking pool, as the connector's does;
//!   only the statement is timed, not the hop there;
//! * `exec N`: `ExecutorService::execute` of a whole run of a chain of `CELLS` cells
//!   (conditional start and finish writes, working directory, connector open, DAG plan,
//!   templating, binding, the connector's result capture into JSON, the SQL-cache write);
//! * `hit N`: the same run with `useCachedSqlResults: true` on a warm cache: every cell is
//!   rendered and bound, its entry found among the decoded entries the store keeps in
//!   memory; no connector is opened;
//! * `table N`: the same hits with that memory emptied first
//!   (`SqliteStore::forget_cached_results`), so every entry is read from the `sql_cache`
//!   table and decoded: what the first hit on an entry costs in a freshly started process;
//! * `exec 1`, `hit 1` and `table 1`: the same with a chain of one cell.
//!
//! Two readings. Whole runs: `exec N / CELLS` against `sql` (overhead = the difference,
//! the run's fixed cost charged to its cells) and `exec N / hit N`. Per cell: the marginal
//! cost of one more cell, `(exec N − exec 1) / (CELLS − 1)` and the same for hits, which
//! leaves out what every run pays once (the start and finish writes, the working directory,
//! connecting to the warehouse). Medians over `ENGINE_BENCH_ITERATIONS` runs (200);
//! `ENGINE_BENCH_ROWS` (e.g. `1000`), `ENGINE_BENCH_SHAPE` (`cheap` or `scan`) and
//! `ENGINE_BENCH_WAREHOUSE` (`sqlite` or `postgres`) narrow the run down, for profiling.

use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::Connection;
use scheduled_runs::demo::{DEMO_WAREHOUSE, demo_admin};
use scheduled_runs::domain::model::{
    AppDef, Cell, CellType, ConnectionConfig, InputDef, InputType, Run, RunStatus, RunTrigger,
    StateEvent, VersionBody,
};
use scheduled_runs::embedded::{Embedded, EmbeddedConfig};
use scheduled_runs::ports::{Clock, RunMessage, RunStore, SystemClock};
use scheduled_runs::services::executor::ExecuteOutcome;
use scheduled_runs_benches::{machine, percentile};
use tokio_postgres::types::{FromSql, Type};

const CELLS: usize = 10;
const TABLE_ROWS: i64 = 100_000;

struct Shape {
    name: &'static str,
    /// The SQL of a cell; `{table}` is the warehouse's table, `{prev}` the upstream
    /// condition.
    sql: &'static str,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "cheap",
        sql: "SELECT id, k, v, label FROM {table} WHERE id <= {{ rows }}{prev} ORDER BY id",
    },
    Shape {
        name: "scan",
        sql: "SELECT k, COUNT(*) AS n, SUM(v) AS total, MIN(label) AS first FROM {table} \
              WHERE k < {{ rows }}{prev} GROUP BY k ORDER BY k",
    },
];

/// A plain connection to a warehouse, for the SQL alone. The SQLite one is shared with
/// the blocking pool, where its statements run, as the connector's do.
enum Plain {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(tokio_postgres::Client),
}

/// One warehouse: its connection in the workspace, its table and a plain connection.
struct Warehouse {
    name: &'static str,
    connection: &'static str,
    table: &'static str,
    plain: Plain,
}

/// A PostgreSQL value as it arrives, undecoded (what a plain client reads at least).
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl Warehouse {
    /// The cell's SQL with the warehouse's table and the upstream condition (the first
    /// cell of a chain has none).
    fn template(&self, shape: &Shape, first: bool, prev: &str) -> String {
        let prev = if first {
            String::new()
        } else {
            format!(" AND {prev} >= 0")
        };
        shape
            .sql
            .replace("{table}", self.table)
            .replace("{prev}", &prev)
    }

    /// The rendered statement of a cell run on the plain connection: prepared, bound,
    /// every value of every row read. `rows` is bound for the input and, as the engine
    /// binds the upstream row count, for the upstream condition.
    async fn sql_alone(&self, shape: &Shape, first: bool, rows: i64) -> Duration {
        let binds: Vec<i64> = if first { vec![rows] } else { vec![rows, rows] };
        match &self.plain {
            Plain::Sqlite(conn) => {
                let sql = self
                    .template(shape, first, "?2")
                    .replace("{{ rows }}", "?1");
                let conn = Arc::clone(conn);
                // On a thread of the blocking pool, as the connector runs a statement: the
                // same statement took 0.5-1.7 ms (2-6%) longer there than on the bench's
                // main thread, which no engine work explains (BENCHMARKS.md §7). The hop
                // itself is not timed here, so it counts as the engine's overhead.
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().expect("the plain connection");
                    let started = Instant::now();
                    let mut stmt = conn.prepare(&sql).expect("prepare");
                    for (i, value) in binds.iter().enumerate() {
                        stmt.raw_bind_parameter(i + 1, value).expect("bind");
                    }
                    let width = stmt.column_count();
                    let mut cursor = stmt.raw_query();
                    while let Some(row) = cursor.next().expect("step") {
                        for c in 0..width {
                            std::hint::black_box(row.get_ref(c).expect("value"));
                        }
                    }
                    started.elapsed()
                })
                .await
                .expect("the plain statement")
            }
            Plain::Postgres(client) => {
                let sql = self
                    .template(shape, first, "$2")
                    .replace("{{ rows }}", "$1");
                let started = Instant::now();
                // Declared as the engine declares an integer bind.
                let types = vec![Type::INT8; binds.len()];
                let stmt = client.prepare_typed(&sql, &types).await.expect("prepare");
                let width = stmt.columns().len();
                let rows = client.query(&stmt, &binds_of(&binds)).await.expect("query");
                for row in &rows {
                    for c in 0..width {
                        std::hint::black_box(row.get::<_, Raw>(c).0);
                    }
                }
                started.elapsed()
            }
        }
    }
}

fn binds_of(values: &[i64]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// A published chain of `cells` cells of `shape` on `warehouse`.
fn version(warehouse: &Warehouse, shape: &Shape, cells: usize) -> VersionBody {
    let cells = (0..cells)
        .map(|i| Cell {
            id: format!("c{i}"),
            cell_type: CellType::Sql,
            connection: warehouse.connection.into(),
            sql: warehouse.template(
                shape,
                i == 0,
                &format!("{{{{ cells.c{}.rowCount }}}}", i.saturating_sub(1)),
            ),
        })
        .collect::<Vec<_>>();
    let last = cells.last().map(|c| c.id.clone()).unwrap_or_default();
    VersionBody {
        inputs: vec![InputDef {
            name: "rows".into(),
            input_type: InputType::Number,
            default: serde_json::json!(10),
            options: Vec::new(),
        }],
        cells,
        app: AppDef { cells: vec![last] },
    }
}

fn write_events(path: &std::path::Path) {
    let mut conn = Connection::open(path).expect("open the demo warehouse");
    let tx = conn.transaction().expect("transaction");
    tx.execute_batch(
        "DROP TABLE IF EXISTS events;
         CREATE TABLE events (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v REAL NOT NULL,
                              label TEXT NOT NULL);",
    )
    .expect("create events");
    {
        let mut insert = tx
            .prepare("INSERT INTO events (id, k, v, label) VALUES (?1, ?2, ?3, ?4)")
            .expect("prepare the insert");
        for id in 1..=TABLE_ROWS {
            insert
                .execute(rusqlite::params![
                    id,
                    id % 1000,
                    (id * 37 % 1000) as f64 / 7.0,
                    format!("event {id}")
                ])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

/// The same table in PostgreSQL, in a schema of its own; returns a connected client.
async fn postgres_events(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS scheduled_runs_bench;
             DROP TABLE IF EXISTS scheduled_runs_bench.events;
             CREATE TABLE scheduled_runs_bench.events AS
                 SELECT g::int8 AS id, (g % 1000)::int8 AS k, ((g * 37 % 1000) / 7.0)::float8 AS v,
                        'event ' || g AS label
                 FROM generate_series(1, {TABLE_ROWS}) AS g;
             ALTER TABLE scheduled_runs_bench.events ADD PRIMARY KEY (id);
             ANALYZE scheduled_runs_bench.events;"
        ))
        .await
        .expect("create scheduled_runs_bench.events");
    client
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

/// A published project of one chain.
struct Chain {
    project_id: String,
    version: u32,
    cells: usize,
}

async fn publish(embedded: &Embedded, name: &str, body: &VersionBody) -> Chain {
    let admin = demo_admin();
    let projects = &embedded.state.projects;
    let project_id = projects
        .create(&admin, name, None)
        .await
        .expect("create a project")
        .project
        .project_id;
    projects
        .put_draft(&admin, &project_id, body)
        .await
        .expect("put the draft");
    let version = projects
        .publish(&admin, &project_id)
        .await
        .expect("publish")
        .version;
    Chain {
        project_id,
        version,
        cells: body.cells.len(),
    }
}

/// One whole run through the executor; its duration. `hits` says whether every cell must
/// have come from the cache.
async fn execute(embedded: &Embedded, chain: &Chain, rows: i64, hits: bool) -> Duration {
    let run = new_run(&chain.project_id, chain.version, rows, hits);
    embedded
        .store
        .create_run_if_absent(&run)
        .await
        .expect("create the run");
    let message = RunMessage::for_run(&run);
    let started = Instant::now();
    let outcome = embedded.executor.execute(&message).await.expect("execute");
    let elapsed = started.elapsed();
    match outcome {
        ExecuteOutcome::Finished(run) => {
            assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
            assert_eq!(run.cells.len(), chain.cells);
            assert!(
                run.cells.iter().all(|c| c.cache_hit == hits),
                "every cell {}",
                if hits { "hits" } else { "executes" }
            );
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

/// `a − b`, negative when the noise says so.
fn minus(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() - b.as_secs_f64()
}

fn us_signed(seconds: f64) -> String {
    format!("{:.1} µs", seconds * 1e6)
}

/// The medians of one (warehouse, shape, rows).
struct Figures {
    label: String,
    sql: Duration,
    exec_n: Duration,
    hit_n: Duration,
    exec_1: Duration,
    hit_1: Duration,
    table_n: Duration,
    table_1: Duration,
}

impl Figures {
    fn marginal_exec(&self) -> f64 {
        minus(self.exec_n, self.exec_1) / (CELLS - 1) as f64
    }

    fn marginal_hit(&self) -> f64 {
        minus(self.hit_n, self.hit_1) / (CELLS - 1) as f64
    }

    fn marginal_table(&self) -> f64 {
        minus(self.table_n, self.table_1) / (CELLS - 1) as f64
    }
}

#[tokio::main]
async fn main() {
    println!("machine: {}", machine());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = EmbeddedConfig::new(
        dir.path().to_path_buf(),
        "http://localhost:8080".into(),
        b"bench-secret".to_vec(),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let embedded = Embedded::open(&config, clock).expect("open the embedded deployment");
    embedded.seed_demo().await.expect("seed the demo data");
    let path = config.warehouse_dir().join(DEMO_WAREHOUSE);
    write_events(&path);
    let mut warehouses = vec![Warehouse {
        name: "sqlite",
        connection: "warehouse",
        table: "events",
        plain: Plain::Sqlite(Arc::new(Mutex::new(
            Connection::open(&path).expect("open the demo warehouse"),
        ))),
    }];
    match env("SCHEDULED_RUNS_TEST_POSTGRES_URL") {
        Some(url) => {
            let client = postgres_events(&url).await;
            embedded
                .state
                .connections
                .put(
                    &demo_admin(),
                    "pg",
                    &ConnectionConfig::Postgres {
                        url: Some(url),
                        secret_arn: None,
                    },
                )
                .await
                .expect("the PostgreSQL connection");
            warehouses.push(Warehouse {
                name: "postgres",
                connection: "pg",
                table: "scheduled_runs_bench.events",
                plain: Plain::Postgres(client),
            });
        }
        None => println!(
            "SCHEDULED_RUNS_TEST_POSTGRES_URL is not set: SQLite only \
             (infra/local/postgres.sh start && source .test-env/postgres.env)"
        ),
    }

    let iterations: usize =
        env("ENGINE_BENCH_ITERATIONS").map_or(200, |v| v.parse().expect("a number"));
    let only_rows: Option<i64> = env("ENGINE_BENCH_ROWS").map(|v| v.parse().expect("a number"));
    let only_shape = env("ENGINE_BENCH_SHAPE");
    let only_warehouse = env("ENGINE_BENCH_WAREHOUSE");
    let mut figures = Vec::new();
    for warehouse in &warehouses {
        if only_warehouse
            .as_deref()
            .is_some_and(|w| w != warehouse.name)
        {
            continue;
        }
        for shape in SHAPES {
            if only_shape.as_deref().is_some_and(|s| s != shape.name) {
                continue;
            }
            let name = format!("{} {}", warehouse.name, shape.name);
            let long = publish(&embedded, &name, &version(warehouse, shape, CELLS)).await;
            let short = publish(&embedded, &name, &version(warehouse, shape, 1)).await;
            for rows in [1i64, 100, 1000] {
                if only_rows.is_some_and(|r| r != rows) {
                    continue;
                }
                // Warm up: statement caches, page cache, the SQL cache entries.
                for _ in 0..10 {
                    execute(&embedded, &long, rows, false).await;
                    execute(&embedded, &short, rows, false).await;
                }
                let (mut sql, mut exec_n, mut hit_n, mut exec_1, mut hit_1) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let (mut table_n, mut table_1) = (Vec::new(), Vec::new());
                for _ in 0..iterations {
                    let mut alone = Duration::ZERO;
                    for i in 0..CELLS {
                        alone += warehouse.sql_alone(shape, i == 0, rows).await;
                    }
                    sql.push(alone / CELLS as u32);
                    exec_n.push(execute(&embedded, &long, rows, false).await);
                    hit_n.push(execute(&embedded, &long, rows, true).await);
                    exec_1.push(execute(&embedded, &short, rows, false).await);
                    hit_1.push(execute(&embedded, &short, rows, true).await);
                    embedded.store.forget_cached_results();
                    table_n.push(execute(&embedded, &long, rows, true).await);
                    embedded.store.forget_cached_results();
                    table_1.push(execute(&embedded, &short, rows, true).await);
                }
                let f = Figures {
                    label: format!("{name} {rows}"),
                    sql: median(sql),
                    exec_n: median(exec_n),
                    hit_n: median(hit_n),
                    exec_1: median(exec_1),
                    hit_1: median(hit_1),
                    table_n: median(table_n),
                    table_1: median(table_1),
                };
                println!(
                    "{:<24} sql {} | exec {CELLS} {} hit {CELLS} {} table {CELLS} {} \
                     | exec 1 {} hit 1 {} table 1 {}",
                    f.label,
                    us(f.sql),
                    us(f.exec_n),
                    us(f.hit_n),
                    us(f.table_n),
                    us(f.exec_1),
                    us(f.hit_1),
                    us(f.table_1)
                );
                figures.push(f);
            }
        }
    }

    println!("\nwhole runs of {CELLS} cells, per cell (medians of {iterations} runs)");
    println!(
        "{:<24} {:>12} {:>12} {:>12} {:>12} {:>9} {:>12} {:>11}",
        "warehouse shape rows",
        "sql",
        "exec/cell",
        "overhead",
        "hit/cell",
        "exec/hit",
        "table/cell",
        "exec/table"
    );
    for f in &figures {
        let exec = f.exec_n / CELLS as u32;
        let hit = f.hit_n / CELLS as u32;
        let table = f.table_n / CELLS as u32;
        println!(
            "{:<24} {:>12} {:>12} {:>12} {:>12} {:>8.1}× {:>12} {:>10.1}×",
            f.label,
            us(f.sql),
            us(exec),
            us_signed(minus(exec, f.sql)),
            us(hit),
            f.exec_n.as_secs_f64() / f.hit_n.as_secs_f64(),
            us(table),
            f.exec_n.as_secs_f64() / f.table_n.as_secs_f64()
        );
    }
    println!(
        "\none more cell: (run of {CELLS} − run of 1) / {}; fixed = run of 1 − one cell",
        CELLS - 1
    );
    println!(
        "{:<24} {:>12} {:>12} {:>12} {:>12} {:>9} {:>12} {:>11} {:>12} {:>12}",
        "warehouse shape rows",
        "sql",
        "exec",
        "overhead",
        "hit",
        "exec/hit",
        "table hit",
        "exec/table",
        "fixed exec",
        "fixed hit"
    );
    for f in &figures {
        let (exec, hit, table) = (f.marginal_exec(), f.marginal_hit(), f.marginal_table());
        println!(
            "{:<24} {:>12} {:>12} {:>12} {:>12} {:>8.1}× {:>12} {:>10.1}× {:>12} {:>12}",
            f.label,
            us(f.sql),
            us_signed(exec),
            us_signed(exec - f.sql.as_secs_f64()),
            us_signed(hit),
            exec / hit,
            us_signed(table),
            exec / table,
            us_signed(f.exec_1.as_secs_f64() - exec),
            us_signed(f.hit_1.as_secs_f64() - hit),
        );
    }
}
