//! The embedded deployment wired together: one SQLite file, the in-process timer, queue and
//! executor pool, the services and the router. The `scheduled-runs serve` command and the
//! end-to-end tests build the very same thing from here, so what the tests prove is what
//! users run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use chrono::Duration;

use crate::adapters::local::events::LocalEventBus;
use crate::adapters::local::queue::{LocalRunQueue, LocalRunReceiver};
use crate::adapters::local::secret_box::LocalSecretBox;
use crate::adapters::local::sqlite::SqliteStore;
use crate::adapters::local::timer::{LocalTimer, TimerSettings};
use crate::adapters::local::worker::run_workers;
use crate::adapters::sql::LocalConnectorFactory;
use crate::demo::{self, DemoSeed};
use crate::http::auth::{ClaimNames, LocalJwtAuth};
use crate::http::{AppState, router};
use crate::ports::{Clock, PortError};
use crate::services::ServiceError;
use crate::services::connections::ConnectionService;
use crate::services::dispatch::{DispatchService, DispatchSettings};
use crate::services::executor::{ExecutorService, ExecutorSettings};
use crate::services::maintenance::{MaintenanceService, MaintenanceSettings};
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
    /// Base of run links.
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
    /// How often the sweeper looks for stuck runs.
    pub sweep_interval: Duration,
}

impl EmbeddedConfig {
    pub fn new(data_dir: PathBuf, public_url: String, jwt_secret: Vec<u8>) -> Self {
        let executor = ExecutorSettings::new(data_dir.join("run-workdirs"));
        EmbeddedConfig {
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
    pub clock: Arc<dyn Clock>,
    config: EmbeddedConfig,
    receiver: Mutex<Option<LocalRunReceiver>>,
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
        let publisher = Arc::new(events.clone());
        let executor = Arc::new(ExecutorService {
            projects: shared.clone(),
            runs: shared.clone(),
            results: shared.clone(),
            connections: shared.clone(),
            cache: shared.clone(),
            connectors: Arc::new(LocalConnectorFactory::new(config.warehouse_dir())),
            secrets: secrets.clone(),
            events: publisher.clone(),
            clock: clock.clone(),
            settings: config.executor.clone(),
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
            }),
            dispatch: Arc::new(DispatchService {
                workspaces: shared.clone(),
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
                clock: clock.clone(),
                limits: config.rate_limits,
                retention: config.dispatch.retention,
            }),
            connections: Arc::new(ConnectionService {
                connections: shared.clone(),
                secrets,
                clock: clock.clone(),
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
            public_url: config.public_url.trim_end_matches('/').to_owned(),
        };
        Ok(Embedded {
            store,
            timer,
            state,
            executor,
            maintenance,
            events,
            clock,
            config: config.clone(),
            receiver: Mutex::new(Some(receiver)),
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

    /// Starts the sweeper (every `sweep_interval`) and the daily retention purge and
    /// auto-archive, on the deployment's clock.
    pub fn start_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let maintenance = self.maintenance.clone();
        let clock = self.clock.clone();
        let interval = self.config.sweep_interval;
        tokio::spawn(async move {
            let mut next_daily = clock.now();
            loop {
                if let Err(e) = maintenance.sweep().await {
                    tracing::warn!(error = %e, "sweep failed");
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
