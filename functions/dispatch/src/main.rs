//! The dispatch function: EventBridge Scheduler invokes it with a schedule's `Input`
//! (a fire) and, from the maintenance schedules, with `{"task": "sweep" | "daily"}` (the
//! sweep also publishes run events still pending in the outbox).

mod handler;

use lambda_runtime::{run, service_fn};
use scheduled_runs::aws_deployment::{Aws, AwsSettings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = Aws::load(AwsSettings::from_env()?).await;
    let services = aws.dispatch_services()?;
    let handler = handler::Handler {
        dispatch: services.dispatch,
        maintenance: services.maintenance,
        outbox: services.outbox,
    };
    let handler = &handler;
    run(service_fn(move |event| async move {
        handler.handle(event).await
    }))
    .await
}
