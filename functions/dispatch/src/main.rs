//! The dispatch function: EventBridge Scheduler invokes it with a schedule's `Input`
//! (a fire) and, from the maintenance schedules, with `{"task": "sweep" | "daily"}` (the
//! sweep also publishes run events still pending in the outbox).

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
    // The clients are built on the first invocation, not before the first poll (shared/src/deferred.rs).
    let handler = Deferred::new(move || {
        let aws = Arc::clone(&aws);
        async move {
            let services = aws.dispatch_services()?;
            Ok::<_, lambda_runtime::Error>(handler::Handler {
                dispatch: services.dispatch,
                maintenance: services.maintenance,
                outbox: services.outbox,
            })
        }
    });
    let handler = &handler;
    run(service_fn(move |event| async move {
        handler.get().await?.handle(event).await
    }))
    .await
}
