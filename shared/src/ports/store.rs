//! State-store ports, one trait per aggregate. Every query is scoped by `workspace_id` so
//! tenant isolation holds in the store itself, not only in the services above it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PortError;
use crate::domain::cadence::Cadence;
use crate::domain::model::{
    CachedResult, Connection, DeliveryRecord, Integrations, Member, Plan, Project, ProjectRole,
    ProjectVersion, PublishedResults, Run, RunGuard, RunStatus, RunTrigger, Schedule,
    SlackIntegration, User, VersionBody, WebhookSigningSecret, Workspace,
};

/// A page of a list: at most `limit` items after the opaque `cursor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        PageRequest {
            limit,
            cursor: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more items follow; pass it back as `cursor`.
    pub next_cursor: Option<String>,
}

#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// Fails with `AlreadyExists` if the id is taken.
    async fn create_workspace(&self, workspace: &Workspace) -> Result<(), PortError>;
    async fn get_workspace(&self, workspace_id: &str) -> Result<Option<Workspace>, PortError>;
    async fn set_plan(&self, workspace_id: &str, plan: Plan) -> Result<Workspace, PortError>;
    async fn set_auto_archive(
        &self,
        workspace_id: &str,
        after_days: Option<u32>,
    ) -> Result<Workspace, PortError>;
    /// Records a user seen in a token (their e-mail may change between tokens).
    async fn upsert_user(&self, user: &User) -> Result<(), PortError>;
    async fn get_user(&self, workspace_id: &str, user_id: &str) -> Result<Option<User>, PortError>;
    /// Every workspace, oldest first (maintenance jobs walk them).
    async fn list_workspaces(&self, page: &PageRequest) -> Result<Page<Workspace>, PortError>;
}

