//! AWS faults (RELIABILITY.md §3): throttling, 5xx, timeouts, requests applied whose answer
//! is lost, and conditional-check failures, injected into each adapter call of the run path
//! (dispatch, execute), of API runs, of the schedule path (create, change, delete) and of
//! notifications (claim, SES, record), against DynamoDB Local and moto's server.
//!
//! The deployment is the real one (`aws_deployment::Aws`: its services, adapters and SDK
//! clients with their retries and timeouts); only the clients' endpoints point at a
//! fault-injecting proxy (`scheduled_runs_tests::fault_proxy`) in front of each emulator.
//! What Lambda, SQS and the sweeper's schedule do around the functions is played by the
//! test on a manual clock: a failed fire is delivered again (Lambda's two asynchronous
//! retries), a failed message after the queue's visibility timeout, the sweeper when it has
//! something to do, and the notify function's acknowledgement of each run event.
//!
//! Every case asserts, by counts and states only, never by durations: each armed fault was
//! injected, and every request held without an answer was given up by the client (its
//! attempt timeout fired); failures reach the caller as retryable errors (a 503 without
//! backend text from the API); in the end exactly one run exists for a fire, ended exactly
//! once and announced; each notification is recorded delivered; and for the schedule
//! path, after `reconcile`, every stored schedule's EventBridge schedule (read back from
//! moto) agrees with it and no trigger is left without one. Each case also pins how it was handled (absorbed by the SDK's retries,
//! delivered again, queued again by the sweeper, announced by the outbox) and what it left,
//! so a change of behaviour shows. Each test prints its table of cases
//! (`-- --nocapture`).
//!
//! Needs DynamoDB Local, moto and PostgreSQL (`infra/local/{dynamodb,moto,postgres}.sh
//! start` and their env files); without them the tests skip loudly, and fail when
//! `SCHEDULED_RUNS_REQUIRE_PEERS=1`.

use scheduled_runs_tests::peers::{AwsPeers, aws_peers};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use chrono::{DateTime, Duration, TimeZone, Utc};
use http_body_util::BodyExt;
use scheduled_runs::adapters::aws::connectors::sdk as secrets_sdk;
use scheduled_runs::adapters::aws::dynamodb::{DynamoStore, create_table, sdk as dynamo_sdk};
use scheduled_runs::adapters::aws::scheduler::sdk as scheduler_sdk;
use scheduled_runs::adapters::aws::ses::sdk as ses_sdk;
use scheduled_runs::adapters::aws::sns::sdk as sns_sdk;
use scheduled_runs::adapters::aws::sqs::sdk as sqs_sdk;
use scheduled_runs::adapters::local::clock::ManualClock;
use scheduled_runs::adapters::sql::LocalConnectorFactory;
use scheduled_runs::aws_deployment::{
    Aws, AwsSettings, DispatchServices, REPUBLISH_EVENTS_AFTER, SdkCallSettings,
};
use scheduled_runs::domain::model::{
    Caller, ConnectionConfig, DeliveryStatus, Plan, Run, RunStatus, User, WorkspaceRole,
};
use scheduled_runs::http::auth::{AuthError, IdentityResolver};
use scheduled_runs::ports::{
    BoundSql, Clock, ConnectorFactory, DeliveryStore, FireRequest, PageRequest, PortError,
    RunEvent, RunEventOutbox, RunFilter, RunMessage, RunStore, ScheduleFilter, ScheduleStore,
    SqlConnector, WorkspaceStore,
};
use scheduled_runs::services::ServiceError;
use scheduled_runs::services::dispatch::DispatchOutcome;
use scheduled_runs::services::executor::{ExecuteOutcome, ExecutorService};
use scheduled_runs::services::reconcile::TriggerRef;
use scheduled_runs::services::schedules::CreateSchedule;
use scheduled_runs::services::workspaces::WorkspaceService;
use scheduled_runs_tests::fault_proxy::{Fault, FaultProxy, Rule, RuleReport};
use scheduled_runs_tests::peers::http_get;
use serde_json::{Value, json};
use tower::ServiceExt;

const REGION: &str = "us-east-1";
const ADMIN: &str = "ada";
const DISPATCH_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:scheduled-runs-dispatch";

/// The SDK clients' timeouts and retries in these tests: the deployment's own mechanism
/// (`AwsSettings::calls`) with a shorter attempt timeout and backoff, so that a case whose
/// request is held costs two seconds instead of five, and retries do not wait for seconds.
/// (One second was too short for emulators just started: a cold DynamoDB Local answered
/// the retry after a fault late, and the fire was reported lost.) Durations are never
/// asserted; they only keep the test short.
fn test_calls() -> SdkCallSettings {
    SdkCallSettings {
        connect_timeout: StdDuration::from_secs(2),
        attempt_timeout: StdDuration::from_millis(2_000),
        operation_timeout: StdDuration::from_secs(8),
        max_attempts: 3,
        initial_backoff: StdDuration::from_millis(20),
    }
}

/// The per-service endpoint settings (`AWS_ENDPOINT_URL_<SERVICE>`) from a map instead of
/// the process environment, which tests running in parallel must not change.
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

fn sdk_config(dynamodb: &str, moto: &str) -> aws_types::SdkConfig {
    use dynamo_sdk::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
    let endpoints = Endpoints(HashMap::from([
        ("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), dynamodb.to_owned()),
        ("AWS_ENDPOINT_URL_SQS".to_owned(), moto.to_owned()),
        ("AWS_ENDPOINT_URL_SNS".to_owned(), moto.to_owned()),
        ("AWS_ENDPOINT_URL_SCHEDULER".to_owned(), moto.to_owned()),
        ("AWS_ENDPOINT_URL_SESV2".to_owned(), moto.to_owned()),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER".to_owned(),
            moto.to_owned(),
        ),
    ]));
    aws_types::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(scheduled_runs::aws_deployment::https_client())
        .region(Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "test",
        )))
        .service_config(endpoints)
        .build()
}

/// Callers come from a test header: the admin of the workspace it names.
struct HeaderIdentity;

impl IdentityResolver for HeaderIdentity {
    fn identify(&self, parts: &http::request::Parts) -> Result<Caller, AuthError> {
        let workspace_id = parts
            .headers
            .get("x-test-workspace")
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing)?;
        Ok(admin(workspace_id))
    }
}

fn admin(workspace_id: &str) -> Caller {
    Caller {
        user_id: ADMIN.into(),
        workspace_id: workspace_id.into(),
        workspace_role: WorkspaceRole::Admin,
        email: Some("ada@example.com".into()),
    }
}

/// One stack (table, queues, topic, secret, schedule-group prefix) on the emulators, the
/// deployment over the two proxies, and direct clients that read what really happened.
struct Stack {
    dynamo_proxy: FaultProxy,
    moto_proxy: FaultProxy,
    aws: Aws,
    clock: Arc<ManualClock>,
    /// The table as it is, read past the proxy.
    direct: DynamoStore,
    sqs: sqs_sdk::Client,
    scheduler: scheduler_sdk::Client,
    run_queue_url: String,
    events_queue_url: String,
    /// moto's own endpoint (its management API shows the e-mail SES accepted).
    moto: String,
}

