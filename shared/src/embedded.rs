//! The embedded deployment wired together: one SQLite file, the in-process timer, queue and
//! executor pool, the run-event bus and notifier, the services and the router. The `scheduled-runs serve` command and the
//! end-to-end tests build the very same thing from here, so what the tests prove is what
//! users run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use chrono::Duration;

use crate::adapters::local::events::{LocalEventBus, run_notifier};
use crate::adapters::local::queue::{LocalRunQueue, LocalRunReceiver};
use crate::adapters::local::secret_box::LocalSecretBox;
use crate::adapters::local::sqlite::SqliteStore;
use crate::adapters::local::timer::{LocalTimer, TimerSettings};
use crate::adapters::local::worker::run_workers;
use crate::adapters::notify::EmailNotConfigured;
use crate::adapters::notify::http::GuardedHttp;
use crate::adapters::notify::slack::SlackDeliverer;
use crate::adapters::notify::smtp::SmtpDeliverer;
use crate::adapters::notify::webhook::WebhookDeliverer;
use crate::adapters::sql::LocalConnectorFactory;
use crate::demo::{self, DemoSeed};
use crate::domain::ssrf::UrlPolicy;
use crate::http::auth::{ClaimNames, LocalJwtAuth};
use crate::http::{AppState, router};
use crate::ports::{Clock, Deliverer, PortError, RunEvent, Secret, SystemClock};
use crate::services::ServiceError;
use crate::services::connections::ConnectionService;
use crate::services::dispatch::{DispatchService, DispatchSettings};
use crate::services::events::EventOutbox;
use crate::services::executor::{ExecutorService, ExecutorSettings};
use crate::services::integrations::IntegrationService;
use crate::services::maintenance::{MaintenanceService, MaintenanceSettings};
use crate::services::notify::{Deliverers, NotificationRules, NotifyService, NotifySettings};
use crate::services::projects::ProjectService;
use crate::services::runs::{RunRateLimits, RunService};
use crate::services::schedules::ScheduleService;
use crate::services::workspaces::WorkspaceService;

/// The database file inside the data directory.
pub const DB_FILE: &str = "scheduled-runs.db";
/// The JWT signing secret inside the data directory (when not given by the environment).
pub const SECRET_FILE: &str = "jwt-secret";
/// The key that seals connection credentials, inside the data directory.
pub const SEALING_KEY_FILE: &str = "connection-key";

#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    /// Base of run links (in API responses and notifications).
    pub public_url: String,
    pub jwt_secret: Vec<u8>,
    pub claims: ClaimNames,
    pub timer: TimerSettings,
    pub dispatch: DispatchSettings,
    pub executor: ExecutorSettings,
    pub maintenance: MaintenanceSettings,
    pub rate_limits: RunRateLimits,
    /// Runs executing at once.
    pub workers: usize,
    /// How often the sweeper looks for stuck runs (and run events still pending).
    pub sweep_interval: Duration,
    /// A run event still pending this long after its run ended is published again.
    pub republish_events_after: Duration,
    /// Where e-mail goes (`smtp://HOST:PORT`, see `SmtpDeliverer`); without it, e-mail
    /// deliveries are recorded as failed with the reason.
    pub smtp_url: Option<Secret>,
    /// The sender of notification e-mail.
    pub email_from: String,
    /// Development only: Slack and webhook targets may be loopback addresses (also over
    /// plain http). Never anything else the SSRF guard refuses.
    pub allow_loopback_webhooks: bool,
    /// Retries, backoff and leases of notification deliveries (the base of run links is
    /// `public_url`).
    pub notify: NotifySettings,
    /// Run events handled at once.
    pub notifiers: usize,
}

impl EmbeddedConfig {
    pub fn new(data_dir: PathBuf, public_url: String, jwt_secret: Vec<u8>) -> Self {
        let executor = ExecutorSettings::new(data_dir.join("run-workdirs"));
        EmbeddedConfig {
            notify: NotifySettings::new(public_url.clone()),
            public_url,
            jwt_secret,
            claims: ClaimNames::default(),
            timer: TimerSettings::default(),
            dispatch: DispatchSettings::default(),
            maintenance: MaintenanceSettings {
                run_timeout: executor.run_timeout,
                max_attempts: executor.max_attempts,
                ..MaintenanceSettings::default()
            },
            executor,
            rate_limits: RunRateLimits::default(),
            workers: 4,
            sweep_interval: Duration::seconds(30),
            republish_events_after: Duration::minutes(2),
            smtp_url: None,
            email_from: "Scheduled runs <scheduled-runs@localhost.localdomain>".into(),
            allow_loopback_webhooks: false,
            notifiers: 8,
            data_dir,
        }
    }

    /// SQLite warehouses of `SQLITE` connections live here.
    pub fn warehouse_dir(&self) -> PathBuf {
        self.data_dir.join("warehouses")
    }
}

