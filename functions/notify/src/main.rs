//! The notify function: SNS run events (SPEC §7) → the notify service → e-mail through
//! SES, Slack and signed webhooks through the SSRF-guarded client, each delivery recorded
//! on its run. `main` only configures: settings, then the SDK clients and the sealing key
//! once per execution environment, prepared on the first invocation
//! (shared/src/deferred.rs); `handler` does the rest.

mod handler;

use std::sync::Arc;

use lambda_runtime::{run, service_fn};
use scheduled_runs::aws_deployment::{Aws, AwsSettings};
use scheduled_runs::deferred::Deferred;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    scheduled_runs::aws_deployment::init_function_logging();
    // Settings and the SDK configuration are checked here, so a misconfigured function
    // fails at start-up; nothing here does I/O.
    let aws = Arc::new(Aws::for_function(AwsSettings::from_env()?)?);
    let notify = Deferred::new(move || {
        let aws = Arc::clone(&aws);
        async move {
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
