//! Project use cases: create, list, drafts and publishing, members, archiving.
//! Archiving reaches into schedules because an archived project's triggers must stop
//! (and unarchiving restores those that were enabled).

use std::collections::HashSet;
use std::sync::Arc;

use crate::domain::model::{Caller, Member, Project, ProjectRole, ProjectVersion, VersionBody};
use crate::ports::{
    Clock, ConnectionStore, Page, PageRequest, ProjectStore, ScheduleStore, TriggerBackend,
    WorkspaceStore,
};

use super::access::remember_caller;
use super::{ProjectAccess, ServiceError};

/// A project as one caller sees it.
#[derive(Clone, Debug)]
pub struct ProjectView {
    pub project: Project,
    pub role: ProjectRole,
}

impl From<ProjectAccess> for ProjectView {
    fn from(a: ProjectAccess) -> Self {
        ProjectView {
            project: a.project,
            role: a.role,
        }
    }
}

pub struct ProjectService {
    pub workspaces: Arc<dyn WorkspaceStore>,
    pub projects: Arc<dyn ProjectStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    /// Publishing checks that every cell's connection exists.
    pub connections: Arc<dyn ConnectionStore>,
    pub triggers: Arc<dyn TriggerBackend>,
    pub clock: Arc<dyn Clock>,
}

const MAX_TITLE_LEN: usize = 200;
const MAX_DESCRIPTION_LEN: usize = 5_000;

