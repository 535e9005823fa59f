//! The notification channels: one `Deliverer` each. E-mail goes through SMTP (`smtp`, the
//! local server) or Amazon SES (`adapters::aws::ses`); Slack incoming webhooks (`slack`)
//! and signed webhooks (`webhook`) through the SSRF-guarded HTTP client (`http`).

pub mod http;
pub mod slack;
pub mod smtp;
pub mod webhook;

use async_trait::async_trait;

use crate::domain::notifications::NotificationMessage;
use crate::ports::{Deliverer, DeliveryError, DeliveryTarget};

/// The e-mail channel of a server started without a mail sender: every e-mail delivery
/// fails with a reason that says how to configure one.
#[derive(Clone, Debug, Default)]
pub struct EmailNotConfigured;

#[async_trait]
impl Deliverer for EmailNotConfigured {
    async fn deliver(
        &self,
        _target: &DeliveryTarget,
        _message: &NotificationMessage,
    ) -> Result<(), DeliveryError> {
        Err(DeliveryError::Permanent(
            "e-mail is not configured on this server (start it with --smtp-url smtp://HOST:PORT)"
                .into(),
        ))
    }
}

/// A deliverer handed a target of another channel: a wiring mistake, never retried.
pub(crate) fn wrong_channel(expected: &str) -> DeliveryError {
    DeliveryError::Permanent(format!("not a {expected} target"))
}
