//! Duplicate deliveries on the at-least-once edges, written once against the ports and run
//! on every store (RELIABILITY.md, requirement 2): the scheduler → dispatch edge (many
//! deliveries of one fire at once) and the queue → execute edge (many deliveries of one run
//! message at once) must yield one run, queued once, executed once. The services are the
//! product's (`DispatchService`, `ExecutorService`); only the queue and the event publisher
//! are recorders, and the SQL connector factory is the embedded one behind a counter, so
//! "executed once" is counted where the work happens.
//!
//! A batch of fires (the local timer hands over those due at one instant) decides every
//! fire as if they came one after another (`a_batch_of_fires_decides_each_as_one_after_another`),
//! and a batch whose write fails part-way loses no fire and doubles none when retried.
//!
//! The topic → notify edge is `notify_service.rs` (`a_repeated_event_sends_nothing_twice`)
//! and `notify_e2e.rs` on SQLite; on DynamoDB it waits for the DynamoDB notification stores.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use scheduled_runs::adapters::local::clock::ManualClock;
use scheduled_runs::adapters::local::secret_box::LocalSecretBox;
use scheduled_runs::adapters::sql::LocalConnectorFactory;
use scheduled_runs::demo;
use scheduled_runs::domain::model::{
    Caller, ConnectionConfig, OverlapPolicy, Plan, Run, RunGuard, RunStatus, Schedule, SkipReason,
    VersionBody, Workspace, WorkspaceRole,
};
use scheduled_runs::ports::{
    Clock, ConnectorFactory, EventPublisher, FireRequest, Page, PageRequest, PortError, QueryError,
    RunCreated, RunEvent, RunFilter, RunMessage, RunQueue, RunStore, ScheduleLimits, SqlConnector,
};
use scheduled_runs::services::ServiceError;
use scheduled_runs::services::connections::ConnectionService;
use scheduled_runs::services::dispatch::{
    DispatchOutcome, DispatchService, DispatchSettings, ScheduledFire,
};
use scheduled_runs::services::executor::{ExecuteOutcome, ExecutorService, ExecutorSettings};
use serde_json::json;
use tokio::sync::Barrier;

use crate::contract::{Stores, at, lasting, unique};

/// How many copies of one delivery arrive at once.
pub const COPIES: usize = 25;

/// A queue that keeps what was sent.
#[derive(Default)]
pub struct RecordingQueue(pub Mutex<Vec<RunMessage>>);

#[async_trait]
impl RunQueue for RecordingQueue {
    async fn enqueue(&self, message: RunMessage) -> Result<(), PortError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
        Ok(())
    }
}

/// A publisher that keeps the run events.
#[derive(Default)]
pub struct RecordingEvents(pub Mutex<Vec<RunEvent>>);

#[async_trait]
impl EventPublisher for RecordingEvents {
    async fn publish(&self, event: &RunEvent) -> Result<(), PortError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
        Ok(())
    }
}

/// The embedded SQL connector factory, counting the connections it opens: one per
/// connection a run's cells use, so a run executed twice opens twice.
pub struct CountingConnectors {
    inner: LocalConnectorFactory,
    pub opened: AtomicUsize,
}

#[async_trait]
impl ConnectorFactory for CountingConnectors {
    async fn open(
        &self,
        config: &ConnectionConfig,
        workdir: &Path,
    ) -> Result<Box<dyn SqlConnector>, QueryError> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        self.inner.open(config, workdir).await
    }
}

/// A workspace with a published one-cell project on the demo warehouse and a daily
/// schedule of its creator, on `s`.
pub struct Pipeline {
    pub stores: Stores,
    pub clock: Arc<ManualClock>,
    pub queue: Arc<RecordingQueue>,
    pub events: Arc<RecordingEvents>,
    pub connectors: Arc<CountingConnectors>,
    pub dispatch: Arc<DispatchService>,
    pub executor: Arc<ExecutorService>,
    pub schedule: Schedule,
    _dir: tempfile::TempDir,
}

