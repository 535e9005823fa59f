//! The AWS messaging adapters against moto's server: EventBridge Scheduler as the trigger
//! backend (read back with `GetSchedule`), `reconcile` repairing drift there, the SQS run
//! queue and the SNS run-event publisher (through a raw-delivery SQS subscription).
//!
//! Needs `SCHEDULED_RUNS_TEST_MOTO_ENDPOINT` (`infra/local/moto.sh start`, then
//! `source .test-env/moto.env`). Without it every test prints a loud skip and passes,
//! unless `SCHEDULED_RUNS_REQUIRE_PEERS=1`, which turns the skip into a failure.
//!
//! moto keeps its state for as long as the server runs, so every test works in names of
//! its own (a random group prefix, queue and topic names).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use scheduled_runs::adapters::aws::scheduler::{
    SchedulerConfig, SchedulerInput, SchedulerTriggers, sdk as scheduler_sdk,
};
use scheduled_runs::adapters::aws::sns::{SnsEventPublisher, sdk as sns_sdk};
use scheduled_runs::adapters::aws::sqs::{SqsRunQueue, sdk as sqs_sdk};
use scheduled_runs::adapters::local::sqlite::SqliteStore;
use scheduled_runs::domain::cadence::{Cadence, Weekday};
use scheduled_runs::domain::model::{
    OverlapPolicy, Plan, Project, ProjectRole, RunStatus, RunTrigger, Schedule, Workspace,
};
use scheduled_runs::ports::{
    EventPublisher, PageRequest, PortError, ProjectStore, RunEvent, RunMessage, RunQueue,
    ScheduleLimits, ScheduleStore, TriggerBackend, TriggerListing, TriggerState, WorkspaceStore,
};
use scheduled_runs::services::reconcile::{ReconcileService, TriggerRef};
use serde_json::{Value, json};

use scheduler_sdk::types::{FlexibleTimeWindowMode, ScheduleState};

const ENDPOINT_VAR: &str = "SCHEDULED_RUNS_TEST_MOTO_ENDPOINT";
const REQUIRE_VAR: &str = "SCHEDULED_RUNS_REQUIRE_PEERS";
const REGION: &str = "us-east-1";
const DISPATCH_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:scheduled-runs-dispatch";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/scheduled-runs-scheduler";
const DLQ_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:scheduled-runs-dispatch-dlq";

/// moto's endpoint, or `None` after a loud skip notice (a panic when peers are required).
fn moto_endpoint(test: &str) -> Option<String> {
    match std::env::var(ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.trim().is_empty() => Some(endpoint.trim().to_owned()),
        _ => {
            assert!(
                std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
                "{ENDPOINT_VAR} is not set but {REQUIRE_VAR}=1: run `infra/local/moto.sh start` \
                 and `source .test-env/moto.env` first"
            );
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: {ENDPOINT_VAR} is not set, so the AWS messaging \
                 adapters were NOT tested against moto. Run `infra/local/moto.sh start && \
                 source .test-env/moto.env` (or set {REQUIRE_VAR}=1 to make this fail).\n"
            );
            None
        }
    }
}

// Clients are configured explicitly (endpoint, region, static test credentials) so nothing
// from the environment can point them at a real account.

fn scheduler_client(endpoint: &str) -> scheduler_sdk::Client {
    use scheduler_sdk::config::{BehaviorVersion, Credentials, Region};
    let config = scheduler_sdk::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(scheduled_runs::aws_deployment::https_client())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(endpoint)
        .build();
    scheduler_sdk::Client::from_conf(config)
}

fn sqs_client(endpoint: &str) -> sqs_sdk::Client {
    use sqs_sdk::config::{BehaviorVersion, Credentials, Region};
    let config = sqs_sdk::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(scheduled_runs::aws_deployment::https_client())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(endpoint)
        .build();
    sqs_sdk::Client::from_conf(config)
}

fn sns_client(endpoint: &str) -> sns_sdk::Client {
    use sns_sdk::config::{BehaviorVersion, Credentials, Region};
    let config = sns_sdk::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(scheduled_runs::aws_deployment::https_client())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(endpoint)
        .build();
    sns_sdk::Client::from_conf(config)
}

