//! `scheduled-runs`: the local server (embedded SQLite, in-process scheduler) and the
//! operator CLI. Command names and flags are stable: other tools script them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use scheduled_runs::adapters::notify::smtp::SmtpDeliverer;
use scheduled_runs::aws_deployment::{Aws, AwsSettings};
use scheduled_runs::demo::{DEMO_ADMIN, DEMO_WORKSPACE};
use scheduled_runs::domain::model::{Plan, WorkspaceRole};
use scheduled_runs::embedded::{DB_FILE, Embedded, EmbeddedConfig, load_or_create_secret};
use scheduled_runs::http::jwt;
use scheduled_runs::ports::{Clock, Secret, SystemClock};
use scheduled_runs::services::workspaces::WorkspaceService;

/// Environment variable that overrides the JWT secret kept in the data directory.
const SECRET_ENV: &str = "SCHEDULED_RUNS_JWT_SECRET";

#[derive(Parser)]
#[command(
    name = "scheduled-runs",
    version,
    about = "Schedules, runs and reports runs of published data apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API with the embedded store and the in-process scheduler.
    Serve(ServeArgs),
    /// Create workspaces and change their plan (operator only).
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Print a JWT the local server accepts.
    Token(TokenArgs),
    /// Find and repair drift between stored schedules and their triggers.
    Reconcile(ReconcileArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    /// The embedded SQLite store (its in-process scheduler reloads from the store at start).
    Sqlite,
    /// DynamoDB and EventBridge Scheduler, configured by the AWS deployment's environment
    /// (SCHEDULED_RUNS_TABLE, SCHEDULED_RUNS_SCHEDULE_GROUP_PREFIX, … and AWS_* settings).
    Dynamodb,
}

#[derive(Args)]
struct ReconcileArgs {
    /// Which deployment's store to reconcile.
    #[arg(long, value_enum)]
    store: StoreKind,
    /// Report the drift without repairing it.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
struct DataDir {
    /// Directory holding the database and the JWT secret.
    #[arg(long, env = "SCHEDULED_RUNS_DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    #[command(flatten)]
    data: DataDir,
    /// Do not create the demo workspace and project.
    #[arg(long)]
    no_demo: bool,
    /// Where notification e-mail goes: smtp://HOST:PORT (smtps://HOST:PORT for TLS;
    /// credentials as smtp://USER:PASS@HOST:PORT). Without it, e-mail deliveries are
    /// recorded as failed.
    #[arg(
        long,
        env = "SCHEDULED_RUNS_SMTP_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    smtp_url: Option<String>,
    /// The sender of notification e-mail, e.g. "Runs <runs@example.com>".
    #[arg(long, value_name = "ADDRESS")]
    email_from: Option<String>,
    /// Base of the run links in notifications and responses [default: http://<addr>].
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Development only: let Slack and webhook targets be loopback addresses, also over
    /// plain http (http://127.0.0.1:PORT/...). Every other SSRF rule still holds.
    #[arg(long)]
    allow_loopback_webhooks: bool,
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Create a workspace on a plan.
    Create {
        /// Workspace id (letters, digits, '-', '_').
        id: String,
        /// PROFESSIONAL, TEAM or ENTERPRISE.
        #[arg(long, value_parser = parse_plan)]
        plan: Plan,
        #[command(flatten)]
        data: DataDir,
        /// Which deployment's store holds the workspace.
        #[arg(long, value_enum, default_value = "sqlite")]
        store: StoreKind,
    },
    /// Change a workspace's plan.
    SetPlan {
        id: String,
        /// PROFESSIONAL, TEAM or ENTERPRISE.
        #[arg(value_parser = parse_plan)]
        plan: Plan,
        #[command(flatten)]
        data: DataDir,
        /// Which deployment's store holds the workspace.
        #[arg(long, value_enum, default_value = "sqlite")]
        store: StoreKind,
    },
}

#[derive(Args)]
struct TokenArgs {
    /// The user id (`sub` claim).
    #[arg(long)]
    user: String,
    /// The workspace id (`workspace_id` claim).
    #[arg(long)]
    workspace: String,
    /// ADMIN or MEMBER.
    #[arg(long, default_value = "MEMBER", value_parser = parse_role)]
    role: WorkspaceRole,
    /// The e-mail address (`email` claim).
    #[arg(long)]
    email: Option<String>,
    /// Lifetime, e.g. 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: chrono::Duration,
    #[command(flatten)]
    data: DataDir,
}

fn parse_plan(s: &str) -> Result<Plan, String> {
    Plan::parse(s)
        .ok_or_else(|| format!("unknown plan {s:?}; use PROFESSIONAL, TEAM or ENTERPRISE"))
}

fn parse_role(s: &str) -> Result<WorkspaceRole, String> {
    WorkspaceRole::parse(s).ok_or_else(|| format!("unknown role {s:?}; use ADMIN or MEMBER"))
}

fn parse_ttl(s: &str) -> Result<chrono::Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {s:?}; e.g. 90s, 30m, 1h, 7d"))?;
    let secs = match unit {
        "" | "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        "d" => n.checked_mul(86_400),
        _ => None,
    };
    match secs {
        Some(secs) if secs > 0 && secs <= 366 * 86_400 => Ok(chrono::Duration::seconds(secs)),
        _ => Err(format!(
            "invalid duration {s:?}; between 1s and 366d, e.g. 90s, 30m, 1h, 7d"
        )),
    }
}

