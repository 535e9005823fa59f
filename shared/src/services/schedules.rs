//! Schedule use cases: create, read, change, delete, the run log and the admin listing.
//! Every change is written to the store first and then mirrored to the trigger backend, in
//! the order that never leaves a trigger firing without a stored schedule.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::cadence::{Cadence, parse_timezone};
use crate::domain::fire_times::FireSpec;
use crate::domain::model::{
    Caller, NotificationSettings, OverlapPolicy, Project, ProjectRole, Run, Schedule, VersionBody,
};
use crate::domain::policy::{self, Denied, ProjectState, RequestedToggles};
use crate::domain::zone::Zone;
use crate::ports::{
    Clock, LimitKind, Page, PageRequest, PortError, ProjectStore, RunStore, ScheduleFilter,
    ScheduleStore, TriggerBackend, WorkspaceStore,
};

use super::access::remember_caller;
use super::notify::{NotificationRules, SelfRecipient};
use super::{ProjectAccess, ServiceError};

/// How many upcoming fire times every schedule response lists.
pub const NEXT_RUNS: usize = 5;
/// How far ahead `warnings` look for fire times lost in DST gaps.
const WARNING_HORIZON_DAYS: i64 = 365;

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSchedule {
    pub cadence: Cadence,
    /// IANA timezone name; `UTC` when absent.
    pub timezone: Option<String>,
    pub enabled: Option<bool>,
    pub update_published_results: Option<bool>,
    pub use_cached_sql_results: Option<bool>,
    pub overlap_policy: Option<OverlapPolicy>,
    /// Subscriptions and conditional notifications (SPEC §7).
    pub notifications: Option<NotificationSettings>,
}

/// A partial change: absent fields keep their value.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchSchedule {
    pub cadence: Option<Cadence>,
    pub timezone: Option<String>,
    pub enabled: Option<bool>,
    pub update_published_results: Option<bool>,
    pub use_cached_sql_results: Option<bool>,
    pub overlap_policy: Option<OverlapPolicy>,
    /// Replaces the schedule's notifications as a whole.
    pub notifications: Option<NotificationSettings>,
}

/// A warning about a schedule that is valid but may not do what its author expects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleWarning {
    /// `DST_SKIP`: a fire time falls into a daylight-saving gap and is skipped.
    pub code: &'static str,
    pub message: String,
    /// The local times concerned (ISO 8601, without offset).
    pub local_times: Vec<String>,
}

/// A schedule with what is derived from it for the reader.
#[derive(Clone, Debug)]
pub struct ScheduleView {
    pub schedule: Schedule,
    pub schedule_expression: String,
    pub next_runs: Vec<DateTime<Utc>>,
    pub warnings: Vec<ScheduleWarning>,
    pub last_run: Option<Run>,
}

pub struct ScheduleService {
    pub workspaces: Arc<dyn WorkspaceStore>,
    pub projects: Arc<dyn ProjectStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    pub runs: Arc<dyn RunStore>,
    pub triggers: Arc<dyn TriggerBackend>,
    pub clock: Arc<dyn Clock>,
    pub notifications: Arc<NotificationRules>,
}

/// A compiled cadence with its timezone.
struct Timing {
    spec: FireSpec,
    tz: Zone,
}

fn compile(cadence: &Cadence, timezone: &str) -> Result<Timing, ServiceError> {
    let spec = cadence.compile()?;
    let tz = parse_timezone(timezone)?;
    Ok(Timing { spec, tz })
}

fn limit_denied(kind: LimitKind) -> ServiceError {
    ServiceError::Denied(match kind {
        LimitKind::PerProject => Denied::PlanLimit {
            message: "the PROFESSIONAL plan allows one schedule per project".into(),
        },
        LimitKind::PerCreator => Denied::ExplorerLimit,
        LimitKind::HourlyPerProject => Denied::PlanLimit {
            message: format!(
                "a project may have at most {} hourly schedules",
                policy::MAX_HOURLY_SCHEDULES_PER_PROJECT
            ),
        },
    })
}

fn map_write_error(e: PortError) -> ServiceError {
    match e {
        PortError::LimitReached(kind) => limit_denied(kind),
        PortError::NotFound => ServiceError::not_found("schedule"),
        other => other.into(),
    }
}

