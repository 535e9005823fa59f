//! Run use cases of the RunProject API: start a run of the published version (with custom
//! inputs), read its status, list a project's runs, cancel, and read published results.

use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::inputs;
use crate::domain::model::{
    Caller, ProjectRole, PublishedResults, Run, RunNotification, RunStatus, RunTrigger, StateEvent,
};
use crate::domain::policy::{self, Denied, ProjectState};
use crate::ports::{
    Clock, EventPublisher, PortError, ProjectStore, RateLimitStore, ResultsStore, RunFilter,
    RunMessage, RunQueue, RunStore,
};

use super::notify::{NotificationRules, SelfRecipient};
use super::{ProjectAccess, ServiceError};

/// The body of `POST /projects/{projectId}/runs`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    /// Values for the app's inputs by name; the rest keep their defaults.
    #[schema(value_type = Option<Object>)]
    pub input_params: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub update_published_results: bool,
    /// Use fresh cached SQL results when there are any (default true).
    pub use_cached_sql_results: Option<bool>,
    /// Validate the request and run nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Who hears about the run when it ends.
    pub notifications: Option<Vec<RunNotification>>,
}

/// Per-user limits on run requests (SPEC §3 "API runs").
#[derive(Clone, Copy, Debug)]
pub struct RunRateLimits {
    pub per_minute: u32,
    pub per_hour: u32,
}

impl Default for RunRateLimits {
    fn default() -> Self {
        RunRateLimits {
            per_minute: 20,
            per_hour: 60,
        }
    }
}

/// What `start` did.
#[derive(Clone, Debug)]
pub enum Started {
    Queued(Box<Run>),
    /// A dry run: everything was checked, nothing was run.
    DryRun {
        project_version: u32,
        trace_id: String,
    },
}

pub struct RunService {
    pub projects: Arc<dyn ProjectStore>,
    pub runs: Arc<dyn RunStore>,
    pub results: Arc<dyn ResultsStore>,
    pub queue: Arc<dyn RunQueue>,
    pub rate_limits: Arc<dyn RateLimitStore>,
    pub events: Arc<dyn EventPublisher>,
    /// Checks the notifications a run asks for; reads its delivery records.
    pub notifications: Arc<NotificationRules>,
    pub clock: Arc<dyn Clock>,
    pub limits: RunRateLimits,
    pub retention: Duration,
}