impl ProjectService {
    pub async fn create(
        &self,
        caller: &Caller,
        title: &str,
        description: Option<String>,
    ) -> Result<ProjectView, ServiceError> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE_LEN {
            return Err(ServiceError::invalid(
                "INVALID_PROJECT",
                "title",
                format!("title must be 1 to {MAX_TITLE_LEN} characters"),
            ));
        }
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN)
        {
            return Err(ServiceError::invalid(
                "INVALID_PROJECT",
                "description",
                format!("description must be at most {MAX_DESCRIPTION_LEN} characters"),
            ));
        }
        self.require_workspace(caller).await?;
        remember_caller(self.workspaces.as_ref(), caller).await?;
        let now = self.clock.now();
        let project = Project {
            project_id: uuid::Uuid::new_v4().to_string(),
            workspace_id: caller.workspace_id.clone(),
            title: title.to_owned(),
            description,
            created_by: caller.user_id.clone(),
            created_at: now,
            updated_at: now,
            archived: false,
            published_version: None,
            last_activity_at: now,
        };
        self.projects.create_project(&project).await?;
        Ok(ProjectView {
            project,
            role: ProjectRole::FullAccess,
        })
    }

    /// A workspace exists only once an operator created it (and chose its plan).
    async fn require_workspace(&self, caller: &Caller) -> Result<(), ServiceError> {
        match self.workspaces.get_workspace(&caller.workspace_id).await? {
            Some(_) => Ok(()),
            None => Err(ServiceError::NotFound {
                code: "WORKSPACE_NOT_FOUND",
                what: "workspace",
            }),
        }
    }

    pub async fn list(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<ProjectView>, ServiceError> {
        let member = (!caller.is_admin()).then_some(caller.user_id.as_str());
        let page = self
            .projects
            .list_projects(&caller.workspace_id, member, page)
            .await?;
        let mut items = Vec::with_capacity(page.items.len());
        for project in page.items {
            let role = if caller.is_admin() {
                Some(ProjectRole::FullAccess)
            } else {
                self.projects
                    .get_member_role(&caller.workspace_id, &project.project_id, &caller.user_id)
                    .await?
            };
            // A membership removed between the two reads hides the project.
            if let Some(role) = role {
                items.push(ProjectView { project, role });
            }
        }
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
        })
    }

    pub async fn get(
        &self,
        caller: &Caller,
        project_id: &str,
    ) -> Result<ProjectView, ServiceError> {
        Ok(ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?
        .into())
    }

    pub async fn get_draft(
        &self,
        caller: &Caller,
        project_id: &str,
    ) -> Result<VersionBody, ServiceError> {
        ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanEdit,
        )
        .await?;
        self.projects
            .get_draft(&caller.workspace_id, project_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("draft"))
    }

    pub async fn put_draft(
        &self,
        caller: &Caller,
        project_id: &str,
        body: &VersionBody,
    ) -> Result<(), ServiceError> {
        ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanEdit,
        )
        .await?;
        let now = self.clock.now();
        // Activity before the change it belongs to (see `schedules::create`).
        self.projects
            .touch_activity(&caller.workspace_id, project_id, now)
            .await?;
        self.projects
            .put_draft(&caller.workspace_id, project_id, body, now)
            .await?;
        Ok(())
    }

    pub async fn publish(
        &self,
        caller: &Caller,
        project_id: &str,
    ) -> Result<ProjectVersion, ServiceError> {
        let access = ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanEdit,
        )
        .await?;
        if access.project.archived {
            return Err(crate::domain::policy::Denied::ProjectArchived.into());
        }
        let draft = self
            .projects
            .get_draft(&caller.workspace_id, project_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("draft"))?;
        let connections: HashSet<String> = self
            .connections
            .list_connections(&caller.workspace_id)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect();
        crate::domain::cells::validate_version(&draft, &|name| connections.contains(name))
            .map_err(|e| ServiceError::invalid("INVALID_VERSION", e.field, e.message))?;
        let now = self.clock.now();
        // Activity first: a publish that failed after taking its version number would be
        // retried by the caller, and publish a second version.
        self.projects
            .touch_activity(&caller.workspace_id, project_id, now)
            .await?;
        let version = self
            .projects
            .publish(&caller.workspace_id, project_id, &caller.user_id, now)
            .await?;
        Ok(version)
    }

    pub async fn put_member(
        &self,
        caller: &Caller,
        project_id: &str,
        user_id: &str,
        role: ProjectRole,
    ) -> Result<Member, ServiceError> {
        ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::FullAccess,
        )
        .await?;
        if user_id.is_empty() || user_id.len() > 256 {
            return Err(ServiceError::invalid(
                "INVALID_MEMBER",
                "userId",
                "userId must be 1 to 256 characters",
            ));
        }
        let member = Member {
            project_id: project_id.to_owned(),
            user_id: user_id.to_owned(),
            role,
        };
        self.projects
            .put_member(&caller.workspace_id, &member)
            .await?;
        Ok(member)
    }

    /// Takes the user's role on the project away. Their schedules stay; at dispatch they
    /// are skipped (`CREATOR_NO_ACCESS`) until someone with access takes them over.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        project_id: &str,
        user_id: &str,
    ) -> Result<(), ServiceError> {
        ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::FullAccess,
        )
        .await?;
        self.projects
            .touch_activity(&caller.workspace_id, project_id, self.clock.now())
            .await?;
        self.projects
            .remove_member(&caller.workspace_id, project_id, user_id)
            .await
            .map_err(|e| match e {
                crate::ports::PortError::NotFound => ServiceError::NotFound {
                    code: "MEMBER_NOT_FOUND",
                    what: "member",
                },
                other => other.into(),
            })?;
        Ok(())
    }

    /// Archives or unarchives the project and brings every schedule's trigger in line:
    /// archived → none fires; unarchived → those that are enabled fire again.
    pub async fn set_archived(
        &self,
        caller: &Caller,
        project_id: &str,
        archived: bool,
    ) -> Result<ProjectView, ServiceError> {
        let access = ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::FullAccess,
        )
        .await?;
        let now = self.clock.now();
        let project = self
            .projects
            .set_archived(&caller.workspace_id, project_id, archived, now)
            .await?;
        sync_project_triggers(self.schedules.as_ref(), self.triggers.as_ref(), &project).await?;
        Ok(ProjectView {
            project,
            role: access.role,
        })
    }
}

/// Puts every schedule of `project` into the trigger state its settings and the project's
/// archive state call for.
pub async fn sync_project_triggers(
    schedules: &dyn ScheduleStore,
    triggers: &dyn TriggerBackend,
    project: &Project,
) -> Result<(), ServiceError> {
    let mut page = PageRequest::first(100);
    loop {
        let batch = schedules
            .list_project_schedules(&project.workspace_id, &project.project_id, &page)
            .await?;
        for schedule in &batch.items {
            triggers
                .put_trigger(schedule, schedule.enabled && !project.archived)
                .await?;
        }
        match batch.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => return Ok(()),
        }
    }
}