impl ScheduleService {
    pub async fn create(
        &self,
        caller: &Caller,
        project_id: &str,
        request: CreateSchedule,
    ) -> Result<ScheduleView, ServiceError> {
        let access = ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        policy::can_create_schedule(access.role)?;
        policy::check_project_schedulable(project_state(&access), true)?;
        let workspace = self
            .workspaces
            .get_workspace(&caller.workspace_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("workspace"))?;
        let timezone = request.timezone.unwrap_or_else(|| "UTC".to_owned());
        let timing = compile(&request.cadence, &timezone)?;
        policy::check_cadence(workspace.plan, access.role, &request.cadence, &timing.spec)?;
        let settings = policy::settle_toggles(
            access.role,
            RequestedToggles {
                update_published_results: request.update_published_results,
                use_cached_sql_results: request.use_cached_sql_results,
            },
            &timing.spec,
        )?;
        let notifications = request.notifications.unwrap_or_default();
        if !notifications.is_empty() {
            // Recipients by user id resolve to known users; the caller is one from now on.
            remember_caller(self.workspaces.as_ref(), caller).await?;
        }
        let version = self.version_for(&access.project, &notifications).await?;
        self.notifications
            .check_schedule(
                &workspace,
                &access.project,
                version.as_ref(),
                access.role,
                SelfRecipient {
                    user_id: &caller.user_id,
                    email: caller.email.as_deref(),
                },
                &notifications,
            )
            .await?;
        remember_caller(self.workspaces.as_ref(), caller).await?;
        let now = self.clock.now();
        // Activity is recorded before the change it belongs to, never after: once the
        // schedule exists, a failure must not make the caller create it a second time.
        self.projects
            .touch_activity(&caller.workspace_id, project_id, now)
            .await?;
        let schedule = Schedule {
            schedule_id: uuid::Uuid::new_v4().to_string(),
            project_id: project_id.to_owned(),
            workspace_id: caller.workspace_id.clone(),
            created_by: caller.user_id.clone(),
            creator_role: access.role,
            cadence: request.cadence,
            timezone,
            enabled: request.enabled.unwrap_or(true),
            update_published_results: settings.update_published_results,
            use_cached_sql_results: settings.use_cached_sql_results,
            overlap_policy: request.overlap_policy.unwrap_or_default(),
            hourly: settings.hourly,
            created_at: now,
            updated_at: now,
            version: 1,
            notifications,
        };
        match self
            .schedules
            .insert_schedule(
                &schedule,
                &policy::creation_limits(workspace.plan, access.role),
            )
            .await
        {
            Ok(()) => {}
            // The id was made for this request, so a schedule stored under it is this
            // request's: an insert whose answer was lost may have landed (and its retry
            // then be refused as a duplicate). Asked once more, the store says which —
            // otherwise the caller, told to retry, would create a second schedule and
            // every fire would run twice.
            Err(
                e @ (PortError::AlreadyExists
                | PortError::Unavailable {
                    retryable: true, ..
                }),
            ) => {
                let landed = self
                    .schedules
                    .get_schedule(&schedule.workspace_id, &schedule.schedule_id)
                    .await?
                    .is_some_and(|stored| {
                        stored.version == schedule.version
                            && stored.created_by == schedule.created_by
                    });
                if !landed {
                    return Err(match e {
                        PortError::AlreadyExists => ServiceError::Backend(PortError::unavailable(
                            "the schedule insert was refused as a duplicate, yet nothing is stored",
                        )),
                        other => other.into(),
                    });
                }
                tracing::warn!(schedule_id = %schedule.schedule_id, error = %e,
                    "a schedule insert reported failure but had landed");
            }
            Err(e) => return Err(map_write_error(e)),
        }
        if let Err(e) = self.triggers.put_trigger(&schedule, schedule.enabled).await {
            // Without a trigger the stored schedule would silently never fire: undo it.
            if let Err(undo) = self
                .schedules
                .delete_schedule(&schedule.workspace_id, &schedule.schedule_id)
                .await
            {
                tracing::error!(schedule_id = %schedule.schedule_id, error = %undo,
                    "could not undo a schedule whose trigger failed; reconcile will repair it");
            }
            return Err(e.into());
        }
        Ok(self.view_with(schedule, timing, true, None))
    }

    pub async fn get(
        &self,
        caller: &Caller,
        project_id: &str,
        schedule_id: &str,
    ) -> Result<ScheduleView, ServiceError> {
        let access = ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        let schedule = self.load(caller, project_id, schedule_id).await?;
        self.view(schedule, !access.project.archived).await
    }

    pub async fn list(
        &self,
        caller: &Caller,
        project_id: &str,
        page: &PageRequest,
    ) -> Result<Page<ScheduleView>, ServiceError> {
        let access = ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        let page = self
            .schedules
            .list_project_schedules(&caller.workspace_id, project_id, page)
            .await?;
        self.views(page, |_| !access.project.archived).await
    }

