//! The product policy of SPEC §3 as pure decision functions. Services gather the facts
//! (roles, plan, project state, the compiled cadence) and ask here what is allowed; the
//! answers carry the stable error codes the API returns.

use super::cadence::Cadence;
use super::fire_times::FireSpec;
use super::model::{Caller, Plan, ProjectRole, Schedule};
use crate::ports::ScheduleLimits;

/// Maximum hourly schedules on one project, on every plan.
pub const MAX_HOURLY_SCHEDULES_PER_PROJECT: u32 = 12;
/// Schedules per project on the `PROFESSIONAL` plan, all creators together.
pub const PROFESSIONAL_SCHEDULES_PER_PROJECT: u32 = 1;
/// Schedules of their own an explorer may have on one project.
pub const EXPLORER_SCHEDULES_PER_PROJECT: u32 = 1;

/// Why the policy refuses. Each variant maps to one HTTP status and code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The caller may not know the project exists (404 `NOT_FOUND`).
    #[error("not found")]
    NotFound,
    /// The caller's role does not allow the action (403 `FORBIDDEN`).
    #[error("{message}")]
    Forbidden {
        message: String,
        field: Option<&'static str>,
    },
    /// The workspace's plan does not include this (403 `PLAN_LIMIT`).
    #[error("{message}")]
    PlanLimit { message: String },
    /// An explorer already has their one schedule on the project (403 `EXPLORER_LIMIT`).
    #[error("explorers may create at most one schedule of their own per project")]
    ExplorerLimit,
    /// 409 `PROJECT_ARCHIVED`.
    #[error("the project is archived")]
    ProjectArchived,
    /// 409 `PROJECT_NOT_PUBLISHED`.
    #[error("the project has no published version; publish it before scheduling runs")]
    ProjectNotPublished,
    /// 422 `FREQUENCY_TOO_HIGH`.
    #[error("{message}")]
    FrequencyTooHigh { message: String },
}

fn forbidden(message: &str) -> Denied {
    Denied::Forbidden {
        message: message.to_owned(),
        field: None,
    }
}

/// The caller's effective role on a project: none across workspaces, `FULL_ACCESS` for a
/// workspace admin, otherwise their membership.
pub fn effective_role(
    caller: &Caller,
    project_workspace_id: &str,
    membership: Option<ProjectRole>,
) -> Option<ProjectRole> {
    if caller.workspace_id != project_workspace_id {
        return None;
    }
    if caller.is_admin() {
        return Some(ProjectRole::FullAccess);
    }
    membership
}

/// Requires at least `needed`; no role at all hides the project (404).
pub fn require_role(role: Option<ProjectRole>, needed: ProjectRole) -> Result<ProjectRole, Denied> {
    match role {
        None => Err(Denied::NotFound),
        Some(r) if r >= needed => Ok(r),
        Some(_) => Err(forbidden(&format!(
            "this action needs the {} role on the project",
            needed.as_str()
        ))),
    }
}

/// The state of a project that decides whether schedules may be created or changed on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProjectState {
    pub archived: bool,
    pub published: bool,
}

/// The toggles a create or update request asked for (`None` = not given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestedToggles {
    pub update_published_results: Option<bool>,
    pub use_cached_sql_results: Option<bool>,
}

/// What the policy settles for a schedule being created or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleSettings {
    pub update_published_results: bool,
    pub use_cached_sql_results: bool,
    /// Fires more than once on some day (counts toward the hourly limit).
    pub hourly: bool,
}

/// Who may create schedules at all: explorers and above.
pub fn can_create_schedule(role: ProjectRole) -> Result<(), Denied> {
    if role < ProjectRole::CanExplore {
        return Err(forbidden("viewers may list schedules but not create them"));
    }
    Ok(())
}

/// Schedules are created and changed only on live, published projects.
pub fn check_project_schedulable(state: ProjectState, creating: bool) -> Result<(), Denied> {
    if state.archived {
        return Err(Denied::ProjectArchived);
    }
    if creating && !state.published {
        return Err(Denied::ProjectNotPublished);
    }
    Ok(())
}

/// Custom cron by plan, maximum frequency (hourly for everyone, daily for explorers).
pub fn check_cadence(
    plan: Plan,
    role: ProjectRole,
    cadence: &Cadence,
    spec: &FireSpec,
) -> Result<(), Denied> {
    if matches!(cadence, Cadence::Cron { .. }) && plan == Plan::Professional {
        return Err(Denied::PlanLimit {
            message: "custom cron schedules need the TEAM or ENTERPRISE plan".into(),
        });
    }
    if spec.minute_count() > 1 {
        return Err(Denied::FrequencyTooHigh {
            message: "schedules may fire at most hourly: the minute field must be one value".into(),
        });
    }
    if is_explorer(role) && spec.hour_count() > 1 {
        return Err(Denied::FrequencyTooHigh {
            message: "explorers' schedules may fire at most daily: minute and hour must each be one value".into(),
        });
    }
    Ok(())
}

fn is_explorer(role: ProjectRole) -> bool {
    role < ProjectRole::CanEdit
}

