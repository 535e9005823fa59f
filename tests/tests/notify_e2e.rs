//! Notifications end to end on the embedded deployment (the code `serve` runs): a schedule
//! fires, the run executes, its event goes over the in-process bus to the notify service,
//! and real peers receive the messages — e-mail through the SMTP server of
//! `infra/local/smtp.sh`, Slack and signed webhooks at loopback HTTP endpoints (the
//! deployment runs with the development flag `--allow-loopback-webhooks`).

use std::time::Duration as StdDuration;

use chrono::Duration;
use http::StatusCode;
use scheduled_runs::domain::model::{Plan, RunStatus, WorkspaceRole};
use scheduled_runs::domain::notifications::{self, SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECS};
use scheduled_runs::ports::{Clock, RunEvent, RunStore, Secret};
use scheduled_runs_tests::harness::{TestApp, sample_version};
use scheduled_runs_tests::peers::{HttpPeer, SmtpPeer};
use serde_json::{Value, json};

const PUBLIC_URL: &str = "https://runs.example.com";
const WAIT: StdDuration = StdDuration::from_secs(20);

struct World {
    app: TestApp,
    smtp: Option<SmtpPeer>,
    owner: String,
    project: String,
    slack: HttpPeer,
    hook: HttpPeer,
    secret: String,
}

