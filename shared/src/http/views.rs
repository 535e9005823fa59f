//! Response bodies: the JSON shapes of SPEC §5, built from the services' results. Kept
//! apart from the domain types so that internal fields (workspace ids of other records,
//! expiry bookkeeping) never leak into a response by accident.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::cadence::Cadence;
use crate::domain::model::{
    CellResult, Connection, ConnectionKind, DeliveryChannel, DeliveryRecord, DeliveryStatus,
    NotificationSettings, OverlapPolicy, Plan, ProjectRole, ProjectVersion, PublishedResults, Run,
    RunError, RunNotification, RunStatus, RunTrigger, SkipReason, StateEvent, Workspace,
};
use crate::services::integrations::IntegrationsView;
use crate::services::projects::ProjectView;
use crate::services::schedules::{ScheduleView, ScheduleWarning};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProjectRequest {
    pub title: String,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutMemberRequest {
    pub role: ProjectRole,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoArchiveRequest {
    /// Archive projects with no human activity for this many days; `null` turns it off.
    pub after_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectResponse {
    pub project_id: String,
    pub title: String,
    pub description: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived: bool,
    pub published_version: Option<u32>,
    /// The caller's effective role on the project.
    pub role: ProjectRole,
}

impl From<ProjectView> for ProjectResponse {
    fn from(v: ProjectView) -> Self {
        let p = v.project;
        ProjectResponse {
            project_id: p.project_id,
            title: p.title,
            description: p.description,
            created_by: p.created_by,
            created_at: p.created_at,
            updated_at: p.updated_at,
            archived: p.archived,
            published_version: p.published_version,
            role: v.role,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectList {
    pub projects: Vec<ProjectResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishResponse {
    pub version: u32,
    pub published_at: DateTime<Utc>,
}

impl From<ProjectVersion> for PublishResponse {
    fn from(v: ProjectVersion) -> Self {
        PublishResponse {
            version: v.version,
            published_at: v.published_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberResponse {
    pub project_id: String,
    pub user_id: String,
    pub role: ProjectRole,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceResponse {
    pub workspace_id: String,
    pub plan: Plan,
    pub auto_archive_after_days: Option<u32>,
}

impl From<Workspace> for WorkspaceResponse {
    fn from(w: Workspace) -> Self {
        WorkspaceResponse {
            workspace_id: w.workspace_id,
            plan: w.plan,
            auto_archive_after_days: w.auto_archive_after_days,
        }
    }
}

/// A run as the run log and the trigger endpoint show it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub project_id: String,
    pub schedule_id: Option<String>,
    pub run_url: String,
    pub status: RunStatus,
    pub run_trigger: RunTrigger,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Milliseconds between start and end.
    pub elapsed_time: Option<i64>,
    pub project_version: Option<u32>,
    pub skip_reason: Option<SkipReason>,
    pub update_published_results: bool,
    pub use_cached_sql_results: bool,
    pub trace_id: String,
    pub state_events: Vec<StateEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}

/// The link to a run in the app.
pub fn run_url(public_url: &str, project_id: &str, run_id: &str) -> String {
    format!("{public_url}/projects/{project_id}/runs/{run_id}")
}

/// The API address of a run's status.
pub fn run_status_url(public_url: &str, project_id: &str, run_id: &str) -> String {
    format!("{public_url}/api/v1/projects/{project_id}/runs/{run_id}")
}

impl RunSummary {
    pub fn new(run: Run, public_url: &str) -> Self {
        RunSummary {
            run_url: run_url(public_url, &run.project_id, &run.run_id),
            elapsed_time: run
                .start_time
                .zip(run.end_time)
                .map(|(s, e)| (e - s).num_milliseconds()),
            run_id: run.run_id,
            project_id: run.project_id,
            schedule_id: run.schedule_id,
            status: run.status,
            run_trigger: run.run_trigger,
            scheduled_for: run.scheduled_for,
            start_time: run.start_time,
            end_time: run.end_time,
            project_version: run.project_version,
            skip_reason: run.skip_reason,
            update_published_results: run.update_published_results,
            use_cached_sql_results: run.use_cached_sql_results,
            trace_id: run.trace_id,
            state_events: run.state_events,
            error: run.error,
        }
    }
}

/// One delivery of a run's notifications, as the run status shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub channel: DeliveryChannel,
    /// The recipient, masked: `a***@example.com`, `C0123 (hooks.slack.com/…/Ab3d)`,
    /// `hooks.example.com/…/x9Zk`.
    pub target: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the recipient is notified: `SUCCESS`, `FAILURE`, `ALL` or `CONDITION:<name>`.
    pub reasons: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        DeliveryView {
            channel: d.channel,
            target: d.target,
            status: d.status,
            attempts: d.attempts,
            error: d.error,
            reasons: d.reasons,
            updated_at: d.updated_at,
        }
    }
}

/// `GET /projects/{projectId}/runs/{runId}`: the summary plus the cells' results.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatusResponse {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub cells: Vec<CellResult>,
    /// Deliveries of the run's notifications.
    pub notifications: Vec<DeliveryView>,
}

impl RunStatusResponse {
    pub fn new(mut run: Run, public_url: &str) -> Self {
        let cells = std::mem::take(&mut run.cells);
        let notifications = std::mem::take(&mut run.notifications)
            .into_iter()
            .map(Into::into)
            .collect();
        RunStatusResponse {
            summary: RunSummary::new(run, public_url),
            cells,
            notifications,
        }
    }
}

/// `POST /projects/{projectId}/runs` (RunProject).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunCreatedResponse {
    pub project_id: String,
    pub run_id: String,
    pub run_url: String,
    pub run_status_url: String,
    pub trace_id: String,
    pub project_version: Option<u32>,
    /// The notifications requested for the run.
    pub notifications: Vec<RunNotification>,
}

impl RunCreatedResponse {
    pub fn new(run: &Run, public_url: &str) -> Self {
        RunCreatedResponse {
            project_id: run.project_id.clone(),
            run_id: run.run_id.clone(),
            run_url: run_url(public_url, &run.project_id, &run.run_id),
            run_status_url: run_status_url(public_url, &run.project_id, &run.run_id),
            trace_id: run.trace_id.clone(),
            project_version: run.project_version,
            notifications: run
                .notification_settings
                .subscriptions
                .iter()
                .map(|s| RunNotification {
                    on: s.on,
                    user_ids: s.recipients.user_ids.clone(),
                    slack_channel_ids: s.recipients.slack_channel_ids.clone(),
                    emails: s.recipients.emails.clone(),
                    webhook_urls: s.recipients.webhook_urls.clone(),
                })
                .collect(),
        }
    }
}

/// A dry run: the request was valid; nothing ran.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRunResponse {
    pub project_id: String,
    pub project_version: u32,
    pub trace_id: String,
    pub dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunListResponse {
    pub runs: Vec<RunSummary>,
    /// The path and query of the next page, when there may be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultsResponse {
    pub project_id: String,
    /// The run that produced these results.
    pub run_id: String,
    pub project_version: u32,
    /// The run's scheduled time (or its start for other runs).
    pub as_of: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The results of the cells the app shows.
    pub cells: Vec<CellResult>,
}

impl From<PublishedResults> for ResultsResponse {
    fn from(r: PublishedResults) -> Self {
        ResultsResponse {
            project_id: r.project_id,
            run_id: r.run_id,
            project_version: r.project_version,
            as_of: r.as_of,
            updated_at: r.updated_at,
            cells: r.cells,
        }
    }
}

/// A data connection as the API shows it: never its configuration.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionResponse {
    pub name: String,
    pub kind: ConnectionKind,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl From<Connection> for ConnectionResponse {
    fn from(c: Connection) -> Self {
        ConnectionResponse {
            name: c.name,
            kind: c.kind,
            created_at: c.created_at,
            updated_at: c.updated_at,
            updated_by: c.updated_by,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunList {
    pub runs: Vec<RunSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleResponse {
    pub schedule_id: String,
    pub project_id: String,
    pub created_by: String,
    /// The creator's role on the project when the schedule was created.
    pub creator_role: ProjectRole,
    pub cadence: Cadence,
    pub timezone: String,
    pub enabled: bool,
    pub update_published_results: bool,
    pub use_cached_sql_results: bool,
    pub overlap_policy: OverlapPolicy,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Increments on every change; send it back in `If-Match`.
    pub version: u64,
    /// The EventBridge Scheduler expression, e.g. `cron(30 8 ? * MON-FRI *)`.
    pub schedule_expression: String,
    /// The next five fire instants (UTC); empty while the schedule or its project is off.
    pub next_runs: Vec<DateTime<Utc>>,
    pub warnings: Vec<ScheduleWarning>,
    pub last_run: Option<RunSummary>,
    pub notifications: NotificationSettings,
}

impl ScheduleResponse {
    pub fn new(v: ScheduleView, public_url: &str) -> Self {
        let s = v.schedule;
        ScheduleResponse {
            schedule_id: s.schedule_id,
            project_id: s.project_id,
            created_by: s.created_by,
            creator_role: s.creator_role,
            cadence: s.cadence,
            timezone: s.timezone,
            enabled: s.enabled,
            update_published_results: s.update_published_results,
            use_cached_sql_results: s.use_cached_sql_results,
            overlap_policy: s.overlap_policy,
            created_at: s.created_at,
            updated_at: s.updated_at,
            version: s.version,
            schedule_expression: v.schedule_expression,
            next_runs: v.next_runs,
            warnings: v.warnings,
            last_run: v.last_run.map(|r| RunSummary::new(r, public_url)),
            notifications: s.notifications,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `PUT /admin/integrations/slack`: the workspace's Slack channels and their
/// incoming-webhook URLs (secrets: stored sealed, never returned). Replaces all channels.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackIntegrationRequest {
    pub channels: std::collections::BTreeMap<String, String>,
}

/// The workspace's integrations, without any secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationsResponse {
    pub slack_channel_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack_updated_at: Option<DateTime<Utc>>,
    /// When the webhook signing secret was last rotated; absent while there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret_rotated_at: Option<DateTime<Utc>>,
}

impl From<IntegrationsView> for IntegrationsResponse {
    fn from(v: IntegrationsView) -> Self {
        IntegrationsResponse {
            slack_channel_ids: v.slack_channel_ids,
            slack_updated_at: v.slack_updated_at,
            webhook_secret_rotated_at: v.webhook_secret_rotated_at,
        }
    }
}

/// The new webhook signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningSecretResponse {
    pub signing_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}
