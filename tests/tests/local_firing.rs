//! The embedded deployment fires schedules itself: the in-process timer, driven by a
//! simulated clock, dispatches each due fire once, records one run per fire with its
//! `scheduledFor`, leaves disabled schedules and archived projects alone, and resumes after
//! a restart without firing anything twice or losing a fire that fell due while it was down.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use http::StatusCode;
use scheduled_runs::domain::model::{Plan, RunStatus, WorkspaceRole};
use scheduled_runs::ports::{Clock, PageRequest, RunStore};
use scheduled_runs::services::dispatch::DispatchOutcome;
use scheduled_runs_tests::harness::{TestApp, epoch};
use serde_json::{Value, json};

struct Fixture {
    app: TestApp,
    owner: String,
    project: String,
}

async fn fixture() -> Fixture {
    let app = TestApp::new();
    app.workspace("w", Plan::Team).await;
    let owner = app.token("owner", "w", WorkspaceRole::Member);
    let project = app.published_project(&owner).await;
    Fixture {
        app,
        owner,
        project,
    }
}

impl Fixture {
    async fn schedule(&self, body: Value) -> String {
        let r = self
            .app
            .post(
                &format!("/api/v1/projects/{}/schedules", self.project),
                &self.owner,
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["scheduleId"].as_str().unwrap_or_default().to_owned()
    }
}

async fn fires(app: &TestApp, schedule_id: &str) -> Vec<(DateTime<Utc>, RunStatus)> {
    let page = app
        .embedded
        .store
        .list_schedule_runs("w", schedule_id, app.clock.now(), &PageRequest::first(100))
        .await
        .expect("run log");
    let mut fires: Vec<_> = page
        .items
        .into_iter()
        .filter_map(|r| r.scheduled_for.map(|t| (t, r.status)))
        .collect();
    fires.sort_by_key(|(t, _)| *t);
    fires
}

/// Waits (bounded) until the schedule's run log holds `n` fires; dispatch runs on spawned
/// tasks, so the test must let them finish.
async fn wait_for_fires(
    app: &TestApp,
    schedule_id: &str,
    n: usize,
) -> Vec<(DateTime<Utc>, RunStatus)> {
    for _ in 0..500 {
        let f = fires(app, schedule_id).await;
        if f.len() >= n {
            return f;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    fires(app, schedule_id).await
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("valid instant")
        .with_timezone(&Utc)
}

#[tokio::test]
async fn due_schedules_fire_once_each_at_their_times() {
    let f = fixture().await;
    let hourly = f
        .schedule(json!({"cadence": {"kind": "HOURLY", "minute": 15}, "overlapPolicy": "ALLOW"}))
        .await;
    let daily = f
        .schedule(json!({"cadence": {"kind": "DAILY", "hour": 9, "minute": 30}, "timezone": "Europe/Berlin"}))
        .await;
    let timer = f.app.embedded.start_timer().await.expect("timer");
    // Step through three hours in small steps, as wall time would pass.
    for _ in 0..(3 * 12) {
        f.app.clock.advance(Duration::minutes(5));
        tokio::task::yield_now().await;
    }
    let got = wait_for_fires(&f.app, &hourly, 3).await;
    let times: Vec<_> = got.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        vec![
            at("2026-06-01T00:15:00Z"),
            at("2026-06-01T01:15:00Z"),
            at("2026-06-01T02:15:00Z")
        ]
    );
    assert!(got.iter().all(|(_, s)| *s == RunStatus::Pending), "{got:?}");
    assert!(
        fires(&f.app, &daily).await.is_empty(),
        "09:30 Berlin is 07:30Z"
    );
    // Jump to the daily fire: 07:30Z.
    f.app.clock.set(at("2026-06-01T07:31:00Z"));
    let got = wait_for_fires(&f.app, &daily, 1).await;
    assert_eq!(
        got.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        vec![at("2026-06-01T07:30:00Z")]
    );
    timer.abort();
}

#[tokio::test]
async fn disabled_schedules_and_archived_projects_do_not_fire() {
    let f = fixture().await;
    let off = f
        .schedule(json!({"cadence": {"kind": "HOURLY", "minute": 0}, "enabled": false}))
        .await;
    let on = f
        .schedule(json!({"cadence": {"kind": "HOURLY", "minute": 30}}))
        .await;
    let timer = f.app.embedded.start_timer().await.expect("timer");
    let r = f
        .app
        .post(
            &format!("/api/v1/projects/{}/archive", f.project),
            &f.owner,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    f.app.clock.advance(Duration::hours(3));
    tokio::time::sleep(StdDuration::from_millis(100)).await;
    assert!(fires(&f.app, &off).await.is_empty());
    assert!(fires(&f.app, &on).await.is_empty());
    timer.abort();
}

#[tokio::test]
async fn a_fire_that_reaches_a_disabled_schedule_is_recorded_as_skipped() {
    // The trigger and the stored schedule can disagree for a moment (or in AWS, a delivery
    // can arrive late): dispatch re-checks and records a skip instead of running.
    let f = fixture().await;
    let id = f
        .schedule(json!({"cadence": {"kind": "DAILY", "hour": 9}}))
        .await;
    let path = format!("/api/v1/projects/{}/schedules/{id}", f.project);
    f.app
        .patch(&path, &f.owner, json!({"enabled": false}))
        .await;
    let outcome = f
        .app
        .embedded
        .state
        .dispatch
        .dispatch_scheduled("w", &id, at("2026-06-01T09:00:00Z"))
        .await
        .expect("dispatch");
    match outcome {
        DispatchOutcome::Skipped(run) => {
            assert_eq!(run.status, RunStatus::Skipped);
            assert_eq!(
                run.skip_reason.map(|r| r.as_str()),
                Some("SCHEDULE_DISABLED")
            );
        }
        other => panic!("expected a skip, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_dispatches_of_one_fire_create_one_run() {
    let f = fixture().await;
    let id = f
        .schedule(json!({"cadence": {"kind": "DAILY", "hour": 9}}))
        .await;
    let mut receiver = f.app.embedded.take_run_receiver().expect("receiver");
    let when = at("2026-06-01T09:00:00Z");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let dispatch = f.app.embedded.state.dispatch.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            dispatch.dispatch_scheduled("w", &id, when).await
        }));
    }
    let mut queued = 0;
    let mut duplicates = 0;
    for t in tasks {
        match t.await.expect("task").expect("dispatch") {
            DispatchOutcome::Queued(_) => queued += 1,
            DispatchOutcome::Duplicate(_) => duplicates += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((queued, duplicates), (1, 49));
    assert_eq!(fires(&f.app, &id).await.len(), 1);
    assert!(receiver.try_recv().is_some(), "the run was queued once");
    assert!(receiver.try_recv().is_none(), "and only once");
}

#[tokio::test]
async fn restart_resumes_without_firing_twice_and_catches_up_missed_fires() {
    let f = fixture().await;
    let id = f
        .schedule(json!({"cadence": {"kind": "HOURLY", "minute": 0}, "overlapPolicy": "ALLOW"}))
        .await;
    let timer = f.app.embedded.start_timer().await.expect("timer");
    f.app.clock.set(at("2026-06-01T02:00:30Z"));
    let before = wait_for_fires(&f.app, &id, 2).await;
    assert_eq!(before.len(), 2, "01:00 and 02:00 fired: {before:?}");
    timer.abort();

    // Down for a while: 03:00 falls due while nothing runs.
    let app = f.app.restart();
    app.clock.set(at("2026-06-01T03:20:00Z"));
    let timer = app.embedded.start_timer().await.expect("timer");
    let after = wait_for_fires(&app, &id, 3).await;
    let times: Vec<_> = after.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        vec![
            at("2026-06-01T01:00:00Z"),
            at("2026-06-01T02:00:00Z"),
            at("2026-06-01T03:00:00Z")
        ],
        "nothing fired twice, the missed 03:00 was caught up"
    );
    assert_eq!(
        app.embedded.timer.next_fire(&id),
        Some(at("2026-06-01T04:00:00Z"))
    );
    app.clock.set(at("2026-06-01T04:00:01Z"));
    assert_eq!(wait_for_fires(&app, &id, 4).await.len(), 4);
    tokio::time::sleep(StdDuration::from_millis(50)).await;
    assert_eq!(fires(&app, &id).await.len(), 4);
    timer.abort();
    assert_eq!(epoch(), at("2026-06-01T00:00:00Z"));
}

#[tokio::test]
async fn state_survives_a_restart() {
    let f = fixture().await;
    let id = f
        .schedule(json!({"cadence": {"kind": "WEEKLY", "weekdays": ["MON", "THU"], "hour": 9}}))
        .await;
    let owner = f.owner.clone();
    let project = f.project.clone();
    let app = f.app.restart();
    let r = app
        .get(
            &format!("/api/v1/projects/{project}/schedules/{id}"),
            &owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["cadence"]["weekdays"], json!(["MON", "THU"]));
    let r = app
        .get(&format!("/api/v1/projects/{project}"), &owner)
        .await;
    assert_eq!(r.body["publishedVersion"], 1);
    app.embedded.start_timer().await.expect("timer").abort();
    assert!(
        app.embedded.timer.next_fire(&id).is_some(),
        "the timer reloads stored schedules"
    );
}
