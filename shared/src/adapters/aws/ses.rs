//! Amazon SES (v2 `SendEmail`) as the e-mail channel of the AWS deployment: one simple
//! plain-text message per delivery, from a verified sender identity. Throttling and service
//! trouble are worth another attempt; a rejected message, an unverified sender or a paused
//! account are not.

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use crate::domain::notifications::NotificationMessage;
use crate::ports::{Deliverer, DeliveryError, DeliveryTarget};

/// The SDK this adapter is built on, for callers that construct its client.
pub use aws_sdk_sesv2 as sdk;

#[derive(Clone, Debug)]
pub struct SesDeliverer {
    client: Client,
    from: String,
    configuration_set: Option<String>,
}

impl SesDeliverer {
    /// `from`: a verified identity (address or an address of a verified domain).
    pub fn new(client: Client, from: impl Into<String>) -> SesDeliverer {
        SesDeliverer {
            client,
            from: from.into(),
            configuration_set: None,
        }
    }

    /// Sends through a configuration set (event publishing, dedicated IPs).
    pub fn with_configuration_set(mut self, name: impl Into<String>) -> SesDeliverer {
        self.configuration_set = Some(name.into());
        self
    }
}

/// The e-mail channel of a stack deployed without a sender (`SesFromAddress` empty): every
/// e-mail delivery fails with a reason that says how to configure one.
#[derive(Clone, Copy, Debug, Default)]
pub struct SesNotConfigured;

#[async_trait]
impl Deliverer for SesNotConfigured {
    async fn deliver(
        &self,
        _target: &DeliveryTarget,
        _message: &NotificationMessage,
    ) -> Result<(), DeliveryError> {
        Err(DeliveryError::Permanent(
            "e-mail is not configured in this deployment (set the stack's SesFromAddress to a verified SES identity)"
                .into(),
        ))
    }
}

/// SES error codes worth another attempt.
const RETRYABLE: &[&str] = &[
    "TooManyRequestsException",
    "LimitExceededException",
    "ThrottlingException",
    "InternalFailure",
    "ServiceUnavailable",
];

fn content(data: String) -> Result<Content, DeliveryError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|_| DeliveryError::Permanent("the message could not be built".into()))
}

#[async_trait]
impl Deliverer for SesDeliverer {
    async fn deliver(
        &self,
        target: &DeliveryTarget,
        message: &NotificationMessage,
    ) -> Result<(), DeliveryError> {
        let DeliveryTarget::Email { address } = target else {
            return Err(DeliveryError::Permanent("not an e-mail target".into()));
        };
        let simple = Message::builder()
            .subject(content(message.subject())?)
            .body(Body::builder().text(content(message.text())?).build())
            .build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(address).build())
            .content(EmailContent::builder().simple(simple).build())
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

/// The operation and the error code only: the SDK's text may quote the addresses.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E, aws_sdk_sesv2::config::http::HttpResponse>,
) -> DeliveryError {
    match &e {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown").to_owned();
            let status = service.raw().status().as_u16();
            if RETRYABLE.contains(&code.as_str()) || status >= 500 || status == 429 {
                DeliveryError::Retryable(format!("SES SendEmail: {code}"))
            } else {
                DeliveryError::Permanent(format!("SES SendEmail refused: {code}"))
            }
        }
        SdkError::TimeoutError(_) => DeliveryError::Retryable("SES SendEmail timed out".into()),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            DeliveryError::Retryable("SES SendEmail could not be reached".into())
        }
        _ => DeliveryError::Permanent("SES SendEmail could not be sent".into()),
    }
}