/// A name nobody else in this moto server uses.
fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &id[..10])
}

fn triggers(endpoint: &str) -> SchedulerTriggers {
    SchedulerTriggers::new(
        scheduler_client(endpoint),
        SchedulerConfig::new(unique("srt"), DISPATCH_ARN, ROLE_ARN, DLQ_ARN),
    )
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, day, hour, 0, 0)
        .single()
        .expect("fixture instant is valid")
}

fn schedule(workspace_id: &str, project_id: &str, schedule_id: &str) -> Schedule {
    Schedule {
        schedule_id: schedule_id.into(),
        project_id: project_id.into(),
        workspace_id: workspace_id.into(),
        created_by: "ada".into(),
        creator_role: ProjectRole::FullAccess,
        cadence: Cadence::Weekly {
            weekdays: vec![Weekday::Mon, Weekday::Thu],
            hour: 9,
            minute: 30,
        },
        timezone: "Europe/Berlin".into(),
        enabled: true,
        update_published_results: true,
        use_cached_sql_results: false,
        overlap_policy: OverlapPolicy::Skip,
        hourly: false,
        created_at: at(1, 9),
        updated_at: at(1, 9),
        version: 1,
        notifications: Default::default(),
    }
}

/// The Scheduler schedule as `GetSchedule` returns it, or `None` when it does not exist.
async fn get_schedule(
    client: &scheduler_sdk::Client,
    group: &str,
    name: &str,
) -> Option<scheduler_sdk::operation::get_schedule::GetScheduleOutput> {
    match client
        .get_schedule()
        .group_name(group)
        .name(name)
        .send()
        .await
    {
        Ok(output) => Some(output),
        Err(e) => {
            let service = e.into_service_error();
            assert!(
                service.is_resource_not_found_exception(),
                "GetSchedule failed: {service:?}"
            );
            None
        }
    }
}

async fn all_triggers(backend: &dyn TriggerListing, limit: u32) -> Vec<TriggerState> {
    let mut all = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let batch = backend.list_triggers(&page).await.expect("list_triggers");
        assert!(
            batch.items.len() <= limit as usize,
            "page larger than its limit"
        );
        all.extend(batch.items);
        match batch.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    all.sort_by(|a, b| a.schedule_id.cmp(&b.schedule_id));
    all
}

