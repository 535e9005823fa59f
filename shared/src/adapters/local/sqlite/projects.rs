//! `ProjectStore` over `projects`, `project_members`, `project_drafts` and
//! `project_versions`. Multi-row changes (create with draft and membership, publish) run in
//! one writer transaction, so no reader ever sees half of them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Row;

use super::codec::{after, finish_page, flag, from_json, page_size, parse_ts, to_json, ts};
use super::{SqliteStore, db_err, exec, query_all, query_opt};
use crate::domain::model::{Member, Project, ProjectRole, ProjectVersion, VersionBody};
use crate::ports::{Page, PageRequest, PortError, ProjectStore};

/// Column list of `project_from_row`.
const PROJECT_COLUMNS: &str = "workspace_id, project_id, title, description, created_by, \
     created_at, updated_at, archived, published_version, last_activity_at";

/// The same, qualified by the alias `p` for joins.
pub(super) const P_PROJECT_COLUMNS: &str = "p.workspace_id, p.project_id, p.title, p.description, \
     p.created_by, p.created_at, p.updated_at, p.archived, p.published_version, \
     p.last_activity_at";

/// Decodes the columns of `PROJECT_COLUMNS`, which must come first in the row.
pub(super) fn project_from_row(row: &Row<'_>) -> Result<Project, PortError> {
    let created_at: String = row.get(5).map_err(db_err)?;
    let updated_at: String = row.get(6).map_err(db_err)?;
    let last_activity_at: String = row.get(9).map_err(db_err)?;
    Ok(Project {
        workspace_id: row.get(0).map_err(db_err)?,
        project_id: row.get(1).map_err(db_err)?,
        title: row.get(2).map_err(db_err)?,
        description: row.get(3).map_err(db_err)?,
        created_by: row.get(4).map_err(db_err)?,
        created_at: parse_ts(&created_at)?,
        updated_at: parse_ts(&updated_at)?,
        archived: row.get(7).map_err(db_err)?,
        published_version: row.get(8).map_err(db_err)?,
        last_activity_at: parse_ts(&last_activity_at)?,
    })
}

pub(super) fn role_from_text(role: &str) -> Result<ProjectRole, PortError> {
    ProjectRole::parse(role)
        .ok_or_else(|| PortError::fatal(format!("sqlite: corrupt project role {role:?}")))
}

/// The keyset of project listings: creation order, id as tie-break.
fn project_key(p: &Project) -> [String; 2] {
    [ts(&p.created_at), p.project_id.clone()]
}

