//! Notifications as use cases (SPEC §7):
//! - `NotificationRules` checks the notification settings of schedules and API runs when
//!   they are set, and reads a run's delivery records for display;
//! - `NotifyService::handle` consumes one run event (SNS in AWS, the in-process bus
//!   locally) and expands it into one delivery per (run, channel, recipient).
//!
//! Delivery is at least once and idempotent: each delivery is claimed in the store with a
//! conditional write keyed by its id (derived from run, channel and recipient), so any
//! number of redeliveries of the same event sends each message once. A claimant retries
//! with exponential backoff up to `max_attempts`, records every attempt on the delivery,
//! and a claimant that died is taken over once its lease ran out. Channels are delivered
//! concurrently, so one that is down delays no other. Nothing here writes the run itself:
//! notifications never change a run's status.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;

use crate::domain::model::{
    DeliveryChannel, DeliveryRecord, DeliveryStatus, Integrations, NotificationSettings, Plan,
    Project, ProjectRole, Run, RunNotification, User, VersionBody, Workspace, WorkspaceRole,
};
use crate::domain::notifications::{
    self, NotificationError, NotificationMessage, OnlySelf, Problem, Reason, RecipientRef,
    ValidationContext,
};
use crate::domain::policy::Denied;
use crate::domain::ssrf::UrlPolicy;
use crate::ports::{
    Clock, Deliverer, DeliveryClaim, DeliveryError, DeliveryStore, DeliveryTarget,
    IntegrationStore, PortError, ProjectStore, RunEvent, RunStore, Secret, SecretBox,
    WorkspaceStore,
};

use super::ServiceError;

impl From<NotificationError> for ServiceError {
    fn from(e: NotificationError) -> Self {
        match e.problem {
            Problem::SlackNotOnPlan => {
                ServiceError::Denied(Denied::PlanLimit { message: e.message })
            }
            Problem::OnlySelf => ServiceError::Denied(Denied::Forbidden {
                message: format!("{}: {}", e.field, e.message),
                field: Some("notifications"),
            }),
            other => ServiceError::Invalid {
                code: other.code(),
                field: Some(e.field),
                message: e.message,
            },
        }
    }
}

/// Who a notification may name when the rules' role is below `CAN_EDIT`.
#[derive(Clone, Copy, Debug)]
pub struct SelfRecipient<'a> {
    pub user_id: &'a str,
    pub email: Option<&'a str>,
}

/// Checks notification settings when they are set, and reads delivery records.
pub struct NotificationRules {
    pub workspaces: Arc<dyn WorkspaceStore>,
    pub projects: Arc<dyn ProjectStore>,
    pub integrations: Arc<dyn IntegrationStore>,
    pub deliveries: Arc<dyn DeliveryStore>,
    /// The SSRF guard's policy for webhook URLs (loopback only by the development flag).
    pub url_policy: UrlPolicy,
}

