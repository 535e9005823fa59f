//! The execute function: runs from the SQS run queue, reporting partial batch failures so
//! one failed run does not redeliver the whole batch.

mod handler;

use lambda_runtime::{run, service_fn};
use scheduled_runs::aws_deployment::{Aws, AwsSettings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = Aws::load(AwsSettings::from_env()?).await;
    let executor = aws.executor().await?;
    let executor = &executor;
    run(service_fn(move |event| async move {
        handler::handle(executor, event).await
    }))
    .await
}
