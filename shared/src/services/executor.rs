//! The executor: takes a queued run and executes the project version pinned at dispatch.
//!
//! Exactly-once execution over an at-least-once queue rests on two conditional writes: the
//! start (`PENDING → RUNNING`, or a crashed attempt's expired lease → the next attempt) and
//! the finish (`RUNNING` at this attempt → terminal). A second delivery of the same message
//! finds the run taken or finished and does nothing. While it runs, a watcher renews the
//! lease and notices a cancel (the run turned `KILLED`), interrupting the running query.
//!
//! The write that ends a run also sets its `event_pending` (the outbox of run events, see
//! `services::events`); the run is then announced. A delivery that finds its run ended
//! with the event still pending announces it again: the first may have died in between.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use crate::domain::cells::{self, VersionError};
use crate::domain::inputs;
use crate::domain::model::{
    CachedResult, CellResult, CellStatus, ConnectionConfig, ProjectVersion, PublishedResults, Rows,
    Run, RunError, RunStatus, RunTrigger, StateEvent,
};
use crate::domain::template::{self, CellView, TemplateContext};
use crate::ports::{
    BoundSql, Clock, ConnectorFactory, Dialect, EventPublisher, ExecutionInputs, ExecutionPath,
    PortError, QueryError, QueryOutput, RunMessage, RunStart, RunStore, SecretBox, SqlCacheStore,
    SqlConnector,
};

use super::ServiceError;

#[derive(Clone, Debug)]
pub struct ExecutorSettings {
    /// How long a start holds the run before another executor may take it over.
    pub lease: Duration,
    /// How often the watcher renews the lease and looks for a cancel.
    pub watch_interval: std::time::Duration,
    /// Starts allowed per run (the first plus retries after crashes).
    pub max_attempts: u32,
    /// A run still going after this long is ended `ERRORED` (`TIMEOUT`).
    pub run_timeout: Duration,
    /// Freshness of SQL cache entries.
    pub cache_ttl: Duration,
    /// Rows kept per cell result.
    pub max_rows: usize,
    /// Where each run's private working directory is made, by the connectors that need one.
    pub workdir_root: PathBuf,
}

impl ExecutorSettings {
    pub fn new(workdir_root: PathBuf) -> Self {
        ExecutorSettings {
            lease: Duration::seconds(60),
            watch_interval: std::time::Duration::from_secs(1),
            max_attempts: 3,
            run_timeout: Duration::minutes(15),
            cache_ttl: Duration::hours(24),
            max_rows: 1_000,
            workdir_root,
        }
    }
}

/// What one delivery of a run message did.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecuteOutcome {
    /// This delivery executed the run to its end.
    Finished(Box<Run>),
    /// The run was finished, taken by another executor, or gone: nothing to do.
    Ignored,
}

pub struct ExecutorService {
    /// The start, the inputs and the end of a run, one request each where the store can.
    pub path: Arc<dyn ExecutionPath>,
    pub runs: Arc<dyn RunStore>,
    pub cache: Arc<dyn SqlCacheStore>,
    pub connectors: Arc<dyn ConnectorFactory>,
    pub secrets: Arc<dyn SecretBox>,
    pub events: Arc<dyn EventPublisher>,
    pub clock: Arc<dyn Clock>,
    pub settings: ExecutorSettings,
    pub plans: PlanCache,
}

/// The execution plans of the versions this process ran lately. Planning parses every
/// cell's template for the cells it reads, on every run, and a published version never
/// changes, so its plan is worked out once, and its templates compiled once.
#[derive(Default)]
pub struct PlanCache {
    plans: Mutex<HashMap<VersionKey, Arc<Plan>>>,
}

/// How a run executes a version: its cells' ids in the order a run executes them, and the
/// templates of those that passed `template::check_constructs` when the version was
/// planned, compiled. Only versions published before captured blocks were refused can hold
/// a cell that did not; such a cell is rendered with `template::render_sql` and fails, as
/// before, after the cells ahead of it ran.
#[derive(Debug)]
pub struct Plan {
    pub cells: Vec<String>,
    pub templates: template::CompiledTemplates,
}

