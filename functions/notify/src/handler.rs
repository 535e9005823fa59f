//! Parse the SNS event, hand each run event to the notify service, decide whether the
//! invocation failed.
//!
//! SNS invokes the function asynchronously with one record per invocation. Returning an
//! error makes Lambda invoke it again with the same event (twice: one minute, then two
//! minutes later; after that the event goes to the stack's `AsyncFailureQueue`). Each
//! delivery is claimed per (run, channel, recipient) before anything is sent, so a retry
//! sends nothing that was delivered or given up already. The invocation therefore fails
//! only when handling the event again can change the outcome:
//!
//! * the store was unavailable (throttling, timeouts, 5xx): the retry may find it back;
//! * a delivery is held by another claim (`inProgress`): its holder may be an invocation
//!   that died mid-delivery (timed out). Its lease (`aws_deployment::NOTIFY_LEASE`) is
//!   longer than the function's timeout and shorter than Lambda's wait before a retry
//!   after the timeout, so the retry takes the delivery over — or finds it finished by a
//!   live holder and does nothing.
//!
//! Everything else succeeds, because repeating it cannot help: a message that is not a run
//! event (logged with its SNS message id and skipped), a run that no longer exists, a store
//! error that is not transient (a corrupt record: logged with the run). Channel failures
//! are not errors of the invocation at all: the notify service retries each delivery with
//! backoff and records the outcome (`FAILED` with the reason) on the run.

use std::future::Future;
use std::sync::Arc;

use aws_lambda_events::event::sns::SnsEvent;
use lambda_runtime::LambdaEvent;
use scheduled_runs::ports::{PortError, RunEvent, RunEventOutbox};
use scheduled_runs::services::ServiceError;
use scheduled_runs::services::notify::{NotifyReport, NotifyService};
use serde::Serialize;

/// What the handler needs from the notify service; tests substitute scripted answers.
pub trait RunEventHandler: Sync {
    fn handle(
        &self,
        event: &RunEvent,
    ) -> impl Future<Output = Result<NotifyReport, ServiceError>> + Send;
}

impl RunEventHandler for NotifyService {
    fn handle(
        &self,
        event: &RunEvent,
    ) -> impl Future<Output = Result<NotifyReport, ServiceError>> + Send {
        NotifyService::handle(self, event)
    }
}

/// The notify service acknowledging each run event it handled: the run's pending event
/// (the outbox flag set by the write that ended the run) is cleared only once its consumer
/// is done with it, as the embedded event bus does. An event lost anywhere between the end
/// of the run and here is therefore published again by the sweeper; handling it twice
/// sends nothing twice (deliveries are claimed).
pub struct Acknowledging<N> {
    pub notify: N,
    pub outbox: Arc<dyn RunEventOutbox>,
}

impl<N: RunEventHandler + Send> RunEventHandler for Acknowledging<N> {
    async fn handle(&self, event: &RunEvent) -> Result<NotifyReport, ServiceError> {
        let report = self.notify.handle(event).await?;
        if let Err(e) = self
            .outbox
            .mark_event_published(&event.workspace_id, &event.run_id)
            .await
        {
            tracing::warn!(run_id = %event.run_id, schedule_id = ?event.schedule_id,
                error = %e, "run event handled but still marked pending; it will come again");
        }
        Ok(report)
    }
}

/// The invocation's answer (Lambda discards it for SNS; it shows in logs and tests).
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub records: u32,
    /// Messages that are not run events, skipped.
    pub unreadable: u32,
    /// Run events whose handling failed for good (logged).
    pub not_handled: u32,
    pub delivered: u32,
    pub failed: u32,
    pub skipped: u32,
    pub already_done: u32,
    pub in_progress: u32,
}

impl Summary {
    fn add(&mut self, report: &NotifyReport) {
        self.delivered += report.delivered;
        self.failed += report.failed;
        self.skipped += report.skipped;
        self.already_done += report.already_done;
        self.in_progress += report.in_progress;
    }
}

