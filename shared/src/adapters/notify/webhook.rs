//! Signed webhooks: the delivery's JSON (`NotificationMessage::webhook_body`) POSTed to the
//! endpoint with `X-Scheduled-Runs-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<raw body>")>` under the workspace's signing secret, signed afresh on every
//! attempt, and `X-Scheduled-Runs-Delivery: <deliveryId>` so receivers can drop repeats.

use std::sync::Arc;

use async_trait::async_trait;

use super::http::GuardedHttp;
use super::wrong_channel;
use crate::domain::notifications::{self, NotificationMessage, SIGNATURE_HEADER};
use crate::ports::{Clock, Deliverer, DeliveryError, DeliveryTarget};

/// The header naming the delivery (stable across attempts and redeliveries).
pub const DELIVERY_HEADER: &str = "X-Scheduled-Runs-Delivery";

#[derive(Clone)]
pub struct WebhookDeliverer {
    http: GuardedHttp,
    /// The wall clock of the signature timestamps (receivers compare it with theirs).
    clock: Arc<dyn Clock>,
}

impl WebhookDeliverer {
    pub fn new(http: GuardedHttp, clock: Arc<dyn Clock>) -> WebhookDeliverer {
        WebhookDeliverer { http, clock }
    }
}

#[async_trait]
impl Deliverer for WebhookDeliverer {
    async fn deliver(
        &self,
        target: &DeliveryTarget,
        message: &NotificationMessage,
    ) -> Result<(), DeliveryError> {
        let DeliveryTarget::Webhook {
            url,
            signing_secret,
        } = target
        else {
            return Err(wrong_channel("webhook"));
        };
        let body = message.webhook_body();
        let signature = notifications::signature_header(
            signing_secret.expose().as_bytes(),
            self.clock.now().timestamp(),
            &body,
        );
        let headers = [
            (SIGNATURE_HEADER, signature),
            (DELIVERY_HEADER, message.delivery_id.clone()),
        ];
        self.http
            .post_json(url.expose(), &headers, body)
            .await?
            .outcome()
    }
}
