//! The store contract: what every state-store backend must do, written once against the
//! port traits. The embedded SQLite store runs it always; the DynamoDB store runs the same
//! functions when DynamoDB Local is up. A backend's test file only says how to make a fresh
//! store — `store_contract_tests!` expands to one test per behaviour — so no backend can
//! quietly skip a behaviour.
//!
//! Every behaviour creates its own uniquely named workspaces, users and projects, so the
//! functions also hold on a store shared by many tests (one DynamoDB table). Listings that
//! span workspaces (`list_all_schedules`, `last_fire_times`) are therefore checked only for
//! this behaviour's own rows (`list_workspaces`, `list_active_runs` likewise). All instants
//! are fixed; nothing depends on the wall clock.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use scheduled_runs::domain::cadence::Cadence;
use scheduled_runs::domain::model::{
    CachedResult, CellResult, CellStatus, Connection, ConnectionKind, DeliveryChannel,
    DeliveryRecord, DeliveryStatus, Integrations, Member, NotificationSettings, OverlapPolicy,
    Plan, Project, ProjectRole, PublishedResults, Run, RunError, RunGuard, RunStatus, RunTrigger,
    Schedule, SlackIntegration, StateEvent, User, VersionBody, WebhookSigningSecret, Workspace,
    WorkspaceRole,
};
use scheduled_runs::ports::{
    ConnectionStore, DeliveryClaim, DeliveryStore, IntegrationStore, LimitKind, Page, PageRequest,
    PortError, ProjectStore, RateLimitStore, ResultsStore, RunCreated, RunEventOutbox, RunFilter,
    RunPathStore, RunStart, RunStore, ScheduleFilter, ScheduleLimits, ScheduleStore,
    ScheduleTrigger, SqlCacheStore, WorkspaceStore, started_run,
};
use scheduled_runs::ports::{ExecutionInputs, FireContext, FireRequest};
use serde_json::json;
use tokio::sync::Barrier;

/// The store under test, as the services see it: one trait object per port. `Arc` so the
/// concurrency behaviours can hand the stores to spawned tasks.
#[derive(Clone)]
pub struct Stores {
    pub workspaces: Arc<dyn WorkspaceStore>,
    pub projects: Arc<dyn ProjectStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    pub runs: Arc<dyn RunStore>,
    pub results: Arc<dyn ResultsStore>,
    pub connections: Arc<dyn ConnectionStore>,
    pub sql_cache: Arc<dyn SqlCacheStore>,
    pub rate_limits: Arc<dyn RateLimitStore>,
    pub run_path: Arc<dyn RunPathStore>,
}

impl Stores {
    /// Bundles a backend that implements every store port.
    pub fn from_store<S>(store: S) -> Stores
    where
        S: WorkspaceStore
            + ProjectStore
            + ScheduleStore
            + RunStore
            + ResultsStore
            + ConnectionStore
            + SqlCacheStore
            + RateLimitStore
            + RunPathStore
            + 'static,
    {
        let store = Arc::new(store);
        Stores {
            workspaces: store.clone(),
            projects: store.clone(),
            schedules: store.clone(),
            runs: store.clone(),
            results: store.clone(),
            connections: store.clone(),
            sql_cache: store.clone(),
            rate_limits: store.clone(),
            run_path: store,
        }
    }
}

/// Expands to one `#[tokio::test]` per contract behaviour. `$fresh` is an `async fn()`
/// returning `(guard, Stores)`; the guard (a temp dir, a table name, ...) lives as long as
/// the test. Multi-threaded so the concurrency behaviours race for real.
#[macro_export]
macro_rules! store_contract_tests {
    ($fresh:path) => {
        $crate::store_contract_tests!(@each $fresh;
            workspace_create_get_and_duplicate,
            workspace_plan_and_auto_archive,
            user_upsert_inserts_then_updates,
            project_create_starts_with_empty_draft_and_full_access_creator,
            project_listing_pages_all_and_member_only,
            project_listing_is_stable_under_inserts,
            draft_put_and_get,
            publish_snapshots_the_draft_into_numbered_versions,
            archive_and_unarchive,
            activity_only_moves_forward,
            member_put_replaces_role,
            member_remove_then_not_found,
            tenant_isolation,
            schedule_insert_get_update_delete,
            project_schedules_oldest_first_with_pages,
            workspace_schedules_filter_and_page,
            all_schedules_report_whether_they_should_fire,
            limit_per_project_counts_every_creator,
            limit_per_creator_counts_only_that_creator,
            hourly_limit_counts_only_hourly_schedules,
            update_rechecks_only_the_hourly_limit,
            limits_are_checked_in_a_fixed_order,
            concurrent_inserts_respect_the_creator_limit,
            concurrent_inserts_respect_the_project_limit,
            run_creation_is_idempotent,
            batch_run_creation_answers_each_run_as_one_by_one,
            concurrent_run_creation_creates_once,
            run_log_newest_first_with_pages_and_expiry,
            last_fire_times_are_the_latest_fire_per_schedule,
            runs_outlive_their_schedule,
            foreign_cursor_is_invalid,
            workspaces_list_oldest_first_with_pages,
            inactive_projects_oldest_activity_first,
            run_update_is_conditional_on_status_and_attempt,
            concurrent_run_updates_succeed_once,
            project_runs_newest_first_with_filters_offset_and_expiry,
            active_runs_span_workspaces_with_pages,
            purge_deletes_at_most_limit_expired_runs,
            results_are_replaced_only_by_newer_ones,
            concurrent_results_keep_the_newest,
            connections_upsert_get_and_list,
            sql_cache_get_expiry_and_overwrite,
            rate_limit_counts_up_to_the_limit_per_window,
            concurrent_hits_count_exactly_the_limit,
            notification_settings_round_trip_on_schedules_and_runs,
            fire_context_holds_everything_dispatch_checks,
            fire_context_tracks_the_schedules_active_run,
            fire_contexts_load_together_as_one_by_one,
            start_takes_only_a_pending_run,
            end_run_writes_the_run_and_only_newer_results,
            execution_inputs_are_the_version_and_its_connections,
        );
    };
    (@each $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (_guard, stores) = $fresh().await;
                $crate::contract::$name(&stores).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// A fixed instant on 2026-03-`day` (UTC).
pub fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, minute, 0)
        .single()
        .expect("fixture instant is valid")
}

/// A fixed instant on 2099-03-`day` (UTC), for records that must outlive the test on a
/// store that expires items by its own clock: DynamoDB Local deletes, at moments of its
/// choosing, items whose TTL is past on the machine's wall clock, as 2026 fixtures soon are.
pub fn lasting(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2099, 3, day, hour, minute, 0)
        .single()
        .expect("fixture instant is valid")
}

/// An id no other test (or earlier run against a persistent store) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn cadence(hourly: bool) -> Cadence {
    let value = if hourly {
        json!({"kind": "HOURLY", "minute": 15})
    } else {
        json!({"kind": "DAILY", "hour": 9, "minute": 0})
    };
    serde_json::from_value(value).expect("SPEC §4 cadence JSON decodes")
}

fn body(marker: &str) -> VersionBody {
    serde_json::from_value(json!({
        "inputs": [{"name": "region", "type": "TEXT", "default": marker}],
        "cells": [{"id": "c1", "type": "SQL", "connection": "warehouse",
                   "sql": format!("select '{marker}'")}],
        "app": {"cells": ["c1"]}
    }))
    .expect("version body JSON decodes")
}

async fn new_workspace(s: &Stores, plan: Plan) -> String {
    let id = unique("ws");
    let ws = Workspace {
        workspace_id: id.clone(),
        plan,
        auto_archive_after_days: None,
        created_at: at(1, 0, 0),
    };
    s.workspaces
        .create_workspace(&ws)
        .await
        .expect("create workspace");
    id
}

fn project_value(workspace_id: &str, creator: &str, created_at: DateTime<Utc>) -> Project {
    Project {
        project_id: unique("proj"),
        workspace_id: workspace_id.to_owned(),
        title: "Weekly revenue".to_owned(),
        description: Some("the numbers".to_owned()),
        created_by: creator.to_owned(),
        created_at,
        updated_at: created_at,
        archived: false,
        published_version: None,
        last_activity_at: created_at,
    }
}

async fn new_project(
    s: &Stores,
    workspace_id: &str,
    creator: &str,
    created_at: DateTime<Utc>,
) -> Project {
    let p = project_value(workspace_id, creator, created_at);
    s.projects.create_project(&p).await.expect("create project");
    p
}

fn schedule_value(
    project: &Project,
    creator: &str,
    hourly: bool,
    created_at: DateTime<Utc>,
) -> Schedule {
    Schedule {
        schedule_id: unique("sched"),
        project_id: project.project_id.clone(),
        workspace_id: project.workspace_id.clone(),
        created_by: creator.to_owned(),
        creator_role: ProjectRole::CanEdit,
        cadence: cadence(hourly),
        timezone: "Europe/Berlin".to_owned(),
        enabled: true,
        update_published_results: true,
        use_cached_sql_results: false,
        overlap_policy: OverlapPolicy::Skip,
        hourly,
        created_at,
        updated_at: created_at,
        version: 1,
        notifications: Default::default(),
    }
}

async fn new_schedule(
    s: &Stores,
    project: &Project,
    creator: &str,
    hourly: bool,
    created_at: DateTime<Utc>,
) -> Schedule {
    let schedule = schedule_value(project, creator, hourly, created_at);
    s.schedules
        .insert_schedule(&schedule, &ScheduleLimits::default())
        .await
        .expect("insert schedule");
    schedule
}

/// A run of `schedule` (scheduled when `scheduled_for` is set, manual otherwise), or an
/// API run when `schedule` is `None`.
fn run_value(
    project: &Project,
    schedule: Option<&Schedule>,
    scheduled_for: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Run {
    let (run_id, trigger) = match (schedule, scheduled_for) {
        (Some(s), Some(t)) => (
            Run::scheduled_run_id(&s.schedule_id, t),
            RunTrigger::Scheduled,
        ),
        (Some(_), None) => (unique("run"), RunTrigger::Manual),
        (None, _) => (unique("run"), RunTrigger::Api),
    };
    Run {
        run_id,
        project_id: project.project_id.clone(),
        workspace_id: project.workspace_id.clone(),
        schedule_id: schedule.map(|s| s.schedule_id.clone()),
        run_trigger: trigger,
        status: RunStatus::Pending,
        scheduled_for,
        project_version: Some(1),
        created_by: project.created_by.clone(),
        created_at,
        start_time: None,
        end_time: None,
        skip_reason: None,
        update_published_results: false,
        use_cached_sql_results: true,
        input_params: serde_json::Map::new(),
        trace_id: unique("trace"),
        state_events: Vec::new(),
        expires_at,
        attempt: 0,
        lease_until: None,
        cells: Vec::new(),
        error: None,
        notification_settings: Default::default(),
        event_pending: false,
        notifications: Vec::new(),
    }
}

async fn create_run(s: &Stores, run: &Run) {
    let created = s.runs.create_run_if_absent(run).await.expect("create run");
    assert_eq!(created, RunCreated::Created, "run {} is new", run.run_id);
}

/// Follows `next_cursor` to the end; returns every item and the size of each page.
async fn all_pages<T, F, Fut>(limit: u32, mut fetch: F) -> (Vec<T>, Vec<usize>)
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, PortError>>,
{
    let mut request = PageRequest::first(limit);
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let page = fetch(request.clone()).await.expect("list page");
        assert!(
            page.items.len() <= limit as usize,
            "a page holds at most `limit` items"
        );
        sizes.push(page.items.len());
        items.extend(page.items);
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
        assert!(sizes.len() < 1000, "pagination does not terminate");
    }
    (items, sizes)
}

fn ids<'a>(schedules: impl IntoIterator<Item = &'a Schedule>) -> Vec<String> {
    schedules
        .into_iter()
        .map(|s| s.schedule_id.clone())
        .collect()
}

fn assert_limit(result: Result<(), PortError>, kind: LimitKind) {
    assert!(
        matches!(result, Err(PortError::LimitReached(k)) if k == kind),
        "expected LimitReached({kind:?}), got {result:?}"
    );
}

