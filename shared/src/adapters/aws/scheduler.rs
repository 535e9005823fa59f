//! EventBridge Scheduler as the `TriggerBackend` (SPEC §8): every stored schedule is
//! mirrored as one Scheduler schedule named after the schedule id, in one schedule group per
//! workspace (`<prefix>-<workspaceId>`, created on demand), firing the dispatch function
//! with a [`SchedulerInput`] within a flexible window, with a retry policy and a DLQ.
//!
//! Endpoints and credentials come from the SDK configuration the caller builds the client
//! with (the standard `AWS_ENDPOINT_URL*` variables point it at a local emulator); nothing
//! here knows whether it talks to AWS.
//!
//! The helpers that translate SDK errors into [`PortError`] live here as well and are used
//! by the SQS and SNS adapters: the three share the same `SdkError` type.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, ScheduleState, Target,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::domain::model::Schedule;
use crate::ports::{
    FireRequest, Page, PageRequest, PortError, TriggerBackend, TriggerListing, TriggerState,
};

/// The SDK this adapter is built on, for callers that construct its client.
pub use aws_sdk_scheduler as sdk;

/// The placeholder EventBridge Scheduler replaces with the nominal fire time.
pub const SCHEDULED_TIME_PLACEHOLDER: &str = "<aws.scheduler.scheduled-time>";
/// The placeholder EventBridge Scheduler replaces with the id of the invocation attempt.
pub const EXECUTION_ID_PLACEHOLDER: &str = "<aws.scheduler.execution-id>";

/// Retry policy of every target: give up on a fire after a day...
const MAX_EVENT_AGE_SECONDS: i32 = 24 * 60 * 60;
/// ...or after this many retries (EventBridge allows 0..=185), whichever comes first; then
/// the event goes to the DLQ. Dispatch is idempotent per fire, so retries are safe.
const MAX_RETRY_ATTEMPTS: i32 = 185;
/// The widest flexible window EventBridge Scheduler accepts.
const MAX_FLEXIBLE_WINDOW_MINUTES: u32 = 1_440;
/// Schedule and group names: at most 64 of `[0-9A-Za-z_.-]`.
const MAX_NAME_LEN: usize = 64;
/// `GetSchedule` calls in flight while listing.
const DETAIL_CONCURRENCY: usize = 8;
/// The largest page `ListSchedules` returns.
const MAX_LIST_PAGE: u32 = 100;

/// The `Input` every schedule passes to the dispatch function, verbatim (no EventBridge
/// envelope). `scheduled_time` is the nominal fire time and, with the schedule id, the
/// idempotency key of the run; `execution_id` changes on every retry and serves tracing only.
/// `project_id` and `created_by` never change on a schedule; with them dispatch reads every
/// record of the fire in one request (inputs written before they existed lack them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerInput {
    pub workspace_id: String,
    pub schedule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    pub scheduled_time: DateTime<Utc>,
    pub execution_id: String,
}

impl SchedulerInput {
    /// The JSON template stored on the schedule: the ids, and the two placeholders that
    /// EventBridge Scheduler fills in at each invocation.
    pub fn template(schedule: &Schedule) -> String {
        serde_json::json!({
            "workspaceId": schedule.workspace_id,
            "scheduleId": schedule.schedule_id,
            "projectId": schedule.project_id,
            "createdBy": schedule.created_by,
            "scheduledTime": SCHEDULED_TIME_PLACEHOLDER,
            "executionId": EXECUTION_ID_PLACEHOLDER,
        })
        .to_string()
    }

    /// What dispatch needs to load the fire.
    pub fn fire_request(&self) -> FireRequest {
        FireRequest {
            workspace_id: self.workspace_id.clone(),
            schedule_id: self.schedule_id.clone(),
            project_id: self.project_id.clone(),
            created_by: self.created_by.clone(),
        }
    }
}

