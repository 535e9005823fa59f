//! The nouns of the product (SPEC §2): workspaces, users, projects and their versions,
//! schedules and runs. Plain data with serde shapes that match the HTTP API, so the same
//! types travel from the store to the response without a parallel hierarchy of DTOs.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::cadence::Cadence;

/// The commercial plan of a workspace; it decides which schedule features are available.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Plan {
    Professional,
    Team,
    Enterprise,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Professional => "PROFESSIONAL",
            Plan::Team => "TEAM",
            Plan::Enterprise => "ENTERPRISE",
        }
    }

    pub fn parse(s: &str) -> Option<Plan> {
        match s.to_ascii_uppercase().as_str() {
            "PROFESSIONAL" => Some(Plan::Professional),
            "TEAM" => Some(Plan::Team),
            "ENTERPRISE" => Some(Plan::Enterprise),
            _ => None,
        }
    }
}

/// A user's role in the workspace, taken from the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkspaceRole {
    Admin,
    Member,
}

impl WorkspaceRole {
    pub fn parse(s: &str) -> Option<WorkspaceRole> {
        match s.to_ascii_uppercase().as_str() {
            "ADMIN" => Some(WorkspaceRole::Admin),
            "MEMBER" => Some(WorkspaceRole::Member),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceRole::Admin => "ADMIN",
            WorkspaceRole::Member => "MEMBER",
        }
    }
}

/// A user's role on one project. The derive order is the privilege order:
/// `CanView < CanExplore < CanEdit < FullAccess`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProjectRole {
    CanView,
    CanExplore,
    CanEdit,
    FullAccess,
}

impl ProjectRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::CanView => "CAN_VIEW",
            ProjectRole::CanExplore => "CAN_EXPLORE",
            ProjectRole::CanEdit => "CAN_EDIT",
            ProjectRole::FullAccess => "FULL_ACCESS",
        }
    }

    pub fn parse(s: &str) -> Option<ProjectRole> {
        match s {
            "CAN_VIEW" => Some(ProjectRole::CanView),
            "CAN_EXPLORE" => Some(ProjectRole::CanExplore),
            "CAN_EDIT" => Some(ProjectRole::CanEdit),
            "FULL_ACCESS" => Some(ProjectRole::FullAccess),
            _ => None,
        }
    }
}

/// Who is calling: the identity the HTTP layer extracts from a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub workspace_id: String,
    pub workspace_role: WorkspaceRole,
    pub email: Option<String>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.workspace_role == WorkspaceRole::Admin
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub workspace_id: String,
    pub plan: Plan,
    pub auto_archive_after_days: Option<u32>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub user_id: String,
    pub workspace_id: String,
    pub email: Option<String>,
    /// The workspace role last seen in one of the user's tokens; dispatch needs it to
    /// re-check a schedule creator's access when no token is at hand.
    pub workspace_role: WorkspaceRole,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub project_id: String,
    pub workspace_id: String,
    pub title: String,
    pub description: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived: bool,
    /// The newest published version, if any. Only published versions run.
    pub published_version: Option<u32>,
    /// Last human activity (edits, publishes, API use); drives auto-archive.
    pub last_activity_at: DateTime<Utc>,
}

/// The type of an app input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InputType {
    Text,
    Number,
    Boolean,
    Date,
    Select,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputDef {
    pub name: String,
    #[serde(rename = "type")]
    pub input_type: InputType,
    // `Value`, not `Object`: a default or an option is any JSON value (a string, a number,
    // a boolean, null); the document must not promise objects.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub default: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Value>)]
    pub options: Vec<serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CellType {
    Sql,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cell {
    pub id: String,
    #[serde(rename = "type")]
    pub cell_type: CellType,
    pub connection: String,
    pub sql: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppDef {
    /// The cell ids the published app shows.
    #[serde(default)]
    pub cells: Vec<String>,
}

/// The body of a draft or of a published version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionBody {
    #[serde(default)]
    pub inputs: Vec<InputDef>,
    #[serde(default)]
    pub cells: Vec<Cell>,
    #[serde(default)]
    pub app: AppDef,
}

impl VersionBody {
    /// The data connections the cells use, each once, in order of first use.
    pub fn connection_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for cell in &self.cells {
            if !names.contains(&cell.connection) {
                names.push(cell.connection.clone());
            }
        }
        names
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectVersion {
    pub project_id: String,
    pub version: u32,
    pub body: VersionBody,
    pub published_at: DateTime<Utc>,
    pub published_by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub project_id: String,
    pub user_id: String,
    pub role: ProjectRole,
}

/// What happens when a schedule fires while its previous run is still going.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OverlapPolicy {
    #[default]
    Skip,
    Allow,
}

impl OverlapPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            OverlapPolicy::Skip => "SKIP",
            OverlapPolicy::Allow => "ALLOW",
        }
    }
}

