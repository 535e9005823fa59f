//! SQS as the `RunQueue` between dispatch and execution (SPEC §8): the body is the JSON of
//! [`RunMessage`]; a few String message attributes repeat its ids so a message can be traced
//! (and inspected in the DLQ) without parsing the body. The execute function's event source
//! mapping does the receiving, so this adapter only sends.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;

use super::scheduler::{build_error, port_error};
use crate::ports::{PortError, RunMessage, RunQueue};

/// The SDK this adapter is built on, for callers that construct its client.
pub use aws_sdk_sqs as sdk;

/// The run queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsRunQueue {
    client: Client,
    queue_url: String,
}

impl SqsRunQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> SqsRunQueue {
        SqsRunQueue {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

/// The tracing attributes of a message: name and String value, never an empty value (SQS
/// refuses those), `scheduleId` only for scheduled runs.
pub fn message_attributes(message: &RunMessage) -> Vec<(&'static str, String)> {
    [
        ("workspaceId", Some(&message.workspace_id)),
        ("projectId", Some(&message.project_id)),
        ("runId", Some(&message.run_id)),
        ("scheduleId", message.schedule_id.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        value
            .filter(|v| !v.is_empty())
            .map(|v| (name, v.to_owned()))
    })
    .collect()
}

#[async_trait]
impl RunQueue for SqsRunQueue {
    async fn enqueue(&self, message: RunMessage) -> Result<(), PortError> {
        let body = serde_json::to_string(&message)
            .map_err(|e| PortError::fatal(format!("run message does not serialise: {e}")))?;
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body);
        for (name, value) in message_attributes(&message) {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(build_error)?;
            request = request.message_attributes(name, value);
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match port_error("SendMessage", e) {
                // Not a missing item but a misconfigured deployment: never worth a retry.
                PortError::NotFound => PortError::fatal(format!(
                    "SendMessage: queue {} does not exist",
                    self.queue_url
                )),
                other => other,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(schedule_id: Option<&str>) -> RunMessage {
        RunMessage {
            workspace_id: "ws-1".into(),
            project_id: "proj-1".into(),
            run_id: "run-1".into(),
            schedule_id: schedule_id.map(str::to_owned),
            project_version: None,
            connections: Vec::new(),
        }
    }

    #[test]
    fn attributes_repeat_the_ids() {
        assert_eq!(
            message_attributes(&message(Some("sched-1"))),
            vec![
                ("workspaceId", "ws-1".to_owned()),
                ("projectId", "proj-1".to_owned()),
                ("runId", "run-1".to_owned()),
                ("scheduleId", "sched-1".to_owned()),
            ]
        );
    }

    #[test]
    fn absent_or_empty_values_are_left_out() {
        let names: Vec<_> = message_attributes(&message(None))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["workspaceId", "projectId", "runId"]);
        assert_eq!(message_attributes(&message(Some(""))).len(), 3);
    }

    #[test]
    fn the_body_is_the_camel_case_json_of_the_message() {
        let body = serde_json::to_value(message(Some("sched-1"))).expect("serialises");
        assert_eq!(
            body,
            serde_json::json!({
                "workspaceId": "ws-1", "projectId": "proj-1",
                "runId": "run-1", "scheduleId": "sched-1",
            })
        );
    }
}
