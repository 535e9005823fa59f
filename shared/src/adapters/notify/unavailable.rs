//! The notification store ports for a deployment whose state store does not implement them
//! yet (the AWS deployment until the DynamoDB store has `DeliveryStore`, `IntegrationStore`
//! and `RunEventOutbox`). Reads find nothing — no integrations, no delivery records, no
//! pending events — and writes fail, so the API keeps working: e-mail notifications can be
//! set (they travel inside schedule and run records), Slack and webhooks are refused for
//! want of an integration and a signing secret, and the admin integration endpoints answer
//! an error instead of pretending to store anything.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::model::{
    DeliveryRecord, Integrations, Run, SlackIntegration, WebhookSigningSecret,
};
use crate::ports::{
    DeliveryClaim, DeliveryStore, IntegrationStore, Page, PageRequest, PortError, RunEventOutbox,
};

#[derive(Clone, Copy, Debug, Default)]
pub struct NotificationStoreUnavailable;

fn unavailable() -> PortError {
    PortError::fatal("this deployment's store does not keep notification state yet")
}

#[async_trait]
impl IntegrationStore for NotificationStoreUnavailable {
    async fn get_integrations(&self, _workspace_id: &str) -> Result<Integrations, PortError> {
        Ok(Integrations::default())
    }

    async fn put_slack_integration(
        &self,
        _workspace_id: &str,
        _slack: &SlackIntegration,
    ) -> Result<(), PortError> {
        Err(unavailable())
    }

    async fn put_webhook_secret(
        &self,
        _workspace_id: &str,
        _secret: &WebhookSigningSecret,
    ) -> Result<(), PortError> {
        Err(unavailable())
    }
}

#[async_trait]
impl DeliveryStore for NotificationStoreUnavailable {
    async fn claim_delivery(
        &self,
        _workspace_id: &str,
        _run_id: &str,
        _record: &DeliveryRecord,
        _now: DateTime<Utc>,
    ) -> Result<DeliveryClaim, PortError> {
        Err(unavailable())
    }

    async fn save_delivery(
        &self,
        _workspace_id: &str,
        _run_id: &str,
        _record: &DeliveryRecord,
    ) -> Result<(), PortError> {
        Err(unavailable())
    }

    async fn list_deliveries(
        &self,
        _workspace_id: &str,
        _run_id: &str,
    ) -> Result<Vec<DeliveryRecord>, PortError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl RunEventOutbox for NotificationStoreUnavailable {
    async fn list_pending_events(&self, _page: &PageRequest) -> Result<Page<Run>, PortError> {
        Ok(Page {
            items: Vec::new(),
            next_cursor: None,
        })
    }

    async fn mark_event_published(
        &self,
        _workspace_id: &str,
        _run_id: &str,
    ) -> Result<(), PortError> {
        Ok(())
    }
}