impl RunService {
    /// Starts an API run of the published version.
    pub async fn start(
        &self,
        caller: &Caller,
        project_id: &str,
        request: RunRequest,
    ) -> Result<Started, ServiceError> {
        let access = ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        if request.update_published_results && access.role < ProjectRole::CanEdit {
            return Err(Denied::Forbidden {
                message: "updating published results needs the CAN_EDIT role".into(),
                field: Some("updatePublishedResults"),
            }
            .into());
        }
        let custom_inputs = request.input_params.as_ref().is_some_and(|p| !p.is_empty());
        if request.update_published_results && custom_inputs {
            return Err(ServiceError::invalid(
                "INPUTS_WITH_PUBLISHED_RESULTS",
                "updatePublishedResults",
                "a run with custom inputParams cannot update the published results",
            ));
        }
        policy::check_project_schedulable(
            ProjectState {
                archived: access.project.archived,
                published: access.project.published_version.is_some(),
            },
            true,
        )?;
        let Some(version_number) = access.project.published_version else {
            return Err(Denied::ProjectNotPublished.into());
        };
        let version = self
            .projects
            .get_version(&caller.workspace_id, project_id, version_number)
            .await?
            .ok_or_else(|| ServiceError::not_found("version"))?;
        inputs::resolve_inputs(&version.body.inputs, request.input_params.as_ref())
            .map_err(|e| ServiceError::invalid("INVALID_INPUT", e.field, e.message))?;
        let requested = request.notifications.as_deref().unwrap_or_default();
        if !requested.is_empty() {
            // Recipients by user id resolve to known users; the caller is one from now on.
            super::access::remember_caller(self.notifications.workspaces.as_ref(), caller).await?;
        }
        let notification_settings = self
            .notifications
            .check_run(
                &access.project,
                access.role,
                SelfRecipient {
                    user_id: &caller.user_id,
                    email: caller.email.as_deref(),
                },
                requested,
            )
            .await?;
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        if request.dry_run {
            return Ok(Started::DryRun {
                project_version: version_number,
                trace_id,
            });
        }
        self.check_rate(caller).await?;
        let now = self.clock.now();
        let run = Run {
            run_id: uuid::Uuid::new_v4().to_string(),
            project_id: project_id.to_owned(),
            workspace_id: caller.workspace_id.clone(),
            schedule_id: None,
            run_trigger: RunTrigger::Api,
            status: RunStatus::Pending,
            scheduled_for: None,
            project_version: Some(version_number),
            created_by: caller.user_id.clone(),
            created_at: now,
            start_time: None,
            end_time: None,
            skip_reason: None,
            update_published_results: request.update_published_results,
            use_cached_sql_results: request.use_cached_sql_results.unwrap_or(true),
            input_params: request.input_params.unwrap_or_default(),
            trace_id,
            state_events: vec![StateEvent::new("STATUS", RunStatus::Pending.as_str(), now)],
            expires_at: now + self.retention,
            attempt: 0,
            lease_until: None,
            cells: Vec::new(),
            error: None,
            notification_settings,
            event_pending: false,
            notifications: Vec::new(),
        };
        // Activity first: once the run exists, a failure must not tell the caller to start
        // it again (see `schedules::create`).
        self.projects
            .touch_activity(&caller.workspace_id, project_id, now)
            .await?;
        match self.runs.create_run_if_absent(&run).await {
            Ok(_) => {}
            // The id was made for this request: a run stored under it is this request's,
            // written by an attempt whose answer was lost. Asked once more, the store says.
            Err(
                e @ PortError::Unavailable {
                    retryable: true, ..
                },
            ) => {
                if self
                    .runs
                    .get_run(&caller.workspace_id, &run.run_id)
                    .await?
                    .is_none()
                {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
        // The run exists now, and the caller is told so when the queue is only briefly
        // unavailable: a run left PENDING without a message is queued again by the
        // sweeper, whereas a 503 would make the caller start a second run.
        match self.queue.enqueue(RunMessage::for_run(&run)).await {
            Ok(()) => {}
            Err(
                e @ PortError::Unavailable {
                    retryable: true, ..
                },
            ) => {
                tracing::warn!(run_id = %run.run_id, project_id, error = %e,
                    "API run created but not queued; the sweeper will queue it");
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(run_id = %run.run_id, project_id, "API run queued");
        Ok(Started::Queued(Box::new(run)))
    }

    /// Counts the request against the caller's minute and hour windows.
    async fn check_rate(&self, caller: &Caller) -> Result<(), ServiceError> {
        let now = self.clock.now();
        // The minute first: a request it refuses must not use up the hour's budget.
        for (name, window, limit) in [
            ("m", Duration::minutes(1), self.limits.per_minute),
            ("h", Duration::hours(1), self.limits.per_hour),
        ] {
            let start = window_start(now, window);
            let key = format!("runs/{}/{}/{name}", caller.workspace_id, caller.user_id);
            let counted = self
                .rate_limits
                .hit(&key, start, start + window * 2, limit)
                .await?;
            if !counted {
                let retry = (start + window - now).num_seconds().max(1);
                return Err(ServiceError::RateLimited {
                    retry_after_secs: u64::try_from(retry).unwrap_or(1),
                });
            }
        }
        Ok(())
    }

    pub async fn get(
        &self,
        caller: &Caller,
        project_id: &str,
        run_id: &str,
    ) -> Result<Run, ServiceError> {
        ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        let mut run = self.load(caller, project_id, run_id).await?;
        run.notifications = self
            .notifications
            .deliveries(&run.workspace_id, &run.run_id)
            .await?;
        Ok(run)
    }

    async fn load(
        &self,
        caller: &Caller,
        project_id: &str,
        run_id: &str,
    ) -> Result<Run, ServiceError> {
        let now = self.clock.now();
        self.runs
            .get_run(&caller.workspace_id, run_id)
            .await?
            .filter(|r| r.project_id == project_id && r.expires_at > now)
            .ok_or(ServiceError::NotFound {
                code: "RUN_NOT_FOUND",
                what: "run",
            })
    }

    pub async fn list(
        &self,
        caller: &Caller,
        project_id: &str,
        filter: &RunFilter,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Run>, ServiceError> {
        ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        Ok(self
            .runs
            .list_project_runs(
                &caller.workspace_id,
                project_id,
                filter,
                self.clock.now(),
                offset,
                limit,
            )
            .await?)
    }

    /// Ends a pending or running run `KILLED`. Cancelling a killed run again succeeds;
    /// a run that already finished otherwise is a conflict.
    pub async fn cancel(
        &self,
        caller: &Caller,
        project_id: &str,
        run_id: &str,
    ) -> Result<(), ServiceError> {
        let access = ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        loop {
            let run = self.load(caller, project_id, run_id).await?;
            if access.role < ProjectRole::CanEdit && run.created_by != caller.user_id {
                return Err(Denied::Forbidden {
                    message: "only the run's creator or an editor may cancel it".into(),
                    field: None,
                }
                .into());
            }
            match run.status {
                RunStatus::Killed => return Ok(()),
                RunStatus::Pending | RunStatus::Running => {}
                _ => {
                    return Err(ServiceError::Conflict {
                        code: "RUN_FINISHED",
                        message: format!("the run already ended {}", run.status.as_str()),
                    });
                }
            }
            let guard = run.guard();
            let now = self.clock.now();
            let mut killed = run;
            killed.status = RunStatus::Killed;
            killed.end_time = Some(now);
            killed.lease_until = None;
            killed.event_pending = true;
            killed
                .state_events
                .push(StateEvent::new("STATUS", RunStatus::Killed.as_str(), now));
            killed
                .state_events
                .push(StateEvent::new("KILLED_BY", &caller.user_id, now));
            match self.runs.update_run(&killed, guard).await {
                Ok(()) => {
                    tracing::info!(run_id, schedule_id = ?killed.schedule_id, "run killed");
                    super::events::announce(self.events.as_ref(), &killed).await;
                    return Ok(());
                }
                // It moved on (started or finished) meanwhile: look again.
                Err(PortError::VersionMismatch) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn published_results(
        &self,
        caller: &Caller,
        project_id: &str,
    ) -> Result<PublishedResults, ServiceError> {
        ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        self.results
            .get_results(&caller.workspace_id, project_id)
            .await?
            .ok_or(ServiceError::NotFound {
                code: "NO_PUBLISHED_RESULTS",
                what: "published results",
            })
    }
}

fn window_start(now: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    now.duration_trunc(window).unwrap_or(now)
}
