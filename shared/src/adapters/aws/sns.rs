//! SNS as the `EventPublisher` of run events (SPEC §7): the message is the JSON of
//! [`RunEvent`], and the String message attributes `workspaceId`, `projectId`,
//! `scheduleId`, `status` and `trigger` let subscribers filter without parsing it. SNS
//! refuses empty attribute values, so `scheduleId` is *absent* for runs that no schedule
//! started (API runs); filter those with `{"scheduleId": [{"exists": false}]}`.

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

use super::scheduler::{build_error, port_error};
use crate::ports::{EventPublisher, PortError, RunEvent};

/// The SDK this adapter is built on, for callers that construct its client.
pub use aws_sdk_sns as sdk;

/// The run-event publisher. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SnsEventPublisher {
    client: Client,
    topic_arn: String,
}

impl SnsEventPublisher {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> SnsEventPublisher {
        SnsEventPublisher {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }
}

/// The filterable attributes of an event: name and String value, empty values left out.
pub fn event_attributes(event: &RunEvent) -> Vec<(&'static str, String)> {
    [
        ("workspaceId", Some(event.workspace_id.clone())),
        ("projectId", Some(event.project_id.clone())),
        ("scheduleId", event.schedule_id.clone()),
        ("status", Some(event.status.as_str().to_owned())),
        ("trigger", Some(event.trigger.as_str().to_owned())),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.filter(|v| !v.is_empty()).map(|v| (name, v)))
    .collect()
}

#[async_trait]
impl EventPublisher for SnsEventPublisher {
    async fn publish(&self, event: &RunEvent) -> Result<(), PortError> {
        let message = serde_json::to_string(event)
            .map_err(|e| PortError::fatal(format!("run event does not serialise: {e}")))?;
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(message);
        for (name, value) in event_attributes(event) {
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
            .map_err(|e| match port_error("Publish", e) {
                // Not a missing item but a misconfigured deployment: never worth a retry.
                PortError::NotFound => {
                    PortError::fatal(format!("Publish: topic {} does not exist", self.topic_arn))
                }
                other => other,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{RunStatus, RunTrigger};
    use chrono::{TimeZone, Utc};

    fn event(schedule_id: Option<&str>) -> RunEvent {
        let at = Utc
            .with_ymd_and_hms(2026, 6, 1, 9, 0, 0)
            .single()
            .expect("valid");
        RunEvent {
            workspace_id: "ws-1".into(),
            project_id: "proj-1".into(),
            schedule_id: schedule_id.map(str::to_owned),
            run_id: "run-1".into(),
            status: RunStatus::Completed,
            trigger: if schedule_id.is_some() {
                RunTrigger::Scheduled
            } else {
                RunTrigger::Api
            },
            scheduled_for: schedule_id.map(|_| at),
            project_version: Some(3),
            ended_at: Some(at),
        }
    }

    #[test]
    fn attributes_of_a_scheduled_run() {
        assert_eq!(
            event_attributes(&event(Some("sched-1"))),
            vec![
                ("workspaceId", "ws-1".to_owned()),
                ("projectId", "proj-1".to_owned()),
                ("scheduleId", "sched-1".to_owned()),
                ("status", "COMPLETED".to_owned()),
                ("trigger", "SCHEDULED".to_owned()),
            ]
        );
    }

    #[test]
    fn an_api_run_has_no_schedule_attribute() {
        let attributes = event_attributes(&event(None));
        assert!(attributes.iter().all(|(name, _)| *name != "scheduleId"));
        assert!(attributes.contains(&("trigger", "API".to_owned())));
        assert_eq!(event_attributes(&event(Some(""))).len(), 4);
    }

    #[test]
    fn the_message_is_the_json_of_the_event() {
        let message = serde_json::to_value(event(Some("sched-1"))).expect("serialises");
        assert_eq!(message["runId"], "run-1");
        assert_eq!(message["status"], "COMPLETED");
        assert_eq!(message["trigger"], "SCHEDULED");
        assert_eq!(message["scheduledFor"], "2026-06-01T09:00:00Z");
        let back: RunEvent = serde_json::from_value(message).expect("round trip");
        assert_eq!(back, event(Some("sched-1")));
    }
}
