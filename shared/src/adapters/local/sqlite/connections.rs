//! `ConnectionStore` over `connections`: a workspace's data connections by name. The
//! configuration arrives sealed and is stored as such inside the JSON body; this store
//! never sees credentials in clear.

use async_trait::async_trait;
use rusqlite::Row;

use super::codec::{from_json, to_json};
use super::{SqliteStore, db_err, exec, query_all, query_opt};
use crate::domain::model::Connection;
use crate::ports::{ConnectionStore, PortError};

fn connection_from_row(row: &Row<'_>) -> Result<Connection, PortError> {
    from_json(&row.get::<_, String>(0).map_err(db_err)?, "connection")
}

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), PortError> {
        let mut c = connection.clone();
        self.write(move |tx| {
            // A replacement keeps the creation time of the first put. Read and write share
            // the IMMEDIATE transaction, so a concurrent first put cannot slip between.
            let existing = query_opt(
                tx,
                "SELECT body FROM connections WHERE workspace_id = ?1 AND name = ?2",
                (&c.workspace_id, &c.name),
                connection_from_row,
            )?;
            if let Some(existing) = existing {
                c.created_at = existing.created_at;
            }
            exec(
                tx,
                "INSERT INTO connections (workspace_id, name, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace_id, name) DO UPDATE SET body = excluded.body",
                (&c.workspace_id, &c.name, to_json(&c)?),
            )?;
            Ok(())
        })
        .await
    }

    async fn get_connection(
        &self,
        workspace_id: &str,
        name: &str,
    ) -> Result<Option<Connection>, PortError> {
        let (ws, name) = (workspace_id.to_owned(), name.to_owned());
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT body FROM connections WHERE workspace_id = ?1 AND name = ?2",
                (&ws, &name),
                connection_from_row,
            )
        })
        .await
    }

    async fn list_connections(&self, workspace_id: &str) -> Result<Vec<Connection>, PortError> {
        let ws = workspace_id.to_owned();
        self.read(move |conn| {
            // A workspace has a handful of connections: one unpaged list, in key order.
            query_all(
                conn,
                "SELECT body FROM connections WHERE workspace_id = ?1 ORDER BY name",
                [&ws],
                connection_from_row,
            )
        })
        .await
    }
}
