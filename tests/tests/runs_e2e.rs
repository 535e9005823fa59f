//! The run pipeline of the embedded deployment end to end: dispatch → queue → executor →
//! SQLite warehouse → run record → published results, through the real router, with the
//! simulated clock driving schedules, timeouts, retention and auto-archive.

use std::time::Duration as StdDuration;

use chrono::Duration;
use http::StatusCode;
use scheduled_runs::domain::model::{
    CachedResult, Plan, PublishedResults, Run, RunGuard, RunStatus, WorkspaceRole,
};
use scheduled_runs::ports::{Clock, ExecutionInputs, ExecutionPath, PortError, RunStart, RunStore};
use scheduled_runs::services::ServiceError;
use scheduled_runs::services::executor::{ExecuteOutcome, ExecutorService};
use scheduled_runs_tests::harness::TestApp;
use serde_json::{Value, json};

struct World {
    app: TestApp,
    owner: String,
    project: String,
}

/// A version whose app shows a cell built on two upstream cells, plus one cell nothing
/// needs (it must never run).
fn version() -> Value {
    json!({
        "inputs": [
            {"name": "region", "type": "SELECT", "default": "EMEA", "options": ["EMEA", "AMER", "APAC"]},
            {"name": "min_amount", "type": "NUMBER", "default": 0}
        ],
        "cells": [
            {"id": "orders", "type": "SQL", "connection": "warehouse",
             "sql": "SELECT order_id, amount FROM orders WHERE region = {{ region }} AND amount >= {{ min_amount }} ORDER BY order_id"},
            {"id": "context", "type": "SQL", "connection": "warehouse",
             "sql": "SELECT {{ hex_scheduled }} AS scheduled, {{ hex_run_context }} AS context"},
            {"id": "summary", "type": "SQL", "connection": "warehouse",
             "sql": "SELECT {{ cells.orders.rowCount }} AS orders, {{ cells.context.value }} AS scheduled"},
            {"id": "unused", "type": "SQL", "connection": "warehouse", "sql": "SELECT * FROM no_such_table"}
        ],
        "app": {"cells": ["summary", "context"]}
    })
}

async fn world() -> World {
    let app = TestApp::new();
    app.workspace("w", Plan::Team).await;
    let owner = app.token("owner", "w", WorkspaceRole::Member);
    let project = app.project(&owner).await;
    publish(&app, &owner, &project, version()).await;
    World {
        app,
        owner,
        project,
    }
}