#[async_trait]
impl ProjectStore for SqliteStore {
    async fn create_project(&self, project: &Project) -> Result<(), PortError> {
        let p = project.clone();
        let empty_draft = to_json(&VersionBody::default())?;
        self.write(move |tx| {
            exec(
                tx,
                "INSERT INTO projects (workspace_id, project_id, title, description, created_by,
                     created_at, updated_at, archived, published_version, last_activity_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    p.workspace_id,
                    p.project_id,
                    p.title,
                    p.description,
                    p.created_by,
                    ts(&p.created_at),
                    ts(&p.updated_at),
                    flag(p.archived),
                    p.published_version,
                    ts(&p.last_activity_at),
                ],
            )?;
            exec(
                tx,
                "INSERT INTO project_drafts (workspace_id, project_id, body, updated_at)
                 VALUES (?1, ?2, ?3, ?4)",
                (
                    &p.workspace_id,
                    &p.project_id,
                    &empty_draft,
                    ts(&p.created_at),
                ),
            )?;
            exec(
                tx,
                "INSERT INTO project_members (workspace_id, project_id, user_id, role)
                 VALUES (?1, ?2, ?3, ?4)",
                (
                    &p.workspace_id,
                    &p.project_id,
                    &p.created_by,
                    ProjectRole::FullAccess.as_str(),
                ),
            )?;
            Ok(())
        })
        .await
    }

    async fn get_project(
        &self,
        workspace_id: &str,
        project_id: &str,
    ) -> Result<Option<Project>, PortError> {
        let (ws, id) = (workspace_id.to_owned(), project_id.to_owned());
        self.read(move |conn| {
            query_opt(
                conn,
                &format!(
                    "SELECT {PROJECT_COLUMNS} FROM projects
                     WHERE workspace_id = ?1 AND project_id = ?2"
                ),
                (&ws, &id),
                project_from_row,
            )
        })
        .await
    }

    async fn list_projects(
        &self,
        workspace_id: &str,
        member: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Project>, PortError> {
        let ws = workspace_id.to_owned();
        let member = member.map(str::to_owned);
        let size = page_size(page);
        let [after_created, after_id] = after::<2>(page)?;
        self.read(move |conn| {
            let items = match member {
                None => query_all(
                    conn,
                    &format!(
                        "SELECT {PROJECT_COLUMNS} FROM projects
                         WHERE workspace_id = ?1 AND (created_at, project_id) > (?2, ?3)
                         ORDER BY created_at, project_id
                         LIMIT ?4"
                    ),
                    (&ws, &after_created, &after_id, size + 1),
                    project_from_row,
                )?,
                Some(user) => query_all(
                    conn,
                    &format!(
                        "SELECT {P_PROJECT_COLUMNS} FROM projects p
                         JOIN project_members m
                           ON m.workspace_id = p.workspace_id AND m.project_id = p.project_id
                         WHERE p.workspace_id = ?1 AND m.user_id = ?2
                           AND (p.created_at, p.project_id) > (?3, ?4)
                         ORDER BY p.created_at, p.project_id
                         LIMIT ?5"
                    ),
                    (&ws, &user, &after_created, &after_id, size + 1),
                    project_from_row,
                )?,
            };
            Ok(finish_page(items, size, project_key))
        })
        .await
    }

    async fn get_member_role(
        &self,
        workspace_id: &str,
        project_id: &str,
        user_id: &str,
    ) -> Result<Option<ProjectRole>, PortError> {
        let (ws, id, user) = (
            workspace_id.to_owned(),
            project_id.to_owned(),
            user_id.to_owned(),
        );
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT role FROM project_members
                 WHERE workspace_id = ?1 AND project_id = ?2 AND user_id = ?3",
                (&ws, &id, &user),
                |row| role_from_text(&row.get::<_, String>(0).map_err(db_err)?),
            )
        })
        .await
    }

    async fn put_member(&self, workspace_id: &str, member: &Member) -> Result<(), PortError> {
        let ws = workspace_id.to_owned();
        let m = member.clone();
        self.write(move |tx| {
            // The foreign key turns a member of a project missing in this workspace into
            // NotFound.
            exec(
                tx,
                "INSERT INTO project_members (workspace_id, project_id, user_id, role)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, project_id, user_id) DO UPDATE SET role = excluded.role",
                (&ws, &m.project_id, &m.user_id, m.role.as_str()),
            )?;
            Ok(())
        })
        .await
    }

    async fn remove_member(
        &self,
        workspace_id: &str,
        project_id: &str,
        user_id: &str,
    ) -> Result<(), PortError> {
        let (ws, p, u) = (
            workspace_id.to_owned(),
            project_id.to_owned(),
            user_id.to_owned(),
        );
        self.write(move |tx| {
            let removed = exec(
                tx,
                "DELETE FROM project_members
                 WHERE workspace_id = ?1 AND project_id = ?2 AND user_id = ?3",
                (&ws, &p, &u),
            )?;
            if removed == 0 {
                return Err(PortError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn get_draft(
        &self,
        workspace_id: &str,
        project_id: &str,
    ) -> Result<Option<VersionBody>, PortError> {
        let (ws, id) = (workspace_id.to_owned(), project_id.to_owned());
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT body FROM project_drafts WHERE workspace_id = ?1 AND project_id = ?2",
                (&ws, &id),
                |row| from_json(&row.get::<_, String>(0).map_err(db_err)?, "draft"),
            )
        })
        .await
    }

    async fn put_draft(
        &self,
        workspace_id: &str,
        project_id: &str,
        body: &VersionBody,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let (ws, id) = (workspace_id.to_owned(), project_id.to_owned());
        let body = to_json(body)?;
        let at = ts(&at);
        self.write(move |tx| {
            let changed = exec(
                tx,
                "UPDATE project_drafts SET body = ?3, updated_at = ?4
                 WHERE workspace_id = ?1 AND project_id = ?2",
                (&ws, &id, &body, &at),
            )?;
            if changed == 0 {
                return Err(PortError::NotFound);
            }
            // A draft edit is a change of the project, visible in its `updatedAt`.
            exec(
                tx,
                "UPDATE projects SET updated_at = ?3 WHERE workspace_id = ?1 AND project_id = ?2",
                (&ws, &id, &at),
            )?;
            Ok(())
        })
        .await
    }

    async fn publish(
        &self,
        workspace_id: &str,
        project_id: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<ProjectVersion, PortError> {
        let (ws, id, by) = (
            workspace_id.to_owned(),
            project_id.to_owned(),
            by.to_owned(),
        );
        self.write(move |tx| {
            let draft: String = query_opt(
                tx,
                "SELECT body FROM project_drafts WHERE workspace_id = ?1 AND project_id = ?2",
                (&ws, &id),
                |row| row.get(0).map_err(db_err),
            )?
            .ok_or(PortError::NotFound)?;
            // Decode before copying so a corrupt draft is never published.
            let body: VersionBody = from_json(&draft, "draft")?;
            // Inside the IMMEDIATE transaction nobody can take the same number meanwhile.
            let version: u32 = query_opt(
                tx,
                "SELECT COALESCE(MAX(version), 0) + 1 FROM project_versions
                 WHERE workspace_id = ?1 AND project_id = ?2",
                (&ws, &id),
                |row| row.get(0).map_err(db_err),
            )?
            .unwrap_or(1);
            exec(
                tx,
                "INSERT INTO project_versions
                     (workspace_id, project_id, version, body, published_at, published_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                (&ws, &id, version, &draft, ts(&at), &by),
            )?;
            exec(
                tx,
                "UPDATE projects SET published_version = ?3, updated_at = ?4
                 WHERE workspace_id = ?1 AND project_id = ?2",
                (&ws, &id, version, ts(&at)),
            )?;
            Ok(ProjectVersion {
                project_id: id,
                version,
                body,
                published_at: at,
                published_by: by,
            })
        })
        .await
    }

    async fn get_version(
        &self,
        workspace_id: &str,
        project_id: &str,
        version: u32,
    ) -> Result<Option<ProjectVersion>, PortError> {
        let (ws, id) = (workspace_id.to_owned(), project_id.to_owned());
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT project_id, version, body, published_at, published_by
                 FROM project_versions
                 WHERE workspace_id = ?1 AND project_id = ?2 AND version = ?3",
                (&ws, &id, version),
                |row| {
                    let body: String = row.get(2).map_err(db_err)?;
                    let published_at: String = row.get(3).map_err(db_err)?;
                    Ok(ProjectVersion {
                        project_id: row.get(0).map_err(db_err)?,
                        version: row.get(1).map_err(db_err)?,
                        body: from_json(&body, "published version")?,
                        published_at: parse_ts(&published_at)?,
                        published_by: row.get(4).map_err(db_err)?,
                    })
                },
            )
        })
        .await
    }

    async fn set_archived(
        &self,
        workspace_id: &str,
        project_id: &str,
        archived: bool,
        at: DateTime<Utc>,
    ) -> Result<Project, PortError> {
        let (ws, id) = (workspace_id.to_owned(), project_id.to_owned());
        self.write(move |tx| {
            query_opt(
                tx,
                &format!(
                    "UPDATE projects SET archived = ?3, updated_at = ?4
                     WHERE workspace_id = ?1 AND project_id = ?2
                     RETURNING {PROJECT_COLUMNS}"
                ),
                (&ws, &id, flag(archived), ts(&at)),
                project_from_row,
            )?
            .ok_or(PortError::NotFound)
        })
        .await
    }

    async fn touch_activity(
        &self,
        workspace_id: &str,
        project_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let (ws, id) = (workspace_id.to_owned(), project_id.to_owned());
        let at = ts(&at);
        self.write(move |tx| {
            // MAX: activity reported late (a slow request finishing after a newer one) must
            // not move the project back towards auto-archive.
            let changed = exec(
                tx,
                "UPDATE projects SET last_activity_at = MAX(last_activity_at, ?3)
                 WHERE workspace_id = ?1 AND project_id = ?2",
                (&ws, &id, &at),
            )?;
            if changed == 0 {
                return Err(PortError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn list_inactive_projects(
        &self,
        workspace_id: &str,
        before: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Project>, PortError> {
        let ws = workspace_id.to_owned();
        let before = ts(&before);
        let size = page_size(page);
        let [after_activity, after_id] = after::<2>(page)?;
        self.read(move |conn| {
            // `archived = 0` matches the partial index projects_inactive.
            let items = query_all(
                conn,
                &format!(
                    "SELECT {PROJECT_COLUMNS} FROM projects
                     WHERE workspace_id = ?1 AND archived = 0
                       AND last_activity_at < ?2
                       AND (last_activity_at, project_id) > (?3, ?4)
                     ORDER BY last_activity_at, project_id
                     LIMIT ?5"
                ),
                (&ws, &before, &after_activity, &after_id, size + 1),
                project_from_row,
            )?;
            Ok(finish_page(items, size, |p: &Project| {
                [ts(&p.last_activity_at), p.project_id.clone()]
            }))
        })
        .await
    }
}
