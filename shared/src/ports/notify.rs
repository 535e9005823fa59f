//! The delivery port of notifications: one `Deliverer` per channel (SMTP or SES e-mail,
//! Slack incoming webhooks, signed webhooks). The notify service decides who hears about a
//! run and retries; a deliverer makes one attempt and says whether another may help.

use async_trait::async_trait;

use crate::domain::notifications::NotificationMessage;

/// A secret string (a Slack webhook URL, a signing secret) that never reaches a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where one delivery goes, with what the channel needs to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryTarget {
    Email {
        address: String,
    },
    /// A channel of the workspace's Slack integration and its incoming-webhook URL.
    Slack {
        channel_id: String,
        webhook_url: Secret,
    },
    /// A webhook endpoint and the workspace's signing secret.
    Webhook {
        url: Secret,
        signing_secret: Secret,
    },
}

/// Why an attempt failed. Messages are safe to record on the run: they never quote a
/// secret (webhook URLs, credentials).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Trying again later may succeed (timeouts, connection failures, 429, 5xx, SMTP 4xx).
    #[error("{0}")]
    Retryable(String),
    /// Trying again cannot help (refused target, 4xx, SMTP 5xx, unconfigured channel).
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable(_))
    }
}

#[async_trait]
pub trait Deliverer: Send + Sync {
    /// Makes one attempt to deliver `message` to `target`. A deliverer given a target of
    /// another channel fails permanently.
    async fn deliver(
        &self,
        target: &DeliveryTarget,
        message: &NotificationMessage,
    ) -> Result<(), DeliveryError>;
}