fn assert_invalid_cursor<T: std::fmt::Debug>(result: Result<T, PortError>, what: &str) {
    assert!(
        matches!(result, Err(PortError::InvalidCursor)),
        "{what}: expected InvalidCursor, got {result:?}"
    );
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, PortError>, what: &str) {
    assert!(
        matches!(result, Err(PortError::NotFound)),
        "{what}: expected NotFound, got {result:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Workspaces and users
// ---------------------------------------------------------------------------------------

pub async fn workspace_create_get_and_duplicate(s: &Stores) {
    let ws = Workspace {
        workspace_id: unique("ws"),
        plan: Plan::Team,
        auto_archive_after_days: Some(14),
        created_at: at(1, 8, 0),
    };
    s.workspaces.create_workspace(&ws).await.expect("create");
    assert_eq!(
        s.workspaces
            .get_workspace(&ws.workspace_id)
            .await
            .expect("get"),
        Some(ws.clone())
    );

    let again = Workspace {
        plan: Plan::Enterprise,
        ..ws.clone()
    };
    let duplicate = s.workspaces.create_workspace(&again).await;
    assert!(
        matches!(duplicate, Err(PortError::AlreadyExists)),
        "{duplicate:?}"
    );
    assert_eq!(
        s.workspaces
            .get_workspace(&ws.workspace_id)
            .await
            .expect("get"),
        Some(ws),
        "a refused duplicate changes nothing"
    );
    assert_eq!(
        s.workspaces
            .get_workspace(&unique("ws"))
            .await
            .expect("get unknown"),
        None
    );
}

pub async fn workspace_plan_and_auto_archive(s: &Stores) {
    let id = new_workspace(s, Plan::Professional).await;

    let upgraded = s
        .workspaces
        .set_plan(&id, Plan::Enterprise)
        .await
        .expect("set plan");
    assert_eq!(upgraded.plan, Plan::Enterprise);
    assert_eq!(upgraded.created_at, at(1, 0, 0), "other fields kept");
    assert_eq!(
        s.workspaces.get_workspace(&id).await.expect("get"),
        Some(upgraded)
    );

    let with_rule = s
        .workspaces
        .set_auto_archive(&id, Some(30))
        .await
        .expect("set rule");
    assert_eq!(with_rule.auto_archive_after_days, Some(30));
    assert_eq!(with_rule.plan, Plan::Enterprise, "plan kept");
    let without = s
        .workspaces
        .set_auto_archive(&id, None)
        .await
        .expect("clear rule");
    assert_eq!(without.auto_archive_after_days, None);
    assert_eq!(
        s.workspaces.get_workspace(&id).await.expect("get"),
        Some(without)
    );

    let unknown = unique("ws");
    assert_not_found(
        s.workspaces.set_plan(&unknown, Plan::Team).await,
        "set_plan",
    );
    assert_not_found(
        s.workspaces.set_auto_archive(&unknown, Some(1)).await,
        "set_auto_archive",
    );
}

pub async fn user_upsert_inserts_then_updates(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let user_id = unique("user");
    assert_eq!(
        s.workspaces.get_user(&ws, &user_id).await.expect("get"),
        None
    );

    let first = User {
        user_id: user_id.clone(),
        workspace_id: ws.clone(),
        email: Some("old@example.com".to_owned()),
        workspace_role: WorkspaceRole::Member,
    };
    s.workspaces.upsert_user(&first).await.expect("insert");
    assert_eq!(
        s.workspaces.get_user(&ws, &user_id).await.expect("get"),
        Some(first.clone())
    );

    let second = User {
        email: Some("new@example.com".to_owned()),
        workspace_role: WorkspaceRole::Admin,
        ..first.clone()
    };
    s.workspaces.upsert_user(&second).await.expect("update");
    assert_eq!(
        s.workspaces.get_user(&ws, &user_id).await.expect("get"),
        Some(second.clone())
    );

    let no_email = User {
        email: None,
        ..second
    };
    s.workspaces.upsert_user(&no_email).await.expect("clear");
    assert_eq!(
        s.workspaces.get_user(&ws, &user_id).await.expect("get"),
        Some(no_email)
    );
}

// ---------------------------------------------------------------------------------------
// Projects
// ---------------------------------------------------------------------------------------

pub async fn project_create_starts_with_empty_draft_and_full_access_creator(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;

    assert_eq!(
        s.projects
            .get_project(&ws, &p.project_id)
            .await
            .expect("get"),
        Some(p.clone())
    );
    assert_eq!(
        s.projects
            .get_draft(&ws, &p.project_id)
            .await
            .expect("draft"),
        Some(VersionBody::default())
    );
    assert_eq!(
        s.projects
            .get_member_role(&ws, &p.project_id, &owner)
            .await
            .expect("role"),
        Some(ProjectRole::FullAccess)
    );
    assert_eq!(
        s.projects
            .get_member_role(&ws, &p.project_id, &unique("stranger"))
            .await
            .expect("role"),
        None
    );
    assert_eq!(
        s.projects
            .get_version(&ws, &p.project_id, 1)
            .await
            .expect("version"),
        None
    );

    let duplicate = s
        .projects
        .create_project(&Project {
            title: "other".to_owned(),
            ..p.clone()
        })
        .await;
    assert!(
        matches!(duplicate, Err(PortError::AlreadyExists)),
        "{duplicate:?}"
    );
    assert_eq!(
        s.projects
            .get_project(&ws, &p.project_id)
            .await
            .expect("get"),
        Some(p),
        "a refused duplicate changes nothing"
    );
}

pub async fn project_listing_pages_all_and_member_only(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let member = unique("member");
    let mut projects = Vec::new();
    // Created out of order, and two at the same instant: the order is created_at, then id.
    for created in [
        at(5, 9, 0),
        at(2, 9, 0),
        at(3, 9, 0),
        at(3, 9, 0),
        at(4, 9, 0),
        at(6, 9, 0),
    ] {
        projects.push(new_project(s, &ws, &owner, created).await);
    }
    for p in [&projects[0], &projects[2], &projects[3]] {
        s.projects
            .put_member(
                &ws,
                &Member {
                    project_id: p.project_id.clone(),
                    user_id: member.clone(),
                    role: ProjectRole::CanView,
                },
            )
            .await
            .expect("put member");
    }
    let mut expected = projects.clone();
    expected.sort_by(|a, b| (a.created_at, &a.project_id).cmp(&(b.created_at, &b.project_id)));

    // Six items in pages of two: exactly three pages, the last without a cursor.
    let (all, sizes) = all_pages(2, |page| {
        let (s, ws) = (s.clone(), ws.clone());
        async move { s.projects.list_projects(&ws, None, &page).await }
    })
    .await;
    assert_eq!(all, expected);
    assert_eq!(sizes, vec![2, 2, 2]);

    let (mine, sizes) = all_pages(2, |page| {
        let (s, ws, member) = (s.clone(), ws.clone(), member.clone());
        async move { s.projects.list_projects(&ws, Some(&member), &page).await }
    })
    .await;
    let expected_mine: Vec<Project> = expected
        .iter()
        .filter(|p| [0, 2, 3].iter().any(|&i| projects[i] == **p))
        .cloned()
        .collect();
    assert_eq!(mine, expected_mine);
    assert_eq!(sizes, vec![2, 1]);

    // The creator is a member (FULL_ACCESS) of everything they created.
    let (owned, _) = all_pages(4, |page| {
        let (s, ws, owner) = (s.clone(), ws.clone(), owner.clone());
        async move { s.projects.list_projects(&ws, Some(&owner), &page).await }
    })
    .await;
    assert_eq!(owned, expected);

    let nobody = s
        .projects
        .list_projects(&ws, Some(&unique("nobody")), &PageRequest::first(10))
        .await
        .expect("list");
    assert_eq!(
        nobody,
        Page {
            items: vec![],
            next_cursor: None
        }
    );
}

pub async fn project_listing_is_stable_under_inserts(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let mut originals = Vec::new();
    for day in 10..15 {
        originals.push(new_project(s, &ws, &owner, at(day, 9, 0)).await);
    }

    let first = s
        .projects
        .list_projects(&ws, None, &PageRequest::first(2))
        .await
        .expect("page 1");
    assert_eq!(first.items, originals[..2].to_vec());

    // Inserts behind and ahead of the cursor while the listing is under way.
    let behind = new_project(s, &ws, &owner, at(1, 9, 0)).await;
    let ahead = new_project(s, &ws, &owner, at(20, 9, 0)).await;

    let mut seen = first.items.clone();
    let mut cursor = first.next_cursor;
    while let Some(c) = cursor {
        let page = s
            .projects
            .list_projects(
                &ws,
                None,
                &PageRequest {
                    limit: 2,
                    cursor: Some(c),
                },
            )
            .await
            .expect("next page");
        seen.extend(page.items);
        cursor = page.next_cursor;
    }
    let mut expected = originals.clone();
    expected.push(ahead);
    assert_eq!(
        seen, expected,
        "no original repeats or goes missing; the later insert shows up at its place"
    );
    assert!(!seen.contains(&behind));
}

pub async fn draft_put_and_get(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let p = new_project(s, &ws, &unique("owner"), at(2, 9, 0)).await;

    s.projects
        .put_draft(&ws, &p.project_id, &body("a"), at(3, 10, 0))
        .await
        .expect("put draft");
    assert_eq!(
        s.projects.get_draft(&ws, &p.project_id).await.expect("get"),
        Some(body("a"))
    );
    let project = s
        .projects
        .get_project(&ws, &p.project_id)
        .await
        .expect("get project")
        .expect("project exists");
    assert_eq!(
        project.updated_at,
        at(3, 10, 0),
        "a draft edit updates the project"
    );
    assert_eq!(project.published_version, None, "editing is not publishing");

    s.projects
        .put_draft(&ws, &p.project_id, &body("b"), at(3, 11, 0))
        .await
        .expect("replace draft");
    assert_eq!(
        s.projects.get_draft(&ws, &p.project_id).await.expect("get"),
        Some(body("b"))
    );

    let unknown = unique("proj");
    assert_not_found(
        s.projects
            .put_draft(&ws, &unknown, &body("x"), at(3, 12, 0))
            .await,
        "put_draft of unknown project",
    );
    assert_eq!(
        s.projects.get_draft(&ws, &unknown).await.expect("get"),
        None
    );
}

pub async fn publish_snapshots_the_draft_into_numbered_versions(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let p = new_project(s, &ws, &unique("owner"), at(2, 9, 0)).await;
    let pid = p.project_id.clone();
    let editor = unique("editor");

    s.projects
        .put_draft(&ws, &pid, &body("a"), at(3, 9, 0))
        .await
        .expect("draft a");
    let v1 = s
        .projects
        .publish(&ws, &pid, &editor, at(3, 10, 0))
        .await
        .expect("publish 1");
    assert_eq!(v1.version, 1);
    assert_eq!(v1.project_id, pid);
    assert_eq!(v1.body, body("a"));
    assert_eq!(v1.published_at, at(3, 10, 0));
    assert_eq!(v1.published_by, editor);
    assert_eq!(
        s.projects.get_version(&ws, &pid, 1).await.expect("get v1"),
        Some(v1.clone())
    );
    let project = s
        .projects
        .get_project(&ws, &pid)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(project.published_version, Some(1));
    assert_eq!(project.updated_at, at(3, 10, 0));

    // Later draft edits never reach a published version.
    s.projects
        .put_draft(&ws, &pid, &body("b"), at(4, 9, 0))
        .await
        .expect("draft b");
    assert_eq!(
        s.projects.get_version(&ws, &pid, 1).await.expect("get v1"),
        Some(v1.clone())
    );

    let v2 = s
        .projects
        .publish(&ws, &pid, &editor, at(4, 10, 0))
        .await
        .expect("publish 2");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.body, body("b"));
    assert_eq!(
        s.projects.get_version(&ws, &pid, 2).await.expect("get v2"),
        Some(v2)
    );
    assert_eq!(
        s.projects.get_version(&ws, &pid, 1).await.expect("get v1"),
        Some(v1),
        "publishing again keeps older versions"
    );
    assert_eq!(
        s.projects.get_version(&ws, &pid, 3).await.expect("get v3"),
        None
    );
    assert_eq!(
        s.projects
            .get_project(&ws, &pid)
            .await
            .expect("get")
            .expect("exists")
            .published_version,
        Some(2)
    );
    assert_eq!(
        s.projects.get_draft(&ws, &pid).await.expect("draft"),
        Some(body("b")),
        "publishing leaves the draft as it was"
    );

    assert_not_found(
        s.projects
            .publish(&ws, &unique("proj"), &editor, at(4, 11, 0))
            .await,
        "publish of unknown project",
    );
}

pub async fn archive_and_unarchive(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let p = new_project(s, &ws, &unique("owner"), at(2, 9, 0)).await;

    let archived = s
        .projects
        .set_archived(&ws, &p.project_id, true, at(5, 9, 0))
        .await
        .expect("archive");
    assert_eq!(
        archived,
        Project {
            archived: true,
            updated_at: at(5, 9, 0),
            ..p.clone()
        },
        "only archived and updated_at change"
    );
    assert_eq!(
        s.projects
            .get_project(&ws, &p.project_id)
            .await
            .expect("get"),
        Some(archived)
    );

    let restored = s
        .projects
        .set_archived(&ws, &p.project_id, false, at(6, 9, 0))
        .await
        .expect("unarchive");
    assert!(!restored.archived);
    assert_eq!(restored.updated_at, at(6, 9, 0));
    assert_eq!(
        s.projects
            .get_project(&ws, &p.project_id)
            .await
            .expect("get"),
        Some(restored)
    );

    assert_not_found(
        s.projects
            .set_archived(&ws, &unique("proj"), true, at(6, 9, 0))
            .await,
        "set_archived of unknown project",
    );
}

pub async fn activity_only_moves_forward(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let p = new_project(s, &ws, &unique("owner"), at(2, 9, 0)).await;
    let current = |s: Stores, ws: String, pid: String| async move {
        s.projects
            .get_project(&ws, &pid)
            .await
            .expect("get")
            .expect("exists")
    };

    s.projects
        .touch_activity(&ws, &p.project_id, at(5, 9, 0))
        .await
        .expect("touch");
    let touched = current(s.clone(), ws.clone(), p.project_id.clone()).await;
    assert_eq!(touched.last_activity_at, at(5, 9, 0));
    assert_eq!(touched.updated_at, p.updated_at, "activity is not an edit");

    // A late report of older activity must not bring auto-archive closer.
    s.projects
        .touch_activity(&ws, &p.project_id, at(4, 9, 0))
        .await
        .expect("touch older");
    assert_eq!(
        current(s.clone(), ws.clone(), p.project_id.clone())
            .await
            .last_activity_at,
        at(5, 9, 0)
    );

    assert_not_found(
        s.projects
            .touch_activity(&ws, &unique("proj"), at(5, 9, 0))
            .await,
        "touch_activity of unknown project",
    );
}

pub async fn member_put_replaces_role(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let user = unique("user");
    let role_of = |user: String| {
        let (s, ws, pid) = (s.clone(), ws.clone(), p.project_id.clone());
        async move {
            s.projects
                .get_member_role(&ws, &pid, &user)
                .await
                .expect("role")
        }
    };

    for role in [
        ProjectRole::CanView,
        ProjectRole::CanEdit,
        ProjectRole::CanExplore,
    ] {
        s.projects
            .put_member(
                &ws,
                &Member {
                    project_id: p.project_id.clone(),
                    user_id: user.clone(),
                    role,
                },
            )
            .await
            .expect("put member");
        assert_eq!(role_of(user.clone()).await, Some(role));
    }

    // The creator's own membership is an ordinary row: it can be changed too.
    s.projects
        .put_member(
            &ws,
            &Member {
                project_id: p.project_id.clone(),
                user_id: owner.clone(),
                role: ProjectRole::CanEdit,
            },
        )
        .await
        .expect("downgrade owner");
    assert_eq!(role_of(owner).await, Some(ProjectRole::CanEdit));
}

pub async fn member_remove_then_not_found(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let other = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let user = unique("user");
    let member = Member {
        project_id: p.project_id.clone(),
        user_id: user.clone(),
        role: ProjectRole::CanExplore,
    };
    s.projects
        .put_member(&ws, &member)
        .await
        .expect("put member");

    // Through another workspace the membership does not exist.
    assert_not_found(
        s.projects.remove_member(&other, &p.project_id, &user).await,
        "remove through another workspace",
    );
    s.projects
        .remove_member(&ws, &p.project_id, &user)
        .await
        .expect("remove");
    assert_eq!(
        s.projects
            .get_member_role(&ws, &p.project_id, &user)
            .await
            .expect("role"),
        None
    );
    assert_eq!(
        s.projects
            .get_member_role(&ws, &p.project_id, &owner)
            .await
            .expect("role"),
        Some(ProjectRole::FullAccess),
        "other members stay"
    );
    assert_not_found(
        s.projects.remove_member(&ws, &p.project_id, &user).await,
        "remove twice",
    );
    assert_not_found(
        s.projects.remove_member(&ws, &unique("proj"), &owner).await,
        "remove from an unknown project",
    );
}

/// Nothing of workspace A is visible or changeable through workspace B, even knowing ids.
pub async fn tenant_isolation(s: &Stores) {
    let a = new_workspace(s, Plan::Team).await;
    let b = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let user = User {
        user_id: owner.clone(),
        workspace_id: a.clone(),
        email: Some("owner@a.example".to_owned()),
        workspace_role: WorkspaceRole::Admin,
    };
    s.workspaces.upsert_user(&user).await.expect("user");
    let p = new_project(s, &a, &owner, at(2, 9, 0)).await;
    let pid = p.project_id.clone();
    s.projects
        .put_draft(&a, &pid, &body("a"), at(2, 10, 0))
        .await
        .expect("draft");
    s.projects
        .publish(&a, &pid, &owner, at(2, 11, 0))
        .await
        .expect("publish");
    let schedule = new_schedule(s, &p, &owner, false, at(2, 12, 0)).await;
    let sid = schedule.schedule_id.clone();
    let run = run_value(
        &p,
        Some(&schedule),
        Some(at(3, 9, 0)),
        at(3, 9, 0),
        at(30, 0, 0),
    );
    create_run(s, &run).await;
    let first = PageRequest::first(10);
    let empty = || Page::<Schedule> {
        items: vec![],
        next_cursor: None,
    };

    // Reads through B see nothing.
    assert_eq!(s.workspaces.get_user(&b, &owner).await.expect("user"), None);
    assert_eq!(s.projects.get_project(&b, &pid).await.expect("get"), None);
    assert_eq!(
        s.projects
            .list_projects(&b, None, &first)
            .await
            .expect("list")
            .items,
        vec![]
    );
    assert_eq!(
        s.projects
            .list_projects(&b, Some(&owner), &first)
            .await
            .expect("list")
            .items,
        vec![]
    );
    assert_eq!(
        s.projects
            .get_member_role(&b, &pid, &owner)
            .await
            .expect("role"),
        None
    );
    assert_eq!(s.projects.get_draft(&b, &pid).await.expect("draft"), None);
    assert_eq!(
        s.projects.get_version(&b, &pid, 1).await.expect("version"),
        None
    );
    assert_eq!(s.schedules.get_schedule(&b, &sid).await.expect("get"), None);
    assert_eq!(
        s.schedules
            .list_project_schedules(&b, &pid, &first)
            .await
            .expect("list"),
        empty()
    );
    assert_eq!(
        s.schedules
            .list_workspace_schedules(&b, &ScheduleFilter::default(), &first)
            .await
            .expect("list"),
        empty()
    );
    assert_eq!(s.runs.get_run(&b, &run.run_id).await.expect("run"), None);
    assert_eq!(
        s.runs
            .list_schedule_runs(&b, &sid, at(4, 0, 0), &PageRequest::first(10))
            .await
            .expect("runs")
            .items,
        vec![]
    );

    // Writes through B fail and leave A alone.
    assert_not_found(
        s.projects
            .put_draft(&b, &pid, &body("evil"), at(4, 0, 0))
            .await,
        "put_draft",
    );
    assert_not_found(
        s.projects.publish(&b, &pid, &owner, at(4, 0, 0)).await,
        "publish",
    );
    assert_not_found(
        s.projects.set_archived(&b, &pid, true, at(4, 0, 0)).await,
        "set_archived",
    );
    assert_not_found(
        s.projects.touch_activity(&b, &pid, at(4, 0, 0)).await,
        "touch_activity",
    );
    let mut moved = schedule.clone();
    moved.workspace_id = b.clone();
    moved.enabled = false;
    moved.version = 2;
    assert_not_found(
        s.schedules
            .update_schedule(&moved, 1, &ScheduleLimits::default())
            .await,
        "update_schedule",
    );
    assert_not_found(
        s.schedules.delete_schedule(&b, &sid).await,
        "delete_schedule",
    );
    // A schedule in B cannot hang off A's project.
    let mut foreign = schedule_value(&p, &owner, false, at(4, 0, 0));
    foreign.workspace_id = b.clone();
    assert_not_found(
        s.schedules
            .insert_schedule(&foreign, &ScheduleLimits::default())
            .await,
        "insert_schedule on another workspace's project",
    );
    // Reusing A's run id from B never hands out A's run.
    let mut intruder = run.clone();
    intruder.workspace_id = b.clone();
    match s.runs.create_run_if_absent(&intruder).await {
        Ok(RunCreated::Existing(existing)) => {
            assert_ne!(existing.workspace_id, a, "A's run leaked into B")
        }
        Ok(RunCreated::Created) | Err(_) => {}
    }

    assert_eq!(
        s.projects.get_project(&a, &pid).await.expect("get"),
        Some(Project {
            published_version: Some(1),
            updated_at: at(2, 11, 0),
            ..p
        })
    );
    assert_eq!(
        s.projects.get_draft(&a, &pid).await.expect("draft"),
        Some(body("a"))
    );
    assert_eq!(
        s.schedules.get_schedule(&a, &sid).await.expect("get"),
        Some(schedule)
    );
    assert_eq!(
        s.runs.get_run(&a, &run.run_id).await.expect("run"),
        Some(run)
    );
}

// ---------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------

pub async fn schedule_insert_get_update_delete(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let none = ScheduleLimits::default();

    let schedule = new_schedule(s, &p, &owner, false, at(3, 9, 0)).await;
    let sid = schedule.schedule_id.clone();
    assert_eq!(
        s.schedules.get_schedule(&ws, &sid).await.expect("get"),
        Some(schedule.clone())
    );
    let duplicate = s.schedules.insert_schedule(&schedule, &none).await;
    assert!(
        matches!(duplicate, Err(PortError::AlreadyExists)),
        "{duplicate:?}"
    );

    let updated = Schedule {
        enabled: false,
        cadence: cadence(true),
        hourly: true,
        timezone: "UTC".to_owned(),
        updated_at: at(3, 10, 0),
        version: 2,
        ..schedule.clone()
    };
    s.schedules
        .update_schedule(&updated, 1, &none)
        .await
        .expect("update at the current version");
    assert_eq!(
        s.schedules.get_schedule(&ws, &sid).await.expect("get"),
        Some(updated.clone())
    );

    // A writer that read version 1 lost the race: refused, nothing changes.
    let stale = Schedule {
        enabled: true,
        version: 2,
        ..schedule.clone()
    };
    let mismatch = s.schedules.update_schedule(&stale, 1, &none).await;
    assert!(
        matches!(mismatch, Err(PortError::VersionMismatch)),
        "{mismatch:?}"
    );
    assert_eq!(
        s.schedules.get_schedule(&ws, &sid).await.expect("get"),
        Some(updated.clone())
    );

    let unknown = schedule_value(&p, &owner, false, at(3, 9, 0));
    assert_not_found(
        s.schedules.update_schedule(&unknown, 1, &none).await,
        "update of unknown schedule",
    );

    s.schedules
        .delete_schedule(&ws, &sid)
        .await
        .expect("delete");
    assert_eq!(
        s.schedules.get_schedule(&ws, &sid).await.expect("get"),
        None
    );
    assert_not_found(
        s.schedules.delete_schedule(&ws, &sid).await,
        "second delete",
    );
    assert_not_found(
        s.schedules.update_schedule(&updated, 2, &none).await,
        "update after delete",
    );

    let orphan = schedule_value(
        &project_value(&ws, &owner, at(2, 9, 0)),
        &owner,
        false,
        at(3, 9, 0),
    );
    assert_not_found(
        s.schedules.insert_schedule(&orphan, &none).await,
        "insert on an unknown project",
    );
}

pub async fn project_schedules_oldest_first_with_pages(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let other = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let mut mine = Vec::new();
    for created in [
        at(4, 9, 0),
        at(3, 9, 0),
        at(5, 9, 0),
        at(3, 9, 0),
        at(6, 9, 0),
    ] {
        mine.push(new_schedule(s, &p, &owner, false, created).await);
        new_schedule(s, &other, &owner, false, created).await;
    }
    mine.sort_by(|a, b| (a.created_at, &a.schedule_id).cmp(&(b.created_at, &b.schedule_id)));

    let (listed, sizes) = all_pages(2, |page| {
        let (s, ws, pid) = (s.clone(), ws.clone(), p.project_id.clone());
        async move { s.schedules.list_project_schedules(&ws, &pid, &page).await }
    })
    .await;
    assert_eq!(listed, mine);
    assert_eq!(sizes, vec![2, 2, 1]);
}

pub async fn workspace_schedules_filter_and_page(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let (u1, u2) = (unique("u1"), unique("u2"));
    let pa = new_project(s, &ws, &u1, at(2, 9, 0)).await;
    let pb = new_project(s, &ws, &u2, at(2, 9, 0)).await;
    let insert = |p: Project, creator: String, enabled: bool, created: DateTime<Utc>| {
        let s = s.clone();
        async move {
            let mut schedule = schedule_value(&p, &creator, false, created);
            schedule.enabled = enabled;
            s.schedules
                .insert_schedule(&schedule, &ScheduleLimits::default())
                .await
                .expect("insert");
            schedule
        }
    };
    let s1 = insert(pa.clone(), u1.clone(), true, at(3, 9, 0)).await;
    let s2 = insert(pa.clone(), u2.clone(), false, at(3, 10, 0)).await;
    let s3 = insert(pb.clone(), u1.clone(), false, at(3, 11, 0)).await;
    let s4 = insert(pb.clone(), u2.clone(), true, at(3, 12, 0)).await;

    let list = |filter: ScheduleFilter, limit: u32| {
        let (s, ws) = (s.clone(), ws.clone());
        async move {
            all_pages(limit, |page| {
                let (s, ws, filter) = (s.clone(), ws.clone(), filter.clone());
                async move {
                    s.schedules
                        .list_workspace_schedules(&ws, &filter, &page)
                        .await
                }
            })
            .await
        }
    };

    let (all, sizes) = list(ScheduleFilter::default(), 3).await;
    assert_eq!(ids(&all), ids([&s1, &s2, &s3, &s4]));
    assert_eq!(sizes, vec![3, 1]);
    let by_project = ScheduleFilter {
        project_id: Some(pa.project_id.clone()),
        ..Default::default()
    };
    assert_eq!(ids(&list(by_project, 10).await.0), ids([&s1, &s2]));
    let by_creator = ScheduleFilter {
        created_by: Some(u1.clone()),
        ..Default::default()
    };
    let (u1s, sizes) = list(by_creator, 1).await;
    assert_eq!(ids(&u1s), ids([&s1, &s3]));
    assert_eq!(sizes, vec![1, 1]);
    let enabled = ScheduleFilter {
        enabled: Some(true),
        ..Default::default()
    };
    assert_eq!(ids(&list(enabled, 10).await.0), ids([&s1, &s4]));
    let combined = ScheduleFilter {
        project_id: Some(pb.project_id.clone()),
        created_by: Some(u1.clone()),
        enabled: Some(false),
    };
    assert_eq!(list(combined, 10).await.0, vec![s3]);
    let nothing = ScheduleFilter {
        created_by: Some(unique("nobody")),
        ..Default::default()
    };
    assert_eq!(list(nothing, 10).await, (vec![], vec![0]));
}

pub async fn all_schedules_report_whether_they_should_fire(s: &Stores) {
    let ws1 = new_workspace(s, Plan::Team).await;
    let ws2 = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let live = new_project(s, &ws1, &owner, at(2, 9, 0)).await;
    let shelved = new_project(s, &ws1, &owner, at(2, 9, 0)).await;
    let elsewhere = new_project(s, &ws2, &owner, at(2, 9, 0)).await;

    let enabled = new_schedule(s, &live, &owner, false, at(3, 9, 0)).await;
    let mut disabled = schedule_value(&live, &owner, true, at(3, 9, 0));
    disabled.enabled = false;
    s.schedules
        .insert_schedule(&disabled, &ScheduleLimits::default())
        .await
        .expect("insert disabled");
    let on_archived = new_schedule(s, &shelved, &owner, false, at(3, 9, 0)).await;
    let other_tenant = new_schedule(s, &elsewhere, &owner, false, at(3, 9, 0)).await;
    s.projects
        .set_archived(&ws1, &shelved.project_id, true, at(4, 9, 0))
        .await
        .expect("archive");

    let mine: HashSet<String> = ids([&enabled, &disabled, &on_archived, &other_tenant])
        .into_iter()
        .collect();
    let listing = || {
        let (s, mine) = (s.clone(), mine.clone());
        async move {
            let (all, _) = all_pages(2, |page| {
                let s = s.clone();
                async move { s.schedules.list_all_schedules(&page).await }
            })
            .await;
            let ours: Vec<(Schedule, bool)> = all
                .into_iter()
                .filter(|(sch, _)| mine.contains(&sch.schedule_id))
                .collect();
            let flags: HashMap<String, bool> = ours
                .iter()
                .map(|(sch, active)| (sch.schedule_id.clone(), *active))
                .collect();
            assert_eq!(flags.len(), ours.len(), "each schedule is listed once");
            (ours, flags)
        }
    };

    let (ours, flags) = listing().await;
    assert_eq!(ours.len(), 4, "every workspace is walked");
    assert!(ours.iter().any(|(sch, _)| *sch == enabled), "full values");
    assert!(flags[&enabled.schedule_id]);
    assert!(!flags[&disabled.schedule_id], "disabled");
    assert!(!flags[&on_archived.schedule_id], "project archived");
    assert!(flags[&other_tenant.schedule_id]);

    s.projects
        .set_archived(&ws1, &shelved.project_id, false, at(5, 9, 0))
        .await
        .expect("unarchive");
    let (ours, flags) = listing().await;
    assert!(
        flags[&on_archived.schedule_id],
        "unarchiving restores the enabled schedule"
    );
    assert!(!flags[&disabled.schedule_id]);

    // The timer's lean listing is the same, reduced to what it fires on.
    let mut triggers: Vec<ScheduleTrigger> = s
        .schedules
        .list_schedule_triggers()
        .await
        .expect("triggers")
        .into_iter()
        .filter(|t| mine.contains(&t.schedule_id))
        .collect();
    triggers.sort_by(|a, b| a.schedule_id.cmp(&b.schedule_id));
    let mut expected: Vec<ScheduleTrigger> = ours
        .into_iter()
        .map(|(sch, active)| ScheduleTrigger {
            workspace_id: sch.workspace_id,
            schedule_id: sch.schedule_id,
            cadence: sch.cadence,
            timezone: sch.timezone,
            updated_at: sch.updated_at,
            active,
        })
        .collect();
    expected.sort_by(|a, b| a.schedule_id.cmp(&b.schedule_id));
    assert_eq!(triggers, expected);
}

pub async fn limit_per_project_counts_every_creator(s: &Stores) {
    let ws = new_workspace(s, Plan::Professional).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let other = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let limits = ScheduleLimits {
        max_per_project: Some(2),
        ..Default::default()
    };
    let try_insert = |project: &Project, creator: String| {
        let (s, schedule) = (
            s.clone(),
            schedule_value(project, &creator, false, at(3, 9, 0)),
        );
        async move {
            let r = s.schedules.insert_schedule(&schedule, &limits).await;
            (r, schedule)
        }
    };

    let (r, first) = try_insert(&p, unique("u1")).await;
    r.expect("first");
    try_insert(&p, unique("u2")).await.0.expect("second");
    assert_limit(try_insert(&p, unique("u3")).await.0, LimitKind::PerProject);
    try_insert(&other, unique("u3"))
        .await
        .0
        .expect("another project has its own count");

    s.schedules
        .delete_schedule(&ws, &first.schedule_id)
        .await
        .expect("delete");
    try_insert(&p, unique("u3"))
        .await
        .0
        .expect("a deletion frees a slot");
}

pub async fn limit_per_creator_counts_only_that_creator(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let other = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let explorer = unique("explorer");
    let limits = ScheduleLimits {
        max_per_creator: Some(1),
        ..Default::default()
    };
    let try_insert = |project: &Project, creator: &str| {
        let (s, schedule) = (
            s.clone(),
            schedule_value(project, creator, false, at(3, 9, 0)),
        );
        async move { s.schedules.insert_schedule(&schedule, &limits).await }
    };

    try_insert(&p, &explorer).await.expect("first");
    assert_limit(try_insert(&p, &explorer).await, LimitKind::PerCreator);
    try_insert(&p, &unique("someone"))
        .await
        .expect("other creators are not counted");
    try_insert(&other, &explorer)
        .await
        .expect("counted per project");
}

pub async fn hourly_limit_counts_only_hourly_schedules(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let limits = ScheduleLimits {
        max_hourly_per_project: Some(2),
        ..Default::default()
    };
    let try_insert = |hourly: bool| {
        let (s, schedule) = (s.clone(), schedule_value(&p, &owner, hourly, at(3, 9, 0)));
        async move { s.schedules.insert_schedule(&schedule, &limits).await }
    };

    for _ in 0..3 {
        try_insert(false).await.expect("daily schedules are free");
    }
    try_insert(true).await.expect("hourly 1");
    try_insert(true).await.expect("hourly 2");
    assert_limit(try_insert(true).await, LimitKind::HourlyPerProject);
    try_insert(false)
        .await
        .expect("a daily schedule is not held back by the hourly limit");
}

pub async fn update_rechecks_only_the_hourly_limit(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let hourly = new_schedule(s, &p, &owner, true, at(3, 9, 0)).await;
    let daily = new_schedule(s, &p, &owner, false, at(3, 10, 0)).await;
    let one_hourly = ScheduleLimits {
        max_hourly_per_project: Some(1),
        ..Default::default()
    };

    let to_hourly = Schedule {
        hourly: true,
        cadence: cadence(true),
        version: 2,
        ..daily.clone()
    };
    assert_limit(
        s.schedules
            .update_schedule(&to_hourly, 1, &one_hourly)
            .await,
        LimitKind::HourlyPerProject,
    );
    assert_eq!(
        s.schedules
            .get_schedule(&ws, &daily.schedule_id)
            .await
            .expect("get"),
        Some(daily.clone()),
        "a refused update changes nothing"
    );

    // The hourly schedule does not count against itself.
    let edited = Schedule {
        enabled: false,
        version: 2,
        ..hourly.clone()
    };
    s.schedules
        .update_schedule(&edited, 1, &one_hourly)
        .await
        .expect("an hourly schedule stays hourly");

    // Project and creator limits apply to creation only.
    let strict = ScheduleLimits {
        max_per_project: Some(1),
        max_per_creator: Some(1),
        max_hourly_per_project: None,
    };
    let renamed = Schedule {
        timezone: "UTC".to_owned(),
        version: 2,
        ..daily
    };
    s.schedules
        .update_schedule(&renamed, 1, &strict)
        .await
        .expect("updates ignore the creation limits");
}

pub async fn limits_are_checked_in_a_fixed_order(s: &Stores) {
    let ws = new_workspace(s, Plan::Professional).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    new_schedule(s, &p, &owner, true, at(3, 9, 0)).await;
    let all = ScheduleLimits {
        max_per_project: Some(1),
        max_per_creator: Some(1),
        max_hourly_per_project: Some(1),
    };
    let try_insert = |limits: ScheduleLimits| {
        let (s, schedule) = (s.clone(), schedule_value(&p, &owner, true, at(3, 9, 0)));
        async move { s.schedules.insert_schedule(&schedule, &limits).await }
    };

    assert_limit(try_insert(all).await, LimitKind::PerProject);
    assert_limit(
        try_insert(ScheduleLimits {
            max_per_project: None,
            ..all
        })
        .await,
        LimitKind::PerCreator,
    );
    assert_limit(
        try_insert(ScheduleLimits {
            max_per_project: None,
            max_per_creator: None,
            ..all
        })
        .await,
        LimitKind::HourlyPerProject,
    );
}

/// Starts `n` inserts at once (released together by a barrier) and returns their results.
async fn race_inserts(
    s: &Stores,
    schedules: Vec<Schedule>,
    limits: ScheduleLimits,
) -> Vec<Result<(), PortError>> {
    let barrier = Arc::new(Barrier::new(schedules.len()));
    let tasks: Vec<_> = schedules
        .into_iter()
        .map(|schedule| {
            let (store, barrier) = (s.schedules.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.insert_schedule(&schedule, &limits).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("insert task finished"));
    }
    results
}

pub async fn concurrent_inserts_respect_the_creator_limit(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let explorer = unique("explorer");
    let schedules = (0..20)
        .map(|_| schedule_value(&p, &explorer, false, at(3, 9, 0)))
        .collect();
    let limits = ScheduleLimits {
        max_per_creator: Some(1),
        ..Default::default()
    };

    let results = race_inserts(s, schedules, limits).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(PortError::LimitReached(LimitKind::PerCreator))))
        .count();
    assert_eq!((ok, refused), (1, 19), "{results:?}");
    let stored = s
        .schedules
        .list_project_schedules(&ws, &p.project_id, &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(stored.items.len(), 1);
}

pub async fn concurrent_inserts_respect_the_project_limit(s: &Stores) {
    let ws = new_workspace(s, Plan::Professional).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    // Twenty different creators: only the project-wide count can stop them.
    let schedules = (0..20)
        .map(|_| schedule_value(&p, &unique("editor"), false, at(3, 9, 0)))
        .collect();
    let limits = ScheduleLimits {
        max_per_project: Some(3),
        ..Default::default()
    };

    let results = race_inserts(s, schedules, limits).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(PortError::LimitReached(LimitKind::PerProject))))
        .count();
    assert_eq!((ok, refused), (3, 17), "{results:?}");
    let stored = s
        .schedules
        .list_project_schedules(&ws, &p.project_id, &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(stored.items.len(), 3);
}

