//! The AWS deployment wired together, for the Lambda functions and the operator CLI:
//! configuration read once from the environment into one typed struct, the SDK
//! configuration loaded once per process, and each function's services built from exactly
//! the clients it needs. Endpoints come from the standard `AWS_ENDPOINT_URL*` variables, so
//! the same code runs against AWS and against DynamoDB Local and moto.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::SharedInterceptor;
use chrono::Duration;
use sha2::{Digest, Sha256};

use crate::adapters::aws::connectors::AwsConnectorFactory;
use crate::adapters::aws::dynamodb::DynamoStore;
use crate::adapters::aws::scheduler::{SchedulerConfig, SchedulerTriggers};
use crate::adapters::aws::ses::{SesDeliverer, SesNotConfigured};
use crate::adapters::aws::sns::SnsEventPublisher;
use crate::adapters::aws::sqs::SqsRunQueue;
use crate::adapters::local::secret_box::LocalSecretBox;
use crate::adapters::notify::http::GuardedHttp;
use crate::adapters::notify::slack::SlackDeliverer;
use crate::adapters::notify::webhook::WebhookDeliverer;
use crate::domain::ssrf::UrlPolicy;
use crate::http::AppState;
use crate::http::auth::{ClaimNames, IdentityResolver};
use crate::ports::{Clock, Deliverer, SystemClock};
use crate::services::connections::ConnectionService;
use crate::services::dispatch::{DispatchService, DispatchSettings};
use crate::services::events::EventOutbox;
use crate::services::executor::{ExecutorService, ExecutorSettings};
use crate::services::integrations::IntegrationService;
use crate::services::maintenance::{MaintenanceService, MaintenanceSettings};
use crate::services::notify::{Deliverers, NotificationRules, NotifyService, NotifySettings};
use crate::services::projects::ProjectService;
use crate::services::reconcile::ReconcileService;
use crate::services::runs::{RunRateLimits, RunService};
use crate::services::schedules::ScheduleService;
use crate::services::workspaces::WorkspaceService;

/// How long a notify invocation holds a delivery it claimed. Longer than the notify
/// function's timeout (120 s in `template.yaml`), so a live invocation is never overtaken;
/// short enough that Lambda's retry of an invocation that died (one minute after it failed)
/// finds the dead claim expired and takes the delivery over.
pub const NOTIFY_LEASE: Duration = Duration::seconds(150);

/// A run event still pending this long after its run ended is published again by the
/// sweeper: its publish failed or died, or the notify function never handled it (Lambda
/// retries a failed notify invocation after one and three minutes).
pub const REPUBLISH_EVENTS_AFTER: Duration = Duration::minutes(10);

/// How every SDK client of the deployment waits and retries: one place for all of them.
///
/// Without it a client would wait for an answer for as long as the Lambda runs (the SDK
/// sets only a connect timeout), so one call to a dependency that accepts a connection and
/// never answers would use up the whole invocation and end it with Lambda's timeout
/// instead of a failure the function reports (a 503, a retried fire, a redelivered
/// message). The bounds sit well inside the shortest function timeout (30 s, the API
/// behind API Gateway's 30 s limit), so the function still answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdkCallSettings {
    /// Establishing the TCP (and TLS) connection.
    pub connect_timeout: std::time::Duration,
    /// One HTTP attempt, from sending the request to the end of the answer. DynamoDB,
    /// Scheduler, SQS and SNS answer in milliseconds; a hung attempt is retried.
    pub attempt_timeout: std::time::Duration,
    /// The whole call: every attempt and the pauses between them.
    pub operation_timeout: std::time::Duration,
    /// Attempts per call, the first included (the SDK's standard retry mode: throttling,
    /// 5xx, timeouts and transport failures are retried with jittered exponential backoff,
    /// within the client-side retry quota).
    pub max_attempts: u32,
    /// The longest pause before the first retry; each further retry may wait twice as long.
    pub initial_backoff: std::time::Duration,
}

impl Default for SdkCallSettings {
    fn default() -> Self {
        SdkCallSettings {
            connect_timeout: std::time::Duration::from_millis(3_100),
            attempt_timeout: std::time::Duration::from_secs(5),
            operation_timeout: std::time::Duration::from_secs(12),
            max_attempts: 3,
            initial_backoff: std::time::Duration::from_secs(1),
        }
    }
}

