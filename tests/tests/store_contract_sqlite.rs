//! The store contract against the embedded SQLite store: every behaviour of
//! `scheduled_runs_tests::contract` on a fresh database file in its own temp dir, plus what
//! only a file-backed store can show (state survives closing and reopening the file).

use chrono::{DateTime, TimeZone, Utc};
use scheduled_runs::adapters::local::sqlite::SqliteStore;
use scheduled_runs::domain::model::{
    Member, OverlapPolicy, Plan, Project, ProjectRole, Run, RunStatus, RunTrigger, Schedule, User,
    VersionBody, Workspace, WorkspaceRole,
};
use scheduled_runs::ports::{
    PageRequest, ProjectStore, RunStore, ScheduleFilter, ScheduleLimits, ScheduleStore,
    WorkspaceStore,
};
use scheduled_runs_tests::contract::Stores;
use tempfile::TempDir;

/// A new store on a new file; the temp dir (and the file) go away when the test ends.
async fn fresh() -> (TempDir, Stores) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("state.db")).expect("open sqlite store");
    (dir, Stores::from_store(store))
}

scheduled_runs_tests::store_contract_tests!(fresh);

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, day, hour, 0, 0)
        .single()
        .expect("fixture instant is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopening_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");

    let workspace = Workspace {
        workspace_id: "ws-reopen".to_owned(),
        plan: Plan::Enterprise,
        auto_archive_after_days: Some(30),
        created_at: at(1, 9),
    };
    let user = User {
        user_id: "ada".to_owned(),
        workspace_id: workspace.workspace_id.clone(),
        email: Some("ada@example.com".to_owned()),
        workspace_role: WorkspaceRole::Admin,
    };
    let project = Project {
        project_id: "proj-reopen".to_owned(),
        workspace_id: workspace.workspace_id.clone(),
        title: "Revenue".to_owned(),
        description: None,
        created_by: user.user_id.clone(),
        created_at: at(1, 10),
        updated_at: at(1, 10),
        archived: false,
        published_version: None,
        last_activity_at: at(1, 10),
    };
    let draft: VersionBody = serde_json::from_value(serde_json::json!({
        "inputs": [{"name": "n", "type": "NUMBER", "default": 3}],
        "cells": [{"id": "c", "type": "SQL", "connection": "demo", "sql": "select 1"}],
        "app": {"cells": ["c"]}
    }))
    .expect("draft JSON");
    let member = Member {
        project_id: project.project_id.clone(),
        user_id: "grace".to_owned(),
        role: ProjectRole::CanExplore,
    };
    let schedule = Schedule {
        schedule_id: "sched-reopen".to_owned(),
        project_id: project.project_id.clone(),
        workspace_id: workspace.workspace_id.clone(),
        created_by: user.user_id.clone(),
        creator_role: ProjectRole::FullAccess,
        cadence: serde_json::from_value(
            serde_json::json!({"kind": "DAILY", "hour": 7, "minute": 30}),
        )
        .expect("cadence JSON"),
        timezone: "America/New_York".to_owned(),
        enabled: true,
        update_published_results: true,
        use_cached_sql_results: false,
        overlap_policy: OverlapPolicy::Allow,
        hourly: false,
        created_at: at(2, 9),
        updated_at: at(2, 9),
        version: 1,
        notifications: Default::default(),
    };
    let fire = at(3, 11);
    let run = Run {
        run_id: Run::scheduled_run_id(&schedule.schedule_id, fire),
        project_id: project.project_id.clone(),
        workspace_id: workspace.workspace_id.clone(),
        schedule_id: Some(schedule.schedule_id.clone()),
        run_trigger: RunTrigger::Scheduled,
        status: RunStatus::Pending,
        scheduled_for: Some(fire),
        project_version: Some(1),
        created_by: user.user_id.clone(),
        created_at: fire,
        start_time: None,
        end_time: None,
        skip_reason: None,
        update_published_results: true,
        use_cached_sql_results: false,
        input_params: serde_json::Map::new(),
        trace_id: "trace-reopen".to_owned(),
        state_events: Vec::new(),
        expires_at: at(30, 0),
        attempt: 0,
        lease_until: None,
        cells: Vec::new(),
        error: None,
        notification_settings: Default::default(),
        event_pending: false,
        notifications: Vec::new(),
    };

    {
        let store = SqliteStore::open(&path).expect("open");
        store.create_workspace(&workspace).await.expect("workspace");
        store.upsert_user(&user).await.expect("user");
        store.create_project(&project).await.expect("project");
        store
            .put_draft(
                &workspace.workspace_id,
                &project.project_id,
                &draft,
                at(1, 11),
            )
            .await
            .expect("draft");
        store
            .publish(
                &workspace.workspace_id,
                &project.project_id,
                "ada",
                at(1, 12),
            )
            .await
            .expect("publish");
        store
            .put_member(&workspace.workspace_id, &member)
            .await
            .expect("member");
        store
            .insert_schedule(&schedule, &ScheduleLimits::default())
            .await
            .expect("schedule");
        store.create_run_if_absent(&run).await.expect("run");
        store
            .set_archived(&workspace.workspace_id, &project.project_id, true, at(4, 9))
            .await
            .expect("archive");
        // Dropping the last handle closes every connection.
    }

    let store = SqliteStore::open(&path).expect("reopen");
    let ws = workspace.workspace_id.as_str();
    let pid = project.project_id.as_str();
    assert_eq!(
        store.get_workspace(ws).await.expect("workspace"),
        Some(workspace.clone())
    );
    assert_eq!(store.get_user(ws, "ada").await.expect("user"), Some(user));
    let reopened = store
        .get_project(ws, pid)
        .await
        .expect("project")
        .expect("project exists");
    assert_eq!(
        reopened,
        Project {
            archived: true,
            published_version: Some(1),
            updated_at: at(4, 9),
            ..project.clone()
        }
    );
    assert_eq!(
        store.get_draft(ws, pid).await.expect("draft"),
        Some(draft.clone())
    );
    let version = store
        .get_version(ws, pid, 1)
        .await
        .expect("version")
        .expect("version exists");
    assert_eq!((version.body, version.published_at), (draft, at(1, 12)));
    assert_eq!(
        store.get_member_role(ws, pid, "grace").await.expect("role"),
        Some(ProjectRole::CanExplore)
    );
    assert_eq!(
        store.get_member_role(ws, pid, "ada").await.expect("role"),
        Some(ProjectRole::FullAccess)
    );
    assert_eq!(
        store
            .get_schedule(ws, &schedule.schedule_id)
            .await
            .expect("schedule"),
        Some(schedule.clone())
    );
    assert_eq!(
        store
            .list_workspace_schedules(ws, &ScheduleFilter::default(), &PageRequest::first(10))
            .await
            .expect("list")
            .items,
        vec![schedule.clone()]
    );
    let all = store
        .list_all_schedules(&PageRequest::first(10))
        .await
        .expect("all");
    assert_eq!(
        all.items,
        vec![(schedule.clone(), false)],
        "archived stays archived"
    );
    assert_eq!(
        store.get_run(ws, &run.run_id).await.expect("run"),
        Some(run.clone())
    );
    assert_eq!(
        store.last_fire_times().await.expect("fire times"),
        vec![(schedule.schedule_id.clone(), fire)]
    );
    // The reopened file keeps enforcing what it enforced before.
    assert!(matches!(
        store.create_workspace(&workspace).await,
        Err(scheduled_runs::ports::PortError::AlreadyExists)
    ));
}