#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Creates the project, an empty draft, and the creator's `FULL_ACCESS` membership.
    async fn create_project(&self, project: &Project) -> Result<(), PortError>;
    async fn get_project(
        &self,
        workspace_id: &str,
        project_id: &str,
    ) -> Result<Option<Project>, PortError>;
    /// Projects of the workspace; with `member` set, only those the user has a role on.
    async fn list_projects(
        &self,
        workspace_id: &str,
        member: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Project>, PortError>;
    async fn get_member_role(
        &self,
        workspace_id: &str,
        project_id: &str,
        user_id: &str,
    ) -> Result<Option<ProjectRole>, PortError>;
    async fn put_member(&self, workspace_id: &str, member: &Member) -> Result<(), PortError>;
    /// Removes the user's role on the project; `NotFound` when they had none.
    async fn remove_member(
        &self,
        workspace_id: &str,
        project_id: &str,
        user_id: &str,
    ) -> Result<(), PortError>;
    async fn get_draft(
        &self,
        workspace_id: &str,
        project_id: &str,
    ) -> Result<Option<VersionBody>, PortError>;
    async fn put_draft(
        &self,
        workspace_id: &str,
        project_id: &str,
        body: &VersionBody,
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// Atomically copies the draft to the next version number and returns it.
    async fn publish(
        &self,
        workspace_id: &str,
        project_id: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<ProjectVersion, PortError>;
    async fn get_version(
        &self,
        workspace_id: &str,
        project_id: &str,
        version: u32,
    ) -> Result<Option<ProjectVersion>, PortError>;
    async fn set_archived(
        &self,
        workspace_id: &str,
        project_id: &str,
        archived: bool,
        at: DateTime<Utc>,
    ) -> Result<Project, PortError>;
    /// Records human activity on the project (drives auto-archive).
    async fn touch_activity(
        &self,
        workspace_id: &str,
        project_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// Projects of the workspace that are not archived and whose last human activity is
    /// before `before`, oldest activity first.
    async fn list_inactive_projects(
        &self,
        workspace_id: &str,
        before: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Project>, PortError>;
}

/// Limits checked atomically with a schedule insert or update (`None` = unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleLimits {
    /// All schedules of the project, every creator together.
    pub max_per_project: Option<u32>,
    /// Schedules of this creator on the project.
    pub max_per_creator: Option<u32>,
    /// Hourly schedules of the project (checked only when the schedule is hourly).
    pub max_hourly_per_project: Option<u32>,
}

/// Filters of the workspace-wide admin listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleFilter {
    pub project_id: Option<String>,
    pub created_by: Option<String>,
    pub enabled: Option<bool>,
}

/// What the local timer needs of a schedule to fire it
/// (`ScheduleStore::list_schedule_triggers`).
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleTrigger {
    pub workspace_id: String,
    pub schedule_id: String,
    pub cadence: Cadence,
    pub timezone: String,
    /// The schedule's last change (the timer resumes from it when nothing fired since).
    pub updated_at: DateTime<Utc>,
    /// Whether its trigger should fire (enabled and project not archived).
    pub active: bool,
}

#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Inserts the schedule if the limits still hold; fails with `LimitReached`.
    async fn insert_schedule(
        &self,
        schedule: &Schedule,
        limits: &ScheduleLimits,
    ) -> Result<(), PortError>;
    async fn get_schedule(
        &self,
        workspace_id: &str,
        schedule_id: &str,
    ) -> Result<Option<Schedule>, PortError>;
    /// Oldest first.
    async fn list_project_schedules(
        &self,
        workspace_id: &str,
        project_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Schedule>, PortError>;
    async fn list_workspace_schedules(
        &self,
        workspace_id: &str,
        filter: &ScheduleFilter,
        page: &PageRequest,
    ) -> Result<Page<Schedule>, PortError>;
    /// Replaces the schedule stored at `expected_version` with `schedule` (whose `version`
    /// is the new one); fails with `VersionMismatch` or `LimitReached`.
    async fn update_schedule(
        &self,
        schedule: &Schedule,
        expected_version: u64,
        limits: &ScheduleLimits,
    ) -> Result<(), PortError>;
    async fn delete_schedule(&self, workspace_id: &str, schedule_id: &str)
    -> Result<(), PortError>;
    /// Every schedule of every workspace with whether its trigger should fire
    /// (enabled and project not archived). Used by the local timer and `reconcile`.
    async fn list_all_schedules(
        &self,
        page: &PageRequest,
    ) -> Result<Page<(Schedule, bool)>, PortError>;
    /// Every schedule of every workspace reduced to what the local timer needs to fire it,
    /// all pages at once. A store that can read just those fields overrides this.
    async fn list_schedule_triggers(&self) -> Result<Vec<ScheduleTrigger>, PortError> {
        let mut page = PageRequest::first(1_000);
        let mut triggers = Vec::new();
        loop {
            let batch = self.list_all_schedules(&page).await?;
            triggers.extend(batch.items.into_iter().map(|(s, active)| ScheduleTrigger {
                workspace_id: s.workspace_id,
                schedule_id: s.schedule_id,
                cadence: s.cadence,
                timezone: s.timezone,
                updated_at: s.updated_at,
                active,
            }));
            match batch.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(triggers),
            }
        }
    }
}

/// The outcome of an idempotent run creation.
#[derive(Clone, Debug, PartialEq)]
pub enum RunCreated {
    Created,
    /// A run with the same id already existed; it is returned unchanged.
    Existing(Box<Run>),
}

#[async_trait]
pub trait RunStore: Send + Sync {
    /// Creates the run unless one with the same id exists (conditional write).
    async fn create_run_if_absent(&self, run: &Run) -> Result<RunCreated, PortError>;
    /// `create_run_if_absent` for each run, in order, as if one after another (a run
    /// repeated in the batch finds the first as existing); one result per run. A store
    /// that can write them together overrides this, and may then fail them all at once.
    async fn create_runs_if_absent(&self, runs: &[Run]) -> Vec<Result<RunCreated, PortError>> {
        let mut created = Vec::with_capacity(runs.len());
        for run in runs {
            created.push(self.create_run_if_absent(run).await);
        }
        created
    }
    async fn get_run(&self, workspace_id: &str, run_id: &str) -> Result<Option<Run>, PortError>;
    /// The run log of a schedule, newest fire first, without runs expired at `as_of`
    /// (expiry deletion may lag, so reads filter).
    async fn list_schedule_runs(
        &self,
        workspace_id: &str,
        schedule_id: &str,
        as_of: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Run>, PortError>;
    /// The latest fire time recorded for every schedule (the local timer resumes from it).
    async fn last_fire_times(&self) -> Result<Vec<(String, DateTime<Utc>)>, PortError>;
    /// Replaces the stored run with `run` if the stored one still has the status and
    /// attempt of `expected` (conditional write); `VersionMismatch` otherwise, `NotFound`
    /// when there is none.
    async fn update_run(&self, run: &Run, expected: RunGuard) -> Result<(), PortError>;
    /// Runs of a project, newest `createdAt` first, without runs expired at `as_of`.
    async fn list_project_runs(
        &self,
        workspace_id: &str,
        project_id: &str,
        filter: &RunFilter,
        as_of: DateTime<Utc>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Run>, PortError>;
    /// `PENDING` and `RUNNING` runs of every workspace (the sweeper's view).
    async fn list_active_runs(&self, page: &PageRequest) -> Result<Page<Run>, PortError>;
    /// Deletes up to `limit` runs expired at `as_of`; returns how many. Stores with their
    /// own expiry (DynamoDB TTL) may do nothing.
    async fn purge_expired_runs(&self, as_of: DateTime<Utc>, limit: u32) -> Result<u64, PortError>;
}

/// Filters of the project run listing (`None` = any).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub trigger: Option<RunTrigger>,
}

#[async_trait]
pub trait ResultsStore: Send + Sync {
    /// Stores `results` unless the stored ones come from a run with an `as_of` at or after
    /// theirs (conditional write); returns whether they were stored.
    async fn put_results_if_newer(&self, results: &PublishedResults) -> Result<bool, PortError>;
    async fn get_results(
        &self,
        workspace_id: &str,
        project_id: &str,
    ) -> Result<Option<PublishedResults>, PortError>;
}

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Creates or replaces the named connection of the workspace.
    async fn put_connection(&self, connection: &Connection) -> Result<(), PortError>;
    async fn get_connection(
        &self,
        workspace_id: &str,
        name: &str,
    ) -> Result<Option<Connection>, PortError>;
    /// All connections of the workspace, by name.
    async fn list_connections(&self, workspace_id: &str) -> Result<Vec<Connection>, PortError>;
}

#[async_trait]
pub trait SqlCacheStore: Send + Sync {
    /// The entry, if present and not expired at `as_of`.
    async fn get_cached(
        &self,
        workspace_id: &str,
        key: &str,
        as_of: DateTime<Utc>,
    ) -> Result<Option<CachedResult>, PortError>;
    /// Creates or overwrites the entry.
    async fn put_cached(&self, entry: &CachedResult) -> Result<(), PortError>;
}

/// Fixed-window counters for rate limits.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts one hit on `key` in the window starting at `window_start` if the window has
    /// fewer than `limit` hits (atomically); returns whether the hit was counted. Windows
    /// may be forgotten after `expires_at`.
    async fn hit(
        &self,
        key: &str,
        window_start: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        limit: u32,
    ) -> Result<bool, PortError>;
}