impl NotificationRules {
    /// Validates a schedule's settings as `rules_role` may set them on `project`
    /// (conditional notifications refer to the published version `version`).
    pub async fn check_schedule(
        &self,
        workspace: &Workspace,
        project: &Project,
        version: Option<&VersionBody>,
        rules_role: ProjectRole,
        me: SelfRecipient<'_>,
        settings: &NotificationSettings,
    ) -> Result<(), ServiceError> {
        if settings.is_empty() {
            return Ok(());
        }
        let integrations = self
            .integrations
            .get_integrations(&workspace.workspace_id)
            .await?;
        let channels = slack_channels(&integrations);
        let ctx = self.context(workspace, version, rules_role, me, &channels, &integrations);
        notifications::validate_settings(settings, "notifications", &ctx)?;
        let users = settings
            .subscriptions
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    format!("notifications.subscriptions[{i}].recipients"),
                    &s.recipients,
                )
            })
            .chain(settings.conditional.iter().enumerate().map(|(i, c)| {
                (
                    format!("notifications.conditional[{i}].recipients"),
                    &c.recipients,
                )
            }))
            .flat_map(|(at, r)| {
                r.user_ids
                    .iter()
                    .enumerate()
                    .map(move |(j, u)| (format!("{at}.userIds[{j}]"), u.clone()))
            })
            .collect::<Vec<_>>();
        self.check_users(project, users).await
    }

    /// Validates an API run's `notifications` and returns them as settings.
    pub async fn check_run(
        &self,
        project: &Project,
        role: ProjectRole,
        me: SelfRecipient<'_>,
        list: &[RunNotification],
    ) -> Result<NotificationSettings, ServiceError> {
        if list.is_empty() {
            return Ok(NotificationSettings::default());
        }
        let workspace = self
            .workspaces
            .get_workspace(&project.workspace_id)
            .await?
            .ok_or(ServiceError::NotFound {
                code: "WORKSPACE_NOT_FOUND",
                what: "workspace",
            })?;
        let workspace = &workspace;
        let integrations = self
            .integrations
            .get_integrations(&workspace.workspace_id)
            .await?;
        let channels = slack_channels(&integrations);
        let ctx = self.context(workspace, None, role, me, &channels, &integrations);
        let settings = notifications::validate_run_notifications(list, &ctx)?;
        let users = list
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                n.user_ids
                    .iter()
                    .enumerate()
                    .map(move |(j, u)| (format!("notifications[{i}].userIds[{j}]"), u.clone()))
            })
            .collect();
        self.check_users(project, users).await?;
        Ok(settings)
    }

    fn context<'a>(
        &self,
        workspace: &Workspace,
        version: Option<&'a VersionBody>,
        role: ProjectRole,
        me: SelfRecipient<'a>,
        channels: &'a [String],
        integrations: &Integrations,
    ) -> ValidationContext<'a> {
        ValidationContext {
            plan: workspace.plan,
            version,
            only_self: (role < ProjectRole::CanEdit).then_some(OnlySelf {
                user_id: me.user_id,
                email: me.email,
            }),
            slack_channels: channels,
            has_signing_secret: integrations.webhook_secret.is_some(),
            url_policy: self.url_policy,
        }
    }

    /// Every user id must name a known user of the workspace who may see the project.
    async fn check_users(
        &self,
        project: &Project,
        users: Vec<(String, String)>,
    ) -> Result<(), ServiceError> {
        for (field, user_id) in users {
            let user = self
                .workspaces
                .get_user(&project.workspace_id, &user_id)
                .await?;
            let known = match user {
                None => false,
                Some(user) => has_access(self.projects.as_ref(), project, &user).await?,
            };
            if !known {
                return Err(ServiceError::Invalid {
                    code: Problem::UnknownUser.code(),
                    field: Some(field),
                    message: format!(
                        "{user_id:?} is not a known user of the workspace with access to the project"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The run's delivery records, for the run status response.
    pub async fn deliveries(
        &self,
        workspace_id: &str,
        run_id: &str,
    ) -> Result<Vec<DeliveryRecord>, ServiceError> {
        Ok(self
            .deliveries
            .list_deliveries(workspace_id, run_id)
            .await?)
    }
}

fn slack_channels(integrations: &Integrations) -> Vec<String> {
    integrations
        .slack
        .as_ref()
        .map(|s| s.channel_ids.clone())
        .unwrap_or_default()
}

async fn has_access(
    projects: &dyn ProjectStore,
    project: &Project,
    user: &User,
) -> Result<bool, ServiceError> {
    if user.workspace_role == WorkspaceRole::Admin {
        return Ok(true);
    }
    Ok(projects
        .get_member_role(&project.workspace_id, &project.project_id, &user.user_id)
        .await?
        .is_some())
}

#[derive(Clone, Debug)]
pub struct NotifySettings {
    /// Base of run links: `{public_url}/projects/{projectId}/runs/{runId}`.
    pub public_url: String,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each further one.
    pub first_backoff: std::time::Duration,
    pub max_backoff: std::time::Duration,
    /// How long a claim holds a delivery; longer than all attempts of one claimant take.
    pub lease: Duration,
    /// Deliveries in flight at once per channel.
    pub concurrency_per_channel: usize,
}

impl NotifySettings {
    pub fn new(public_url: impl Into<String>) -> Self {
        NotifySettings {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            max_attempts: 4,
            first_backoff: std::time::Duration::from_secs(2),
            max_backoff: std::time::Duration::from_secs(30),
            lease: Duration::minutes(5),
            concurrency_per_channel: 8,
        }
    }

    fn backoff(&self, attempts: u32) -> std::time::Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// The channels, one deliverer each.
#[derive(Clone)]
pub struct Deliverers {
    pub email: Arc<dyn Deliverer>,
    pub slack: Arc<dyn Deliverer>,
    pub webhook: Arc<dyn Deliverer>,
}

impl Deliverers {
    fn of(&self, channel: DeliveryChannel) -> &dyn Deliverer {
        match channel {
            DeliveryChannel::Email => self.email.as_ref(),
            DeliveryChannel::Slack => self.slack.as_ref(),
            DeliveryChannel::Webhook => self.webhook.as_ref(),
        }
    }
}

pub struct NotifyService {
    pub workspaces: Arc<dyn WorkspaceStore>,
    pub projects: Arc<dyn ProjectStore>,
    pub runs: Arc<dyn RunStore>,
    pub deliveries: Arc<dyn DeliveryStore>,
    pub integrations: Arc<dyn IntegrationStore>,
    pub secrets: Arc<dyn SecretBox>,
    pub deliverers: Deliverers,
    pub clock: Arc<dyn Clock>,
    pub settings: NotifySettings,
}

/// What one handling of a run event did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyReport {
    pub delivered: u32,
    pub failed: u32,
    pub skipped: u32,
    /// Deliveries an earlier handling of the event finished.
    pub already_done: u32,
    /// Deliveries another handler is working on right now.
    pub in_progress: u32,
    /// Conditions that could not be evaluated: `(name, why)`.
    pub unevaluable: Vec<(String, String)>,
}

/// One delivery to make, before its claim.
struct Planned {
    channel: DeliveryChannel,
    key: String,
    masked: String,
    reasons: Vec<Reason>,
    action: Action,
}

enum Action {
    Send(DeliveryTarget),
    /// Recorded `SKIPPED` with the reason, not sent.
    Skip(String),
    /// Recorded `FAILED` with the reason, not sent.
    Fail(String),
}

enum Outcome {
    Final(DeliveryStatus),
    AlreadyDone,
    InProgress,
}

type BoxedDelivery<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome, ServiceError>> + Send + 'a>>;

impl NotifyService {
    /// Handles one (possibly repeated) run event. Fails only when the store fails, so
    /// that the event is delivered again; every channel failure is recorded instead.
    pub async fn handle(&self, event: &RunEvent) -> Result<NotifyReport, ServiceError> {
        let mut report = NotifyReport::default();
        let Some(run) = self
            .runs
            .get_run(&event.workspace_id, &event.run_id)
            .await?
        else {
            tracing::info!(run_id = %event.run_id, "run event for a run that no longer exists");
            return Ok(report);
        };
        if !run.status.is_terminal() {
            tracing::warn!(run_id = %run.run_id, status = run.status.as_str(), "run event for a run that has not ended");
            return Ok(report);
        }
        let audience = notifications::audience(&run);
        for (name, why) in &audience.unevaluable {
            tracing::warn!(run_id = %run.run_id, schedule_id = ?run.schedule_id, condition = %name,
                why = %why, "conditional notification not evaluated");
        }
        report.unevaluable = audience.unevaluable;
        if audience.recipients.is_empty() {
            return Ok(report);
        }
        let ws = run.workspace_id.as_str();
        let Some(workspace) = self.workspaces.get_workspace(ws).await? else {
            return Ok(report);
        };
        let project = self.projects.get_project(ws, &run.project_id).await?;
        let integrations = self.integrations.get_integrations(ws).await?;
        let planned = self
            .plan(
                &run,
                &workspace,
                project.as_ref(),
                &integrations,
                audience.recipients,
            )
            .await?;
        let title = project.map_or_else(|| run.project_id.clone(), |p| p.title);

        // Each channel has its own budget of deliveries in flight, so a channel that is
        // down (every attempt waiting for its timeout and backoff) delays no other.
        let budget = |_| tokio::sync::Semaphore::new(self.settings.concurrency_per_channel.max(1));
        let budgets: [tokio::sync::Semaphore; 3] = std::array::from_fn(budget);
        let mut pending: Vec<BoxedDelivery<'_>> = Vec::with_capacity(planned.len());
        for p in &planned {
            let budget = &budgets[p.channel as usize];
            let (run, title) = (&run, title.as_str());
            pending.push(Box::pin(async move {
                let _permit = budget.acquire().await.map_err(|_| {
                    ServiceError::Backend(PortError::fatal("delivery budget closed"))
                })?;
                self.deliver(run, title, p).await
            }));
        }
        let results = futures_util::future::join_all(pending).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(Outcome::Final(DeliveryStatus::Delivered)) => report.delivered += 1,
                Ok(Outcome::Final(DeliveryStatus::Skipped)) => report.skipped += 1,
                Ok(Outcome::Final(_)) => report.failed += 1,
                Ok(Outcome::AlreadyDone) => report.already_done += 1,
                Ok(Outcome::InProgress) => report.in_progress += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        tracing::info!(run_id = %run.run_id, schedule_id = ?run.schedule_id, ?report, "run notifications handled");
        Ok(report)
    }

    /// Resolves the audience into deliveries: user ids to addresses, Slack channel ids to
    /// their webhooks, webhooks to their signing secret; one delivery per (channel,
    /// target) with every reason.
    async fn plan(
        &self,
        run: &Run,
        workspace: &Workspace,
        project: Option<&Project>,
        integrations: &Integrations,
        recipients: Vec<(RecipientRef, Vec<Reason>)>,
    ) -> Result<Vec<Planned>, ServiceError> {
        // Secrets are unsealed only when some recipient needs them.
        let wants = |f: fn(&RecipientRef) -> bool| recipients.iter().any(|(r, _)| f(r));
        let slack_urls = if wants(|r| matches!(r, RecipientRef::Slack(_))) {
            self.slack_urls(run, integrations)
        } else {
            Ok(BTreeMap::new())
        };
        let signing_secret = if wants(|r| matches!(r, RecipientRef::Webhook(_))) {
            self.signing_secret(run, integrations)
        } else {
            Err(String::new())
        };
        let mut planned: BTreeMap<(DeliveryChannel, String), Planned> = BTreeMap::new();
        for (recipient, reasons) in recipients {
            let p = match recipient {
                RecipientRef::Email(address) => email(
                    &address,
                    Action::Send(DeliveryTarget::Email {
                        address: address.clone(),
                    }),
                ),
                RecipientRef::User(user_id) => self.user(run, project, &user_id).await?,
                RecipientRef::Slack(channel_id) => {
                    let action = if workspace.plan == Plan::Professional {
                        Action::Skip("PLAN_LIMIT: Slack notifications are not available on the PROFESSIONAL plan".into())
                    } else {
                        match slack_urls.as_ref().map(|urls| urls.get(&channel_id)) {
                            Err(why) => Action::Fail(why.clone()),
                            Ok(None) => Action::Fail(format!(
                                "the workspace's Slack integration has no channel {channel_id}"
                            )),
                            Ok(Some(url)) => Action::Send(DeliveryTarget::Slack {
                                channel_id: channel_id.clone(),
                                webhook_url: Secret::new(url.clone()),
                            }),
                        }
                    };
                    let masked = match slack_urls.as_ref().ok().and_then(|u| u.get(&channel_id)) {
                        Some(url) => format!("{channel_id} ({})", notifications::mask_url(url)),
                        None => channel_id.clone(),
                    };
                    Planned {
                        channel: DeliveryChannel::Slack,
                        key: channel_id,
                        masked,
                        reasons: Vec::new(),
                        action,
                    }
                }
                RecipientRef::Webhook(url) => {
                    let action = match &signing_secret {
                        Ok(secret) => Action::Send(DeliveryTarget::Webhook {
                            url: Secret::new(url.clone()),
                            signing_secret: secret.clone(),
                        }),
                        Err(why) => Action::Fail(why.clone()),
                    };
                    Planned {
                        channel: DeliveryChannel::Webhook,
                        masked: notifications::mask_url(&url),
                        key: notifications::target_key(DeliveryChannel::Webhook, &url),
                        reasons: Vec::new(),
                        action,
                    }
                }
            };
            let entry = planned.entry((p.channel, p.key.clone())).or_insert(p);
            for reason in reasons {
                if !entry.reasons.contains(&reason) {
                    entry.reasons.push(reason);
                }
            }
        }
        Ok(planned.into_values().collect())
    }

    async fn user(
        &self,
        run: &Run,
        project: Option<&Project>,
        user_id: &str,
    ) -> Result<Planned, ServiceError> {
        let fail = |why: String| Planned {
            channel: DeliveryChannel::Email,
            key: format!("user:{user_id}"),
            masked: format!("user {user_id}"),
            reasons: Vec::new(),
            action: Action::Fail(why),
        };
        let Some(user) = self.workspaces.get_user(&run.workspace_id, user_id).await? else {
            return Ok(fail(format!(
                "user {user_id} is not known in the workspace"
            )));
        };
        let Some(address) = user
            .email
            .clone()
            .filter(|e| notifications::is_plausible_email(e))
        else {
            return Ok(fail(format!("user {user_id} has no e-mail address")));
        };
        let allowed = match project {
            Some(project) => has_access(self.projects.as_ref(), project, &user).await?,
            None => false,
        };
        let action = if allowed {
            Action::Send(DeliveryTarget::Email {
                address: address.clone(),
            })
        } else {
            Action::Skip(format!(
                "user {user_id} no longer has access to the project"
            ))
        };
        Ok(email(&address, action))
    }

    /// The Slack channels' webhook URLs, or why they cannot be read.
    fn slack_urls(
        &self,
        run: &Run,
        integrations: &Integrations,
    ) -> Result<BTreeMap<String, String>, String> {
        let Some(slack) = &integrations.slack else {
            return Ok(BTreeMap::new());
        };
        self.secrets
            .open(&slack.sealed_webhook_urls)
            .ok()
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or_else(|| {
                tracing::error!(run_id = %run.run_id, workspace_id = %run.workspace_id,
                    "the workspace's Slack integration could not be unsealed");
                "the workspace's Slack integration could not be read".to_owned()
            })
    }

    fn signing_secret(&self, run: &Run, integrations: &Integrations) -> Result<Secret, String> {
        let Some(sealed) = &integrations.webhook_secret else {
            return Err("the workspace has no webhook signing secret".into());
        };
        self.secrets
            .open(&sealed.sealed_secret)
            .ok()
            .and_then(|plain| String::from_utf8(plain).ok())
            .map(Secret::new)
            .ok_or_else(|| {
                tracing::error!(run_id = %run.run_id, workspace_id = %run.workspace_id,
                    "the workspace's webhook signing secret could not be unsealed");
                "the workspace's webhook signing secret could not be read".to_owned()
            })
    }

    /// Claims one delivery and makes it, with retries; records every attempt.
    async fn deliver(&self, run: &Run, title: &str, p: &Planned) -> Result<Outcome, ServiceError> {
        let now = self.clock.now();
        let id = notifications::delivery_id(&run.run_id, p.channel, &p.key);
        let claim = DeliveryRecord {
            delivery_id: id.clone(),
            channel: p.channel,
            target: p.masked.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            error: None,
            reasons: p.reasons.iter().map(Reason::label).collect(),
            created_at: now,
            updated_at: now,
            claim_token: Some(uuid::Uuid::new_v4().simple().to_string()),
            lease_until: Some(now + self.settings.lease),
        };
        let mut record = match self
            .deliveries
            .claim_delivery(&run.workspace_id, &run.run_id, &claim, now)
            .await
        {
            Ok(DeliveryClaim::Claimed(record)) => record,
            Ok(DeliveryClaim::Done(_)) => return Ok(Outcome::AlreadyDone),
            Ok(DeliveryClaim::Busy(_)) => return Ok(Outcome::InProgress),
            // The run is gone (expired); nothing to record it on.
            Err(PortError::NotFound) => return Ok(Outcome::AlreadyDone),
            Err(e) => return Err(e.into()),
        };
        let target = match &p.action {
            Action::Skip(why) => {
                return self
                    .finish(run, &mut record, DeliveryStatus::Skipped, Some(why.clone()))
                    .await;
            }
            Action::Fail(why) => {
                return self
                    .finish(run, &mut record, DeliveryStatus::Failed, Some(why.clone()))
                    .await;
            }
            Action::Send(target) => target,
        };
        let message = NotificationMessage {
            delivery_id: id,
            workspace_id: run.workspace_id.clone(),
            project_id: run.project_id.clone(),
            project_title: title.to_owned(),
            schedule_id: run.schedule_id.clone(),
            run_id: run.run_id.clone(),
            status: run.status,
            trigger: run.run_trigger,
            scheduled_for: run.scheduled_for,
            ended_at: run.end_time,
            run_url: format!(
                "{}/projects/{}/runs/{}",
                self.settings.public_url, run.project_id, run.run_id
            ),
            skip_reason: run.skip_reason,
            error: run.error.clone(),
            reasons: p.reasons.clone(),
        };
        let deliverer = self.deliverers.of(p.channel);
        loop {
            if record.attempts >= self.settings.max_attempts {
                let error = record
                    .error
                    .take()
                    .unwrap_or_else(|| "no attempts left".into());
                return self
                    .finish(run, &mut record, DeliveryStatus::Failed, Some(error))
                    .await;
            }
            record.attempts += 1;
            match deliverer.deliver(target, &message).await {
                Ok(()) => {
                    return self
                        .finish(run, &mut record, DeliveryStatus::Delivered, None)
                        .await;
                }
                Err(DeliveryError::Permanent(why)) => {
                    return self
                        .finish(run, &mut record, DeliveryStatus::Failed, Some(why))
                        .await;
                }
                Err(DeliveryError::Retryable(why)) => {
                    tracing::info!(run_id = %run.run_id, delivery_id = %record.delivery_id,
                        channel = p.channel.as_str(), attempt = record.attempts, error = %why, "delivery attempt failed");
                    if record.attempts >= self.settings.max_attempts {
                        return self
                            .finish(run, &mut record, DeliveryStatus::Failed, Some(why))
                            .await;
                    }
                    record.error = Some(why);
                    let now = self.clock.now();
                    record.updated_at = now;
                    record.lease_until = Some(now + self.settings.lease);
                    if !self.save(run, &record).await? {
                        return Ok(Outcome::InProgress);
                    }
                    tokio::time::sleep(self.settings.backoff(record.attempts)).await;
                }
            }
        }
    }

    async fn finish(
        &self,
        run: &Run,
        record: &mut DeliveryRecord,
        status: DeliveryStatus,
        error: Option<String>,
    ) -> Result<Outcome, ServiceError> {
        record.status = status;
        record.error = error;
        record.updated_at = self.clock.now();
        record.lease_until = None;
        if status == DeliveryStatus::Delivered {
            tracing::info!(run_id = %run.run_id, delivery_id = %record.delivery_id,
                channel = record.channel.as_str(), attempts = record.attempts, "notification delivered");
        } else {
            tracing::warn!(run_id = %run.run_id, delivery_id = %record.delivery_id,
                channel = record.channel.as_str(), status = status.as_str(), attempts = record.attempts,
                error = ?record.error, "notification not delivered");
        }
        if self.save(run, record).await? {
            Ok(Outcome::Final(status))
        } else {
            Ok(Outcome::InProgress)
        }
    }

    /// Writes the record under this claimant's claim; `false` when another claimant took
    /// the delivery over (this one's lease had run out).
    async fn save(&self, run: &Run, record: &DeliveryRecord) -> Result<bool, ServiceError> {
        match self
            .deliveries
            .save_delivery(&run.workspace_id, &run.run_id, record)
            .await
        {
            Ok(()) => Ok(true),
            Err(PortError::VersionMismatch) => {
                tracing::warn!(run_id = %run.run_id, delivery_id = %record.delivery_id,
                    "a delivery was taken over by another handler");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn email(address: &str, action: Action) -> Planned {
    Planned {
        channel: DeliveryChannel::Email,
        key: notifications::target_key(DeliveryChannel::Email, address),
        masked: notifications::mask_email(address),
        reasons: Vec::new(),
        action,
    }
}
