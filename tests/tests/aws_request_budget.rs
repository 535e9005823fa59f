//! What one scheduled run costs in AWS requests (DynamoDB, SQS, SNS), from the Input the
//! Scheduler sends to the run log, against DynamoDB Local and moto: dispatch and the
//! executor run in-process with the deployment's own composition (`Aws`), and a
//! `RequestCounter` installed on every SDK client counts each request sent. The budget is
//! at most 3 DynamoDB writes and 2 reads per run (BENCHMARKS.md has the arithmetic of the
//! cost); requests are counted, not timed, so the check is exact.

use std::collections::HashMap;
use std::sync::Arc;

use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use scheduled_runs::adapters::aws::connectors::sdk as secrets_sdk;
use scheduled_runs::adapters::aws::dynamodb::{create_table, sdk as dynamo_sdk};
use scheduled_runs::adapters::aws::request_count::{RequestCounter, RequestCounts};
use scheduled_runs::adapters::aws::scheduler::SchedulerInput;
use scheduled_runs::adapters::aws::sns::sdk as sns_sdk;
use scheduled_runs::adapters::aws::sqs::sdk as sqs_sdk;
use scheduled_runs::aws_deployment::{Aws, AwsSettings};
use scheduled_runs::domain::model::{
    Caller, ConnectionConfig, Plan, RunStatus, User, VersionBody, WorkspaceRole,
};
use scheduled_runs::http::auth::{AuthError, IdentityResolver};
use scheduled_runs::ports::{RunMessage, RunStore, SystemClock, WorkspaceStore};
use scheduled_runs::services::dispatch::DispatchOutcome;
use scheduled_runs::services::executor::ExecuteOutcome;
use scheduled_runs::services::schedules::CreateSchedule;
use scheduled_runs::services::workspaces::WorkspaceService;
use serde_json::json;

const REGION: &str = "us-east-1";

/// The per-service endpoint variables (`AWS_ENDPOINT_URL_<SERVICE>`) from a map instead
/// of the process environment, which tests running in parallel must not change.
#[derive(Debug)]
struct Endpoints(HashMap<String, String>);

impl LoadServiceConfig for Endpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let service = key
            .service_id()
            .to_ascii_uppercase()
            .replace([' ', '-'], "_");
        self.0.get(&format!("{}_{service}", key.env())).cloned()
    }
}

fn peers() -> Option<(String, String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (
        var("SCHEDULED_RUNS_TEST_DYNAMODB_ENDPOINT"),
        var("SCHEDULED_RUNS_TEST_MOTO_ENDPOINT"),
        var("SCHEDULED_RUNS_TEST_POSTGRES_URL"),
    ) {
        (Some(d), Some(m), Some(p)) => Some((d, m, p)),
        _ => {
            assert!(
                std::env::var("SCHEDULED_RUNS_REQUIRE_PEERS").as_deref() != Ok("1"),
                "aws_request_budget: DynamoDB Local, moto and PostgreSQL are required"
            );
            eprintln!(
                "\n!!!!!!!! SKIPPED aws_request_budget: the local AWS peers are not running.\n"
            );
            None
        }
    }
}

/// The API is driven through its services here, never over HTTP.
struct NoIdentity;
impl IdentityResolver for NoIdentity {
    fn identify(&self, _: &http::request::Parts) -> Result<Caller, AuthError> {
        Err(AuthError::Missing)
    }
}

