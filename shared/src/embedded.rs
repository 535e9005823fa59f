//! The embedded deployment wired together: one SQLite file, the in-process timer and queue,
//! the services and the router. The `scheduled-runs serve` command and the end-to-end tests
//! build the very same thing from here, so what the tests prove is what users run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::adapters::local::queue::{LocalRunQueue, LocalRunReceiver};
use crate::adapters::local::sqlite::SqliteStore;
use crate::adapters::local::timer::{LocalTimer, TimerSettings};
use crate::domain::model::{
    AppDef, Caller, Cell, CellType, InputDef, InputType, Plan, VersionBody, WorkspaceRole,
};
use crate::http::auth::{ClaimNames, LocalJwtAuth};
use crate::http::{AppState, router};
use crate::ports::{Clock, PortError};
use crate::services::ServiceError;
use crate::services::dispatch::{DispatchService, DispatchSettings};
use crate::services::projects::ProjectService;
use crate::services::schedules::ScheduleService;
use crate::services::workspaces::WorkspaceService;
use axum::Router;

/// The database file inside the data directory.
pub const DB_FILE: &str = "scheduled-runs.db";
/// The JWT signing secret inside the data directory (when not given by the environment).
pub const SECRET_FILE: &str = "jwt-secret";

#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    /// Base of run links.
    pub public_url: String,
    pub jwt_secret: Vec<u8>,
    pub claims: ClaimNames,
    pub timer: TimerSettings,
    pub dispatch: DispatchSettings,
}

impl EmbeddedConfig {
    pub fn new(data_dir: PathBuf, public_url: String, jwt_secret: Vec<u8>) -> Self {
        EmbeddedConfig {
            data_dir,
            public_url,
            jwt_secret,
            claims: ClaimNames::default(),
            timer: TimerSettings::default(),
            dispatch: DispatchSettings::default(),
        }
    }
}

/// A running embedded deployment (minus the listener, which the caller owns).
pub struct Embedded {
    pub store: SqliteStore,
    pub timer: LocalTimer,
    pub state: AppState,
    pub clock: Arc<dyn Clock>,
    receiver: Mutex<Option<LocalRunReceiver>>,
}

impl Embedded {
    pub fn open(config: &EmbeddedConfig, clock: Arc<dyn Clock>) -> Result<Embedded, PortError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            PortError::fatal(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let store = SqliteStore::open(&config.data_dir.join(DB_FILE))?;
        let shared = Arc::new(store.clone());
        let timer = LocalTimer::new(clock.clone(), config.timer);
        let triggers = Arc::new(timer.clone());
        let (queue, receiver) = LocalRunQueue::new();
        let state = AppState {
            projects: Arc::new(ProjectService {
                workspaces: shared.clone(),
                projects: shared.clone(),
                schedules: shared.clone(),
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
                queue: Arc::new(queue),
                clock: clock.clone(),
                settings: config.dispatch,
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
            clock,
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

    /// The receiving end of the run queue (once): whoever executes runs takes it.
    pub fn take_run_receiver(&self) -> Option<LocalRunReceiver> {
        self.receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Creates the demo workspace (plan TEAM) and its published demo project, unless the
    /// workspace exists already. Returns the admin caller of the demo workspace.
    pub async fn seed_demo(&self) -> Result<DemoSeed, ServiceError> {
        let admin = Caller {
            user_id: DEMO_ADMIN.to_owned(),
            workspace_id: DEMO_WORKSPACE.to_owned(),
            workspace_role: WorkspaceRole::Admin,
            email: Some("demo-admin@example.com".to_owned()),
        };
        match self
            .state
            .workspaces
            .create(DEMO_WORKSPACE, Plan::Team)
            .await
        {
            Ok(_) => {}
            Err(ServiceError::Conflict { .. }) => {
                return Ok(DemoSeed {
                    admin,
                    project_id: None,
                });
            }
            Err(e) => return Err(e),
        }
        let project = self
            .state
            .projects
            .create(
                &admin,
                "Daily sales",
                Some("Demo app: revenue by region from the demo warehouse".to_owned()),
            )
            .await?;
        let id = project.project.project_id;
        self.state
            .projects
            .put_draft(&admin, &id, &demo_version())
            .await?;
        self.state.projects.publish(&admin, &id).await?;
        Ok(DemoSeed {
            admin,
            project_id: Some(id),
        })
    }
}

pub const DEMO_WORKSPACE: &str = "demo";
pub const DEMO_ADMIN: &str = "demo-admin";

pub struct DemoSeed {
    pub admin: Caller,
    /// Set when the demo project was created by this call.
    pub project_id: Option<String>,
}

/// The demo app: an input, and three SQL cells that build on each other.
fn demo_version() -> VersionBody {
    let cell = |id: &str, sql: &str| Cell {
        id: id.to_owned(),
        cell_type: CellType::Sql,
        connection: "warehouse".to_owned(),
        sql: sql.to_owned(),
    };
    VersionBody {
        inputs: vec![InputDef {
            name: "region".to_owned(),
            input_type: InputType::Select,
            default: serde_json::Value::String("EMEA".to_owned()),
            options: vec!["EMEA".into(), "AMER".into(), "APAC".into()],
        }],
        cells: vec![
            cell(
                "orders",
                "SELECT order_id, region, amount, ordered_at FROM orders WHERE region = {{ region }}",
            ),
            cell(
                "daily_revenue",
                "SELECT date(ordered_at) AS day, SUM(amount) AS revenue FROM orders WHERE region = {{ region }} AND {{ cells.orders.rowCount }} > 0 GROUP BY day ORDER BY day",
            ),
            cell(
                "summary",
                "SELECT {{ cells.daily_revenue.rowCount }} AS days, {{ cells.orders.rowCount }} AS orders",
            ),
        ],
        app: AppDef {
            cells: vec!["daily_revenue".to_owned(), "summary".to_owned()],
        },
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

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
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