impl Stack {
    async fn new(peers: &AwsPeers) -> Stack {
        let dynamo_proxy = FaultProxy::start(&peers.dynamodb).await;
        let moto_proxy = FaultProxy::start(&peers.moto).await;
        let direct_sdk = sdk_config(&peers.dynamodb, &peers.moto);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let short = &id[..10];
        let dynamo = dynamo_sdk::Client::new(&direct_sdk);
        let table = format!("faults-{short}");
        create_table(&dynamo, &table).await.expect("create table");
        let sqs = sqs_sdk::Client::new(&direct_sdk);
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
        let run_queue_url = queue(format!("faults-runs-{short}")).await;
        let events_queue_url = queue(format!("faults-events-{short}")).await;
        let events_queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&events_queue_url)
            .attribute_names(sqs_sdk::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes()
            .and_then(|a| a.get(&sqs_sdk::types::QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        let sns = sns_sdk::Client::new(&direct_sdk);
        let topic_arn = sns
            .create_topic()
            .name(format!("faults-events-{short}"))
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
            .expect("subscribe the events queue");
        let secret_arn = secrets_sdk::Client::new(&direct_sdk)
            .create_secret()
            .name(format!("faults-sealing-{short}"))
            .secret_string(format!("{id}{id}"))
            .send()
            .await
            .expect("create the sealing secret")
            .arn()
            .unwrap_or_default()
            .to_owned();
        let ses_from = format!("runs@{short}.example.com");
        ses_sdk::Client::new(&direct_sdk)
            .create_email_identity()
            .email_identity(&ses_from)
            .send()
            .await
            .expect("verify the sender on moto");
        let env = HashMap::from([
            (
                "SCHEDULED_RUNS_PUBLIC_URL",
                "https://runs.example.com".to_owned(),
            ),
            ("SCHEDULED_RUNS_SES_FROM", ses_from),
            ("SCHEDULED_RUNS_TABLE", table.clone()),
            ("SCHEDULED_RUNS_RUN_QUEUE_URL", run_queue_url.clone()),
            ("SCHEDULED_RUNS_RUN_EVENTS_TOPIC_ARN", topic_arn),
            ("SCHEDULED_RUNS_SEALING_KEY_SECRET_ARN", secret_arn),
            ("SCHEDULED_RUNS_SCHEDULE_GROUP_PREFIX", format!("f{short}")),
            (
                "SCHEDULED_RUNS_DISPATCH_FUNCTION_ARN",
                DISPATCH_ARN.to_owned(),
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
        let mut settings =
            AwsSettings::from_lookup(|name| env.get(name).cloned()).expect("settings");
        settings.calls = test_calls();
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
                .single()
                .expect("valid instant"),
        ));
        let aws = Aws {
            sdk: sdk_config(&dynamo_proxy.url(), &moto_proxy.url()),
            settings,
            clock: clock.clone(),
            interceptors: Vec::new(),
        };
        Stack {
            direct: DynamoStore::new(dynamo, table),
            scheduler: scheduler_sdk::Client::new(&direct_sdk),
            sqs,
            run_queue_url,
            events_queue_url,
            moto: peers.moto.clone(),
            dynamo_proxy,
            moto_proxy,
            aws,
            clock,
        }
    }

    fn proxy(&self, operation: &str) -> &FaultProxy {
        if operation.starts_with("dynamodb:") {
            &self.dynamo_proxy
        } else {
            &self.moto_proxy
        }
    }

    fn group(&self, workspace_id: &str) -> String {
        format!(
            "{}-{workspace_id}",
            self.aws
                .settings
                .schedule_group_prefix
                .as_deref()
                .unwrap_or_default()
        )
    }

    /// Every message on the run queue now, taken off it (as Lambda's poller does).
    async fn take_run_messages(&self) -> Vec<RunMessage> {
        self.take_messages(&self.run_queue_url)
            .await
            .into_iter()
            .map(|body| serde_json::from_str(&body).expect("a run message"))
            .collect()
    }

    /// Every run event on the topic's queue now, taken off it.
    async fn take_events(&self) -> Vec<RunEvent> {
        self.take_messages(&self.events_queue_url)
            .await
            .into_iter()
            .map(|body| serde_json::from_str(&body).expect("a run event"))
            .collect()
    }

    async fn take_messages(&self, url: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            let messages = out.messages();
            if messages.is_empty() {
                return bodies;
            }
            for message in messages {
                bodies.push(message.body().unwrap_or_default().to_owned());
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }

    /// The deployment's API state, callers named by the test's identity headers.
    async fn app_state(&self) -> scheduled_runs::http::AppState {
        self.aws
            .app_state(Arc::new(HeaderIdentity), "https://runs.example.com".into())
            .await
            .expect("app state")
    }

    /// A workspace with its admin, created past the faults.
    async fn workspace(&self, workspace_id: &str) {
        WorkspaceService {
            workspaces: Arc::new(self.direct.clone()),
            clock: self.clock.clone(),
        }
        .create(workspace_id, Plan::Enterprise)
        .await
        .expect("workspace");
        self.direct
            .upsert_user(&User {
                user_id: ADMIN.into(),
                workspace_id: workspace_id.into(),
                email: Some("ada@example.com".into()),
                workspace_role: WorkspaceRole::Admin,
            })
            .await
            .expect("user");
    }
}

// ---------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------

/// A fault and how many of the matching requests get it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Two throttling answers (DynamoDB: `ThrottlingException`, then
    /// `ProvisionedThroughputExceededException`): within the SDK's three attempts.
    Throttle2,
    /// Throttled on every attempt of the first delivery.
    ThrottleAll,
    /// 500 then 503.
    ServerError2,
    /// One attempt never answered (not applied).
    Timeout,
    /// Applied, answer replaced by a 500, once.
    Applied500,
    /// Applied, then never answered, once.
    AppliedTimeout,
    /// Applied, then the connection closed, once.
    AppliedDrop,
    /// Applied and answered 500 on every attempt of the first delivery.
    Applied500All,
    /// A conditional write refused as if another writer had got there first, once.
    ConditionFailed,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::Throttle2,
        Kind::ThrottleAll,
        Kind::ServerError2,
        Kind::Timeout,
        Kind::Applied500,
        Kind::AppliedTimeout,
        Kind::AppliedDrop,
        Kind::Applied500All,
        Kind::ConditionFailed,
    ];

    /// The schedule and API paths leave out the two other ways an applied request's
    /// answer is lost: the SDK retries them as it retries the 500, and the run path
    /// covers them on every DynamoDB, SQS and SNS write.
    const API: [Kind; 7] = [
        Kind::Throttle2,
        Kind::ThrottleAll,
        Kind::ServerError2,
        Kind::Timeout,
        Kind::Applied500,
        Kind::Applied500All,
        Kind::ConditionFailed,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::Throttle2 => "throttled x2",
            Kind::ThrottleAll => "throttled, every attempt",
            Kind::ServerError2 => "500, 503",
            Kind::Timeout => "no answer (timeout)",
            Kind::Applied500 => "applied, 500",
            Kind::AppliedTimeout => "applied, no answer",
            Kind::AppliedDrop => "applied, connection closed",
            Kind::Applied500All => "applied, 500 every attempt",
            Kind::ConditionFailed => "conditional-check failure",
        }
    }

    fn fault(self) -> Fault {
        match self {
            Kind::Throttle2 | Kind::ThrottleAll => Fault::Throttle,
            Kind::ServerError2 => Fault::ServerError,
            Kind::Timeout => Fault::Timeout,
            Kind::Applied500 | Kind::Applied500All => Fault::AppliedThen500,
            Kind::AppliedTimeout => Fault::AppliedThenTimeout,
            Kind::AppliedDrop => Fault::AppliedThenDrop,
            Kind::ConditionFailed => Fault::ConditionFailed,
        }
    }

    /// How many matching requests get the fault: "every attempt" is every attempt the
    /// caller makes in one delivery (the SDK's three; the run-event publisher tries three
    /// times itself).
    fn times(self, operation: &str) -> u32 {
        let every = if operation == "sns:Publish" { 9 } else { 3 };
        match self {
            Kind::Throttle2 | Kind::ServerError2 => 2,
            Kind::ThrottleAll | Kind::Applied500All => every,
            _ => 1,
        }
    }

    /// Held requests the client must give up on.
    fn holds(self) -> u32 {
        u32::from(matches!(self, Kind::Timeout | Kind::AppliedTimeout))
    }

    /// Whether the fault makes sense for the operation: reads have nothing to apply or
    /// to refuse, and only DynamoDB has conditional writes.
    fn fits(self, operation: &str, write: bool) -> bool {
        match self {
            Kind::Applied500 | Kind::AppliedTimeout | Kind::AppliedDrop | Kind::Applied500All => {
                write
            }
            Kind::ConditionFailed => write && operation.starts_with("dynamodb:"),
            _ => true,
        }
    }

    fn rule(self, operation: &str) -> Rule {
        Rule::new(operation, self.fault(), self.times(operation))
    }
}

/// Checks every rule did what it was armed for: all its faults injected, every held
/// request given up by the client (its attempt timeout fired), none left to the proxy's
/// own limit.
fn check_rule(report: RuleReport, operation: &str, kind: Kind) -> Vec<String> {
    let mut problems = Vec::new();
    if report.injected != kind.times(operation) {
        problems.push(format!(
            "{} faults injected, {} armed",
            report.injected,
            kind.times(operation)
        ));
    }
    if report.abandoned != kind.holds() || report.held_to_the_limit != 0 {
        problems.push(format!(
            "held requests: {} given up by the client, {} held to the proxy's limit \
             (the client has no attempt timeout)",
            report.abandoned, report.held_to_the_limit
        ));
    }
    problems
}

fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    println!("\n{title}");
    println!("{}", line(header.iter().map(|h| (*h).to_owned()).collect()));
    println!(
        "{}",
        line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>())
    );
    for row in rows {
        println!("{}", line(row.clone()));
    }
}

