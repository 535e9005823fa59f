//! The notify function: SNS run events (SPEC §7) → the notify service → e-mail through
//! SES, Slack and signed webhooks through the SSRF-guarded client, each delivery recorded
//! on its run. `main` only configures: settings, then the SDK clients and the sealing key
//! once per execution environment, prepared on the first invocation
//! (shared/src/deferred.rs); `handler` does the rest.

mod handler;

use lambda_runtime::{run, service_fn};
use scheduled_runs::aws_deployment::{Aws, AwsSettings};
use scheduled_runs::deferred::Deferred;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    scheduled_runs::aws_deployment::init_function_logging();
    let settings = AwsSettings::from_env()?;
    let notify = Deferred::new(move || {
        let settings = settings.clone();
        async move {
            let aws = Aws::load(settings).await;
            Ok::<_, lambda_runtime::Error>(handler::Acknowledging {
                notify: aws.notify_service().await?,
                outbox: aws.store()?,
            })
        }
    });
    let notify = &notify;
    run(service_fn(move |event| async move {
        handler::handle(notify.get().await?, event).await
    }))
    .await
}