/// A stored schedule. `version` increments on every change (optimistic concurrency, ETag).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub schedule_id: String,
    pub project_id: String,
    pub workspace_id: String,
    pub created_by: String,
    pub creator_role: ProjectRole,
    pub cadence: Cadence,
    pub timezone: String,
    pub enabled: bool,
    pub update_published_results: bool,
    pub use_cached_sql_results: bool,
    pub overlap_policy: OverlapPolicy,
    /// True when the schedule can fire more than once on some day; counts toward the
    /// per-project limit of hourly schedules.
    pub hourly: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
    /// Who hears about the schedule's runs (SPEC §7). Absent in records written before
    /// notifications existed.
    #[serde(default, skip_serializing_if = "NotificationSettings::is_empty")]
    pub notifications: NotificationSettings,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Pending,
    Running,
    Completed,
    Errored,
    Killed,
    Skipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "PENDING",
            RunStatus::Running => "RUNNING",
            RunStatus::Completed => "COMPLETED",
            RunStatus::Errored => "ERRORED",
            RunStatus::Killed => "KILLED",
            RunStatus::Skipped => "SKIPPED",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        match s {
            "PENDING" => Some(RunStatus::Pending),
            "RUNNING" => Some(RunStatus::Running),
            "COMPLETED" => Some(RunStatus::Completed),
            "ERRORED" => Some(RunStatus::Errored),
            "KILLED" => Some(RunStatus::Killed),
            "SKIPPED" => Some(RunStatus::Skipped),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Pending | RunStatus::Running)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunTrigger {
    /// Created through the RunProject API.
    Api,
    /// Fired by a schedule at its due time.
    Scheduled,
    /// A schedule run on demand ("run now").
    Manual,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Api => "API",
            RunTrigger::Scheduled => "SCHEDULED",
            RunTrigger::Manual => "MANUAL",
        }
    }

    pub fn parse(s: &str) -> Option<RunTrigger> {
        match s {
            "API" => Some(RunTrigger::Api),
            "SCHEDULED" => Some(RunTrigger::Scheduled),
            "MANUAL" => Some(RunTrigger::Manual),
            _ => None,
        }
    }
}

/// Why a scheduled run was recorded without executing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SkipReason {
    ProjectArchived,
    ScheduleDisabled,
    CreatorNoAccess,
    Overlap,
    NotPublished,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::ProjectArchived => "PROJECT_ARCHIVED",
            SkipReason::ScheduleDisabled => "SCHEDULE_DISABLED",
            SkipReason::CreatorNoAccess => "CREATOR_NO_ACCESS",
            SkipReason::Overlap => "OVERLAP",
            SkipReason::NotPublished => "NOT_PUBLISHED",
        }
    }
}

/// One entry of a run's history of state changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    pub value: String,
    pub timestamp: DateTime<Utc>,
}

impl StateEvent {
    pub fn new(event_type: &str, value: &str, timestamp: DateTime<Utc>) -> StateEvent {
        StateEvent {
            event_type: event_type.to_owned(),
            value: value.to_owned(),
            timestamp,
        }
    }
}

