//! `WorkspaceStore` over the `workspaces` and `users` tables: tenants and the users seen in
//! their tokens (with the e-mail and workspace role of the latest token).

use async_trait::async_trait;
use rusqlite::Row;

use super::codec::{after, finish_page, page_size, parse_ts, ts};
use super::{SqliteStore, db_err, exec, query_all, query_opt};
use crate::domain::model::{Plan, User, Workspace, WorkspaceRole};
use crate::ports::{Page, PageRequest, PortError, WorkspaceStore};

const WORKSPACE_COLUMNS: &str = "workspace_id, plan, auto_archive_after_days, created_at";

fn workspace_from_row(row: &Row<'_>) -> Result<Workspace, PortError> {
    let plan: String = row.get(1).map_err(db_err)?;
    let created_at: String = row.get(3).map_err(db_err)?;
    Ok(Workspace {
        workspace_id: row.get(0).map_err(db_err)?,
        plan: Plan::parse(&plan)
            .ok_or_else(|| PortError::fatal(format!("sqlite: corrupt plan {plan:?}")))?,
        auto_archive_after_days: row.get(2).map_err(db_err)?,
        created_at: parse_ts(&created_at)?,
    })
}

/// Runs an `UPDATE workspaces ... RETURNING` and decodes the updated row; no row means the
/// workspace does not exist.
fn update_returning(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Workspace, PortError> {
    query_opt(tx, sql, params, workspace_from_row)?.ok_or(PortError::NotFound)
}

/// Decodes `workspace_id, user_id, email, workspace_role`, starting at column `first`.
pub(super) fn user_from_row(row: &Row<'_>, first: usize) -> Result<User, PortError> {
    let role: String = row.get(first + 3).map_err(db_err)?;
    Ok(User {
        workspace_id: row.get(first).map_err(db_err)?,
        user_id: row.get(first + 1).map_err(db_err)?,
        email: row.get(first + 2).map_err(db_err)?,
        workspace_role: WorkspaceRole::parse(&role)
            .ok_or_else(|| PortError::fatal(format!("sqlite: corrupt workspace role {role:?}")))?,
    })
}

#[async_trait]
impl WorkspaceStore for SqliteStore {
    async fn create_workspace(&self, workspace: &Workspace) -> Result<(), PortError> {
        let w = workspace.clone();
        self.write(move |tx| {
            exec(
                tx,
                "INSERT INTO workspaces (workspace_id, plan, auto_archive_after_days, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                (
                    &w.workspace_id,
                    w.plan.as_str(),
                    w.auto_archive_after_days,
                    ts(&w.created_at),
                ),
            )?;
            Ok(())
        })
        .await
    }

    async fn get_workspace(&self, workspace_id: &str) -> Result<Option<Workspace>, PortError> {
        let id = workspace_id.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                &format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE workspace_id = ?1"),
                [&id],
                workspace_from_row,
            )
        })
        .await
    }

    async fn set_plan(&self, workspace_id: &str, plan: Plan) -> Result<Workspace, PortError> {
        let id = workspace_id.to_owned();
        self.write(move |tx| {
            update_returning(
                tx,
                &format!(
                    "UPDATE workspaces SET plan = ?2 WHERE workspace_id = ?1
                     RETURNING {WORKSPACE_COLUMNS}"
                ),
                (&id, plan.as_str()),
            )
        })
        .await
    }

    async fn set_auto_archive(
        &self,
        workspace_id: &str,
        after_days: Option<u32>,
    ) -> Result<Workspace, PortError> {
        let id = workspace_id.to_owned();
        self.write(move |tx| {
            update_returning(
                tx,
                &format!(
                    "UPDATE workspaces SET auto_archive_after_days = ?2 WHERE workspace_id = ?1
                     RETURNING {WORKSPACE_COLUMNS}"
                ),
                (&id, after_days),
            )
        })
        .await
    }

    async fn upsert_user(&self, user: &User) -> Result<(), PortError> {
        let u = user.clone();
        self.write(move |tx| {
            exec(
                tx,
                "INSERT INTO users (workspace_id, user_id, email, workspace_role)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, user_id)
                 DO UPDATE SET email = excluded.email, workspace_role = excluded.workspace_role",
                (
                    &u.workspace_id,
                    &u.user_id,
                    &u.email,
                    u.workspace_role.as_str(),
                ),
            )?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, workspace_id: &str, user_id: &str) -> Result<Option<User>, PortError> {
        let (ws, id) = (workspace_id.to_owned(), user_id.to_owned());
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT workspace_id, user_id, email, workspace_role FROM users
                 WHERE workspace_id = ?1 AND user_id = ?2",
                (&ws, &id),
                |row| user_from_row(row, 0),
            )
        })
        .await
    }

    async fn list_workspaces(&self, page: &PageRequest) -> Result<Page<Workspace>, PortError> {
        let size = page_size(page);
        let [after_created, after_id] = after::<2>(page)?;
        self.read(move |conn| {
            let items = query_all(
                conn,
                &format!(
                    "SELECT {WORKSPACE_COLUMNS} FROM workspaces
                     WHERE (created_at, workspace_id) > (?1, ?2)
                     ORDER BY created_at, workspace_id
                     LIMIT ?3"
                ),
                (&after_created, &after_id, size + 1),
                workspace_from_row,
            )?;
            Ok(finish_page(items, size, |w: &Workspace| {
                [ts(&w.created_at), w.workspace_id.clone()]
            }))
        })
        .await
    }
}
