//! The reads and writes of the scheduled-run path, one method per step, so that a store
//! able to batch (DynamoDB: `BatchGetItem`, `UpdateItem … ALL_NEW`, `TransactWriteItems`)
//! serves each step with one request, while any other store composes its single-record
//! methods ([`ComposedRunPath`]). A run then costs the same handful of requests however
//! many records it touches (docs/dynamodb.md, "Per-run cost").

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    ConnectionStore, PageRequest, PortError, ProjectStore, ResultsStore, RunStore, ScheduleStore,
    SqlCacheStore, WorkspaceStore,
};
use crate::domain::model::{
    CachedResult, Connection, Project, ProjectRole, ProjectVersion, PublishedResults, Run,
    RunGuard, RunStatus, Schedule, StateEvent, User,
};

/// Which fire to load. `project_id` and `created_by` never change on a schedule, so the
/// trigger can carry them; with them a store reads every record of the fire at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FireRequest {
    pub workspace_id: String,
    pub schedule_id: String,
    pub project_id: Option<String>,
    pub created_by: Option<String>,
}

/// Everything dispatch decides on. The project and the creator are shared: the fires of
/// a batch name a few projects and creators between them, and each is read once.
#[derive(Clone, Debug, PartialEq)]
pub struct FireContext {
    pub schedule: Schedule,
    pub project: Option<Arc<Project>>,
    /// The schedule's creator as a user of the workspace.
    pub creator: Option<Arc<User>>,
    /// The creator's role on the project (`None`: not a member).
    pub creator_role: Option<ProjectRole>,
    /// Whether the schedule's latest run is still `PENDING` or `RUNNING`.
    pub previous_run_active: bool,
    /// The data connections of the published version, when the store keeps them beside
    /// the project (passed on to the executor so it can read them with the version).
    pub published_connections: Option<Vec<String>>,
}

/// What the executor needs before the first cell: the pinned version and the data
/// connections its cells use, by name (a name missing here does not exist).
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionInputs {
    pub version: Option<ProjectVersion>,
    pub connections: HashMap<String, Connection>,
}

/// The start of one attempt: `PENDING → RUNNING`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunStart {
    pub at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}

/// The whole path: what a store implements, [`DispatchPath`] and [`ExecutionPath`]. The
/// services hold one half each, the narrowest port they need: a trait object keeps every
/// method of its trait, so the dispatch and API functions (the API dispatches "run now")
/// do not carry the executor's steps, nor the executor dispatch's.
pub trait RunPathStore: DispatchPath + ExecutionPath {}

impl<T: DispatchPath + ExecutionPath + ?Sized> RunPathStore for T {}