impl SdkCallSettings {
    pub fn timeout_config(&self) -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build()
    }

    pub fn retry_config(&self) -> aws_config::retry::RetryConfig {
        aws_config::retry::RetryConfig::standard()
            .with_max_attempts(self.max_attempts.max(1))
            .with_initial_backoff(self.initial_backoff)
    }
}

/// A setting that is missing or unusable; functions fail at start-up with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the environment variable {0} must be set")]
    Missing(&'static str),
    #[error("the environment variable {name} is invalid: {message}")]
    Invalid { name: &'static str, message: String },
    #[error("{0}")]
    Startup(String),
}

/// Installs the functions' log subscriber: one line per event on stdout, JSON when Lambda's
/// logging controls ask for it (`AWS_LAMBDA_LOG_FORMAT=JSON`, as `template.yaml` sets),
/// at the level `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`) names, `INFO` otherwise — what
/// `lambda_runtime`'s default subscriber does, with a plain level instead of an `EnvFilter`:
/// per-module directives are not needed in Lambda, and the filter's regex engine is a
/// quarter of a megabyte of every function binary (BENCHMARKS.md, requirement 1).
pub fn init_function_logging() {
    use tracing_subscriber::filter::LevelFilter;
    let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let level = var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| var("RUST_LOG"))
        .and_then(|level| level.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let logs = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level);
    // Fails only when a subscriber is installed already, which then keeps logging.
    let _installed = if json {
        logs.json().try_init()
    } else {
        logs.try_init()
    };
}

pub use crate::adapters::aws::https::https_client;

/// Every setting of the AWS deployment. Each function requires the ones it uses.
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    pub table: Option<String>,
    pub run_queue_url: Option<String>,
    pub run_events_topic_arn: Option<String>,
    pub sealing_key_secret_arn: Option<String>,
    pub retention_days: i64,
    /// Base of run links; `None`: derived from the request (API) or unknown.
    pub public_url: Option<String>,
    pub claims: ClaimNames,
    pub schedule_group_prefix: Option<String>,
    pub dispatch_function_arn: Option<String>,
    pub scheduler_role_arn: Option<String>,
    pub scheduler_dlq_arn: Option<String>,
    pub flexible_window_minutes: u32,
    /// The verified SES sender of notification e-mail; `None`: e-mail is not configured
    /// and every e-mail delivery is recorded as failed with that reason.
    pub ses_from: Option<String>,
    /// Timeouts and retries of every SDK client.
    pub calls: SdkCallSettings,
    /// What a function's SDK clients take from the environment Lambda gives it.
    pub sdk: FunctionSdkEnvironment,
}

/// The SDK settings of a Lambda function's environment: its region and, for runs against
/// emulators, endpoint overrides (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`).
/// Credentials are the execution role's, which Lambda puts in the environment too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionSdkEnvironment {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// By the service's variable suffix (`DYNAMODB`, `SECRETS_MANAGER`, …).
    pub service_endpoint_urls: std::collections::BTreeMap<&'static str, String>,
}

/// The services the functions call, by the suffix of their `AWS_ENDPOINT_URL_<SERVICE>`.
const FUNCTION_SERVICES: [&str; 6] = [
    "DYNAMODB",
    "SQS",
    "SNS",
    "SCHEDULER",
    "SESV2",
    "SECRETS_MANAGER",
];

impl aws_types::service_config::LoadServiceConfig for FunctionSdkEnvironment {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        let service = key
            .service_id()
            .to_ascii_uppercase()
            .replace([' ', '-'], "_");
        self.service_endpoint_urls.get(service.as_str()).cloned()
    }
}