// ---------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------

pub async fn run_creation_is_idempotent(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let schedule = new_schedule(s, &p, &owner, false, at(2, 10, 0)).await;
    let run = run_value(
        &p,
        Some(&schedule),
        Some(at(3, 9, 0)),
        at(3, 9, 0),
        at(30, 0, 0),
    );

    assert_eq!(
        s.runs.create_run_if_absent(&run).await.expect("create"),
        RunCreated::Created
    );
    // A duplicate delivery that got further (or differs) never overwrites the first.
    let duplicate = Run {
        status: RunStatus::Skipped,
        trace_id: unique("trace"),
        ..run.clone()
    };
    assert_eq!(
        s.runs
            .create_run_if_absent(&duplicate)
            .await
            .expect("duplicate"),
        RunCreated::Existing(Box::new(run.clone()))
    );
    assert_eq!(
        s.runs.get_run(&ws, &run.run_id).await.expect("get"),
        Some(run)
    );

    let api_run = run_value(&p, None, None, at(3, 10, 0), at(30, 0, 0));
    create_run(s, &api_run).await;
    assert_eq!(
        s.runs.get_run(&ws, &api_run.run_id).await.expect("get"),
        Some(api_run)
    );
    assert_eq!(
        s.runs.get_run(&ws, &unique("run")).await.expect("get"),
        None
    );
}