/// (workspace, project, version number)
type VersionKey = (String, String, u32);

/// Versions whose plans are kept, and templates among them (a compiled template holds
/// ≈ 5.5 KiB for each dialect it is rendered in, so ≈ 5.5 MiB for a thousand); past either,
/// the cache starts over, which costs one planning, and one compile per template, per
/// version run since.
const PLANS_KEPT: usize = 1024;
const TEMPLATES_KEPT: usize = 1024;

impl PlanCache {
    /// The plan of `version` of a project of the workspace (see `cells::execution_plan`).
    pub fn plan(
        &self,
        workspace_id: &str,
        version: &ProjectVersion,
    ) -> Result<Arc<Plan>, VersionError> {
        let key = (
            workspace_id.to_owned(),
            version.project_id.clone(),
            version.version,
        );
        let lock = || self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(plan) = lock().get(&key) {
            return Ok(Arc::clone(plan));
        }
        let cells = cells::execution_plan(&version.body)?;
        let checked = cells
            .iter()
            .filter_map(|id| version.body.cells.iter().find(|cell| &cell.id == id))
            .filter(|cell| template::check_constructs(&cell.sql).is_ok())
            .map(|cell| (cell.id.clone(), cell.sql.clone()))
            .collect();
        let plan = Arc::new(Plan {
            cells,
            templates: template::CompiledTemplates::new(checked),
        });
        let mut plans = lock();
        // Counted only when a version is planned, which a process does rarely.
        let kept: usize = plans.values().map(|p| p.templates.len()).sum();
        if plans.len() >= PLANS_KEPT || kept + plan.templates.len() > TEMPLATES_KEPT {
            plans.clear();
        }
        plans.insert(key, Arc::clone(&plan));
        Ok(plan)
    }
}

/// A data connection as one run uses it: the configuration, unsealed when a cell first
/// needs it, and the connector, opened only once a query has to run.
struct RunConnection {
    config: ConnectionConfig,
    connector: Option<Box<dyn SqlConnector>>,
}

impl RunConnection {
    /// Templates render for the connection's dialect before anything is opened, so that a
    /// cache hit (keyed by the rendered statement) needs no connection at all.
    fn dialect(&self) -> Dialect {
        match self.config {
            ConnectionConfig::Sqlite { .. } => Dialect::Sqlite,
            ConnectionConfig::Postgres { .. } => Dialect::Postgres,
        }
    }
}

/// Why a cell's query did not run.
enum CellQueryError {
    /// Connecting failed; a message safe to record on the run.
    Connect(String),
    Query(QueryError),
}

/// How the cells ended.
enum Ending {
    Completed,
    Errored(RunError),
    /// Interrupted: killed by a user, or past the timeout.
    Interrupted,
}

impl ExecutorService {
    /// Handles one delivery of a run message.
    pub async fn execute(&self, message: &RunMessage) -> Result<ExecuteOutcome, ServiceError> {
        let Some(run) = self.start(message).await? else {
            return Ok(ExecuteOutcome::Ignored);
        };
        let workdir = self.settings.workdir_root.join(&run.run_id);
        let result = self.run_with_workdir(run, message, &workdir).await;
        // The working directory is private to the run: nothing survives it.
        if let Err(e) = tokio::fs::remove_dir_all(&workdir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(run_id = %message.run_id, error = %e, "could not remove a run's working directory");
        }
        result
    }

