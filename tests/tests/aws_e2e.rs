//! The AWS deployment end to end, against DynamoDB Local and moto's server, with the real
//! function binaries running their real Lambda runtime loop (a loopback Runtime API stands in
//! for Lambda): create a schedule through the API function → the EventBridge Scheduler
//! schedule exists as it should → the Input the Scheduler would send, delivered twice at once
//! to the dispatch function → one SQS message → the execute function completes the run
//! against PostgreSQL → one SNS run event with the filterable attributes → the run log shows
//! it → that SNS message, fed to the notify function, sends the schedule's e-mail through
//! SES on moto, once however often it arrives, and the run shows the delivery. Also: the
//! notify function on its sample event's shape against a stored run (SES, a webhook the
//! SSRF guard refuses, unreadable messages, an unreachable store), and each function on its
//! sample event from `events/`.
//!
//! The binaries are built by `cargo build --workspace --bins` (the test command does so
//! before the tests).

use scheduled_runs_tests::peers::{AwsPeers, aws_peers};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scheduled_runs::adapters::aws::connectors::sdk as secrets_sdk;
use scheduled_runs::adapters::aws::dynamodb::{DynamoStore, create_table, sdk as dynamo_sdk};
use scheduled_runs::adapters::aws::scheduler::sdk as scheduler_sdk;
use scheduled_runs::adapters::aws::ses::sdk as ses_sdk;
use scheduled_runs::adapters::aws::sns::{event_attributes, sdk as sns_sdk};
use scheduled_runs::adapters::aws::sqs::sdk as sqs_sdk;
use scheduled_runs::aws_deployment::sealing_box_from_secret;
use scheduled_runs::domain::model::{
    DeliveryChannel, DeliveryStatus, Plan, Project, Run, WebhookSigningSecret,
};
use scheduled_runs::ports::{
    DeliveryStore, IntegrationStore, PageRequest, ProjectStore, RunEvent, RunEventOutbox, RunStore,
    SecretBox, SystemClock,
};
use scheduled_runs::services::workspaces::WorkspaceService;
use scheduled_runs_tests::lambda_runtime_stub::{Outcome, RuntimeStub};
use scheduled_runs_tests::peers::http_get;
use serde_json::{Value, json};

const REGION: &str = "us-east-1";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/scheduled-runs-scheduler";
const DISPATCH_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:scheduled-runs-dispatch";

macro_rules! client {
    ($sdk:ident, $endpoint:expr) => {{
        use $sdk::config::{BehaviorVersion, Credentials, Region};
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .http_client(scheduled_runs::aws_deployment::https_client())
                .region(Region::new(REGION))
                .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
                .endpoint_url($endpoint)
                .build(),
        )
    }};
}

/// The resources a stack would create, made on the emulators with unique names.
struct Stack {
    peers: AwsPeers,
    table: String,
    group_prefix: String,
    run_queue_url: String,
    dlq_arn: String,
    topic_arn: String,
    events_queue_url: String,
    sealing_key_arn: String,
    /// The value of the sealing-key secret (tests seal what the functions open).
    sealing_secret: String,
    /// The verified SES identity notification e-mail comes from.
    ses_from: String,
}

