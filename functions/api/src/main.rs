//! The API function: the shared axum router behind API Gateway's HTTP API. API Gateway's
//! JWT authorizer has verified the token; the router reads the caller from its claims.

mod apigw;
mod identity;

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, run, service_fn};
use scheduled_runs::aws_deployment::{Aws, AwsSettings};
use scheduled_runs::deferred::Deferred;
use scheduled_runs::http::router;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    scheduled_runs::aws_deployment::init_function_logging();
    // Settings and the SDK configuration are checked here, so a misconfigured function
    // fails at start-up; nothing here does I/O.
    let aws = Arc::new(Aws::for_function(AwsSettings::from_env()?)?);
    // The clients, the sealing key and the router are prepared on the first invocation, not
    // before it (shared/src/deferred.rs).
    let app = Deferred::new(move || {
        let aws = Arc::clone(&aws);
        async move {
            let identity = Arc::new(identity::GatewayClaims::new(aws.settings.claims.clone()));
            let public_url = aws.settings.public_url.clone().unwrap_or_default();
            Ok::<_, lambda_runtime::Error>(router(aws.app_state(identity, public_url).await?))
        }
    });
    let app = &app;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let router = app.get().await?.clone();
            Ok::<_, lambda_runtime::Error>(apigw::serve(router, event.payload).await?)
        },
    ))
    .await
}