/// Where the schedules live and what they invoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Schedule groups are named `<group_prefix>-<workspaceId>`. `list_triggers` (and so
    /// `reconcile`) treats every group with this prefix as its own, so no other deployment
    /// in the account and region may use a prefix that starts with it (include the stack
    /// name); schedules targeting another ARN are ignored as a second guard.
    pub group_prefix: String,
    /// The dispatch function's ARN (the target).
    pub dispatch_arn: String,
    /// The role EventBridge Scheduler assumes to invoke the target.
    pub role_arn: String,
    /// The SQS queue that receives fires whose retries ran out.
    pub dlq_arn: String,
    /// How late a fire may start (`FlexibleTimeWindow`); 0 = exactly on time. At most 1440.
    pub flexible_window_minutes: u32,
}

impl SchedulerConfig {
    /// The default flexible window (SPEC §3 "delay").
    pub const DEFAULT_FLEXIBLE_WINDOW_MINUTES: u32 = 5;

    /// A configuration with the default 5-minute flexible window.
    pub fn new(
        group_prefix: impl Into<String>,
        dispatch_arn: impl Into<String>,
        role_arn: impl Into<String>,
        dlq_arn: impl Into<String>,
    ) -> SchedulerConfig {
        SchedulerConfig {
            group_prefix: group_prefix.into(),
            dispatch_arn: dispatch_arn.into(),
            role_arn: role_arn.into(),
            dlq_arn: dlq_arn.into(),
            flexible_window_minutes: Self::DEFAULT_FLEXIBLE_WINDOW_MINUTES,
        }
    }

    /// The schedule group of a workspace.
    pub fn group_name(&self, workspace_id: &str) -> Result<String, PortError> {
        let name = format!("{}-{workspace_id}", self.group_prefix);
        check_name("schedule group", &name)?;
        Ok(name)
    }

    /// The workspace whose group `group` is, if it is one of ours.
    fn workspace_of<'a>(&self, group: &'a str) -> Option<&'a str> {
        group
            .strip_prefix(self.group_prefix.as_str())?
            .strip_prefix('-')
            .filter(|ws| !ws.is_empty())
    }

    fn flexible_window(&self) -> Result<FlexibleTimeWindow, PortError> {
        let builder = match self.flexible_window_minutes {
            0 => FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off),
            m if m <= MAX_FLEXIBLE_WINDOW_MINUTES => FlexibleTimeWindow::builder()
                .mode(FlexibleTimeWindowMode::Flexible)
                // In range: at most 1440.
                .maximum_window_in_minutes(m as i32),
            m => {
                return Err(PortError::fatal(format!(
                    "flexible window of {m} minutes exceeds EventBridge Scheduler's {MAX_FLEXIBLE_WINDOW_MINUTES}"
                )));
            }
        };
        builder.build().map_err(build_error)
    }
}

fn check_name(what: &str, name: &str) -> Result<(), PortError> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !valid_chars {
        return Err(PortError::fatal(format!(
            "{what} name {name:?} is not valid in EventBridge Scheduler (1-{MAX_NAME_LEN} of [0-9A-Za-z_.-])"
        )));
    }
    Ok(())
}

/// Everything a Create/UpdateSchedule call sets; both calls take the full definition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ScheduleDefinition {
    pub name: String,
    pub group: String,
    pub description: String,
    pub expression: String,
    pub timezone: String,
    pub state: ScheduleState,
    pub window: FlexibleTimeWindow,
    pub target: Target,
}