/// One execution (or recorded skip) of a project's published version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: String,
    pub project_id: String,
    pub workspace_id: String,
    pub schedule_id: Option<String>,
    pub run_trigger: RunTrigger,
    pub status: RunStatus,
    /// The nominal fire time of a scheduled run.
    pub scheduled_for: Option<DateTime<Utc>>,
    pub project_version: Option<u32>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub skip_reason: Option<SkipReason>,
    pub update_published_results: bool,
    pub use_cached_sql_results: bool,
    #[serde(default)]
    pub input_params: serde_json::Map<String, serde_json::Value>,
    pub trace_id: String,
    pub state_events: Vec<StateEvent>,
    /// When the run's record may be deleted (history retention).
    pub expires_at: DateTime<Utc>,
    /// How many times an executor has started this run (crash recovery is bounded).
    #[serde(default)]
    pub attempt: u32,
    /// While `RUNNING`: the executor holds the run until then and renews the lease as it
    /// goes; a lease that ran out means the executor died and the run may be retried.
    #[serde(default)]
    pub lease_until: Option<DateTime<Utc>>,
    /// Per-cell results, in execution order.
    #[serde(default)]
    pub cells: Vec<CellResult>,
    #[serde(default)]
    pub error: Option<RunError>,
    /// The notifications in force for this run, fixed when it is created: the schedule's
    /// (scheduled and manual runs) or the request's (API runs).
    #[serde(default, skip_serializing_if = "NotificationSettings::is_empty")]
    pub notification_settings: NotificationSettings,
    /// True from the write that ends the run until its run event has been handed over
    /// (the outbox flag: a publish that failed is retried by the sweeper).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub event_pending: bool,
    /// The deliveries of the run's notifications. Kept by the `DeliveryStore`, not in the
    /// run record: services fill it in when they read a run for display.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<DeliveryRecord>,
}

/// The guard of a conditional run update: the status and attempt the writer last saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunGuard {
    pub status: RunStatus,
    pub attempt: u32,
}