/// A TEAM workspace with a published project, a Slack channel `C1` and a signing secret;
/// e-mail goes to the SMTP peer when there is one.
async fn world(smtp: Option<SmtpPeer>) -> World {
    let smtp_url = smtp.as_ref().map(|p| p.url.clone());
    let app = TestApp::with_config(|c| {
        c.smtp_url = smtp_url.map(Secret::new);
        c.allow_loopback_webhooks = true;
        c.public_url = PUBLIC_URL.into();
    });
    app.workspace("w", Plan::Team).await;
    let owner = app.token("owner", "w", WorkspaceRole::Member);
    let admin = app.token("boss", "w", WorkspaceRole::Admin);
    let project = app.published_project(&owner).await;
    let slack = HttpPeer::start().await;
    let hook = HttpPeer::start().await;
    let r = app
        .put(
            "/api/v1/admin/integrations/slack",
            &admin,
            json!({"channels": {"C1": slack.url("/services/T000/B000/XXXX")}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .post(
            "/api/v1/admin/integrations/webhooks/rotate-secret",
            &admin,
            json!({}),
        )
        .await;
    let secret = r.body["signingSecret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.embedded.start_workers();
    app.embedded.start_notifier();
    World {
        app,
        smtp,
        owner,
        project,
        slack,
        hook,
        secret,
    }
}

fn mailbox(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple())
}

impl World {
    async fn schedule(&self, body: Value) -> String {
        let r = self
            .app
            .post(
                &format!("/api/v1/projects/{}/schedules", self.project),
                &self.owner,
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["scheduleId"].as_str().unwrap_or_default().to_owned()
    }

    /// The first run in the schedule's log, once there is one.
    async fn first_run(&self, schedule: &str) -> String {
        let log = format!(
            "/api/v1/projects/{}/schedules/{schedule}/runs",
            self.project
        );
        for _ in 0..1000 {
            if let Some(id) =
                self.app.get(&log, &self.owner).await.body["runs"][0]["runId"].as_str()
            {
                return id.to_owned();
            }
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
        panic!("schedule {schedule} never ran")
    }

    /// The run's status once `n` deliveries are final.
    async fn deliveries(&self, run: &str, n: usize) -> Value {
        let path = format!("/api/v1/projects/{}/runs/{run}", self.project);
        let mut last = Value::Null;
        for _ in 0..2000 {
            last = self.app.get(&path, &self.owner).await.body;
            let done = last["notifications"]
                .as_array()
                .map_or(0, |d| d.iter().filter(|d| d["status"] != "PENDING").count());
            if done >= n {
                return last;
            }
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
        panic!("{n} deliveries of {run} did not finish: {last}")
    }

    /// Runs the schedule's first fire through the timer.
    async fn fire(&self, schedule: &str) -> String {
        let timer = self.app.embedded.start_timer().await.expect("timer");
        self.app.clock.advance(Duration::minutes(61));
        let run = self.first_run(schedule).await;
        timer.abort();
        run
    }
}

fn summary_condition(name: &str, op: &str, value: Value, email: &str) -> Value {
    json!({"name": name, "cellId": "summary",
           "condition": {"measure": "VALUE", "column": "n", "op": op, "value": value},
           "recipients": {"emails": [email]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_notifies_its_subscribers_and_only_the_conditions_that_hold() {
    let Some(smtp) = SmtpPeer::from_env(
        "a_scheduled_run_notifies_its_subscribers_and_only_the_conditions_that_hold",
    ) else {
        return;
    };
    let w = world(Some(smtp)).await;
    let (ops, sales, nobody) = (mailbox("ops"), mailbox("sales"), mailbox("nobody"));
    let schedule = w
        .schedule(json!({
            "cadence": {"kind": "HOURLY", "minute": 0},
            "notifications": {
                "subscriptions": [{"on": "SUCCESS", "recipients": {
                    "emails": [ops], "slackChannelIds": ["C1"], "webhookUrls": [w.hook.url("/runs?team=ops")]
                }}],
                "conditional": [
                    summary_condition("has orders", "GT", json!(0), &sales),
                    summary_condition("absurd volume", "GT", json!(1_000_000), &nobody),
                    {"name": "one summary row", "cellId": "summary",
                     "condition": {"measure": "ROW_COUNT", "op": "EQ", "value": 1},
                     "recipients": {"emails": [ops]}}
                ]
            }
        }))
        .await;
    let run = w.fire(&schedule).await;
    let status = w.app.wait_for_run(&w.owner, &w.project, &run).await;
    assert_eq!(status["status"], "COMPLETED", "{status}");
    let run_url = format!("{PUBLIC_URL}/projects/{}/runs/{run}", w.project);

    // Four deliveries: ops by e-mail (subscription and a condition, in one message), sales
    // by e-mail (its condition held), Slack, the webhook. Nothing for the absurd condition.
    let status = w.deliveries(&run, 4).await;
    let records = status["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(records.len(), 4, "{status}");
    assert!(
        records
            .iter()
            .all(|r| r["status"] == "DELIVERED" && r["attempts"] == 1),
        "{records:?}"
    );
    let targets: Vec<&str> = records
        .iter()
        .filter_map(|r| r["target"].as_str())
        .collect();
    assert!(targets.contains(&"C1 (127.0.0.1/…/XXXX)"), "{targets:?}");
    assert!(
        targets
            .iter()
            .all(|t| !t.contains("ops-") && !t.contains("sales-")),
        "masked: {targets:?}"
    );
    let smtp = w.smtp.as_ref().expect("smtp peer");
    let ops_mail = smtp.wait_for(&ops, 1, WAIT).await;
    assert_eq!(ops_mail.len(), 1, "one message to ops");
    assert_eq!(
        ops_mail[0].subject(),
        "[Sales] Condition met: one summary row"
    );
    assert!(ops_mail[0].body.contains(&run_url), "{}", ops_mail[0].body);
    assert!(
        ops_mail[0]
            .body
            .contains("because of: SUCCESS, CONDITION:one summary row"),
        "{}",
        ops_mail[0].body
    );
    let sales_mail = smtp.wait_for(&sales, 1, WAIT).await;
    assert_eq!(sales_mail.len(), 1);
    assert_eq!(sales_mail[0].subject(), "[Sales] Condition met: has orders");
    assert!(
        sales_mail[0].body.contains("VALUE of summary.n is"),
        "{}",
        sales_mail[0].body
    );
    assert!(
        smtp.mail_to(&nobody).is_empty(),
        "a condition that does not hold sends nothing"
    );

    let slack = w.slack.wait_for(1, WAIT).await;
    assert_eq!(slack.len(), 1);
    assert!(
        slack[0].json()["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains(&run_url)
    );
    let hooks = w.hook.wait_for(1, WAIT).await;
    assert_eq!(hooks.len(), 1);
    let h = &hooks[0];
    assert_eq!(h.path, "/runs?team=ops");
    assert_eq!(
        notifications::verify_signature(
            w.secret.as_bytes(),
            h.header(SIGNATURE_HEADER).unwrap_or_default(),
            &h.body,
            chrono::Utc::now().timestamp(),
            SIGNATURE_TOLERANCE_SECS
        ),
        Ok(())
    );
    let body = h.json();
    assert_eq!(
        (body["status"].as_str(), body["runUrl"].as_str()),
        (Some("COMPLETED"), Some(run_url.as_str()))
    );
    assert_eq!(body["scheduleId"], schedule.as_str());

    // The event was handled: the run's outbox flag is clear, its status untouched.
    let stored = w
        .app
        .embedded
        .store
        .get_run("w", &run)
        .await
        .expect("get")
        .expect("stored");
    assert!(!stored.event_pending);
    assert_eq!(stored.status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cell_sends_an_error_alert() {
    let Some(smtp) = SmtpPeer::from_env("a_failing_cell_sends_an_error_alert") else {
        return;
    };
    let w = world(Some(smtp)).await;
    let mut broken = sample_version();
    broken["cells"][2]["sql"] = json!("SELECT n FROM no_such_table");
    let r = w
        .app
        .put(
            &format!("/api/v1/projects/{}/draft", w.project),
            &w.owner,
            broken,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    w.app
        .post(
            &format!("/api/v1/projects/{}/publish", w.project),
            &w.owner,
            json!({}),
        )
        .await;
    let oncall = mailbox("oncall");
    let happy = mailbox("happy");
    let schedule = w
        .schedule(json!({
            "cadence": {"kind": "DAILY", "hour": 6},
            "notifications": {"subscriptions": [
                {"on": "FAILURE", "recipients": {"emails": [oncall], "webhookUrls": [w.hook.url("/alerts")]}},
                {"on": "SUCCESS", "recipients": {"emails": [happy]}}
            ]}
        }))
        .await;
    // "Run now" runs the schedule's configuration, notifications included.
    let r = w
        .app
        .post(
            &format!(
                "/api/v1/projects/{}/schedules/{schedule}/trigger",
                w.project
            ),
            &w.owner,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let run = r.body["runId"].as_str().unwrap_or_default().to_owned();
    let status = w.app.wait_for_run(&w.owner, &w.project, &run).await;
    assert_eq!(status["status"], "ERRORED", "{status}");

    let smtp = w.smtp.as_ref().expect("smtp peer");
    let alert = smtp.wait_for(&oncall, 1, WAIT).await;
    assert_eq!(alert.len(), 1);
    assert_eq!(
        alert[0].subject(),
        "[Sales] Manual run failed (CELL_FAILED)"
    );
    assert!(
        alert[0].body.contains("(cell summary)"),
        "{}",
        alert[0].body
    );
    assert!(alert[0].body.contains("no such table"), "{}", alert[0].body);
    let hooks = w.hook.wait_for(1, WAIT).await;
    assert_eq!(hooks[0].path, "/alerts");
    let body = hooks[0].json();
    assert_eq!(body["status"], "ERRORED");
    assert_eq!(body["error"]["code"], "CELL_FAILED");
    assert_eq!(body["error"]["cellId"], "summary");
    w.deliveries(&run, 2).await;
    assert!(
        smtp.mail_to(&happy).is_empty(),
        "SUCCESS subscribers hear nothing of a failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_run_event_sends_each_message_once() {
    let w = world(None).await;
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{}/runs", w.project),
            &w.owner,
            json!({"notifications": [{"type": "ALL", "webhookUrls": [w.hook.url("/h")], "slackChannelIds": ["C1"]}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let run = r.body["runId"].as_str().unwrap_or_default().to_owned();
    w.app.wait_for_run(&w.owner, &w.project, &run).await;
    let first = w.deliveries(&run, 2).await["notifications"].clone();
    let stored = w
        .app
        .embedded
        .store
        .get_run("w", &run)
        .await
        .expect("get")
        .expect("stored");
    // The same event again, several times at once (SNS and the sweeper deliver at least
    // once), and once more afterwards.
    let event = RunEvent::of(&stored);
    let again: Vec<_> = (0..4)
        .map(|_| {
            let (notify, event) = (w.app.embedded.notify.clone(), event.clone());
            tokio::spawn(async move { notify.handle(&event).await.expect("handled") })
        })
        .collect();
    for a in again {
        let report = a.await.expect("task");
        assert_eq!(
            (report.delivered, report.already_done),
            (0, 2),
            "{report:?}"
        );
    }
    w.app.embedded.notify.handle(&event).await.expect("handled");
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(w.hook.received().len(), 1, "one webhook");
    assert_eq!(w.slack.received().len(), 1, "one Slack message");
    assert_eq!(
        w.deliveries(&run, 2).await["notifications"],
        first,
        "records unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_runs_reach_only_subscriptions_that_ask_for_them() {
    let w = world(None).await;
    let schedule = w
        .schedule(json!({
            "cadence": {"kind": "DAILY", "hour": 6},
            "enabled": false,
            "notifications": {"subscriptions": [
                {"on": "FAILURE", "includeSkipped": true, "recipients": {"webhookUrls": [w.hook.url("/skips")]}},
                {"on": "ALL", "recipients": {"webhookUrls": [w.hook.url("/all")]}},
                {"on": "FAILURE", "recipients": {"slackChannelIds": ["C1"]}}
            ]}
        }))
        .await;
    // A fire that reaches the disabled schedule is recorded as skipped.
    let at = w.app.clock.now() + Duration::hours(6);
    w.app
        .embedded
        .state
        .dispatch
        .dispatch_scheduled("w", &schedule, at)
        .await
        .expect("dispatch");
    let run = w.first_run(&schedule).await;
    let status = w.deliveries(&run, 1).await;
    assert_eq!(status["status"], "SKIPPED");
    let got = w.hook.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/skips");
    assert_eq!(got[0].json()["skipReason"], "SCHEDULE_DISABLED");
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(
        w.hook.received().len(),
        1,
        "ALL without includeSkipped hears nothing"
    );
    assert!(w.slack.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_runs_notify_and_show_their_deliveries_without_an_smtp_server() {
    let w = world(None).await;
    let ops = mailbox("ops");
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{}/runs", w.project),
            &w.owner,
            json!({"notifications": [
                {"type": "SUCCESS", "emails": [ops], "webhookUrls": [w.hook.url("/api-runs")]},
                {"type": "FAILURE", "slackChannelIds": ["C1"]}
            ]}),
        )
        .await;
    let run = r.body["runId"].as_str().unwrap_or_default().to_owned();
    w.app.wait_for_run(&w.owner, &w.project, &run).await;
    let status = w.deliveries(&run, 2).await;
    let records = status["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(records.len(), 2, "no Slack for a success: {records:?}");
    let email = records
        .iter()
        .find(|r| r["channel"] == "EMAIL")
        .expect("an e-mail record");
    assert_eq!(email["status"], "FAILED");
    assert_eq!(
        email["attempts"], 1,
        "refused at the first attempt, not retried"
    );
    assert!(
        email["error"]
            .as_str()
            .unwrap_or_default()
            .contains("--smtp-url"),
        "{email}"
    );
    assert_eq!(email["target"], "o***@example.com");
    let hook = records
        .iter()
        .find(|r| r["channel"] == "WEBHOOK")
        .expect("a webhook record");
    assert_eq!(
        (hook["status"].as_str(), hook["reasons"].clone()),
        (Some("DELIVERED"), json!(["SUCCESS"]))
    );
    assert_eq!(w.hook.received()[0].json()["runTrigger"], "API");
    // Only the run's readers see it; another workspace finds no such run.
    let stranger = w.app.token("x", "elsewhere", WorkspaceRole::Admin);
    let r = w
        .app
        .get(
            &format!("/api/v1/projects/{}/runs/{run}", w.project),
            &stranger,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_left_pending_is_published_again_by_the_sweeper_and_delivered_once() {
    // No notifier yet: the run ends, its event waits on the bus, and its outbox flag stays
    // set (the local bus is not durable, so only a handled event clears it).
    let app = TestApp::with_config(|c| c.allow_loopback_webhooks = true);
    app.workspace("w", Plan::Team).await;
    let owner = app.token("owner", "w", WorkspaceRole::Member);
    let admin = app.token("boss", "w", WorkspaceRole::Admin);
    let project = app.published_project(&owner).await;
    app.post(
        "/api/v1/admin/integrations/webhooks/rotate-secret",
        &admin,
        json!({}),
    )
    .await;
    let hook = HttpPeer::start().await;
    app.embedded.start_workers();
    let r = app
        .post(
            &format!("/api/v1/projects/{project}/runs"),
            &owner,
            json!({"notifications": [{"type": "ALL", "webhookUrls": [hook.url("/h")]}]}),
        )
        .await;
    let run = r.body["runId"].as_str().unwrap_or_default().to_owned();
    app.wait_for_run(&owner, &project, &run).await;
    let stored = app
        .embedded
        .store
        .get_run("w", &run)
        .await
        .expect("get")
        .expect("stored");
    assert!(stored.event_pending, "ended, not yet handled");

    // Too early for the sweeper: the event may still be on its way.
    assert_eq!(
        app.embedded
            .outbox
            .republish_pending()
            .await
            .expect("sweep"),
        0
    );
    app.clock.advance(Duration::minutes(3));
    assert_eq!(
        app.embedded
            .outbox
            .republish_pending()
            .await
            .expect("sweep"),
        1
    );

    // The notifier now finds the event twice on the bus: one message all the same.
    app.embedded.start_notifier();
    let got = hook.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    for _ in 0..500 {
        let stored = app
            .embedded
            .store
            .get_run("w", &run)
            .await
            .expect("get")
            .expect("stored");
        if !stored.event_pending {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(hook.received().len(), 1, "delivered once");
    let stored = app
        .embedded
        .store
        .get_run("w", &run)
        .await
        .expect("get")
        .expect("stored");
    assert!(!stored.event_pending, "handled: the flag is clear");
    assert_eq!(
        app.embedded
            .outbox
            .republish_pending()
            .await
            .expect("sweep"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_alerts_failure_subscribers() {
    let w = world(None).await;
    let slow = json!({
        "cells": [{"id": "slow", "type": "SQL", "connection": "warehouse",
                   "sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000000) SELECT COUNT(*) FROM c"}],
        "app": {"cells": ["slow"]}
    });
    w.app
        .put(
            &format!("/api/v1/projects/{}/draft", w.project),
            &w.owner,
            slow,
        )
        .await;
    w.app
        .post(
            &format!("/api/v1/projects/{}/publish", w.project),
            &w.owner,
            json!({}),
        )
        .await;
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{}/runs", w.project),
            &w.owner,
            json!({"notifications": [{"type": "FAILURE", "webhookUrls": [w.hook.url("/killed")]}]}),
        )
        .await;
    let run = r.body["runId"].as_str().unwrap_or_default().to_owned();
    let r = w
        .app
        .delete(
            &format!("/api/v1/projects/{}/runs/{run}", w.project),
            &w.owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let got = w.hook.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["status"], "KILLED");
    assert_eq!(w.deliveries(&run, 1).await["status"], "KILLED");
}