impl AwsSettings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<AwsSettings, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (tests pass a map).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<AwsSettings, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &'static str, default: i64, range: std::ops::RangeInclusive<i64>| {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| ConfigError::Invalid {
                        name,
                        message: format!("expected a whole number in {range:?}, got {v:?}"),
                    }),
            }
        };
        let defaults = ClaimNames::default();
        Ok(AwsSettings {
            table: get("SCHEDULED_RUNS_TABLE"),
            run_queue_url: get("SCHEDULED_RUNS_RUN_QUEUE_URL"),
            run_events_topic_arn: get("SCHEDULED_RUNS_RUN_EVENTS_TOPIC_ARN"),
            sealing_key_secret_arn: get("SCHEDULED_RUNS_SEALING_KEY_SECRET_ARN"),
            retention_days: number("SCHEDULED_RUNS_RETENTION_DAYS", 90, 1..=3_650)?,
            public_url: get("SCHEDULED_RUNS_PUBLIC_URL")
                .map(|u| u.trim_end_matches('/').to_owned()),
            claims: ClaimNames {
                workspace_id: get("SCHEDULED_RUNS_WORKSPACE_CLAIM")
                    .unwrap_or(defaults.workspace_id),
                workspace_role: get("SCHEDULED_RUNS_WORKSPACE_ROLE_CLAIM")
                    .unwrap_or(defaults.workspace_role),
                email: get("SCHEDULED_RUNS_EMAIL_CLAIM").unwrap_or(defaults.email),
            },
            schedule_group_prefix: get("SCHEDULED_RUNS_SCHEDULE_GROUP_PREFIX"),
            dispatch_function_arn: get("SCHEDULED_RUNS_DISPATCH_FUNCTION_ARN"),
            scheduler_role_arn: get("SCHEDULED_RUNS_SCHEDULER_ROLE_ARN"),
            scheduler_dlq_arn: get("SCHEDULED_RUNS_SCHEDULER_DLQ_ARN"),
            flexible_window_minutes: u32::try_from(number(
                "SCHEDULED_RUNS_FLEXIBLE_WINDOW_MINUTES",
                i64::from(SchedulerConfig::DEFAULT_FLEXIBLE_WINDOW_MINUTES),
                1..=1_440,
            )?)
            .unwrap_or(SchedulerConfig::DEFAULT_FLEXIBLE_WINDOW_MINUTES),
            ses_from: get("SCHEDULED_RUNS_SES_FROM"),
            calls: SdkCallSettings::default(),
            sdk: FunctionSdkEnvironment {
                region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
                endpoint_url: get("AWS_ENDPOINT_URL"),
                service_endpoint_urls: FUNCTION_SERVICES
                    .into_iter()
                    .filter_map(|service| {
                        get(&format!("AWS_ENDPOINT_URL_{service}")).map(|url| (service, url))
                    })
                    .collect(),
            },
        })
    }

    fn require<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, ConfigError> {
        value.as_deref().ok_or(ConfigError::Missing(name))
    }

    pub fn retention(&self) -> Duration {
        Duration::days(self.retention_days)
    }

    pub fn scheduler_config(&self) -> Result<SchedulerConfig, ConfigError> {
        let mut config = SchedulerConfig::new(
            Self::require(
                &self.schedule_group_prefix,
                "SCHEDULED_RUNS_SCHEDULE_GROUP_PREFIX",
            )?,
            Self::require(
                &self.dispatch_function_arn,
                "SCHEDULED_RUNS_DISPATCH_FUNCTION_ARN",
            )?,
            Self::require(
                &self.scheduler_role_arn,
                "SCHEDULED_RUNS_SCHEDULER_ROLE_ARN",
            )?,
            Self::require(&self.scheduler_dlq_arn, "SCHEDULED_RUNS_SCHEDULER_DLQ_ARN")?,
        );
        config.flexible_window_minutes = self.flexible_window_minutes;
        Ok(config)
    }
}

/// The key of the sealing box, derived (SHA-256) from the generated secret's value; a
/// value shorter than 32 characters is refused. Public so tools and tests can seal what
/// the functions open.
pub fn sealing_box_from_secret(value: &str) -> Result<LocalSecretBox, ConfigError> {
    if value.len() < 32 {
        return Err(ConfigError::Startup(
            "the sealing key secret is shorter than 32 characters".into(),
        ));
    }
    let key = Sha256::digest(value.as_bytes());
    LocalSecretBox::new(&key).map_err(|e| ConfigError::Startup(e.to_string()))
}

/// The dispatch function's services.
pub struct DispatchServices {
    pub dispatch: DispatchService,
    /// Sweeper, retention and auto-archive.
    pub maintenance: MaintenanceService,
    /// Publishes run events still pending (run on every sweep).
    pub outbox: EventOutbox,
}

/// The SDK configuration, loaded once per process, and the settings.
pub struct Aws {
    pub sdk: aws_config::SdkConfig,
    pub settings: AwsSettings,
    pub clock: Arc<dyn Clock>,
    /// Installed on every client built from here (request counting in benchmarks).
    pub interceptors: Vec<SharedInterceptor>,
}

