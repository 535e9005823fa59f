//! The API function: the shared axum router behind API Gateway's HTTP API. API Gateway's
//! JWT authorizer has verified the token; the router reads the caller from its claims.

mod identity;

use std::sync::Arc;

use scheduled_runs::aws_deployment::{Aws, AwsSettings};
use scheduled_runs::http::router;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = AwsSettings::from_env()?;
    let aws = Aws::load(settings).await;
    let identity = Arc::new(identity::GatewayClaims::new(aws.settings.claims.clone()));
    let public_url = aws.settings.public_url.clone().unwrap_or_default();
    let state = aws.app_state(identity, public_url).await?;
    lambda_http::run(router(state)).await
}