impl Run {
    pub fn guard(&self) -> RunGuard {
        RunGuard {
            status: self.status,
            attempt: self.attempt,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CellStatus {
    Completed,
    Errored,
}

/// A query result's rows, each a list of values in column order. Shared rather than
/// copied: one result is at once a cell's output, its downstream templates' input and its
/// SQL-cache entry, and a cache hit hands the same rows to every run that asks. Clones
/// share an identity, so a store can keep one copy of a result that many runs show
/// (`Rows::id`); equality and the serialized form are the values alone.
#[derive(Clone, Default)]
pub struct Rows(Arc<SharedRows>);

#[derive(Default)]
struct SharedRows {
    values: Vec<Vec<serde_json::Value>>,
    id: OnceLock<uuid::Uuid>,
}

impl Rows {
    /// Rows a store kept under `id` (see [`Rows::id`]).
    pub fn stored(values: Vec<Vec<serde_json::Value>>, id: uuid::Uuid) -> Rows {
        Rows(Arc::new(SharedRows {
            values,
            id: OnceLock::from(id),
        }))
    }

    /// This result's identity, the same for every clone: drawn when first asked for, or
    /// the one it was stored under.
    pub fn id(&self) -> uuid::Uuid {
        *self.0.id.get_or_init(uuid::Uuid::new_v4)
    }

    /// Whether anything ever asked for the identity, i.e. whether a store may already
    /// hold these rows under it. `false` means certainly not.
    pub fn has_id(&self) -> bool {
        self.0.id.get().is_some()
    }
}

impl From<Vec<Vec<serde_json::Value>>> for Rows {
    fn from(values: Vec<Vec<serde_json::Value>>) -> Rows {
        Rows(Arc::new(SharedRows {
            values,
            id: OnceLock::new(),
        }))
    }
}

impl std::ops::Deref for Rows {
    type Target = [Vec<serde_json::Value>];

    fn deref(&self) -> &Self::Target {
        &self.0.values
    }
}

impl PartialEq for Rows {
    fn eq(&self, other: &Rows) -> bool {
        self.0.values == other.0.values
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.values.fmt(f)
    }
}

impl Serialize for Rows {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.values.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Rows {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rows, D::Error> {
        Vec::deserialize(deserializer).map(Rows::from)
    }
}

/// What one SQL cell produced in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CellResult {
    pub cell_id: String,
    pub status: CellStatus,
    pub columns: Vec<String>,
    /// The first 1,000 rows, each a list of values in column order.
    #[schema(value_type = Vec<Vec<Value>>)]
    pub rows: Rows,
    /// All rows the query returned.
    pub row_count: u64,
    pub duration_ms: u64,
    pub cache_hit: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a run ended `ERRORED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunError {
    /// `CELL_FAILED`, `TIMEOUT`, `EXECUTOR_CRASHED`, `VERSION_MISSING`, `CONNECTION_MISSING`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_id: Option<String>,
}

/// The outputs of the last run allowed to update what the published app shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedResults {
    pub workspace_id: String,
    pub project_id: String,
    pub run_id: String,
    pub project_version: u32,
    /// The run's ordering instant (its `scheduledFor`, else its start): results are only
    /// ever replaced by a run with a later one.
    pub as_of: DateTime<Utc>,
    pub cells: Vec<CellResult>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionKind {
    Sqlite,
    Postgres,
}

/// The configuration of a data connection, as an admin gives it. It may hold credentials,
/// so it is stored only sealed and never returned.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum ConnectionConfig {
    /// A SQLite file, relative to the server's warehouse directory.
    Sqlite { path: String },
    /// A PostgreSQL server, by URL or by the ARN of a secret holding the URL.
    Postgres {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, rename = "secretArn", skip_serializing_if = "Option::is_none")]
        secret_arn: Option<String>,
    },
}

impl ConnectionConfig {
    pub fn kind(&self) -> ConnectionKind {
        match self {
            ConnectionConfig::Sqlite { .. } => ConnectionKind::Sqlite,
            ConnectionConfig::Postgres { .. } => ConnectionKind::Postgres,
        }
    }
}

/// Credentials must never reach a log line, so `Debug` shows only the kind.
impl std::fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionConfig::Sqlite { path } => {
                f.debug_struct("Sqlite").field("path", path).finish()
            }
            ConnectionConfig::Postgres { .. } => f.write_str("Postgres { .. }"),
        }
    }
}

/// A workspace data connection. Its configuration (which may hold credentials) is kept
/// only sealed: the store never sees it in plain text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub workspace_id: String,
    pub name: String,
    pub kind: ConnectionKind,
    /// The sealed JSON configuration (`SecretBox`).
    pub sealed_config: String,
    pub updated_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A cached query result (SQL cache).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedResult {
    pub workspace_id: String,
    /// Hash of (connection, rendered SQL, bind values).
    pub key: String,
    pub columns: Vec<String>,
    pub rows: Rows,
    pub row_count: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Run {
    /// A scheduled run's id is derived from `(scheduleId, scheduledFor)` so that every
    /// duplicate delivery of the same fire names the same run.
    pub fn scheduled_run_id(schedule_id: &str, scheduled_for: DateTime<Utc>) -> String {
        Run::scheduled_run_uuid(schedule_id, scheduled_for).to_string()
    }

    /// [`Run::scheduled_run_id`] as a UUID.
    pub fn scheduled_run_uuid(schedule_id: &str, scheduled_for: DateTime<Utc>) -> uuid::Uuid {
        uuid::Uuid::new_v5(
            &RUN_ID_NAMESPACE,
            fire_key(schedule_id, scheduled_for).as_bytes(),
        )
    }
}

/// `"{schedule_id}/{scheduled_for}"`, the fire time in RFC 3339 to the second with `Z`:
/// the name a scheduled run's id is derived from. Written digit by digit, since chrono's
/// formatter built a string of its own for every run of a burst; an instant it would write
/// otherwise (a year beyond four digits, a leap second) takes its way.
fn fire_key(schedule_id: &str, at: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let mut key = String::with_capacity(schedule_id.len() + 21);
    key.push_str(schedule_id);
    key.push('/');
    let year = at.year();
    if !(0..=9999).contains(&year) || at.nanosecond() >= 1_000_000_000 {
        key.push_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        return key;
    }
    let fields = [
        (year.unsigned_abs(), 4, '-'),
        (at.month(), 2, '-'),
        (at.day(), 2, 'T'),
        (at.hour(), 2, ':'),
        (at.minute(), 2, ':'),
        (at.second(), 2, 'Z'),
    ];
    for (value, width, then) in fields {
        for place in (0..width).rev() {
            let digit = value / 10u32.pow(place) % 10;
            key.push(char::from(b'0' + digit as u8));
        }
        key.push(then);
    }
    key
}

const RUN_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f3c_2b1e_9a47_4d0c_8e15_5a3b_7c9d_e201);

// ---------------------------------------------------------------------------------------
// Notifications (SPEC §7)
// ---------------------------------------------------------------------------------------

/// Which finished runs a subscription hears about: `SUCCESS` (`COMPLETED`), `FAILURE`
/// (`ERRORED` and `KILLED`) or `ALL`. `SKIPPED` runs only reach `FAILURE`/`ALL`
/// subscriptions that ask for them (`includeSkipped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotifyOn {
    Success,
    Failure,
    All,
}

impl NotifyOn {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Success => "SUCCESS",
            NotifyOn::Failure => "FAILURE",
            NotifyOn::All => "ALL",
        }
    }
}

/// Who receives a notification; every list may be absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recipients {
    /// Users of the workspace, notified at the e-mail address of their token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    /// Channel ids of the workspace's Slack integration (`PUT /admin/integrations/slack`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slack_channel_ids: Vec<String>,
    /// `https` endpoints that receive signed JSON.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_urls: Vec<String>,
}

impl Recipients {
    pub fn is_empty(&self) -> bool {
        self.user_ids.is_empty()
            && self.emails.is_empty()
            && self.slack_channel_ids.is_empty()
            && self.webhook_urls.is_empty()
    }