fn finish(problems: &[String], cases: usize) {
    assert!(
        problems.is_empty(),
        "{} problems in {cases} cases:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Whether an error a service returned is one the Lambda runtime or queue retries.
fn retryable(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::Backend(PortError::Unavailable {
            retryable: true,
            ..
        })
    )
}

// ---------------------------------------------------------------------------------------
// The run path
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Dispatch,
    Execute,
}

/// The run path's calls: (phase, operation, writes?).
const RUN_OPERATIONS: [(Phase, &str, bool); 7] = [
    (Phase::Dispatch, "dynamodb:BatchGetItem", false),
    (Phase::Dispatch, "dynamodb:TransactWriteItems", true),
    (Phase::Dispatch, "sqs:SendMessage", true),
    (Phase::Execute, "dynamodb:UpdateItem", true),
    (Phase::Execute, "dynamodb:BatchGetItem", false),
    (Phase::Execute, "dynamodb:TransactWriteItems", true),
    (Phase::Execute, "sns:Publish", true),
];

/// How a run-path fault was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handling {
    /// The SDK's retries: the first delivery of the fire and of the message succeeded.
    Absorbed,
    /// A retryable error; the fire (Lambda) or the message (SQS) was delivered again.
    Redelivered,
    /// The sweeper queued the run again (a stale `PENDING` run, or an expired lease).
    Requeued,
    /// The sweeper's outbox published the run event the executor could not.
    Outbox,
}

/// What a run-path case is expected to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunExpect {
    handling: Handling,
    /// The run's attempt: 2 when the first attempt was given up after its start landed.
    attempt: u32,
    /// How often the cell ran: twice when the write that ends the run failed after the
    /// cells ran (execution is at least once; the run still ends exactly once).
    cell_runs: i64,
    /// Deliveries that executed the run to its end: none when the end landed but its
    /// answer never came back (the run ended all the same).
    finished: u32,
}

fn expected_run(phase: Phase, operation: &str, kind: Kind) -> RunExpect {
    use Handling::*;
    let plain = |handling| RunExpect {
        handling,
        attempt: 1,
        cell_runs: 1,
        finished: 1,
    };
    let retried = |cell_runs| RunExpect {
        handling: Requeued,
        attempt: 2,
        cell_runs,
        finished: 1,
    };
    let all = matches!(kind, Kind::ThrottleAll | Kind::Applied500All);
    let applied = matches!(
        kind,
        Kind::Applied500 | Kind::AppliedTimeout | Kind::AppliedDrop | Kind::Applied500All
    );
    match (phase, operation) {
        (Phase::Dispatch, _) if all || kind == Kind::ConditionFailed => plain(Redelivered),
        // The start's answer lost: the retried start finds the run taken (by itself) and
        // the delivery does nothing; the sweeper retries it once the lease ran out.
        (Phase::Execute, "dynamodb:UpdateItem") if applied => retried(1),
        // The start never happened: the sweeper queues the PENDING run again.
        (Phase::Execute, "dynamodb:UpdateItem") if kind == Kind::ThrottleAll => plain(Requeued),
        (Phase::Execute, "dynamodb:BatchGetItem") if kind == Kind::ThrottleAll => retried(1),
        (Phase::Execute, "dynamodb:TransactWriteItems")
            if kind == Kind::ThrottleAll || kind == Kind::ConditionFailed =>
        {
            retried(2)
        }
        (Phase::Execute, "dynamodb:TransactWriteItems") if kind == Kind::Applied500All => {
            RunExpect {
                handling: Outbox,
                attempt: 1,
                cell_runs: 1,
                finished: 0,
            }
        }
        (Phase::Execute, "sns:Publish") if kind == Kind::ThrottleAll => plain(Outbox),
        _ => plain(Absorbed),
    }
}

/// A project whose one cell counts its executions in a PostgreSQL sequence, and its
/// schedule.
struct RunFixture {
    workspace_id: String,
    project_id: String,
    schedule_id: String,
    sequence: String,
    postgres: Box<dyn SqlConnector>,
}

async fn postgres(url: &str) -> Box<dyn SqlConnector> {
    LocalConnectorFactory::new(std::env::temp_dir())
        .open(
            &ConnectionConfig::Postgres {
                url: Some(url.to_owned()),
                secret_arn: None,
            },
            std::path::Path::new("/nonexistent"),
        )
        .await
        .expect("connect to PostgreSQL")
}