fn secret(data_dir: &Path) -> Result<Vec<u8>> {
    match std::env::var(SECRET_ENV) {
        Ok(s) if !s.is_empty() => Ok(s.into_bytes()),
        _ => load_or_create_secret(data_dir).with_context(|| {
            format!(
                "cannot read or create the JWT secret in {}",
                data_dir.display()
            )
        }),
    }
}

fn mint(
    user: &str,
    workspace: &str,
    role: WorkspaceRole,
    email: Option<&str>,
    ttl: chrono::Duration,
    secret: &[u8],
) -> String {
    let now = chrono::Utc::now();
    let mut extra = serde_json::Map::new();
    extra.insert("workspace_id".into(), workspace.into());
    extra.insert("workspace_role".into(), role.as_str().into());
    if let Some(email) = email {
        extra.insert("email".into(), email.into());
    }
    jwt::sign(
        &jwt::Claims {
            sub: user.to_owned(),
            exp: (now + ttl).timestamp(),
            iat: Some(now.timestamp()),
            nbf: None,
            extra,
        },
        secret,
    )
}

fn embedded(data_dir: &Path, public_url: String) -> Result<Embedded> {
    open(EmbeddedConfig::new(
        data_dir.to_owned(),
        public_url,
        secret(data_dir)?,
    ))
}

fn open(config: EmbeddedConfig) -> Result<Embedded> {
    let data_dir = config.data_dir.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Embedded::open(&config, clock).map_err(|e| {
        anyhow!(
            "cannot open the store {}: {e}",
            data_dir.join(DB_FILE).display()
        )
    })
}