/// A client of one SDK built from the shared configuration, the deployment's timeouts and
/// retries (`AwsSettings::calls`, whatever the shared configuration says) and
/// `Aws::interceptors`.
macro_rules! client {
    ($aws:expr, $sdk:ident) => {{
        let mut config = $sdk::config::Builder::from(&$aws.sdk);
        config.set_timeout_config(Some($aws.settings.calls.timeout_config()));
        config.set_retry_config(Some($aws.settings.calls.retry_config()));
        for interceptor in &$aws.interceptors {
            config.push_interceptor(interceptor.clone());
        }
        $sdk::Client::from_conf(config.build())
    }};
}

impl Aws {
    /// The SDK configuration of a Lambda function: region, credentials and endpoint
    /// overrides from its environment, nothing else. The general loader (`load`) also
    /// tries profile files, SSO, web identity, container and instance credentials, none of
    /// which a function uses; leaving it out keeps that code (and its STS client) out of the
    /// function binaries and the first invocation free of its look-ups.
    pub fn for_function(settings: AwsSettings) -> Result<Aws, ConfigError> {
        use aws_config::environment::EnvironmentVariableCredentialsProvider;
        use aws_types::region::Region;
        use aws_types::sdk_config::SharedCredentialsProvider;
        let region = settings
            .sdk
            .region
            .clone()
            .ok_or(ConfigError::Missing("AWS_REGION"))?;
        let mut sdk = aws_types::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(SharedCredentialsProvider::new(
                EnvironmentVariableCredentialsProvider::new(),
            ))
            .http_client(https_client())
            .service_config(settings.sdk.clone());
        sdk.set_endpoint_url(settings.sdk.endpoint_url.clone());
        Ok(Aws {
            sdk: sdk.build(),
            settings,
            clock: Arc::new(SystemClock),
            interceptors: Vec::new(),
        })
    }

    /// Loads the SDK configuration the way the AWS CLI does (environment, profiles, SSO,
    /// instance and container credentials): for the operator CLI.
    pub async fn load(settings: AwsSettings) -> Aws {
        Aws {
            sdk: aws_config::defaults(BehaviorVersion::latest())
                .http_client(https_client())
                .load()
                .await,
            settings,
            clock: Arc::new(SystemClock),
            interceptors: Vec::new(),
        }
    }

    pub fn store(&self) -> Result<Arc<DynamoStore>, ConfigError> {
        let table = AwsSettings::require(&self.settings.table, "SCHEDULED_RUNS_TABLE")?;
        Ok(Arc::new(DynamoStore::new(
            client!(self, aws_sdk_dynamodb),
            table,
        )))
    }

    pub fn queue(&self) -> Result<Arc<SqsRunQueue>, ConfigError> {
        let url =
            AwsSettings::require(&self.settings.run_queue_url, "SCHEDULED_RUNS_RUN_QUEUE_URL")?;
        Ok(Arc::new(SqsRunQueue::new(client!(self, aws_sdk_sqs), url)))
    }

    /// The run-event publisher of every function that ends runs: SNS. The write that ends
    /// a run sets its `event_pending`; the notify function clears it once it handled the
    /// event (as the embedded bus does), and the sweeper publishes whatever is still
    /// pending (`outbox`). Clearing at the consumer keeps the run path at three writes and
    /// covers an event lost between SNS and the notify function too.
    pub fn events(&self) -> Result<Arc<SnsEventPublisher>, ConfigError> {
        let arn = AwsSettings::require(
            &self.settings.run_events_topic_arn,
            "SCHEDULED_RUNS_RUN_EVENTS_TOPIC_ARN",
        )?;
        Ok(Arc::new(SnsEventPublisher::new(
            client!(self, aws_sdk_sns),
            arn,
        )))
    }

    /// The sweeper's part of the outbox: publishes the events still pending a while after
    /// their run ended, through the same publisher.
    pub fn outbox(&self, store: &Arc<DynamoStore>) -> Result<EventOutbox, ConfigError> {
        Ok(EventOutbox {
            outbox: store.clone(),
            publisher: self.events()?,
            clock: self.clock.clone(),
            republish_after: REPUBLISH_EVENTS_AFTER,
        })
    }

