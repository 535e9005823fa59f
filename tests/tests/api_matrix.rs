//! Every endpoint of the API (projects, schedules, runs and their RunProject aliases,
//! results, admin, the public meta endpoints) × every kind of caller (four kinds of bad
//! token, another workspace, each project role, explorers on their own and others'
//! schedules and runs, the workspace admin) × every plan, through the real router over a
//! real SQLite file, asserting the exact status. Each case that may change something runs
//! on a fresh project so that the cases cannot influence each other; no response to a caller
//! from outside the workspace (or without a valid token) may contain the workspace's ids.

use chrono::Duration;
use http::{Method, StatusCode};
use scheduled_runs::domain::model::{Plan, PublishedResults, WorkspaceRole};
use scheduled_runs::ports::{Clock, ResultsStore};
use scheduled_runs::services::runs::RunRateLimits;
use scheduled_runs_tests::harness::{TestApp, token_at};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    FullAccess,
    CanEdit,
    /// An explorer acting on their own schedule.
    ExplorerOwn,
    /// An explorer acting on someone else's schedule.
    ExplorerOther,
    CanView,
    /// A member of the workspace without a role on the project.
    NoRole,
    /// A workspace admin of another workspace.
    OtherWorkspace,
    /// A workspace admin without a project membership.
    Admin,
    /// No `Authorization` header at all.
    NoToken,
    /// The owner's token, expired an hour ago.
    Expired,
    /// The owner's claims in an unsigned token (`alg: none`).
    AlgNone,
    /// The owner's token with another signature.
    WrongSignature,
    /// Not a JWT at all.
    Garbage,
}

const EVERYONE: [Who; 13] = [
    Who::FullAccess,
    Who::CanEdit,
    Who::ExplorerOwn,
    Who::ExplorerOther,
    Who::CanView,
    Who::NoRole,
    Who::OtherWorkspace,
    Who::Admin,
    Who::NoToken,
    Who::Expired,
    Who::AlgNone,
    Who::WrongSignature,
    Who::Garbage,
];

impl Who {
    /// Callers without a valid token: they change nothing, so they share one world.
    fn unauthenticated(self) -> bool {
        matches!(
            self,
            Who::NoToken | Who::Expired | Who::AlgNone | Who::WrongSignature | Who::Garbage
        )
    }
}

struct World {
    ws: String,
    project: String,
    /// A schedule created by the editor.
    editor_schedule: String,
    /// A schedule created by `explorer`.
    explorer_schedule: String,
    /// An API run started by the editor, and one started by `explorer` (empty unless the
    /// action needs them).
    editor_run: String,
    explorer_run: String,
}

fn user(who: Who) -> &'static str {
    match who {
        Who::FullAccess => "owner",
        Who::CanEdit => "editor",
        Who::ExplorerOwn => "explorer",
        Who::ExplorerOther => "explorer2",
        Who::CanView => "viewer",
        Who::NoRole => "norole",
        Who::OtherWorkspace => "outsider",
        Who::Admin => "admin",
        // The bad tokens all claim to be the project's owner.
        Who::NoToken | Who::Expired | Who::AlgNone | Who::WrongSignature | Who::Garbage => "owner",
    }
}

fn token(app: &TestApp, world: &World, who: Who) -> Option<String> {
    use base64::Engine;
    let (ws, role) = match who {
        Who::OtherWorkspace => ("elsewhere", WorkspaceRole::Admin),
        Who::Admin => (world.ws.as_str(), WorkspaceRole::Admin),
        _ => (world.ws.as_str(), WorkspaceRole::Member),
    };
    let now = app.clock.now();
    Some(match who {
        Who::NoToken => return None,
        Who::Expired => token_at(user(who), ws, role, now - Duration::hours(2), 3_600),
        Who::AlgNone => {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let payload = b64.encode(
                json!({"sub": user(who), "exp": now.timestamp() + 3600, "workspace_id": ws,
                    "workspace_role": "ADMIN", "email": "owner@example.com"})
                .to_string(),
            );
            format!("{header}.{payload}.")
        }
        Who::WrongSignature => {
            // The owner's valid claims, signed HS256 with another key.
            let mut extra = serde_json::Map::new();
            extra.insert("workspace_id".into(), ws.into());
            extra.insert("workspace_role".into(), role.as_str().into());
            scheduled_runs::http::jwt::sign(
                &scheduled_runs::http::jwt::Claims {
                    sub: user(who).to_owned(),
                    exp: now.timestamp() + 3_600,
                    iat: Some(now.timestamp()),
                    nbf: None,
                    extra,
                },
                b"not-the-server-secret",
            )
        }
        Who::Garbage => "not-a-jwt".to_owned(),
        _ => app.token(user(who), ws, role),
    })
}

