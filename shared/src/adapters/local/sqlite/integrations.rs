//! `IntegrationStore` over `integrations`: one row per workspace holding its (sealed) Slack
//! webhooks and webhook signing secret. Each part is replaced in a read-modify-write inside
//! one `BEGIN IMMEDIATE` transaction, so changing one never loses a concurrent change of
//! the other.

use async_trait::async_trait;

use super::codec::{from_json, to_json};
use super::{SqliteStore, db_err, exec, query_opt};
use crate::domain::model::{Integrations, SlackIntegration, WebhookSigningSecret};
use crate::ports::{IntegrationStore, PortError};

const GET: &str = "SELECT body FROM integrations WHERE workspace_id = ?1";

fn decode(row: &rusqlite::Row<'_>) -> Result<Integrations, PortError> {
    from_json(&row.get::<_, String>(0).map_err(db_err)?, "integrations")
}

impl SqliteStore {
    async fn change_integrations(
        &self,
        workspace_id: &str,
        change: impl FnOnce(&mut Integrations) + Send + 'static,
    ) -> Result<(), PortError> {
        let ws = workspace_id.to_owned();
        self.write(move |tx| {
            let mut current = query_opt(tx, GET, [&ws], decode)?.unwrap_or_default();
            change(&mut current);
            exec(
                tx,
                "INSERT INTO integrations (workspace_id, body) VALUES (?1, ?2)
                 ON CONFLICT (workspace_id) DO UPDATE SET body = excluded.body",
                (&ws, to_json(&current)?),
            )?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl IntegrationStore for SqliteStore {
    async fn get_integrations(&self, workspace_id: &str) -> Result<Integrations, PortError> {
        let ws = workspace_id.to_owned();
        self.read(move |conn| Ok(query_opt(conn, GET, [&ws], decode)?.unwrap_or_default()))
            .await
    }

    async fn put_slack_integration(
        &self,
        workspace_id: &str,
        slack: &SlackIntegration,
    ) -> Result<(), PortError> {
        let slack = slack.clone();
        self.change_integrations(workspace_id, move |i| i.slack = Some(slack))
            .await
    }

    async fn put_webhook_secret(
        &self,
        workspace_id: &str,
        secret: &WebhookSigningSecret,
    ) -> Result<(), PortError> {
        let secret = secret.clone();
        self.change_integrations(workspace_id, move |i| i.webhook_secret = Some(secret))
            .await
    }
}