pub async fn pipeline(s: &Stores) -> Pipeline {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouses = dir.path().join("warehouses");
    std::fs::create_dir_all(&warehouses).expect("warehouse dir");
    demo::write_warehouse(&warehouses.join(demo::DEMO_WAREHOUSE)).expect("demo warehouse");
    let clock = Arc::new(ManualClock::new(at(10, 8, 59)));
    let secrets = Arc::new(LocalSecretBox::new(&[7u8; 32]).expect("key"));

    let ws = unique("ws");
    s.workspaces
        .create_workspace(&Workspace {
            workspace_id: ws.clone(),
            plan: Plan::Team,
            auto_archive_after_days: None,
            created_at: at(1, 0, 0),
        })
        .await
        .expect("workspace");
    let owner = unique("owner");
    let admin = Caller {
        user_id: owner.clone(),
        workspace_id: ws.clone(),
        workspace_role: WorkspaceRole::Admin,
        email: None,
    };
    ConnectionService {
        connections: s.connections.clone(),
        secrets: secrets.clone(),
        clock: clock.clone(),
    }
    .put(
        &admin,
        "warehouse",
        &ConnectionConfig::Sqlite {
            path: demo::DEMO_WAREHOUSE.into(),
        },
    )
    .await
    .expect("connection");
    let project = scheduled_runs::domain::model::Project {
        project_id: unique("proj"),
        workspace_id: ws.clone(),
        title: "Sales".into(),
        description: None,
        created_by: owner.clone(),
        created_at: at(1, 0, 0),
        updated_at: at(1, 0, 0),
        archived: false,
        published_version: None,
        last_activity_at: at(1, 0, 0),
    };
    s.projects.create_project(&project).await.expect("project");
    let body: VersionBody = serde_json::from_value(json!({
        "cells": [{"id": "orders", "type": "SQL", "connection": "warehouse",
                   "sql": "SELECT COUNT(*) AS n FROM orders"}],
        "app": {"cells": ["orders"]}
    }))
    .expect("version");
    s.projects
        .put_draft(&ws, &project.project_id, &body, at(1, 0, 0))
        .await
        .expect("draft");
    s.projects
        .publish(&ws, &project.project_id, &owner, at(1, 0, 0))
        .await
        .expect("publish");
    let schedule = Schedule {
        schedule_id: unique("sched"),
        project_id: project.project_id.clone(),
        workspace_id: ws.clone(),
        created_by: owner.clone(),
        creator_role: scheduled_runs::domain::model::ProjectRole::FullAccess,
        cadence: serde_json::from_value(json!({"kind": "DAILY", "hour": 9, "minute": 0}))
            .expect("cadence"),
        timezone: "UTC".into(),
        enabled: true,
        update_published_results: true,
        use_cached_sql_results: false,
        overlap_policy: Default::default(),
        hourly: false,
        created_at: at(1, 0, 0),
        updated_at: at(1, 0, 0),
        version: 1,
        notifications: Default::default(),
    };
    s.schedules
        .insert_schedule(&schedule, &ScheduleLimits::default())
        .await
        .expect("schedule");

    let queue = Arc::new(RecordingQueue::default());
    let events = Arc::new(RecordingEvents::default());
    let connectors = Arc::new(CountingConnectors {
        inner: LocalConnectorFactory::new(warehouses),
        opened: AtomicUsize::new(0),
    });
    let dispatch = Arc::new(DispatchService {
        path: s.run_path.clone(),
        projects: s.projects.clone(),
        schedules: s.schedules.clone(),
        runs: s.runs.clone(),
        queue: queue.clone(),
        events: events.clone(),
        clock: clock.clone(),
        settings: DispatchSettings::default(),
    });
    let mut settings = ExecutorSettings::new(dir.path().join("run-workdirs"));
    settings.watch_interval = std::time::Duration::from_millis(20);
    let executor = Arc::new(ExecutorService {
        path: s.run_path.clone(),
        runs: s.runs.clone(),
        cache: s.sql_cache.clone(),
        connectors: connectors.clone(),
        secrets,
        events: events.clone(),
        clock: clock.clone(),
        settings,
        plans: Default::default(),
    });
    Pipeline {
        stores: s.clone(),
        clock,
        queue,
        events,
        connectors,
        dispatch,
        executor,
        schedule,
        _dir: dir,
    }
}