impl ScheduleDefinition {
    pub fn new(
        config: &SchedulerConfig,
        schedule: &Schedule,
        active: bool,
    ) -> Result<ScheduleDefinition, PortError> {
        check_name("schedule", &schedule.schedule_id)?;
        let spec = schedule.cadence.compile().map_err(|e| {
            PortError::fatal(format!(
                "stored cadence of {} no longer compiles: {e}",
                schedule.schedule_id
            ))
        })?;
        let target = Target::builder()
            .arn(&config.dispatch_arn)
            .role_arn(&config.role_arn)
            .input(SchedulerInput::template(schedule))
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(MAX_EVENT_AGE_SECONDS)
                    .maximum_retry_attempts(MAX_RETRY_ATTEMPTS)
                    .build(),
            )
            .dead_letter_config(DeadLetterConfig::builder().arn(&config.dlq_arn).build())
            .build()
            .map_err(build_error)?;
        Ok(ScheduleDefinition {
            name: schedule.schedule_id.clone(),
            group: config.group_name(&schedule.workspace_id)?,
            description: format!("scheduled-runs: project {}", schedule.project_id),
            expression: spec.eventbridge_expression(),
            timezone: schedule.timezone.clone(),
            state: if active {
                ScheduleState::Enabled
            } else {
                ScheduleState::Disabled
            },
            window: config.flexible_window()?,
            target,
        })
    }
}

/// Where a `list_triggers` page resumes: inside `group` (after `schedules_token`) on the
/// page of schedule groups fetched with `groups_token`. Serialised as JSON, opaque to callers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListCursor {
    #[serde(rename = "gt", default, skip_serializing_if = "Option::is_none")]
    groups_token: Option<String>,
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(rename = "st", default, skip_serializing_if = "Option::is_none")]
    schedules_token: Option<String>,
}

impl ListCursor {
    fn parse(cursor: Option<&str>) -> Result<ListCursor, PortError> {
        match cursor {
            None => Ok(ListCursor::default()),
            Some(text) => serde_json::from_str(text).map_err(|_| PortError::InvalidCursor),
        }
    }

    fn encode(&self) -> Result<String, PortError> {
        serde_json::to_string(self).map_err(PortError::fatal)
    }
}

/// The EventBridge Scheduler trigger backend. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SchedulerTriggers {
    client: Client,
    config: Arc<SchedulerConfig>,
}

impl SchedulerTriggers {
    pub fn new(client: Client, config: SchedulerConfig) -> SchedulerTriggers {
        SchedulerTriggers {
            client,
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    async fn update(&self, def: &ScheduleDefinition) -> Result<(), PortError> {
        self.client
            .update_schedule()
            .name(&def.name)
            .group_name(&def.group)
            .description(&def.description)
            .schedule_expression(&def.expression)
            .schedule_expression_timezone(&def.timezone)
            .state(def.state.clone())
            .flexible_time_window(def.window.clone())
            .target(def.target.clone())
            .action_after_completion(ActionAfterCompletion::None)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| port_error("UpdateSchedule", e))
    }

    async fn create(&self, def: &ScheduleDefinition) -> Result<(), PortError> {
        self.client
            .create_schedule()
            .name(&def.name)
            .group_name(&def.group)
            .description(&def.description)
            .schedule_expression(&def.expression)
            .schedule_expression_timezone(&def.timezone)
            .state(def.state.clone())
            .flexible_time_window(def.window.clone())
            .target(def.target.clone())
            .action_after_completion(ActionAfterCompletion::None)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| port_error("CreateSchedule", e))
    }