#[tokio::test]
async fn scheduler_schedule_lifecycle_reads_back_exactly() {
    let Some(endpoint) = moto_endpoint("scheduler_schedule_lifecycle_reads_back_exactly") else {
        return;
    };
    let backend = triggers(&endpoint);
    let client = scheduler_client(&endpoint);
    let group = format!("{}-ws-1", backend.config().group_prefix);
    let mut s = schedule("ws-1", "proj-1", &uuid::Uuid::new_v4().to_string());

    // Create (the workspace's group does not exist yet).
    backend.put_trigger(&s, true).await.expect("create");
    let got = get_schedule(&client, &group, &s.schedule_id)
        .await
        .expect("schedule created");
    assert_eq!(got.name(), Some(s.schedule_id.as_str()));
    assert_eq!(got.group_name(), Some(group.as_str()));
    assert_eq!(got.schedule_expression(), Some("cron(30 9 ? * MON,THU *)"));
    assert_eq!(got.schedule_expression_timezone(), Some("Europe/Berlin"));
    assert_eq!(got.state(), Some(&ScheduleState::Enabled));
    let window = got.flexible_time_window().expect("flexible window");
    assert_eq!(window.mode(), &FlexibleTimeWindowMode::Flexible);
    assert_eq!(window.maximum_window_in_minutes(), Some(5));
    let target = got.target().expect("target");
    assert_eq!(target.arn(), DISPATCH_ARN);
    assert_eq!(target.role_arn(), ROLE_ARN);
    let input: Value = serde_json::from_str(target.input().expect("input")).expect("input JSON");
    assert_eq!(
        input,
        json!({
            "workspaceId": "ws-1",
            "scheduleId": s.schedule_id,
            "projectId": s.project_id,
            "createdBy": s.created_by,
            "scheduledTime": "<aws.scheduler.scheduled-time>",
            "executionId": "<aws.scheduler.execution-id>",
        })
    );
    // What the dispatch function receives once Scheduler fills the placeholders in.
    let delivered = target
        .input()
        .expect("input")
        .replace("<aws.scheduler.scheduled-time>", "2026-06-04T07:30:00Z")
        .replace("<aws.scheduler.execution-id>", "exec-1");
    let parsed: SchedulerInput = serde_json::from_str(&delivered).expect("dispatch input");
    assert_eq!(parsed.schedule_id, s.schedule_id);
    assert_eq!(
        parsed.scheduled_time,
        at(4, 7) + chrono::Duration::minutes(30)
    );
    let retry = target.retry_policy().expect("retry policy");
    assert_eq!(retry.maximum_event_age_in_seconds(), Some(86_400));
    assert_eq!(retry.maximum_retry_attempts(), Some(185));
    assert_eq!(
        target.dead_letter_config().and_then(|d| d.arn()),
        Some(DLQ_ARN)
    );

    // Putting the same definition again is a no-op, not a conflict.
    backend.put_trigger(&s, true).await.expect("idempotent put");

    // Update: new cadence and timezone.
    s.cadence = Cadence::Daily { hour: 7, minute: 0 };
    s.timezone = "America/New_York".into();
    s.version += 1;
    backend.put_trigger(&s, true).await.expect("update");
    let got = get_schedule(&client, &group, &s.schedule_id)
        .await
        .expect("schedule updated");
    assert_eq!(got.schedule_expression(), Some("cron(0 7 * * ? *)"));
    assert_eq!(got.schedule_expression_timezone(), Some("America/New_York"));
    assert_eq!(got.state(), Some(&ScheduleState::Enabled));
    assert_eq!(
        got.target()
            .and_then(|t| t.dead_letter_config())
            .and_then(|d| d.arn()),
        Some(DLQ_ARN),
        "an update replaces the whole definition, DLQ included"
    );

    // Disable (schedule disabled or project archived): the schedule stays, DISABLED.
    backend.put_trigger(&s, false).await.expect("disable");
    let got = get_schedule(&client, &group, &s.schedule_id)
        .await
        .expect("schedule still there");
    assert_eq!(got.state(), Some(&ScheduleState::Disabled));
    backend.put_trigger(&s, true).await.expect("re-enable");
    let got = get_schedule(&client, &group, &s.schedule_id)
        .await
        .expect("schedule still there");
    assert_eq!(got.state(), Some(&ScheduleState::Enabled));

    // A second schedule of the same workspace lands in the existing group, and the first
    // one survives (the group is not re-created).
    let other = schedule("ws-1", "proj-1", &uuid::Uuid::new_v4().to_string());
    backend
        .put_trigger(&other, true)
        .await
        .expect("second schedule");
    assert!(
        get_schedule(&client, &group, &other.schedule_id)
            .await
            .is_some()
    );
    assert!(
        get_schedule(&client, &group, &s.schedule_id)
            .await
            .is_some()
    );

    // Delete, and deleting again (or in a group that never existed) succeeds.
    backend.delete_trigger(&s).await.expect("delete");
    assert!(
        get_schedule(&client, &group, &s.schedule_id)
            .await
            .is_none()
    );
    backend.delete_trigger(&s).await.expect("delete again");
    let never = schedule("ws-never", "proj-1", "never-created");
    backend
        .delete_trigger(&never)
        .await
        .expect("delete in a missing group");
    assert!(
        get_schedule(&client, &group, &other.schedule_id)
            .await
            .is_some()
    );
}