async fn sql(connector: &dyn SqlConnector, statement: &str) -> Vec<Vec<Value>> {
    connector
        .query(
            &BoundSql {
                sql: statement.to_owned(),
                binds: Vec::new(),
            },
            10,
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect("statement")
        .rows
}

impl RunFixture {
    async fn new(stack: &Stack, postgres_url: &str) -> RunFixture {
        let workspace_id = "acme".to_owned();
        stack.workspace(&workspace_id).await;
        let connector = postgres(postgres_url).await;
        let sequence = format!(
            "faults_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        sql(connector.as_ref(), &format!("CREATE SEQUENCE {sequence}")).await;
        let state = stack.app_state().await;
        let caller = admin(&workspace_id);
        state
            .connections
            .put(
                &caller,
                "pg",
                &ConnectionConfig::Postgres {
                    url: Some(postgres_url.to_owned()),
                    secret_arn: None,
                },
            )
            .await
            .expect("connection");
        let project_id = state
            .projects
            .create(&caller, "Counted", None)
            .await
            .expect("project")
            .project
            .project_id;
        let body = serde_json::from_value(json!({
            "cells": [{"id": "count", "type": "SQL", "connection": "pg",
                       "sql": format!("SELECT nextval('{sequence}') AS n")}],
            "app": {"cells": ["count"]}
        }))
        .expect("version body");
        state
            .projects
            .put_draft(&caller, &project_id, &body)
            .await
            .expect("draft");
        state
            .projects
            .publish(&caller, &project_id)
            .await
            .expect("publish");
        let schedule_id = state
            .schedules
            .create(
                &caller,
                &project_id,
                CreateSchedule {
                    cadence: serde_json::from_value(json!({"kind": "DAILY", "hour": 9}))
                        .expect("cadence"),
                    timezone: None,
                    enabled: None,
                    update_published_results: Some(true),
                    use_cached_sql_results: Some(false),
                    // Each case fires its own time; ALLOW keeps one case's run from
                    // ever skipping another's.
                    overlap_policy: Some(
                        serde_json::from_value(json!("ALLOW")).expect("overlap policy"),
                    ),
                    notifications: None,
                },
            )
            .await
            .expect("schedule")
            .schedule
            .schedule_id;
        RunFixture {
            workspace_id,
            project_id,
            schedule_id,
            sequence,
            postgres: connector,
        }
    }

    /// How often the cell ran so far.
    async fn executions(&self) -> i64 {
        let rows = sql(
            self.postgres.as_ref(),
            &format!("SELECT last_value, is_called FROM {}", self.sequence),
        )
        .await;
        let row = rows.first().cloned().unwrap_or_default();
        if row.get(1) == Some(&Value::Bool(true)) {
            row.first().and_then(Value::as_i64).unwrap_or(0)
        } else {
            0
        }
    }
}

/// What happened to one run-path case.
#[derive(Debug, Default)]
struct RunObserved {
    rule: RuleReport,
    /// Deliveries of the fire (Lambda's asynchronous retries included).
    deliveries: u32,
    /// Errors the dispatch service returned; `false` for a non-retryable one.
    dispatch_errors: Vec<bool>,
    /// What the delivery that succeeded answered, and the run id it named.
    dispatched: Option<String>,
    /// Run messages executed (every copy, redeliveries and the sweeper's included).
    messages: u32,
    finished: u32,
    execute_errors: Vec<bool>,
    /// Sweeper runs (a sweep and the outbox) until the run was settled.
    sweeps: u32,
    requeued: u32,
    republished: u32,
    executions: i64,
    runs_for_fire: usize,
    status: Option<RunStatus>,
    error_code: Option<String>,
    attempt: u32,
    /// Times the run was ended (terminal STATUS state events).
    endings: usize,
    events: usize,
    settled: bool,
}

impl RunObserved {
    fn handling(&self) -> Handling {
        if self.republished > 0 {
            Handling::Outbox
        } else if self.requeued > 0 {
            Handling::Requeued
        } else if !self.dispatch_errors.is_empty() || !self.execute_errors.is_empty() {
            Handling::Redelivered
        } else {
            Handling::Absorbed
        }
    }
}

/// The run path as AWS drives it around the functions.
struct RunPath {
    dispatch: DispatchServices,
    executor: ExecutorService,
}

async fn run_case(
    stack: &Stack,
    path: &RunPath,
    fx: &RunFixture,
    phase: Phase,
    operation: &str,
    kind: Kind,
    fire: DateTime<Utc>,
) -> RunObserved {
    let mut seen = RunObserved::default();
    let proxy = stack.proxy(operation);
    let before = fx.executions().await;
    let run_id = Run::scheduled_run_id(&fx.schedule_id, fire);
    let request = FireRequest {
        workspace_id: fx.workspace_id.clone(),
        schedule_id: fx.schedule_id.clone(),
        project_id: Some(fx.project_id.clone()),
        created_by: Some(ADMIN.into()),
    };

    // The Scheduler's fire, with Lambda's two asynchronous retries of a failed invocation
    // (a minute, then two minutes later).
    let mut rule = (phase == Phase::Dispatch).then(|| proxy.arm(kind.rule(operation)));
    loop {
        seen.deliveries += 1;
        match path.dispatch.dispatch.dispatch_fire(&request, fire).await {
            Ok(outcome) => {
                seen.dispatched = Some(match outcome {
                    DispatchOutcome::Queued(run) => format!("queued {}", run.run_id),
                    DispatchOutcome::Skipped(run) => format!("skipped {}", run.run_id),
                    DispatchOutcome::Duplicate(run) => format!("duplicate of {}", run.run_id),
                    DispatchOutcome::ScheduleGone => "schedule gone".into(),
                });
                break;
            }
            Err(e) => {
                seen.dispatch_errors.push(retryable(&e));
                if !retryable(&e) || seen.deliveries == 3 {
                    break;
                }
                stack
                    .clock
                    .advance(Duration::minutes(i64::from(seen.deliveries)));
            }
        }
    }
    if phase == Phase::Execute {
        rule = Some(proxy.arm(kind.rule(operation)));
    }

    // The queue: messages as they arrive and a failed one again after the visibility
    // timeout; the sweeper (every minute in AWS) while the run is not settled.
    let visibility = Duration::seconds(5_400);
    let requeue_after = path.dispatch.maintenance.settings.requeue_after;
    let mut ready: VecDeque<RunMessage> = stack.take_run_messages().await.into();
    let mut later: Vec<(DateTime<Utc>, RunMessage)> = Vec::new();
    loop {
        while let Some(message) = ready.pop_front() {
            seen.messages += 1;
            match path.executor.execute(&message).await {
                Ok(ExecuteOutcome::Finished(_)) => seen.finished += 1,
                Ok(ExecuteOutcome::Ignored) => {}
                Err(e) => {
                    seen.execute_errors.push(retryable(&e));
                    later.push((stack.clock.now() + visibility, message));
                }
            }
        }
        // The notify function's part: it takes the event and clears the mark.
        for event in stack.take_events().await {
            if event.run_id == run_id {
                seen.events += 1;
            }
            stack
                .direct
                .mark_event_published(&event.workspace_id, &event.run_id)
                .await
                .expect("mark the event published");
        }
        let Some(run) = stack
            .direct
            .get_run(&fx.workspace_id, &run_id)
            .await
            .expect("read the run")
        else {
            break;
        };
        if run.status.is_terminal() && !run.event_pending {
            seen.settled = true;
            if later.is_empty() {
                break;
            }
            // The failed messages come back after their visibility timeout.
            let due = later.iter().map(|(at, _)| *at).max().unwrap_or(fire);
            stack.clock.set(due);
            ready.extend(later.drain(..).map(|(_, m)| m));
            continue;
        }
        if seen.sweeps == 10 {
            break;
        }
        // Straight to the first sweep that has something to do — a stale PENDING run, an
        // expired lease, an event still pending after its delay; the sweeps before it
        // would find nothing.
        let due = match run.status {
            RunStatus::Pending => run.created_at + requeue_after,
            RunStatus::Running => run.lease_until.unwrap_or(run.created_at),
            _ => run.end_time.unwrap_or(run.created_at) + REPUBLISH_EVENTS_AFTER,
        };
        stack.clock.set(due + Duration::seconds(1));
        seen.sweeps += 1;
        // A failed sweep is retried by the next one.
        if let Ok(report) = path.dispatch.maintenance.sweep().await {
            seen.requeued += report.requeued;
        }
        if let Ok(n) = path.dispatch.outbox.republish_pending().await {
            seen.republished += n;
        }
        ready.extend(stack.take_run_messages().await);
        let now = stack.clock.now();
        let (due, waiting): (Vec<_>, Vec<_>) = later.drain(..).partition(|(at, _)| *at <= now);
        later = waiting;
        ready.extend(due.into_iter().map(|(_, m)| m));
    }
    if let Some(rule) = rule {
        seen.rule = proxy.disarm(rule);
    }

    seen.executions = fx.executions().await - before;
    let log = stack
        .direct
        .list_schedule_runs(
            &fx.workspace_id,
            &fx.schedule_id,
            stack.clock.now(),
            &PageRequest::first(1000),
        )
        .await
        .expect("run log");
    seen.runs_for_fire = log
        .items
        .iter()
        .filter(|r| r.scheduled_for == Some(fire))
        .count();
    if let Some(run) = stack
        .direct
        .get_run(&fx.workspace_id, &run_id)
        .await
        .expect("read the run")
    {
        seen.status = Some(run.status);
        seen.error_code = run.error.map(|e| e.code);
        seen.attempt = run.attempt;
        seen.endings = run
            .state_events
            .iter()
            .filter(|e| {
                e.event_type == "STATUS"
                    && ["COMPLETED", "ERRORED", "KILLED", "SKIPPED"].contains(&e.value.as_str())
            })
            .count();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_path_faults_end_in_one_run_executed_once() {
    let Some(peers) = aws_peers("aws_faults::run_path_faults_end_in_one_run_executed_once") else {
        return;
    };
    let started = std::time::Instant::now();
    let stack = Stack::new(&peers).await;
    let fx = RunFixture::new(&stack, &peers.postgres).await;
    let path = RunPath {
        dispatch: stack.aws.dispatch_services().expect("dispatch services"),
        executor: stack.aws.executor().await.expect("executor"),
    };
    let first_fire = Utc
        .with_ymd_and_hms(2026, 6, 2, 9, 0, 0)
        .single()
        .expect("valid");

    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (phase, operation, write) in RUN_OPERATIONS {
        for kind in Kind::ALL {
            if !kind.fits(operation, write) {
                continue;
            }
            let fire = first_fire + Duration::days(rows.len() as i64);
            let seen = run_case(&stack, &path, &fx, phase, operation, kind, fire).await;
            let expect = expected_run(phase, operation, kind);
            let mut found = check_rule(seen.rule, operation, kind);
            let mut check = |ok: bool, what: String| {
                if !ok {
                    found.push(what);
                }
            };
            check(
                seen.dispatch_errors
                    .iter()
                    .chain(&seen.execute_errors)
                    .all(|r| *r),
                format!(
                    "a non-retryable error: dispatch {:?}, execute {:?}",
                    seen.dispatch_errors, seen.execute_errors
                ),
            );
            check(seen.settled, "the run never settled".into());
            check(
                seen.runs_for_fire == 1,
                format!(
                    "{} runs for the fire (dispatch answered: {:?})",
                    seen.runs_for_fire, seen.dispatched
                ),
            );
            check(
                seen.status == Some(RunStatus::Completed),
                format!("status {:?} ({:?})", seen.status, seen.error_code),
            );
            check(seen.endings == 1, format!("ended {} times", seen.endings));
            check(seen.events >= 1, "no run event".into());
            check(
                seen.handling() == expect.handling,
                format!(
                    "handled {:?}, expected {:?}",
                    seen.handling(),
                    expect.handling
                ),
            );
            check(
                seen.attempt == expect.attempt,
                format!("attempt {}, expected {}", seen.attempt, expect.attempt),
            );
            check(
                seen.executions == expect.cell_runs,
                format!(
                    "the cell ran {} times, expected {}",
                    seen.executions, expect.cell_runs
                ),
            );
            check(
                seen.finished == expect.finished,
                format!(
                    "{} deliveries executed it to the end, expected {}",
                    seen.finished, expect.finished
                ),
            );
            problems.extend(
                found
                    .into_iter()
                    .map(|p| format!("{phase:?} {operation} / {}: {p}", kind.label())),
            );
            rows.push(vec![
                format!("{phase:?}"),
                operation.to_owned(),
                kind.label().to_owned(),
                seen.rule.injected.to_string(),
                seen.deliveries.to_string(),
                seen.messages.to_string(),
                seen.execute_errors.len().to_string(),
                format!("{}/{}", seen.requeued, seen.republished),
                seen.runs_for_fire.to_string(),
                seen.status.map_or("none", |s| s.as_str()).to_owned(),
                seen.attempt.to_string(),
                seen.executions.to_string(),
                seen.events.to_string(),
                format!("{:?}", seen.handling()),
            ]);
        }
    }
    print_table(
        "AWS faults on the run path (one fire per case)",
        &[
            "phase",
            "operation",
            "fault",
            "injected",
            "fire deliveries",
            "messages",
            "failed deliveries",
            "sweeper requeued/republished",
            "runs",
            "status",
            "attempt",
            "cell runs",
            "events",
            "handled",
        ],
        &rows,
    );
    println!("{} cases in {:.1?}", rows.len(), started.elapsed());
    for proxy in [&stack.dynamo_proxy, &stack.moto_proxy] {
        assert!(proxy.broken().is_empty(), "{:?}", proxy.broken());
    }
    finish(&problems, rows.len());
}

// ---------------------------------------------------------------------------------------
// API runs
// ---------------------------------------------------------------------------------------

/// The calls of `POST /projects/{projectId}/runs`: (label, operation, matching requests
/// let through first). The rate limit's two counters (the minute's, then the hour's) and
/// the project's activity are `UpdateItem`s, in that order; the run is a `PutItem`.
const API_RUN_OPERATIONS: [(&str, &str, u32); 4] = [
    ("rate limit", "dynamodb:UpdateItem", 0),
    ("activity", "dynamodb:UpdateItem", 2),
    ("run", "dynamodb:PutItem", 0),
    ("queue", "sqs:SendMessage", 0),
];

/// The first answer an API-run case is expected to get, and whether the run's message
/// is left to the sweeper.
fn expected_api_run(label: &str, kind: Kind) -> (u16, bool) {
    match (label, kind) {
        // A refused rate-limit counter means the limit was reached: 429 with Retry-After.
        ("rate limit", Kind::ConditionFailed) => (429, false),
        // The run landed though every answer was lost: asked again, the store says so.
        ("run", Kind::Applied500All) => (201, false),
        // The run exists; the caller is told so and the sweeper queues it.
        ("queue", Kind::ThrottleAll) => (201, true),
        ("queue", _) => (201, false),
        // Refused as a duplicate, yet no run is stored: nothing to go on.
        ("run", Kind::ConditionFailed) => (503, false),
        (_, Kind::ThrottleAll | Kind::Applied500All) => (503, false),
        _ => (201, false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_run_faults_start_exactly_one_run() {
    let Some(peers) = aws_peers("aws_faults::api_run_faults_start_exactly_one_run") else {
        return;
    };
    let started = std::time::Instant::now();
    let stack = Stack::new(&peers).await;
    let workspace_id = "acme";
    stack.workspace(workspace_id).await;
    let state = stack.app_state().await;
    let maintenance = stack
        .aws
        .dispatch_services()
        .expect("dispatch services")
        .maintenance;
    let router = scheduled_runs::http::router(state);
    let project_id = published_project(&router, workspace_id).await;
    let runs_path = format!("/api/v1/projects/{project_id}/runs");

    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (label, operation, skip) in API_RUN_OPERATIONS {
        for kind in Kind::API {
            if !kind.fits(operation, true) {
                continue;
            }
            // A fresh rate-limit window for every case.
            stack.clock.advance(Duration::hours(2));
            let before = project_runs(&stack, workspace_id, &project_id).await;
            let proxy = stack.proxy(operation);
            let rule = proxy.arm(kind.rule(operation).after(skip));
            let (first, body) =
                api(&router, "POST", &runs_path, workspace_id, Some(json!({}))).await;
            let report = proxy.disarm(rule);
            // A caller told to retry does: at once after a 503, after Retry-After (within
            // the next window) after a 429.
            let answered = match first {
                503 | 429 => {
                    stack.clock.advance(Duration::hours(1));
                    api(&router, "POST", &runs_path, workspace_id, Some(json!({})))
                        .await
                        .0
                }
                other => other,
            };
            let created: Vec<Run> = project_runs(&stack, workspace_id, &project_id)
                .await
                .into_iter()
                .filter(|r| !before.iter().any(|b| b.run_id == r.run_id))
                .collect();
            let ours = |messages: Vec<RunMessage>| {
                messages
                    .into_iter()
                    .filter(|m| created.iter().any(|r| r.run_id == m.run_id))
                    .count()
            };
            let mut messages = ours(stack.take_run_messages().await);
            let mut requeued = 0;
            if messages == 0 {
                // A run created without its message: the sweeper's next pass queues it.
                stack
                    .clock
                    .advance(maintenance.settings.requeue_after + Duration::seconds(1));
                maintenance.sweep().await.expect("sweep");
                requeued = ours(stack.take_run_messages().await);
                messages = requeued;
            }
            let (expected_first, expected_sweeper) = expected_api_run(label, kind);
            let mut found = check_rule(report, operation, kind);
            if first != expected_first {
                found.push(format!(
                    "answered {first} {body}, expected {expected_first}"
                ));
            }
            if first == 503 && body["error"]["code"] != "SERVICE_UNAVAILABLE" {
                found.push(format!("a 503 without SERVICE_UNAVAILABLE: {body}"));
            }
            if leaks(&body) {
                found.push(format!("the answer carries backend text: {body}"));
            }
            if answered != 201 {
                found.push(format!("the retried request answered {answered}"));
            }
            if created.len() != 1 {
                found.push(format!("{} runs created", created.len()));
            }
            if messages == 0 {
                found.push("the run was never queued".into());
            }
            if (requeued > 0) != expected_sweeper {
                found.push(format!("queued by the sweeper: {requeued}"));
            }
            problems.extend(
                found
                    .into_iter()
                    .map(|p| format!("{label} {operation} / {}: {p}", kind.label())),
            );
            rows.push(vec![
                format!("{label} ({operation})"),
                kind.label().to_owned(),
                report.injected.to_string(),
                first.to_string(),
                if answered == first {
                    "-".to_owned()
                } else {
                    answered.to_string()
                },
                created.len().to_string(),
                messages.to_string(),
                requeued.to_string(),
            ]);
            // Nothing executes these runs: cancelled, the sweeper leaves them alone.
            for run in &created {
                let (status, body) = api(
                    &router,
                    "DELETE",
                    &format!("{runs_path}/{}", run.run_id),
                    workspace_id,
                    None,
                )
                .await;
                assert_eq!(status, 204, "cancel: {body}");
            }
        }
    }
    print_table(
        "AWS faults on API runs (POST /projects/{projectId}/runs; a 503 or 429 is retried)",
        &[
            "call",
            "fault",
            "injected",
            "answer",
            "retried",
            "runs",
            "messages",
            "queued by the sweeper",
        ],
        &rows,
    );
    println!("{} cases in {:.1?}", rows.len(), started.elapsed());
    for proxy in [&stack.dynamo_proxy, &stack.moto_proxy] {
        assert!(proxy.broken().is_empty(), "{:?}", proxy.broken());
    }
    finish(&problems, rows.len());
}

async fn project_runs(stack: &Stack, workspace_id: &str, project_id: &str) -> Vec<Run> {
    stack
        .direct
        .list_project_runs(
            workspace_id,
            project_id,
            &RunFilter::default(),
            stack.clock.now(),
            0,
            100,
        )
        .await
        .expect("the project's runs")
}

// ---------------------------------------------------------------------------------------
// Notifications
// ---------------------------------------------------------------------------------------

/// The notify function's calls per delivery: (label, operation). A delivery is claimed
/// (`PutItem`, after a `GetItem` of the run's expiry), sent (SES `SendEmail`) and recorded
/// (`UpdateItem`).
const NOTIFY_OPERATIONS: [(&str, &str); 3] = [
    ("claim", "dynamodb:PutItem"),
    ("send", "ses:SendEmail"),
    ("record", "dynamodb:UpdateItem"),
];

/// What a notify case is expected to show: the e-mails sent, and the invocations of the
/// notify function until the event was handled. One e-mail, except where a sent e-mail's
/// fate was lost: SES has no idempotency key, so an e-mail sent again arrives twice.
fn expected_notify(label: &str, kind: Kind) -> (usize, u32) {
    match (label, kind) {
        // The store was unavailable for the whole first invocation: Lambda's retry.
        ("claim", Kind::ThrottleAll) => (1, 2),
        // The claim landed but no answer said so; the retry finds it held by the dead
        // invocation's claim until its lease ran out (the second retry, three minutes on).
        ("claim", Kind::Applied500All) => (1, 3),
        // SES took it but the answer was lost: the SDK's retry sends it again (and the
        // notify service's next attempt, after three lost answers).
        ("send", Kind::Applied500) => (2, 1),
        ("send", Kind::Applied500All) => (4, 1),
        // Sent, but the record of it could not be written (or was refused as if taken
        // over): the handling fails, and the retry that takes the delivery over once the
        // claim's lease ran out sends it again.
        ("record", Kind::ThrottleAll | Kind::ConditionFailed) => (2, 3),
        // The record landed without an answer: the retry finds the delivery done.
        ("record", Kind::Applied500All) => (1, 2),
        _ => (1, 1),
    }
}

/// How many e-mails SES on moto accepted, per recipient.
async fn emails_to(moto: &str) -> HashMap<String, usize> {
    let data: Value = serde_json::from_str(&http_get(&format!("{moto}/moto-api/data.json")).await)
        .expect("moto's data");
    let mut sent = HashMap::new();
    for message in data["ses"]["Message"].as_array().into_iter().flatten() {
        for to in message["destinations"]["ToAddresses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            *sent
                .entry(to.as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_faults_deliver_each_notification() {
    let Some(peers) = aws_peers("aws_faults::notify_faults_deliver_each_notification") else {
        return;
    };
    let started = std::time::Instant::now();
    let stack = Stack::new(&peers).await;
    let workspace_id = "acme";
    stack.workspace(workspace_id).await;
    let state = stack.app_state().await;
    let router = scheduled_runs::http::router(state);
    let executor = stack.aws.executor().await.expect("executor");
    let mut notify = stack.aws.notify_service().await.expect("notify service");
    // The service's own pauses between delivery attempts, shortened as the SDK's are.
    notify.settings.first_backoff = StdDuration::from_millis(10);
    notify.settings.max_backoff = StdDuration::from_millis(40);
    let project_id = published_project(&router, workspace_id).await;
    let runs_path = format!("/api/v1/projects/{project_id}/runs");

    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut recipients = Vec::new();
    for (label, operation) in NOTIFY_OPERATIONS {
        for kind in Kind::API {
            if !kind.fits(operation, true) {
                continue;
            }
            // A finished API run that e-mails a recipient of its own (outside the faults).
            stack.clock.advance(Duration::hours(2));
            let to = format!(
                "n{}-{}@example.com",
                rows.len(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let (status, body) = api(
                &router,
                "POST",
                &runs_path,
                workspace_id,
                Some(json!({"notifications": [{"type": "ALL", "emails": [to]}]})),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            let run_id = body["runId"].as_str().unwrap_or_default().to_owned();
            for message in stack.take_run_messages().await {
                executor.execute(&message).await.expect("execute");
            }
            let event = stack
                .take_events()
                .await
                .into_iter()
                .find(|e| e.run_id == run_id)
                .expect("the run's event");

            // SNS invokes the notify function; Lambda retries a failed invocation after one
            // and two minutes, and the sweeper's outbox publishes a still-pending event
            // again after ten.
            let proxy = stack.proxy(operation);
            let rule = proxy.arm(kind.rule(operation));
            let mut invocations = 0;
            let mut failures = Vec::new();
            let mut delivered = false;
            while invocations < 5 {
                invocations += 1;
                match notify.handle(&event).await {
                    Ok(report) if report.in_progress == 0 => {
                        delivered = true;
                        break;
                    }
                    Ok(_) => failures.push("held by another claim".to_owned()),
                    Err(e) if retryable(&e) => failures.push("store unavailable".to_owned()),
                    Err(e) => {
                        failures.push(format!("not retryable: {e}"));
                        break;
                    }
                }
                stack.clock.advance(match invocations {
                    1 => Duration::minutes(1),
                    2 => Duration::minutes(2),
                    _ => REPUBLISH_EVENTS_AFTER,
                });
            }
            let report = proxy.disarm(rule);
            let records = stack
                .direct
                .list_deliveries(workspace_id, &run_id)
                .await
                .expect("the run's deliveries");

            let mut found = check_rule(report, operation, kind);
            if !delivered {
                found.push(format!("never handled: {failures:?}"));
            }
            if failures.iter().any(|f| f.starts_with("not retryable")) {
                found.push(format!("{failures:?}"));
            }
            if records.len() != 1 || records[0].status != DeliveryStatus::Delivered {
                found.push(format!("recorded {records:?}"));
            }
            let (_, expected_invocations) = expected_notify(label, kind);
            if invocations != expected_invocations {
                found.push(format!(
                    "{invocations} invocations, expected {expected_invocations}"
                ));
            }
            problems.extend(
                found
                    .into_iter()
                    .map(|p| format!("{label} {operation} / {}: {p}", kind.label())),
            );
            rows.push(vec![
                format!("{label} ({operation})"),
                kind.label().to_owned(),
                report.injected.to_string(),
                invocations.to_string(),
                records.first().map_or("none".to_owned(), |r| {
                    format!("{} after {} attempts", r.status.as_str(), r.attempts)
                }),
            ]);
            recipients.push((to, label, operation, kind));
        }
    }
    // What SES accepted, per recipient (one read of moto's state for all cases).
    let sent = emails_to(&stack.moto).await;
    for ((to, label, operation, kind), row) in recipients.iter().zip(rows.iter_mut()) {
        let got = sent.get(to).copied().unwrap_or(0);
        let (emails, _) = expected_notify(label, *kind);
        if got != emails {
            problems.push(format!(
                "{label} {operation} / {}: {got} e-mails sent, expected {emails}",
                kind.label()
            ));
        }
        row.push(got.to_string());
    }
    print_table(
        "AWS faults on notifications (one API run e-mailing one recipient per case)",
        &[
            "call",
            "fault",
            "injected",
            "invocations",
            "delivery",
            "e-mails sent",
        ],
        &rows,
    );
    println!("{} cases in {:.1?}", rows.len(), started.elapsed());
    for proxy in [&stack.dynamo_proxy, &stack.moto_proxy] {
        assert!(proxy.broken().is_empty(), "{:?}", proxy.broken());
    }
    finish(&problems, rows.len());
}

// ---------------------------------------------------------------------------------------
// The schedule path
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Create,
    Update,
    Delete,
}

/// The schedule path's calls: (flow, operation, writes?). Creation records the project's
/// activity (`UpdateItem`), stores the schedule (`TransactWriteItems`), looks for a
/// trigger of that name (`UpdateSchedule`, answered 404), finds or makes the workspace's
/// schedule group and creates the trigger; a change records the activity, stores, then
/// updates the trigger; a deletion records the activity, deletes the trigger, then the
/// schedule.
const SCHEDULE_OPERATIONS: [(Flow, &str, bool); 12] = [
    (Flow::Create, "dynamodb:UpdateItem", true),
    (Flow::Create, "dynamodb:TransactWriteItems", true),
    (Flow::Create, "scheduler:UpdateSchedule", true),
    (Flow::Create, "scheduler:GetScheduleGroup", false),
    (Flow::Create, "scheduler:CreateScheduleGroup", true),
    (Flow::Create, "scheduler:CreateSchedule", true),
    (Flow::Update, "dynamodb:UpdateItem", true),
    (Flow::Update, "dynamodb:TransactWriteItems", true),
    (Flow::Update, "scheduler:UpdateSchedule", true),
    (Flow::Delete, "dynamodb:UpdateItem", true),
    (Flow::Delete, "scheduler:DeleteSchedule", true),
    (Flow::Delete, "dynamodb:TransactWriteItems", true),
];

/// What a schedule-path case is expected to leave: the answer's status, the schedules
/// stored, and the drift reconcile then finds (and repairs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ScheduleExpect {
    status: u16,
    stored: usize,
    drift: Option<&'static str>,
}

fn expected_schedule(flow: Flow, operation: &str, kind: Kind) -> ScheduleExpect {
    let ok = match flow {
        Flow::Create => 201,
        Flow::Update => 200,
        Flow::Delete => 204,
    };
    let done = ScheduleExpect {
        status: ok,
        stored: usize::from(flow != Flow::Delete),
        drift: None,
    };
    // Failed before anything changed: the schedule as it was.
    let unchanged = ScheduleExpect {
        status: 503,
        stored: usize::from(flow != Flow::Create),
        drift: None,
    };
    let failing = matches!(kind, Kind::ThrottleAll | Kind::Applied500All);
    match (flow, operation, kind) {
        // The insert landed though every answer was lost: asked again, the store says so.
        (Flow::Create, "dynamodb:TransactWriteItems", Kind::Applied500All) => done,
        // Refused as a duplicate yet nothing is stored: nothing to go on.
        (Flow::Create, "dynamodb:TransactWriteItems", Kind::ConditionFailed) => unchanged,
        // The trigger was made, its answers lost; the schedule was taken back.
        (Flow::Create, "scheduler:CreateSchedule", Kind::Applied500All) => ScheduleExpect {
            drift: Some("orphaned"),
            ..unchanged
        },
        // Stored, but the trigger still has the old cadence.
        (Flow::Update, "dynamodb:TransactWriteItems", Kind::Applied500All)
        | (Flow::Update, "scheduler:UpdateSchedule", Kind::ThrottleAll) => ScheduleExpect {
            status: 503,
            stored: 1,
            drift: Some("drifted"),
        },
        // The trigger took the change before every answer was lost.
        (Flow::Update, "scheduler:UpdateSchedule", Kind::Applied500All) => ScheduleExpect {
            status: 503,
            stored: 1,
            drift: None,
        },
        // The trigger is gone, the schedule stays.
        (Flow::Delete, "scheduler:DeleteSchedule", Kind::Applied500All) => ScheduleExpect {
            drift: Some("missing"),
            ..unchanged
        },
        // The schedule is gone, its trigger was put back.
        (Flow::Delete, "dynamodb:TransactWriteItems", Kind::Applied500All) => ScheduleExpect {
            status: 503,
            stored: 0,
            drift: Some("orphaned"),
        },
        _ if failing => unchanged,
        _ => done,
    }
}

/// A call through the real router (the API function's), as the workspace's admin.
async fn api(
    router: &axum::Router,
    method: &str,
    path: &str,
    workspace_id: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("x-test-workspace", workspace_id);
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map_or_else(String::new, |b| b.to_string());
    let response = router
        .clone()
        .oneshot(
            request
                .body(axum::body::Body::from(body))
                .expect("a request"),
        )
        .await
        .expect("the router answers");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the answer's body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Whether an answer carries the SDK's or an emulator's text.
fn leaks(body: &Value) -> bool {
    let text = body.to_string();
    [
        "dynamodb",
        "scheduler",
        "sqs",
        "Exception",
        "Throttl",
        "InternalServer",
        "HTTP",
        "dispatch failure",
        "timeout",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// A published project (a version without cells) of the workspace.
async fn published_project(router: &axum::Router, workspace_id: &str) -> String {
    let (status, project) = api(
        router,
        "POST",
        "/api/v1/projects",
        workspace_id,
        Some(json!({"title": "Scheduled"})),
    )
    .await;
    assert_eq!(status, 201, "{project}");
    let project_id = project["projectId"].as_str().unwrap_or_default().to_owned();
    for (method, path, body) in [
        (
            "PUT",
            format!("/api/v1/projects/{project_id}/draft"),
            Some(json!({"cells": [], "app": {"cells": []}})),
        ),
        (
            "POST",
            format!("/api/v1/projects/{project_id}/publish"),
            None,
        ),
    ] {
        let (status, body) = api(router, method, &path, workspace_id, body).await;
        assert_eq!(status, 200, "{method} {path}: {body}");
    }
    project_id
}

/// A trigger as moto has it: (id, enabled, expression, timezone).
type Trigger = (String, bool, String, String);

impl Stack {
    /// The workspace's EventBridge schedules, read back from moto past the proxy.
    async fn triggers(&self, workspace_id: &str) -> Vec<Trigger> {
        let group = self.group(workspace_id);
        let listed = match self
            .scheduler
            .list_schedules()
            .group_name(&group)
            .send()
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                let e = e.into_service_error();
                assert!(e.is_resource_not_found_exception(), "ListSchedules: {e:?}");
                return Vec::new();
            }
        };
        let mut triggers = Vec::new();
        for summary in listed.schedules() {
            let name = summary.name().unwrap_or_default();
            let got = self
                .scheduler
                .get_schedule()
                .group_name(&group)
                .name(name)
                .send()
                .await
                .expect("GetSchedule of a listed schedule");
            triggers.push((
                name.to_owned(),
                got.state() == Some(&scheduler_sdk::types::ScheduleState::Enabled),
                got.schedule_expression().unwrap_or_default().to_owned(),
                got.schedule_expression_timezone()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
        triggers.sort();
        triggers
    }

    /// The triggers the workspace's stored schedules call for, read past the proxy.
    async fn expected_triggers(&self, workspace_id: &str) -> Vec<Trigger> {
        let stored = self
            .direct
            .list_workspace_schedules(
                workspace_id,
                &ScheduleFilter::default(),
                &PageRequest::first(100),
            )
            .await
            .expect("list the stored schedules");
        let mut expected: Vec<Trigger> = stored
            .items
            .iter()
            .map(|s| {
                (
                    s.schedule_id.clone(),
                    // No case archives a project: active is enabled.
                    s.enabled,
                    s.cadence
                        .compile()
                        .expect("stored cadences compile")
                        .eventbridge_expression(),
                    s.timezone.clone(),
                )
            })
            .collect();
        expected.sort();
        expected
    }
}

/// What happened to one schedule-path case.
#[derive(Debug)]
struct ScheduleObserved {
    rule: RuleReport,
    status: u16,
    code: String,
    leaked: bool,
    stored: usize,
    /// Whether store and triggers agreed right after the request.
    agreed: bool,
}

fn cadence_body(hour: u32, timezone: &str) -> Value {
    json!({"cadence": {"kind": "DAILY", "hour": hour, "minute": 0}, "timezone": timezone})
}

async fn schedule_case(
    stack: &Stack,
    router: &axum::Router,
    workspace_id: &str,
    flow: Flow,
    operation: &str,
    kind: Kind,
) -> ScheduleObserved {
    // The workspace, its published project and, unless the case creates it, its schedule
    // — all before the fault.
    stack.workspace(workspace_id).await;
    let project_id = published_project(router, workspace_id).await;
    let schedules = format!("/api/v1/projects/{project_id}/schedules");
    let existing = if flow == Flow::Create {
        None
    } else {
        let (status, body) = api(
            router,
            "POST",
            &schedules,
            workspace_id,
            Some(cadence_body(9, "America/New_York")),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        Some(body["scheduleId"].as_str().unwrap_or_default().to_owned())
    };

    // Cases run side by side: the rule takes only this workspace's requests (its id is in
    // every key, group name and path of them).
    let proxy = stack.proxy(operation);
    let rule = proxy.arm(kind.rule(operation).containing(workspace_id));
    let (status, body) = match (&flow, &existing) {
        (Flow::Create, _) => {
            api(
                router,
                "POST",
                &schedules,
                workspace_id,
                Some(cadence_body(9, "America/New_York")),
            )
            .await
        }
        (Flow::Update, Some(id)) => {
            api(
                router,
                "PATCH",
                &format!("{schedules}/{id}"),
                workspace_id,
                Some(cadence_body(17, "Europe/Berlin")),
            )
            .await
        }
        (Flow::Delete, Some(id)) => {
            api(
                router,
                "DELETE",
                &format!("{schedules}/{id}"),
                workspace_id,
                None,
            )
            .await
        }
        _ => unreachable!("update and delete cases have a schedule"),
    };
    let report = proxy.disarm(rule);
    let stored = stack.expected_triggers(workspace_id).await;
    let triggers = stack.triggers(workspace_id).await;
    ScheduleObserved {
        rule: report,
        status,
        code: body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        leaked: leaks(&body),
        stored: stored.len(),
        agreed: stored == triggers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_path_faults_leave_triggers_that_reconcile_brings_into_agreement() {
    let Some(peers) = aws_peers(
        "aws_faults::schedule_path_faults_leave_triggers_that_reconcile_brings_into_agreement",
    ) else {
        return;
    };
    let started = std::time::Instant::now();
    let stack = Arc::new(Stack::new(&peers).await);
    let state = stack.app_state().await;
    let router = scheduled_runs::http::router(state);

    // One workspace per case (the first schedule of a workspace makes its group), four
    // cases at a time.
    let mut plan = Vec::new();
    for (flow, operation, write) in SCHEDULE_OPERATIONS {
        for kind in Kind::API {
            if kind.fits(operation, write) {
                plan.push((format!("w{:03}", plan.len()), flow, operation, kind));
            }
        }
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (workspace_id, flow, operation, kind)) in plan.iter().cloned().enumerate() {
        let (stack, router, permits) = (stack.clone(), router.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("permits");
            let seen = schedule_case(&stack, &router, &workspace_id, flow, operation, kind).await;
            (index, seen)
        });
    }
    let mut observed: Vec<Option<ScheduleObserved>> = plan.iter().map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (index, seen) = done.expect("a case panicked");
        observed[index] = Some(seen);
    }

    // Reconcile repairs what it finds, and a second pass finds nothing.
    let reconcile = stack.aws.reconcile().expect("reconcile service");
    let repaired = reconcile.reconcile(false).await.expect("reconcile");
    assert!(repaired.failed.is_empty(), "{:?}", repaired.failed);
    let again = reconcile.reconcile(false).await.expect("reconcile again");
    assert!(again.is_clean(), "{again:?}");

    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for ((workspace_id, flow, operation, kind), seen) in plan.iter().zip(observed) {
        let seen = seen.expect("every case ran");
        let expect = expected_schedule(*flow, operation, *kind);
        let ours = |t: &TriggerRef| t.workspace_id == *workspace_id;
        let drift: Vec<&str> = [
            (
                "missing",
                repaired.missing.iter().filter(|t| ours(t)).count(),
            ),
            (
                "drifted",
                repaired.drifted.iter().filter(|d| ours(&d.trigger)).count(),
            ),
            (
                "orphaned",
                repaired.orphaned.iter().filter(|t| ours(t)).count(),
            ),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, _)| *what)
        .collect();
        let expected = stack.expected_triggers(workspace_id).await;
        let triggers = stack.triggers(workspace_id).await;
        let mut found = check_rule(seen.rule, operation, *kind);
        let mut check = |ok: bool, what: String| {
            if !ok {
                found.push(what);
            }
        };
        check(
            (200..300).contains(&seen.status)
                || (seen.status == 503 && seen.code == "SERVICE_UNAVAILABLE"),
            format!("answered {} {}", seen.status, seen.code),
        );
        check(!seen.leaked, "the answer carries backend text".into());
        check(
            seen.status == expect.status,
            format!("answered {}, expected {}", seen.status, expect.status),
        );
        check(
            seen.stored == expect.stored,
            format!("{} stored, expected {}", seen.stored, expect.stored),
        );
        check(
            drift == expect.drift.into_iter().collect::<Vec<_>>(),
            format!("reconcile found {drift:?}, expected {:?}", expect.drift),
        );
        check(
            seen.agreed == drift.is_empty(),
            format!("agreed {} but reconcile found {drift:?}", seen.agreed),
        );
        check(
            expected == triggers,
            format!("after reconcile: stored {expected:?}, triggers {triggers:?}"),
        );
        problems.extend(
            found
                .into_iter()
                .map(|p| format!("{flow:?} {operation} / {}: {p}", kind.label())),
        );
        rows.push(vec![
            format!("{flow:?}"),
            (*operation).to_owned(),
            kind.label().to_owned(),
            seen.rule.injected.to_string(),
            format!("{} {}", seen.status, seen.code).trim().to_owned(),
            seen.stored.to_string(),
            if drift.is_empty() {
                "none".to_owned()
            } else {
                drift.join(", ")
            },
            if expected == triggers {
                "agree".to_owned()
            } else {
                "DISAGREE".to_owned()
            },
        ]);
    }
    print_table(
        "AWS faults on the schedule path (one workspace per case; reconcile after all)",
        &[
            "flow",
            "operation",
            "fault",
            "injected",
            "answer",
            "stored",
            "reconcile found",
            "after reconcile",
        ],
        &rows,
    );
    println!(
        "reconcile: {} schedules and {} triggers checked; repaired {} missing, {} drifted, \
         {} orphaned; a second pass found nothing",
        repaired.schedules_checked,
        repaired.triggers_checked,
        repaired.counts.missing,
        repaired.counts.drifted,
        repaired.counts.orphaned
    );
    println!("{} cases in {:.1?}", rows.len(), started.elapsed());
    for proxy in [&stack.dynamo_proxy, &stack.moto_proxy] {
        assert!(proxy.broken().is_empty(), "{:?}", proxy.broken());
    }
    finish(&problems, rows.len());
}
