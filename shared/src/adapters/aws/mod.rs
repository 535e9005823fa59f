//! The AWS deployment's adapters: DynamoDB for all state, EventBridge Scheduler as the
//! trigger backend, SQS as the run queue and SNS for run events. Clients are built once per
//! process (see `aws_deployment`) and endpoints come from the standard `AWS_ENDPOINT_URL*`
//! variables, so the same code talks to AWS or to local emulators.

pub mod connectors;
pub mod dynamodb;
pub mod https;
pub mod request_count;
pub mod scheduler;
pub mod ses;
pub mod sns;
pub mod sqs;