pub async fn concurrent_run_creation_creates_once(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let schedule = new_schedule(s, &p, &owner, false, at(2, 10, 0)).await;
    let run = run_value(
        &p,
        Some(&schedule),
        Some(at(3, 9, 0)),
        at(3, 9, 0),
        at(30, 0, 0),
    );

    // Fifty deliveries of the same fire at once.
    let barrier = Arc::new(Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (store, barrier, run) = (s.runs.clone(), barrier.clone(), run.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.create_run_if_absent(&run).await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task finished").expect("create run") {
            RunCreated::Created => created += 1,
            RunCreated::Existing(existing) => assert_eq!(*existing, run),
        }
    }
    assert_eq!(created, 1);
}

pub async fn batch_run_creation_answers_each_run_as_one_by_one(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let schedule = new_schedule(s, &p, &owner, false, at(2, 10, 0)).await;
    let fire = |day| {
        run_value(
            &p,
            Some(&schedule),
            Some(at(day, 9, 0)),
            at(day, 9, 0),
            lasting(30, 0, 0),
        )
    };
    let stored = fire(3);
    create_run(s, &stored).await;
    // Another workspace's run, whose id the batch reuses.
    let other_ws = new_workspace(s, Plan::Team).await;
    let other_p = new_project(s, &other_ws, &owner, at(2, 9, 0)).await;
    let foreign = run_value(&other_p, None, None, at(3, 10, 0), lasting(30, 0, 0));
    create_run(s, &foreign).await;

    let new = fire(4);
    let again = Run {
        status: RunStatus::Skipped,
        trace_id: unique("trace"),
        ..new.clone()
    };
    let stored_again = Run {
        trace_id: unique("trace"),
        ..stored.clone()
    };
    let intruder = Run {
        workspace_id: ws.clone(),
        project_id: p.project_id.clone(),
        ..foreign.clone()
    };
    let later = fire(5);
    let created = s
        .runs
        .create_runs_if_absent(&[new.clone(), again, stored_again, intruder, later.clone()])
        .await;
    assert_eq!(created.len(), 5, "{created:?}");
    assert_eq!(created[0].as_ref().ok(), Some(&RunCreated::Created));
    // The same run twice in one batch: the second finds the first.
    assert_eq!(
        created[1].as_ref().ok(),
        Some(&RunCreated::Existing(Box::new(new.clone())))
    );
    assert_eq!(
        created[2].as_ref().ok(),
        Some(&RunCreated::Existing(Box::new(stored.clone())))
    );
    // Another tenant's run is neither overwritten nor revealed, and does not fail the
    // rest of the batch.
    if let Ok(RunCreated::Existing(existing)) = &created[3] {
        assert_ne!(existing.workspace_id, other_ws, "a foreign run leaked");
    }
    assert_eq!(created[4].as_ref().ok(), Some(&RunCreated::Created));
    for run in [&new, &stored, &later] {
        assert_eq!(
            s.runs
                .get_run(&ws, &run.run_id)
                .await
                .expect("get")
                .as_ref(),
            Some(run)
        );
    }
    assert_eq!(
        s.runs
            .get_run(&other_ws, &foreign.run_id)
            .await
            .expect("get"),
        Some(foreign)
    );
    assert!(s.runs.create_runs_if_absent(&[]).await.is_empty());
}

pub async fn run_log_newest_first_with_pages_and_expiry(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let schedule = new_schedule(s, &p, &owner, false, at(2, 10, 0)).await;
    let other = new_schedule(s, &p, &owner, false, at(2, 10, 0)).await;
    let as_of = at(20, 0, 0);
    let keep = at(30, 0, 0);
    let scheduled = |t: DateTime<Utc>, expires: DateTime<Utc>| {
        run_value(
            &p,
            Some(&schedule),
            Some(t),
            t + Duration::seconds(3),
            expires,
        )
    };

    let r10 = scheduled(at(3, 10, 0), keep);
    let r11 = scheduled(at(3, 11, 0), keep);
    let r12 = scheduled(at(3, 12, 0), keep);
    let r13 = scheduled(at(3, 13, 0), keep);
    // Runs without a fire time (run now) sort by when they were created.
    let manual = run_value(&p, Some(&schedule), None, at(3, 11, 30), keep);
    // Same sort instant as r12, and the pair straddles a page boundary: the tie is broken
    // by id (either direction), and neither entry is lost or repeated.
    let manual_tie = run_value(&p, Some(&schedule), None, at(3, 12, 0), keep);
    // Expiring exactly at `as_of` is expired; one second later is not.
    let expired = scheduled(at(3, 9, 0), as_of);
    let last_second = scheduled(at(3, 8, 0), as_of + Duration::seconds(1));
    let other_schedule = run_value(&p, Some(&other), Some(at(3, 11, 0)), at(3, 11, 0), keep);
    let api = run_value(&p, None, None, at(3, 11, 0), keep);
    // Inserted in a scrambled order.
    for run in [
        &r11,
        &expired,
        &manual_tie,
        &other_schedule,
        &r13,
        &r10,
        &api,
        &last_second,
        &r12,
        &manual,
    ] {
        create_run(s, run).await;
    }

    let list = |as_of: DateTime<Utc>| {
        let (s, ws, sid) = (s.clone(), ws.clone(), schedule.schedule_id.clone());
        async move {
            all_pages(2, |page| {
                let (s, ws, sid) = (s.clone(), ws.clone(), sid.clone());
                async move { s.runs.list_schedule_runs(&ws, &sid, as_of, &page).await }
            })
            .await
        }
    };

    let (log, sizes) = list(as_of).await;
    assert_eq!(sizes, vec![2, 2, 2, 1]);
    assert_eq!(log[0], r13);
    let tied: HashSet<String> = log[1..3].iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(
        tied,
        HashSet::from([r12.run_id.clone(), manual_tie.run_id.clone()]),
        "the two 12:00 entries follow, split over pages 1 and 2"
    );
    assert_eq!(
        log[3..].to_vec(),
        vec![
            manual.clone(),
            r11.clone(),
            r10.clone(),
            last_second.clone()
        ]
    );

    // Expiry is judged at `as_of`, not by the wall clock.
    let (earlier, _) = list(at(19, 0, 0)).await;
    assert_eq!(earlier.len(), 8);
    assert_eq!(earlier[6], expired);
    assert_eq!(earlier[7], last_second);
}

pub async fn last_fire_times_are_the_latest_fire_per_schedule(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let s1 = new_schedule(s, &p, &owner, false, at(2, 10, 0)).await;
    let s2 = new_schedule(s, &p, &owner, false, at(2, 10, 0)).await;
    let s3 = new_schedule(s, &p, &owner, false, at(2, 10, 0)).await;
    let keep = at(30, 0, 0);
    for t in [at(3, 10, 0), at(3, 12, 0), at(3, 11, 0)] {
        create_run(s, &run_value(&p, Some(&s1), Some(t), t, keep)).await;
    }
    create_run(
        s,
        &run_value(&p, Some(&s2), Some(at(3, 9, 0)), at(3, 9, 0), keep),
    )
    .await;
    // Manual runs have no fire time and do not move the timer.
    create_run(s, &run_value(&p, Some(&s1), None, at(3, 13, 0), keep)).await;
    create_run(s, &run_value(&p, Some(&s3), None, at(3, 13, 0), keep)).await;
    create_run(s, &run_value(&p, None, None, at(3, 14, 0), keep)).await;

    let mine: HashSet<String> = ids([&s1, &s2, &s3]).into_iter().collect();
    let times: Vec<(String, DateTime<Utc>)> = s
        .runs
        .last_fire_times()
        .await
        .expect("last fire times")
        .into_iter()
        .filter(|(id, _)| mine.contains(id))
        .collect();
    let by_id: HashMap<String, DateTime<Utc>> = times.iter().cloned().collect();
    assert_eq!(by_id.len(), times.len(), "one entry per schedule");
    assert_eq!(
        by_id,
        HashMap::from([
            (s1.schedule_id.clone(), at(3, 12, 0)),
            (s2.schedule_id.clone(), at(3, 9, 0)),
        ])
    );
}

pub async fn runs_outlive_their_schedule(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let schedule = new_schedule(s, &p, &owner, false, at(2, 10, 0)).await;
    let run = run_value(
        &p,
        Some(&schedule),
        Some(at(3, 9, 0)),
        at(3, 9, 0),
        at(30, 0, 0),
    );
    create_run(s, &run).await;

    s.schedules
        .delete_schedule(&ws, &schedule.schedule_id)
        .await
        .expect("delete schedule");

    assert_eq!(
        s.runs.get_run(&ws, &run.run_id).await.expect("get"),
        Some(run.clone())
    );
    let log = s
        .runs
        .list_schedule_runs(
            &ws,
            &schedule.schedule_id,
            at(4, 0, 0),
            &PageRequest::first(10),
        )
        .await
        .expect("run log");
    assert_eq!(log.items, vec![run]);
}

/// A cursor the store did not issue names no page: `NotFound`, never a backend failure
/// (the HTTP layer must not answer 500 to a mangled query string).
pub async fn foreign_cursor_is_invalid(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let p = new_project(s, &ws, &unique("owner"), at(2, 9, 0)).await;
    for cursor in ["%%%not base64%%%", "bm90LWpzb24", "WzEsMiwzXQ"] {
        let page = PageRequest {
            limit: 10,
            cursor: Some(cursor.to_owned()),
        };
        assert_invalid_cursor(
            s.projects.list_projects(&ws, None, &page).await,
            "list_projects",
        );
        assert_invalid_cursor(
            s.schedules
                .list_project_schedules(&ws, &p.project_id, &page)
                .await,
            "list_project_schedules",
        );
        assert_invalid_cursor(
            s.schedules
                .list_workspace_schedules(&ws, &ScheduleFilter::default(), &page)
                .await,
            "list_workspace_schedules",
        );
        assert_invalid_cursor(
            s.schedules.list_all_schedules(&page).await,
            "list_all_schedules",
        );
        assert_invalid_cursor(
            s.runs
                .list_schedule_runs(&ws, "sched", at(4, 0, 0), &page)
                .await,
            "list_schedule_runs",
        );
        assert_invalid_cursor(s.runs.list_active_runs(&page).await, "list_active_runs");
        assert_invalid_cursor(s.workspaces.list_workspaces(&page).await, "list_workspaces");
        assert_invalid_cursor(
            s.projects
                .list_inactive_projects(&ws, at(4, 0, 0), &page)
                .await,
            "list_inactive_projects",
        );
    }
}

// ---------------------------------------------------------------------------------------
// Maintenance listings
// ---------------------------------------------------------------------------------------

pub async fn workspaces_list_oldest_first_with_pages(s: &Stores) {
    let make = |created_at| Workspace {
        workspace_id: unique("ws"),
        plan: Plan::Team,
        auto_archive_after_days: None,
        created_at,
    };
    let w1 = make(at(1, 1, 0));
    let w2a = make(at(1, 2, 0));
    let w2b = make(at(1, 2, 0));
    let w3 = make(at(1, 3, 0));
    let w4 = make(at(1, 4, 0));
    for w in [&w3, &w1, &w2b, &w4, &w2a] {
        s.workspaces.create_workspace(w).await.expect("create");
    }

    // The listing spans every workspace of the store, so only this behaviour's own ones
    // are checked exactly; the order holds across all of them.
    let (all, sizes) = all_pages(2, |page| {
        let s = s.clone();
        async move { s.workspaces.list_workspaces(&page).await }
    })
    .await;
    assert!(
        sizes.len() >= 3,
        "five workspaces take pages of two: {sizes:?}"
    );
    assert!(
        all.windows(2).all(|w| w[0].created_at <= w[1].created_at),
        "oldest first"
    );
    let distinct: HashSet<&str> = all.iter().map(|w| w.workspace_id.as_str()).collect();
    assert_eq!(distinct.len(), all.len(), "no workspace listed twice");
    let mine: HashSet<&str> = [&w1, &w2a, &w2b, &w3, &w4]
        .iter()
        .map(|w| w.workspace_id.as_str())
        .collect();
    let listed: Vec<Workspace> = all
        .into_iter()
        .filter(|w| mine.contains(w.workspace_id.as_str()))
        .collect();
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert_eq!(listed[0], w1);
    let tied: HashSet<&str> = listed[1..3]
        .iter()
        .map(|w| w.workspace_id.as_str())
        .collect();
    assert_eq!(
        tied,
        HashSet::from([w2a.workspace_id.as_str(), w2b.workspace_id.as_str()])
    );
    assert_eq!(
        listed[1..3]
            .iter()
            .filter(|w| **w == w2a || **w == w2b)
            .count(),
        2
    );
    assert_eq!(listed[3..].to_vec(), vec![w3, w4]);
}