async fn stack(peers: AwsPeers) -> Stack {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let short = &id[..10];
    let dynamo = client!(dynamo_sdk, &peers.dynamodb);
    let table = format!("e2e-{short}");
    create_table(&dynamo, &table).await.expect("create table");
    let sqs = client!(sqs_sdk, &peers.moto);
    let queue = |name: String| {
        let sqs = sqs.clone();
        async move {
            sqs.create_queue()
                .queue_name(name)
                .send()
                .await
                .expect("create queue")
                .queue_url()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let run_queue_url = queue(format!("runs-{short}")).await;
    let dlq_url = queue(format!("scheduler-dlq-{short}")).await;
    let events_queue_url = queue(format!("events-{short}")).await;
    let arn_of = |url: String| {
        let sqs = sqs.clone();
        async move {
            sqs.get_queue_attributes()
                .queue_url(url)
                .attribute_names(sqs_sdk::types::QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("queue attributes")
                .attributes()
                .and_then(|a| a.get(&sqs_sdk::types::QueueAttributeName::QueueArn))
                .cloned()
                .unwrap_or_default()
        }
    };
    let dlq_arn = arn_of(dlq_url).await;
    let events_queue_arn = arn_of(events_queue_url.clone()).await;
    let sns = client!(sns_sdk, &peers.moto);
    let topic_arn = sns
        .create_topic()
        .name(format!("run-events-{short}"))
        .send()
        .await
        .expect("create topic")
        .topic_arn()
        .unwrap_or_default()
        .to_owned();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(events_queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    let secrets = client!(secrets_sdk, &peers.moto);
    let sealing_secret = format!("{id}{id}");
    let sealing_key_arn = secrets
        .create_secret()
        .name(format!("sealing-{short}"))
        .secret_string(&sealing_secret)
        .send()
        .await
        .expect("create secret")
        .arn()
        .unwrap_or_default()
        .to_owned();
    let ses_from = format!("runs@{short}.example.com");
    client!(ses_sdk, &peers.moto)
        .create_email_identity()
        .email_identity(&ses_from)
        .send()
        .await
        .expect("verify the sender on moto");
    Stack {
        table,
        group_prefix: format!("e2e{short}"),
        run_queue_url,
        dlq_arn,
        topic_arn,
        events_queue_url,
        sealing_key_arn,
        sealing_secret,
        ses_from,
        peers,
    }
}

impl Stack {
    /// The environment the template gives every function, pointed at the emulators.
    fn env(&self) -> HashMap<&'static str, String> {
        let moto = self.peers.moto.clone();
        HashMap::from([
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.peers.dynamodb.clone()),
            ("AWS_ENDPOINT_URL_SQS", moto.clone()),
            ("AWS_ENDPOINT_URL_SNS", moto.clone()),
            ("AWS_ENDPOINT_URL_SCHEDULER", moto.clone()),
            ("AWS_ENDPOINT_URL_SESV2", moto.clone()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto),
            ("SCHEDULED_RUNS_TABLE", self.table.clone()),
            ("SCHEDULED_RUNS_RUN_QUEUE_URL", self.run_queue_url.clone()),
            (
                "SCHEDULED_RUNS_RUN_EVENTS_TOPIC_ARN",
                self.topic_arn.clone(),
            ),
            (
                "SCHEDULED_RUNS_SEALING_KEY_SECRET_ARN",
                self.sealing_key_arn.clone(),
            ),
            (
                "SCHEDULED_RUNS_SCHEDULE_GROUP_PREFIX",
                self.group_prefix.clone(),
            ),
            (
                "SCHEDULED_RUNS_DISPATCH_FUNCTION_ARN",
                DISPATCH_ARN.to_owned(),
            ),
            ("SCHEDULED_RUNS_SCHEDULER_ROLE_ARN", ROLE_ARN.to_owned()),
            ("SCHEDULED_RUNS_SCHEDULER_DLQ_ARN", self.dlq_arn.clone()),
            (
                "SCHEDULED_RUNS_PUBLIC_URL",
                "https://runs.example.com".to_owned(),
            ),
            ("SCHEDULED_RUNS_SES_FROM", self.ses_from.clone()),
            ("RUST_LOG", "warn".to_owned()),
        ])
    }

    fn dynamo(&self) -> DynamoStore {
        DynamoStore::new(
            client!(dynamo_sdk, &self.peers.dynamodb),
            self.table.clone(),
        )
    }
}

/// A function binary running its runtime loop against a stub, killed on drop.
struct Function {
    stub: RuntimeStub,
    children: Vec<Child>,
}

impl Drop for Function {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (the test command does)",
        path.display()
    );
    path
}

/// Starts `instances` processes of the function `name` on one Runtime API stub.
async fn function(stack: &Stack, name: &str, instances: usize) -> Function {
    function_with(stack, name, instances, &[]).await
}

/// Like `function`, with some of the stack's environment overridden.
async fn function_with(
    stack: &Stack,
    name: &str,
    instances: usize,
    overrides: &[(&'static str, &str)],
) -> Function {
    let stub = RuntimeStub::start().await.expect("runtime stub");
    let mut env = stack.env();
    for (key, value) in overrides {
        env.insert(*key, (*value).to_owned());
    }
    let mut children = Vec::new();
    for _ in 0..instances {
        let child = Command::new(binary(name))
            .env_clear()
            .envs(&env)
            .env("AWS_LAMBDA_RUNTIME_API", stub.runtime_api())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn function");
        children.push(child);
    }
    let f = Function { stub, children };
    assert!(
        f.stub.wait_for_polls(instances as u64).await,
        "{name} did not reach its runtime loop; init errors: {:?}",
        f.stub.init_errors()
    );
    f
}

/// An API Gateway HTTP API (v2) event as the JWT authorizer passes it on.
fn api_event(
    method: &str,
    path: &str,
    body: Option<Value>,
    sub: &str,
    ws: &str,
    role: &str,
) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "ANY /api/v1/{proxy+}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "runs.example.com"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "e2e",
            "authorizer": {"jwt": {"claims": {
                "sub": sub, "workspace_id": ws, "workspace_role": role, "email": format!("{sub}@example.com")
            }, "scopes": null}},
            "domainName": "runs.example.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "e2e"},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "ANY /api/v1/{proxy+}",
            "stage": "$default",
            "time": "26/Nov/2026:08:00:00 +0000",
            "timeEpoch": 1795680000000u64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

/// Calls the API function; returns (status, body).
async fn api(f: &Function, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    match f
        .stub
        .invoke(api_event(method, path, body, "owner", "acme", "ADMIN"))
        .await
    {
        Outcome::Response(r) => {
            let status = r["statusCode"].as_u64().unwrap_or(0) as u16;
            let body = r["body"]
                .as_str()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            (status, body)
        }
        Outcome::Error(e) => panic!("{method} {path} failed: {e}"),
    }
}

async fn receive_all(sqs: &sqs_sdk::Client, url: &str, wait: i32) -> Vec<sqs_sdk::types::Message> {
    let mut all = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let batch = out.messages().to_vec();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// A sample event from `events/`.
fn sample(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("sample event")).expect("JSON")
}

/// The SNS event Lambda hands the notify function (the shape of `events/notify.json`) for
/// a message published to the topic with its String attributes.
fn sns_event(
    topic_arn: &str,
    message_id: &str,
    message: &str,
    attributes: &[(String, String)],
) -> Value {
    let mut event = sample("notify");
    let sns = &mut event["Records"][0]["Sns"];
    sns["TopicArn"] = json!(topic_arn);
    sns["MessageId"] = json!(message_id);
    sns["Message"] = json!(message);
    sns["MessageAttributes"] = attributes
        .iter()
        .map(|(name, value)| (name.clone(), json!({"Type": "String", "Value": value})))
        .collect::<serde_json::Map<_, _>>()
        .into();
    event
}

/// The SNS event of a run event exactly as `SnsEventPublisher` publishes it.
fn sns_event_of(stack: &Stack, event: &RunEvent) -> Value {
    let attributes: Vec<(String, String)> = event_attributes(event)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    sns_event(
        &stack.topic_arn,
        &uuid::Uuid::new_v4().to_string(),
        &serde_json::to_string(event).expect("run event JSON"),
        &attributes,
    )
}

/// The messages SES on moto accepted for `to` (tests use addresses of their own).
async fn ses_messages_to(moto: &str, to: &str) -> Vec<Value> {
    let data: Value = serde_json::from_str(&http_get(&format!("{moto}/moto-api/data.json")).await)
        .expect("moto's data");
    data["ses"]["Message"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|m| m["destinations"]["ToAddresses"] == json!([to]))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The notify function's answer to an event that must succeed.
async fn notified(f: &Function, event: Value) -> Value {
    match f.stub.invoke(event).await {
        Outcome::Response(summary) => summary,
        Outcome::Error(e) => panic!("notify failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_fires_through_scheduler_dispatch_sqs_execute_and_sns() {
    let Some(peers) = aws_peers("aws_e2e") else {
        return;
    };
    let postgres = peers.postgres.clone();
    let stack = stack(peers).await;
    WorkspaceService {
        workspaces: std::sync::Arc::new(stack.dynamo()),
        clock: std::sync::Arc::new(SystemClock),
    }
    .create("acme", Plan::Team)
    .await
    .expect("operator creates the workspace");

    let to = format!("sales-{}@example.com", uuid::Uuid::new_v4().simple());
    let api_fn = function(&stack, "api", 1).await;
    let (status, body) = api(
        &api_fn,
        "PUT",
        "/api/v1/admin/connections/pg",
        Some(json!({"kind": "POSTGRES", "url": postgres})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.to_string().contains("postgres://"),
        "credentials are never echoed"
    );
    let (status, body) = api(
        &api_fn,
        "POST",
        "/api/v1/projects",
        Some(json!({"title": "Revenue"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let project = body["projectId"].as_str().unwrap_or_default().to_owned();
    let version = json!({
        "inputs": [{"name": "factor", "type": "NUMBER", "default": 3}],
        "cells": [
            {"id": "numbers", "type": "SQL", "connection": "pg", "sql": "SELECT g AS n FROM generate_series(1, 4) AS g"},
            {"id": "total", "type": "SQL", "connection": "pg", "sql": "SELECT {{ cells.numbers.rowCount }} * {{ factor }} AS total"}
        ],
        "app": {"cells": ["total"]}
    });
    let (status, body) = api(
        &api_fn,
        "PUT",
        &format!("/api/v1/projects/{project}/draft"),
        Some(version),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        &api_fn,
        "POST",
        &format!("/api/v1/projects/{project}/publish"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        &api_fn,
        "POST",
        &format!("/api/v1/projects/{project}/schedules"),
        Some(json!({
            "cadence": {"kind": "DAILY", "hour": 9, "minute": 0}, "timezone": "Europe/Berlin",
            "notifications": {"subscriptions": [{"on": "SUCCESS", "recipients": {"emails": [to.clone()]}}]}
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let schedule = body["scheduleId"].as_str().unwrap_or_default().to_owned();

    // The Scheduler schedule, read back.
    let scheduler = client!(scheduler_sdk, &stack.peers.moto);
    let got = scheduler
        .get_schedule()
        .name(&schedule)
        .group_name(format!("{}-acme", stack.group_prefix))
        .send()
        .await
        .expect("the Scheduler schedule exists");
    assert_eq!(got.schedule_expression(), Some("cron(0 9 * * ? *)"));
    assert_eq!(got.schedule_expression_timezone(), Some("Europe/Berlin"));
    let window = got.flexible_time_window().expect("window");
    assert_eq!(window.mode().as_str(), "FLEXIBLE");
    assert_eq!(window.maximum_window_in_minutes(), Some(5));
    let target = got.target().expect("target");
    assert_eq!(target.arn(), DISPATCH_ARN);
    assert_eq!(target.role_arn(), ROLE_ARN);
    let input: Value =
        serde_json::from_str(target.input().unwrap_or_default()).expect("input JSON");
    assert_eq!(input["scheduleId"], schedule.as_str());
    assert_eq!(input["scheduledTime"], "<aws.scheduler.scheduled-time>");
    assert_eq!(input["executionId"], "<aws.scheduler.execution-id>");

    // The Scheduler fires: the same Input twice at once (at-least-once delivery).
    let dispatch_fn = function(&stack, "dispatch", 2).await;
    // The Input exactly as the Scheduler sends it: its own, with the placeholders filled.
    let fire = |execution: &str| {
        let mut fired = input.clone();
        fired["scheduledTime"] = json!("2026-11-26T08:00:00Z");
        fired["executionId"] = json!(execution);
        fired
    };
    let (a, b) = tokio::join!(
        dispatch_fn.stub.invoke(fire("exec-1")),
        dispatch_fn.stub.invoke(fire("exec-2"))
    );
    let outcomes: Vec<String> = [a, b]
        .into_iter()
        .map(|o| match o {
            Outcome::Response(r) => r["outcome"].as_str().unwrap_or_default().to_owned(),
            Outcome::Error(e) => panic!("dispatch failed: {e}"),
        })
        .collect();
    let mut sorted = outcomes.clone();
    sorted.sort();
    assert_eq!(sorted, ["DUPLICATE", "QUEUED"], "{outcomes:?}");

    let sqs = client!(sqs_sdk, &stack.peers.moto);
    let messages = receive_all(&sqs, &stack.run_queue_url, 1).await;
    assert_eq!(messages.len(), 1, "one SQS message for one fire");

    // The execute function takes the SQS batch.
    let execute_fn = function(&stack, "execute", 1).await;
    let message = &messages[0];
    let event = json!({"Records": [{
        "messageId": message.message_id().unwrap_or_default(),
        "receiptHandle": message.receipt_handle().unwrap_or_default(),
        "body": message.body().unwrap_or_default(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795680000000",
                       "SenderId": "test", "ApproximateFirstReceiveTimestamp": "1795680000000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:runs",
        "awsRegion": REGION
    }]});
    match execute_fn.stub.invoke(event).await {
        Outcome::Response(r) => assert_eq!(r["batchItemFailures"], json!([]), "{r}"),
        Outcome::Error(e) => panic!("execute failed: {e}"),
    }

    // One run event on the topic, filterable by its attributes.
    let events = receive_all(&sqs, &stack.events_queue_url, 2).await;
    assert_eq!(events.len(), 1, "one run event");
    let attributes: HashMap<String, String> = events[0]
        .message_attributes()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        attributes.get("workspaceId").map(String::as_str),
        Some("acme")
    );
    assert_eq!(attributes.get("projectId"), Some(&project));
    assert_eq!(attributes.get("scheduleId"), Some(&schedule));
    assert_eq!(
        attributes.get("status").map(String::as_str),
        Some("COMPLETED")
    );
    assert_eq!(
        attributes.get("trigger").map(String::as_str),
        Some("SCHEDULED")
    );

    // The run log shows the completed run with its results.
    let (status, body) = api(
        &api_fn,
        "GET",
        &format!("/api/v1/projects/{project}/schedules/{schedule}/runs"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["runs"][0]["status"], "COMPLETED");
    assert_eq!(body["runs"][0]["scheduledFor"], "2026-11-26T08:00:00Z");
    let run_id = body["runs"][0]["runId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, run) = api(
        &api_fn,
        "GET",
        &format!("/api/v1/projects/{project}/runs/{run_id}"),
        None,
    )
    .await;
    let total = run["cells"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["cellId"] == "total"))
        .cloned();
    assert_eq!(total.map(|c| c["rows"][0][0].clone()), Some(json!(12)));
    let (status, results) = api(
        &api_fn,
        "GET",
        &format!("/api/v1/projects/{project}/results"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results["runId"], run_id.as_str());

    // The event stays pending (the outbox) until its consumer, the notify function, has
    // handled it.
    let store = stack.dynamo();
    let pending_now = || async {
        store
            .list_pending_events(&PageRequest::first(100))
            .await
            .expect("pending events")
            .items
            .iter()
            .any(|r| r.run_id == run_id)
    };
    assert!(pending_now().await, "published but not yet handled");

    // The notify function gets that very message from SNS, twice (at-least-once).
    let notify_fn = function(&stack, "notify", 1).await;
    let message = events[0].body().unwrap_or_default().to_owned();
    let mut attribute_list: Vec<(String, String)> = attributes.into_iter().collect();
    attribute_list.sort();
    let event = sns_event(
        &stack.topic_arn,
        events[0].message_id().unwrap_or_default(),
        &message,
        &attribute_list,
    );
    let first = notified(&notify_fn, event.clone()).await;
    assert_eq!(first["delivered"], 1, "{first}");
    assert!(!pending_now().await, "the handled event left the outbox");
    let again = notified(&notify_fn, event).await;
    assert_eq!(again["delivered"], 0, "{again}");
    assert_eq!(again["alreadyDone"], 1, "{again}");
    let mail = ses_messages_to(&stack.peers.moto, &to).await;
    assert_eq!(mail.len(), 1, "one e-mail however often the event arrives");
    assert_eq!(mail[0]["source"], stack.ses_from.as_str());
    let body = mail[0]["body"].as_str().unwrap_or_default();
    assert!(
        body.contains(&format!(
            "https://runs.example.com/projects/{project}/runs/{run_id}"
        )),
        "{body}"
    );

    // The run shows the delivery.
    let (_, run) = api(
        &api_fn,
        "GET",
        &format!("/api/v1/projects/{project}/runs/{run_id}"),
        None,
    )
    .await;
    let deliveries = run["notifications"].as_array().cloned().unwrap_or_default();
    assert_eq!(deliveries.len(), 1, "{run}");
    assert_eq!(deliveries[0]["channel"], "EMAIL");
    assert_eq!(deliveries[0]["status"], "DELIVERED");
    assert_eq!(deliveries[0]["attempts"], 1);
    assert_eq!(deliveries[0]["reasons"], json!(["SUCCESS"]));
    assert!(
        !deliveries[0]["target"]
            .as_str()
            .unwrap_or_default()
            .contains(&to),
        "targets are masked: {run}"
    );

    // The sweep finds nothing left to republish.
    match dispatch_fn.stub.invoke(json!({"task": "sweep"})).await {
        Outcome::Response(r) => assert_eq!(r["eventsRepublished"], 0, "{r}"),
        Outcome::Error(e) => panic!("sweep: {e}"),
    }
}

/// A run ended with notifications, stored as the executor leaves it (its event pending).
async fn ended_run(store: &DynamoStore, settings: Value) -> Run {
    let now = chrono::Utc::now();
    let project_id = uuid::Uuid::new_v4().to_string();
    store
        .create_project(&Project {
            project_id: project_id.clone(),
            workspace_id: "acme".into(),
            title: "Revenue".into(),
            description: None,
            created_by: "owner".into(),
            created_at: now,
            updated_at: now,
            archived: false,
            published_version: Some(1),
            last_activity_at: now,
        })
        .await
        .expect("project");
    let run: Run = serde_json::from_value(json!({
        "runId": uuid::Uuid::new_v4().to_string(),
        "projectId": project_id,
        "workspaceId": "acme",
        "runTrigger": "API",
        "status": "ERRORED",
        "projectVersion": 1,
        "createdBy": "owner",
        "createdAt": now,
        "startTime": now,
        "endTime": now,
        "updatePublishedResults": false,
        "useCachedSqlResults": true,
        "traceId": "trace-notify",
        "stateEvents": [],
        "expiresAt": now + chrono::Duration::days(90),
        "attempt": 1,
        "error": {"code": "CELL_FAILED", "message": "no such table: orderz", "cellId": "orders"},
        "notificationSettings": settings,
        "eventPending": true
    }))
    .expect("a run");
    store
        .create_run_if_absent(&run)
        .await
        .expect("store the run");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_function_delivers_a_run_event_once_and_records_it() {
    let Some(peers) = aws_peers("aws_e2e notify") else {
        return;
    };
    let stack = stack(peers).await;
    let store = stack.dynamo();
    WorkspaceService {
        workspaces: std::sync::Arc::new(store.clone()),
        clock: std::sync::Arc::new(SystemClock),
    }
    .create("acme", Plan::Team)
    .await
    .expect("operator creates the workspace");
    // The signing secret, sealed with the stack's key as the API function seals it.
    let sealing = sealing_box_from_secret(&stack.sealing_secret).expect("sealing box");
    store
        .put_webhook_secret(
            "acme",
            &WebhookSigningSecret {
                sealed_secret: sealing.seal(b"whsec_e2e").expect("seal"),
                rotated_by: "owner".into(),
                rotated_at: chrono::Utc::now(),
            },
        )
        .await
        .expect("signing secret");
    let to = format!("ops-{}@example.com", uuid::Uuid::new_v4().simple());
    // Stored directly (configuration-time validation would refuse the loopback webhook):
    // the notify function must refuse it at delivery too, since AWS has no loopback switch.
    let run = ended_run(
        &store,
        json!({"subscriptions": [{"on": "FAILURE", "recipients": {
            "emails": [to.clone()], "webhookUrls": ["https://127.0.0.1/hook"]
        }}]}),
    )
    .await;

    let notify_fn = function(&stack, "notify", 1).await;
    let event = sns_event_of(&stack, &RunEvent::of(&run));
    let first = notified(&notify_fn, event.clone()).await;
    assert_eq!(first["delivered"], 1, "{first}");
    assert_eq!(first["failed"], 1, "{first}");
    // SNS delivers again: nothing is sent twice.
    let again = notified(&notify_fn, event).await;
    assert_eq!(again["alreadyDone"], 2, "{again}");
    assert_eq!(again["delivered"], 0, "{again}");

    let mail = ses_messages_to(&stack.peers.moto, &to).await;
    assert_eq!(mail.len(), 1, "one e-mail to {to}");
    assert_eq!(mail[0]["source"], stack.ses_from.as_str());
    let body = mail[0]["body"].as_str().unwrap_or_default();
    assert!(body.contains("CELL_FAILED"), "{body}");

    let deliveries = store
        .list_deliveries("acme", &run.run_id)
        .await
        .expect("deliveries");
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    let email = &deliveries[0];
    assert_eq!(
        (email.channel, email.status, email.attempts),
        (DeliveryChannel::Email, DeliveryStatus::Delivered, 1)
    );
    let webhook = &deliveries[1];
    assert_eq!(
        (webhook.channel, webhook.status),
        (DeliveryChannel::Webhook, DeliveryStatus::Failed)
    );
    // Refused by the guard, which the function only reaches with the secret opened.
    let error = webhook.error.clone().unwrap_or_default();
    assert!(error.contains("refused by the SSRF guard"), "{error}");
    // The notify function writes deliveries and acknowledges the event: the run is as the
    // executor left it but for its pending event, now cleared.
    let acknowledged = Run {
        event_pending: false,
        ..run.clone()
    };
    assert!(run.event_pending, "stored with its event pending");
    assert_eq!(
        store.get_run("acme", &run.run_id).await.expect("get"),
        Some(acknowledged)
    );

    // A message that is not a run event is skipped, not retried.
    let unreadable = notified(
        &notify_fn,
        sns_event(&stack.topic_arn, "bad-message", "not a run event", &[]),
    )
    .await;
    assert_eq!(unreadable["unreadable"], 1, "{unreadable}");

    // An unreachable store fails the invocation, so Lambda retries the event.
    let cut_off = function_with(
        &stack,
        "notify",
        1,
        &[("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")],
    )
    .await;
    let other = ended_run(
        &store,
        json!({"subscriptions": [{"on": "ALL", "recipients": {"emails": [to.clone()]}}]}),
    )
    .await;
    match cut_off
        .stub
        .invoke(sns_event_of(&stack, &RunEvent::of(&other)))
        .await
    {
        Outcome::Error(_) => {}
        Outcome::Response(r) => panic!("an unreachable store must fail the invocation: {r}"),
    }
    assert_eq!(ses_messages_to(&stack.peers.moto, &to).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_function_answers_its_sample_event() {
    let Some(peers) = aws_peers("aws_e2e samples") else {
        return;
    };
    let stack = stack(peers).await;
    let api_fn = function(&stack, "api", 1).await;
    match api_fn.stub.invoke(sample("api")).await {
        Outcome::Response(r) => {
            assert_eq!(r["statusCode"], 200, "{r}");
            let body: Value =
                serde_json::from_str(r["body"].as_str().unwrap_or_default()).expect("JSON body");
            assert_eq!(body["projects"], json!([]));
        }
        Outcome::Error(e) => panic!("api: {e}"),
    }
    let dispatch_fn = function(&stack, "dispatch", 1).await;
    match dispatch_fn.stub.invoke(sample("dispatch")).await {
        Outcome::Response(r) => assert_eq!(r["outcome"], "SCHEDULE_GONE", "{r}"),
        Outcome::Error(e) => panic!("dispatch: {e}"),
    }
    match dispatch_fn.stub.invoke(json!({"task": "sweep"})).await {
        Outcome::Response(r) => assert_eq!(r["requeued"], 0, "{r}"),
        Outcome::Error(e) => panic!("sweep: {e}"),
    }
    let execute_fn = function(&stack, "execute", 1).await;
    match execute_fn.stub.invoke(sample("execute")).await {
        Outcome::Response(r) => assert_eq!(r["batchItemFailures"], json!([]), "{r}"),
        Outcome::Error(e) => panic!("execute: {e}"),
    }
    // The sample's run does not exist here: nothing to deliver, nothing to retry.
    let notify_fn = function(&stack, "notify", 1).await;
    match notify_fn.stub.invoke(sample("notify")).await {
        Outcome::Response(r) => {
            assert_eq!(r["records"], 1, "{r}");
            assert_eq!(r["unreadable"], 0, "{r}");
            assert_eq!(r["delivered"], 0, "{r}");
        }
        Outcome::Error(e) => panic!("notify: {e}"),
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}
