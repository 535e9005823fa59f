//! Duplicate deliveries on the at-least-once edges, written once against the ports and run
//! on every store (RELIABILITY.md, requirement 2): the scheduler → dispatch edge (many
//! deliveries of one fire at once) and the queue → execute edge (many deliveries of one run
//! message at once) must yield one run, queued once, executed once. The services are the
//! product's (`DispatchService`, `ExecutorService`); only the queue and the event publisher
//! are recorders, and the SQL connector factory is the embedded one behind a counter, so
//! "executed once" is counted where the work happens.
//!
//! The topic → notify edge is `notify_service.rs` (`a_repeated_event_sends_nothing_twice`)
//! and `notify_e2e.rs` on SQLite; on DynamoDB it waits for the DynamoDB notification stores.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Duration;
use scheduled_runs::adapters::local::clock::ManualClock;
use scheduled_runs::adapters::local::secret_box::LocalSecretBox;
use scheduled_runs::adapters::sql::LocalConnectorFactory;
use scheduled_runs::demo;
use scheduled_runs::domain::model::{
    Caller, ConnectionConfig, Plan, RunStatus, Schedule, VersionBody, Workspace, WorkspaceRole,
};
use scheduled_runs::ports::{
    ConnectorFactory, EventPublisher, PortError, QueryError, RunEvent, RunMessage, RunQueue,
    ScheduleLimits, SqlConnector,
};
use scheduled_runs::services::connections::ConnectionService;
use scheduled_runs::services::dispatch::{DispatchOutcome, DispatchService, DispatchSettings};
use scheduled_runs::services::executor::{ExecuteOutcome, ExecutorService, ExecutorSettings};
use serde_json::json;
use tokio::sync::Barrier;

use crate::contract::{Stores, at, unique};

/// How many copies of one delivery arrive at once.
pub const COPIES: usize = 25;

/// A queue that keeps what was sent.
#[derive(Default)]
pub struct RecordingQueue(pub Mutex<Vec<RunMessage>>);

#[async_trait]
impl RunQueue for RecordingQueue {
    async fn enqueue(&self, message: &RunMessage) -> Result<(), PortError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message.clone());
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