/// What a claim on a delivery found (`DeliveryStore::claim_delivery`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryClaim {
    /// The caller now holds the delivery: the stored record, with the caller's claim token
    /// and lease, and the attempts made so far (by an earlier claimant that died).
    Claimed(DeliveryRecord),
    /// Another claimant holds it and its lease has not run out.
    Busy(DeliveryRecord),
    /// It is over (`DELIVERED`, `FAILED` or `SKIPPED`).
    Done(DeliveryRecord),
}

/// The deliveries of run notifications, keyed by `(workspace, run, deliveryId)`. The
/// conditional claim makes delivery idempotent across redeliveries of a run event.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Claims the delivery `record.delivery_id` of the run for the claimant named by
    /// `record.claim_token` until `record.lease_until` (conditional write):
    /// - no record yet: `record` is stored (`PENDING`, no attempts) → `Claimed(record)`;
    /// - a final record (`is_final`) → `Done(stored)`;
    /// - a `PENDING` record whose lease is after `now` → `Busy(stored)`;
    /// - a `PENDING` record whose lease ran out (at or before `now`) → the stored record
    ///   takes the new token and lease, keeping its attempts → `Claimed(updated)`.
    ///
    /// `NotFound` when the run does not exist in the workspace.
    async fn claim_delivery(
        &self,
        workspace_id: &str,
        run_id: &str,
        record: &DeliveryRecord,
        now: DateTime<Utc>,
    ) -> Result<DeliveryClaim, PortError>;
    /// Replaces the claimant's record (attempts, status, error, lease) if it still holds
    /// the claim (same `claim_token`); `VersionMismatch` when another claimant took it
    /// over, `NotFound` when there is no such delivery.
    async fn save_delivery(
        &self,
        workspace_id: &str,
        run_id: &str,
        record: &DeliveryRecord,
    ) -> Result<(), PortError>;
    /// The run's deliveries, by channel and then target.
    async fn list_deliveries(
        &self,
        workspace_id: &str,
        run_id: &str,
    ) -> Result<Vec<DeliveryRecord>, PortError>;
}

/// The outbox of run events: a run is written with `event_pending` set by the write that
/// ends it; the flag is cleared once its event has been handed over. The sweeper publishes
/// what is still pending, so a failed publish delays an event but never loses it.
#[async_trait]
pub trait RunEventOutbox: Send + Sync {
    /// Runs of every workspace whose `event_pending` is set, in a stable order.
    async fn list_pending_events(&self, page: &PageRequest) -> Result<Page<Run>, PortError>;
    /// Clears the run's `event_pending` and changes nothing else (not even under a
    /// concurrent writer); a missing run is not an error.
    async fn mark_event_published(&self, workspace_id: &str, run_id: &str)
    -> Result<(), PortError>;
}

/// The notification integrations of a workspace: Slack channels and the webhook signing
/// secret, both kept only sealed. The two parts change independently.
#[async_trait]
pub trait IntegrationStore: Send + Sync {
    /// The workspace's integrations (empty when none were ever set).
    async fn get_integrations(&self, workspace_id: &str) -> Result<Integrations, PortError>;
    /// Creates or replaces the Slack integration, leaving the signing secret as it is.
    async fn put_slack_integration(
        &self,
        workspace_id: &str,
        slack: &SlackIntegration,
    ) -> Result<(), PortError>;
    /// Creates or replaces the signing secret, leaving the Slack integration as it is.
    async fn put_webhook_secret(
        &self,
        workspace_id: &str,
        secret: &WebhookSigningSecret,
    ) -> Result<(), PortError>;
}