    pub fn count(&self) -> usize {
        self.user_ids.len()
            + self.emails.len()
            + self.slack_channel_ids.len()
            + self.webhook_urls.len()
    }
}

/// A link to the run when it completes, or an alert when it fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription {
    pub on: NotifyOn,
    pub recipients: Recipients,
    /// Also notify runs the schedule recorded as `SKIPPED` (for `FAILURE` and `ALL`);
    /// off by default, since an overlapping hourly schedule would otherwise alert on
    /// every skip.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_skipped: bool,
}

/// What a condition measures on a cell's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Measure {
    /// All rows the query returned.
    RowCount,
    /// The value of `column` in the first row.
    Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConditionOp {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
    IsEmpty,
    IsNotEmpty,
}

impl ConditionOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionOp::Gt => "GT",
            ConditionOp::Gte => "GTE",
            ConditionOp::Lt => "LT",
            ConditionOp::Lte => "LTE",
            ConditionOp::Eq => "EQ",
            ConditionOp::Neq => "NEQ",
            ConditionOp::IsEmpty => "IS_EMPTY",
            ConditionOp::IsNotEmpty => "IS_NOT_EMPTY",
        }
    }

    /// The comparisons, which take a `value`; the emptiness tests take none.
    pub fn compares(self) -> bool {
        !matches!(self, ConditionOp::IsEmpty | ConditionOp::IsNotEmpty)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    pub measure: Measure,
    /// The column whose first-row value `VALUE` reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub op: ConditionOp,
    /// What the comparisons compare with: a number, a string or a boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub value: Option<serde_json::Value>,
}

/// Notifies `recipients` when a `COMPLETED` run's cell result meets the condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionalNotification {
    pub name: String,
    /// A cell the published app shows.
    pub cell_id: String,
    pub condition: Condition,
    pub recipients: Recipients,
}

/// A schedule's notifications (SPEC §7).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationSettings {
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    #[serde(default)]
    pub conditional: Vec<ConditionalNotification>,
}

impl NotificationSettings {
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty() && self.conditional.is_empty()
    }
}

/// One entry of an API run's `notifications`, in the RunProject shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunNotification {
    #[serde(rename = "type")]
    pub on: NotifyOn,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slack_channel_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_urls: Vec<String>,
}