async fn publish(app: &TestApp, token: &str, project: &str, body: Value) {
    let r = app
        .put(&format!("/api/v1/projects/{project}/draft"), token, body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/v1/projects/{project}/publish"),
            token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

impl World {
    fn runs(&self) -> String {
        format!("/api/v1/projects/{}/runs", self.project)
    }

    async fn start(&self, token: &str, body: Value) -> String {
        let r = self.app.post(&self.runs(), token, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["runId"].as_str().unwrap_or_default().to_owned()
    }

    async fn finish(&self, token: &str, run_id: &str) -> Value {
        self.app.wait_for_run(token, &self.project, run_id).await
    }

    fn cell<'a>(&self, status: &'a Value, id: &str) -> &'a Value {
        status["cells"]
            .as_array()
            .and_then(|cells| cells.iter().find(|c| c["cellId"] == id))
            .unwrap_or(&Value::Null)
    }
}

#[tokio::test]
async fn an_api_run_executes_the_app_cells_and_their_upstream_only() {
    let w = world().await;
    w.app.embedded.start_workers();
    let r = w.app.post(&w.runs(), &w.owner, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    for field in [
        "projectId",
        "runId",
        "runUrl",
        "runStatusUrl",
        "traceId",
        "projectVersion",
        "notifications",
    ] {
        assert!(!r.body[field].is_null(), "{field} in {}", r.body);
    }
    let run_id = r.body["runId"].as_str().unwrap_or_default();
    let status = w.finish(&w.owner, run_id).await;
    assert_eq!(status["status"], "COMPLETED", "{status}");
    assert_eq!(status["runTrigger"], "API");
    let ids: Vec<&str> = status["cells"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["cellId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        ids,
        ["orders", "context", "summary"],
        "dependency order, nothing else"
    );
    let orders = w.cell(&status, "orders");
    assert_eq!(orders["columns"], json!(["order_id", "amount"]));
    let count = orders["rowCount"].as_u64().unwrap_or(0);
    assert!(count > 0);
    assert_eq!(w.cell(&status, "summary")["rows"][0][0], json!(count));
    assert_eq!(
        w.cell(&status, "context")["rows"][0],
        json!([0, "api-triggered"])
    );
    assert!(status["elapsedTime"].as_i64().is_some());
    assert!(status["startTime"].is_string() && status["endTime"].is_string());
    let events: Vec<&str> = status["stateEvents"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["value"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(events, ["PENDING", "RUNNING", "COMPLETED"]);
    // API runs do not update published results unless asked.
    let r = w
        .app
        .get(&format!("/api/v1/projects/{}/results", w.project), &w.owner)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "NO_PUBLISHED_RESULTS")
    );
}

#[tokio::test]
async fn input_params_override_defaults_and_are_validated() {
    let w = world().await;
    w.app.embedded.start_workers();
    let amer = w
        .start(
            &w.owner,
            json!({"inputParams": {"region": "AMER", "min_amount": 250}}),
        )
        .await;
    let status = w.finish(&w.owner, &amer).await;
    let rows = w.cell(&status, "orders")["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r[1].as_f64().unwrap_or(0.0) >= 250.0));
    let cases = [
        (
            json!({"inputParams": {"colour": "red"}}),
            "inputParams.colour",
        ),
        (
            json!({"inputParams": {"region": "MARS"}}),
            "inputParams.region",
        ),
        (
            json!({"inputParams": {"min_amount": "lots"}}),
            "inputParams.min_amount",
        ),
    ];
    for (body, field) in cases {
        let r = w.app.post(&w.runs(), &w.owner, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {:?}",
            r.body
        );
        assert_eq!(r.code(), "INVALID_INPUT");
        assert_eq!(r.body["error"]["field"], field);
    }
    let r = w
        .app
        .post(
            &w.runs(),
            &w.owner,
            json!({"inputParams": {"region": "AMER"}, "updatePublishedResults": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let viewer = w.app.token("viewer", "w", WorkspaceRole::Member);
    w.app
        .add_member(&w.owner, &w.project, "viewer", "CAN_VIEW")
        .await;
    let r = w
        .app
        .post(&w.runs(), &viewer, json!({"updatePublishedResults": true}))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "FORBIDDEN"));
}

#[tokio::test]
async fn sql_injection_through_inputs_is_harmless() {
    let w = world().await;
    w.app.embedded.start_workers();
    let hostile = "'; DROP TABLE orders; --";
    let v = json!({
        "inputs": [{"name": "region", "type": "TEXT", "default": "EMEA"}],
        "cells": [{"id": "orders", "type": "SQL", "connection": "warehouse",
                   "sql": "SELECT COUNT(*) AS n FROM orders WHERE region = '{{ region }}' OR region = {{ region }}"}],
        "app": {"cells": ["orders"]}
    });
    publish(&w.app, &w.owner, &w.project, v).await;
    let run = w
        .start(&w.owner, json!({"inputParams": {"region": hostile}}))
        .await;
    let status = w.finish(&w.owner, &run).await;
    // Even inside quotes the value is a parameter: the quoted one is the literal text '?1'.
    assert_eq!(status["status"], "COMPLETED", "{status}");
    assert_eq!(w.cell(&status, "orders")["rows"][0][0], json!(0));
    let run = w.start(&w.owner, json!({})).await;
    let status = w.finish(&w.owner, &run).await;
    let n = w.cell(&status, "orders")["rows"][0][0]
        .as_u64()
        .unwrap_or(0);
    assert!(n > 0, "the orders table is still there: {status}");
}

#[tokio::test]
async fn dry_runs_validate_and_run_nothing() {
    let w = world().await;
    let r = w
        .app
        .post(
            &w.runs(),
            &w.owner,
            json!({"dryRun": true, "inputParams": {"region": "APAC"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["dryRun"], true);
    assert_eq!(r.body["projectVersion"], 1);
    let r = w
        .app
        .post(
            &w.runs(),
            &w.owner,
            json!({"dryRun": true, "inputParams": {"nope": 1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let list = w.app.get(&w.runs(), &w.owner).await;
    assert_eq!(list.body["runs"], json!([]));
}

#[tokio::test]
async fn singular_paths_and_listing_with_filters_and_pages() {
    let w = world().await;
    w.app.embedded.start_workers();
    let r = w
        .app
        .post(
            &format!("/api/v1/project/{}/run", w.project),
            &w.owner,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let first = r.body["runId"].as_str().unwrap_or_default().to_owned();
    let r = w
        .app
        .get(
            &format!("/api/v1/project/{}/run/{first}", w.project),
            &w.owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    w.finish(&w.owner, &first).await;
    for _ in 0..4 {
        let id = w.start(&w.owner, json!({})).await;
        w.finish(&w.owner, &id).await;
    }
    let r = w.app.get(&format!("{}?limit=2", w.runs()), &w.owner).await;
    assert_eq!(r.body["runs"].as_array().map(Vec::len), Some(2));
    let next = r.body["nextPage"].as_str().unwrap_or_default().to_owned();
    assert!(next.contains("offset=2"), "{next}");
    let r2 = w.app.get(&next, &w.owner).await;
    assert_eq!(r2.body["runs"].as_array().map(Vec::len), Some(2));
    assert_ne!(r.body["runs"][0]["runId"], r2.body["runs"][0]["runId"]);
    let r = w
        .app
        .get(
            &format!(
                "{}?statusFilter=COMPLETED&runTriggerFilter=API&limit=100",
                w.runs()
            ),
            &w.owner,
        )
        .await;
    assert_eq!(r.body["runs"].as_array().map(Vec::len), Some(5));
    assert!(r.body.get("nextPage").is_none());
    let r = w
        .app
        .get(
            &format!("{}?runTriggerFilter=SCHEDULED", w.runs()),
            &w.owner,
        )
        .await;
    assert_eq!(r.body["runs"], json!([]));
    let r = w
        .app
        .get(&format!("{}?statusFilter=BOGUS", w.runs()), &w.owner)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = w.app.get(&format!("{}?limit=0", w.runs()), &w.owner).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn twenty_runs_a_minute_and_sixty_an_hour_per_user() {
    let w = world().await;
    for i in 0..20 {
        let r = w.app.post(&w.runs(), &w.owner, json!({})).await;
        assert_eq!(r.status, StatusCode::CREATED, "run {i}: {:?}", r.body);
    }
    let r = w.app.post(&w.runs(), &w.owner, json!({})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED")
    );
    let retry: i64 = r.headers["retry-after"]
        .to_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!((1..=60).contains(&retry), "{retry}");
    // Another user has their own budget.
    let other = w.app.token("other", "w", WorkspaceRole::Admin);
    assert_eq!(
        w.app.post(&w.runs(), &other, json!({})).await.status,
        StatusCode::CREATED
    );
    // Dry runs run nothing and are not counted.
    let r = w
        .app
        .post(&w.runs(), &w.owner, json!({"dryRun": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    for minute in 1..=2 {
        w.app.clock.advance(Duration::minutes(1));
        for i in 0..20 {
            let r = w.app.post(&w.runs(), &w.owner, json!({})).await;
            assert_eq!(r.status, StatusCode::CREATED, "minute {minute} run {i}");
        }
    }
    w.app.clock.advance(Duration::minutes(1));
    let r = w.app.post(&w.runs(), &w.owner, json!({})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "60 an hour");
}

/// A cell that runs for seconds unless interrupted (bounded, so a lost interrupt cannot hang
/// the test run).
fn slow_version() -> Value {
    json!({
        "cells": [{"id": "slow", "type": "SQL", "connection": "warehouse",
                   "sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000) SELECT COUNT(*) FROM c"}],
        "app": {"cells": ["slow"]}
    })
}

#[tokio::test]
async fn cancelling_a_run_interrupts_its_cell_and_ends_it_killed() {
    let w = world().await;
    publish(&w.app, &w.owner, &w.project, slow_version()).await;
    w.app.embedded.start_workers();
    let run = w
        .start(&w.owner, json!({"updatePublishedResults": true}))
        .await;
    for _ in 0..500 {
        let s = w.app.get(&format!("{}/{run}", w.runs()), &w.owner).await;
        if s.body["status"] == "RUNNING" {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    let r = w.app.delete(&format!("{}/{run}", w.runs()), &w.owner).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let status = w.finish(&w.owner, &run).await;
    assert_eq!(status["status"], "KILLED");
    // Cancelling again is fine; the slot is free again: a quick run completes.
    assert_eq!(
        w.app
            .delete(&format!("{}/{run}", w.runs()), &w.owner)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    publish(&w.app, &w.owner, &w.project, version()).await;
    let quick = w.start(&w.owner, json!({})).await;
    assert_eq!(w.finish(&w.owner, &quick).await["status"], "COMPLETED");
    let r = w
        .app
        .delete(&format!("{}/{quick}", w.runs()), &w.owner)
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "RUN_FINISHED"));
    // A killed run never updates published results.
    let r = w
        .app
        .get(&format!("/api/v1/projects/{}/results", w.project), &w.owner)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_scheduled_run_fires_completes_and_updates_published_results() {
    let w = world().await;
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{}/schedules", w.project),
            &w.owner,
            json!({"cadence": {"kind": "HOURLY", "minute": 0}}),
        )
        .await;
    let schedule = r.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    w.app.embedded.start_workers();
    w.app.embedded.start_timer().await.expect("timer");
    w.app.clock.advance(Duration::minutes(61));
    let log = format!("/api/v1/projects/{}/schedules/{schedule}/runs", w.project);
    let mut run_id = String::new();
    for _ in 0..500 {
        let r = w.app.get(&log, &w.owner).await;
        if let Some(id) = r.body["runs"][0]["runId"].as_str() {
            run_id = id.to_owned();
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    let status = w.finish(&w.owner, &run_id).await;
    assert_eq!(status["status"], "COMPLETED", "{status}");
    assert_eq!(status["runTrigger"], "SCHEDULED");
    assert_eq!(status["scheduledFor"], "2026-06-01T01:00:00Z");
    // Derived from the run id, not drawn: the same run, the same trace.
    assert_eq!(status["traceId"], run_id.replace('-', ""), "{status}");
    assert_eq!(
        w.cell(&status, "context")["rows"][0],
        json!([1, "scheduled"])
    );
    // An editor's schedule runs fresh queries (and fills the cache).
    assert_eq!(w.cell(&status, "orders")["cacheHit"], false);
    let r = w
        .app
        .get(&format!("/api/v1/projects/{}/results", w.project), &w.owner)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["runId"], run_id.as_str());
    let shown: Vec<&str> = r.body["cells"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["cellId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(shown, ["context", "summary"], "only what the app shows");
    // The run log shows it with its schedule.
    let r = w.app.get(&log, &w.owner).await;
    assert_eq!(r.body["runs"][0]["status"], "COMPLETED");
    // An API run with the cache on now hits it for the same SQL.
    let api = w.start(&w.owner, json!({})).await;
    let status = w.finish(&w.owner, &api).await;
    assert_eq!(w.cell(&status, "orders")["cacheHit"], true);
    let fresh = w
        .start(&w.owner, json!({"useCachedSqlResults": false}))
        .await;
    let status = w.finish(&w.owner, &fresh).await;
    assert_eq!(w.cell(&status, "orders")["cacheHit"], false);
}

async fn stored(app: &TestApp, run_id: &str) -> Run {
    app.embedded
        .store
        .get_run("w", run_id)
        .await
        .expect("store")
        .expect("run exists")
}

#[tokio::test]
async fn overlap_skip_records_a_skipped_run_and_allow_runs_both() {
    let w = world().await;
    let dispatch = w.app.embedded.state.dispatch.clone();
    let mut ids = Vec::new();
    for policy in ["SKIP", "ALLOW"] {
        let r = w
            .app
            .post(
                &format!("/api/v1/projects/{}/schedules", w.project),
                &w.owner,
                json!({"cadence": {"kind": "HOURLY", "minute": 0}, "overlapPolicy": policy, "enabled": true}),
            )
            .await;
        ids.push(r.body["scheduleId"].as_str().unwrap_or_default().to_owned());
    }
    // No workers: the first fire's run stays PENDING while the second fire arrives.
    let t1 = scheduled_runs_tests::harness::epoch() + Duration::hours(1);
    let t2 = t1 + Duration::hours(1);
    for id in &ids {
        dispatch
            .dispatch_scheduled("w", id, t1)
            .await
            .expect("dispatch");
        dispatch
            .dispatch_scheduled("w", id, t2)
            .await
            .expect("dispatch");
    }
    let skip_second = stored(&w.app, &Run::scheduled_run_id(&ids[0], t2)).await;
    assert_eq!(skip_second.status, RunStatus::Skipped);
    assert_eq!(skip_second.skip_reason.map(|r| r.as_str()), Some("OVERLAP"));
    let allow_second = stored(&w.app, &Run::scheduled_run_id(&ids[1], t2)).await;
    assert_eq!(allow_second.status, RunStatus::Pending);
}

#[tokio::test]
async fn the_creators_role_is_read_again_at_dispatch() {
    let w = world().await;
    w.app
        .add_member(&w.owner, &w.project, "editor", "CAN_EDIT")
        .await;
    let editor = w.app.token("editor", "w", WorkspaceRole::Member);
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{}/schedules", w.project),
            &editor,
            json!({"cadence": {"kind": "DAILY", "hour": 9}}),
        )
        .await;
    let schedule = r.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    let dispatch = w.app.embedded.state.dispatch.clone();
    let t = |h| scheduled_runs_tests::harness::epoch() + Duration::hours(h);

    dispatch
        .dispatch_scheduled("w", &schedule, t(9))
        .await
        .expect("dispatch");
    let run = stored(&w.app, &Run::scheduled_run_id(&schedule, t(9))).await;
    assert!(
        run.update_published_results && !run.use_cached_sql_results,
        "editor: defaults"
    );

    w.app
        .add_member(&w.owner, &w.project, "editor", "CAN_VIEW")
        .await;
    dispatch
        .dispatch_scheduled("w", &schedule, t(33))
        .await
        .expect("dispatch");
    let run = stored(&w.app, &Run::scheduled_run_id(&schedule, t(33))).await;
    assert!(
        !run.update_published_results && run.use_cached_sql_results,
        "downgraded: cache, no results"
    );

    let r = w
        .app
        .delete(
            &format!("/api/v1/projects/{}/members/editor", w.project),
            &w.owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    dispatch
        .dispatch_scheduled("w", &schedule, t(57))
        .await
        .expect("dispatch");
    let run = stored(&w.app, &Run::scheduled_run_id(&schedule, t(57))).await;
    assert_eq!(run.status, RunStatus::Skipped);
    assert_eq!(
        run.skip_reason.map(|r| r.as_str()),
        Some("CREATOR_NO_ACCESS")
    );

    // Archived projects are skipped too.
    w.app
        .post(
            &format!("/api/v1/projects/{}/archive", w.project),
            &w.owner,
            json!({}),
        )
        .await;
    dispatch
        .dispatch_scheduled("w", &schedule, t(81))
        .await
        .expect("dispatch");
    let run = stored(&w.app, &Run::scheduled_run_id(&schedule, t(81))).await;
    assert_eq!(
        run.skip_reason.map(|r| r.as_str()),
        Some("PROJECT_ARCHIVED")
    );
}

#[tokio::test]
async fn the_version_published_at_dispatch_runs_never_the_draft() {
    let w = world().await;
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{}/schedules", w.project),
            &w.owner,
            json!({"cadence": {"kind": "DAILY", "hour": 9}}),
        )
        .await;
    let schedule = r.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    // A draft edit that is not published.
    let r = w
        .app
        .put(
            &format!("/api/v1/projects/{}/draft", w.project),
            &w.owner,
            slow_version(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    w.app.embedded.start_workers();
    let t = scheduled_runs_tests::harness::epoch() + Duration::hours(9);
    w.app
        .embedded
        .state
        .dispatch
        .dispatch_scheduled("w", &schedule, t)
        .await
        .expect("dispatch");
    let run_id = Run::scheduled_run_id(&schedule, t);
    let status = w.finish(&w.owner, &run_id).await;
    assert_eq!(status["projectVersion"], 1);
    assert_eq!(status["status"], "COMPLETED");
    assert!(
        !w.cell(&status, "summary").is_null(),
        "version 1's cells ran"
    );
}

#[tokio::test]
async fn older_runs_never_replace_newer_published_results() {
    let w = world().await;
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{}/schedules", w.project),
            &w.owner,
            json!({"cadence": {"kind": "HOURLY", "minute": 0}, "overlapPolicy": "ALLOW"}),
        )
        .await;
    let schedule = r.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    let dispatch = w.app.embedded.state.dispatch.clone();
    let t = |h| scheduled_runs_tests::harness::epoch() + Duration::hours(h);
    // Dispatch 02:00 and 01:00, execute 02:00 first.
    dispatch
        .dispatch_scheduled("w", &schedule, t(2))
        .await
        .expect("dispatch");
    dispatch
        .dispatch_scheduled("w", &schedule, t(1))
        .await
        .expect("dispatch");
    let newer = Run::scheduled_run_id(&schedule, t(2));
    let older = Run::scheduled_run_id(&schedule, t(1));
    let executor = w.app.embedded.executor.clone();
    for id in [&newer, &older] {
        let message = scheduled_runs::ports::RunMessage {
            workspace_id: "w".into(),
            project_id: w.project.clone(),
            run_id: id.clone(),
            schedule_id: Some(schedule.clone()),
            project_version: None,
            connections: Vec::new(),
        };
        executor.execute(&message).await.expect("execute");
        // A second delivery of the same message does nothing.
        let again = executor.execute(&message).await.expect("execute");
        assert_eq!(
            again,
            scheduled_runs::services::executor::ExecuteOutcome::Ignored
        );
    }
    assert_eq!(stored(&w.app, &older).await.status, RunStatus::Completed);
    let r = w
        .app
        .get(&format!("/api/v1/projects/{}/results", w.project), &w.owner)
        .await;
    assert_eq!(r.body["runId"], newer.as_str());
    assert_eq!(r.body["asOf"], "2026-06-01T02:00:00Z");
}

#[tokio::test]
async fn each_run_has_a_private_working_directory() {
    let w = world().await;
    w.app.embedded.start_workers();
    let write_then_read = json!({
        "cells": [
            {"id": "write", "type": "SQL", "connection": "warehouse",
             "sql": "CREATE TABLE scratch.notes AS SELECT 'left behind' AS note"},
            {"id": "read", "type": "SQL", "connection": "warehouse",
             "sql": "SELECT note, {{ cells.write.rowCount }} AS written FROM scratch.notes"}
        ],
        "app": {"cells": ["read"]}
    });
    publish(&w.app, &w.owner, &w.project, write_then_read).await;
    let first = w.start(&w.owner, json!({})).await;
    let status = w.finish(&w.owner, &first).await;
    assert_eq!(status["status"], "COMPLETED", "{status}");
    assert_eq!(w.cell(&status, "read")["rows"][0][0], "left behind");
    let read_only = json!({
        "cells": [{"id": "read", "type": "SQL", "connection": "warehouse", "sql": "SELECT note FROM scratch.notes"}],
        "app": {"cells": ["read"]}
    });
    publish(&w.app, &w.owner, &w.project, read_only).await;
    let second = w.start(&w.owner, json!({})).await;
    let status = w.finish(&w.owner, &second).await;
    assert_eq!(
        status["status"], "ERRORED",
        "the next run cannot see it: {status}"
    );
    assert_eq!(status["error"]["cellId"], "read");
    let workdirs = w.app.dir.path().join("run-workdirs");
    let left: Vec<_> = std::fs::read_dir(&workdirs)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "working directories are removed: {left:?}");
}

#[tokio::test]
async fn a_failing_cell_errors_the_run_without_leaking_connection_details() {
    let w = world().await;
    w.app.embedded.start_workers();
    let broken = json!({
        "cells": [{"id": "bad", "type": "SQL", "connection": "warehouse", "sql": "SELECT * FROM missing_table"}],
        "app": {"cells": ["bad"]}
    });
    publish(&w.app, &w.owner, &w.project, broken).await;
    let run = w.start(&w.owner, json!({})).await;
    let status = w.finish(&w.owner, &run).await;
    assert_eq!(status["status"], "ERRORED");
    assert_eq!(status["error"]["code"], "CELL_FAILED");
    assert_eq!(status["error"]["cellId"], "bad");
    let text = status.to_string();
    assert!(
        text.contains("missing_table"),
        "the database's message helps the author"
    );
    assert!(
        !text.contains(w.app.dir.path().to_string_lossy().as_ref()),
        "no server paths"
    );
}

#[tokio::test]
async fn the_sweeper_times_out_and_recovers_crashed_runs() {
    let w = world().await;
    let executor = w.app.embedded.executor.clone();
    let store = &w.app.embedded.store;
    // A run whose executor died mid-run: RUNNING, lease expired, first attempt.
    let run_id = w.start(&w.owner, json!({})).await;
    let mut run = stored(&w.app, &run_id).await;
    let guard = run.guard();
    run.status = RunStatus::Running;
    run.attempt = 1;
    run.start_time = Some(w.app.clock.now());
    run.lease_until = Some(w.app.clock.now() + Duration::seconds(60));
    store
        .update_run(&run, guard)
        .await
        .expect("simulate a start");
    w.app.clock.advance(Duration::seconds(61));
    let report = w.app.embedded.maintenance.sweep().await.expect("sweep");
    assert_eq!(report.requeued, 1);
    let mut receiver = w.app.embedded.take_run_receiver().expect("receiver");
    let mut message = None;
    while let Some(m) = receiver.try_recv() {
        if m.run_id == run_id {
            message = Some(m);
        }
    }
    let message = message.expect("queued again");
    executor.execute(&message).await.expect("execute");
    let done = stored(&w.app, &run_id).await;
    assert_eq!((done.status, done.attempt), (RunStatus::Completed, 2));
    assert!(done.state_events.iter().any(|e| e.event_type == "RETRY"));

    // A run past its timeout is ended ERRORED with TIMEOUT.
    let slow = w.start(&w.owner, json!({})).await;
    let mut run = stored(&w.app, &slow).await;
    let guard = run.guard();
    run.status = RunStatus::Running;
    run.attempt = 1;
    run.start_time = Some(w.app.clock.now());
    run.lease_until = Some(w.app.clock.now() + Duration::hours(1));
    store
        .update_run(&run, guard)
        .await
        .expect("simulate a start");
    w.app.clock.advance(Duration::minutes(16));
    let report = w.app.embedded.maintenance.sweep().await.expect("sweep");
    assert_eq!(report.timed_out, 1);
    let ended = stored(&w.app, &slow).await;
    assert_eq!(ended.status, RunStatus::Errored);
    assert_eq!(ended.error.map(|e| e.code), Some("TIMEOUT".to_owned()));

    // A run that keeps crashing is given up after the bounded attempts.
    let crashy = w.start(&w.owner, json!({})).await;
    let mut run = stored(&w.app, &crashy).await;
    let guard = run.guard();
    run.status = RunStatus::Running;
    run.attempt = 3;
    run.start_time = Some(w.app.clock.now());
    run.lease_until = Some(w.app.clock.now());
    store
        .update_run(&run, guard)
        .await
        .expect("simulate a third start");
    w.app.clock.advance(Duration::seconds(1));
    let report = w.app.embedded.maintenance.sweep().await.expect("sweep");
    assert_eq!(report.given_up, 1);
    let ended = stored(&w.app, &crashy).await;
    assert_eq!(
        ended.error.map(|e| e.code),
        Some("EXECUTOR_CRASHED".to_owned())
    );
}

/// An execution that dies part-way in the process (its task aborted, a panic) must leave
/// nothing renewing the run's lease: the sweeper then sees the crash and retries the run,
/// instead of a lease kept alive by an orphaned watcher until the run times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_dropped_mid_run_stops_renewing_its_lease() {
    let w = world().await;
    publish(&w.app, &w.owner, &w.project, slow_version()).await;
    let run_id = w.start(&w.owner, json!({})).await;
    let mut receiver = w.app.embedded.take_run_receiver().expect("receiver");
    let message = receiver.try_recv().expect("queued");
    let executor = w.app.embedded.executor.clone();
    let task = tokio::spawn(async move { executor.execute(&message).await });
    // Wait until the run is RUNNING, then kill its executor.
    for _ in 0..500 {
        if stored(&w.app, &run_id).await.status == RunStatus::Running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(stored(&w.app, &run_id).await.status, RunStatus::Running);
    task.abort();
    let _ = task.await;
    // Past the lease; the harness's watcher would renew every 20 ms if it were still alive.
    w.app.clock.advance(Duration::seconds(61));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let run = stored(&w.app, &run_id).await;
    assert!(
        run.lease_until.is_some_and(|l| l <= w.app.clock.now()),
        "nothing renews the lease of a dead execution: {:?}",
        run.lease_until
    );
    let report = w.app.embedded.maintenance.sweep().await.expect("sweep");
    assert_eq!(report.requeued, 1, "{report:?}");
    assert_eq!(report.timed_out, 0, "{report:?}");
}

/// The executor's version read failing the way a throttled or unreachable store fails.
struct FailingLoad {
    inner: std::sync::Arc<dyn ExecutionPath>,
    failure: fn() -> PortError,
}

#[async_trait::async_trait]
impl ExecutionPath for FailingLoad {
    async fn load_execution(
        &self,
        _: &str,
        _: &str,
        _: u32,
        _: &[String],
    ) -> Result<ExecutionInputs, PortError> {
        Err((self.failure)())
    }
    async fn start_pending_run(
        &self,
        workspace_id: &str,
        run_id: &str,
        start: RunStart,
    ) -> Result<Option<Run>, PortError> {
        self.inner
            .start_pending_run(workspace_id, run_id, start)
            .await
    }
    async fn end_run(
        &self,
        run: &Run,
        expected: RunGuard,
        results: Option<&PublishedResults>,
        cache: &[CachedResult],
    ) -> Result<bool, PortError> {
        self.inner.end_run(run, expected, results, cache).await
    }
}

fn executor_with_load(app: &TestApp, failure: fn() -> PortError) -> ExecutorService {
    let e = &app.embedded.executor;
    ExecutorService {
        path: std::sync::Arc::new(FailingLoad {
            inner: e.path.clone(),
            failure,
        }),
        runs: e.runs.clone(),
        cache: e.cache.clone(),
        connectors: e.connectors.clone(),
        secrets: e.secrets.clone(),
        events: e.events.clone(),
        clock: e.clock.clone(),
        settings: e.settings.clone(),
        plans: Default::default(),
    }
}

#[tokio::test]
async fn a_passing_backend_failure_loading_the_version_retries_the_run() {
    let w = world().await;
    let run_id = w.start(&w.owner, json!({})).await;
    let mut receiver = w.app.embedded.take_run_receiver().expect("receiver");
    let message = receiver.try_recv().expect("queued");

    // Throttled (retryable): the delivery fails and the run is not ended.
    let throttled = executor_with_load(&w.app, || PortError::unavailable("throttled"));
    let failed = throttled.execute(&message).await;
    assert!(
        matches!(
            failed,
            Err(ServiceError::Backend(PortError::Unavailable {
                retryable: true,
                ..
            }))
        ),
        "{failed:?}"
    );
    let run = stored(&w.app, &run_id).await;
    assert_eq!(run.status, RunStatus::Running, "{:?}", run.error);
    assert_eq!(run.attempt, 1);

    // Past its lease the sweeper queues it again, and the next attempt completes it.
    w.app.clock.advance(Duration::seconds(61));
    let report = w.app.embedded.maintenance.sweep().await.expect("sweep");
    assert_eq!(report.requeued, 1, "{report:?}");
    let again = receiver.try_recv().expect("queued again");
    let outcome = w
        .app
        .embedded
        .executor
        .execute(&again)
        .await
        .expect("execute");
    assert!(
        matches!(outcome, ExecuteOutcome::Finished(_)),
        "{outcome:?}"
    );
    let run = stored(&w.app, &run_id).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
    assert_eq!(run.attempt, 2);

    // A failure no retry can help (a corrupt record) still ends the run at once.
    let run_id = w.start(&w.owner, json!({})).await;
    let message = receiver.try_recv().expect("queued");
    let corrupt = executor_with_load(&w.app, || PortError::fatal("corrupt version item"));
    let outcome = corrupt.execute(&message).await.expect("ended, not failed");
    assert!(
        matches!(outcome, ExecuteOutcome::Finished(_)),
        "{outcome:?}"
    );
    let run = stored(&w.app, &run_id).await;
    assert_eq!(run.status, RunStatus::Errored);
    assert_eq!(run.error.map(|e| e.code).as_deref(), Some("BACKEND"));
}

#[tokio::test]
async fn runs_expire_after_the_retention_period() {
    let w = world().await;
    w.app.embedded.start_workers();
    let run = w.start(&w.owner, json!({})).await;
    w.finish(&w.owner, &run).await;
    w.app.clock.advance(Duration::days(89));
    assert_eq!(
        w.app
            .get(&format!("{}/{run}", w.runs()), &w.owner)
            .await
            .status,
        StatusCode::OK
    );
    w.app.clock.advance(Duration::days(2));
    // Reads filter expired runs even before the purge.
    let r = w.app.get(&format!("{}/{run}", w.runs()), &w.owner).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "RUN_NOT_FOUND")
    );
    assert_eq!(w.app.get(&w.runs(), &w.owner).await.body["runs"], json!([]));
    let purged = w
        .app
        .embedded
        .maintenance
        .purge_expired()
        .await
        .expect("purge");
    assert_eq!(purged, 1);
    assert!(
        w.app
            .embedded
            .store
            .get_run("w", &run)
            .await
            .expect("store")
            .is_none()
    );
}

#[tokio::test]
async fn auto_archive_archives_idle_projects_and_stops_their_schedules() {
    let w = world().await;
    let admin = w.app.token("boss", "w", WorkspaceRole::Admin);
    let r = w
        .app
        .put(
            "/api/v1/admin/auto-archive",
            &admin,
            json!({"afterDays": 30}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{}/schedules", w.project),
            &w.owner,
            json!({"cadence": {"kind": "DAILY", "hour": 6}}),
        )
        .await;
    let schedule = r.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    let busy = w.app.published_project(&w.owner).await;
    w.app.embedded.start_workers();
    w.app.embedded.start_timer().await.expect("timer");
    // Scheduled runs keep firing for 31 days; they are not human activity.
    for day in 1..=31 {
        w.app.clock.advance(Duration::days(1));
        if day % 10 == 0 {
            // Someone keeps working on the other project.
            w.app
                .put(
                    &format!("/api/v1/projects/{busy}/draft"),
                    &w.owner,
                    scheduled_runs_tests::harness::sample_version(),
                )
                .await;
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    let archived = w
        .app
        .embedded
        .maintenance
        .auto_archive()
        .await
        .expect("auto-archive");
    assert_eq!(archived, vec![w.project.clone()]);
    let r = w
        .app
        .get(&format!("/api/v1/projects/{}", w.project), &w.owner)
        .await;
    assert_eq!(r.body["archived"], true);
    assert!(
        w.app.embedded.timer.next_fire(&schedule).is_none(),
        "its schedules stopped"
    );
    let r = w
        .app
        .get(&format!("/api/v1/projects/{busy}"), &w.owner)
        .await;
    assert_eq!(r.body["archived"], false);
}

#[tokio::test]
async fn every_finished_run_is_announced_once() {
    let w = world().await;
    let mut events = w.app.embedded.events.subscribe();
    w.app.embedded.start_workers();
    let done = w.start(&w.owner, json!({})).await;
    w.finish(&w.owner, &done).await;
    publish(&w.app, &w.owner, &w.project, slow_version()).await;
    let slow = w.start(&w.owner, json!({})).await;
    for _ in 0..500 {
        if stored(&w.app, &slow).await.status == RunStatus::Running {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    w.app
        .delete(&format!("{}/{slow}", w.runs()), &w.owner)
        .await;
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{}/schedules", w.project),
            &w.owner,
            json!({"cadence": {"kind": "DAILY", "hour": 9}, "enabled": false}),
        )
        .await;
    let schedule = r.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    let t = scheduled_runs_tests::harness::epoch() + Duration::hours(9);
    w.app
        .embedded
        .state
        .dispatch
        .dispatch_scheduled("w", &schedule, t)
        .await
        .expect("dispatch");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(StdDuration::from_secs(10), events.recv()).await {
            Ok(Ok(e)) => seen.push((e.run_id, e.status.as_str(), e.trigger.as_str())),
            other => panic!("missing events after {seen:?}: {other:?}"),
        }
    }
    seen.sort();
    let mut want = vec![
        (done, "COMPLETED", "API"),
        (slow, "KILLED", "API"),
        (Run::scheduled_run_id(&schedule, t), "SKIPPED", "SCHEDULED"),
    ];
    want.sort();
    assert_eq!(seen, want);
    tokio::time::sleep(StdDuration::from_millis(100)).await;
    assert!(events.try_recv().is_err(), "each run announced once");
}