#[tokio::test]
async fn scheduler_window_off_and_invalid_input_are_handled() {
    let Some(endpoint) = moto_endpoint("scheduler_window_off_and_invalid_input_are_handled") else {
        return;
    };
    let client = scheduler_client(&endpoint);
    let mut config = SchedulerConfig::new(unique("srt"), DISPATCH_ARN, ROLE_ARN, DLQ_ARN);
    config.flexible_window_minutes = 0;
    let group = format!("{}-ws-1", config.group_prefix);
    let backend = SchedulerTriggers::new(client.clone(), config);
    let s = schedule("ws-1", "proj-1", &uuid::Uuid::new_v4().to_string());
    backend.put_trigger(&s, true).await.expect("create");
    let got = get_schedule(&client, &group, &s.schedule_id)
        .await
        .expect("created");
    let window = got.flexible_time_window().expect("window");
    assert_eq!(window.mode(), &FlexibleTimeWindowMode::Off);
    assert_eq!(window.maximum_window_in_minutes(), None);

    // A workspace id that cannot be part of a group name is refused before any call.
    let bad = schedule("ws/1", "proj-1", "s-bad");
    match backend.put_trigger(&bad, true).await {
        Err(PortError::Unavailable { retryable, .. }) => assert!(!retryable),
        other => panic!("expected a fatal error, got {other:?}"),
    }
    backend
        .delete_trigger(&bad)
        .await
        .expect("a trigger that cannot exist is deleted");
}

#[tokio::test]
async fn scheduler_list_triggers_walks_every_group_of_the_prefix() {
    let Some(endpoint) = moto_endpoint("scheduler_list_triggers_walks_every_group_of_the_prefix")
    else {
        return;
    };
    let backend = triggers(&endpoint);
    let client = scheduler_client(&endpoint);
    let mut expected = Vec::new();
    for (workspace, count) in [("ws-a", 3), ("ws-b", 1), ("ws-c", 2)] {
        for i in 0..count {
            let mut s = schedule(workspace, "proj-1", &format!("{workspace}-s{i}"));
            if i == 1 {
                s.timezone = "Asia/Tokyo".into();
            }
            let active = i != 1;
            backend.put_trigger(&s, active).await.expect("put");
            expected.push(TriggerState {
                workspace_id: workspace.into(),
                schedule_id: s.schedule_id.clone(),
                active,
                expression: "cron(30 9 ? * MON,THU *)".into(),
                timezone: s.timezone.clone(),
            });
        }
    }
    // An empty group of ours, and a schedule in one of our groups that targets another
    // function (not ours, so not listed).
    let prefix = backend.config().group_prefix.clone();
    client
        .create_schedule_group()
        .name(format!("{prefix}-ws-empty"))
        .send()
        .await
        .expect("empty group");
    let foreign_target = scheduler_sdk::types::Target::builder()
        .arn("arn:aws:lambda:us-east-1:123456789012:function:someone-else")
        .role_arn(ROLE_ARN)
        .build()
        .expect("target");
    client
        .create_schedule()
        .name("foreign")
        .group_name(format!("{prefix}-ws-a"))
        .schedule_expression("rate(1 hour)")
        .flexible_time_window(
            scheduler_sdk::types::FlexibleTimeWindow::builder()
                .mode(FlexibleTimeWindowMode::Off)
                .build()
                .expect("window"),
        )
        .target(foreign_target)
        .send()
        .await
        .expect("foreign schedule");
    // Another deployment's triggers (another prefix) are not listed either.
    let other_deployment = triggers(&endpoint);
    other_deployment
        .put_trigger(&schedule("ws-a", "proj-1", "other-deployment"), true)
        .await
        .expect("put");

    expected.sort_by(|a, b| a.schedule_id.cmp(&b.schedule_id));
    for limit in [1, 2, 4, 100] {
        assert_eq!(
            all_triggers(&backend, limit).await,
            expected,
            "page size {limit}"
        );
    }
    let foreign_cursor = PageRequest {
        limit: 10,
        cursor: Some("not-ours".into()),
    };
    assert!(matches!(
        backend.list_triggers(&foreign_cursor).await,
        Err(PortError::InvalidCursor)
    ));
}

