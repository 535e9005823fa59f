//! Slack through incoming webhooks: one JSON POST per delivery to the channel's webhook URL
//! (from the workspace's sealed Slack integration), with a readable message — project,
//! schedule, status, the link to the run, and the error or the conditions that held.

use async_trait::async_trait;

use super::http::GuardedHttp;
use super::wrong_channel;
use crate::domain::notifications::NotificationMessage;
use crate::ports::{Deliverer, DeliveryError, DeliveryTarget};

#[derive(Clone, Debug)]
pub struct SlackDeliverer {
    http: GuardedHttp,
}

impl SlackDeliverer {
    pub fn new(http: GuardedHttp) -> SlackDeliverer {
        SlackDeliverer { http }
    }
}

#[async_trait]
impl Deliverer for SlackDeliverer {
    async fn deliver(
        &self,
        target: &DeliveryTarget,
        message: &NotificationMessage,
    ) -> Result<(), DeliveryError> {
        let DeliveryTarget::Slack { webhook_url, .. } = target else {
            return Err(wrong_channel("Slack"));
        };
        let body = serde_json::to_vec(&message.slack_payload()).map_err(|_| {
            DeliveryError::Permanent("the Slack message could not be encoded".into())
        })?;
        self.http
            .post_json(webhook_url.expose(), &[], body)
            .await?
            .outcome()
    }
}
