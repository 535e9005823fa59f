//! `IntegrationStore`: one item per workspace (`WS#w` / `INTEGRATIONS`) with two map
//! attributes, `slack` and `webhookSecret`. Each part is written by an `UpdateItem` that
//! sets only its own attribute (creating the item on first use), so changing one part can
//! never lose a concurrent change of the other — no read, no transaction. The secrets
//! inside arrive sealed (`SecretBox`) and are stored as such.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoStore;
use super::codec::{decode_value, encode, key, sdk_err};
use super::table::{INTEGRATIONS_SK, workspace_pk};
use crate::domain::model::{Integrations, SlackIntegration, WebhookSigningSecret};
use crate::ports::{IntegrationStore, PortError};

const SLACK: &str = "slack";
const WEBHOOK_SECRET: &str = "webhookSecret";

impl DynamoStore {
    /// Creates or replaces one part of the workspace's integrations.
    async fn set_integration_part(
        &self,
        workspace_id: &str,
        part: &'static str,
        value: AttributeValue,
    ) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(workspace_pk(workspace_id), INTEGRATIONS_SK)))
            .update_expression("SET #part = :v")
            .expression_attribute_names("#part", part)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .map_err(|e| sdk_err("UpdateItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl IntegrationStore for DynamoStore {
    async fn get_integrations(&self, workspace_id: &str) -> Result<Integrations, PortError> {
        let Some(mut item) = self
            .get_item(key(workspace_pk(workspace_id), INTEGRATIONS_SK))
            .await?
        else {
            return Ok(Integrations::default());
        };
        Ok(Integrations {
            slack: item
                .remove(SLACK)
                .map(|v| decode_value(v, "slack integration"))
                .transpose()?,
            webhook_secret: item
                .remove(WEBHOOK_SECRET)
                .map(|v| decode_value(v, "webhook signing secret"))
                .transpose()?,
        })
    }

    async fn put_slack_integration(
        &self,
        workspace_id: &str,
        slack: &SlackIntegration,
    ) -> Result<(), PortError> {
        self.set_integration_part(workspace_id, SLACK, encode(slack, "slack integration")?)
            .await
    }

    async fn put_webhook_secret(
        &self,
        workspace_id: &str,
        secret: &WebhookSigningSecret,
    ) -> Result<(), PortError> {
        self.set_integration_part(
            workspace_id,
            WEBHOOK_SECRET,
            encode(secret, "webhook signing secret")?,
        )
        .await
    }
}