/// `COPIES` deliveries of one fire at once, released together: one run, queued once, the
/// others see it as a duplicate; a late copy (past the re-queue delay) of a run that is
/// still pending queues it again, which the executor then absorbs.
pub async fn concurrent_fires_dispatch_one_run(s: &Stores) {
    let p = pipeline(s).await;
    let fire = at(10, 9, 0);
    p.clock.set(fire + Duration::seconds(2));
    let barrier = Arc::new(Barrier::new(COPIES));
    let tasks: Vec<_> = (0..COPIES)
        .map(|_| {
            let (dispatch, barrier) = (p.dispatch.clone(), barrier.clone());
            let (ws, id) = (
                p.schedule.workspace_id.clone(),
                p.schedule.schedule_id.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                dispatch.dispatch_scheduled(&ws, &id, fire).await
            })
        })
        .collect();
    let (mut queued, mut duplicates) = (0, 0);
    let mut run_ids = std::collections::HashSet::new();
    for task in tasks {
        match task.await.expect("task").expect("dispatch") {
            DispatchOutcome::Queued(run) => {
                queued += 1;
                run_ids.insert(run.run_id);
            }
            DispatchOutcome::Duplicate(run) => {
                duplicates += 1;
                run_ids.insert(run.run_id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((queued, duplicates), (1, COPIES - 1));
    assert_eq!(run_ids.len(), 1, "every copy names the same run");
    let messages = p.queue.0.lock().expect("queue").clone();
    assert_eq!(messages.len(), 1, "queued once: {messages:?}");
    let run_id = run_ids.into_iter().next().expect("one");
    let run = p
        .stores
        .runs
        .get_run(&p.schedule.workspace_id, &run_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(run.status, RunStatus::Pending);
    assert_eq!(run.scheduled_for, Some(fire));

    // The message was lost: a copy arriving after the re-queue delay queues it again.
    p.clock.set(fire + Duration::minutes(2));
    let late = p
        .dispatch
        .dispatch_scheduled(&p.schedule.workspace_id, &p.schedule.schedule_id, fire)
        .await
        .expect("late copy");
    assert!(matches!(late, DispatchOutcome::Duplicate(_)), "{late:?}");
    assert_eq!(p.queue.0.lock().expect("queue").len(), 2);
}

/// `COPIES` deliveries of one run message at once (SQS redelivery, a second executor):
/// one executes the run, the others find it taken; the cells run once, the run ends
/// `COMPLETED` on its first attempt with one `RUNNING` and one `COMPLETED` state event.
pub async fn concurrent_deliveries_execute_once(s: &Stores) {
    let p = pipeline(s).await;
    let fire = at(10, 9, 0);
    p.clock.set(fire);
    let outcome = p
        .dispatch
        .dispatch_scheduled(&p.schedule.workspace_id, &p.schedule.schedule_id, fire)
        .await
        .expect("dispatch");
    assert!(matches!(outcome, DispatchOutcome::Queued(_)), "{outcome:?}");
    let message = p.queue.0.lock().expect("queue")[0].clone();
    let barrier = Arc::new(Barrier::new(COPIES));
    let tasks: Vec<_> = (0..COPIES)
        .map(|_| {
            let (executor, barrier, message) =
                (p.executor.clone(), barrier.clone(), message.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                executor.execute(&message).await
            })
        })
        .collect();
    let (mut finished, mut ignored) = (0, 0);
    for task in tasks {
        match task.await.expect("task").expect("execute") {
            ExecuteOutcome::Finished(run) => {
                finished += 1;
                assert_eq!(run.status, RunStatus::Completed, "{run:?}");
            }
            ExecuteOutcome::Ignored => ignored += 1,
        }
    }
    assert_eq!((finished, ignored), (1, COPIES - 1));
    assert_eq!(
        p.connectors.opened.load(Ordering::SeqCst),
        1,
        "the cells ran once"
    );
    let run = p
        .stores
        .runs
        .get_run(&message.workspace_id, &message.run_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!((run.status, run.attempt), (RunStatus::Completed, 1));
    let statuses: Vec<&str> = run
        .state_events
        .iter()
        .filter(|e| e.event_type == "STATUS")
        .map(|e| e.value.as_str())
        .collect();
    assert_eq!(statuses, ["PENDING", "RUNNING", "COMPLETED"]);
    // Announced at least once, and every announcement is of the one ending.
    let events = p.events.0.lock().expect("events").clone();
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e.run_id == run.run_id && e.status == RunStatus::Completed),
        "{events:?}"
    );
    // A redelivery after the end does not run it again either.
    let again = p.executor.execute(&message).await.expect("execute");
    assert_eq!(again, ExecuteOutcome::Ignored);
    assert_eq!(p.connectors.opened.load(Ordering::SeqCst), 1);
}

/// A run whose every query is answered by the SQL cache opens no data connection: the
/// template renders for the connection's dialect, the cache is keyed by the rendered
/// statement, and the connector is opened only when a query has to run.
pub async fn cached_runs_open_no_connection(s: &Stores) {
    let p = pipeline(s).await;
    let execute = |fire: chrono::DateTime<chrono::Utc>| {
        let p = &p;
        async move {
            p.clock.set(fire);
            let outcome = p
                .dispatch
                .dispatch_scheduled(&p.schedule.workspace_id, &p.schedule.schedule_id, fire)
                .await
                .expect("dispatch");
            let DispatchOutcome::Queued(run) = outcome else {
                panic!("not queued: {outcome:?}");
            };
            let message = RunMessage::for_run(&run);
            match p.executor.execute(&message).await.expect("execute") {
                ExecuteOutcome::Finished(run) => *run,
                ExecuteOutcome::Ignored => panic!("the run was not executed"),
            }
        }
    };
    // The editor's schedule runs fresh queries and fills the cache.
    let fresh = execute(at(10, 9, 0)).await;
    assert_eq!(fresh.status, RunStatus::Completed, "{fresh:?}");
    assert!(
        fresh.cells.iter().all(|c| !c.cache_hit),
        "{:?}",
        fresh.cells
    );
    assert_eq!(p.connectors.opened.load(Ordering::SeqCst), 1);

    let mut cached = p.schedule.clone();
    cached.use_cached_sql_results = true;
    cached.version += 1;
    s.schedules
        .update_schedule(&cached, p.schedule.version, &ScheduleLimits::default())
        .await
        .expect("update schedule");
    let hit = execute(at(10, 10, 0)).await;
    assert_eq!(hit.status, RunStatus::Completed, "{hit:?}");
    assert!(!hit.cells.is_empty());
    assert!(hit.cells.iter().all(|c| c.cache_hit), "{:?}", hit.cells);
    assert_eq!(
        hit.cells.iter().map(|c| &c.rows).collect::<Vec<_>>(),
        fresh.cells.iter().map(|c| &c.rows).collect::<Vec<_>>(),
        "the cache answers what the query did"
    );
    assert_eq!(
        p.connectors.opened.load(Ordering::SeqCst),
        1,
        "a run served from the cache connected to the warehouse"
    );
}

/// The fires of `a_batch_of_fires_decides_each_as_one_after_another` on `p`: besides the
/// pipeline's schedule, schedules that skip for every reason, one allowed to overlap, one
/// whose fire was dispatched before, and one that does not exist.
async fn mixed_fires(p: &Pipeline) -> Vec<ScheduledFire> {
    let s = &p.stores;
    let main = &p.schedule;
    let ws = main.workspace_id.clone();
    let insert = |schedule: Schedule| async move {
        s.schedules
            .insert_schedule(&schedule, &ScheduleLimits::default())
            .await
            .expect("schedule");
        schedule
    };
    let variant = |change: &dyn Fn(&mut Schedule)| {
        let mut schedule = main.clone();
        schedule.schedule_id = unique("sched");
        change(&mut schedule);
        schedule
    };
    let disabled = insert(variant(&|s| s.enabled = false)).await;
    let stranger = insert(variant(&|s| s.created_by = unique("stranger"))).await;
    let overlapping = insert(variant(&|s| s.overlap_policy = OverlapPolicy::Allow)).await;
    let seen = insert(variant(&|_| {})).await;
    let mut archived_project = s
        .projects
        .get_project(&ws, &main.project_id)
        .await
        .expect("project")
        .expect("exists");
    archived_project.project_id = unique("proj");
    s.projects
        .create_project(&archived_project)
        .await
        .expect("project");
    s.projects
        .set_archived(&ws, &archived_project.project_id, true, at(1, 0, 0))
        .await
        .expect("archive");
    let archived = insert(variant(&|s| {
        s.project_id = archived_project.project_id.clone();
    }))
    .await;
    let (first, second) = (lasting(10, 9, 0), lasting(11, 9, 0));
    p.dispatch
        .dispatch_scheduled(&ws, &seen.schedule_id, first)
        .await
        .expect("earlier dispatch");
    let fire = |schedule: &Schedule, scheduled_for| ScheduledFire {
        request: FireRequest {
            workspace_id: ws.clone(),
            schedule_id: schedule.schedule_id.clone(),
            ..FireRequest::default()
        },
        scheduled_for,
    };
    let gone = Schedule {
        schedule_id: unique("gone"),
        ..main.clone()
    };
    vec![
        fire(main, first),
        fire(&disabled, first),
        fire(main, first),
        fire(&stranger, first),
        fire(main, second),
        fire(&archived, first),
        fire(&seen, first),
        fire(&gone, first),
        fire(&overlapping, first),
        fire(&overlapping, second),
    ]
}

/// What an outcome says, without the ids that differ from one pipeline to the next.
fn summary(outcome: &Result<DispatchOutcome, ServiceError>) -> String {
    match outcome {
        Ok(DispatchOutcome::Queued(run)) => format!("queued {:?}", run.scheduled_for),
        Ok(DispatchOutcome::Skipped(run)) => format!(
            "skipped {:?} {:?}",
            run.scheduled_for,
            run.skip_reason.map(SkipReason::as_str)
        ),
        Ok(DispatchOutcome::Duplicate(run)) => {
            format!("duplicate {:?} {:?}", run.scheduled_for, run.status)
        }
        Ok(DispatchOutcome::ScheduleGone) => "gone".into(),
        Err(e) => format!("error {e}"),
    }
}

/// A batch holding duplicates of a fire, two fires of one schedule, every skip reason, a
/// fire whose run exists and a deleted schedule: every fire gets the outcome it gets when
/// the same fires are dispatched one after another (on a twin pipeline), each run is
/// written once, queued runs are queued once and skipped runs announced.
pub async fn a_batch_of_fires_decides_each_as_one_after_another(s: &Stores) {
    let batched = pipeline(s).await;
    let one_by_one = pipeline(s).await;
    for p in [&batched, &one_by_one] {
        p.clock.set(lasting(11, 9, 0) + Duration::seconds(2));
    }
    let fires = mixed_fires(&batched).await;
    let twin_fires = mixed_fires(&one_by_one).await;
    for p in [&batched, &one_by_one] {
        p.queue.0.lock().expect("queue").clear();
        p.events.0.lock().expect("events").clear();
    }
    let outcomes = batched.dispatch.dispatch_fires(&fires).await;
    let mut expected = Vec::new();
    for fire in &twin_fires {
        expected.push(
            one_by_one
                .dispatch
                .dispatch_fire(&fire.request, fire.scheduled_for)
                .await,
        );
    }
    let got: Vec<String> = outcomes.iter().map(summary).collect();
    let want: Vec<String> = expected.iter().map(summary).collect();
    assert_eq!(got, want);
    let (first, second) = (Some(lasting(10, 9, 0)), Some(lasting(11, 9, 0)));
    assert_eq!(
        got,
        [
            format!("queued {first:?}"),
            format!("skipped {first:?} Some(\"SCHEDULE_DISABLED\")"),
            format!("duplicate {first:?} Pending"),
            format!("skipped {first:?} Some(\"CREATOR_NO_ACCESS\")"),
            format!("skipped {second:?} Some(\"OVERLAP\")"),
            format!("skipped {first:?} Some(\"PROJECT_ARCHIVED\")"),
            format!("duplicate {first:?} Pending"),
            "gone".to_owned(),
            format!("queued {first:?}"),
            format!("queued {second:?}"),
        ]
    );
    // Fires of one schedule are decided in rounds, so side effects need not follow the
    // batch's order: compare them as sets.
    let mut queued: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Ok(DispatchOutcome::Queued(run)) => Some(run.run_id.clone()),
            _ => None,
        })
        .collect();
    let mut messages: Vec<String> = batched
        .queue
        .0
        .lock()
        .expect("queue")
        .iter()
        .map(|m| m.run_id.clone())
        .collect();
    queued.sort();
    messages.sort();
    assert_eq!(messages, queued, "each new run queued once, nothing else");
    let mut skipped: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Ok(DispatchOutcome::Skipped(run)) => Some(run.run_id.clone()),
            _ => None,
        })
        .collect();
    let mut announced: Vec<String> = batched
        .events
        .0
        .lock()
        .expect("events")
        .iter()
        .map(|e| e.run_id.clone())
        .collect();
    skipped.sort();
    announced.sort();
    assert_eq!(announced, skipped);
    // One run per fire: the duplicate's run is the first fire's.
    for (i, outcome) in outcomes.iter().enumerate() {
        let run = match outcome {
            Ok(
                DispatchOutcome::Queued(run)
                | DispatchOutcome::Skipped(run)
                | DispatchOutcome::Duplicate(run),
            ) => run,
            _ => continue,
        };
        let stored = s
            .runs
            .get_run(&run.workspace_id, &run.run_id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(
            stored.scheduled_for,
            Some(fires[i].scheduled_for),
            "fire {i}"
        );
        if let Ok(DispatchOutcome::Queued(run) | DispatchOutcome::Skipped(run)) = outcome {
            assert_eq!(&stored, run.as_ref(), "fire {i}");
        }
    }
}