    pub async fn update(
        &self,
        caller: &Caller,
        project_id: &str,
        schedule_id: &str,
        patch: PatchSchedule,
        if_match: Option<u64>,
    ) -> Result<ScheduleView, ServiceError> {
        let access = ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        let existing = self.load(caller, project_id, schedule_id).await?;
        policy::can_modify_schedule(access.role, &caller.user_id, &existing)?;
        if let Some(expected) = if_match
            && expected != existing.version
        {
            return Err(ServiceError::PreconditionFailed {
                current: existing.version,
            });
        }
        policy::check_project_schedulable(project_state(&access), false)?;
        let workspace = self
            .workspaces
            .get_workspace(&caller.workspace_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("workspace"))?;
        let cadence = patch.cadence.unwrap_or_else(|| existing.cadence.clone());
        let timezone = patch.timezone.unwrap_or_else(|| existing.timezone.clone());
        let timing = compile(&cadence, &timezone)?;
        // An explorer's schedule keeps the explorer's limits whoever edits it.
        let rules_role = access
            .role
            .min(existing.creator_role.max(ProjectRole::CanExplore));
        policy::check_cadence(workspace.plan, rules_role, &cadence, &timing.spec)?;
        let settings = policy::settle_updated_toggles(
            access.role,
            &existing,
            RequestedToggles {
                update_published_results: patch.update_published_results,
                use_cached_sql_results: patch.use_cached_sql_results,
            },
            &timing.spec,
        )?;
        let notifications = match patch.notifications {
            None => existing.notifications.clone(),
            Some(settings) => {
                let version = self.version_for(&access.project, &settings).await?;
                // The creator is who "yourself" means on an explorer's schedule.
                let creator_email = if existing.created_by == caller.user_id {
                    caller.email.clone()
                } else {
                    self.workspaces
                        .get_user(&caller.workspace_id, &existing.created_by)
                        .await?
                        .and_then(|u| u.email)
                };
                let me = if rules_role < ProjectRole::CanEdit {
                    SelfRecipient {
                        user_id: &existing.created_by,
                        email: creator_email.as_deref(),
                    }
                } else {
                    SelfRecipient {
                        user_id: &caller.user_id,
                        email: caller.email.as_deref(),
                    }
                };
                self.notifications
                    .check_schedule(
                        &workspace,
                        &access.project,
                        version.as_ref(),
                        rules_role,
                        me,
                        &settings,
                    )
                    .await?;
                settings
            }
        };
        let now = self.clock.now();
        let updated = Schedule {
            cadence,
            timezone,
            enabled: patch.enabled.unwrap_or(existing.enabled),
            update_published_results: settings.update_published_results,
            use_cached_sql_results: settings.use_cached_sql_results,
            overlap_policy: patch.overlap_policy.unwrap_or(existing.overlap_policy),
            hourly: settings.hourly,
            updated_at: now,
            version: existing.version + 1,
            notifications,
            ..existing.clone()
        };
        let limits = if updated.hourly {
            policy::update_limits()
        } else {
            Default::default()
        };
        self.projects
            .touch_activity(&caller.workspace_id, project_id, now)
            .await?;
        match self
            .schedules
            .update_schedule(&updated, existing.version, &limits)
            .await
        {
            Ok(()) => {}
            Err(PortError::VersionMismatch) => {
                let current = self
                    .schedules
                    .get_schedule(&caller.workspace_id, schedule_id)
                    .await?
                    .map_or(existing.version, |s| s.version);
                return Err(ServiceError::PreconditionFailed { current });
            }
            Err(e) => return Err(map_write_error(e)),
        }
        // A failure here leaves the previous trigger in place; `reconcile` repairs it.
        self.triggers
            .put_trigger(&updated, updated.enabled && !access.project.archived)
            .await?;
        Ok(self.view_with(updated, timing, !access.project.archived, None))
    }

    pub async fn delete(
        &self,
        caller: &Caller,
        project_id: &str,
        schedule_id: &str,
        if_match: Option<u64>,
    ) -> Result<(), ServiceError> {
        let access = ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        let existing = self.load(caller, project_id, schedule_id).await?;
        policy::can_modify_schedule(access.role, &caller.user_id, &existing)?;
        if let Some(expected) = if_match
            && expected != existing.version
        {
            return Err(ServiceError::PreconditionFailed {
                current: existing.version,
            });
        }
        self.projects
            .touch_activity(&caller.workspace_id, project_id, self.clock.now())
            .await?;
        // Trigger first: a stored schedule without a trigger is repairable, a trigger
        // without a stored schedule would fire for nothing.
        self.triggers.delete_trigger(&existing).await?;
        if let Err(e) = self
            .schedules
            .delete_schedule(&caller.workspace_id, schedule_id)
            .await
        {
            let active = existing.enabled && !access.project.archived;
            if let Err(undo) = self.triggers.put_trigger(&existing, active).await {
                tracing::error!(schedule_id, error = %undo,
                    "could not restore the trigger of a schedule whose deletion failed; reconcile will repair it");
            }
            return Err(map_write_error(e));
        }
        Ok(())
    }