pub async fn inactive_projects_oldest_activity_first(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let other = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    // A new project's last activity is its creation; touching moves it forward.
    let active_at = |p: Project, t: DateTime<Utc>| {
        let s = s.clone();
        async move {
            s.projects
                .touch_activity(&p.workspace_id, &p.project_id, t)
                .await
                .expect("touch");
            p.project_id
        }
    };
    let oldest = new_project(s, &ws, &owner, at(2, 7, 0)).await.project_id;
    let p3 = active_at(new_project(s, &ws, &owner, at(2, 9, 0)).await, at(3, 0, 0)).await;
    let p4a = active_at(new_project(s, &ws, &owner, at(2, 8, 0)).await, at(4, 0, 0)).await;
    let p4b = active_at(new_project(s, &ws, &owner, at(2, 9, 0)).await, at(4, 0, 0)).await;
    let before = at(10, 0, 0);
    // Active exactly at `before` is not inactive before it; later activity neither.
    active_at(new_project(s, &ws, &owner, at(2, 9, 0)).await, before).await;
    active_at(new_project(s, &ws, &owner, at(2, 9, 0)).await, at(11, 0, 0)).await;
    // Archived projects are already where auto-archive would put them.
    let archived = new_project(s, &ws, &owner, at(2, 6, 0)).await.project_id;
    s.projects
        .set_archived(&ws, &archived, true, at(12, 0, 0))
        .await
        .expect("archive");
    // Another workspace's idle project is none of this workspace's business.
    new_project(s, &other, &owner, at(2, 5, 0)).await;

    let list = |ws: String| {
        let s = s.clone();
        async move {
            let (items, sizes) = all_pages(2, |page| {
                let (s, ws) = (s.clone(), ws.clone());
                async move { s.projects.list_inactive_projects(&ws, before, &page).await }
            })
            .await;
            let ids: Vec<String> = items.into_iter().map(|p| p.project_id).collect();
            (ids, sizes)
        }
    };
    let (ids, sizes) = list(ws.clone()).await;
    assert_eq!(sizes, vec![2, 2]);
    assert_eq!(ids[..2].to_vec(), vec![oldest.clone(), p3.clone()]);
    assert_eq!(
        ids[2..].iter().cloned().collect::<HashSet<_>>(),
        HashSet::from([p4a.clone(), p4b.clone()]),
        "the tie at 4 March comes last, split over no page twice"
    );

    // The listed projects are whole projects, as get_project returns them.
    let first = s
        .projects
        .list_inactive_projects(&ws, before, &PageRequest::first(1))
        .await
        .expect("first page");
    assert_eq!(
        first.items,
        vec![
            s.projects
                .get_project(&ws, &oldest)
                .await
                .expect("get")
                .expect("exists")
        ]
    );

    // Unarchiving brings the idle project back into view, first (oldest activity).
    s.projects
        .set_archived(&ws, &archived, false, at(12, 0, 0))
        .await
        .expect("unarchive");
    let (ids, _) = list(ws.clone()).await;
    assert_eq!(ids.first(), Some(&archived));
    assert_eq!(ids.len(), 5);

    let (theirs, _) = list(other).await;
    assert_eq!(theirs.len(), 1);
    let (none, _) = list(unique("ws")).await;
    assert!(none.is_empty());
}

// ---------------------------------------------------------------------------------------
// Run execution
// ---------------------------------------------------------------------------------------

fn assert_version_mismatch<T: std::fmt::Debug>(result: Result<T, PortError>, what: &str) {
    assert!(
        matches!(result, Err(PortError::VersionMismatch)),
        "{what}: expected VersionMismatch, got {result:?}"
    );
}

fn cell_result(cell_id: &str, marker: &str) -> CellResult {
    CellResult {
        cell_id: cell_id.to_owned(),
        status: CellStatus::Completed,
        columns: vec!["marker".to_owned(), "n".to_owned()],
        rows: vec![
            vec![json!(marker), json!(1)],
            vec![json!(marker), json!(2.5)],
        ]
        .into(),
        row_count: 2,
        duration_ms: 12,
        cache_hit: false,
        error: None,
    }
}

fn status_event(status: RunStatus, timestamp: DateTime<Utc>) -> StateEvent {
    StateEvent {
        event_type: "STATUS".to_owned(),
        value: status.as_str().to_owned(),
        timestamp,
    }
}

/// `run` as an executor starting attempt `attempt` at `t` would write it.
fn started(run: &Run, attempt: u32, t: DateTime<Utc>) -> Run {
    let mut next = Run {
        status: RunStatus::Running,
        attempt,
        start_time: Some(t),
        lease_until: Some(t + Duration::minutes(5)),
        ..run.clone()
    };
    next.state_events.push(status_event(RunStatus::Running, t));
    next
}

/// The active runs among `ids`, walking the whole (store-wide) listing.
async fn active_among(s: &Stores, ids: &HashSet<String>) -> Vec<Run> {
    let (all, _) = all_pages(50, |page| {
        let s = s.clone();
        async move { s.runs.list_active_runs(&page).await }
    })
    .await;
    all.into_iter()
        .filter(|r| ids.contains(&r.run_id))
        .collect()
}

pub async fn run_update_is_conditional_on_status_and_attempt(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let other = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let run = run_value(&p, None, None, at(3, 9, 0), at(30, 0, 0));
    create_run(s, &run).await;
    let get = || {
        let (s, ws, id) = (s.clone(), ws.clone(), run.run_id.clone());
        async move { s.runs.get_run(&ws, &id).await.expect("get run") }
    };
    let by_status = |status: RunStatus, as_of: DateTime<Utc>| {
        let (s, ws, pid) = (s.clone(), ws.clone(), p.project_id.clone());
        async move {
            let filter = RunFilter {
                status: Some(status),
                trigger: None,
            };
            s.runs
                .list_project_runs(&ws, &pid, &filter, as_of, 0, 10)
                .await
                .expect("list project runs")
        }
    };
    let mine = HashSet::from([run.run_id.clone()]);
    let as_of = at(4, 0, 0);

    let running = started(&run, 1, at(3, 9, 1));
    assert_version_mismatch(
        s.runs
            .update_run(
                &running,
                RunGuard {
                    status: RunStatus::Running,
                    attempt: 0,
                },
            )
            .await,
        "wrong status",
    );
    assert_version_mismatch(
        s.runs
            .update_run(
                &running,
                RunGuard {
                    status: RunStatus::Pending,
                    attempt: 1,
                },
            )
            .await,
        "wrong attempt",
    );
    let ghost = Run {
        run_id: unique("run"),
        ..running.clone()
    };
    assert_not_found(s.runs.update_run(&ghost, run.guard()).await, "missing run");
    // The same run id addressed through another workspace names no run there.
    let foreign = Run {
        workspace_id: other.clone(),
        ..running.clone()
    };
    assert_not_found(
        s.runs.update_run(&foreign, run.guard()).await,
        "other workspace",
    );
    assert_eq!(
        get().await,
        Some(run.clone()),
        "refused updates change nothing"
    );
    assert_eq!(
        s.runs.get_run(&other, &run.run_id).await.expect("get"),
        None
    );
    assert_eq!(active_among(s, &mine).await, vec![run.clone()]);

    s.runs
        .update_run(&running, run.guard())
        .await
        .expect("start");
    assert_eq!(get().await, Some(running.clone()));
    assert_eq!(
        by_status(RunStatus::Running, as_of).await,
        vec![running.clone()]
    );
    assert_eq!(by_status(RunStatus::Pending, as_of).await, vec![]);
    assert_eq!(active_among(s, &mine).await, vec![running.clone()]);

    // The executor died; a redelivery takes the run over as attempt 2 ...
    let retried = started(&running, 2, at(3, 9, 10));
    s.runs
        .update_run(&retried, running.guard())
        .await
        .expect("retry");
    // ... and the first executor, back from the dead, can no longer end it.
    let mut late = Run {
        status: RunStatus::Errored,
        end_time: Some(at(3, 9, 11)),
        error: Some(RunError {
            code: "CELL_FAILED".to_owned(),
            message: "relation does not exist".to_owned(),
            cell_id: Some("c1".to_owned()),
        }),
        ..running.clone()
    };
    late.state_events
        .push(status_event(RunStatus::Errored, at(3, 9, 11)));
    assert_version_mismatch(
        s.runs.update_run(&late, running.guard()).await,
        "superseded attempt",
    );
    assert_eq!(get().await, Some(retried.clone()));

    let mut done = Run {
        status: RunStatus::Completed,
        end_time: Some(at(3, 9, 12)),
        lease_until: None,
        cells: vec![cell_result("c1", "done"), cell_result("c2", "also")],
        ..retried.clone()
    };
    done.state_events
        .push(status_event(RunStatus::Completed, at(3, 9, 12)));
    s.runs
        .update_run(&done, retried.guard())
        .await
        .expect("complete");
    assert_eq!(get().await, Some(done.clone()));
    assert_version_mismatch(
        s.runs.update_run(&done, retried.guard()).await,
        "a finished run is not finished twice",
    );
    assert_eq!(by_status(RunStatus::Running, as_of).await, vec![]);
    assert_eq!(
        by_status(RunStatus::Completed, as_of).await,
        vec![done.clone()]
    );
    assert_eq!(active_among(s, &mine).await, vec![]);

    // The retention instant is kept in step with the body too.
    let shortened = Run {
        expires_at: at(10, 0, 0),
        ..done.clone()
    };
    s.runs
        .update_run(&shortened, done.guard())
        .await
        .expect("shorten retention");
    assert_eq!(by_status(RunStatus::Completed, at(10, 0, 0)).await, vec![]);
    assert_eq!(
        by_status(RunStatus::Completed, at(9, 0, 0)).await,
        vec![shortened]
    );
}