/// The deployment's composition over the emulators, every client counted.
async fn deployment(dynamodb: &str, moto: &str, counter: &RequestCounter) -> Aws {
    use dynamo_sdk::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
    let id = uuid::Uuid::new_v4().simple().to_string();
    let short = &id[..10];
    let endpoints = Endpoints(HashMap::from([
        ("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), dynamodb.to_owned()),
        ("AWS_ENDPOINT_URL_SQS".to_owned(), moto.to_owned()),
        ("AWS_ENDPOINT_URL_SNS".to_owned(), moto.to_owned()),
        ("AWS_ENDPOINT_URL_SCHEDULER".to_owned(), moto.to_owned()),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER".to_owned(),
            moto.to_owned(),
        ),
    ]));
    let sdk = aws_types::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(scheduled_runs::aws_deployment::https_client())
        .region(Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "test",
        )))
        .service_config(endpoints)
        .build();

    // The resources a stack would create, with unique names.
    let dynamo = dynamo_sdk::Client::new(&sdk);
    let table = format!("budget-{short}");
    create_table(&dynamo, &table).await.expect("table");
    let sqs = sqs_sdk::Client::new(&sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("budget-runs-{short}"))
        .send()
        .await
        .expect("queue")
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let topic_arn = sns_sdk::Client::new(&sdk)
        .create_topic()
        .name(format!("budget-events-{short}"))
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .unwrap_or_default()
        .to_owned();
    let secret_arn = secrets_sdk::Client::new(&sdk)
        .create_secret()
        .name(format!("budget-sealing-{short}"))
        .secret_string(format!("{id}{id}"))
        .send()
        .await
        .expect("secret")
        .arn()
        .unwrap_or_default()
        .to_owned();
    let env = HashMap::from([
        ("SCHEDULED_RUNS_TABLE", table),
        ("SCHEDULED_RUNS_RUN_QUEUE_URL", queue_url),
        ("SCHEDULED_RUNS_RUN_EVENTS_TOPIC_ARN", topic_arn),
        ("SCHEDULED_RUNS_SEALING_KEY_SECRET_ARN", secret_arn),
        ("SCHEDULED_RUNS_SCHEDULE_GROUP_PREFIX", format!("b{short}")),
        (
            "SCHEDULED_RUNS_DISPATCH_FUNCTION_ARN",
            "arn:aws:lambda:us-east-1:123456789012:function:scheduled-runs-dispatch".to_owned(),
        ),
        (
            "SCHEDULED_RUNS_SCHEDULER_ROLE_ARN",
            "arn:aws:iam::123456789012:role/scheduled-runs-scheduler".to_owned(),
        ),
        (
            "SCHEDULED_RUNS_SCHEDULER_DLQ_ARN",
            "arn:aws:sqs:us-east-1:123456789012:scheduler-dlq".to_owned(),
        ),
    ]);
    let settings = AwsSettings::from_lookup(|name| env.get(name).cloned()).expect("settings");
    Aws {
        sdk,
        settings,
        clock: Arc::new(SystemClock),
        interceptors: vec![counter.interceptor()],
    }
}

/// Requests of one service, split into reads and writes for DynamoDB.
fn dynamodb_split(counts: &RequestCounts) -> (u64, u64) {
    let mut reads = 0;
    let mut writes = 0;
    for ((service, operation), n) in counts {
        if service != "dynamodb" {
            continue;
        }
        match operation.as_str() {
            "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems" => reads += n,
            _ => writes += n,
        }
    }
    (reads, writes)
}