    pub fn triggers(&self) -> Result<Arc<SchedulerTriggers>, ConfigError> {
        Ok(Arc::new(SchedulerTriggers::new(
            client!(self, aws_sdk_scheduler),
            self.settings.scheduler_config()?,
        )))
    }

    /// The box that seals connection credentials and notification secrets: its key is
    /// derived from a Secrets Manager secret, read once at start-up.
    pub async fn sealing_box(&self) -> Result<Arc<LocalSecretBox>, ConfigError> {
        let arn = AwsSettings::require(
            &self.settings.sealing_key_secret_arn,
            "SCHEDULED_RUNS_SEALING_KEY_SECRET_ARN",
        )?;
        let secret = client!(self, aws_sdk_secretsmanager)
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                ConfigError::Startup(format!(
                    "cannot read the sealing key secret: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ))
            })?;
        sealing_box_from_secret(secret.secret_string().unwrap_or_default()).map(Arc::new)
    }

    /// Everything the API function serves.
    pub async fn app_state(
        &self,
        identity: Arc<dyn IdentityResolver>,
        public_url: String,
    ) -> Result<AppState, ConfigError> {
        let store = self.store()?;
        let queue = self.queue()?;
        let triggers = self.triggers()?;
        let secrets = self.sealing_box().await?;
        let clock = self.clock.clone();
        let dispatch_settings = DispatchSettings {
            retention: self.settings.retention(),
            ..DispatchSettings::default()
        };
        let events = self.events()?;
        let notifications = Arc::new(NotificationRules {
            workspaces: store.clone(),
            projects: store.clone(),
            integrations: store.clone(),
            deliveries: store.clone(),
            url_policy: UrlPolicy::default(),
        });
        Ok(AppState {
            projects: Arc::new(ProjectService {
                workspaces: store.clone(),
                projects: store.clone(),
                schedules: store.clone(),
                connections: store.clone(),
                triggers: triggers.clone(),
                clock: clock.clone(),
            }),
            schedules: Arc::new(ScheduleService {
                workspaces: store.clone(),
                projects: store.clone(),
                schedules: store.clone(),
                runs: store.clone(),
                triggers,
                clock: clock.clone(),
                notifications: notifications.clone(),
            }),
            dispatch: Arc::new(self.dispatch_with(
                store.clone(),
                queue.clone(),
                events.clone(),
                dispatch_settings,
            )),
            runs: Arc::new(RunService {
                projects: store.clone(),
                runs: store.clone(),
                results: store.clone(),
                queue,
                rate_limits: store.clone(),
                events,
                notifications,
                clock: clock.clone(),
                limits: RunRateLimits::default(),
                retention: self.settings.retention(),
            }),
            connections: Arc::new(ConnectionService {
                connections: store.clone(),
                secrets: secrets.clone(),
                clock: clock.clone(),
            }),
            integrations: Arc::new(IntegrationService {
                workspaces: store.clone(),
                integrations: store.clone(),
                secrets,
                clock: clock.clone(),
                url_policy: UrlPolicy::default(),
            }),
            workspaces: Arc::new(WorkspaceService {
                workspaces: store,
                clock,
            }),
            identity,
            public_url,
        })
    }

    fn dispatch_with(
        &self,
        store: Arc<DynamoStore>,
        queue: Arc<SqsRunQueue>,
        events: Arc<SnsEventPublisher>,
        settings: DispatchSettings,
    ) -> DispatchService {
        DispatchService {
            path: store.clone(),
            projects: store.clone(),
            schedules: store.clone(),
            runs: store,
            queue,
            events,
            clock: self.clock.clone(),
            settings,
        }
    }

    /// The dispatch function's services: dispatch, and the maintenance ticks (the sweeper
    /// with the run-event outbox, the daily jobs).
    pub fn dispatch_services(&self) -> Result<DispatchServices, ConfigError> {
        let store = self.store()?;
        let queue = self.queue()?;
        let events = self.events()?;
        let outbox = self.outbox(&store)?;
        let dispatch = self.dispatch_with(
            store.clone(),
            queue.clone(),
            events.clone(),
            DispatchSettings {
                retention: self.settings.retention(),
                ..DispatchSettings::default()
            },
        );
        let executor_defaults = ExecutorSettings::new(std::env::temp_dir());
        let maintenance = MaintenanceService {
            workspaces: store.clone(),
            projects: store.clone(),
            schedules: store.clone(),
            runs: store,
            queue,
            triggers: self.triggers()?,
            events,
            clock: self.clock.clone(),
            settings: MaintenanceSettings {
                run_timeout: executor_defaults.run_timeout,
                max_attempts: executor_defaults.max_attempts,
                ..MaintenanceSettings::default()
            },
        };
        Ok(DispatchServices {
            dispatch,
            maintenance,
            outbox,
        })
    }

