//! Every project, schedule and admin endpoint × every kind of caller × every plan, through
//! the real router over a real SQLite file. Each case runs on a fresh project so that the
//! cases cannot influence each other.

use http::{Method, StatusCode};
use scheduled_runs::domain::model::{Plan, WorkspaceRole};
use scheduled_runs::ports::Clock;
use scheduled_runs_tests::harness::TestApp;
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
}

const EVERYONE: [Who; 8] = [
    Who::FullAccess,
    Who::CanEdit,
    Who::ExplorerOwn,
    Who::ExplorerOther,
    Who::CanView,
    Who::NoRole,
    Who::OtherWorkspace,
    Who::Admin,
];

struct World {
    ws: String,
    project: String,
    /// A schedule created by the editor.
    editor_schedule: String,
    /// A schedule created by `explorer`.
    explorer_schedule: String,
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
    }
}

fn token(app: &TestApp, world: &World, who: Who) -> String {
    let (ws, role) = match who {
        Who::OtherWorkspace => ("elsewhere", WorkspaceRole::Admin),
        Who::Admin => (world.ws.as_str(), WorkspaceRole::Admin),
        _ => (world.ws.as_str(), WorkspaceRole::Member),
    };
    app.token(user(who), ws, role)
}

const DAILY: &str =
    r#"{"cadence":{"kind":"DAILY","hour":9,"minute":0},"timezone":"Europe/Berlin"}"#;

/// On PROFESSIONAL a project holds one schedule: the explorer's own when the case is about
/// an explorer acting on their own schedule, the editor's otherwise.
async fn world(app: &TestApp, ws: &str, plan: Plan, who: Who) -> World {
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
    World {
        ws: ws.to_owned(),
        project,
        editor_schedule: ids[0].clone(),
        explorer_schedule,
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
}

const ACTIONS: [Action; 17] = [
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
];

fn expected(action: Action, who: Who, plan: Plan) -> u16 {
    use Who::*;
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
        Action::GetProject | Action::ListSchedules | Action::GetSchedule | Action::ScheduleRuns => {
            member_level(
                &[FullAccess, CanEdit, ExplorerOwn, ExplorerOther, CanView],
                200,
            )
        }
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
        Action::AdminSchedules | Action::AutoArchive => match who {
            Admin | OtherWorkspace => 200,
            _ => 403,
        },
    }
}

async fn perform(app: &TestApp, world: &World, action: Action, who: Who) -> (u16, Value) {
    let t = token(app, world, who);
    let p = &world.project;
    let schedule = if who == Who::ExplorerOwn {
        &world.explorer_schedule
    } else {
        &world.editor_schedule
    };
    let sp = format!("/api/v1/projects/{p}/schedules/{schedule}");
    let r = match action {
        Action::ListProjects => app.get("/api/v1/projects", &t).await,
        Action::GetProject => app.get(&format!("/api/v1/projects/{p}"), &t).await,
        Action::GetDraft => app.get(&format!("/api/v1/projects/{p}/draft"), &t).await,
        Action::PutDraft => {
            app.put(
                &format!("/api/v1/projects/{p}/draft"),
                &t,
                scheduled_runs_tests::harness::sample_version(),
            )
            .await
        }
        Action::Publish => {
            app.post(&format!("/api/v1/projects/{p}/publish"), &t, json!({}))
                .await
        }
        Action::PutMember => {
            app.put(
                &format!("/api/v1/projects/{p}/members/newcomer"),
                &t,
                json!({"role": "CAN_VIEW"}),
            )
            .await
        }
        Action::Archive => {
            app.post(&format!("/api/v1/projects/{p}/archive"), &t, json!({}))
                .await
        }
        Action::Unarchive => {
            app.post(&format!("/api/v1/projects/{p}/unarchive"), &t, json!({}))
                .await
        }
        Action::CreateSchedule => {
            let body: Value = serde_json::from_str(DAILY).expect("json");
            app.post(&format!("/api/v1/projects/{p}/schedules"), &t, body)
                .await
        }
        Action::ListSchedules => {
            app.get(&format!("/api/v1/projects/{p}/schedules"), &t)
                .await
        }
        Action::GetSchedule => app.get(&sp, &t).await,
        Action::PatchSchedule => app.patch(&sp, &t, json!({"enabled": false})).await,
        Action::DeleteSchedule => app.delete(&sp, &t).await,
        Action::TriggerSchedule => app.post(&format!("{sp}/trigger"), &t, json!({})).await,
        Action::ScheduleRuns => app.get(&format!("{sp}/runs"), &t).await,
        Action::AdminSchedules => app.get("/api/v1/admin/schedules", &t).await,
        Action::AutoArchive => {
            app.put("/api/v1/admin/auto-archive", &t, json!({"afterDays": 30}))
                .await
        }
    };
    (r.status.as_u16(), r.body)
}