/// The run store, but the next batch of creations fails part-way the worst way: the
/// first half of the runs is written and yet every run of the batch is reported failed
/// (the answer was lost).
struct LosesABatch {
    inner: Arc<dyn RunStore>,
    armed: AtomicBool,
}

#[async_trait]
impl RunStore for LosesABatch {
    async fn create_run_if_absent(&self, run: &Run) -> Result<RunCreated, PortError> {
        self.inner.create_run_if_absent(run).await
    }
    async fn create_runs_if_absent(&self, runs: &[Run]) -> Vec<Result<RunCreated, PortError>> {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return self.inner.create_runs_if_absent(runs).await;
        }
        let landed = self
            .inner
            .create_runs_if_absent(&runs[..runs.len() / 2])
            .await;
        assert!(landed.iter().all(Result::is_ok), "{landed:?}");
        runs.iter()
            .map(|_| {
                Err(PortError::unavailable(
                    "injected: the batch failed part-way",
                ))
            })
            .collect()
    }
    async fn get_run(&self, workspace_id: &str, run_id: &str) -> Result<Option<Run>, PortError> {
        self.inner.get_run(workspace_id, run_id).await
    }
    async fn list_schedule_runs(
        &self,
        workspace_id: &str,
        schedule_id: &str,
        as_of: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Run>, PortError> {
        self.inner
            .list_schedule_runs(workspace_id, schedule_id, as_of, page)
            .await
    }
    async fn last_fire_times(&self) -> Result<Vec<(String, DateTime<Utc>)>, PortError> {
        self.inner.last_fire_times().await
    }
    async fn update_run(&self, run: &Run, expected: RunGuard) -> Result<(), PortError> {
        self.inner.update_run(run, expected).await
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
        self.inner
            .list_project_runs(workspace_id, project_id, filter, as_of, offset, limit)
            .await
    }
    async fn list_active_runs(&self, page: &PageRequest) -> Result<Page<Run>, PortError> {
        self.inner.list_active_runs(page).await
    }
    async fn purge_expired_runs(&self, as_of: DateTime<Utc>, limit: u32) -> Result<u64, PortError> {
        self.inner.purge_expired_runs(as_of, limit).await
    }
}

