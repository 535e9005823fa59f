//! Loading a project together with the caller's effective role on it, the first step of
//! every project-scoped use case. A project in another workspace, or one the caller has no
//! role on, is reported as not found so its existence is not revealed.

use crate::domain::model::{Caller, Project, ProjectRole, User};
use crate::domain::policy::{self, Denied};
use crate::ports::{ProjectStore, WorkspaceStore};

use super::ServiceError;

/// A project and the caller's effective role on it.
#[derive(Clone, Debug)]
pub struct ProjectAccess {
    pub project: Project,
    pub role: ProjectRole,
}

impl ProjectAccess {
    pub async fn load(
        projects: &dyn ProjectStore,
        caller: &Caller,
        project_id: &str,
        needed: ProjectRole,
    ) -> Result<ProjectAccess, ServiceError> {
        let project = projects
            .get_project(&caller.workspace_id, project_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("project"))?;
        let membership = if caller.is_admin() {
            None
        } else {
            projects
                .get_member_role(&caller.workspace_id, project_id, &caller.user_id)
                .await?
        };
        let role = policy::require_role(
            policy::effective_role(caller, &project.workspace_id, membership),
            needed,
        )
        .map_err(|d| match d {
            Denied::NotFound => ServiceError::not_found("project"),
            other => ServiceError::Denied(other),
        })?;
        Ok(ProjectAccess { project, role })
    }
}

/// Records the caller as a known user of the workspace (for notifications by user id and
/// for re-checking a schedule creator's access at dispatch).
pub(crate) async fn remember_caller(
    workspaces: &dyn WorkspaceStore,
    caller: &Caller,
) -> Result<(), ServiceError> {
    workspaces
        .upsert_user(&User {
            user_id: caller.user_id.clone(),
            workspace_id: caller.workspace_id.clone(),
            email: caller.email.clone(),
            workspace_role: caller.workspace_role,
        })
        .await?;
    Ok(())
}