pub async fn concurrent_run_updates_succeed_once(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let run = run_value(&p, None, None, at(3, 9, 0), at(30, 0, 0));
    create_run(s, &run).await;

    // Twenty executors received the same message and race to start the run; each writes a
    // distinguishable lease so the stored run names the winner.
    let barrier = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, barrier) = (s.runs.clone(), barrier.clone());
            let mut next = started(&run, 1, at(3, 9, 1));
            next.lease_until = Some(at(3, 10, i));
            let guard = run.guard();
            tokio::spawn(async move {
                barrier.wait().await;
                let result = store.update_run(&next, guard).await;
                (next, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("update task finished") {
            (next, Ok(())) => winners.push(next),
            (_, Err(PortError::VersionMismatch)) => refused += 1,
            (_, Err(e)) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!((winners.len(), refused), (1, 19));
    assert_eq!(
        s.runs.get_run(&ws, &run.run_id).await.expect("get"),
        winners.pop()
    );
}

pub async fn project_runs_newest_first_with_filters_offset_and_expiry(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let other = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let p2 = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    // The same project id in another workspace.
    let twin = Project {
        workspace_id: other.clone(),
        ..p.clone()
    };
    s.projects
        .create_project(&twin)
        .await
        .expect("twin project");
    let schedule = new_schedule(s, &p, &owner, false, at(2, 10, 0)).await;
    let keep = at(30, 0, 0);
    let as_of = at(20, 0, 0);
    let with = |status: RunStatus, run: Run| Run { status, ..run };
    let api = |created: DateTime<Utc>, expires: DateTime<Utc>| {
        run_value(&p, None, None, created, expires)
    };
    let fired = |fire: DateTime<Utc>, created: DateTime<Utc>| {
        run_value(&p, Some(&schedule), Some(fire), created, keep)
    };

    let r1 = with(RunStatus::Completed, api(at(3, 9, 0), keep));
    let r2 = with(
        RunStatus::Completed,
        fired(at(3, 10, 0), at(3, 10, 0) + Duration::seconds(3)),
    );
    let r3 = with(
        RunStatus::Errored,
        run_value(&p, Some(&schedule), None, at(3, 11, 0), keep),
    );
    // A delayed delivery: fired for 8:30, created at 11:30. The listing is by creation.
    let late = with(RunStatus::Completed, fired(at(3, 8, 30), at(3, 11, 30)));
    let r4 = with(RunStatus::Running, api(at(3, 12, 0), keep));
    let r5 = with(RunStatus::Skipped, fired(at(3, 13, 0), at(3, 13, 0)));
    let r5_tie = with(RunStatus::Pending, api(at(3, 13, 0), keep));
    // Expiring exactly at `as_of` is expired; one second later is not.
    let expired = with(RunStatus::Completed, api(at(3, 14, 0), as_of));
    let last_second = with(
        RunStatus::Killed,
        api(at(3, 8, 0), as_of + Duration::seconds(1)),
    );
    let elsewhere = run_value(&p2, None, None, at(3, 12, 30), keep);
    let foreign = run_value(&twin, None, None, at(3, 12, 45), keep);
    for run in [
        &r5,
        &expired,
        &r1,
        &foreign,
        &r3,
        &last_second,
        &r5_tie,
        &late,
        &elsewhere,
        &r2,
        &r4,
    ] {
        create_run(s, run).await;
    }

    let list = |ws: String, pid: String, filter: RunFilter, as_of, offset, limit| {
        let s = s.clone();
        async move {
            s.runs
                .list_project_runs(&ws, &pid, &filter, as_of, offset, limit)
                .await
                .expect("list project runs")
        }
    };
    let any = RunFilter::default();
    let pid = p.project_id.clone();

    let all = list(ws.clone(), pid.clone(), any, as_of, 0, 100).await;
    assert_eq!(all.len(), 8, "{all:?}");
    assert_eq!(
        all[..2]
            .iter()
            .map(|r| r.run_id.clone())
            .collect::<HashSet<_>>(),
        HashSet::from([r5.run_id.clone(), r5_tie.run_id.clone()]),
        "the two 13:00 runs come first"
    );
    assert_eq!(
        all[2..].to_vec(),
        vec![
            r4.clone(),
            late.clone(),
            r3.clone(),
            r2.clone(),
            r1.clone(),
            last_second.clone()
        ]
    );
    // Offset and limit cut the same order into windows (ties included).
    for offset in [0, 3, 6] {
        assert_eq!(
            list(ws.clone(), pid.clone(), any, as_of, offset, 3).await,
            all[offset as usize..(offset as usize + 3).min(all.len())].to_vec(),
            "offset {offset}"
        );
    }
    assert_eq!(
        list(ws.clone(), pid.clone(), any, as_of, 8, 3).await,
        vec![]
    );
    assert_eq!(
        list(ws.clone(), pid.clone(), any, as_of, 100, 3).await,
        vec![]
    );

    let by = |status: Option<RunStatus>, trigger: Option<RunTrigger>| RunFilter { status, trigger };
    assert_eq!(
        list(
            ws.clone(),
            pid.clone(),
            by(Some(RunStatus::Completed), None),
            as_of,
            0,
            10
        )
        .await,
        vec![late.clone(), r2.clone(), r1.clone()]
    );
    assert_eq!(
        list(
            ws.clone(),
            pid.clone(),
            by(Some(RunStatus::Killed), None),
            as_of,
            0,
            10
        )
        .await,
        vec![last_second.clone()]
    );
    assert_eq!(
        list(
            ws.clone(),
            pid.clone(),
            by(None, Some(RunTrigger::Scheduled)),
            as_of,
            0,
            10
        )
        .await,
        vec![r5.clone(), late.clone(), r2.clone()]
    );
    assert_eq!(
        list(
            ws.clone(),
            pid.clone(),
            by(None, Some(RunTrigger::Manual)),
            as_of,
            0,
            10
        )
        .await,
        vec![r3.clone()]
    );
    assert_eq!(
        list(
            ws.clone(),
            pid.clone(),
            by(None, Some(RunTrigger::Api)),
            as_of,
            0,
            10
        )
        .await,
        vec![r5_tie.clone(), r4.clone(), r1.clone(), last_second.clone()]
    );
    let scheduled_completed = by(Some(RunStatus::Completed), Some(RunTrigger::Scheduled));
    assert_eq!(
        list(ws.clone(), pid.clone(), scheduled_completed, as_of, 0, 10).await,
        vec![late.clone(), r2.clone()]
    );
    assert_eq!(
        list(ws.clone(), pid.clone(), scheduled_completed, as_of, 1, 1).await,
        vec![r2.clone()]
    );
    assert_eq!(
        list(
            ws.clone(),
            pid.clone(),
            by(Some(RunStatus::Skipped), Some(RunTrigger::Api)),
            as_of,
            0,
            10
        )
        .await,
        vec![]
    );

    // Expiry is judged at `as_of`, not by the wall clock.
    let earlier = list(ws.clone(), pid.clone(), any, at(19, 0, 0), 0, 100).await;
    assert_eq!(earlier.len(), 9);
    assert_eq!(earlier[0], expired);

    // Other projects and other workspaces stay out.
    assert_eq!(
        list(ws.clone(), p2.project_id.clone(), any, as_of, 0, 100).await,
        vec![elsewhere]
    );
    assert_eq!(list(other, pid, any, as_of, 0, 100).await, vec![foreign]);
    assert_eq!(list(ws, unique("proj"), any, as_of, 0, 100).await, vec![]);
}

pub async fn active_runs_span_workspaces_with_pages(s: &Stores) {
    let a = new_workspace(s, Plan::Team).await;
    let b = new_workspace(s, Plan::Enterprise).await;
    let owner = unique("owner");
    let pa = new_project(s, &a, &owner, at(2, 9, 0)).await;
    let pb = new_project(s, &b, &owner, at(2, 9, 0)).await;
    let mut active = Vec::new();
    let mut mine = HashSet::new();
    for (p, statuses) in [
        (
            &pa,
            [
                RunStatus::Pending,
                RunStatus::Completed,
                RunStatus::Running,
                RunStatus::Skipped,
            ],
        ),
        (
            &pb,
            [
                RunStatus::Errored,
                RunStatus::Running,
                RunStatus::Killed,
                RunStatus::Pending,
            ],
        ),
    ] {
        for (i, status) in statuses.into_iter().enumerate() {
            let run = Run {
                status,
                ..run_value(p, None, None, at(3, 9, i as u32), at(30, 0, 0))
            };
            create_run(s, &run).await;
            mine.insert(run.run_id.clone());
            if !status.is_terminal() {
                active.push(run);
            }
        }
    }

    let (all, sizes) = all_pages(2, |page| {
        let s = s.clone();
        async move { s.runs.list_active_runs(&page).await }
    })
    .await;
    assert!(
        sizes.len() >= 2,
        "four active runs take pages of two: {sizes:?}"
    );
    assert!(
        all.iter().all(|r| !r.status.is_terminal()),
        "only PENDING and RUNNING runs are listed"
    );
    let distinct: HashSet<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(distinct.len(), all.len(), "no run listed twice");
    let mut listed: Vec<Run> = all
        .into_iter()
        .filter(|r| mine.contains(&r.run_id))
        .collect();
    listed.sort_by(|x, y| x.run_id.cmp(&y.run_id));
    active.sort_by(|x, y| x.run_id.cmp(&y.run_id));
    assert_eq!(listed, active);
}

/// Expiry instants of this behaviour lie before every other behaviour's (all in March), so
/// purging on a shared store never takes another behaviour's runs.
fn february(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, day, 0, 0, 0)
        .single()
        .expect("fixture instant is valid")
}

pub async fn purge_deletes_at_most_limit_expired_runs(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let p = new_project(s, &ws, &unique("owner"), at(2, 9, 0)).await;
    let as_of = february(15);
    let mut expired = Vec::new();
    for day in [3, 4, 5, 6, 10] {
        expired.push(run_value(&p, None, None, february(1), february(day)));
    }
    // Expiring exactly at `as_of` is expired; one second later is not.
    expired.push(run_value(&p, None, None, february(1), as_of));
    let kept = [
        run_value(&p, None, None, february(1), as_of + Duration::seconds(1)),
        run_value(&p, None, None, february(1), at(30, 0, 0)),
    ];
    for run in expired.iter().chain(&kept) {
        create_run(s, run).await;
    }

    assert_eq!(
        s.runs.purge_expired_runs(as_of, 0).await.expect("purge 0"),
        0
    );
    let first = s.runs.purge_expired_runs(as_of, 2).await.expect("purge");
    // Stores with their own expiry (DynamoDB TTL) may purge nothing; one that purges
    // takes exactly `limit` while more than that are expired.
    assert!(first == 0 || first == 2, "purged {first}");
    let mut total = first;
    if first > 0 {
        for _ in 0..10_000 {
            let n = s.runs.purge_expired_runs(as_of, 2).await.expect("purge");
            assert!(n <= 2, "purged {n} with limit 2");
            total += n;
            if n == 0 {
                break;
            }
        }
        assert!(total >= expired.len() as u64, "purged {total}");
        for run in &expired {
            assert_eq!(
                s.runs.get_run(&ws, &run.run_id).await.expect("get"),
                None,
                "expired run purged"
            );
        }
    }
    for run in &kept {
        assert_eq!(
            s.runs
                .get_run(&ws, &run.run_id)
                .await
                .expect("get")
                .as_ref(),
            Some(run),
            "a run still retained is never purged"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Published results
// ---------------------------------------------------------------------------------------

fn published(project: &Project, as_of: DateTime<Utc>, marker: &str) -> PublishedResults {
    PublishedResults {
        workspace_id: project.workspace_id.clone(),
        project_id: project.project_id.clone(),
        run_id: unique("run"),
        project_version: 1,
        as_of,
        cells: vec![cell_result("c1", marker)],
        updated_at: as_of + Duration::minutes(1),
    }
}

pub async fn results_are_replaced_only_by_newer_ones(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let other = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    let twin = Project {
        workspace_id: other.clone(),
        ..p.clone()
    };
    s.projects
        .create_project(&twin)
        .await
        .expect("twin project");
    let get = |ws: String| {
        let (s, pid) = (s.clone(), p.project_id.clone());
        async move { s.results.get_results(&ws, &pid).await.expect("get results") }
    };
    assert_eq!(get(ws.clone()).await, None);

    let first = published(&p, at(5, 9, 0), "first");
    assert!(s.results.put_results_if_newer(&first).await.expect("put"));
    assert_eq!(get(ws.clone()).await, Some(first.clone()));

    let older = published(&p, at(4, 9, 0), "older");
    assert!(
        !s.results
            .put_results_if_newer(&older)
            .await
            .expect("put older")
    );
    let same_instant = published(&p, at(5, 9, 0), "same instant");
    assert!(
        !s.results
            .put_results_if_newer(&same_instant)
            .await
            .expect("put equal")
    );
    assert_eq!(
        get(ws.clone()).await,
        Some(first),
        "refused puts change nothing"
    );

    let newer = published(&p, at(5, 9, 0) + Duration::seconds(1), "newer");
    assert!(
        s.results
            .put_results_if_newer(&newer)
            .await
            .expect("put newer")
    );
    assert_eq!(get(ws.clone()).await, Some(newer.clone()));

    // The twin project of another workspace has results of its own, ordered on their own.
    assert_eq!(get(other.clone()).await, None);
    let theirs = published(&twin, at(1, 0, 0), "theirs");
    assert!(
        s.results
            .put_results_if_newer(&theirs)
            .await
            .expect("put theirs")
    );
    assert_eq!(get(other).await, Some(theirs));
    assert_eq!(get(ws.clone()).await, Some(newer));
    assert_eq!(
        s.results
            .get_results(&ws, &unique("proj"))
            .await
            .expect("get unknown"),
        None
    );
}

pub async fn concurrent_results_keep_the_newest(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let p = new_project(s, &ws, &unique("owner"), at(2, 9, 0)).await;
    let candidates: Vec<PublishedResults> = [3, 7, 1, 9, 0, 5, 2, 8, 6, 4]
        .into_iter()
        .map(|hour| published(&p, at(5, hour, 0), &format!("hour {hour}")))
        .collect();
    let newest = candidates
        .iter()
        .max_by_key(|r| r.as_of)
        .cloned()
        .expect("candidates");

    let barrier = Arc::new(Barrier::new(candidates.len()));
    let tasks: Vec<_> = candidates
        .into_iter()
        .map(|results| {
            let (store, barrier) = (s.results.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let stored = store.put_results_if_newer(&results).await;
                (results.run_id, stored)
            })
        })
        .collect();
    for task in tasks {
        let (run_id, stored) = task.await.expect("put task finished");
        let stored = stored.expect("put results");
        if run_id == newest.run_id {
            assert!(stored, "the newest results are always stored");
        }
    }
    assert_eq!(
        s.results
            .get_results(&ws, &p.project_id)
            .await
            .expect("get"),
        Some(newest)
    );
}

// ---------------------------------------------------------------------------------------
// Connections, SQL cache, rate limits
// ---------------------------------------------------------------------------------------

fn connection(workspace_id: &str, name: &str, sealed: &str, t: DateTime<Utc>) -> Connection {
    Connection {
        workspace_id: workspace_id.to_owned(),
        name: name.to_owned(),
        kind: ConnectionKind::Postgres,
        sealed_config: sealed.to_owned(),
        updated_by: "admin".to_owned(),
        created_at: t,
        updated_at: t,
    }
}

pub async fn connections_upsert_get_and_list(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let other = new_workspace(s, Plan::Team).await;
    assert_eq!(
        s.connections
            .get_connection(&ws, "warehouse")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        s.connections.list_connections(&ws).await.expect("list"),
        vec![]
    );

    let warehouse = connection(&ws, "warehouse", "sealed-1", at(2, 9, 0));
    let analytics = connection(&ws, "analytics", "sealed-2", at(2, 10, 0));
    let zeta = connection(&ws, "zeta", "sealed-3", at(2, 8, 0));
    for c in [&warehouse, &analytics, &zeta] {
        s.connections.put_connection(c).await.expect("put");
    }
    assert_eq!(
        s.connections
            .get_connection(&ws, "warehouse")
            .await
            .expect("get"),
        Some(warehouse.clone())
    );
    assert_eq!(
        s.connections.list_connections(&ws).await.expect("list"),
        vec![analytics.clone(), warehouse.clone(), zeta.clone()],
        "by name"
    );

    // A replacement keeps when the connection was first created.
    let replacement = Connection {
        kind: ConnectionKind::Sqlite,
        sealed_config: "sealed-4".to_owned(),
        updated_by: "another-admin".to_owned(),
        created_at: at(4, 9, 0),
        updated_at: at(4, 9, 0),
        ..warehouse.clone()
    };
    s.connections
        .put_connection(&replacement)
        .await
        .expect("replace");
    let replaced = Connection {
        created_at: warehouse.created_at,
        ..replacement
    };
    assert_eq!(
        s.connections
            .get_connection(&ws, "warehouse")
            .await
            .expect("get"),
        Some(replaced.clone())
    );
    assert_eq!(
        s.connections.list_connections(&ws).await.expect("list"),
        vec![analytics, replaced.clone(), zeta]
    );

    // Names are per workspace.
    assert_eq!(
        s.connections
            .get_connection(&other, "warehouse")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        s.connections.list_connections(&other).await.expect("list"),
        vec![]
    );
    let theirs = connection(&other, "warehouse", "sealed-theirs", at(5, 9, 0));
    s.connections
        .put_connection(&theirs)
        .await
        .expect("put theirs");
    assert_eq!(
        s.connections.list_connections(&other).await.expect("list"),
        vec![theirs]
    );
    assert_eq!(
        s.connections
            .get_connection(&ws, "warehouse")
            .await
            .expect("get"),
        Some(replaced)
    );
}

fn cached(
    workspace_id: &str,
    key: &str,
    marker: &str,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> CachedResult {
    CachedResult {
        workspace_id: workspace_id.to_owned(),
        key: key.to_owned(),
        columns: vec!["marker".to_owned(), "n".to_owned()],
        rows: vec![vec![json!(marker), json!(1)], vec![json!(null), json!(2.5)]].into(),
        row_count: 2,
        created_at,
        expires_at,
    }
}

pub async fn sql_cache_get_expiry_and_overwrite(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let other = new_workspace(s, Plan::Team).await;
    let key = unique("key");
    let get = |ws: String, as_of: DateTime<Utc>| {
        let (s, key) = (s.clone(), key.clone());
        async move {
            s.sql_cache
                .get_cached(&ws, &key, as_of)
                .await
                .expect("get cached")
        }
    };
    assert_eq!(get(ws.clone(), at(3, 9, 0)).await, None);

    let first = cached(&ws, &key, "first", at(3, 9, 0), at(3, 10, 0));
    s.sql_cache.put_cached(&first).await.expect("put");
    assert_eq!(get(ws.clone(), at(3, 9, 30)).await, Some(first.clone()));
    assert_eq!(
        get(ws.clone(), at(3, 10, 0) - Duration::seconds(1)).await,
        Some(first.clone())
    );
    // Expired at its expiry instant.
    assert_eq!(get(ws.clone(), at(3, 10, 0)).await, None);

    let second = cached(&ws, &key, "second", at(3, 9, 45), at(3, 11, 0));
    s.sql_cache.put_cached(&second).await.expect("overwrite");
    assert_eq!(get(ws.clone(), at(3, 9, 50)).await, Some(second.clone()));
    assert_eq!(get(ws.clone(), at(3, 10, 30)).await, Some(second.clone()));

    // An expired entry is overwritten like any other.
    let third = cached(&ws, &key, "third", at(3, 12, 0), at(3, 13, 0));
    s.sql_cache.put_cached(&third).await.expect("refresh");
    assert_eq!(get(ws.clone(), at(3, 12, 0)).await, Some(third.clone()));

    // Keys are per workspace.
    assert_eq!(get(other.clone(), at(3, 12, 0)).await, None);
    let theirs = cached(&other, &key, "theirs", at(3, 12, 0), at(3, 14, 0));
    s.sql_cache.put_cached(&theirs).await.expect("put theirs");
    assert_eq!(get(other, at(3, 12, 30)).await, Some(theirs));
    assert_eq!(get(ws, at(3, 12, 30)).await, Some(third));
}

/// Rate-limit windows of the contract all expire at the end of the month, after every
/// window start the suite uses, so no behaviour's hits can make another's windows look
/// forgotten on a shared store.
fn window_expiry() -> DateTime<Utc> {
    at(31, 0, 0)
}

pub async fn rate_limit_counts_up_to_the_limit_per_window(s: &Stores) {
    let key = unique("rl");
    let hit = |key: String, window: DateTime<Utc>, limit: u32| {
        let s = s.clone();
        async move {
            s.rate_limits
                .hit(&key, window, window_expiry(), limit)
                .await
                .expect("hit")
        }
    };
    let w1 = at(3, 9, 0);
    let w2 = at(3, 9, 1);
    for i in 0..3 {
        assert!(hit(key.clone(), w1, 3).await, "hit {i} is under the limit");
    }
    assert!(!hit(key.clone(), w1, 3).await, "the fourth is refused");
    assert!(!hit(key.clone(), w1, 3).await, "and so is the fifth");
    // Refused hits were not counted: with a higher limit exactly two more fit.
    assert!(hit(key.clone(), w1, 5).await);
    assert!(hit(key.clone(), w1, 5).await);
    assert!(!hit(key.clone(), w1, 5).await);

    // A new window counts from zero; another key has windows of its own.
    assert!(hit(key.clone(), w2, 3).await);
    assert!(hit(unique("rl"), w1, 3).await);
    // A zero limit counts nothing.
    assert!(!hit(unique("rl"), w1, 0).await);
}

pub async fn concurrent_hits_count_exactly_the_limit(s: &Stores) {
    let key = unique("rl");
    let window = at(3, 9, 0);
    let barrier = Arc::new(Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (store, barrier, key) = (s.rate_limits.clone(), barrier.clone(), key.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.hit(&key, window, window_expiry(), 20).await
            })
        })
        .collect();
    let mut counted = 0;
    for task in tasks {
        if task.await.expect("hit task finished").expect("hit") {
            counted += 1;
        }
    }
    assert_eq!(counted, 20);
    assert!(
        !s.rate_limits
            .hit(&key, window, window_expiry(), 20)
            .await
            .expect("hit")
    );
}

/// The notification settings of SPEC §7 travel inside the schedule and run records: every
/// field, including the JSON value of a condition, comes back as it was written.
pub async fn notification_settings_round_trip_on_schedules_and_runs(s: &Stores) {
    let ws = new_workspace(s, Plan::Team).await;
    let project = new_project(s, &ws, "ada", at(2, 9, 0)).await;
    let settings: NotificationSettings = serde_json::from_value(json!({
        "subscriptions": [
            {"on": "SUCCESS", "recipients": {"userIds": ["ada"], "emails": ["ops@example.com"]}},
            {"on": "FAILURE", "includeSkipped": true,
             "recipients": {"slackChannelIds": ["C1"], "webhookUrls": ["https://hooks.example.com/x?t=1"]}}
        ],
        "conditional": [
            {"name": "big", "cellId": "c1", "condition": {"measure": "ROW_COUNT", "op": "GT", "value": 10},
             "recipients": {"emails": ["ops@example.com"]}},
            {"name": "ratio", "cellId": "c1",
             "condition": {"measure": "VALUE", "column": "r", "op": "LTE", "value": 0.25},
             "recipients": {"emails": ["ops@example.com"]}},
            {"name": "label", "cellId": "c1",
             "condition": {"measure": "VALUE", "column": "l", "op": "EQ", "value": "red"},
             "recipients": {"emails": ["ops@example.com"]}},
            {"name": "empty", "cellId": "c1", "condition": {"measure": "VALUE", "column": "l", "op": "IS_EMPTY"},
             "recipients": {"emails": ["ops@example.com"]}}
        ]
    }))
    .expect("settings JSON");
    let schedule = Schedule {
        notifications: settings.clone(),
        ..schedule_value(&project, "ada", false, at(2, 9, 0))
    };
    s.schedules
        .insert_schedule(&schedule, &ScheduleLimits::default())
        .await
        .expect("insert");
    let stored = s
        .schedules
        .get_schedule(&ws, &schedule.schedule_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.notifications, settings);
    let run = Run {
        notification_settings: settings.clone(),
        ..run_value(
            &project,
            Some(&schedule),
            Some(at(3, 9, 0)),
            at(3, 9, 0),
            at(30, 0, 0),
        )
    };
    create_run(s, &run).await;
    let stored = s
        .runs
        .get_run(&ws, &run.run_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.notification_settings, settings);
    assert_eq!(stored, run);
}

// ---------------------------------------------------------------------------------------
// Notifications: the run-event outbox, deliveries and integrations
// ---------------------------------------------------------------------------------------

/// The store under test with the notification ports too. Separate from `Stores` (and its
/// macro, `notification_store_contract_tests!`) so a backend can run the rest of the
/// contract before it implements these ports; once it does, its test file adds one line.
#[derive(Clone)]
pub struct NotifyStores {
    pub base: Stores,
    pub outbox: Arc<dyn RunEventOutbox>,
    pub deliveries: Arc<dyn DeliveryStore>,
    pub integrations: Arc<dyn IntegrationStore>,
}

impl NotifyStores {
    pub fn from_store<S>(store: S) -> NotifyStores
    where
        S: WorkspaceStore
            + ProjectStore
            + ScheduleStore
            + RunStore
            + ResultsStore
            + ConnectionStore
            + SqlCacheStore
            + RateLimitStore
            + RunEventOutbox
            + DeliveryStore
            + IntegrationStore
            + RunPathStore
            + Clone
            + 'static,
    {
        let shared = Arc::new(store.clone());
        NotifyStores {
            base: Stores::from_store(store),
            outbox: shared.clone(),
            deliveries: shared.clone(),
            integrations: shared,
        }
    }
}

/// Like `store_contract_tests!`, for the notification ports; `$fresh` returns
/// `(guard, NotifyStores)`.
#[macro_export]
macro_rules! notification_store_contract_tests {
    ($fresh:path) => {
        $crate::notification_store_contract_tests!(@each $fresh;
            outbox_lists_pending_events_and_clears_only_the_flag,
            outbox_pages_and_stays_in_its_workspace,
            delivery_claims_are_exclusive_until_final_or_expired,
            concurrent_claims_hand_a_delivery_to_one_claimant,
            deliveries_belong_to_their_run_and_workspace,
            integration_parts_change_independently,
        );
    };
    (@each $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (_guard, stores) = $fresh().await;
                $crate::contract::$name(&stores).await;
            }
        )*
    };
}

fn ended(run: &Run, status: RunStatus, t: DateTime<Utc>) -> Run {
    let mut next = Run {
        status,
        end_time: Some(t),
        event_pending: true,
        ..run.clone()
    };
    next.state_events.push(status_event(status, t));
    next
}

async fn pending_among(s: &NotifyStores, mine: &HashSet<String>) -> Vec<String> {
    let (all, _) = all_pages(100, |page| {
        let s = s.clone();
        async move { s.outbox.list_pending_events(&page).await }
    })
    .await;
    let mut ids: Vec<String> = all
        .into_iter()
        .filter(|r| mine.contains(&r.run_id))
        .map(|r| r.run_id)
        .collect();
    ids.sort();
    ids
}

pub async fn outbox_lists_pending_events_and_clears_only_the_flag(s: &NotifyStores) {
    let b = &s.base;
    let ws = new_workspace(b, Plan::Team).await;
    let project = new_project(b, &ws, "ada", at(2, 9, 0)).await;
    // Ended by an update (the executor), created ended (a skip), and one without event.
    let running = started(
        &run_value(&project, None, None, at(3, 9, 0), at(30, 0, 0)),
        1,
        at(3, 9, 1),
    );
    create_run(b, &running).await;
    let finished = ended(&running, RunStatus::Completed, at(3, 9, 2));
    b.runs
        .update_run(&finished, running.guard())
        .await
        .expect("end the run");
    let skipped = ended(
        &run_value(&project, None, None, at(3, 10, 0), at(30, 0, 0)),
        RunStatus::Skipped,
        at(3, 10, 0),
    );
    create_run(b, &skipped).await;
    let quiet = Run {
        event_pending: false,
        ..ended(
            &run_value(&project, None, None, at(3, 11, 0), at(30, 0, 0)),
            RunStatus::Errored,
            at(3, 11, 1),
        )
    };
    create_run(b, &quiet).await;
    let mine: HashSet<String> = [&finished, &skipped, &quiet]
        .iter()
        .map(|r| r.run_id.clone())
        .collect();
    let mut expected = vec![finished.run_id.clone(), skipped.run_id.clone()];
    expected.sort();
    assert_eq!(pending_among(s, &mine).await, expected);

    s.outbox
        .mark_event_published(&ws, &finished.run_id)
        .await
        .expect("mark");
    assert_eq!(pending_among(s, &mine).await, vec![skipped.run_id.clone()]);
    let stored = b
        .runs
        .get_run(&ws, &finished.run_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        stored,
        Run {
            event_pending: false,
            ..finished.clone()
        },
        "only the flag changed"
    );
    // Marking again, or a run that does not exist, changes nothing and succeeds.
    s.outbox
        .mark_event_published(&ws, &finished.run_id)
        .await
        .expect("mark again");
    s.outbox
        .mark_event_published(&ws, &unique("run"))
        .await
        .expect("mark a missing run");
    // The terminal state still refuses a second ending.
    assert_version_mismatch(
        b.runs.update_run(&finished, running.guard()).await,
        "the run stays ended once",
    );
}

pub async fn outbox_pages_and_stays_in_its_workspace(s: &NotifyStores) {
    let b = &s.base;
    let ws = new_workspace(b, Plan::Team).await;
    let other = new_workspace(b, Plan::Team).await;
    let project = new_project(b, &ws, "ada", at(2, 9, 0)).await;
    let mut mine = HashSet::new();
    for i in 0..5 {
        let run = ended(
            &run_value(&project, None, None, at(3, 9, i), at(30, 0, 0)),
            RunStatus::Skipped,
            at(3, 9, i),
        );
        create_run(b, &run).await;
        mine.insert(run.run_id.clone());
    }
    let (all, sizes) = all_pages(2, |page| {
        let s = s.clone();
        async move { s.outbox.list_pending_events(&page).await }
    })
    .await;
    assert!(
        sizes.len() >= 3,
        "five pending events take pages of two: {sizes:?}"
    );
    let listed: HashSet<String> = all
        .iter()
        .filter(|r| mine.contains(&r.run_id))
        .map(|r| r.run_id.clone())
        .collect();
    assert_eq!(listed, mine, "every pending event once");
    let some = mine.iter().next().cloned().expect("a run");
    s.outbox
        .mark_event_published(&other, &some)
        .await
        .expect("another workspace's mark succeeds ...");
    assert_eq!(
        pending_among(s, &HashSet::from([some.clone()])).await,
        vec![some],
        "... and clears nothing"
    );
}

fn delivery(
    id: &str,
    channel: DeliveryChannel,
    target: &str,
    token: &str,
    now: DateTime<Utc>,
) -> DeliveryRecord {
    DeliveryRecord {
        delivery_id: id.to_owned(),
        channel,
        target: target.to_owned(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        error: None,
        reasons: vec!["SUCCESS".to_owned(), "CONDITION:big orders".to_owned()],
        created_at: now,
        updated_at: now,
        claim_token: Some(token.to_owned()),
        lease_until: Some(now + Duration::minutes(5)),
    }
}

async fn ended_run(s: &NotifyStores) -> (String, Run) {
    let b = &s.base;
    let ws = new_workspace(b, Plan::Team).await;
    let project = new_project(b, &ws, "ada", at(2, 9, 0)).await;
    let run = ended(
        &run_value(&project, None, None, at(3, 9, 0), at(30, 0, 0)),
        RunStatus::Completed,
        at(3, 9, 5),
    );
    create_run(b, &run).await;
    (ws, run)
}

pub async fn delivery_claims_are_exclusive_until_final_or_expired(s: &NotifyStores) {
    let (ws, run) = ended_run(s).await;
    let t0 = at(3, 9, 6);
    let first = delivery(
        "d1",
        DeliveryChannel::Email,
        "a***@example.com",
        "first",
        t0,
    );
    let claimed = s
        .deliveries
        .claim_delivery(&ws, &run.run_id, &first, t0)
        .await
        .expect("claim");
    assert_eq!(claimed, DeliveryClaim::Claimed(first.clone()));

    // While the lease holds, another claimant finds it busy.
    let second = delivery(
        "d1",
        DeliveryChannel::Email,
        "a***@example.com",
        "second",
        at(3, 9, 7),
    );
    assert_eq!(
        s.deliveries
            .claim_delivery(&ws, &run.run_id, &second, at(3, 9, 7))
            .await
            .expect("claim"),
        DeliveryClaim::Busy(first.clone())
    );

    // The first claimant records an attempt and renews its lease.
    let attempted = DeliveryRecord {
        attempts: 1,
        error: Some("the endpoint answered 503".to_owned()),
        updated_at: at(3, 9, 8),
        lease_until: Some(at(3, 9, 13)),
        ..first.clone()
    };
    s.deliveries
        .save_delivery(&ws, &run.run_id, &attempted)
        .await
        .expect("save under the claim");

    // It dies; once its lease ran out (at the instant itself too), the next takes over
    // and keeps the attempts made.
    let third = delivery(
        "d1",
        DeliveryChannel::Email,
        "a***@example.com",
        "third",
        at(3, 9, 13),
    );
    let DeliveryClaim::Claimed(taken) = s
        .deliveries
        .claim_delivery(&ws, &run.run_id, &third, at(3, 9, 13))
        .await
        .expect("claim")
    else {
        panic!("an expired claim is taken over");
    };
    assert_eq!(
        taken,
        DeliveryRecord {
            claim_token: Some("third".to_owned()),
            lease_until: third.lease_until,
            updated_at: third.updated_at,
            ..attempted.clone()
        }
    );
    // The one that lost the claim can no longer write.
    assert_version_mismatch(
        s.deliveries
            .save_delivery(
                &ws,
                &run.run_id,
                &DeliveryRecord {
                    attempts: 2,
                    ..attempted.clone()
                },
            )
            .await,
        "a lost claim",
    );
    let delivered = DeliveryRecord {
        status: DeliveryStatus::Delivered,
        attempts: 2,
        error: None,
        lease_until: None,
        ..taken.clone()
    };
    s.deliveries
        .save_delivery(&ws, &run.run_id, &delivered)
        .await
        .expect("save the outcome");
    // A final delivery is done for every later claim, however late.
    assert_eq!(
        s.deliveries
            .claim_delivery(
                &ws,
                &run.run_id,
                &delivery("d1", DeliveryChannel::Email, "x", "fourth", at(9, 0, 0)),
                at(9, 0, 0)
            )
            .await
            .expect("claim"),
        DeliveryClaim::Done(delivered.clone())
    );
    assert_eq!(
        s.deliveries
            .list_deliveries(&ws, &run.run_id)
            .await
            .expect("list"),
        vec![delivered]
    );
    assert_not_found(
        s.deliveries
            .save_delivery(
                &ws,
                &run.run_id,
                &delivery("nope", DeliveryChannel::Email, "x", "t", t0),
            )
            .await,
        "an unknown delivery",
    );
}

pub async fn concurrent_claims_hand_a_delivery_to_one_claimant(s: &NotifyStores) {
    let (ws, run) = ended_run(s).await;
    let now = at(3, 9, 6);
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, ws, run_id, barrier) = (s.clone(), ws.clone(), run.run_id.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let record = delivery(
                "d1",
                DeliveryChannel::Webhook,
                "hooks.example.com/…/abcd",
                &format!("c{i}"),
                now,
            );
            barrier.wait().await;
            s.deliveries
                .claim_delivery(&ws, &run_id, &record, now)
                .await
                .expect("claim")
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        match t.await.expect("task") {
            DeliveryClaim::Claimed(_) => claimed += 1,
            DeliveryClaim::Busy(_) => {}
            DeliveryClaim::Done(r) => panic!("nothing is done yet: {r:?}"),
        }
    }
    assert_eq!(claimed, 1, "exactly one claimant");
}

pub async fn deliveries_belong_to_their_run_and_workspace(s: &NotifyStores) {
    let (ws, run) = ended_run(s).await;
    let (other_ws, other_run) = ended_run(s).await;
    let now = at(3, 9, 6);
    for (id, channel, target) in [
        ("d3", DeliveryChannel::Webhook, "hooks.example.com/…/abcd"),
        ("d1", DeliveryChannel::Email, "b***@example.com"),
        ("d2", DeliveryChannel::Email, "a***@example.com"),
        ("d4", DeliveryChannel::Slack, "C1"),
    ] {
        s.deliveries
            .claim_delivery(
                &ws,
                &run.run_id,
                &delivery(id, channel, target, "t", now),
                now,
            )
            .await
            .expect("claim");
    }
    s.deliveries
        .claim_delivery(
            &other_ws,
            &other_run.run_id,
            &delivery("d1", DeliveryChannel::Email, "z***@example.com", "t", now),
            now,
        )
        .await
        .expect("the same delivery id on another run is another delivery");
    let listed: Vec<String> = s
        .deliveries
        .list_deliveries(&ws, &run.run_id)
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.delivery_id)
        .collect();
    assert_eq!(listed, ["d2", "d1", "d4", "d3"], "by channel, then target");
    assert_eq!(
        s.deliveries
            .list_deliveries(&other_ws, &run.run_id)
            .await
            .expect("list"),
        vec![],
        "a run is not reachable through another workspace"
    );
    assert_not_found(
        s.deliveries
            .claim_delivery(
                &other_ws,
                &run.run_id,
                &delivery("d9", DeliveryChannel::Email, "x", "t", now),
                now,
            )
            .await,
        "a claim through another workspace",
    );
    assert_not_found(
        s.deliveries
            .claim_delivery(
                &ws,
                &unique("run"),
                &delivery("d9", DeliveryChannel::Email, "x", "t", now),
                now,
            )
            .await,
        "a claim on a run that does not exist",
    );
}