/// Settles the toggles of a new schedule: editors get the defaults (update results, fresh
/// queries) and may change them; explorers get the locked values and may not turn them on.
pub fn settle_toggles(
    role: ProjectRole,
    requested: RequestedToggles,
    spec: &FireSpec,
) -> Result<ScheduleSettings, Denied> {
    let hourly = spec.hour_count() > 1;
    if is_explorer(role) {
        if requested.update_published_results == Some(true) {
            return Err(Denied::Forbidden {
                message: "explorers' schedules never update published results".into(),
                field: Some("updatePublishedResults"),
            });
        }
        if requested.use_cached_sql_results == Some(false) {
            return Err(Denied::Forbidden {
                message: "explorers' schedules always use cached SQL results".into(),
                field: Some("useCachedSqlResults"),
            });
        }
        return Ok(ScheduleSettings {
            update_published_results: false,
            use_cached_sql_results: true,
            hourly,
        });
    }
    Ok(ScheduleSettings {
        update_published_results: requested.update_published_results.unwrap_or(true),
        use_cached_sql_results: requested.use_cached_sql_results.unwrap_or(false),
        hourly,
    })
}

/// Settles the toggles of a change: unchanged fields keep their stored values, and the
/// explorer locks apply to whoever edits an explorer's schedule as well as to explorers.
pub fn settle_updated_toggles(
    editor_role: ProjectRole,
    existing: &Schedule,
    requested: RequestedToggles,
    spec: &FireSpec,
) -> Result<ScheduleSettings, Denied> {
    let locked = is_explorer(editor_role) || is_explorer(existing.creator_role);
    let settings = ScheduleSettings {
        update_published_results: requested
            .update_published_results
            .unwrap_or(existing.update_published_results),
        use_cached_sql_results: requested
            .use_cached_sql_results
            .unwrap_or(existing.use_cached_sql_results),
        hourly: spec.hour_count() > 1,
    };
    if locked && settings.update_published_results {
        return Err(Denied::Forbidden {
            message: "explorers' schedules never update published results".into(),
            field: Some("updatePublishedResults"),
        });
    }
    if locked && !settings.use_cached_sql_results {
        return Err(Denied::Forbidden {
            message: "explorers' schedules always use cached SQL results".into(),
            field: Some("useCachedSqlResults"),
        });
    }
    Ok(settings)
}

/// The race-free limits the store must check when inserting a schedule.
pub fn creation_limits(plan: Plan, role: ProjectRole) -> ScheduleLimits {
    ScheduleLimits {
        max_per_project: (plan == Plan::Professional).then_some(PROFESSIONAL_SCHEDULES_PER_PROJECT),
        max_per_creator: is_explorer(role).then_some(EXPLORER_SCHEDULES_PER_PROJECT),
        max_hourly_per_project: Some(MAX_HOURLY_SCHEDULES_PER_PROJECT),
    }
}

/// The limits that still apply when a schedule changes (only the hourly count can move).
pub fn update_limits() -> ScheduleLimits {
    ScheduleLimits {
        max_hourly_per_project: Some(MAX_HOURLY_SCHEDULES_PER_PROJECT),
        ..ScheduleLimits::default()
    }
}

/// Editors change and delete every schedule of the project; explorers only their own;
/// viewers none.
pub fn can_modify_schedule(
    role: ProjectRole,
    caller_id: &str,
    schedule: &Schedule,
) -> Result<(), Denied> {
    if role >= ProjectRole::CanEdit {
        return Ok(());
    }
    if role == ProjectRole::CanExplore && schedule.created_by == caller_id {
        return Ok(());
    }
    if role == ProjectRole::CanExplore {
        return Err(forbidden(
            "explorers may change or delete only their own schedules",
        ));
    }
    Err(forbidden("viewers may not change schedules"))
}

/// Who may run a schedule on demand: the same people who may change it.
pub fn can_trigger_schedule(
    role: ProjectRole,
    caller_id: &str,
    schedule: &Schedule,
) -> Result<(), Denied> {
    can_modify_schedule(role, caller_id, schedule)
}

/// Workspace-wide administration (admin schedule list, auto-archive, connections).
pub fn require_admin(caller: &Caller) -> Result<(), Denied> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(forbidden("this action needs the workspace ADMIN role"))
    }
}

/// How a scheduled run executes once the creator's current role is known (SPEC §3
/// "role at run time").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAuthority {
    /// The creator lost access: record the run as `SKIPPED` (`CREATOR_NO_ACCESS`).
    NoAccess,
    Run {
        update_published_results: bool,
        use_cached_sql_results: bool,
    },
}

pub fn run_authority(creator_role_now: Option<ProjectRole>, schedule: &Schedule) -> RunAuthority {
    match creator_role_now {
        None => RunAuthority::NoAccess,
        Some(role) if is_explorer(role) || is_explorer(schedule.creator_role) => {
            RunAuthority::Run {
                update_published_results: false,
                use_cached_sql_results: true,
            }
        }
        Some(_) => RunAuthority::Run {
            update_published_results: schedule.update_published_results,
            use_cached_sql_results: schedule.use_cached_sql_results,
        },
    }
}

#[cfg(test)]
mod tests;