    /// The execute function's executor. Runs' working directories live under the
    /// function's `/tmp`.
    pub async fn executor(&self) -> Result<ExecutorService, ConfigError> {
        let store = self.store()?;
        let events = self.events()?;
        Ok(ExecutorService {
            path: store.clone(),
            runs: store.clone(),
            cache: store,
            connectors: Arc::new(AwsConnectorFactory::new(client!(
                self,
                aws_sdk_secretsmanager
            ))),
            secrets: self.sealing_box().await?,
            events,
            clock: self.clock.clone(),
            settings: ExecutorSettings {
                // A lease renewal is a write: runs shorter than the interval (most) make
                // none, and a crashed attempt is still taken over within a minute.
                watch_interval: std::time::Duration::from_secs(20),
                lease: Duration::seconds(60),
                ..ExecutorSettings::new(std::env::temp_dir().join("scheduled-runs"))
            },
            plans: Default::default(),
        })
    }

    /// The notify function's service: run events to deliveries. E-mail through SES from
    /// `SCHEDULED_RUNS_SES_FROM` (without it, e-mail deliveries are recorded as failed
    /// with the reason), Slack and webhooks through the SSRF-guarded client with the
    /// strict policy (never loopback: inside Lambda, loopback is the Runtime API), and the
    /// sealing box for the workspace's Slack URLs and signing secret.
    pub async fn notify_service(&self) -> Result<NotifyService, ConfigError> {
        let public_url =
            AwsSettings::require(&self.settings.public_url, "SCHEDULED_RUNS_PUBLIC_URL")?;
        let store = self.store()?;
        let email: Arc<dyn Deliverer> = match &self.settings.ses_from {
            Some(from) => Arc::new(SesDeliverer::new(client!(self, aws_sdk_sesv2), from)),
            None => Arc::new(SesNotConfigured),
        };
        let http = GuardedHttp::new(UrlPolicy::default());
        Ok(NotifyService {
            workspaces: store.clone(),
            projects: store.clone(),
            runs: store.clone(),
            deliveries: store.clone(),
            integrations: store,
            secrets: self.sealing_box().await?,
            deliverers: Deliverers {
                email,
                slack: Arc::new(SlackDeliverer::new(http.clone())),
                // Signature timestamps are wall-clock time: receivers compare them with theirs.
                webhook: Arc::new(WebhookDeliverer::new(http, Arc::new(SystemClock))),
            },
            clock: self.clock.clone(),
            settings: NotifySettings {
                lease: NOTIFY_LEASE,
                ..NotifySettings::new(public_url)
            },
        })
    }

