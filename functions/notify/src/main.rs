//! The notify function: SNS run events (SPEC §7) → the notify service → e-mail through
//! SES, Slack and signed webhooks through the SSRF-guarded client, each delivery recorded
//! on its run. `main` only configures: settings, the SDK clients and the sealing key once
//! per cold start; `handler` does the rest.

mod handler;

use lambda_runtime::{run, service_fn};
use scheduled_runs::aws_deployment::{Aws, AwsSettings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = Aws::load(AwsSettings::from_env()?).await;
    let notify = handler::Acknowledging {
        notify: aws.notify_service().await?,
        outbox: aws.store()?,
    };
    let notify = &notify;
    run(service_fn(move |event| async move {
        handler::handle(notify, event).await
    }))
    .await
}
