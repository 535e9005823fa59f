//! The schedule rules of SPEC §3 and the API conventions of SPEC §5, through the real router
//! over a real SQLite file.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use scheduled_runs::domain::model::{Plan, WorkspaceRole};
use scheduled_runs_tests::harness::{TestApp, TestResponse};
use serde_json::{Value, json};

struct Setup {
    app: TestApp,
    owner: String,
    project: String,
}

async fn setup(plan: Plan) -> Setup {
    let app = TestApp::new();
    app.workspace("w", plan).await;
    let owner = app.token("owner", "w", WorkspaceRole::Member);
    let project = app.published_project(&owner).await;
    Setup {
        app,
        owner,
        project,
    }
}

impl Setup {
    fn schedules(&self) -> String {
        format!("/api/v1/projects/{}/schedules", self.project)
    }

    async fn create(&self, token: &str, body: Value) -> TestResponse {
        self.app.post(&self.schedules(), token, body).await
    }

    async fn member(&self, user: &str, role: &str) -> String {
        self.app
            .add_member(&self.owner, &self.project, user, role)
            .await;
        self.app.token(user, "w", WorkspaceRole::Member)
    }
}

fn daily() -> Value {
    json!({"cadence": {"kind": "DAILY", "hour": 9, "minute": 0}})
}

fn hourly(minute: u32) -> Value {
    json!({"cadence": {"kind": "HOURLY", "minute": minute}})
}

fn cron(expression: &str) -> Value {
    json!({"cadence": {"kind": "CRON", "expression": expression}})
}