/// Dispatch's step: the records of the fires it decides on.
#[async_trait]
pub trait DispatchPath: Send + Sync {
    /// The schedule and the records dispatch checks; `None` when the schedule is gone.
    /// Runs that expired at `now` are not looked at.
    async fn load_fire(
        &self,
        request: &FireRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<FireContext>, PortError>;

    /// `load_fire` for each request, in order: one answer per request. A store that can
    /// read the records of many fires with a few queries overrides this.
    async fn load_fires(
        &self,
        requests: &[&FireRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<FireContext>>, PortError> {
        let mut fires = Vec::with_capacity(requests.len());
        for &request in requests {
            fires.push(self.load_fire(request, now).await?);
        }
        Ok(fires)
    }
}

/// The executor's steps: the inputs of a run, its start and its end.
#[async_trait]
pub trait ExecutionPath: Send + Sync {
    /// The version and the connections its cells use. `connections` names the ones known
    /// in advance; the rest are found from the version.
    async fn load_execution(
        &self,
        workspace_id: &str,
        project_id: &str,
        version: u32,
        connections: &[String],
    ) -> Result<ExecutionInputs, PortError>;

    /// Takes a `PENDING` run: `RUNNING`, attempt + 1, the start time, the lease and a
    /// `STATUS` event, in one conditional write. `None` when the run is not `PENDING`
    /// (taken, finished, killed) or does not exist.
    async fn start_pending_run(
        &self,
        workspace_id: &str,
        run_id: &str,
        start: RunStart,
    ) -> Result<Option<Run>, PortError>;

    /// The write that ends a run (as `RunStore::update_run`, with its errors), together
    /// with the results it offers to the published app, if any, and the SQL cache entries
    /// its queries produced. Returns whether the results were stored (they are not when
    /// newer ones exist). Cache entries are best effort: they never fail the end.
    async fn end_run(
        &self,
        run: &Run,
        expected: RunGuard,
        results: Option<&PublishedResults>,
        cache: &[CachedResult],
    ) -> Result<bool, PortError>;
}

/// [`RunPathStore`] over the single-record ports, for stores where a request is a local
/// call and batching buys nothing.
pub struct ComposedRunPath {
    pub workspaces: Arc<dyn WorkspaceStore>,
    pub projects: Arc<dyn ProjectStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    pub runs: Arc<dyn RunStore>,
    pub connections: Arc<dyn ConnectionStore>,
    pub results: Arc<dyn ResultsStore>,
    pub cache: Arc<dyn SqlCacheStore>,
}

impl ComposedRunPath {
    /// All six ports from one store that implements them.
    pub fn over<S>(store: Arc<S>) -> ComposedRunPath
    where
        S: WorkspaceStore
            + ProjectStore
            + ScheduleStore
            + RunStore
            + ConnectionStore
            + ResultsStore
            + SqlCacheStore
            + 'static,
    {
        ComposedRunPath {
            workspaces: store.clone(),
            projects: store.clone(),
            schedules: store.clone(),
            runs: store.clone(),
            connections: store.clone(),
            results: store.clone(),
            cache: store,
        }
    }
}

#[async_trait]
impl DispatchPath for ComposedRunPath {
    async fn load_fire(
        &self,
        request: &FireRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<FireContext>, PortError> {
        let ws = request.workspace_id.as_str();
        let Some(schedule) = self
            .schedules
            .get_schedule(ws, &request.schedule_id)
            .await?
        else {
            return Ok(None);
        };
        let project = self.projects.get_project(ws, &schedule.project_id).await?;
        let creator = self.workspaces.get_user(ws, &schedule.created_by).await?;
        let creator_role = self
            .projects
            .get_member_role(ws, &schedule.project_id, &schedule.created_by)
            .await?;
        let latest = self
            .runs
            .list_schedule_runs(ws, &schedule.schedule_id, now, &PageRequest::first(1))
            .await?;
        Ok(Some(FireContext {
            previous_run_active: latest.items.iter().any(|r| !r.status.is_terminal()),
            schedule,
            project: project.map(Arc::new),
            creator: creator.map(Arc::new),
            creator_role,
            published_connections: None,
        }))
    }
}

#[async_trait]
impl ExecutionPath for ComposedRunPath {
    async fn load_execution(
        &self,
        workspace_id: &str,
        project_id: &str,
        version: u32,
        _connections: &[String],
    ) -> Result<ExecutionInputs, PortError> {
        let version = self
            .projects
            .get_version(workspace_id, project_id, version)
            .await?;
        let mut connections = HashMap::new();
        for name in version.iter().flat_map(|v| v.body.connection_names()) {
            if connections.contains_key(&name) {
                continue;
            }
            if let Some(c) = self.connections.get_connection(workspace_id, &name).await? {
                connections.insert(name, c);
            }
        }
        Ok(ExecutionInputs {
            version,
            connections,
        })
    }

    async fn start_pending_run(
        &self,
        workspace_id: &str,
        run_id: &str,
        start: RunStart,
    ) -> Result<Option<Run>, PortError> {
        let Some(run) = self.runs.get_run(workspace_id, run_id).await? else {
            return Ok(None);
        };
        if run.status != RunStatus::Pending {
            return Ok(None);
        }
        let guard = run.guard();
        let started = started_run(run, start);
        match self.runs.update_run(&started, guard).await {
            Ok(()) => Ok(Some(started)),
            Err(PortError::VersionMismatch | PortError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn end_run(
        &self,
        run: &Run,
        expected: RunGuard,
        results: Option<&PublishedResults>,
        cache: &[CachedResult],
    ) -> Result<bool, PortError> {
        self.runs.update_run(run, expected).await?;
        put_cache_entries(self.cache.as_ref(), run, cache).await;
        match results {
            Some(results) => self.results.put_results_if_newer(results).await,
            None => Ok(false),
        }
    }
}

/// Writes cache entries one by one; a failure is logged and the rest still written.
pub async fn put_cache_entries(cache: &dyn SqlCacheStore, run: &Run, entries: &[CachedResult]) {
    for entry in entries {
        if let Err(e) = cache.put_cached(entry).await {
            tracing::warn!(run_id = %run.run_id, schedule_id = ?run.schedule_id, error = %e,
                "SQL cache write failed");
        }
    }
}

/// A `PENDING` run as [`ExecutionPath::start_pending_run`] leaves it; stores that write
/// the change field by field must end with exactly this record.
pub fn started_run(mut run: Run, start: RunStart) -> Run {
    run.status = RunStatus::Running;
    run.attempt += 1;
    run.lease_until = Some(start.lease_until);
    run.start_time.get_or_insert(start.at);
    run.state_events.push(StateEvent::new(
        "STATUS",
        RunStatus::Running.as_str(),
        start.at,
    ));
    run
}
