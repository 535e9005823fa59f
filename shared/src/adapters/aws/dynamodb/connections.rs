//! `ConnectionStore`: a workspace's data connections (`WS#w` / `CONN#name`), listed by
//! name with one strongly consistent `Query` of the workspace partition. The configuration
//! arrives sealed and is stored as such; this store never sees credentials in clear.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::codec::{
    Item, Listing, Range, decode, decode_value, encode, encode_value, key, sdk_err,
};
use super::table::{CONNECTION_PREFIX, DATA, TABLE, connection_sk, workspace_pk};
use crate::domain::model::Connection;
use crate::ports::{ConnectionStore, PortError};

/// When the connection was first created; a replacement keeps it (`if_not_exists`).
const CREATED_AT: &str = "createdAt";

/// The stored connection, with the creation instant of its first put.
pub(super) fn decode_connection(mut item: Item) -> Result<Connection, PortError> {
    let created: Option<AttributeValue> = item.remove(CREATED_AT);
    let mut connection: Connection = decode(item, "connection")?;
    if let Some(created) = created {
        connection.created_at = decode_value(created, "connection creation instant")?;
    }
    Ok(connection)
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), PortError> {
        // One update: the record is replaced, the first creation instant is kept. No read
        // precedes it, so a concurrent first put cannot slip between.
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                workspace_pk(&connection.workspace_id),
                connection_sk(&connection.name),
            )))
            .update_expression("SET #d = :d, #created = if_not_exists(#created, :created)")
            .expression_attribute_names("#d", DATA)
            .expression_attribute_names("#created", CREATED_AT)
            .expression_attribute_values(":d", encode(connection, "connection")?)
            .expression_attribute_values(
                ":created",
                encode_value(&connection.created_at, "instant")?,
            )
            .send()
            .await
            .map_err(|e| sdk_err("UpdateItem", e))?;
        Ok(())
    }

    async fn get_connection(
        &self,
        workspace_id: &str,
        name: &str,
    ) -> Result<Option<Connection>, PortError> {
        self.get_item(key(workspace_pk(workspace_id), connection_sk(name)))
            .await?
            .map(decode_connection)
            .transpose()
    }

    async fn list_connections(&self, workspace_id: &str) -> Result<Vec<Connection>, PortError> {
        // A workspace has a handful of connections: one unpaged list, in key (name) order.
        let mut listing = Listing::new("connections", TABLE, workspace_pk(workspace_id));
        listing.range = Range::Prefix(CONNECTION_PREFIX.to_owned());
        let items = self.query_items(&listing, None, usize::MAX).await?;
        items.into_iter().map(decode_connection).collect()
    }
}