pub async fn integration_parts_change_independently(s: &NotifyStores) {
    let ws = new_workspace(&s.base, Plan::Team).await;
    let other = new_workspace(&s.base, Plan::Team).await;
    assert_eq!(
        s.integrations.get_integrations(&ws).await.expect("get"),
        Integrations::default()
    );
    let slack = SlackIntegration {
        channel_ids: vec!["C1".to_owned(), "C2".to_owned()],
        sealed_webhook_urls: "sealed-1".to_owned(),
        updated_by: "ada".to_owned(),
        updated_at: at(3, 9, 0),
    };
    s.integrations
        .put_slack_integration(&ws, &slack)
        .await
        .expect("put slack");
    let secret = WebhookSigningSecret {
        sealed_secret: "sealed-secret".to_owned(),
        rotated_by: "ada".to_owned(),
        rotated_at: at(3, 10, 0),
    };
    s.integrations
        .put_webhook_secret(&ws, &secret)
        .await
        .expect("put secret");
    let replaced = SlackIntegration {
        channel_ids: vec!["C3".to_owned()],
        sealed_webhook_urls: "sealed-2".to_owned(),
        updated_at: at(3, 11, 0),
        ..slack
    };
    s.integrations
        .put_slack_integration(&ws, &replaced)
        .await
        .expect("replace slack");
    assert_eq!(
        s.integrations.get_integrations(&ws).await.expect("get"),
        Integrations {
            slack: Some(replaced),
            webhook_secret: Some(secret),
        }
    );
    assert_eq!(
        s.integrations.get_integrations(&other).await.expect("get"),
        Integrations::default(),
        "another workspace has none"
    );
}

