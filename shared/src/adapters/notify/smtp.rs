//! E-mail over SMTP (the local server's `--smtp-url`): `smtp://HOST:PORT` speaks plain
//! SMTP (a relay on a trusted network, or a development catcher), `smtps://` and
//! `smtp://…?tls=required` use TLS; credentials may be given as `smtp://user:pass@host`.
//! The URL is never logged. One plain-text message per delivery; its `Message-ID` is
//! derived from the delivery id, so a mail system can recognise a repeat.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::wrong_channel;
use crate::domain::notifications::NotificationMessage;
use crate::ports::{Deliverer, DeliveryError, DeliveryTarget};

#[derive(Clone)]
pub struct SmtpDeliverer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpDeliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpDeliverer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// Why a mail sender could not be built (the URL itself is not repeated).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SmtpConfigError(pub String);

impl SmtpDeliverer {
    /// `url`: `smtp://HOST:PORT` (see the module docs); `from`: the sender, e.g.
    /// `Scheduled runs <runs@example.com>`.
    pub fn new(url: &str, from: &str) -> Result<SmtpDeliverer, SmtpConfigError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| {
                SmtpConfigError(
                    "the SMTP URL is invalid; expected smtp://HOST:PORT or smtps://HOST:PORT"
                        .into(),
                )
            })?
            .timeout(Some(Duration::from_secs(15)))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|_| SmtpConfigError(format!("the sender address {from:?} is invalid")))?;
        Ok(SmtpDeliverer { transport, from })
    }
}

#[async_trait]
impl Deliverer for SmtpDeliverer {
    async fn deliver(
        &self,
        target: &DeliveryTarget,
        message: &NotificationMessage,
    ) -> Result<(), DeliveryError> {
        let DeliveryTarget::Email { address } = target else {
            return Err(wrong_channel("e-mail"));
        };
        let to = address
            .parse::<Mailbox>()
            .map_err(|_| DeliveryError::Permanent("the recipient address is invalid".into()))?;
        let host = self.from.email.domain().to_owned();
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject())
            .message_id(Some(format!("<{}@{host}>", message.delivery_id)))
            .header(ContentType::TEXT_PLAIN)
            .body(message.text())
            .map_err(|e| {
                DeliveryError::Permanent(format!("the message could not be built: {e}"))
            })?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(format!(
                "the mail server refused the message: {e}"
            ))),
            Err(e) => Err(DeliveryError::Retryable(format!("SMTP: {e}"))),
        }
    }
}