#[tokio::test]
async fn purge_removes_only_expired_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("state.db")).expect("open");
    let stores = Stores::from_store(store);
    let ws = Workspace {
        workspace_id: "ws-purge".to_owned(),
        plan: Plan::Team,
        auto_archive_after_days: None,
        created_at: at(1, 0),
    };
    stores.workspaces.create_workspace(&ws).await.expect("ws");
    let project = Project {
        project_id: "p".to_owned(),
        workspace_id: ws.workspace_id.clone(),
        title: "t".to_owned(),
        description: None,
        created_by: "u".to_owned(),
        created_at: at(1, 0),
        updated_at: at(1, 0),
        archived: false,
        published_version: None,
        last_activity_at: at(1, 0),
    };
    stores
        .projects
        .create_project(&project)
        .await
        .expect("project");
    let run = |id: &str, expires_at: DateTime<Utc>| Run {
        run_id: id.to_owned(),
        project_id: "p".to_owned(),
        workspace_id: ws.workspace_id.clone(),
        schedule_id: None,
        run_trigger: RunTrigger::Api,
        status: RunStatus::Completed,
        scheduled_for: None,
        project_version: None,
        created_by: "u".to_owned(),
        created_at: at(1, 1),
        start_time: None,
        end_time: None,
        skip_reason: None,
        update_published_results: false,
        use_cached_sql_results: true,
        input_params: serde_json::Map::new(),
        trace_id: "t".to_owned(),
        state_events: Vec::new(),
        expires_at,
        attempt: 0,
        lease_until: None,
        cells: Vec::new(),
        error: None,
        notification_settings: Default::default(),
        event_pending: false,
        notifications: Vec::new(),
    };
    for r in [
        run("old", at(10, 0)),
        run("edge", at(11, 0)),
        run("new", at(12, 0)),
    ] {
        stores.runs.create_run_if_absent(&r).await.expect("run");
    }

    // At most `limit` per call: the two expired runs go one at a time.
    assert_eq!(
        stores
            .runs
            .purge_expired_runs(at(11, 0), 1)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(
        stores
            .runs
            .purge_expired_runs(at(11, 0), 10)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(
        stores
            .runs
            .purge_expired_runs(at(11, 0), 10)
            .await
            .expect("purge"),
        0
    );
    assert_eq!(
        stores.runs.get_run("ws-purge", "old").await.expect("get"),
        None
    );
    assert_eq!(
        stores.runs.get_run("ws-purge", "edge").await.expect("get"),
        None
    );
    assert!(
        stores
            .runs
            .get_run("ws-purge", "new")
            .await
            .expect("get")
            .is_some()
    );
}

// Duplicate deliveries on the at-least-once edges, through the product's services on this
// store (scheduled_runs_tests::duplicates).

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_fires_dispatch_one_run() {
    let (_keep, s) = fresh().await;
    scheduled_runs_tests::duplicates::concurrent_fires_dispatch_one_run(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_fires_decides_each_as_one_after_another() {
    let (_keep, s) = fresh().await;
    scheduled_runs_tests::duplicates::a_batch_of_fires_decides_each_as_one_after_another(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_fails_part_way_is_retried_without_loss_or_doubles() {
    let (_keep, s) = fresh().await;
    scheduled_runs_tests::duplicates::a_batch_that_fails_part_way_is_retried_without_loss_or_doubles(&s)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_run_messages_execute_once() {
    let (_keep, s) = fresh().await;
    scheduled_runs_tests::duplicates::concurrent_deliveries_execute_once(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_runs_open_no_connection() {
    let (_keep, s) = fresh().await;
    scheduled_runs_tests::duplicates::cached_runs_open_no_connection(&s).await;
}