/// A running embedded deployment (minus the listener, which the caller owns).
pub struct Embedded {
    pub store: SqliteStore,
    pub timer: LocalTimer,
    pub state: AppState,
    pub executor: Arc<ExecutorService>,
    pub maintenance: Arc<MaintenanceService>,
    /// Every finished run is announced here (the local stand-in for the SNS topic).
    pub events: LocalEventBus,
    /// Delivers the notifications of run events (the local stand-in for the notify
    /// function, fed by `start_notifier`).
    pub notify: Arc<NotifyService>,
    /// Publishes run events that are still pending (run by the sweeper loop).
    pub outbox: Arc<EventOutbox>,
    pub clock: Arc<dyn Clock>,
    config: EmbeddedConfig,
    receiver: Mutex<Option<LocalRunReceiver>>,
    /// Subscribed when the deployment opens, so no event is missed before the notifier
    /// starts (up to the bus's capacity; the outbox covers the rest).
    notifier_events: Mutex<Option<tokio::sync::broadcast::Receiver<RunEvent>>>,
}

impl Embedded {
    pub fn open(config: &EmbeddedConfig, clock: Arc<dyn Clock>) -> Result<Embedded, PortError> {
        let dir_error = |e: std::io::Error| {
            PortError::fatal(format!("cannot create {}: {e}", config.data_dir.display()))
        };
        std::fs::create_dir_all(&config.data_dir).map_err(dir_error)?;
        std::fs::create_dir_all(config.warehouse_dir()).map_err(dir_error)?;
        let store = SqliteStore::open(&config.data_dir.join(DB_FILE))?;
        let secrets = Arc::new(LocalSecretBox::from_key_file(
            &config.data_dir.join(SEALING_KEY_FILE),
        )?);
        let shared = Arc::new(store.clone());
        let timer = LocalTimer::new(clock.clone(), config.timer);
        let triggers = Arc::new(timer.clone());
        let (queue, receiver) = LocalRunQueue::new();
        let queue = Arc::new(queue);
        let events = LocalEventBus::default();
        let notifier_events = events.subscribe();
        let publisher = Arc::new(events.clone());
        let url_policy = UrlPolicy {
            allow_loopback: config.allow_loopback_webhooks,
        };
        let public_url = config.public_url.trim_end_matches('/').to_owned();
        let notify = Arc::new(NotifyService {
            workspaces: shared.clone(),
            projects: shared.clone(),
            runs: shared.clone(),
            deliveries: shared.clone(),
            integrations: shared.clone(),
            secrets: secrets.clone(),
            deliverers: deliverers(config, url_policy)?,
            clock: clock.clone(),
            settings: NotifySettings {
                public_url: public_url.clone(),
                ..config.notify.clone()
            },
        });
        let rules = Arc::new(NotificationRules {
            workspaces: shared.clone(),
            projects: shared.clone(),
            integrations: shared.clone(),
            deliveries: shared.clone(),
            url_policy,
        });
        // The bus is not durable: the notifier clears a run's outbox flag once it handled
        // the event, and the sweeper loop publishes what is left pending.
        let outbox = Arc::new(EventOutbox {
            outbox: shared.clone(),
            publisher: publisher.clone(),
            clock: clock.clone(),
            republish_after: config.republish_events_after,
        });
        let executor = Arc::new(ExecutorService {
            path: shared.clone(),
            runs: shared.clone(),
            cache: shared.clone(),
            connectors: Arc::new(LocalConnectorFactory::new(config.warehouse_dir())),
            secrets: secrets.clone(),
            events: publisher.clone(),
            clock: clock.clone(),
            settings: config.executor.clone(),
            plans: Default::default(),
        });
        let maintenance = Arc::new(MaintenanceService {
            workspaces: shared.clone(),
            projects: shared.clone(),
            schedules: shared.clone(),
            runs: shared.clone(),
            queue: queue.clone(),
            triggers: triggers.clone(),
            events: publisher.clone(),
            clock: clock.clone(),
            settings: config.maintenance,
        });
        let state = AppState {
            projects: Arc::new(ProjectService {
                workspaces: shared.clone(),
                projects: shared.clone(),
                schedules: shared.clone(),
                connections: shared.clone(),
                triggers: triggers.clone(),
                clock: clock.clone(),
            }),
            schedules: Arc::new(ScheduleService {
                workspaces: shared.clone(),
                projects: shared.clone(),
                schedules: shared.clone(),
                runs: shared.clone(),
                triggers,
                clock: clock.clone(),
                notifications: rules.clone(),
            }),
            dispatch: Arc::new(DispatchService {
                path: shared.clone(),
                projects: shared.clone(),
                schedules: shared.clone(),
                runs: shared.clone(),
                queue: queue.clone(),
                events: publisher.clone(),
                clock: clock.clone(),
                settings: config.dispatch,
            }),
            runs: Arc::new(RunService {
                projects: shared.clone(),
                runs: shared.clone(),
                results: shared.clone(),
                queue,
                rate_limits: shared.clone(),
                events: publisher,
                notifications: rules,
                clock: clock.clone(),
                limits: config.rate_limits,
                retention: config.dispatch.retention,
            }),
            connections: Arc::new(ConnectionService {
                connections: shared.clone(),
                secrets: secrets.clone(),
                clock: clock.clone(),
            }),
            integrations: Arc::new(IntegrationService {
                workspaces: shared.clone(),
                integrations: shared.clone(),
                secrets,
                clock: clock.clone(),
                url_policy,
            }),
            workspaces: Arc::new(WorkspaceService {
                workspaces: shared,
                clock: clock.clone(),
            }),
            identity: Arc::new(LocalJwtAuth::new(
                config.jwt_secret.clone(),
                config.claims.clone(),
                clock.clone(),
            )),
            public_url,
        };
        Ok(Embedded {
            store,
            timer,
            state,
            executor,
            maintenance,
            events,
            notify,
            outbox,
            clock,
            config: config.clone(),
            receiver: Mutex::new(Some(receiver)),
            notifier_events: Mutex::new(Some(notifier_events)),
        })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Loads every active schedule into the timer and starts firing them.
    pub async fn start_timer(&self) -> Result<tokio::task::JoinHandle<()>, PortError> {
        let loaded = self.timer.load(&self.store, &self.store).await?;
        tracing::info!(schedules = loaded, "local scheduler started");
        let timer = self.timer.clone();
        let dispatch = self.state.dispatch.clone();
        Ok(tokio::spawn(timer.run(dispatch)))
    }

    /// Starts the executor pool on the run queue (once; `None` if already started).
    pub fn start_workers(&self) -> Option<tokio::task::JoinHandle<()>> {
        let receiver = self.take_run_receiver()?;
        Some(tokio::spawn(run_workers(
            receiver,
            self.executor.clone(),
            self.config.workers,
        )))
    }

    /// Starts the notifier on the run-event bus (once; `None` if already started).
    pub fn start_notifier(&self) -> Option<tokio::task::JoinHandle<()>> {
        let events = self
            .notifier_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        Some(tokio::spawn(run_notifier(
            events,
            self.notify.clone(),
            Arc::new(self.store.clone()),
            self.config.notifiers,
        )))
    }

    /// Starts the sweeper (every `sweep_interval`, with the run events still pending) and
    /// the daily retention purge and auto-archive, on the deployment's clock.
    pub fn start_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let maintenance = self.maintenance.clone();
        let outbox = self.outbox.clone();
        let clock = self.clock.clone();
        let interval = self.config.sweep_interval;
        tokio::spawn(async move {
            let mut next_daily = clock.now();
            loop {
                if let Err(e) = maintenance.sweep().await {
                    tracing::warn!(error = %e, "sweep failed");
                }
                match outbox.republish_pending().await {
                    Ok(n) if n > 0 => {
                        tracing::info!(republished = n, "pending run events published")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "publishing pending run events failed"),
                }
                if clock.now() >= next_daily {
                    match maintenance.purge_expired().await {
                        Ok(n) if n > 0 => tracing::info!(purged = n, "expired runs purged"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "retention purge failed"),
                    }
                    if let Err(e) = maintenance.auto_archive().await {
                        tracing::warn!(error = %e, "auto-archive failed");
                    }
                    next_daily = clock.now() + Duration::days(1);
                }
                clock.sleep_until(clock.now() + interval).await;
            }
        })
    }