/// Ids of the world that must never appear in a response to another workspace.
fn leaks(world: &World, body: &Value) -> bool {
    let text = body.to_string();
    [
        &world.project,
        &world.editor_schedule,
        &world.explorer_schedule,
    ]
    .iter()
    .any(|id| !id.is_empty() && text.contains(id.as_str()))
}

#[tokio::test]
async fn every_endpoint_for_every_caller_on_every_plan() {
    let app = TestApp::new();
    app.workspace("elsewhere", Plan::Team).await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for plan in [Plan::Professional, Plan::Team, Plan::Enterprise] {
        let ws = format!("ws-{}", plan.as_str().to_lowercase());
        app.workspace(&ws, plan).await;
        for action in ACTIONS {
            for who in EVERYONE {
                let world = world(&app, &ws, plan, who).await;
                let want = expected(action, who, plan);
                let (got, body) = perform(&app, &world, action, who).await;
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
                if who == Who::OtherWorkspace && leaks(&world, &body) {
                    failures.push(format!(
                        "{plan:?} {action:?}: another workspace's ids leaked: {body}"
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

#[tokio::test]
async fn requests_without_a_valid_token_are_401_everywhere() {
    let app = TestApp::new();
    app.workspace("w", Plan::Team).await;
    let world = world(&app, "w", Plan::Team, Who::CanEdit).await;
    let now = app.clock.now();
    let expired = scheduled_runs_tests::harness::token_at(
        "owner",
        "w",
        WorkspaceRole::Member,
        now - chrono::Duration::hours(2),
        3_600,
    );
    let wrong_secret = {
        let t = app.token("owner", "w", WorkspaceRole::Member);
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[2] = "AAAA".into();
        parts.join(".")
    };
    let alg_none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(
            json!({"sub": "owner", "exp": now.timestamp() + 3600, "workspace_id": "w"}).to_string(),
        );
        format!("{header}.{payload}.")
    };
    let p = &world.project;
    let s = &world.editor_schedule;
    let paths = [
        (Method::GET, "/api/v1/projects".to_owned()),
        (Method::POST, "/api/v1/projects".to_owned()),
        (Method::GET, format!("/api/v1/projects/{p}")),
        (Method::PUT, format!("/api/v1/projects/{p}/draft")),
        (Method::POST, format!("/api/v1/projects/{p}/publish")),
        (Method::POST, format!("/api/v1/projects/{p}/schedules")),
        (Method::GET, format!("/api/v1/projects/{p}/schedules/{s}")),
        (Method::PATCH, format!("/api/v1/projects/{p}/schedules/{s}")),
        (
            Method::DELETE,
            format!("/api/v1/projects/{p}/schedules/{s}"),
        ),
        (Method::GET, "/api/v1/admin/schedules".to_owned()),
    ];
    for (method, path) in paths {
        for token in [
            None,
            Some(expired.as_str()),
            Some(wrong_secret.as_str()),
            Some(alg_none.as_str()),
            Some("not-a-jwt"),
        ] {
            let r = app
                .call(method.clone(), &path, token, Some(json!({})))
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}: {:?}",
                r.body
            );
            assert_eq!(r.code(), "UNAUTHORIZED");
            assert!(!leaks(&world, &r.body));
        }
    }
}