/// A real SQLite store holding `schedules`; project `proj-archived` is archived.
async fn store_with(dir: &tempfile::TempDir, schedules: &[Schedule]) -> Arc<SqliteStore> {
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).expect("open store"));
    let mut workspaces: Vec<&str> = schedules.iter().map(|s| s.workspace_id.as_str()).collect();
    workspaces.sort_unstable();
    workspaces.dedup();
    for workspace_id in workspaces {
        store
            .create_workspace(&Workspace {
                workspace_id: workspace_id.into(),
                plan: Plan::Enterprise,
                auto_archive_after_days: None,
                created_at: at(1, 0),
            })
            .await
            .expect("workspace");
        for project_id in ["proj-1", "proj-archived"] {
            store
                .create_project(&Project {
                    project_id: project_id.into(),
                    workspace_id: workspace_id.into(),
                    title: project_id.into(),
                    description: None,
                    created_by: "ada".into(),
                    created_at: at(1, 0),
                    updated_at: at(1, 0),
                    archived: false,
                    published_version: None,
                    last_activity_at: at(1, 0),
                })
                .await
                .expect("project");
        }
        store
            .set_archived(workspace_id, "proj-archived", true, at(1, 1))
            .await
            .expect("archive");
    }
    for s in schedules {
        store
            .insert_schedule(s, &ScheduleLimits::default())
            .await
            .expect("schedule");
    }
    store
}

fn id(workspace_id: &str, schedule_id: &str) -> TriggerRef {
    TriggerRef {
        workspace_id: workspace_id.into(),
        schedule_id: schedule_id.into(),
    }
}