    /// The receiving end of the run queue (once): whoever executes runs takes it.
    pub fn take_run_receiver(&self) -> Option<LocalRunReceiver> {
        self.receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Creates the demo workspace, warehouse and published project unless they exist.
    pub async fn seed_demo(&self) -> Result<DemoSeed, ServiceError> {
        demo::seed(&self.state, &self.config.warehouse_dir()).await
    }
}

/// The notification channels: SMTP when configured (else e-mail fails with the reason),
/// Slack and webhooks through the SSRF-guarded client.
fn deliverers(config: &EmbeddedConfig, policy: UrlPolicy) -> Result<Deliverers, PortError> {
    let email: Arc<dyn Deliverer> = match &config.smtp_url {
        Some(url) => Arc::new(
            SmtpDeliverer::new(url.expose(), &config.email_from)
                .map_err(|e| PortError::fatal(format!("--smtp-url: {e}")))?,
        ),
        None => Arc::new(EmailNotConfigured),
    };
    let http = GuardedHttp::new(policy);
    Ok(Deliverers {
        email,
        slack: Arc::new(SlackDeliverer::new(http.clone())),
        // Signature timestamps are wall-clock time whatever clock drives the deployment.
        webhook: Arc::new(WebhookDeliverer::new(http, Arc::new(SystemClock))),
    })
}

/// Reads the JWT secret from the data directory, creating a random one (mode 0600) on
/// first use.
pub fn load_or_create_secret(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &secret)?;
    Ok(secret.into_bytes())
}

/// Writes a new file readable by its owner only.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())
}