    /// `reconcile` against DynamoDB and EventBridge Scheduler.
    pub fn reconcile(&self) -> Result<ReconcileService, ConfigError> {
        Ok(ReconcileService::new(self.store()?, self.triggers()?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<AwsSettings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AwsSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn a_function_takes_region_and_endpoints_from_its_environment() {
        use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
        let missing = settings(&[]).and_then(Aws::for_function).err();
        assert_eq!(missing, Some(ConfigError::Missing("AWS_REGION")));
        let s = settings(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:9999"),
        ])
        .expect("valid");
        let endpoint = |service: &str| {
            let key = ServiceConfigKey::builder()
                .service_id(service)
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .expect("a key");
            s.sdk.load_config(key)
        };
        assert_eq!(
            endpoint("DynamoDB").as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(
            endpoint("Secrets Manager").as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(endpoint("SQS"), None);
        // Only the services the functions call are read.
        assert_eq!(endpoint("Lambda"), None);
        let aws = Aws::for_function(s).expect("configured");
        assert_eq!(aws.sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert!(aws.sdk.http_client().is_some());
        assert!(aws.sdk.credentials_provider().is_some());
    }

    #[test]
    fn defaults_and_overrides() {
        let s = settings(&[]).expect("empty is fine until something is required");
        assert_eq!(s.retention_days, 90);
        assert_eq!(s.flexible_window_minutes, 5);
        assert_eq!(s.claims.workspace_id, "workspace_id");
        let s = settings(&[
            ("SCHEDULED_RUNS_RETENTION_DAYS", "30"),
            ("SCHEDULED_RUNS_WORKSPACE_CLAIM", "custom:workspace_id"),
            ("SCHEDULED_RUNS_PUBLIC_URL", "https://runs.example.com/"),
        ])
        .expect("valid");
        assert_eq!(s.retention_days, 30);
        assert_eq!(s.claims.workspace_id, "custom:workspace_id");
        assert_eq!(s.public_url.as_deref(), Some("https://runs.example.com"));
        // The template passes the SES sender through even when it is empty.
        assert_eq!(
            settings(&[("SCHEDULED_RUNS_SES_FROM", "")])
                .ok()
                .and_then(|s| s.ses_from),
            None
        );
        assert_eq!(
            settings(&[("SCHEDULED_RUNS_SES_FROM", "runs@example.com")])
                .ok()
                .and_then(|s| s.ses_from)
                .as_deref(),
            Some("runs@example.com")
        );
    }

    #[test]
    fn sdk_calls_are_bounded_inside_the_shortest_function_timeout() {
        let calls = settings(&[]).expect("valid").calls;
        assert_eq!(calls, SdkCallSettings::default());
        let timeouts = calls.timeout_config();
        assert_eq!(timeouts.connect_timeout(), Some(calls.connect_timeout));
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(calls.attempt_timeout)
        );
        assert_eq!(timeouts.operation_timeout(), Some(calls.operation_timeout));
        // The API function (30 s, as API Gateway's integration limit) still answers itself.
        assert!(calls.operation_timeout < std::time::Duration::from_secs(30));
        assert!(calls.attempt_timeout < calls.operation_timeout);
        let retries = calls.retry_config();
        assert_eq!(retries.mode(), aws_config::retry::RetryMode::Standard);
        assert_eq!(retries.max_attempts(), 3);
        assert_eq!(retries.initial_backoff(), calls.initial_backoff);
    }

    #[tokio::test]
    async fn every_client_carries_the_deployment_s_timeouts_and_retries() {
        let mut aws = Aws {
            sdk: aws_config::SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .build(),
            settings: settings(&[]).expect("valid"),
            clock: Arc::new(SystemClock),
            interceptors: Vec::new(),
        };
        aws.settings.calls.attempt_timeout = std::time::Duration::from_millis(1_234);
        let client = client!(aws, aws_sdk_sqs);
        let config = client.config();
        assert_eq!(
            config
                .timeout_config()
                .and_then(|t| t.operation_attempt_timeout()),
            Some(std::time::Duration::from_millis(1_234))
        );
        assert_eq!(config.retry_config().map(|r| r.max_attempts()), Some(3));
    }

    #[test]
    fn the_sealing_key_comes_from_a_long_enough_secret() {
        use crate::ports::SecretBox;
        assert!(matches!(
            sealing_box_from_secret("short"),
            Err(ConfigError::Startup(_))
        ));
        let secret = "0123456789abcdef0123456789abcdef";
        let (Ok(one), Ok(two)) = (
            sealing_box_from_secret(secret),
            sealing_box_from_secret(secret),
        ) else {
            panic!("a 32-character secret makes a key");
        };
        // The same secret gives the same key in every function (and in tools).
        let sealed = one.seal(b"whsec_x").ok().unwrap_or_default();
        assert_eq!(two.open(&sealed).ok().as_deref(), Some(&b"whsec_x"[..]));
    }

    #[test]
    fn invalid_and_missing_settings_are_named() {
        let e = settings(&[("SCHEDULED_RUNS_RETENTION_DAYS", "soon")]).err();
        assert!(matches!(
            e,
            Some(ConfigError::Invalid {
                name: "SCHEDULED_RUNS_RETENTION_DAYS",
                ..
            })
        ));
        let e = settings(&[("SCHEDULED_RUNS_FLEXIBLE_WINDOW_MINUTES", "0")]).err();
        assert!(matches!(e, Some(ConfigError::Invalid { .. })));
        let s = settings(&[]).expect("valid");
        assert_eq!(
            s.scheduler_config().err(),
            Some(ConfigError::Missing("SCHEDULED_RUNS_SCHEDULE_GROUP_PREFIX"))
        );
    }
}