#[tokio::test]
async fn reconcile_repairs_drift_in_eventbridge_scheduler() {
    let Some(endpoint) = moto_endpoint("reconcile_repairs_drift_in_eventbridge_scheduler") else {
        return;
    };
    let backend = Arc::new(triggers(&endpoint));
    let client = scheduler_client(&endpoint);
    let group = format!("{}-ws-1", backend.config().group_prefix);

    let ok = schedule("ws-1", "proj-1", "s-ok");
    let missing = schedule("ws-1", "proj-1", "s-missing");
    let mut disabled = schedule("ws-1", "proj-1", "s-disabled");
    disabled.enabled = false;
    let archived = schedule("ws-1", "proj-archived", "s-archived");
    let mut recadenced = schedule("ws-1", "proj-1", "s-recadenced");
    recadenced.cadence = Cadence::Monthly {
        day_of_month: serde_json::from_value(json!("LAST")).expect("LAST"),
        hour: 6,
        minute: 0,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with(
        &dir,
        &[
            ok.clone(),
            missing.clone(),
            disabled.clone(),
            archived.clone(),
            recadenced.clone(),
        ],
    )
    .await;

    // The triggers as failures between the two writes could leave them.
    backend.put_trigger(&ok, true).await.expect("put");
    backend.put_trigger(&disabled, true).await.expect("put");
    backend.put_trigger(&archived, true).await.expect("put");
    backend
        .put_trigger(&schedule("ws-1", "proj-1", "s-recadenced"), true)
        .await
        .expect("put");
    let orphan = schedule("ws-1", "proj-1", "s-orphan");
    backend.put_trigger(&orphan, true).await.expect("put");

    let service = ReconcileService::new(store.clone(), backend.clone());
    let dry = service.reconcile(true).await.expect("dry run");
    assert_eq!(dry.missing, vec![id("ws-1", "s-missing")]);
    assert_eq!(dry.orphaned, vec![id("ws-1", "s-orphan")]);
    let mut drifted: Vec<(String, Vec<&str>)> = dry
        .drifted
        .iter()
        .map(|d| (d.trigger.schedule_id.clone(), d.fields.clone()))
        .collect();
    drifted.sort();
    assert_eq!(
        drifted,
        vec![
            ("s-archived".to_owned(), vec!["active"]),
            ("s-disabled".to_owned(), vec!["active"]),
            ("s-recadenced".to_owned(), vec!["expression"]),
        ]
    );
    assert!(get_schedule(&client, &group, "s-missing").await.is_none());
    assert!(get_schedule(&client, &group, "s-orphan").await.is_some());

    let report = service.reconcile(false).await.expect("reconcile");
    assert_eq!(report.counts.missing, 1);
    assert_eq!(report.counts.drifted, 3);
    assert_eq!(report.counts.orphaned, 1);
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    let got = get_schedule(&client, &group, "s-missing")
        .await
        .expect("missing trigger created");
    assert_eq!(got.state(), Some(&ScheduleState::Enabled));
    assert_eq!(got.schedule_expression(), Some("cron(30 9 ? * MON,THU *)"));
    assert!(get_schedule(&client, &group, "s-orphan").await.is_none());
    for disabled_id in ["s-disabled", "s-archived"] {
        let got = get_schedule(&client, &group, disabled_id)
            .await
            .expect("trigger kept");
        assert_eq!(got.state(), Some(&ScheduleState::Disabled), "{disabled_id}");
    }
    let got = get_schedule(&client, &group, "s-recadenced")
        .await
        .expect("trigger kept");
    assert_eq!(got.schedule_expression(), Some("cron(0 6 L * ? *)"));

    let again = service.reconcile(false).await.expect("reconcile again");
    assert!(again.is_clean(), "{again:?}");
    assert_eq!(again.schedules_checked, 5);
    assert_eq!(again.triggers_checked, 5);
}

async fn create_queue(client: &sqs_sdk::Client, name: &str) -> (String, String) {
    let url = client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_owned();
    let attributes = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(sqs_sdk::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    let arn = attributes
        .attributes()
        .and_then(|a| a.get(&sqs_sdk::types::QueueAttributeName::QueueArn))
        .expect("queue arn")
        .clone();
    (url, arn)
}

/// Receives until `count` messages arrived or `max_polls` polls (of up to a second each)
/// were made; returns the body and String attributes of each.
async fn receive(
    client: &sqs_sdk::Client,
    url: &str,
    count: usize,
    max_polls: usize,
) -> Vec<(String, HashMap<String, String>)> {
    let mut received = Vec::new();
    for _ in 0..max_polls {
        if received.len() >= count {
            break;
        }
        let output = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        for message in output.messages() {
            let attributes = message
                .message_attributes()
                .map(|attrs| {
                    attrs
                        .iter()
                        .map(|(name, value)| {
                            assert_eq!(value.data_type(), "String", "{name}");
                            (
                                name.clone(),
                                value.string_value().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            received.push((message.body().unwrap_or_default().to_owned(), attributes));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    received
}

fn strings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn sqs_run_queue_delivers_the_run_message() {
    let Some(endpoint) = moto_endpoint("sqs_run_queue_delivers_the_run_message") else {
        return;
    };
    let client = sqs_client(&endpoint);
    let (url, _) = create_queue(&client, &unique("runs-")).await;
    let queue = SqsRunQueue::new(client.clone(), &url);
    let scheduled = RunMessage {
        workspace_id: "ws-1".into(),
        project_id: "proj-1".into(),
        run_id: "run-1".into(),
        schedule_id: Some("sched-1".into()),
        project_version: Some(3),
        connections: vec!["warehouse".into()],
    };
    let api = RunMessage {
        run_id: "run-2".into(),
        schedule_id: None,
        ..scheduled.clone()
    };
    queue.enqueue(scheduled.clone()).await.expect("enqueue");
    queue.enqueue(api.clone()).await.expect("enqueue");

    let mut received: Vec<(RunMessage, HashMap<String, String>)> = receive(&client, &url, 2, 10)
        .await
        .into_iter()
        .map(|(body, attributes)| {
            (
                serde_json::from_str(&body).expect("body is a RunMessage"),
                attributes,
            )
        })
        .collect();
    received.sort_by(|a, b| a.0.run_id.cmp(&b.0.run_id));
    assert_eq!(
        received,
        vec![
            (
                scheduled,
                strings(&[
                    ("workspaceId", "ws-1"),
                    ("projectId", "proj-1"),
                    ("runId", "run-1"),
                    ("scheduleId", "sched-1"),
                ])
            ),
            (
                api,
                strings(&[
                    ("workspaceId", "ws-1"),
                    ("projectId", "proj-1"),
                    ("runId", "run-2"),
                ])
            ),
        ]
    );

    // A queue that does not exist is not a transient failure.
    let gone = SqsRunQueue::new(
        client,
        format!("{endpoint}/123456789012/{}", unique("missing-")),
    );
    match gone.enqueue(received[0].0.clone()).await {
        Err(PortError::Unavailable {
            retryable: false, ..
        }) => {}
        other => panic!("expected a non-retryable failure, got {other:?}"),
    }
}

#[tokio::test]
async fn sns_run_events_reach_subscribers_with_filterable_attributes() {
    let Some(endpoint) =
        moto_endpoint("sns_run_events_reach_subscribers_with_filterable_attributes")
    else {
        return;
    };
    let sns = sns_client(&endpoint);
    let sqs = sqs_client(&endpoint);
    let topic_arn = sns
        .create_topic()
        .name(unique("run-events-"))
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("topic arn")
        .to_owned();
    // One subscriber takes everything, one only failures of scheduled runs.
    let (all_url, all_arn) = create_queue(&sqs, &unique("all-")).await;
    let (failures_url, failures_arn) = create_queue(&sqs, &unique("failures-")).await;
    for (queue_arn, filter) in [
        (&all_arn, None),
        (
            &failures_arn,
            Some(json!({"status": ["ERRORED"], "scheduleId": [{"exists": true}]})),
        ),
    ] {
        let mut request = sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .return_subscription_arn(true);
        if let Some(filter) = filter {
            request = request.attributes("FilterPolicy", filter.to_string());
        }
        request.send().await.expect("subscribe");
    }

    let publisher = SnsEventPublisher::new(sns.clone(), &topic_arn);
    let completed = RunEvent {
        workspace_id: "ws-1".into(),
        project_id: "proj-1".into(),
        schedule_id: Some("sched-1".into()),
        run_id: "run-1".into(),
        status: RunStatus::Completed,
        trigger: RunTrigger::Scheduled,
        scheduled_for: Some(at(4, 7)),
        project_version: Some(2),
        ended_at: Some(at(4, 8)),
    };
    let errored = RunEvent {
        run_id: "run-2".into(),
        status: RunStatus::Errored,
        ..completed.clone()
    };
    let api = RunEvent {
        schedule_id: None,
        run_id: "run-3".into(),
        status: RunStatus::Errored,
        trigger: RunTrigger::Api,
        scheduled_for: None,
        ..completed.clone()
    };
    for event in [&completed, &errored, &api] {
        publisher.publish(event).await.expect("publish");
    }

    let mut everything: Vec<(RunEvent, HashMap<String, String>)> = receive(&sqs, &all_url, 3, 10)
        .await
        .into_iter()
        .map(|(body, attributes)| {
            (
                serde_json::from_str(&body).expect("raw body is the RunEvent"),
                attributes,
            )
        })
        .collect();
    everything.sort_by(|a, b| a.0.run_id.cmp(&b.0.run_id));
    assert_eq!(
        everything,
        vec![
            (
                completed,
                strings(&[
                    ("workspaceId", "ws-1"),
                    ("projectId", "proj-1"),
                    ("scheduleId", "sched-1"),
                    ("status", "COMPLETED"),
                    ("trigger", "SCHEDULED"),
                ])
            ),
            (
                errored.clone(),
                strings(&[
                    ("workspaceId", "ws-1"),
                    ("projectId", "proj-1"),
                    ("scheduleId", "sched-1"),
                    ("status", "ERRORED"),
                    ("trigger", "SCHEDULED"),
                ])
            ),
            (
                api,
                strings(&[
                    ("workspaceId", "ws-1"),
                    ("projectId", "proj-1"),
                    ("status", "ERRORED"),
                    ("trigger", "API"),
                ])
            ),
        ]
    );

    // Enough polls for the one expected message and then one more that must stay empty.
    let failures = receive(&sqs, &failures_url, 2, 3).await;
    let run_ids: Vec<String> = failures
        .iter()
        .map(|(body, _)| {
            serde_json::from_str::<RunEvent>(body)
                .expect("RunEvent")
                .run_id
        })
        .collect();
    assert_eq!(run_ids, ["run-2"], "the filter policy sees the attributes");
}
