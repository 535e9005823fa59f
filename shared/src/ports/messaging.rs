//! The asynchronous edges of the pipeline: the trigger backend that fires schedules
//! (EventBridge Scheduler in AWS, the in-process timer locally) and the queue between
//! dispatch and execution (SQS in AWS, an in-process channel locally).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use super::{Page, PageRequest, PortError};
use crate::domain::model::{Run, RunStatus, RunTrigger, Schedule};

#[async_trait]
pub trait TriggerBackend: Send + Sync {
    /// Creates or replaces the trigger of `schedule`; `active` is false when the schedule is
    /// disabled or its project archived (the trigger then exists but does not fire).
    async fn put_trigger(&self, schedule: &Schedule, active: bool) -> Result<(), PortError>;
    /// Removes the trigger; removing a missing trigger succeeds.
    async fn delete_trigger(&self, schedule: &Schedule) -> Result<(), PortError>;
}

/// A trigger backend that can also list its triggers, for `reconcile` alone. The services
/// that keep triggers in step with schedules never list them, and holding the narrower
/// port keeps the listing (and the SDK operations behind it) out of the functions that
/// only run those services: a trait object carries every method of its trait.
#[async_trait]
pub trait TriggerListing: TriggerBackend {
    /// Every trigger the backend holds, firing or not, in a stable order (the operator's
    /// `reconcile` compares them with the store). `InvalidCursor` for a cursor it did not
    /// issue; pages may hold fewer than `limit` items before the last one.
    async fn list_triggers(&self, page: &PageRequest) -> Result<Page<TriggerState>, PortError>;
}

/// One trigger as the backend holds it, in the terms `reconcile` compares with the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriggerState {
    pub workspace_id: String,
    pub schedule_id: String,
    /// Whether the trigger fires; a disabled trigger (schedule disabled or project
    /// archived) still exists and is listed.
    pub active: bool,
    /// The EventBridge Scheduler expression it fires on, e.g. `cron(30 8 ? * MON-FRI *)`
    /// (`FireSpec::eventbridge_expression`, also for the local timer).
    pub expression: String,
    /// The IANA timezone the expression is evaluated in.
    pub timezone: String,
}

/// What travels from dispatch to the executor: enough to find the run, nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunMessage {
    pub workspace_id: String,
    pub project_id: String,
    pub run_id: String,
    pub schedule_id: Option<String>,
    /// The version pinned at dispatch and the data connections it uses, when known: the
    /// executor reads them in the same request as the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<String>,
}

impl RunMessage {
    /// The message that queues `run`.
    pub fn for_run(run: &Run) -> RunMessage {
        RunMessage {
            workspace_id: run.workspace_id.clone(),
            project_id: run.project_id.clone(),
            run_id: run.run_id.clone(),
            schedule_id: run.schedule_id.clone(),
            project_version: run.project_version,
            connections: Vec::new(),
        }
    }
}

#[async_trait]
pub trait RunQueue: Send + Sync {
    /// Takes the message: a local queue hands it on as it is.
    async fn enqueue(&self, message: RunMessage) -> Result<(), PortError>;
}

/// What every finished run announces (SPEC §7): other subscribers filter on the message
/// attributes `workspaceId`, `projectId`, `scheduleId`, `status` and `trigger`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    pub workspace_id: String,
    pub project_id: String,
    pub schedule_id: Option<String>,
    pub run_id: String,
    pub status: RunStatus,
    pub trigger: RunTrigger,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub project_version: Option<u32>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl RunEvent {
    pub fn of(run: &Run) -> RunEvent {
        RunEvent {
            workspace_id: run.workspace_id.clone(),
            project_id: run.project_id.clone(),
            schedule_id: run.schedule_id.clone(),
            run_id: run.run_id.clone(),
            status: run.status,
            trigger: run.run_trigger,
            scheduled_for: run.scheduled_for,
            project_version: run.project_version,
            ended_at: run.end_time,
        }
    }
}

#[async_trait]
pub trait EventPublisher: Send + Sync {
    async fn publish(&self, event: &RunEvent) -> Result<(), PortError>;
}
