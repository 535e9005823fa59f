//! Parse the SQS batch, hand each run message to the executor, report the failures.
//!
//! A message that is not a run message can never succeed: it is logged and acknowledged
//! (not reported), so it does not cycle through the queue. A run whose execution failed is
//! reported, so SQS delivers it again (and the queue's redrive policy bounds the attempts).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use scheduled_runs::ports::RunMessage;
use scheduled_runs::services::executor::ExecutorService;

pub async fn handle(
    executor: &ExecutorService,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let mut failures = Vec::new();
    for record in event.payload.records {
        let id = record.message_id.clone().unwrap_or_default();
        let message: RunMessage = match record.body.as_deref().map(serde_json::from_str) {
            Some(Ok(m)) => m,
            _ => {
                tracing::error!(message_id = %id, "a message that is not a run message was dropped");
                continue;
            }
        };
        if let Err(e) = executor.execute(&message).await {
            tracing::warn!(run_id = %message.run_id, schedule_id = ?message.schedule_id, error = %e,
                "execution failed; the message will be delivered again");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_batch_carries_run_messages() {
        let event: SqsEvent =
            match serde_json::from_str(include_str!("../../../events/execute.json")) {
                Ok(e) => e,
                Err(e) => panic!("sample event does not parse: {e}"),
            };
        let first = event
            .records
            .first()
            .and_then(|r| r.body.as_deref())
            .unwrap_or_default();
        let message: Result<RunMessage, _> = serde_json::from_str(first);
        assert!(message.is_ok(), "{first}");
    }
}
