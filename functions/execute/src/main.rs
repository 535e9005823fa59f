//! The execute function: runs from the SQS run queue, reporting partial batch failures so
//! one failed run does not redeliver the whole batch.

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
    // The clients and the sealing key are prepared on the first invocation, not before the
    // first poll (shared/src/deferred.rs).
    let executor = Deferred::new(move || {
        let aws = Arc::clone(&aws);
        async move { aws.executor().await }
    });
    let executor = &executor;
    run(service_fn(move |event| async move {
        handler::handle(executor.get().await?, event).await
    }))
    .await
}
