//! Workspace use cases: the operator's (create, change plan; no token involved, the CLI is
//! the operator) and the workspace admin's (auto-archive rule).

use std::sync::Arc;

use crate::domain::model::{Caller, Plan, Workspace};
use crate::domain::policy;
use crate::ports::{Clock, PortError, WorkspaceStore};

use super::ServiceError;

/// Longest accepted auto-archive period (ten years).
const MAX_AUTO_ARCHIVE_DAYS: u32 = 3_650;

pub struct WorkspaceService {
    pub workspaces: Arc<dyn WorkspaceStore>,
    pub clock: Arc<dyn Clock>,
}

/// Workspace ids appear in trigger names and URLs: keep them to a safe alphabet.
pub fn validate_workspace_id(id: &str) -> Result<(), ServiceError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "INVALID_WORKSPACE",
            "workspaceId",
            "workspace ids are 1 to 64 characters of letters, digits, '-' and '_'",
        ))
    }
}

impl WorkspaceService {
    pub async fn create(&self, workspace_id: &str, plan: Plan) -> Result<Workspace, ServiceError> {
        validate_workspace_id(workspace_id)?;
        let workspace = Workspace {
            workspace_id: workspace_id.to_owned(),
            plan,
            auto_archive_after_days: None,
            created_at: self.clock.now(),
        };
        match self.workspaces.create_workspace(&workspace).await {
            Ok(()) => Ok(workspace),
            Err(PortError::AlreadyExists) => Err(ServiceError::Conflict {
                code: "WORKSPACE_EXISTS",
                message: format!("workspace {workspace_id} already exists"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn set_plan(
        &self,
        workspace_id: &str,
        plan: Plan,
    ) -> Result<Workspace, ServiceError> {
        self.workspaces
            .set_plan(workspace_id, plan)
            .await
            .map_err(|e| match e {
                PortError::NotFound => ServiceError::NotFound {
                    code: "WORKSPACE_NOT_FOUND",
                    what: "workspace",
                },
                other => other.into(),
            })
    }

    pub async fn set_auto_archive(
        &self,
        caller: &Caller,
        after_days: Option<u32>,
    ) -> Result<Workspace, ServiceError> {
        policy::require_admin(caller)?;
        if after_days.is_some_and(|d| d == 0 || d > MAX_AUTO_ARCHIVE_DAYS) {
            return Err(ServiceError::invalid(
                "INVALID_AUTO_ARCHIVE",
                "afterDays",
                format!("afterDays must be between 1 and {MAX_AUTO_ARCHIVE_DAYS}, or null"),
            ));
        }
        self.workspaces
            .set_auto_archive(&caller.workspace_id, after_days)
            .await
            .map_err(|e| match e {
                PortError::NotFound => ServiceError::NotFound {
                    code: "WORKSPACE_NOT_FOUND",
                    what: "workspace",
                },
                other => other.into(),
            })
    }
}