impl RunNotification {
    /// The same notification as a schedule would spell it.
    pub fn to_subscription(&self) -> Subscription {
        Subscription {
            on: self.on,
            recipients: Recipients {
                user_ids: self.user_ids.clone(),
                emails: self.emails.clone(),
                slack_channel_ids: self.slack_channel_ids.clone(),
                webhook_urls: self.webhook_urls.clone(),
            },
            include_skipped: false,
        }
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryChannel {
    Email,
    Slack,
    Webhook,
}

impl DeliveryChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryChannel::Email => "EMAIL",
            DeliveryChannel::Slack => "SLACK",
            DeliveryChannel::Webhook => "WEBHOOK",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryChannel> {
        match s {
            "EMAIL" => Some(DeliveryChannel::Email),
            "SLACK" => Some(DeliveryChannel::Slack),
            "WEBHOOK" => Some(DeliveryChannel::Webhook),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Claimed and being delivered (or waiting for its next attempt).
    Pending,
    Delivered,
    /// Gave up: a permanent refusal, or every attempt failed.
    Failed,
    /// Not sent on purpose (e.g. Slack after a downgrade to `PROFESSIONAL`).
    Skipped,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Delivered => "DELIVERED",
            DeliveryStatus::Failed => "FAILED",
            DeliveryStatus::Skipped => "SKIPPED",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "PENDING" => Some(DeliveryStatus::Pending),
            "DELIVERED" => Some(DeliveryStatus::Delivered),
            "FAILED" => Some(DeliveryStatus::Failed),
            "SKIPPED" => Some(DeliveryStatus::Skipped),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        self != DeliveryStatus::Pending
    }
}

/// One delivery of a run's notifications: to one recipient on one channel. Its id is
/// derived from `(run, channel, recipient)`, so every redelivery of the run's event finds
/// the same record and the message goes out once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub delivery_id: String,
    pub channel: DeliveryChannel,
    /// The recipient, masked (`a***@example.com`, `hooks.slack.com/…/Ab3d`).
    pub target: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the recipient is notified: `SUCCESS`, `FAILURE`, `ALL` or `CONDITION:<name>`.
    #[serde(default)]
    pub reasons: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The claim of whoever is delivering it (store bookkeeping, never shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_token: Option<String>,
    /// A `PENDING` delivery whose claim ran out may be taken over (its deliverer died).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<DateTime<Utc>>,
}

/// A workspace's Slack integration: channel ids and their incoming-webhook URLs. The URLs
/// are secrets, kept only sealed (`SecretBox`, a JSON object `{id: url}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlackIntegration {
    pub channel_ids: Vec<String>,
    pub sealed_webhook_urls: String,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// The workspace-wide secret that signs webhook deliveries, kept only sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSigningSecret {
    pub sealed_secret: String,
    pub rotated_by: String,
    pub rotated_at: DateTime<Utc>,
}

/// A workspace's notification integrations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Integrations {
    #[serde(default)]
    pub slack: Option<SlackIntegration>,
    #[serde(default)]
    pub webhook_secret: Option<WebhookSigningSecret>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_scheduled_run_id_is_the_one_stored_runs_were_given() {
        // UUID v5 of "s1/2026-03-08T07:30:00Z" in the run-id namespace, computed apart:
        // a duplicate delivery must name the run an earlier build created.
        let t = Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).single();
        let Some(t) = t else { panic!("valid instant") };
        assert_eq!(
            Run::scheduled_run_id("s1", t),
            "ac4d661e-cdb0-5d4f-9fb0-4bfd54755802"
        );
    }

    proptest::proptest! {
        #[test]
        fn the_fire_key_is_the_rfc3339_second(
            seconds in -70_000_000_000i64..300_000_000_000,
            nanos in 0u32..1_000_000_000,
            id in "[a-z0-9-]{0,40}",
        ) {
            let Some(at) = DateTime::from_timestamp(seconds, nanos) else {
                panic!("in range")
            };
            let chrono = format!(
                "{id}/{}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            proptest::prop_assert_eq!(fire_key(&id, at), chrono);
        }
    }

    #[test]
    fn scheduled_run_id_is_stable_per_fire_and_distinct_across_fires() {
        let t = Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).single();
        let Some(t) = t else { panic!("valid instant") };
        let a = Run::scheduled_run_id("s1", t);
        assert_eq!(a, Run::scheduled_run_id("s1", t));
        assert_ne!(a, Run::scheduled_run_id("s2", t));
        assert_ne!(
            a,
            Run::scheduled_run_id("s1", t + chrono::Duration::hours(1))
        );
    }

    #[test]
    fn project_roles_are_ordered_by_privilege() {
        assert!(ProjectRole::CanView < ProjectRole::CanExplore);
        assert!(ProjectRole::CanExplore < ProjectRole::CanEdit);
        assert!(ProjectRole::CanEdit < ProjectRole::FullAccess);
    }
}