fn report(step: &str, counts: &RequestCounts) {
    let lines: Vec<String> = counts
        .iter()
        .map(|((service, operation), n)| format!("{service}.{operation}={n}"))
        .collect();
    println!("request budget | {step} | {}", lines.join(" "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_costs_at_most_two_reads_and_three_writes() {
    let Some((dynamodb, moto, postgres)) = peers() else {
        return;
    };
    let counter = RequestCounter::new();
    let aws = deployment(&dynamodb, &moto, &counter).await;
    let store = aws.store().expect("store");

    // A workspace, its admin, a PostgreSQL connection and a published two-cell project
    // whose results update the app, scheduled daily.
    WorkspaceService {
        workspaces: store.clone(),
        clock: Arc::new(SystemClock),
    }
    .create("acme", Plan::Team)
    .await
    .expect("workspace");
    let admin = Caller {
        user_id: "ada".into(),
        workspace_id: "acme".into(),
        workspace_role: WorkspaceRole::Admin,
        email: Some("ada@example.com".into()),
    };
    store
        .upsert_user(&User {
            user_id: admin.user_id.clone(),
            workspace_id: admin.workspace_id.clone(),
            email: admin.email.clone(),
            workspace_role: WorkspaceRole::Admin,
        })
        .await
        .expect("user");
    let state = aws
        .app_state(Arc::new(NoIdentity), "https://runs.example.com".to_owned())
        .await
        .expect("app state");
    state
        .connections
        .put(
            &admin,
            "pg",
            &ConnectionConfig::Postgres {
                url: Some(postgres),
                secret_arn: None,
            },
        )
        .await
        .expect("connection");
    let project = state
        .projects
        .create(&admin, "Revenue", None)
        .await
        .expect("project")
        .project
        .project_id;
    let body: VersionBody = serde_json::from_value(json!({
        "cells": [
            {"id": "numbers", "type": "SQL", "connection": "pg", "sql": "SELECT g AS n FROM generate_series(1, 4) AS g"},
            {"id": "total", "type": "SQL", "connection": "pg", "sql": "SELECT {{ cells.numbers.rowCount }} * 3 AS total"}
        ],
        "app": {"cells": ["total"]}
    }))
    .expect("body");
    state
        .projects
        .put_draft(&admin, &project, &body)
        .await
        .expect("draft");
    state
        .projects
        .publish(&admin, &project)
        .await
        .expect("publish");
    let cadence =
        serde_json::from_value(json!({"kind": "DAILY", "hour": 9, "minute": 0})).expect("cadence");
    let schedule = state
        .schedules
        .create(
            &admin,
            &project,
            CreateSchedule {
                cadence,
                timezone: Some("Europe/Berlin".into()),
                enabled: None,
                update_published_results: Some(true),
                use_cached_sql_results: Some(false),
                overlap_policy: None,
                notifications: None,
            },
        )
        .await
        .expect("schedule");

    // The Input the Scheduler sends: its own template with the placeholders filled.
    let stored = scheduled_runs::ports::ScheduleStore::get_schedule(
        store.as_ref(),
        "acme",
        &schedule.schedule.schedule_id,
    )
    .await
    .expect("get")
    .expect("exists");
    let input: SchedulerInput = serde_json::from_str(
        &SchedulerInput::template(&stored)
            .replace("<aws.scheduler.scheduled-time>", "2026-11-26T08:00:00Z")
            .replace("<aws.scheduler.execution-id>", "exec-1"),
    )
    .expect("input");
    let dispatch = aws.dispatch_services().expect("dispatch services").dispatch;
    let executor = aws.executor().await.expect("executor");
    counter.take();

    // Dispatch: the fire → one run, one message.
    let outcome = dispatch
        .dispatch_fire(&input.fire_request(), input.scheduled_time)
        .await
        .expect("dispatch");
    let DispatchOutcome::Queued(run) = outcome else {
        panic!("the run is queued: {outcome:?}");
    };
    let dispatched = counter.take();
    report("dispatch", &dispatched);

    // The message as SQS hands it to the execute function (received outside the count:
    // the Lambda poller's requests are not the function's).
    let sqs = sqs_sdk::Client::new(&aws.sdk);
    let received = sqs
        .receive_message()
        .queue_url(aws.settings.run_queue_url.clone().unwrap_or_default())
        .max_number_of_messages(10)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("receive");
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "one message per run");
    let message: RunMessage =
        serde_json::from_str(messages[0].body().unwrap_or_default()).expect("message");
    assert_eq!(message.run_id, run.run_id);
    counter.take();

    let outcome = executor.execute(&message).await.expect("execute");
    let ExecuteOutcome::Finished(finished) = outcome else {
        panic!("the run finishes: {outcome:?}");
    };
    assert_eq!(
        finished.status,
        RunStatus::Completed,
        "{:?}",
        finished.error
    );
    let executed = counter.take();
    report("execute", &executed);

    // The run log shows it, with its results offered to the app.
    let stored_run = store
        .get_run("acme", &run.run_id)
        .await
        .expect("get run")
        .expect("run");
    assert_eq!(stored_run.status, RunStatus::Completed);
    let results =
        scheduled_runs::ports::ResultsStore::get_results(store.as_ref(), "acme", &project)
            .await
            .expect("results")
            .expect("the app's results were updated");
    assert_eq!(results.run_id, run.run_id);

    let mut total = dispatched.clone();
    for (k, n) in executed {
        *total.entry(k).or_default() += n;
    }
    report("total", &total);
    let (reads, writes) = dynamodb_split(&total);
    let count = |service: &str, operation: &str| {
        total
            .get(&(service.to_owned(), operation.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(count("sqs", "SendMessage"), 1, "{total:?}");
    assert_eq!(count("sns", "Publish"), 1, "{total:?}");
    assert!(reads <= 2, "DynamoDB reads per run: {reads} ({total:?})");
    assert!(writes <= 3, "DynamoDB writes per run: {writes} ({total:?})");
}
