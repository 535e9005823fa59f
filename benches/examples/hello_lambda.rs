//! The baseline of the cold-start benchmark (`benches/benches/cold_start.rs`): the smallest
//! `lambda_runtime` function, built with the same profile as the real functions.
//!
//! `cargo build --release -p scheduled-runs-benches --example hello_lambda`

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