pub async fn handle<N: RunEventHandler>(
    notify: &N,
    event: LambdaEvent<SnsEvent>,
) -> Result<Summary, lambda_runtime::Error> {
    let mut summary = Summary::default();
    // Why the event should be handled again, if it should.
    let mut retry: Option<String> = None;
    for record in &event.payload.records {
        summary.records += 1;
        let sns = &record.sns;
        let run_event: RunEvent = match serde_json::from_str(&sns.message) {
            Ok(run_event) => run_event,
            Err(e) => {
                // The error names a position or a field, never the message itself.
                tracing::error!(message_id = %sns.message_id, topic_arn = %sns.topic_arn,
                    error = %e, "a message that is not a run event was skipped");
                summary.unreadable += 1;
                continue;
            }
        };
        match notify.handle(&run_event).await {
            Ok(report) => {
                summary.add(&report);
                if report.in_progress > 0 {
                    tracing::warn!(run_id = %run_event.run_id, message_id = %sns.message_id,
                        in_progress = report.in_progress,
                        "deliveries held by another claim; the event will be handled again");
                    retry.get_or_insert_with(|| {
                        format!(
                            "run {}: {} deliveries held by another claim",
                            run_event.run_id, report.in_progress
                        )
                    });
                }
            }
            Err(ServiceError::Backend(PortError::Unavailable {
                retryable: true,
                message,
            })) => {
                tracing::warn!(run_id = %run_event.run_id, message_id = %sns.message_id,
                    error = %message, "the store is unavailable; the event will be handled again");
                retry.get_or_insert_with(|| {
                    format!("run {}: the store is unavailable", run_event.run_id)
                });
            }
            Err(e) => {
                tracing::error!(run_id = %run_event.run_id, schedule_id = ?run_event.schedule_id,
                    message_id = %sns.message_id, error = %e,
                    "the run event could not be handled and retrying cannot help");
                summary.not_handled += 1;
            }
        }
    }
    match retry {
        // Any record that needs another go fails the invocation; the records handled
        // already are harmless to handle again (their deliveries are done).
        Some(why) => Err(why.into()),
        None => Ok(summary),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use lambda_runtime::Context;
    use serde_json::{Value, json};

    use super::*;

    /// Answers each run event with the next scripted result and records what it got.
    struct Scripted {
        answers: Mutex<VecDeque<Result<NotifyReport, ServiceError>>>,
        seen: Mutex<Vec<RunEvent>>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<NotifyReport, ServiceError>>) -> Scripted {
            Scripted {
                answers: Mutex::new(answers.into()),
                seen: Mutex::new(Vec::new()),
            }
        }

        fn seen(&self) -> Vec<RunEvent> {
            self.seen.lock().map(|s| s.clone()).unwrap_or_default()
        }
    }

    impl RunEventHandler for Scripted {
        async fn handle(&self, event: &RunEvent) -> Result<NotifyReport, ServiceError> {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(event.clone());
            }
            self.answers
                .lock()
                .ok()
                .and_then(|mut a| a.pop_front())
                .unwrap_or_else(|| Ok(NotifyReport::default()))
        }
    }

    fn sample() -> Value {
        match serde_json::from_str(include_str!("../../../events/notify.json")) {
            Ok(v) => v,
            Err(e) => panic!("the sample event is not JSON: {e}"),
        }
    }

    /// The sample event with its records' messages replaced.
    fn event(messages: &[&str]) -> LambdaEvent<SnsEvent> {
        let mut value = sample();
        let template = value["Records"][0].clone();
        value["Records"] = Value::Array(
            messages
                .iter()
                .map(|m| {
                    let mut record = template.clone();
                    record["Sns"]["Message"] = json!(m);
                    record
                })
                .collect(),
        );
        match serde_json::from_value(value) {
            Ok(payload) => LambdaEvent::new(payload, Context::default()),
            Err(e) => panic!("not an SNS event: {e}"),
        }
    }

    fn report(delivered: u32, in_progress: u32) -> NotifyReport {
        NotifyReport {
            delivered,
            in_progress,
            ..NotifyReport::default()
        }
    }

    #[tokio::test]
    async fn the_sample_is_a_run_event_with_the_published_attributes() {
        let value = sample();
        let sns = &value["Records"][0]["Sns"];
        let message = sns["Message"].as_str().unwrap_or_default();
        let run_event: RunEvent = match serde_json::from_str(message) {
            Ok(e) => e,
            Err(e) => panic!("the sample's message is not a run event: {e}"),
        };
        // Exactly what `SnsEventPublisher` publishes: the event's JSON and its attributes.
        assert_eq!(
            serde_json::to_string(&run_event).ok().as_deref(),
            Some(message)
        );
        let attributes = scheduled_runs::adapters::aws::sns::event_attributes(&run_event);
        for (name, value) in &attributes {
            assert_eq!(sns["MessageAttributes"][name]["Type"], "String", "{name}");
            assert_eq!(
                sns["MessageAttributes"][name]["Value"],
                value.as_str(),
                "{name}"
            );
        }
        assert_eq!(
            sns["MessageAttributes"].as_object().map(|m| m.len()),
            Some(attributes.len())
        );

        let notify = Scripted::new(vec![Ok(report(2, 0))]);
        let summary = handle(&notify, event(&[message])).await;
        assert_eq!(
            summary.ok(),
            Some(Summary {
                records: 1,
                delivered: 2,
                ..Summary::default()
            })
        );
        assert_eq!(notify.seen(), vec![run_event]);
    }

    #[tokio::test]
    async fn unreadable_messages_are_skipped_and_the_rest_handled() {
        let value = sample();
        let good = value["Records"][0]["Sns"]["Message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let notify = Scripted::new(vec![Ok(report(1, 0))]);
        let summary = handle(
            &notify,
            event(&["not json", r#"{"runId": "r"}"#, good.as_str()]),
        )
        .await;
        assert_eq!(
            summary.ok(),
            Some(Summary {
                records: 3,
                unreadable: 2,
                delivered: 1,
                ..Summary::default()
            })
        );
        assert_eq!(notify.seen().len(), 1);
    }

    #[tokio::test]
    async fn only_failures_a_retry_can_help_fail_the_invocation() {
        let value = sample();
        let message = value["Records"][0]["Sns"]["Message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let once = |answer| {
            let message = message.clone();
            async move { handle(&Scripted::new(vec![answer]), event(&[message.as_str()])).await }
        };
        // The store is briefly unavailable: Lambda should invoke again.
        assert!(
            once(Err(ServiceError::Backend(PortError::unavailable(
                "dynamodb GetItem: ThrottlingException (HTTP 400)"
            ))))
            .await
            .is_err()
        );
        // A delivery held by another claim (maybe an invocation that died): again.
        assert!(once(Ok(report(1, 1))).await.is_err());
        // A corrupt record will stay corrupt: logged, not retried.
        let fatal = once(Err(ServiceError::Backend(PortError::fatal(
            "dynamodb: corrupt run item",
        ))))
        .await;
        assert_eq!(
            fatal.ok(),
            Some(Summary {
                records: 1,
                not_handled: 1,
                ..Summary::default()
            })
        );
        // Failed deliveries are records on the run, not failures of the invocation.
        let failed = once(Ok(NotifyReport {
            failed: 2,
            ..NotifyReport::default()
        }))
        .await;
        assert_eq!(failed.ok().map(|s| s.failed), Some(2));
    }
}