/// A batch whose write fails part-way (half of it written, all of it reported failed)
/// fails every fire, so each is retried; the retry finds the runs that were written and
/// creates the others. No fire is lost and none gets two runs: the runs written by the
/// failed batch are queued by a later delivery once they are stale (or by the sweeper).
pub async fn a_batch_that_fails_part_way_is_retried_without_loss_or_doubles(s: &Stores) {
    let p = pipeline(s).await;
    let fire_at = lasting(10, 9, 0);
    p.clock.set(fire_at + Duration::seconds(2));
    let mut schedules = vec![p.schedule.clone()];
    for _ in 0..5 {
        let mut schedule = p.schedule.clone();
        schedule.schedule_id = unique("sched");
        s.schedules
            .insert_schedule(&schedule, &ScheduleLimits::default())
            .await
            .expect("schedule");
        schedules.push(schedule);
    }
    let fires: Vec<ScheduledFire> = schedules
        .iter()
        .map(|schedule| ScheduledFire {
            request: FireRequest {
                workspace_id: schedule.workspace_id.clone(),
                schedule_id: schedule.schedule_id.clone(),
                ..FireRequest::default()
            },
            scheduled_for: fire_at,
        })
        .collect();
    let runs = Arc::new(LosesABatch {
        inner: s.runs.clone(),
        armed: AtomicBool::new(true),
    });
    let d = &p.dispatch;
    let dispatch = DispatchService {
        path: d.path.clone(),
        projects: d.projects.clone(),
        schedules: d.schedules.clone(),
        runs,
        queue: d.queue.clone(),
        events: d.events.clone(),
        clock: d.clock.clone(),
        settings: d.settings,
    };

    let failed = dispatch.dispatch_fires(&fires).await;
    assert!(failed.iter().all(Result::is_err), "{failed:?}");
    assert!(p.queue.0.lock().expect("queue").is_empty());

    // The retry (the timer's backoff): the written half is found, the rest created.
    let retried = dispatch.dispatch_fires(&fires).await;
    let kinds: Vec<&str> = retried
        .iter()
        .map(|o| match o {
            Ok(DispatchOutcome::Duplicate(_)) => "duplicate",
            Ok(DispatchOutcome::Queued(_)) => "queued",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "duplicate",
            "duplicate",
            "duplicate",
            "queued",
            "queued",
            "queued"
        ]
    );

    // A delivery after the re-queue delay queues the runs the failed batch wrote.
    p.clock.advance(d.settings.requeue_after);
    let late = dispatch.dispatch_fires(&fires).await;
    assert!(
        late.iter()
            .all(|o| matches!(o, Ok(DispatchOutcome::Duplicate(_)))),
        "{late:?}"
    );
    let queued: std::collections::HashSet<String> = p
        .queue
        .0
        .lock()
        .expect("queue")
        .iter()
        .map(|m| m.run_id.clone())
        .collect();
    for schedule in &schedules {
        let log = s
            .runs
            .list_schedule_runs(
                &schedule.workspace_id,
                &schedule.schedule_id,
                p.clock.now(),
                &PageRequest::first(10),
            )
            .await
            .expect("run log");
        assert_eq!(log.items.len(), 1, "one run for the fire: {:?}", log.items);
        assert!(
            queued.contains(&log.items[0].run_id),
            "the run of {} was queued",
            schedule.schedule_id
        );
    }
}