async fn serve(args: ServeArgs) -> Result<()> {
    let public_url = match &args.public_url {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            url.trim_end_matches('/').to_owned()
        }
        Some(url) => bail!("--public-url must start with http:// or https://, got {url:?}"),
        None => format!("http://{}", args.addr),
    };
    let data_dir = &args.data.data_dir;
    let mut config =
        EmbeddedConfig::new(data_dir.to_owned(), public_url.clone(), secret(data_dir)?);
    if let Some(from) = &args.email_from {
        config.email_from = from.clone();
    }
    if let Some(url) = args.smtp_url.as_deref().filter(|u| !u.is_empty()) {
        // Checked here so that a bad URL is reported as such (and never printed).
        SmtpDeliverer::new(url, &config.email_from).map_err(|e| anyhow!("--smtp-url: {e}"))?;
        config.smtp_url = Some(Secret::new(url));
    } else {
        tracing::info!("no --smtp-url: e-mail notifications will be recorded as failed");
    }
    config.allow_loopback_webhooks = args.allow_loopback_webhooks;
    if args.allow_loopback_webhooks {
        tracing::warn!(
            "--allow-loopback-webhooks: Slack and webhook notifications may reach loopback addresses (development only)"
        );
    }
    let app = open(config)?;
    if !args.no_demo {
        let seed = app
            .seed_demo()
            .await
            .map_err(|e| anyhow!("cannot create the demo data: {e}"))?;
        let token = mint(
            DEMO_ADMIN,
            DEMO_WORKSPACE,
            WorkspaceRole::Admin,
            seed.admin.email.as_deref(),
            chrono::Duration::days(7),
            &secret(&args.data.data_dir)?,
        );
        println!("demo workspace {DEMO_WORKSPACE:?} (plan TEAM), user {DEMO_ADMIN:?} (ADMIN)");
        if let Some(project) = seed.project_id {
            println!("demo project {project} created and published");
        }
        println!("dev token (valid 7 days):\n\n{token}\n");
        println!("try: curl -H \"Authorization: Bearer $TOKEN\" {public_url}/api/v1/projects\n");
    }
    let timer = app
        .start_timer()
        .await
        .map_err(|e| anyhow!("cannot start the scheduler: {e}"))?;
    let workers = app.start_workers();
    let notifier = app.start_notifier();
    let maintenance = app.start_maintenance();
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    println!("listening on {public_url} (API under /api/v1, OpenAPI at /api/v1/openapi.json)");
    axum::serve(listener, app.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("server failed")?;
    timer.abort();
    maintenance.abort();
    if let Some(workers) = workers {
        workers.abort();
    }
    if let Some(notifier) = notifier {
        notifier.abort();
    }
    Ok(())
}

/// The workspace service of the chosen deployment.
async fn workspaces(store: StoreKind, data: &DataDir) -> Result<Arc<WorkspaceService>> {
    match store {
        StoreKind::Sqlite => Ok(embedded(&data.data_dir, String::new())?.state.workspaces),
        StoreKind::Dynamodb => {
            let aws = Aws::load(AwsSettings::from_env()?).await;
            Ok(Arc::new(WorkspaceService {
                workspaces: aws.store()?,
                clock: Arc::new(SystemClock),
            }))
        }
    }
}

async fn workspace(command: WorkspaceCommand) -> Result<()> {
    match command {
        WorkspaceCommand::Create {
            id,
            plan,
            data,
            store,
        } => {
            let ws = workspaces(store, &data).await?.create(&id, plan).await?;
            println!(
                "workspace {} created on plan {}",
                ws.workspace_id,
                ws.plan.as_str()
            );
        }
        WorkspaceCommand::SetPlan {
            id,
            plan,
            data,
            store,
        } => {
            let ws = workspaces(store, &data).await?.set_plan(&id, plan).await?;
            println!(
                "workspace {} is now on plan {}",
                ws.workspace_id,
                ws.plan.as_str()
            );
        }
    }
    Ok(())
}

fn token(args: TokenArgs) -> Result<()> {
    if args.user.is_empty() {
        bail!("--user must not be empty");
    }
    if args.workspace.is_empty() {
        bail!("--workspace must not be empty");
    }
    let secret = secret(&args.data.data_dir)?;
    println!(
        "{}",
        mint(
            &args.user,
            &args.workspace,
            args.role,
            args.email.as_deref(),
            args.ttl,
            &secret
        )
    );
    Ok(())
}

async fn reconcile(args: ReconcileArgs) -> Result<()> {
    if args.store == StoreKind::Sqlite {
        println!(
            "nothing to reconcile: the embedded deployment's scheduler loads every schedule from the store when it starts"
        );
        return Ok(());
    }
    let aws = Aws::load(AwsSettings::from_env()?).await;
    let report = aws.reconcile()?.reconcile(args.dry_run).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.failed.is_empty() {
        bail!("{} repairs failed", report.failed.len());
    }
    Ok(())
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("SCHEDULED_RUNS_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Workspace(command) => workspace(command).await,
        Command::Token(args) => token(args),
        Command::Reconcile(args) => reconcile(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