// ---------------------------------------------------------------------------------------
// The scheduled-run path (RunPathStore)
// ---------------------------------------------------------------------------------------

fn fire_request(schedule: &Schedule, hints: bool) -> FireRequest {
    FireRequest {
        workspace_id: schedule.workspace_id.clone(),
        schedule_id: schedule.schedule_id.clone(),
        project_id: hints.then(|| schedule.project_id.clone()),
        created_by: hints.then(|| schedule.created_by.clone()),
    }
}

async fn load_fire(s: &Stores, request: &FireRequest, now: DateTime<Utc>) -> FireContext {
    s.run_path
        .load_fire(request, now)
        .await
        .expect("load fire")
        .expect("the schedule exists")
}

/// A published project (cells on `warehouse`), its creator as a user and member, and a
/// schedule of the creator.
async fn published_fixture(s: &Stores) -> (Project, Schedule, User) {
    let ws = new_workspace(s, Plan::Team).await;
    let owner = unique("owner");
    let user = User {
        user_id: owner.clone(),
        workspace_id: ws.clone(),
        email: Some("owner@example.com".into()),
        workspace_role: WorkspaceRole::Member,
    };
    s.workspaces.upsert_user(&user).await.expect("user");
    let p = new_project(s, &ws, &owner, at(2, 9, 0)).await;
    s.projects
        .put_draft(&ws, &p.project_id, &body("a"), at(2, 9, 30))
        .await
        .expect("draft");
    s.projects
        .publish(&ws, &p.project_id, &owner, at(2, 10, 0))
        .await
        .expect("publish");
    let project = s
        .projects
        .get_project(&ws, &p.project_id)
        .await
        .expect("get")
        .expect("exists");
    let schedule = new_schedule(s, &project, &owner, false, at(2, 11, 0)).await;
    (project, schedule, user)
}

pub async fn fire_context_holds_everything_dispatch_checks(s: &Stores) {
    let (project, schedule, user) = published_fixture(s).await;
    let ws = project.workspace_id.clone();
    let now = at(3, 9, 0);
    for hints in [true, false] {
        let fire = load_fire(s, &fire_request(&schedule, hints), now).await;
        assert_eq!(fire.schedule, schedule, "hints: {hints}");
        assert_eq!(fire.project.as_deref(), Some(&project), "hints: {hints}");
        assert_eq!(fire.creator.as_deref(), Some(&user), "hints: {hints}");
        // The creator of a project is its FULL_ACCESS member.
        assert_eq!(fire.creator_role, Some(ProjectRole::FullAccess));
        assert!(!fire.previous_run_active);
        if let Some(names) = &fire.published_connections {
            assert_eq!(names, &vec!["warehouse".to_owned()]);
        }
    }
    // Hints that do not belong to the schedule are not trusted: the same context.
    let mut forged = fire_request(&schedule, true);
    forged.project_id = Some(unique("proj"));
    forged.created_by = Some(unique("someone"));
    let fire = load_fire(s, &forged, now).await;
    assert_eq!(fire.project.as_deref(), Some(&project));
    assert_eq!(fire.creator.as_deref(), Some(&user));
    // A member's role is read live; a creator who left has none.
    s.projects
        .remove_member(&ws, &project.project_id, &user.user_id)
        .await
        .expect("remove member");
    let fire = load_fire(s, &fire_request(&schedule, true), now).await;
    assert_eq!(fire.creator_role, None);
    // A schedule that is gone, or of another workspace, is no fire.
    let mut gone = fire_request(&schedule, true);
    gone.schedule_id = unique("sched");
    assert_eq!(s.run_path.load_fire(&gone, now).await.expect("load"), None);
    let mut elsewhere = fire_request(&schedule, true);
    elsewhere.workspace_id = new_workspace(s, Plan::Team).await;
    assert_eq!(
        s.run_path.load_fire(&elsewhere, now).await.expect("load"),
        None
    );
}

pub async fn fire_context_tracks_the_schedules_active_run(s: &Stores) {
    let (project, schedule, _) = published_fixture(s).await;
    let now = at(3, 9, 0);
    let active = |fire: FireContext| fire.previous_run_active;
    let run = run_value(
        &project,
        Some(&schedule),
        Some(at(3, 8, 0)),
        at(3, 8, 0),
        at(30, 0, 0),
    );
    create_run(s, &run).await;
    assert!(active(
        load_fire(s, &fire_request(&schedule, true), now).await
    ));
    assert!(active(
        load_fire(s, &fire_request(&schedule, false), now).await
    ));

    let start = RunStart {
        at: at(3, 8, 1),
        lease_until: at(3, 8, 2),
    };
    let started = s
        .run_path
        .start_pending_run(&project.workspace_id, &run.run_id, start)
        .await
        .expect("start")
        .expect("started");
    assert!(active(
        load_fire(s, &fire_request(&schedule, true), now).await
    ));

    let mut ended = started.clone();
    ended.status = RunStatus::Completed;
    ended.end_time = Some(at(3, 8, 3));
    ended.lease_until = None;
    s.runs
        .update_run(&ended, started.guard())
        .await
        .expect("end");
    assert!(!active(
        load_fire(s, &fire_request(&schedule, true), now).await
    ));
    assert!(!active(
        load_fire(s, &fire_request(&schedule, false), now).await
    ));

    // A skipped run is created ended: nothing is active.
    let mut skipped = run_value(
        &project,
        Some(&schedule),
        Some(at(3, 9, 0)),
        at(3, 9, 0),
        at(30, 0, 0),
    );
    skipped.status = RunStatus::Skipped;
    create_run(s, &skipped).await;
    assert!(!active(
        load_fire(s, &fire_request(&schedule, true), now).await
    ));

    // A manual run of the schedule counts as its active run too.
    let manual = run_value(&project, Some(&schedule), None, at(3, 10, 0), at(30, 0, 0));
    create_run(s, &manual).await;
    assert!(active(
        load_fire(s, &fire_request(&schedule, true), at(3, 10, 1)).await
    ));
}

pub async fn fire_contexts_load_together_as_one_by_one(s: &Stores) {
    let (project, schedule, _) = published_fixture(s).await;
    let ws = project.workspace_id.clone();
    // A second schedule, of a creator who is no member, with a run still going (created
    // `lasting`, so that its run and active-run marker outlive the test).
    let stranger = unique("stranger");
    let other = new_schedule(s, &project, &stranger, false, at(2, 12, 0)).await;
    create_run(
        s,
        &run_value(
            &project,
            Some(&other),
            Some(at(3, 8, 0)),
            lasting(3, 8, 0),
            lasting(30, 0, 0),
        ),
    )
    .await;
    let now = at(3, 9, 0);
    let mut gone = fire_request(&schedule, false);
    gone.schedule_id = unique("sched");
    let mut elsewhere = fire_request(&other, false);
    elsewhere.workspace_id = new_workspace(s, Plan::Team).await;
    // A schedule of another project between fires of the first: each fire gets its own.
    let (second_project, second_schedule, _) = published_fixture(s).await;
    let requests = vec![
        fire_request(&schedule, true),
        gone,
        fire_request(&other, false),
        elsewhere,
        fire_request(&second_schedule, false),
        fire_request(&schedule, false),
    ];
    let together = s
        .run_path
        .load_fires(&requests.iter().collect::<Vec<_>>(), now)
        .await
        .expect("load fires");
    let mut one_by_one = Vec::new();
    for request in &requests {
        one_by_one.push(s.run_path.load_fire(request, now).await.expect("load"));
    }
    assert_eq!(together, one_by_one);
    let schedules: Vec<Option<&str>> = together
        .iter()
        .map(|f| f.as_ref().map(|f| f.schedule.schedule_id.as_str()))
        .collect();
    assert_eq!(
        schedules,
        [
            Some(schedule.schedule_id.as_str()),
            None,
            Some(other.schedule_id.as_str()),
            None,
            Some(second_schedule.schedule_id.as_str()),
            Some(schedule.schedule_id.as_str()),
        ]
    );
    let projects: Vec<Option<&str>> = together
        .iter()
        .map(|f| {
            f.as_ref()
                .and_then(|f| f.project.as_ref())
                .map(|p| p.project_id.as_str())
        })
        .collect();
    assert_eq!(
        projects,
        [
            Some(project.project_id.as_str()),
            None,
            Some(project.project_id.as_str()),
            None,
            Some(second_project.project_id.as_str()),
            Some(project.project_id.as_str()),
        ]
    );
    let Some(Some(fire)) = together.get(2) else {
        panic!("the second schedule's fire: {together:?}");
    };
    assert!(fire.previous_run_active);
    assert_eq!(fire.creator_role, None);
    assert_eq!(fire.creator, None);
    assert_eq!(
        fire.project.as_ref().map(|p| p.workspace_id.as_str()),
        Some(ws.as_str())
    );
    assert!(
        s.run_path
            .load_fires(&[], now)
            .await
            .expect("load nothing")
            .is_empty()
    );
}

pub async fn start_takes_only_a_pending_run(s: &Stores) {
    let (project, schedule, _) = published_fixture(s).await;
    let ws = project.workspace_id.clone();
    let mut run = run_value(
        &project,
        Some(&schedule),
        Some(at(3, 8, 0)),
        at(3, 8, 0),
        at(30, 0, 0),
    );
    run.state_events = vec![StateEvent::new("STATUS", "PENDING", at(3, 8, 0))];
    create_run(s, &run).await;
    let start = RunStart {
        at: at(3, 8, 1),
        lease_until: at(3, 8, 2),
    };
    let started = s
        .run_path
        .start_pending_run(&ws, &run.run_id, start)
        .await
        .expect("start");
    let expected = started_run(run.clone(), start);
    assert_eq!(started.as_ref(), Some(&expected));
    assert_eq!(expected.status, RunStatus::Running);
    assert_eq!(expected.attempt, 1);
    assert_eq!(
        s.runs.get_run(&ws, &run.run_id).await.expect("get"),
        Some(expected.clone())
    );
    // A second delivery finds it taken; a missing run (or another workspace's) is none.
    for (workspace, id) in [
        (ws.as_str(), run.run_id.as_str()),
        (ws.as_str(), "no-such-run"),
        ("no-such-workspace", run.run_id.as_str()),
    ] {
        assert_eq!(
            s.run_path
                .start_pending_run(workspace, id, start)
                .await
                .expect("start"),
            None
        );
    }
    assert_eq!(
        s.runs.get_run(&ws, &run.run_id).await.expect("get"),
        Some(expected)
    );
}

fn results_of(run: &Run, as_of: DateTime<Utc>, marker: &str) -> PublishedResults {
    PublishedResults {
        workspace_id: run.workspace_id.clone(),
        project_id: run.project_id.clone(),
        run_id: run.run_id.clone(),
        project_version: 1,
        as_of,
        cells: vec![CellResult {
            cell_id: "c1".into(),
            status: CellStatus::Completed,
            columns: vec!["v".into()],
            rows: vec![vec![json!(marker)]].into(),
            row_count: 1,
            duration_ms: 3,
            cache_hit: false,
            error: None,
        }],
        updated_at: as_of,
    }
}

pub async fn end_run_writes_the_run_and_only_newer_results(s: &Stores) {
    let (project, schedule, _) = published_fixture(s).await;
    let ws = project.workspace_id.clone();
    let start = RunStart {
        at: at(3, 8, 1),
        lease_until: at(3, 8, 2),
    };
    let mut ended_runs = Vec::new();
    for (hour, marker) in [(9, "newer"), (8, "older")] {
        let run = run_value(
            &project,
            Some(&schedule),
            Some(at(3, hour, 0)),
            at(3, hour, 0),
            at(30, 0, 0),
        );
        create_run(s, &run).await;
        let started = s
            .run_path
            .start_pending_run(&ws, &run.run_id, start)
            .await
            .expect("start")
            .expect("started");
        let mut ended = started.clone();
        ended.status = RunStatus::Completed;
        ended.end_time = Some(at(3, hour, 5));
        ended.lease_until = None;
        ended.event_pending = true;
        let results = results_of(&ended, at(3, hour, 0), marker);
        let stored = s
            .run_path
            .end_run(&ended, started.guard(), Some(&results), &[])
            .await
            .expect("end");
        // The older run ends after the newer one: its run is written, its results not.
        assert_eq!(stored, marker == "newer", "{marker}");
        assert_eq!(
            s.runs.get_run(&ws, &run.run_id).await.expect("get"),
            Some(ended.clone())
        );
        // Ending again with the stale guard is refused and changes nothing.
        assert!(matches!(
            s.run_path
                .end_run(&ended, started.guard(), Some(&results), &[])
                .await,
            Err(PortError::VersionMismatch)
        ));
        ended_runs.push((ended, results));
    }
    let stored = s
        .results
        .get_results(&ws, &project.project_id)
        .await
        .expect("get results");
    assert_eq!(stored, Some(ended_runs[0].1.clone()));
    // Without results the run is written with the cache entries its queries made; a
    // missing run is NotFound.
    let api = run_value(&project, None, None, at(3, 12, 0), at(30, 0, 0));
    create_run(s, &api).await;
    let mut ended = api.clone();
    ended.status = RunStatus::Errored;
    let entry = CachedResult {
        workspace_id: ws.clone(),
        key: unique("key"),
        columns: vec!["n".into()],
        rows: vec![vec![json!(1)]].into(),
        row_count: 1,
        created_at: at(3, 12, 1),
        expires_at: at(4, 12, 1),
    };
    assert!(
        !s.run_path
            .end_run(&ended, api.guard(), None, std::slice::from_ref(&entry))
            .await
            .expect("end")
    );
    assert_eq!(
        s.sql_cache
            .get_cached(&ws, &entry.key, at(3, 13, 0))
            .await
            .expect("cache"),
        Some(entry)
    );
    assert_eq!(
        s.runs.get_run(&ws, &api.run_id).await.expect("get"),
        Some(ended)
    );
    let ghost = run_value(&project, None, None, at(3, 12, 0), at(30, 0, 0));
    assert_not_found(
        s.run_path
            .end_run(
                &ghost,
                ghost.guard(),
                Some(&results_of(&ghost, at(4, 0, 0), "x")),
                &[],
            )
            .await,
        "end of a missing run",
    );
}

pub async fn execution_inputs_are_the_version_and_its_connections(s: &Stores) {
    let (project, _, _) = published_fixture(s).await;
    let ws = project.workspace_id.clone();
    let warehouse = Connection {
        workspace_id: ws.clone(),
        name: "warehouse".into(),
        kind: ConnectionKind::Sqlite,
        sealed_config: "sealed".into(),
        updated_by: "admin".into(),
        created_at: at(2, 0, 0),
        updated_at: at(2, 0, 0),
    };
    s.connections
        .put_connection(&warehouse)
        .await
        .expect("connection");
    let version = s
        .projects
        .get_version(&ws, &project.project_id, 1)
        .await
        .expect("version");
    assert!(version.is_some());
    let named = vec!["warehouse".to_owned()];
    for hint in [named.clone(), Vec::new()] {
        let inputs: ExecutionInputs = s
            .run_path
            .load_execution(&ws, &project.project_id, 1, &hint)
            .await
            .expect("load");
        assert_eq!(inputs.version, version, "hint {hint:?}");
        assert_eq!(
            inputs.connections,
            HashMap::from([("warehouse".to_owned(), warehouse.clone())]),
            "hint {hint:?}"
        );
    }
    // A missing version; a connection the workspace does not have is left out.
    let inputs = s
        .run_path
        .load_execution(&ws, &project.project_id, 7, &named)
        .await
        .expect("load");
    assert_eq!(inputs.version, None);
    let other = new_workspace(s, Plan::Team).await;
    let inputs = s
        .run_path
        .load_execution(&other, &project.project_id, 1, &named)
        .await
        .expect("load");
    assert_eq!(inputs.version, None);
    assert!(inputs.connections.is_empty());
}
