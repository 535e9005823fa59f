//! Requirement 2: each function's warm handler latency, and the AWS requests each
//! invocation makes, with the real release binaries against DynamoDB Local, moto and
//! PostgreSQL.
//!
//! ```text
//! infra/local/dynamodb.sh start && source .test-env/dynamodb.env
//! infra/local/moto.sh start && source .test-env/moto.env
//! infra/local/postgres.sh start && source .test-env/postgres.env
//! cargo build --release -p scheduled-runs-api -p scheduled-runs-dispatch -p scheduled-runs-execute -p scheduled-runs-notify
//! cargo build --release -p scheduled-runs-benches --example hello_lambda
//! cargo bench -p scheduled-runs-benches --bench warm_handlers
//! ```
//!
//! Each function binary (`target/release/{api,dispatch,execute,notify}`, the profile they
//! ship with) runs its real `lambda_runtime` loop against a loopback Runtime API
//! (`scheduled_runs_tests::lambda_runtime_stub`), with the environment `template.yaml`
//! gives it. Every AWS endpoint points at a forwarding proxy
//! (`scheduled_runs_tests::fault_proxy`, no fault armed) in front of DynamoDB Local or moto,
//! which counts the requests per operation; the difference of its counts around an
//! invocation is that invocation's requests (invocations run one at a time).
//!
//! A stack (table, run queue, run-event topic with an SQS subscription, sealing key, SES
//! sender) is made on the emulators with unique names, and a workspace with a PostgreSQL
//! connection and a published two-cell project with a daily schedule that e-mails on
//! success (made through a separate `api` process, so the measured ones start cold). Then,
//! `WARM_HANDLERS_ITERATIONS` times (1,000):
//!
//! 1. `dispatch` gets the schedule's fire (`events/dispatch.json` with the schedule's ids
//!    and a new `scheduledTime` each time): a new run, queued;
//! 2. `execute` gets that SQS message (`events/execute.json` carrying the message received
//!    from the queue): the run executes both cells on PostgreSQL, updates the published
//!    results, writes the SQL cache and publishes its run event;
//! 3. `notify` gets that run event as SNS hands it over (`events/notify.json` carrying the
//!    message the topic delivered): the e-mail goes out through SES and is recorded;
//! 4. `api` gets four requests (`events/api.json` with another route): `GET` the schedule
//!    (with its `nextRuns` and `warnings`), `GET` the run just ended, `GET` the schedule's
//!    run log (10 runs) and `POST …/runs` with `{"dryRun": true}`.
//!
//! Receiving from the queues (the Lambda pollers' work) happens outside the measured
//! invocations, directly on moto, uncounted. Latency = from queueing the event on the stub
//! to the function's answer reaching it, so it includes the runtime loop's two loopback
//! HTTP requests and the proxy's forwarding of each AWS request (both measured separately at
//! the end and printed; the first with the cold-start benchmark's
//! `examples/hello_lambda`). The first invocation of each function is reported apart: it builds the
//! SDK clients and reads the sealing key (`shared/src/deferred.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use scheduled_runs::adapters::aws::connectors::sdk as secrets_sdk;
use scheduled_runs::adapters::aws::dynamodb::{DynamoStore, create_table, sdk as dynamo_sdk};
use scheduled_runs::adapters::aws::ses::sdk as ses_sdk;
use scheduled_runs::adapters::aws::sns::sdk as sns_sdk;
use scheduled_runs::adapters::aws::sqs::sdk as sqs_sdk;
use scheduled_runs::domain::model::Plan;
use scheduled_runs::ports::SystemClock;
use scheduled_runs::services::workspaces::WorkspaceService;
use scheduled_runs_benches::{machine, percentile};
use scheduled_runs_tests::fault_proxy::FaultProxy;
use scheduled_runs_tests::lambda_runtime_stub::{Outcome, RuntimeStub};
use serde_json::{Value, json};