#[tokio::test]
async fn publish_first() {
    let app = TestApp::new();
    app.workspace("w", Plan::Team).await;
    let owner = app.token("owner", "w", WorkspaceRole::Member);
    let project = app.project(&owner).await;
    let r = app
        .post(
            &format!("/api/v1/projects/{project}/schedules"),
            &owner,
            daily(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "PROJECT_NOT_PUBLISHED");
}

#[tokio::test]
async fn a_schedule_response_carries_expression_next_runs_and_warnings() {
    let s = setup(Plan::Team).await;
    let r = s
        .create(
            &s.owner,
            json!({"cadence": {"kind": "CRON", "expression": "30 2 * * *"}, "timezone": "America/New_York"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let b = &r.body;
    assert_eq!(b["scheduleExpression"], "cron(30 2 * * ? *)");
    assert_eq!(b["timezone"], "America/New_York");
    assert_eq!(b["createdBy"], "owner");
    assert_eq!(b["creatorRole"], "FULL_ACCESS");
    assert_eq!(b["version"], 1);
    assert_eq!(b["enabled"], true);
    assert_eq!(b["updatePublishedResults"], true);
    assert_eq!(b["useCachedSqlResults"], false);
    assert_eq!(b["overlapPolicy"], "SKIP");
    assert_eq!(r.headers["etag"], "\"1\"");
    let next: Vec<&str> = b["nextRuns"]
        .as_array()
        .expect("nextRuns")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // 02:30 EDT = 06:30Z in June.
    assert_eq!(next.len(), 5);
    assert_eq!(next[0], "2026-06-01T06:30:00Z");
    assert_eq!(next[1], "2026-06-02T06:30:00Z");
    // 2027-03-14 02:30 does not exist in New York.
    let warning = &b["warnings"][0];
    assert_eq!(warning["code"], "DST_SKIP");
    assert_eq!(warning["localTimes"][0], "2027-03-14T02:30");
    // The same expression in UTC has no warning.
    let r = s.create(&s.owner, cron("30 2 * * *")).await;
    assert_eq!(r.body["warnings"], json!([]));
    assert_eq!(r.body["timezone"], "UTC");
}

#[tokio::test]
async fn cadence_and_timezone_validation_names_the_field() {
    let s = setup(Plan::Team).await;
    let cases = [
        (
            json!({"cadence": {"kind": "HOURLY", "minute": 60}}),
            "INVALID_CADENCE",
            "cadence.minute",
        ),
        (
            json!({"cadence": {"kind": "DAILY", "hour": 24, "minute": 0}}),
            "INVALID_CADENCE",
            "cadence.hour",
        ),
        (
            json!({"cadence": {"kind": "WEEKLY", "weekdays": [], "hour": 9}}),
            "INVALID_CADENCE",
            "cadence.weekdays",
        ),
        (
            json!({"cadence": {"kind": "MONTHLY", "dayOfMonth": 32, "hour": 9}}),
            "INVALID_CADENCE",
            "cadence.dayOfMonth",
        ),
        (cron("0 9 * *"), "INVALID_CRON", "cadence.expression"),
        (cron("0 25 * * *"), "INVALID_CRON", "cadence.expression"),
        (
            cron("0 9 1 * MON"),
            "CRON_UNSUPPORTED",
            "cadence.expression",
        ),
        (
            json!({"cadence": {"kind": "DAILY", "hour": 9}, "timezone": "Mars/Olympus"}),
            "INVALID_TIMEZONE",
            "timezone",
        ),
    ];
    for (body, code, field) in cases {
        let r = s.create(&s.owner, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            r.body
        );
        assert_eq!(r.code(), code, "{body}");
        assert_eq!(r.body["error"]["field"], field, "{body}");
    }
    let r = s.create(&s.owner, cron("0 25 * * *")).await;
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("hour"),
        "the cron field is named: {message}"
    );
}

#[tokio::test]
async fn malformed_bodies_are_400_with_the_field_and_large_ones_413() {
    let s = setup(Plan::Team).await;
    let unknown = s
        .create(
            &s.owner,
            json!({"cadence": {"kind": "DAILY", "hour": 9}, "colour": "red"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.code(), "INVALID_REQUEST");
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("colour")
    );

    let wrong_type = s
        .create(
            &s.owner,
            json!({"cadence": {"kind": "DAILY", "hour": "nine"}}),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    // The cadence is a tagged union: serde can tell the field only down to the union.
    assert_eq!(wrong_type.body["error"]["field"], "cadence");
    assert!(
        wrong_type.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nine")
    );

    let unknown_kind = s
        .create(&s.owner, json!({"cadence": {"kind": "SECONDLY"}}))
        .await;
    assert_eq!(unknown_kind.status, StatusCode::BAD_REQUEST);

    let path = s.schedules();
    let raw = |body: Vec<u8>| {
        Request::builder()
            .method(Method::POST)
            .uri(path.clone())
            .header("authorization", format!("Bearer {}", s.owner))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .expect("request")
    };
    let syntax = s.app.request(raw(b"{\"cadence\": ".to_vec())).await;
    assert_eq!(syntax.status, StatusCode::BAD_REQUEST);
    assert_eq!(syntax.code(), "INVALID_JSON");

    let empty = s.app.request(raw(Vec::new())).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep = s.app.request(raw(deep.into_bytes())).await;
    assert_eq!(deep.status, StatusCode::BAD_REQUEST);

    let mut big = b"{\"cadence\":{\"kind\":\"DAILY\"},\"x\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 300 * 1024));
    big.extend(b"\"}");
    let big = s.app.request(raw(big)).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(big.code(), "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn maximum_frequency_is_hourly_and_twelve_hourly_schedules_per_project() {
    let s = setup(Plan::Team).await;
    let r = s.create(&s.owner, cron("*/15 * * * *")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "FREQUENCY_TOO_HIGH");
    for minute in 0..12 {
        let r = s.create(&s.owner, hourly(minute)).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "hourly #{minute}: {:?}",
            r.body
        );
    }
    let r = s.create(&s.owner, cron("0 8-18 * * MON-FRI")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "PLAN_LIMIT");
    // Daily schedules do not count toward the hourly limit.
    let r = s.create(&s.owner, daily()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Nor can a daily schedule become the 13th hourly one.
    let id = r.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    let r = s
        .app
        .patch(&format!("{}/{id}", s.schedules()), &s.owner, hourly(30))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "PLAN_LIMIT");
}

#[tokio::test]
async fn professional_plan_one_schedule_per_project_and_no_custom_cron() {
    let s = setup(Plan::Professional).await;
    let editor = s.member("editor", "CAN_EDIT").await;
    let r = s.create(&s.owner, cron("0 9 * * *")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "PLAN_LIMIT");
    let r = s.create(&s.owner, daily()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = s.create(&editor, daily()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "all creators together");
    assert_eq!(r.code(), "PLAN_LIMIT");
    // After an operator upgrades the plan, more schedules and cron are possible.
    s.app
        .embedded
        .state
        .workspaces
        .set_plan("w", Plan::Team)
        .await
        .expect("set plan");
    let r = s.create(&editor, cron("0 9 * * *")).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn explorers_get_one_daily_schedule_with_locked_toggles() {
    let s = setup(Plan::Team).await;
    let explorer = s.member("explorer", "CAN_EXPLORE").await;
    let r = s.create(&explorer, hourly(5)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "FREQUENCY_TOO_HIGH");
    let r = s.create(&explorer, cron("0 9,17 * * *")).await;
    assert_eq!(r.code(), "FREQUENCY_TOO_HIGH");
    let mut body = daily();
    body["updatePublishedResults"] = json!(true);
    let r = s.create(&explorer, body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["error"]["field"], "updatePublishedResults");
    let mut body = daily();
    body["useCachedSqlResults"] = json!(false);
    let r = s.create(&explorer, body).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["error"]["field"], "useCachedSqlResults");

    let r = s.create(&explorer, cron("15 7 * * MON")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["updatePublishedResults"], false);
    assert_eq!(r.body["useCachedSqlResults"], true);
    assert_eq!(r.body["creatorRole"], "CAN_EXPLORE");
    let id = r.body["scheduleId"].as_str().unwrap_or_default().to_owned();

    let r = s.create(&explorer, daily()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "EXPLORER_LIMIT");

    // The explorer cannot turn results on later, and neither can an editor for them.
    let path = format!("{}/{id}", s.schedules());
    let r = s
        .app
        .patch(&path, &explorer, json!({"updatePublishedResults": true}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .app
        .patch(&path, &s.owner, json!({"updatePublishedResults": true}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s.app.patch(&path, &s.owner, hourly(0)).await;
    assert_eq!(r.code(), "FREQUENCY_TOO_HIGH");
    // They may change their own schedule otherwise.
    let r = s
        .app
        .patch(&path, &explorer, json!({"timezone": "Asia/Kolkata"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // After deleting it they may create another.
    let r = s.app.delete(&path, &explorer).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s.create(&explorer, daily()).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_simultaneous_creates_by_one_explorer_yield_one_schedule() {
    let s = Arc::new(setup(Plan::Team).await);
    let explorer = s.member("explorer", "CAN_EXPLORE").await;
    let mut tasks = Vec::new();
    for hour in 0..20 {
        let s = s.clone();
        let explorer = explorer.clone();
        tasks.push(tokio::spawn(async move {
            s.create(
                &explorer,
                json!({"cadence": {"kind": "DAILY", "hour": hour, "minute": 0}}),
            )
            .await
            .status
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("task") {
            StatusCode::CREATED => created += 1,
            StatusCode::FORBIDDEN => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((created, refused), (1, 19));
    let list = s.app.get(&s.schedules(), &s.owner).await;
    assert_eq!(list.body["schedules"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn viewers_list_but_do_not_change() {
    let s = setup(Plan::Team).await;
    let viewer = s.member("viewer", "CAN_VIEW").await;
    let r = s.create(&s.owner, daily()).await;
    let id = r.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        s.app.get(&s.schedules(), &viewer).await.status,
        StatusCode::OK
    );
    let r = s.create(&viewer, daily()).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    let r = s
        .app
        .patch(
            &format!("{}/{id}", s.schedules()),
            &viewer,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "FORBIDDEN"));
}

#[tokio::test]
async fn if_match_guards_changes() {
    let s = setup(Plan::Team).await;
    let r = s.create(&s.owner, daily()).await;
    let path = format!(
        "{}/{}",
        s.schedules(),
        r.body["scheduleId"].as_str().unwrap_or_default()
    );
    let patch = |if_match: &'static str, body: Value| {
        Request::builder()
            .method(Method::PATCH)
            .uri(path.clone())
            .header("authorization", format!("Bearer {}", s.owner))
            .header("if-match", if_match)
            .body(axum::body::Body::from(body.to_string()))
            .expect("request")
    };
    let r = s
        .app
        .request(patch("\"1\"", json!({"enabled": false})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.headers["etag"], "\"2\"");
    assert_eq!(
        r.body["nextRuns"],
        json!([]),
        "a disabled schedule has no next runs"
    );
    let r = s
        .app
        .request(patch("\"1\"", json!({"enabled": true})))
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.code(), "PRECONDITION_FAILED");
    let r = s
        .app
        .request(patch("garbage", json!({"enabled": true})))
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = s.app.request(patch("*", json!({"enabled": true}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["version"], 3);
    let r = s.app.get(&path, &s.owner).await;
    assert_eq!(r.body["enabled"], true);
    assert_eq!(r.body["nextRuns"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn archived_projects_refuse_changes_and_stop_their_triggers() {
    let s = setup(Plan::Team).await;
    let a = s.create(&s.owner, daily()).await;
    let mut off = daily();
    off["enabled"] = json!(false);
    let b = s.create(&s.owner, off).await;
    let a_id = a.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    let b_id = b.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    let timer = &s.app.embedded.timer;
    assert!(timer.next_fire(&a_id).is_some());
    assert!(timer.next_fire(&b_id).is_none());

    let r = s
        .app
        .post(
            &format!("/api/v1/projects/{}/archive", s.project),
            &s.owner,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["archived"], true);
    assert!(
        timer.next_fire(&a_id).is_none(),
        "archiving stops the trigger"
    );
    let r = s.create(&s.owner, daily()).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "PROJECT_ARCHIVED")
    );
    let r = s
        .app
        .patch(
            &format!("{}/{a_id}", s.schedules()),
            &s.owner,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "PROJECT_ARCHIVED")
    );
    let r = s
        .app
        .get(&format!("{}/{a_id}", s.schedules()), &s.owner)
        .await;
    assert_eq!(r.body["nextRuns"], json!([]));

    let r = s
        .app
        .post(
            &format!("/api/v1/projects/{}/unarchive", s.project),
            &s.owner,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        timer.next_fire(&a_id).is_some(),
        "unarchiving restores enabled triggers"
    );
    assert!(timer.next_fire(&b_id).is_none(), "and only those");
}

#[tokio::test]
async fn lists_are_cursor_paginated() {
    let s = setup(Plan::Team).await;
    for hour in 0..23 {
        let r = s
            .create(
                &s.owner,
                json!({"cadence": {"kind": "DAILY", "hour": hour}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{}?limit=10&cursor={c}", s.schedules()),
            None => format!("{}?limit=10", s.schedules()),
        };
        let r = s.app.get(&path, &s.owner).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        pages += 1;
        for item in r.body["schedules"].as_array().expect("schedules") {
            assert!(seen.insert(item["scheduleId"].as_str().unwrap_or_default().to_owned()));
        }
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (23, 3));
    for bad in ["limit=0", "limit=101", "limit=ten", "cursor=%%%"] {
        let r = s
            .app
            .get(&format!("{}?{bad}", s.schedules()), &s.owner)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }
}

#[tokio::test]
async fn admins_list_every_schedule_of_their_workspace_with_filters() {
    let s = setup(Plan::Team).await;
    let editor = s.member("editor", "CAN_EDIT").await;
    let admin = s.app.token("boss", "w", WorkspaceRole::Admin);
    s.create(&s.owner, daily()).await;
    s.create(&editor, daily()).await;
    let mut off = daily();
    off["enabled"] = json!(false);
    s.create(&editor, off).await;
    let other_project = s.app.published_project(&editor).await;
    s.app
        .post(
            &format!("/api/v1/projects/{other_project}/schedules"),
            &editor,
            daily(),
        )
        .await;
    let count = |r: &TestResponse| r.body["schedules"].as_array().map_or(0, Vec::len);
    let all = s.app.get("/api/v1/admin/schedules", &admin).await;
    assert_eq!(count(&all), 4);
    let by_editor = s
        .app
        .get("/api/v1/admin/schedules?createdBy=editor", &admin)
        .await;
    assert_eq!(count(&by_editor), 3);
    let disabled = s
        .app
        .get("/api/v1/admin/schedules?enabled=false", &admin)
        .await;
    assert_eq!(count(&disabled), 1);
    let in_project = s
        .app
        .get(
            &format!("/api/v1/admin/schedules?projectId={}", s.project),
            &admin,
        )
        .await;
    assert_eq!(count(&in_project), 3);
    // Admins can disable and delete anyone's schedule.
    let id = by_editor.body["schedules"][0]["scheduleId"]
        .as_str()
        .unwrap_or_default();
    let project = by_editor.body["schedules"][0]["projectId"]
        .as_str()
        .unwrap_or_default();
    let path = format!("/api/v1/projects/{project}/schedules/{id}");
    assert_eq!(
        s.app
            .patch(&path, &admin, json!({"enabled": false}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.app.delete(&path, &admin).await.status,
        StatusCode::NO_CONTENT
    );
    // Another workspace's admin sees none of them.
    let outsider = s.app.token("boss", "elsewhere", WorkspaceRole::Admin);
    let r = s.app.get("/api/v1/admin/schedules", &outsider).await;
    assert_eq!(count(&r), 0);
    let r = s
        .app
        .put(
            "/api/v1/admin/auto-archive",
            &admin,
            json!({"afterDays": 0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = s
        .app
        .put(
            "/api/v1/admin/auto-archive",
            &admin,
            json!({"afterDays": 30}),
        )
        .await;
    assert_eq!(r.body["autoArchiveAfterDays"], 30);
    let r = s
        .app
        .put(
            "/api/v1/admin/auto-archive",
            &admin,
            json!({"afterDays": null}),
        )
        .await;
    assert_eq!(r.body["autoArchiveAfterDays"], Value::Null);
}

#[tokio::test]
async fn other_workspaces_and_strangers_get_404() {
    let s = setup(Plan::Team).await;
    let r = s.create(&s.owner, daily()).await;
    let path = format!(
        "{}/{}",
        s.schedules(),
        r.body["scheduleId"].as_str().unwrap_or_default()
    );
    let stranger = s.app.token("stranger", "w", WorkspaceRole::Member);
    let outsider = s.app.token("owner", "elsewhere", WorkspaceRole::Admin);
    for token in [&stranger, &outsider] {
        for p in [
            format!("/api/v1/projects/{}", s.project),
            s.schedules(),
            path.clone(),
        ] {
            let r = s.app.get(&p, token).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        }
    }
    // A schedule id under the wrong project is not found either.
    let other = s.app.published_project(&s.owner).await;
    let id = path.rsplit('/').next().unwrap_or_default();
    let r = s
        .app
        .get(
            &format!("/api/v1/projects/{other}/schedules/{id}"),
            &s.owner,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "SCHEDULE_NOT_FOUND")
    );
}

#[tokio::test]
async fn health_openapi_and_unknown_routes() {
    let app = TestApp::new();
    let r = app.call(Method::GET, "/api/v1/health", None, None).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let r = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    for path in [
        "/api/v1/projects",
        "/api/v1/projects/{projectId}/schedules",
        "/api/v1/projects/{projectId}/schedules/{scheduleId}",
        "/api/v1/admin/schedules",
    ] {
        assert!(r.body["paths"][path].is_object(), "{path} documented");
    }
    // Fields that hold any JSON value are documented as such, not as objects: an input's
    // default and options, a cell result's row values, a condition's value (schemathesis
    // found drafts with a string default answered against `type: object`).
    let schemas = &r.body["components"]["schemas"];
    for (schema, pointer) in [
        ("InputDef", "/properties/default"),
        ("InputDef", "/properties/options/items"),
        ("CellResult", "/properties/rows/items/items"),
    ] {
        let s = schemas[schema]
            .pointer(pointer)
            .cloned()
            .unwrap_or_default();
        assert!(
            s.is_object() && s.get("type").is_none(),
            "{schema}{pointer} is any value: {s}"
        );
    }
    let r = app.call(Method::GET, "/nowhere", None, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    let r = app
        .call(Method::DELETE, "/api/v1/projects", None, None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn projects_need_an_operator_created_workspace() {
    let app = TestApp::new();
    let t = app.token("u", "nobody-made-this", WorkspaceRole::Admin);
    let r = app
        .post("/api/v1/projects", &t, json!({"title": "x"}))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "WORKSPACE_NOT_FOUND")
    );
}

#[tokio::test]
async fn publishing_validates_the_version() {
    let s = setup(Plan::Team).await;
    let draft = format!("/api/v1/projects/{}/draft", s.project);
    let publish = format!("/api/v1/projects/{}/publish", s.project);
    let bad = json!({"cells": [{"id": "a", "type": "SQL", "connection": "w", "sql": "select 1"}], "app": {"cells": ["b"]}});
    assert_eq!(
        s.app.put(&draft, &s.owner, bad).await.status,
        StatusCode::OK
    );
    let r = s.app.post(&publish, &s.owner, json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_VERSION")
    );
    assert_eq!(r.body["error"]["field"], "app.cells[0]");
    let cases = [
        (
            json!({"cells": [{"id": "a", "type": "SQL", "connection": "nowhere", "sql": "select 1"}], "app": {"cells": ["a"]}}),
            "unknown connection",
        ),
        (
            json!({"cells": [
                {"id": "a", "type": "SQL", "connection": "warehouse", "sql": "select {{ cells.b.value }}"},
                {"id": "b", "type": "SQL", "connection": "warehouse", "sql": "select {{ cells.a.value }}"}
            ], "app": {"cells": ["a"]}}),
            "cycle",
        ),
        (
            json!({"cells": [{"id": "a", "type": "SQL", "connection": "warehouse", "sql": "select {{ cells.zz.value }}"}], "app": {"cells": ["a"]}}),
            "unknown cell",
        ),
        (
            json!({"cells": [{"id": "a", "type": "SQL", "connection": "warehouse", "sql": "select {{ oops"}], "app": {"cells": ["a"]}}),
            "template syntax",
        ),
    ];
    for (body, what) in cases {
        assert_eq!(
            s.app.put(&draft, &s.owner, body).await.status,
            StatusCode::OK
        );
        let r = s.app.post(&publish, &s.owner, json!({})).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_VERSION"),
            "{what}: {:?}",
            r.body
        );
    }
    let good = scheduled_runs_tests::harness::sample_version();
    assert_eq!(
        s.app.put(&draft, &s.owner, good).await.status,
        StatusCode::OK
    );
    let r = s.app.post(&publish, &s.owner, json!({})).await;
    assert_eq!(r.body["version"], 2);
    let r = s
        .app
        .get(&format!("/api/v1/projects/{}", s.project), &s.owner)
        .await;
    assert_eq!(r.body["publishedVersion"], 2);
}