const DAILY: &str =
    r#"{"cadence":{"kind":"DAILY","hour":9,"minute":0},"timezone":"Europe/Berlin"}"#;

/// On PROFESSIONAL a project holds one schedule: the explorer's own when the case is about
/// an explorer acting on their own schedule, the editor's otherwise.
async fn world(app: &TestApp, ws: &str, plan: Plan, who: Who, action: Action) -> World {
    let owner = app.token("owner", ws, WorkspaceRole::Member);
    let project = app.published_project(&owner).await;
    for (u, role) in [
        ("editor", "CAN_EDIT"),
        ("explorer", "CAN_EXPLORE"),
        ("explorer2", "CAN_EXPLORE"),
        ("viewer", "CAN_VIEW"),
    ] {
        app.add_member(&owner, &project, u, role).await;
    }
    let creators: &[&str] = match (plan, who) {
        (Plan::Professional, Who::ExplorerOwn) => &["explorer"],
        (Plan::Professional, _) => &["editor"],
        _ => &["editor", "explorer"],
    };
    let mut schedules = Vec::new();
    for &u in creators {
        let t = app.token(u, ws, WorkspaceRole::Member);
        let body: Value = serde_json::from_str(DAILY).expect("json");
        let r = app
            .post(&format!("/api/v1/projects/{project}/schedules"), &t, body)
            .await;
        schedules.push(r);
    }
    let ids: Vec<String> = schedules
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            r.body["scheduleId"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    let explorer_schedule = ids.last().cloned().unwrap_or_default();
    let (mut editor_run, mut explorer_run) = (String::new(), String::new());
    if action.needs_runs() {
        for (u, run) in [("editor", &mut editor_run), ("explorer", &mut explorer_run)] {
            let t = app.token(u, ws, WorkspaceRole::Member);
            let r = app
                .post(&format!("/api/v1/projects/{project}/runs"), &t, json!({}))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            *run = r.body["runId"].as_str().unwrap_or_default().to_owned();
        }
    }
    if matches!(action, Action::Results) {
        let now = app.clock.now();
        let stored = app
            .embedded
            .store
            .put_results_if_newer(&PublishedResults {
                workspace_id: ws.to_owned(),
                project_id: project.clone(),
                run_id: editor_run.clone(),
                project_version: 1,
                as_of: now,
                cells: Vec::new(),
                updated_at: now,
            })
            .await
            .expect("results");
        assert!(stored);
    }
    World {
        ws: ws.to_owned(),
        project,
        editor_schedule: ids[0].clone(),
        explorer_schedule,
        editor_run,
        explorer_run,
    }
}

/// The endpoints of the matrix, with what each caller is expected to get.
#[derive(Clone, Copy, Debug)]
enum Action {
    ListProjects,
    GetProject,
    GetDraft,
    PutDraft,
    Publish,
    PutMember,
    Archive,
    Unarchive,
    CreateSchedule,
    ListSchedules,
    GetSchedule,
    PatchSchedule,
    DeleteSchedule,
    TriggerSchedule,
    ScheduleRuns,
    AdminSchedules,
    AutoArchive,
    RemoveMember,
    StartRun,
    StartRunAlias,
    ListRuns,
    ListRunsAlias,
    GetRun,
    GetRunAlias,
    CancelRun,
    CancelRunAlias,
    Results,
    ListConnections,
    PutConnection,
    GetIntegrations,
    PutSlack,
    RotateWebhookSecret,
    Health,
    OpenApi,
}

impl Action {
    fn needs_runs(self) -> bool {
        matches!(
            self,
            Action::GetRun
                | Action::GetRunAlias
                | Action::CancelRun
                | Action::CancelRunAlias
                | Action::ListRuns
                | Action::ListRunsAlias
                | Action::Results
        )
    }
}

const ACTIONS: [Action; 34] = [
    Action::ListProjects,
    Action::GetProject,
    Action::GetDraft,
    Action::PutDraft,
    Action::Publish,
    Action::PutMember,
    Action::Archive,
    Action::Unarchive,
    Action::CreateSchedule,
    Action::ListSchedules,
    Action::GetSchedule,
    Action::PatchSchedule,
    Action::DeleteSchedule,
    Action::TriggerSchedule,
    Action::ScheduleRuns,
    Action::AdminSchedules,
    Action::AutoArchive,
    Action::RemoveMember,
    Action::StartRun,
    Action::StartRunAlias,
    Action::ListRuns,
    Action::ListRunsAlias,
    Action::GetRun,
    Action::GetRunAlias,
    Action::CancelRun,
    Action::CancelRunAlias,
    Action::Results,
    Action::ListConnections,
    Action::PutConnection,
    Action::GetIntegrations,
    Action::PutSlack,
    Action::RotateWebhookSecret,
    Action::Health,
    Action::OpenApi,
];

fn expected(action: Action, who: Who, plan: Plan) -> u16 {
    use Who::*;
    if matches!(action, Action::Health | Action::OpenApi) {
        // Public: the gateway routes them without its authorizer too (template.yaml).
        return 200;
    }
    if who.unauthenticated() {
        return 401;
    }
    let member_level = |allowed: &[Who], ok: u16| {
        if allowed.contains(&who) || who == Admin {
            ok
        } else if matches!(who, NoRole | OtherWorkspace) {
            404
        } else {
            403
        }
    };
    match action {
        Action::ListProjects => 200,
        Action::GetProject
        | Action::ListSchedules
        | Action::GetSchedule
        | Action::ScheduleRuns
        | Action::ListRuns
        | Action::ListRunsAlias
        | Action::GetRun
        | Action::GetRunAlias
        | Action::Results => member_level(
            &[FullAccess, CanEdit, ExplorerOwn, ExplorerOther, CanView],
            200,
        ),
        // Anyone who may use the app may run it.
        Action::StartRun | Action::StartRunAlias => member_level(
            &[FullAccess, CanEdit, ExplorerOwn, ExplorerOther, CanView],
            201,
        ),
        // The run's creator (an explorer's own run) or an editor.
        Action::CancelRun | Action::CancelRunAlias => {
            member_level(&[FullAccess, CanEdit, ExplorerOwn], 204)
        }
        Action::RemoveMember => member_level(&[FullAccess], 204),
        Action::GetDraft | Action::PutDraft | Action::Publish => {
            member_level(&[FullAccess, CanEdit], 200)
        }
        Action::PutMember | Action::Archive | Action::Unarchive => member_level(&[FullAccess], 200),
        // On PROFESSIONAL the world's first schedule already uses the project's one slot;
        // explorers who own a schedule already used theirs.
        Action::CreateSchedule => match (plan, who) {
            (_, NoRole | OtherWorkspace) => 404,
            (_, CanView) => 403,
            (Plan::Professional, _) => 403,
            (_, ExplorerOwn) => 403,
            _ => 201,
        },
        // The action targets the editor's schedule, except for `ExplorerOwn`, who acts on
        // their own.
        Action::PatchSchedule | Action::TriggerSchedule | Action::DeleteSchedule => {
            let ok = match action {
                Action::PatchSchedule => 200,
                Action::TriggerSchedule => 202,
                _ => 204,
            };
            member_level(&[FullAccess, CanEdit, ExplorerOwn], ok)
        }
        // The other workspace's admin acts on their own workspace ("elsewhere", TEAM).
        Action::AdminSchedules
        | Action::AutoArchive
        | Action::ListConnections
        | Action::PutConnection
        | Action::GetIntegrations
        | Action::RotateWebhookSecret => match who {
            Admin | OtherWorkspace => 200,
            _ => 403,
        },
        Action::PutSlack => match (who, plan) {
            (Admin, Plan::Professional) => 403,
            (Admin | OtherWorkspace, _) => 200,
            _ => 403,
        },
        Action::Health | Action::OpenApi => unreachable!("answered above"),
    }
}

async fn perform(app: &TestApp, world: &World, action: Action, who: Who) -> (u16, Value) {
    let t = token(app, world, who);
    let p = &world.project;
    let (schedule, run) = if who == Who::ExplorerOwn {
        (&world.explorer_schedule, &world.explorer_run)
    } else {
        (&world.editor_schedule, &world.editor_run)
    };
    let sp = format!("/api/v1/projects/{p}/schedules/{schedule}");
    let (method, path, body) = match action {
        Action::ListProjects => (Method::GET, "/api/v1/projects".to_owned(), None),
        Action::GetProject => (Method::GET, format!("/api/v1/projects/{p}"), None),
        Action::GetDraft => (Method::GET, format!("/api/v1/projects/{p}/draft"), None),
        Action::PutDraft => (
            Method::PUT,
            format!("/api/v1/projects/{p}/draft"),
            Some(scheduled_runs_tests::harness::sample_version()),
        ),
        Action::Publish => (
            Method::POST,
            format!("/api/v1/projects/{p}/publish"),
            Some(json!({})),
        ),
        Action::PutMember => (
            Method::PUT,
            format!("/api/v1/projects/{p}/members/newcomer"),
            Some(json!({"role": "CAN_VIEW"})),
        ),
        Action::RemoveMember => (
            Method::DELETE,
            format!("/api/v1/projects/{p}/members/viewer"),
            None,
        ),
        Action::Archive => (
            Method::POST,
            format!("/api/v1/projects/{p}/archive"),
            Some(json!({})),
        ),
        Action::Unarchive => (
            Method::POST,
            format!("/api/v1/projects/{p}/unarchive"),
            Some(json!({})),
        ),
        Action::CreateSchedule => (
            Method::POST,
            format!("/api/v1/projects/{p}/schedules"),
            Some(serde_json::from_str(DAILY).expect("json")),
        ),
        Action::ListSchedules => (Method::GET, format!("/api/v1/projects/{p}/schedules"), None),
        Action::GetSchedule => (Method::GET, sp, None),
        Action::PatchSchedule => (Method::PATCH, sp, Some(json!({"enabled": false}))),
        Action::DeleteSchedule => (Method::DELETE, sp, None),
        Action::TriggerSchedule => (Method::POST, format!("{sp}/trigger"), Some(json!({}))),
        Action::ScheduleRuns => (Method::GET, format!("{sp}/runs"), None),
        Action::StartRun => (
            Method::POST,
            format!("/api/v1/projects/{p}/runs"),
            Some(json!({})),
        ),
        Action::StartRunAlias => (
            Method::POST,
            format!("/api/v1/project/{p}/run"),
            Some(json!({})),
        ),
        Action::ListRuns => (Method::GET, format!("/api/v1/projects/{p}/runs"), None),
        Action::ListRunsAlias => (Method::GET, format!("/api/v1/project/{p}/runs"), None),
        Action::GetRun => (
            Method::GET,
            format!("/api/v1/projects/{p}/runs/{run}"),
            None,
        ),
        Action::GetRunAlias => (Method::GET, format!("/api/v1/project/{p}/run/{run}"), None),
        Action::CancelRun => (
            Method::DELETE,
            format!("/api/v1/projects/{p}/runs/{run}"),
            None,
        ),
        Action::CancelRunAlias => (
            Method::DELETE,
            format!("/api/v1/project/{p}/run/{run}"),
            None,
        ),
        Action::Results => (Method::GET, format!("/api/v1/projects/{p}/results"), None),
        Action::AdminSchedules => (Method::GET, "/api/v1/admin/schedules".to_owned(), None),
        Action::AutoArchive => (
            Method::PUT,
            "/api/v1/admin/auto-archive".to_owned(),
            Some(json!({"afterDays": 30})),
        ),
        Action::ListConnections => (Method::GET, "/api/v1/admin/connections".to_owned(), None),
        Action::PutConnection => (
            Method::PUT,
            "/api/v1/admin/connections/scratch".to_owned(),
            Some(json!({"kind": "SQLITE", "path": "scratch.db"})),
        ),
        Action::GetIntegrations => (Method::GET, "/api/v1/admin/integrations".to_owned(), None),
        Action::PutSlack => (
            Method::PUT,
            "/api/v1/admin/integrations/slack".to_owned(),
            Some(json!({"channels": {"C0123ABCD": "https://hooks.slack.com/services/T0/B0/x"}})),
        ),
        Action::RotateWebhookSecret => (
            Method::POST,
            "/api/v1/admin/integrations/webhooks/rotate-secret".to_owned(),
            None,
        ),
        Action::Health => (Method::GET, "/api/v1/health".to_owned(), None),
        Action::OpenApi => (Method::GET, "/api/v1/openapi.json".to_owned(), None),
    };
    let r = app.call(method, &path, t.as_deref(), body).await;
    (r.status.as_u16(), r.body)
}

/// Ids of the world that must never appear in a response to another workspace.
fn leaks(world: &World, body: &Value) -> bool {
    let text = body.to_string();
    [
        &world.project,
        &world.editor_schedule,
        &world.explorer_schedule,
        &world.editor_run,
        &world.explorer_run,
    ]
    .iter()
    .any(|id| !id.is_empty() && text.contains(id.as_str()))
}

#[tokio::test]
async fn every_endpoint_for_every_caller_on_every_plan() {
    // Every authorised caller starts runs in a world of their own; the rate limits are not
    // what this matrix is about.
    let app = TestApp::with_config(|c| {
        c.rate_limits = RunRateLimits {
            per_minute: 1_000_000,
            per_hour: 1_000_000,
        }
    });
    app.workspace("elsewhere", Plan::Team).await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for plan in [Plan::Professional, Plan::Team, Plan::Enterprise] {
        let ws = format!("ws-{}", plan.as_str().to_lowercase());
        app.workspace(&ws, plan).await;
        for action in ACTIONS {
            let mut shared: Option<World> = None;
            for who in EVERYONE {
                let own;
                let world = if who.unauthenticated() {
                    if shared.is_none() {
                        shared = Some(world(&app, &ws, plan, who, action).await);
                    }
                    shared.as_ref().expect("just set")
                } else {
                    own = world(&app, &ws, plan, who, action).await;
                    &own
                };
                let want = expected(action, who, plan);
                let (got, body) = perform(&app, world, action, who).await;
                checked += 1;
                if got != want {
                    failures.push(format!(
                        "{plan:?} {action:?} {who:?}: want {want}, got {got} {body}"
                    ));
                }
                if got >= 400 && body["error"]["code"].as_str().is_none() {
                    failures.push(format!(
                        "{plan:?} {action:?} {who:?}: error without code: {body}"
                    ));
                }
                if got == 401 && body["error"]["code"] != "UNAUTHORIZED" {
                    failures.push(format!("{plan:?} {action:?} {who:?}: 401 code: {body}"));
                }
                let outsider = who == Who::OtherWorkspace || who.unauthenticated();
                if outsider && leaks(world, &body) {
                    failures.push(format!(
                        "{plan:?} {action:?} {who:?}: the workspace's ids leaked: {body}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 3 * ACTIONS.len() * EVERYONE.len());
}