const REGION: &str = "us-east-1";
/// The workspace and user of the sample events (`events/*.json`).
const WORKSPACE: &str = "demo";
const USER: &str = "demo-admin";
const ITERATIONS: usize = 1_000;
/// Interleaved requests per upstream when measuring what the proxy adds.
const PROXY_SAMPLES: usize = 300;
/// The e-mail the schedule sends on success.
const RECIPIENT: &str = "ops@example.com";

/// Requests per operation (`service:Operation`).
type Calls = BTreeMap<String, u64>;

struct Peers {
    dynamodb: String,
    moto: String,
    postgres: String,
}

fn peers() -> Peers {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (
        var("SCHEDULED_RUNS_TEST_DYNAMODB_ENDPOINT"),
        var("SCHEDULED_RUNS_TEST_MOTO_ENDPOINT"),
        var("SCHEDULED_RUNS_TEST_POSTGRES_URL"),
    ) {
        (Some(dynamodb), Some(moto), Some(postgres)) => Peers {
            dynamodb,
            moto,
            postgres,
        },
        _ => panic!(
            "warm_handlers needs DynamoDB Local, moto and PostgreSQL; start them with\n  \
             infra/local/dynamodb.sh start && source .test-env/dynamodb.env\n  \
             infra/local/moto.sh start && source .test-env/moto.env\n  \
             infra/local/postgres.sh start && source .test-env/postgres.env"
        ),
    }
}

macro_rules! client {
    ($sdk:ident, $endpoint:expr) => {{
        use $sdk::config::{BehaviorVersion, Credentials, Region};
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .http_client(scheduled_runs::aws_deployment::https_client())
                .region(Region::new(REGION))
                .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
                .endpoint_url($endpoint)
                .build(),
        )
    }};
}

/// The resources a stack would create, made on the emulators with unique names.
struct Stack {
    table: String,
    group_prefix: String,
    run_queue_url: String,
    dlq_arn: String,
    topic_arn: String,
    events_queue_url: String,
    sealing_key_arn: String,
    ses_from: String,
}

async fn stack(peers: &Peers) -> Stack {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let short = &id[..10];
    let table = format!("bench-{short}");
    create_table(&client!(dynamo_sdk, &peers.dynamodb), &table)
        .await
        .expect("create the table on DynamoDB Local");
    let sqs = client!(sqs_sdk, &peers.moto);
    let mut urls = Vec::new();
    let mut arns = Vec::new();
    for name in ["runs", "scheduler-dlq", "events"] {
        let url = sqs
            .create_queue()
            .queue_name(format!("{name}-{short}"))
            .send()
            .await
            .expect("create a queue on moto")
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(sqs_sdk::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes()
            .and_then(|a| a.get(&sqs_sdk::types::QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        urls.push(url);
        arns.push(arn);
    }
    let sns = client!(sns_sdk, &peers.moto);
    let topic_arn = sns
        .create_topic()
        .name(format!("run-events-{short}"))
        .send()
        .await
        .expect("create the topic on moto")
        .topic_arn()
        .unwrap_or_default()
        .to_owned();
    // The notify function's own subscription is Lambda's; here the topic delivers to a
    // queue the benchmark reads each event from, to hand it over as SNS would.
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&arns[2])
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe the events queue");
    let sealing_key_arn = client!(secrets_sdk, &peers.moto)
        .create_secret()
        .name(format!("sealing-{short}"))
        .secret_string(format!("{id}{id}"))
        .send()
        .await
        .expect("create the sealing key on moto")
        .arn()
        .unwrap_or_default()
        .to_owned();
    let ses_from = format!("runs@{short}.example.com");
    client!(ses_sdk, &peers.moto)
        .create_email_identity()
        .email_identity(&ses_from)
        .send()
        .await
        .expect("verify the SES sender on moto");
    Stack {
        table,
        group_prefix: format!("bench{short}"),
        run_queue_url: urls[0].clone(),
        dlq_arn: arns[1].clone(),
        topic_arn,
        events_queue_url: urls[2].clone(),
        sealing_key_arn,
        ses_from,
    }
}

impl Stack {
    /// What `template.yaml` gives every function, with the AWS endpoints at the proxies.
    fn env(&self, dynamodb: &str, moto: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "bench".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
            ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.to_owned()),
            ("AWS_ENDPOINT_URL_SQS", moto.to_owned()),
            ("AWS_ENDPOINT_URL_SNS", moto.to_owned()),
            ("AWS_ENDPOINT_URL_SCHEDULER", moto.to_owned()),
            ("AWS_ENDPOINT_URL_SESV2", moto.to_owned()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.to_owned()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO".to_owned()),
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
                "arn:aws:lambda:us-east-1:123456789012:function:scheduled-runs-dispatch".to_owned(),
            ),
            (
                "SCHEDULED_RUNS_SCHEDULER_ROLE_ARN",
                "arn:aws:iam::123456789012:role/scheduled-runs-scheduler".to_owned(),
            ),
            ("SCHEDULED_RUNS_SCHEDULER_DLQ_ARN", self.dlq_arn.clone()),
            (
                "SCHEDULED_RUNS_PUBLIC_URL",
                "https://runs.example.com".to_owned(),
            ),
            ("SCHEDULED_RUNS_SES_FROM", self.ses_from.clone()),
        ]
    }
}

fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

/// A function binary running its runtime loop against its own stub; killed on drop.
struct Function {
    stub: RuntimeStub,
    child: Child,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(name: &str, env: &[(&'static str, String)]) -> Function {
    let path = release_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (see the header of benches/benches/warm_handlers.rs)",
        path.display()
    );
    let stub = RuntimeStub::start()
        .await
        .expect("start a Runtime API stub");
    let child = Command::new(&path)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", stub.runtime_api())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let function = Function { stub, child };
    assert!(
        function.stub.wait_for_polls(1).await,
        "{name} never reached its runtime loop; init errors: {:?}",
        function.stub.init_errors()
    );
    function
}

/// The counting proxies in front of DynamoDB Local and moto.
struct Proxies {
    dynamodb: FaultProxy,
    moto: FaultProxy,
}

impl Proxies {
    fn seen(&self) -> Calls {
        let mut all = self.dynamodb.seen_all();
        all.extend(self.moto.seen_all());
        all
    }
}

fn difference(after: &Calls, before: &Calls) -> Calls {
    after
        .iter()
        .filter_map(|(op, &n)| {
            let d = n - before.get(op).copied().unwrap_or(0);
            (d > 0).then(|| (op.clone(), d))
        })
        .collect()
}

/// The measured invocations of one function (or one kind of API request).
#[derive(Default)]
struct Series {
    cold: Option<(Duration, Calls)>,
    warm: Vec<Duration>,
    calls: Vec<Calls>,
}

/// Invokes `function` with `event`; records its latency and requests under `series` (the
/// function's first invocation as its cold one). Returns the answer.
async fn invoke(
    function: &Function,
    proxies: &Proxies,
    series: &mut Series,
    cold: bool,
    event: Value,
) -> Value {
    let before = proxies.seen();
    let started = Instant::now();
    let outcome = function.stub.invoke(event).await;
    let elapsed = started.elapsed();
    let calls = difference(&proxies.seen(), &before);
    let answer = match outcome {
        Outcome::Response(answer) => answer,
        Outcome::Error(e) => panic!("the invocation failed: {e}"),
    };
    if cold {
        series.cold = Some((elapsed, calls));
    } else {
        series.warm.push(elapsed);
        series.calls.push(calls);
    }
    answer
}

/// A sample event from `events/`.
fn sample(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read a sample event"))
        .expect("a sample event is JSON")
}

/// `events/api.json` (the demo admin's verified claims) with another route and body.
fn api_event(method: &str, path: &str, query: Option<(&str, &str)>, body: Option<Value>) -> Value {
    let mut event = sample("api");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["requestId"] = json!(uuid::Uuid::new_v4().to_string());
    event["pathParameters"] = json!({ "proxy": path.trim_start_matches("/api/v1/") });
    match query {
        Some((name, value)) => {
            event["rawQueryString"] = json!(format!("{name}={value}"));
            event["queryStringParameters"] = json!({ name: value });
        }
        None => {
            event["rawQueryString"] = json!("");
            event["queryStringParameters"] = json!({});
        }
    }
    if let Some(body) = body {
        event["headers"]["content-type"] = json!("application/json");
        event["body"] = json!(body.to_string());
    }
    event
}

/// The API function's status and JSON body.
fn api_answer(answer: &Value) -> (u64, Value) {
    let status = answer["statusCode"].as_u64().unwrap_or(0);
    let body = answer["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// Sets up through a throwaway `api` process what the measured invocations work on: the
/// connection, the published project and its schedule. Returns (project, schedule).
async fn set_up(peers: &Peers, stack: &Stack, env: &[(&'static str, String)]) -> (String, String) {
    WorkspaceService {
        workspaces: std::sync::Arc::new(DynamoStore::new(
            client!(dynamo_sdk, &peers.dynamodb),
            stack.table.clone(),
        )),
        clock: std::sync::Arc::new(SystemClock),
    }
    .create(WORKSPACE, Plan::Team)
    .await
    .expect("the operator creates the workspace");
    let api = start("api", env).await;
    let call = async |method: &str, path: &str, body: Value| match api
        .stub
        .invoke(api_event(method, path, None, Some(body)))
        .await
    {
        Outcome::Response(answer) => {
            let (status, body) = api_answer(&answer);
            assert!((200..300).contains(&status), "{method} {path}: {answer}");
            body
        }
        Outcome::Error(e) => panic!("{method} {path}: {e}"),
    };
    call(
        "PUT",
        "/api/v1/admin/connections/pg",
        json!({"kind": "POSTGRES", "url": peers.postgres}),
    )
    .await;
    let project = call("POST", "/api/v1/projects", json!({"title": "Revenue"})).await["projectId"]
        .as_str()
        .expect("a project id")
        .to_owned();
    call(
        "PUT",
        &format!("/api/v1/projects/{project}/draft"),
        json!({
            "inputs": [{"name": "factor", "type": "NUMBER", "default": 3}],
            "cells": [
                {"id": "numbers", "type": "SQL", "connection": "pg",
                 "sql": "SELECT g AS n FROM generate_series(1, 4) AS g"},
                {"id": "total", "type": "SQL", "connection": "pg",
                 "sql": "SELECT {{ cells.numbers.rowCount }} * {{ factor }} AS total"}
            ],
            "app": {"cells": ["total"]}
        }),
    )
    .await;
    call(
        "POST",
        &format!("/api/v1/projects/{project}/publish"),
        json!({}),
    )
    .await;
    let schedule = call(
        "POST",
        &format!("/api/v1/projects/{project}/schedules"),
        json!({
            "cadence": {"kind": "DAILY", "hour": 9, "minute": 0}, "timezone": "Europe/Berlin",
            "notifications": {"subscriptions": [
                {"on": "SUCCESS", "recipients": {"emails": [RECIPIENT]}}
            ]}
        }),
    )
    .await["scheduleId"]
        .as_str()
        .expect("a schedule id")
        .to_owned();
    (project, schedule)
}

/// The one message on `url`, deleted as the Lambda poller deletes a handled one.
async fn receive_one(sqs: &sqs_sdk::Client, url: &str) -> sqs_sdk::types::Message {
    let received = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(5)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive from moto");
    let messages = received.messages();
    assert_eq!(messages.len(), 1, "one message per invocation on {url}");
    let message = messages[0].clone();
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(message.receipt_handle().unwrap_or_default())
        .send()
        .await
        .expect("delete from moto");
    message
}

/// `events/execute.json` carrying `message`.
fn execute_event(message: &sqs_sdk::types::Message) -> Value {
    let mut event = sample("execute");
    let record = &mut event["Records"][0];
    record["messageId"] = json!(message.message_id().unwrap_or_default());
    record["receiptHandle"] = json!(message.receipt_handle().unwrap_or_default());
    record["body"] = json!(message.body().unwrap_or_default());
    record["md5OfBody"] = json!(message.md5_of_body().unwrap_or_default());
    event
}

/// `events/notify.json` carrying the run event the topic delivered as `message`.
fn notify_event(topic_arn: &str, message: &sqs_sdk::types::Message) -> Value {
    let mut event = sample("notify");
    let sns = &mut event["Records"][0]["Sns"];
    sns["TopicArn"] = json!(topic_arn);
    sns["MessageId"] = json!(uuid::Uuid::new_v4().to_string());
    sns["Message"] = json!(message.body().unwrap_or_default());
    sns["Timestamp"] = json!(Utc::now().to_rfc3339());
    sns["MessageAttributes"] = message
        .message_attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| {
                    (
                        name.clone(),
                        json!({"Type": "String", "Value": value.string_value().unwrap_or_default()}),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
        })
        .unwrap_or_default()
        .into();
    event
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `op n` per invocation: the mean, with the range when invocations differ.
fn per_invocation(calls: &[Calls]) -> String {
    let mut ops: Vec<&String> = calls.iter().flat_map(|c| c.keys()).collect();
    ops.sort();
    ops.dedup();
    let parts: Vec<String> = ops
        .iter()
        .map(|op| {
            let counts: Vec<u64> = calls
                .iter()
                .map(|c| c.get(*op).copied().unwrap_or(0))
                .collect();
            let (min, max) = (
                counts.iter().min().copied().unwrap_or(0),
                counts.iter().max().copied().unwrap_or(0),
            );
            if min == max {
                format!("{op} {min}")
            } else {
                let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
                format!("{op} {mean:.2} ({min}–{max})")
            }
        })
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

fn total(calls: &Calls) -> u64 {
    calls.values().sum()
}

/// The median of the first and of the last tenth of the warm invocations: the emulators
/// slow down as the run history they hold grows.
fn drift(warm: &[Duration]) -> (Duration, Duration) {
    let tenth = (warm.len() / 10).max(1);
    let median = |part: &[Duration]| {
        let mut part = part.to_vec();
        part.sort();
        percentile(&part, 50.0)
    };
    (median(&warm[..tenth]), median(&warm[warm.len() - tenth..]))
}

fn report(name: &str, series: &Series) {
    let mut sorted = series.warm.clone();
    sorted.sort();
    let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
    let (early, late) = drift(&series.warm);
    let requests: Vec<u64> = series.calls.iter().map(total).collect();
    println!(
        "{name:<22} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7.2}",
        sorted.len(),
        ms(percentile(&sorted, 50.0)),
        ms(percentile(&sorted, 99.0)),
        ms(sorted[sorted.len() - 1]),
        ms(mean),
        ms(early),
        ms(late),
        series.cold.as_ref().map_or("-".to_owned(), |(d, _)| ms(*d)),
        requests.iter().sum::<u64>() as f64 / requests.len() as f64,
    );
    println!(
        "    warm, per invocation: {}",
        per_invocation(&series.calls)
    );
    if let Some((_, calls)) = &series.cold {
        println!(
            "    cold (first) invocation: {}",
            per_invocation(std::slice::from_ref(calls))
        );
    }
}

/// What the proxy adds to one request: the same cheap request sent directly and through
/// it, interleaved; medians.
async fn proxy_cost(peers: &Peers, stack: &Stack, proxies: &Proxies) -> (Duration, Duration) {
    let direct_dynamo = client!(dynamo_sdk, &peers.dynamodb);
    let proxied_dynamo = client!(dynamo_sdk, &proxies.dynamodb.url());
    let direct_sqs = client!(sqs_sdk, &peers.moto);
    let proxied_sqs = client!(sqs_sdk, &proxies.moto.url());
    let get = async |client: &dynamo_sdk::Client| {
        let started = Instant::now();
        client
            .get_item()
            .table_name(&stack.table)
            .key("PK", dynamo_sdk::types::AttributeValue::S("bench".into()))
            .key("SK", dynamo_sdk::types::AttributeValue::S("bench".into()))
            .send()
            .await
            .expect("GetItem");
        started.elapsed()
    };
    let attributes = async |client: &sqs_sdk::Client| {
        let started = Instant::now();
        client
            .get_queue_attributes()
            .queue_url(&stack.run_queue_url)
            .send()
            .await
            .expect("GetQueueAttributes");
        started.elapsed()
    };
    let (mut dd, mut dp, mut md, mut mp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..PROXY_SAMPLES {
        dd.push(get(&direct_dynamo).await);
        dp.push(get(&proxied_dynamo).await);
        md.push(attributes(&direct_sqs).await);
        mp.push(attributes(&proxied_sqs).await);
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        percentile(&v, 50.0)
    };
    let (dd, dp, md, mp) = (median(dd), median(dp), median(md), median(mp));
    println!(
        "proxy: DynamoDB GetItem {} direct, {} through the proxy; SQS GetQueueAttributes {} direct, {} through the proxy (medians of {PROXY_SAMPLES})",
        ms(dd),
        ms(dp),
        ms(md),
        ms(mp)
    );
    (dp.saturating_sub(dd), mp.saturating_sub(md))
}

/// The Runtime API round trip alone: the hello-world function of the cold-start benchmark
/// echoing an event, interleaved with nothing; median and p99.
async fn runtime_round_trip(env: &[(&'static str, String)]) -> (Duration, Duration) {
    let hello = start("examples/hello_lambda", env).await;
    let mut samples = Vec::new();
    for _ in 0..=PROXY_SAMPLES {
        let started = Instant::now();
        match hello.stub.invoke(sample("dispatch")).await {
            Outcome::Response(_) => samples.push(started.elapsed()),
            Outcome::Error(e) => panic!("hello_lambda: {e}"),
        }
    }
    // The first invocation is the cold one.
    samples.remove(0);
    samples.sort();
    (percentile(&samples, 50.0), percentile(&samples, 99.0))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let peers = peers();
    let iterations: usize = std::env::var("WARM_HANDLERS_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ITERATIONS);
    println!("machine: {}; load average {}", machine(), load_average());
    let stack = stack(&peers).await;
    let proxies = Proxies {
        dynamodb: FaultProxy::start(&peers.dynamodb).await,
        moto: FaultProxy::start(&peers.moto).await,
    };
    let env = stack.env(&proxies.dynamodb.url(), &proxies.moto.url());
    let (project, schedule) = set_up(&peers, &stack, &env).await;

    let dispatch = start("dispatch", &env).await;
    let execute = start("execute", &env).await;
    let notify = start("notify", &env).await;
    let api = start("api", &env).await;
    let sqs = client!(sqs_sdk, &peers.moto);

    let mut fires = Series::default();
    let mut executions = Series::default();
    let mut notifications = Series::default();
    let api_kinds = [
        "api GET schedule",
        "api GET run",
        "api GET run log",
        "api POST run (dryRun)",
    ];
    let mut api_series: Vec<Series> = api_kinds.iter().map(|_| Series::default()).collect();
    let first: DateTime<Utc> = "2026-11-26T08:00:00Z".parse().expect("an instant");
    let started = Instant::now();
    for i in 0..iterations {
        let cold = i == 0;
        let mut fire = sample("dispatch");
        fire["workspaceId"] = json!(WORKSPACE);
        fire["projectId"] = json!(project);
        fire["scheduleId"] = json!(schedule);
        fire["createdBy"] = json!(USER);
        fire["scheduledTime"] = json!((first + chrono::Duration::days(i as i64)).to_rfc3339());
        fire["executionId"] = json!(uuid::Uuid::new_v4().to_string());
        let answer = invoke(&dispatch, &proxies, &mut fires, cold, fire).await;
        assert_eq!(answer["outcome"], "QUEUED", "dispatch: {answer}");
        let run_id = answer["runId"].as_str().expect("a run id").to_owned();

        let message = receive_one(&sqs, &stack.run_queue_url).await;
        let answer = invoke(
            &execute,
            &proxies,
            &mut executions,
            cold,
            execute_event(&message),
        )
        .await;
        assert_eq!(answer["batchItemFailures"], json!([]), "execute: {answer}");

        let event = receive_one(&sqs, &stack.events_queue_url).await;
        let answer = invoke(
            &notify,
            &proxies,
            &mut notifications,
            cold,
            notify_event(&stack.topic_arn, &event),
        )
        .await;
        assert_eq!(answer["delivered"], 1, "notify: {answer}");

        let requests = [
            api_event(
                "GET",
                &format!("/api/v1/projects/{project}/schedules/{schedule}"),
                None,
                None,
            ),
            api_event(
                "GET",
                &format!("/api/v1/projects/{project}/runs/{run_id}"),
                None,
                None,
            ),
            api_event(
                "GET",
                &format!("/api/v1/projects/{project}/schedules/{schedule}/runs"),
                Some(("limit", "10")),
                None,
            ),
            api_event(
                "POST",
                &format!("/api/v1/projects/{project}/runs"),
                None,
                Some(json!({"dryRun": true})),
            ),
        ];
        for (k, request) in requests.into_iter().enumerate() {
            // Only the very first request of the API function is its cold invocation.
            let answer = invoke(&api, &proxies, &mut api_series[k], cold && k == 0, request).await;
            let (status, body) = api_answer(&answer);
            assert!(
                (200..300).contains(&status),
                "{}: {status} {body}",
                api_kinds[k]
            );
            if k == 1 {
                assert_eq!(body["status"], "COMPLETED", "the run executed: {body}");
            }
        }
    }
    let elapsed = started.elapsed();
    let mut all_api = Series::default();
    for series in &api_series {
        all_api.warm.extend(&series.warm);
        all_api.calls.extend(series.calls.iter().cloned());
        if series.cold.is_some() {
            all_api.cold = series.cold.clone();
        }
    }

    println!(
        "{iterations} iterations in {:.1} s; load average after: {}",
        elapsed.as_secs_f64(),
        load_average()
    );
    println!(
        "release binaries from {}; latency = event queued on the Runtime API stub → answer received; \
         p50 first/last = medians of the first and last tenth of the warm invocations",
        release_dir().display()
    );
    println!(
        "{:<22} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "function", "warm", "p50", "p99", "max", "mean", "p50 first", "p50 last", "cold", "AWS req"
    );
    report("dispatch (fire)", &fires);
    report("execute (1 run)", &executions);
    report("notify (1 e-mail)", &notifications);
    for (k, series) in api_series.iter().enumerate() {
        report(api_kinds[k], series);
    }
    report("api (all four)", &all_api);
    let (p50, p99) = runtime_round_trip(&env).await;
    println!(
        "the runtime loop alone (hello_lambda echoing an event): p50 {}, p99 {}",
        ms(p50),
        ms(p99)
    );
    let (dynamo, moto) = proxy_cost(&peers, &stack, &proxies).await;
    println!(
        "the proxy adds about {} per DynamoDB request and {} per moto request to the figures above",
        ms(dynamo),
        ms(moto)
    );
    let broken: Vec<String> = proxies
        .dynamodb
        .broken()
        .into_iter()
        .chain(proxies.moto.broken())
        .collect();
    assert!(
        broken.is_empty(),
        "requests the proxy could not forward: {broken:?}"
    );
}
