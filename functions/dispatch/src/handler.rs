//! Parse the invocation, call the dispatch or maintenance service, map the result.
//!
//! EventBridge Scheduler invokes asynchronously: returning an error makes Lambda retry the
//! invocation, which is right for a backend that is briefly unavailable and wrong for input
//! that can never succeed, so only retryable failures are returned as errors.

use lambda_runtime::LambdaEvent;
use scheduled_runs::adapters::aws::scheduler::SchedulerInput;
use scheduled_runs::ports::PortError;
use scheduled_runs::services::ServiceError;
use scheduled_runs::services::dispatch::{DispatchOutcome, DispatchService};
use scheduled_runs::services::events::EventOutbox;
use scheduled_runs::services::maintenance::MaintenanceService;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What the function is invoked with.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Invocation {
    Fire(SchedulerInput),
    Task { task: Task },
}

#[derive(Debug, Deserialize, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Time out, retry and re-queue stuck runs; publish run events still pending.
    Sweep,
    /// Retention and auto-archive.
    Daily,
}

pub struct Handler {
    pub dispatch: DispatchService,
    pub maintenance: MaintenanceService,
    pub outbox: EventOutbox,
}

/// Retryable failures go back to Lambda (which retries); the rest are reported and dropped.
fn outcome(result: Result<Value, ServiceError>) -> Result<Value, lambda_runtime::Error> {
    match result {
        Ok(v) => Ok(v),
        Err(ServiceError::Backend(PortError::Unavailable {
            retryable: true,
            message,
        })) => Err(format!("backend unavailable, retrying: {message}").into()),
        Err(e) => {
            tracing::error!(error = %e, "invocation failed and will not be retried");
            Ok(json!({ "error": e.to_string() }))
        }
    }
}

impl Handler {
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
        let invocation: Invocation = match serde_json::from_value(event.payload) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(error = %e, "unrecognised invocation dropped");
                return Ok(json!({ "error": "unrecognised invocation" }));
            }
        };
        match invocation {
            Invocation::Fire(input) => {
                tracing::info!(schedule_id = %input.schedule_id, scheduled_for = %input.scheduled_time,
                    execution_id = %input.execution_id, "fire");
                outcome(
                    self.dispatch
                        .dispatch_fire(&input.fire_request(), input.scheduled_time)
                        .await
                        .map(|o| describe(&o)),
                )
            }
            Invocation::Task { task: Task::Sweep } => {
                // Both halves run whatever the other did: a sweep that failed must not hold
                // up the events of runs that ended, nor the other way round.
                let swept = self.maintenance.sweep().await;
                let republished = self.outbox.republish_pending().await;
                outcome(swept.and_then(|r| {
                    republished.map(|n| {
                        json!({
                            "timedOut": r.timed_out, "requeued": r.requeued, "givenUp": r.given_up,
                            "eventsRepublished": n
                        })
                    })
                }))
            }
            Invocation::Task { task: Task::Daily } => {
                let purged = self.maintenance.purge_expired().await;
                let archived = self.maintenance.auto_archive().await;
                outcome(
                    purged.and_then(|p| archived.map(|a| json!({ "purged": p, "archived": a }))),
                )
            }
        }
    }
}

fn describe(outcome: &DispatchOutcome) -> Value {
    match outcome {
        DispatchOutcome::Queued(run) => json!({ "outcome": "QUEUED", "runId": run.run_id }),
        DispatchOutcome::Skipped(run) => json!({
            "outcome": "SKIPPED", "runId": run.run_id, "reason": run.skip_reason.map(|r| r.as_str())
        }),
        DispatchOutcome::Duplicate(run) => json!({ "outcome": "DUPLICATE", "runId": run.run_id }),
        DispatchOutcome::ScheduleGone => json!({ "outcome": "SCHEDULE_GONE" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_fire_parses_as_a_fire() {
        let invocation: Result<Invocation, _> =
            serde_json::from_str(include_str!("../../../events/dispatch.json"));
        match invocation {
            Ok(Invocation::Fire(input)) => {
                assert_eq!(input.schedule_id, "6f1d5c2e-2b0a-4c3e-9d8f-1a2b3c4d5e6f");
                assert_eq!(
                    input.scheduled_time.to_rfc3339(),
                    "2026-11-26T08:00:00+00:00"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn maintenance_ticks_parse_as_tasks() {
        let sweep: Result<Invocation, _> = serde_json::from_str(r#"{"task":"sweep"}"#);
        assert!(matches!(sweep, Ok(Invocation::Task { task: Task::Sweep })));
        let daily: Result<Invocation, _> = serde_json::from_str(r#"{"task":"daily"}"#);
        assert!(matches!(daily, Ok(Invocation::Task { task: Task::Daily })));
        let junk: Result<Invocation, _> = serde_json::from_str(r#"{"task":"dance"}"#);
        assert!(junk.is_err());
    }

    #[test]
    fn only_retryable_failures_are_errors() {
        let retry = outcome(Err(ServiceError::Backend(PortError::unavailable(
            "throttled",
        ))));
        assert!(retry.is_err());
        let fatal = outcome(Err(ServiceError::Backend(PortError::fatal("bad item"))));
        assert!(fatal.is_ok());
    }
}