    /// The run log of a schedule, newest first.
    pub async fn runs(
        &self,
        caller: &Caller,
        project_id: &str,
        schedule_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Run>, ServiceError> {
        ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        self.load(caller, project_id, schedule_id).await?;
        Ok(self
            .runs
            .list_schedule_runs(&caller.workspace_id, schedule_id, self.clock.now(), page)
            .await?)
    }

    /// Every schedule of the workspace, for its admins.
    pub async fn admin_list(
        &self,
        caller: &Caller,
        filter: &ScheduleFilter,
        page: &PageRequest,
    ) -> Result<Page<ScheduleView>, ServiceError> {
        policy::require_admin(caller)?;
        let page = self
            .schedules
            .list_workspace_schedules(&caller.workspace_id, filter, page)
            .await?;
        let mut archived = std::collections::HashMap::new();
        for schedule in &page.items {
            if !archived.contains_key(&schedule.project_id) {
                let project = self
                    .projects
                    .get_project(&caller.workspace_id, &schedule.project_id)
                    .await?;
                archived.insert(
                    schedule.project_id.clone(),
                    project.is_none_or(|p| p.archived),
                );
            }
        }
        self.views(page, |s| {
            !archived.get(&s.project_id).copied().unwrap_or(true)
        })
        .await
    }

    async fn load(
        &self,
        caller: &Caller,
        project_id: &str,
        schedule_id: &str,
    ) -> Result<Schedule, ServiceError> {
        self.schedules
            .get_schedule(&caller.workspace_id, schedule_id)
            .await?
            .filter(|s| s.project_id == project_id)
            .ok_or(ServiceError::NotFound {
                code: "SCHEDULE_NOT_FOUND",
                what: "schedule",
            })
    }

    async fn views(
        &self,
        page: Page<Schedule>,
        project_live: impl Fn(&Schedule) -> bool,
    ) -> Result<Page<ScheduleView>, ServiceError> {
        let mut items = Vec::with_capacity(page.items.len());
        for schedule in page.items {
            let live = project_live(&schedule);
            items.push(self.view(schedule, live).await?);
        }
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
        })
    }

    async fn view(
        &self,
        schedule: Schedule,
        project_live: bool,
    ) -> Result<ScheduleView, ServiceError> {
        let timing = compile(&schedule.cadence, &schedule.timezone)?;
        let last_run = self
            .runs
            .list_schedule_runs(
                &schedule.workspace_id,
                &schedule.schedule_id,
                self.clock.now(),
                &PageRequest::first(1),
            )
            .await?
            .items
            .into_iter()
            .next();
        Ok(self.view_with(schedule, timing, project_live, last_run))
    }

    fn view_with(
        &self,
        schedule: Schedule,
        timing: Timing,
        project_live: bool,
        last_run: Option<Run>,
    ) -> ScheduleView {
        let now = self.clock.now();
        let next_runs = if schedule.enabled && project_live {
            timing.spec.upcoming(&timing.tz, now, NEXT_RUNS)
        } else {
            Vec::new()
        };
        let skipped =
            timing
                .spec
                .dst_skips(&timing.tz, now, now + Duration::days(WARNING_HORIZON_DAYS));
        let warnings = if skipped.is_empty() {
            Vec::new()
        } else {
            vec![ScheduleWarning {
                code: "DST_SKIP",
                message: format!(
                    "{} fire time(s) in the next 12 months do not exist in {} (daylight-saving gap) and will be skipped",
                    skipped.len(),
                    schedule.timezone
                ),
                local_times: skipped
                    .iter()
                    .map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
                    .collect(),
            }]
        };
        ScheduleView {
            schedule_expression: timing.spec.eventbridge_expression(),
            schedule,
            next_runs,
            warnings,
            last_run,
        }
    }
}

impl ScheduleService {
    /// The published version, when conditional notifications need its cells.
    async fn version_for(
        &self,
        project: &Project,
        settings: &NotificationSettings,
    ) -> Result<Option<VersionBody>, ServiceError> {
        let (false, Some(version)) = (settings.conditional.is_empty(), project.published_version)
        else {
            return Ok(None);
        };
        Ok(self
            .projects
            .get_version(&project.workspace_id, &project.project_id, version)
            .await?
            .map(|v| v.body))
    }
}

fn project_state(access: &ProjectAccess) -> ProjectState {
    ProjectState {
        archived: access.project.archived,
        published: access.project.published_version.is_some(),
    }
}