    /// Takes the run with a conditional write, or returns `None` when this delivery has
    /// nothing to do.
    async fn start(&self, message: &RunMessage) -> Result<Option<Run>, ServiceError> {
        let now = self.clock.now();
        let start = RunStart {
            at: now,
            lease_until: now + self.settings.lease,
        };
        // The common case, a queued run, is taken without reading it first.
        if let Some(started) = self
            .path
            .start_pending_run(&message.workspace_id, &message.run_id, start)
            .await?
        {
            tracing::info!(run_id = %started.run_id, schedule_id = ?started.schedule_id,
                attempt = started.attempt, "run started");
            return Ok(Some(started));
        }
        let Some(run) = self
            .runs
            .get_run(&message.workspace_id, &message.run_id)
            .await?
        else {
            tracing::warn!(run_id = %message.run_id, "message for an unknown run ignored");
            return Ok(None);
        };
        let crashed = run.status == RunStatus::Running && run.lease_until.is_none_or(|l| l <= now);
        if run.status.is_terminal() && run.event_pending {
            super::events::announce(self.events.as_ref(), &run).await;
            return Ok(None);
        }
        if run.status != RunStatus::Pending && !crashed {
            return Ok(None);
        }
        let guard = run.guard();
        if run.attempt >= self.settings.max_attempts {
            let mut ended = run;
            ended.error = Some(RunError {
                code: "EXECUTOR_CRASHED".into(),
                message: format!(
                    "the run was started {} times without finishing",
                    ended.attempt
                ),
                cell_id: None,
            });
            self.end(&mut ended, RunStatus::Errored, now);
            return match self.runs.update_run(&ended, guard).await {
                Ok(()) => {
                    super::events::announce(self.events.as_ref(), &ended).await;
                    Ok(None)
                }
                Err(PortError::VersionMismatch) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        let mut started = run;
        started.status = RunStatus::Running;
        started.attempt += 1;
        started.lease_until = Some(now + self.settings.lease);
        started.start_time.get_or_insert(now);
        started
            .state_events
            .push(StateEvent::new("STATUS", "RUNNING", now));
        if crashed {
            started.state_events.push(StateEvent::new(
                "RETRY",
                &format!("attempt {}", started.attempt),
                now,
            ));
        }
        match self.runs.update_run(&started, guard).await {
            Ok(()) => {
                tracing::info!(run_id = %started.run_id, schedule_id = ?started.schedule_id,
                    attempt = started.attempt, "run started");
                Ok(Some(started))
            }
            Err(PortError::VersionMismatch) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn run_with_workdir(
        &self,
        run: Run,
        message: &RunMessage,
        workdir: &Path,
    ) -> Result<ExecuteOutcome, ServiceError> {
        let cancel = CancellationToken::new();
        // The watcher lives exactly as long as this execution: if the execution is dropped
        // part-way (its task aborted or panicking, the runtime shutting down), a watcher
        // left behind would keep renewing the lease of a run nobody executes, so the
        // sweeper could not retry it and the run would end `TIMEOUT` 15 minutes later.
        let watcher = AbortOnDrop(tokio::spawn(watch(
            self.runs.clone(),
            self.clock.clone(),
            run.clone(),
            cancel.clone(),
            self.settings.clone(),
        )));
        let inputs = match run.project_version {
            Some(version) => match self
                .path
                .load_execution(
                    &run.workspace_id,
                    &run.project_id,
                    version,
                    &message.connections,
                )
                .await
            {
                Ok(inputs) => Ok(inputs),
                // Throttled, unavailable or timed out: ending the run ERRORED would turn a
                // passing backend failure into the run's outcome. The run is left RUNNING
                // with its lease, as if this executor had crashed before its first cell:
                // once the lease runs out the sweeper queues it again for the next attempt
                // (bounded by `max_attempts`), and the message is reported failed.
                Err(
                    e @ PortError::Unavailable {
                        retryable: true, ..
                    },
                ) => {
                    tracing::warn!(run_id = %run.run_id, schedule_id = ?run.schedule_id, error = %e,
                        "loading the run's version failed; the run will be retried");
                    return Err(e.into());
                }
                Err(e) => Err(self.backend_message(&run.run_id, &e)),
            },
            None => Ok(ExecutionInputs {
                version: None,
                connections: HashMap::new(),
            }),
        };
        let mut fresh = Vec::new();
        let (cells, ending) = match &inputs {
            Ok(inputs) => {
                self.execute_cells(&run, inputs, workdir, &cancel, &mut fresh)
                    .await
            }
            Err(message) => (
                Vec::new(),
                Ending::Errored(RunError {
                    code: "BACKEND".into(),
                    message: message.clone(),
                    cell_id: None,
                }),
            ),
        };
        drop(watcher);
        let app_cells = inputs
            .ok()
            .and_then(|i| i.version)
            .map(|v| v.body.app.cells)
            .unwrap_or_default();
        self.finish(run, cells, ending, &app_cells, &fresh).await
    }

    async fn finish(
        &self,
        started: Run,
        cells: Vec<CellResult>,
        ending: Ending,
        app_cells: &[String],
        fresh: &[CachedResult],
    ) -> Result<ExecuteOutcome, ServiceError> {
        let now = self.clock.now();
        let guard = started.guard();
        let mut run = started;
        run.cells = cells;
        let status = match ending {
            Ending::Completed => RunStatus::Completed,
            Ending::Errored(error) => {
                run.error = Some(error);
                RunStatus::Errored
            }
            Ending::Interrupted => {
                // Either a user killed it (the store says KILLED; our write will lose) or
                // it ran past its timeout.
                run.error = Some(RunError {
                    code: "TIMEOUT".into(),
                    message: format!(
                        "the run did not finish within {} minutes",
                        self.settings.run_timeout.num_minutes()
                    ),
                    cell_id: None,
                });
                RunStatus::Errored
            }
        };
        self.end(&mut run, status, now);
        let results = if run.status == RunStatus::Completed && run.update_published_results {
            self.published_results(&run, app_cells)
        } else {
            None
        };
        match self
            .path
            .end_run(&run, guard, results.as_ref(), fresh)
            .await
        {
            Ok(stored) => {
                if results.is_some() {
                    tracing::info!(run_id = %run.run_id, schedule_id = ?run.schedule_id, stored,
                        "published results offered");
                }
            }
            Err(PortError::VersionMismatch) => {
                // Killed (or timed out by the sweeper) meanwhile: that ending stands and a
                // killed run never updates published results.
                tracing::info!(run_id = %run.run_id, schedule_id = ?run.schedule_id,
                    "run ended elsewhere while executing; its results are discarded");
                return Ok(ExecuteOutcome::Ignored);
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(run_id = %run.run_id, schedule_id = ?run.schedule_id,
            status = run.status.as_str(), "run finished");
        super::events::announce(self.events.as_ref(), &run).await;
        Ok(ExecuteOutcome::Finished(Box::new(run)))
    }

    fn end(&self, run: &mut Run, status: RunStatus, now: DateTime<Utc>) {
        run.status = status;
        run.end_time = Some(now);
        run.lease_until = None;
        run.event_pending = true;
        run.state_events
            .push(StateEvent::new("STATUS", status.as_str(), now));
    }

    /// The results a completed run offers to the published app: the cells the app
    /// shows, as of the run's fire time (or start).
    fn published_results(&self, run: &Run, app_cells: &[String]) -> Option<PublishedResults> {
        let (Some(version), Some(start)) = (run.project_version, run.start_time) else {
            return None;
        };
        Some(PublishedResults {
            workspace_id: run.workspace_id.clone(),
            project_id: run.project_id.clone(),
            run_id: run.run_id.clone(),
            project_version: version,
            as_of: run.scheduled_for.unwrap_or(start),
            cells: run
                .cells
                .iter()
                .filter(|c| app_cells.contains(&c.cell_id))
                .cloned()
                .collect(),
            updated_at: self.clock.now(),
        })
    }

    /// Executes the planned cells in order; returns the results so far and how it ended.
    async fn execute_cells(
        &self,
        run: &Run,
        loaded: &ExecutionInputs,
        workdir: &Path,
        cancel: &CancellationToken,
        fresh: &mut Vec<CachedResult>,
    ) -> (Vec<CellResult>, Ending) {
        let mut results = Vec::new();
        let fail = |code: &str, message: String, cell_id: Option<String>| {
            Ending::Errored(RunError {
                code: code.to_owned(),
                message,
                cell_id,
            })
        };
        let Some(version) = &loaded.version else {
            return (
                results,
                fail(
                    "VERSION_MISSING",
                    "the pinned project version does not exist".into(),
                    None,
                ),
            );
        };
        let body = &version.body;
        let plan = match self.plans.plan(&run.workspace_id, version) {
            Ok(plan) => plan,
            Err(e) => return (results, fail("INVALID_VERSION", e.message, None)),
        };
        let inputs = match inputs::resolve_inputs(&body.inputs, Some(&run.input_params)) {
            Ok(i) => i,
            Err(e) => return (results, fail("INVALID_INPUT", e.message, None)),
        };
        let scheduled = matches!(run.run_trigger, RunTrigger::Scheduled | RunTrigger::Manual);
        let context_name = if scheduled {
            "scheduled"
        } else {
            "api-triggered"
        };
        let mut ctx = TemplateContext::new(&inputs, scheduled, context_name);
        let mut connections: HashMap<String, RunConnection> = HashMap::new();
        let deadline =
            run.start_time.unwrap_or_else(|| self.clock.now()) + self.settings.run_timeout;
        for id in &plan.cells {
            let Some(cell) = body.cells.iter().find(|c| &c.id == id) else {
                continue;
            };
            if cancel.is_cancelled() || self.clock.now() >= deadline {
                return (results, Ending::Interrupted);
            }
            let started = Instant::now();
            if !connections.contains_key(&cell.connection) {
                match self.unseal_connection(run, loaded, &cell.connection) {
                    Ok(config) => {
                        connections.insert(
                            cell.connection.clone(),
                            RunConnection {
                                config,
                                connector: None,
                            },
                        );
                    }
                    Err(message) => {
                        results.push(errored_cell(&cell.id, message.clone(), started));
                        return (
                            results,
                            fail("CONNECTION_FAILED", message, Some(cell.id.clone())),
                        );
                    }
                }
            }
            let Some(connection) = connections.get_mut(&cell.connection) else {
                continue;
            };
            let dialect = connection.dialect();
            let rendered = plan
                .templates
                .render(&cell.id, &ctx, dialect)
                .unwrap_or_else(|| template::render_sql(&cell.sql, &ctx, dialect));
            let bound = match rendered {
                Ok(bound) => bound,
                Err(e) => {
                    results.push(errored_cell(&cell.id, e.to_string(), started));
                    return (
                        results,
                        fail(
                            "CELL_FAILED",
                            format!("cell {}: {e}", cell.id),
                            Some(cell.id.clone()),
                        ),
                    );
                }
            };
            let key = template::cache_key(&cell.connection, &bound);
            let cached = if run.use_cached_sql_results {
                match self
                    .cache
                    .get_cached(&run.workspace_id, &key, self.clock.now())
                    .await
                {
                    Ok(hit) => hit,
                    Err(e) => {
                        tracing::warn!(run_id = %run.run_id, schedule_id = ?run.schedule_id, error = %e,
                            "SQL cache read failed; executing");
                        None
                    }
                }
            } else {
                None
            };
            let (output, cache_hit) = match cached {
                Some(hit) => ((hit.columns, hit.rows, hit.row_count), true),
                None => match self
                    .query(connection, &cell.connection, workdir, &bound, cancel)
                    .await
                {
                    Ok(out) => {
                        let rows = Rows::from(out.rows);
                        fresh.push(self.cache_entry(run, key, &out.columns, &rows, out.row_count));
                        ((out.columns, rows, out.row_count), false)
                    }
                    Err(CellQueryError::Query(QueryError::Cancelled)) => {
                        return (results, Ending::Interrupted);
                    }
                    Err(CellQueryError::Connect(message)) => {
                        results.push(errored_cell(&cell.id, message.clone(), started));
                        return (
                            results,
                            fail("CONNECTION_FAILED", message, Some(cell.id.clone())),
                        );
                    }
                    Err(CellQueryError::Query(e)) => {
                        results.push(errored_cell(&cell.id, e.to_string(), started));
                        return (
                            results,
                            fail(
                                "CELL_FAILED",
                                format!("cell {}: {e}", cell.id),
                                Some(cell.id.clone()),
                            ),
                        );
                    }
                },
            };
            let (columns, rows, row_count) = output;
            ctx.add_cell(
                cell.id.clone(),
                Arc::new(CellView {
                    columns: columns.clone(),
                    rows: rows.clone(),
                    row_count,
                }),
            );
            results.push(CellResult {
                cell_id: cell.id.clone(),
                status: CellStatus::Completed,
                columns,
                rows,
                row_count,
                duration_ms: millis(started),
                cache_hit,
                error: None,
            });
        }
        (results, Ending::Completed)
    }

    /// The configuration of the named connection of the run's workspace; on failure, a
    /// message safe to record on the run (never the configuration itself).
    fn unseal_connection(
        &self,
        run: &Run,
        loaded: &ExecutionInputs,
        name: &str,
    ) -> Result<ConnectionConfig, String> {
        let Some(stored) = loaded.connections.get(name) else {
            return Err(format!(
                "the workspace has no data connection named {name:?}"
            ));
        };
        let config: Option<ConnectionConfig> = self
            .secrets
            .open(&stored.sealed_config)
            .ok()
            .and_then(|plain| serde_json::from_slice(&plain).ok());
        config.ok_or_else(|| {
            tracing::error!(run_id = %run.run_id, schedule_id = ?run.schedule_id, connection = name,
                "a stored connection could not be unsealed");
            format!("the configuration of connection {name:?} could not be read")
        })
    }

    /// Runs a statement on the connection, connecting first if no earlier cell of the run
    /// did: a run whose every query is a cache hit never connects.
    async fn query(
        &self,
        connection: &mut RunConnection,
        name: &str,
        workdir: &Path,
        bound: &BoundSql,
        cancel: &CancellationToken,
    ) -> Result<QueryOutput, CellQueryError> {
        let connector = match &mut connection.connector {
            Some(connector) => connector,
            empty => empty.insert(
                self.connectors
                    .open(&connection.config, workdir)
                    .await
                    .map_err(|e| CellQueryError::Connect(format!("connection {name:?}: {e}")))?,
            ),
        };
        connector
            .query(bound, self.settings.max_rows, cancel)
            .await
            .map_err(CellQueryError::Query)
    }

    /// The cache entry of a query the run executed; written with the run's end.
    fn cache_entry(
        &self,
        run: &Run,
        key: String,
        columns: &[String],
        rows: &Rows,
        row_count: u64,
    ) -> CachedResult {
        let now = self.clock.now();
        CachedResult {
            workspace_id: run.workspace_id.clone(),
            key,
            columns: columns.to_vec(),
            rows: rows.clone(),
            row_count,
            created_at: now,
            expires_at: now + self.settings.cache_ttl,
        }
    }

    /// Logs a backend failure with a trace id and returns a message safe to record.
    fn backend_message(&self, run_id: &str, e: &PortError) -> String {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        tracing::error!(run_id, trace, error = %e, "backend failure during a run");
        format!("a backend failed; trace id {trace}")
    }
}

fn errored_cell(cell_id: &str, error: String, started: Instant) -> CellResult {
    CellResult {
        cell_id: cell_id.to_owned(),
        status: CellStatus::Errored,
        columns: Vec::new(),
        rows: Rows::default(),
        row_count: 0,
        duration_ms: millis(started),
        cache_hit: false,
        error: Some(error),
    }
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Renews the run's lease while it executes and cancels the execution when the run was
/// killed (or timed out by the sweeper) — any change of status or attempt in the store.
/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn watch(
    runs: Arc<dyn RunStore>,
    clock: Arc<dyn Clock>,
    mut run: Run,
    cancel: CancellationToken,
    settings: ExecutorSettings,
) {
    let deadline = run.start_time.unwrap_or_else(|| clock.now()) + settings.run_timeout;
    loop {
        tokio::time::sleep(settings.watch_interval).await;
        let now = clock.now();
        if now >= deadline {
            cancel.cancel();
            return;
        }
        let guard = run.guard();
        run.lease_until = Some(now + settings.lease);
        match runs.update_run(&run, guard).await {
            Ok(()) => {}
            Err(PortError::VersionMismatch | PortError::NotFound) => {
                tracing::info!(run_id = %run.run_id, schedule_id = ?run.schedule_id, "run cancelled while executing");
                cancel.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(run_id = %run.run_id, schedule_id = ?run.schedule_id, error = %e, "lease renewal failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::model::{AppDef, Cell, CellType, VersionBody};

    fn version(project_id: &str, number: u32, app: &str) -> ProjectVersion {
        let cell = |id: &str, sql: &str| Cell {
            id: id.into(),
            cell_type: CellType::Sql,
            connection: "wh".into(),
            sql: sql.into(),
        };
        ProjectVersion {
            project_id: project_id.into(),
            version: number,
            body: VersionBody {
                inputs: Vec::new(),
                cells: vec![
                    cell("a", "SELECT 1"),
                    cell("b", "SELECT {{ cells.a.value }}"),
                ],
                app: AppDef {
                    cells: vec![app.into()],
                },
            },
            published_at: Utc
                .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
                .single()
                .expect("instant"),
            published_by: "u".into(),
        }
    }

    #[test]
    fn a_version_is_planned_once_and_each_version_on_its_own() {
        let plans = PlanCache::default();
        let first = plans.plan("w", &version("p", 1, "b")).expect("plan");
        assert_eq!(first.cells, ["a", "b"]);
        assert!(
            first.cells.iter().all(|id| first.templates.contains(id)),
            "{first:?}"
        );
        let again = plans.plan("w", &version("p", 1, "b")).expect("plan");
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same plan, not planned again"
        );
        let next = plans.plan("w", &version("p", 2, "a")).expect("plan");
        assert_eq!(next.cells, ["a"], "another version, its own plan");
        let elsewhere = plans.plan("w2", &version("p", 1, "a")).expect("plan");
        assert_eq!(
            elsewhere.cells,
            ["a"],
            "another workspace's project of the same id"
        );
    }

    #[test]
    fn a_template_that_captures_rendered_sql_is_left_to_be_checked_at_render() {
        // Refused at publish now; a version published before that may still hold one.
        let mut legacy = version("p", 1, "b");
        legacy.body.cells[1].sql =
            "{% set q %}{{ cells.a.value }}{% endset %}SELECT {{ q }}".into();
        let plan = PlanCache::default().plan("w", &legacy).expect("plan");
        assert_eq!(plan.cells, ["a", "b"]);
        assert!(plan.templates.contains("a"), "{plan:?}");
        assert!(
            !plan.templates.contains("b"),
            "left to render_sql: {plan:?}"
        );
    }

    #[test]
    fn the_cache_starts_over_past_the_templates_it_keeps() {
        let wide = |number: u32| {
            let mut v = version("p", number, "a");
            v.body.cells = (0..TEMPLATES_KEPT / 2 + 1)
                .map(|i| Cell {
                    id: if i == 0 { "a".into() } else { format!("x{i}") },
                    cell_type: CellType::Sql,
                    connection: "wh".into(),
                    sql: "SELECT 1".into(),
                })
                .collect();
            // Every cell is shown, so every cell is planned.
            v.body.app.cells = v.body.cells.iter().map(|c| c.id.clone()).collect();
            v
        };
        let plans = PlanCache::default();
        let first = plans.plan("w", &wide(1)).expect("plan");
        assert_eq!(first.templates.len(), TEMPLATES_KEPT / 2 + 1);
        let kept = plans.plan("w", &wide(1)).expect("plan");
        assert!(Arc::ptr_eq(&first, &kept), "kept while within the bound");
        plans.plan("w", &wide(2)).expect("plan");
        let again = plans.plan("w", &wide(1)).expect("plan");
        assert!(
            !Arc::ptr_eq(&first, &again),
            "the second version's templates went past the bound: planned anew"
        );
        assert_eq!(again.cells, first.cells);
    }

    #[test]
    fn a_version_that_cannot_be_planned_fails_every_time() {
        let plans = PlanCache::default();
        for _ in 0..2 {
            let unknown = plans.plan("w", &version("p", 1, "missing"));
            assert!(unknown.is_err(), "{unknown:?}");
        }
    }
}