    /// Creates the workspace's group unless it exists. Looks first: besides saving a
    /// failing call per schedule creation, moto's `CreateScheduleGroup` replaces an
    /// existing group (dropping its schedules) instead of answering `ConflictException`.
    async fn ensure_group(&self, group: &str) -> Result<(), PortError> {
        match self
            .client
            .get_schedule_group()
            .name(group)
            .send()
            .await
            .map_err(|e| port_error("GetScheduleGroup", e))
        {
            Ok(_) => return Ok(()),
            Err(PortError::NotFound) => {}
            Err(e) => return Err(e),
        }
        match self
            .client
            .create_schedule_group()
            .name(group)
            .send()
            .await
            .map_err(|e| port_error("CreateScheduleGroup", e))
        {
            Ok(_) | Err(PortError::AlreadyExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The details of the named schedules of `group` (`ListSchedules` does not return the
    /// expression and timezone), fetched a few at a time, in the order given. Schedules
    /// deleted in the meantime are left out.
    async fn details(
        &self,
        group: &str,
        names: Vec<String>,
    ) -> Result<Vec<TriggerState>, PortError> {
        let Some(workspace_id) = self.config.workspace_of(group) else {
            return Ok(Vec::new());
        };
        let permits = Arc::new(Semaphore::new(DETAIL_CONCURRENCY));
        let mut tasks = JoinSet::new();
        for (index, name) in names.into_iter().enumerate() {
            let client = self.client.clone();
            let group = group.to_owned();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .map_err(|e| PortError::fatal(format!("listing stopped: {e}")))?;
                let result = client
                    .get_schedule()
                    .name(&name)
                    .group_name(&group)
                    .send()
                    .await
                    .map_err(|e| port_error("GetSchedule", e));
                Ok::<_, PortError>((index, name, result))
            });
        }
        let mut found = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let (index, name, result) =
                joined.map_err(|e| PortError::fatal(format!("GetSchedule task failed: {e}")))??;
            let output = match result {
                Ok(output) => output,
                Err(PortError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let trigger = TriggerState {
                workspace_id: workspace_id.to_owned(),
                schedule_id: name,
                active: output.state() == Some(&ScheduleState::Enabled),
                expression: output.schedule_expression().unwrap_or_default().to_owned(),
                timezone: output
                    .schedule_expression_timezone()
                    .unwrap_or("UTC")
                    .to_owned(),
            };
            found.insert(index, trigger);
        }
        Ok(found.into_values().collect())
    }
}

#[async_trait]
impl TriggerBackend for SchedulerTriggers {
    /// Upserts: `UpdateSchedule`, and on `ResourceNotFound` (no schedule or no group yet)
    /// the group and `CreateSchedule`; a concurrent creation that wins is updated over.
    async fn put_trigger(&self, schedule: &Schedule, active: bool) -> Result<(), PortError> {
        let def = ScheduleDefinition::new(&self.config, schedule, active)?;
        match self.update(&def).await {
            Err(PortError::NotFound) => {}
            other => return other,
        }
        self.ensure_group(&def.group).await?;
        match self.create(&def).await {
            Err(PortError::AlreadyExists) => self.update(&def).await,
            other => other,
        }
    }

    async fn delete_trigger(&self, schedule: &Schedule) -> Result<(), PortError> {
        // A name EventBridge would refuse was never created: there is nothing to delete.
        let Ok(group) = self.config.group_name(&schedule.workspace_id) else {
            return Ok(());
        };
        if check_name("schedule", &schedule.schedule_id).is_err() {
            return Ok(());
        }
        match self
            .client
            .delete_schedule()
            .name(&schedule.schedule_id)
            .group_name(group)
            .send()
            .await
            .map_err(|e| port_error("DeleteSchedule", e))
        {
            Ok(_) | Err(PortError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl TriggerListing for SchedulerTriggers {
    /// Walks the groups named `<prefix>-…` (`ListScheduleGroups`) and each one's schedules
    /// (`ListSchedules`, then `GetSchedule` for the expression and timezone). The cursor
    /// carries both NextTokens. Schedules that do not target the dispatch function are not
    /// ours and are skipped.
    async fn list_triggers(&self, page: &PageRequest) -> Result<Page<TriggerState>, PortError> {
        let limit = page.limit.clamp(1, MAX_LIST_PAGE) as usize;
        let mut cursor = ListCursor::parse(page.cursor.as_deref())?;
        let group_prefix = format!("{}-", self.config.group_prefix);
        let mut items = Vec::new();
        loop {
            let groups_page = self
                .client
                .list_schedule_groups()
                .name_prefix(&group_prefix)
                .set_next_token(cursor.groups_token.clone())
                .send()
                .await
                .map_err(|e| port_error("ListScheduleGroups", e))?;
            let groups: Vec<&str> = groups_page
                .schedule_groups()
                .iter()
                .filter_map(|g| g.name())
                .filter(|name| self.config.workspace_of(name).is_some())
                .collect();
            // A group deleted since the cursor was issued: start over on its page (repeats
            // are harmless to reconcile; skipping would not be).
            let resume_group = cursor.group.take();
            let start = resume_group
                .as_deref()
                .and_then(|g| groups.iter().position(|name| *name == g))
                .unwrap_or(0);
            for (i, group) in groups.iter().enumerate().skip(start) {
                let schedules_token = if resume_group.as_deref() == Some(*group) {
                    cursor.schedules_token.take()
                } else {
                    None
                };
                let remaining = (limit - items.len()).max(1);
                let listed = self
                    .client
                    .list_schedules()
                    .group_name(*group)
                    .max_results(remaining as i32)
                    .set_next_token(schedules_token)
                    .send()
                    .await
                    .map_err(|e| port_error("ListSchedules", e))?;
                let names: Vec<String> = listed
                    .schedules()
                    .iter()
                    .filter(|s| s.group_name() == Some(*group))
                    .filter(|s| {
                        s.target().map(|t| t.arn()) == Some(self.config.dispatch_arn.as_str())
                    })
                    .filter_map(|s| s.name().map(str::to_owned))
                    .collect();
                items.extend(self.details(group, names).await?);
                let next = if let Some(token) = listed.next_token() {
                    Some(ListCursor {
                        groups_token: cursor.groups_token.clone(),
                        group: Some((*group).to_owned()),
                        schedules_token: Some(token.to_owned()),
                    })
                } else if items.len() >= limit {
                    match (groups.get(i + 1), groups_page.next_token()) {
                        (Some(next_group), _) => Some(ListCursor {
                            groups_token: cursor.groups_token.clone(),
                            group: Some((*next_group).to_owned()),
                            schedules_token: None,
                        }),
                        (None, Some(token)) => Some(ListCursor {
                            groups_token: Some(token.to_owned()),
                            ..ListCursor::default()
                        }),
                        (None, None) => {
                            return Ok(Page {
                                items,
                                next_cursor: None,
                            });
                        }
                    }
                } else {
                    None
                };
                if let Some(next) = next {
                    return Ok(Page {
                        items,
                        next_cursor: Some(next.encode()?),
                    });
                }
            }
            match groups_page.next_token() {
                Some(token) => {
                    cursor = ListCursor {
                        groups_token: Some(token.to_owned()),
                        ..ListCursor::default()
                    }
                }
                None => {
                    return Ok(Page {
                        items,
                        next_cursor: None,
                    });
                }
            }
        }
    }
}

/// How an AWS error is to be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    NotFound,
    Conflict,
    /// Throttling, server-side and transport failures: trying again may help.
    Retryable,
    /// Validation, authorisation, quota and anything unknown: it will fail again.
    Fatal,
}

/// Classifies a service error by its code (those of Scheduler, SQS and SNS) and status.
pub(crate) fn classify_service_error(code: Option<&str>, status: u16) -> ErrorClass {
    match code.unwrap_or_default() {
        "ResourceNotFoundException"
        | "NotFound"
        | "NotFoundException"
        | "QueueDoesNotExist"
        | "AWS.SimpleQueueService.NonExistentQueue" => ErrorClass::NotFound,
        "ConflictException" => ErrorClass::Conflict,
        "ThrottlingException"
        | "Throttling"
        | "Throttled"
        | "ThrottledException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "KMSThrottling"
        | "KMSThrottlingException"
        | "InternalServerException"
        | "InternalServerError"
        | "InternalError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorClass::Retryable,
        _ if status >= 500 || status == 429 => ErrorClass::Retryable,
        _ => ErrorClass::Fatal,
    }
}

/// Classifies any SDK error of the Scheduler, SQS or SNS clients.
pub(crate) fn classify<E>(err: &SdkError<E>) -> ErrorClass
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ConstructionFailure(_) => ErrorClass::Fatal,
        SdkError::ServiceError(service) => {
            classify_service_error(service.err().code(), service.raw().status().as_u16())
        }
        // Timeouts, connection failures and unparseable responses are transient.
        _ => ErrorClass::Retryable,
    }
}

/// Translates an SDK error into the port's error; the message (logged by the services,
/// never returned to API callers) names the operation and carries the SDK's detail.
pub(crate) fn port_error<E>(operation: &str, err: SdkError<E>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match classify(&err) {
        ErrorClass::NotFound => PortError::NotFound,
        ErrorClass::Conflict => PortError::AlreadyExists,
        ErrorClass::Retryable => {
            PortError::unavailable(format!("{operation}: {}", DisplayErrorContext(&err)))
        }
        ErrorClass::Fatal => {
            PortError::fatal(format!("{operation}: {}", DisplayErrorContext(&err)))
        }
    }
}

/// A request that the SDK refused to build is a bug in this adapter, never transient.
pub(crate) fn build_error(err: sdk::error::BuildError) -> PortError {
    PortError::fatal(format!("invalid AWS request: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cadence::{Cadence, Weekday};
    use crate::domain::model::{OverlapPolicy, ProjectRole};
    use aws_sdk_scheduler::config::http::HttpResponse;
    use aws_sdk_scheduler::error::ErrorMetadata;
    use aws_sdk_scheduler::operation::update_schedule::UpdateScheduleError;
    use chrono::TimeZone;

    fn config() -> SchedulerConfig {
        SchedulerConfig::new(
            "sr-test",
            "arn:aws:lambda:eu-west-1:123456789012:function:dispatch",
            "arn:aws:iam::123456789012:role/scheduler",
            "arn:aws:sqs:eu-west-1:123456789012:dispatch-dlq",
        )
    }

    fn schedule(cadence: Cadence, timezone: &str) -> Schedule {
        let at = Utc
            .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .expect("valid");
        Schedule {
            schedule_id: "0b6f3c1e-3d1c-4f2a-9a53-1c2d3e4f5a6b".into(),
            project_id: "proj-1".into(),
            workspace_id: "ws-1".into(),
            created_by: "user-1".into(),
            creator_role: ProjectRole::CanEdit,
            cadence,
            timezone: timezone.into(),
            enabled: true,
            update_published_results: true,
            use_cached_sql_results: false,
            overlap_policy: OverlapPolicy::Skip,
            hourly: false,
            created_at: at,
            updated_at: at,
            version: 1,
            notifications: Default::default(),
        }
    }

    fn weekly() -> Cadence {
        Cadence::Weekly {
            weekdays: vec![Weekday::Mon, Weekday::Thu],
            hour: 9,
            minute: 30,
        }
    }

    #[test]
    fn definition_carries_everything_the_schedule_needs() {
        let def = ScheduleDefinition::new(&config(), &schedule(weekly(), "Europe/Berlin"), true)
            .expect("definition");
        assert_eq!(def.name, "0b6f3c1e-3d1c-4f2a-9a53-1c2d3e4f5a6b");
        assert_eq!(def.group, "sr-test-ws-1");
        assert_eq!(def.expression, "cron(30 9 ? * MON,THU *)");
        assert_eq!(def.timezone, "Europe/Berlin");
        assert_eq!(def.state, ScheduleState::Enabled);
        assert_eq!(def.window.mode(), &FlexibleTimeWindowMode::Flexible);
        assert_eq!(def.window.maximum_window_in_minutes(), Some(5));
        assert_eq!(def.target.arn(), config().dispatch_arn);
        assert_eq!(def.target.role_arn(), config().role_arn);
        let retry = def.target.retry_policy().expect("retry policy");
        assert_eq!(retry.maximum_event_age_in_seconds(), Some(86_400));
        assert_eq!(retry.maximum_retry_attempts(), Some(185));
        assert_eq!(
            def.target.dead_letter_config().and_then(|d| d.arn()),
            Some(config().dlq_arn.as_str())
        );
        let input: serde_json::Value =
            serde_json::from_str(def.target.input().expect("input")).expect("input is JSON");
        assert_eq!(
            input,
            serde_json::json!({
                "workspaceId": "ws-1",
                "scheduleId": "0b6f3c1e-3d1c-4f2a-9a53-1c2d3e4f5a6b",
                "projectId": "proj-1",
                "createdBy": "user-1",
                "scheduledTime": "<aws.scheduler.scheduled-time>",
                "executionId": "<aws.scheduler.execution-id>",
            })
        );
    }

    #[test]
    fn inactive_schedules_are_disabled_and_a_zero_window_is_off() {
        let mut config = config();
        config.flexible_window_minutes = 0;
        let def = ScheduleDefinition::new(
            &config,
            &schedule(Cadence::Hourly { minute: 15 }, "UTC"),
            false,
        )
        .expect("definition");
        assert_eq!(def.state, ScheduleState::Disabled);
        assert_eq!(def.window.mode(), &FlexibleTimeWindowMode::Off);
        assert_eq!(def.window.maximum_window_in_minutes(), None);
        assert_eq!(def.expression, "cron(15 * * * ? *)");
    }

    #[test]
    fn out_of_range_windows_and_names_are_refused() {
        let mut wide = config();
        wide.flexible_window_minutes = 1_441;
        let err = ScheduleDefinition::new(&wide, &schedule(weekly(), "UTC"), true)
            .expect_err("window too wide");
        assert!(matches!(
            err,
            PortError::Unavailable {
                retryable: false,
                ..
            }
        ));

        let mut bad = schedule(weekly(), "UTC");
        bad.workspace_id = "ws/../other".into();
        let err = ScheduleDefinition::new(&config(), &bad, true).expect_err("bad group name");
        assert!(matches!(
            err,
            PortError::Unavailable {
                retryable: false,
                ..
            }
        ));

        let mut long = schedule(weekly(), "UTC");
        long.workspace_id = "w".repeat(60);
        assert!(ScheduleDefinition::new(&config(), &long, true).is_err());
    }

    #[test]
    fn the_filled_in_input_parses_as_scheduler_input() {
        let mut sched = schedule(weekly(), "UTC");
        sched.workspace_id = "ws-1".into();
        sched.schedule_id = "sched-1".into();
        let template = SchedulerInput::template(&sched);
        let filled = template
            .replace(SCHEDULED_TIME_PLACEHOLDER, "2026-06-01T09:30:00Z")
            .replace(
                EXECUTION_ID_PLACEHOLDER,
                "b7a3c0de-0000-4000-8000-000000000001",
            );
        let input: SchedulerInput = serde_json::from_str(&filled).expect("parses");
        assert_eq!(
            input,
            SchedulerInput {
                workspace_id: "ws-1".into(),
                schedule_id: "sched-1".into(),
                project_id: Some(sched.project_id.clone()),
                created_by: Some(sched.created_by.clone()),
                scheduled_time: Utc
                    .with_ymd_and_hms(2026, 6, 1, 9, 30, 0)
                    .single()
                    .expect("valid"),
                execution_id: "b7a3c0de-0000-4000-8000-000000000001".into(),
            }
        );
        // The unfilled template is not a valid input: a dispatcher never mistakes it.
        assert!(serde_json::from_str::<SchedulerInput>(&template).is_err());
    }

    #[test]
    fn groups_map_back_to_their_workspace() {
        let config = config();
        assert_eq!(config.workspace_of("sr-test-ws-1"), Some("ws-1"));
        assert_eq!(config.workspace_of("sr-test-"), None);
        assert_eq!(config.workspace_of("sr-testing-ws"), None);
        assert_eq!(config.workspace_of("default"), None);
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let cursor = ListCursor {
            groups_token: Some("gt".into()),
            group: Some("sr-test-ws-1".into()),
            schedules_token: Some("st".into()),
        };
        let text = cursor.encode().expect("encodes");
        assert_eq!(ListCursor::parse(Some(&text)).expect("parses"), cursor);
        assert_eq!(
            ListCursor::parse(None).expect("first page"),
            ListCursor::default()
        );
        assert!(matches!(
            ListCursor::parse(Some("not-a-cursor")),
            Err(PortError::InvalidCursor)
        ));
        assert!(matches!(
            ListCursor::parse(Some(r#"{"x":1}"#)),
            Err(PortError::InvalidCursor)
        ));
    }

    #[test]
    fn service_errors_are_classified_by_code_then_status() {
        use ErrorClass::*;
        let cases = [
            (Some("ResourceNotFoundException"), 404, NotFound),
            (Some("QueueDoesNotExist"), 400, NotFound),
            (
                Some("AWS.SimpleQueueService.NonExistentQueue"),
                400,
                NotFound,
            ),
            (Some("NotFound"), 404, NotFound),
            (Some("ConflictException"), 409, Conflict),
            (Some("ThrottlingException"), 400, Retryable),
            (Some("Throttled"), 400, Retryable),
            (Some("RequestThrottled"), 403, Retryable),
            (Some("InternalServerException"), 500, Retryable),
            (Some("KMSThrottling"), 400, Retryable),
            (None, 503, Retryable),
            (Some("SomethingNew"), 502, Retryable),
            (None, 429, Retryable),
            (Some("ValidationException"), 400, Fatal),
            (Some("InvalidParameter"), 400, Fatal),
            (Some("AccessDeniedException"), 403, Fatal),
            (Some("ServiceQuotaExceededException"), 402, Fatal),
            (None, 400, Fatal),
        ];
        for (code, status, expected) in cases {
            assert_eq!(
                classify_service_error(code, status),
                expected,
                "{code:?} {status}"
            );
        }
    }

    fn service_error(code: &str, status: u16) -> SdkError<UpdateScheduleError> {
        let raw = HttpResponse::new(status.try_into().expect("valid status"), "{}".into());
        SdkError::service_error(
            UpdateScheduleError::generic(ErrorMetadata::builder().code(code).message("m").build()),
            raw,
        )
    }

    #[test]
    fn sdk_errors_map_to_port_errors() {
        assert!(matches!(
            port_error(
                "UpdateSchedule",
                service_error("ResourceNotFoundException", 404)
            ),
            PortError::NotFound
        ));
        assert!(matches!(
            port_error("CreateSchedule", service_error("ConflictException", 409)),
            PortError::AlreadyExists
        ));
        match port_error("UpdateSchedule", service_error("ThrottlingException", 400)) {
            PortError::Unavailable { retryable, message } => {
                assert!(retryable);
                assert!(message.starts_with("UpdateSchedule: "), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            port_error("UpdateSchedule", service_error("ValidationException", 400)),
            PortError::Unavailable {
                retryable: false,
                ..
            }
        ));
        let timeout: SdkError<UpdateScheduleError> = SdkError::timeout_error("slow");
        assert!(matches!(
            port_error("UpdateSchedule", timeout),
            PortError::Unavailable {
                retryable: true,
                ..
            }
        ));
        let construction: SdkError<UpdateScheduleError> =
            SdkError::construction_failure("missing field");
        assert!(matches!(
            port_error("UpdateSchedule", construction),
            PortError::Unavailable {
                retryable: false,
                ..
            }
        ));
    }
}
