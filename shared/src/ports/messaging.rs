//! The asynchronous edges of the pipeline: the trigger backend that fires schedules
//! (EventBridge Scheduler in AWS, the in-process timer locally) and the queue between
//! dispatch and execution (SQS in AWS, an in-process channel locally).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::PortError;
use crate::domain::model::Schedule;

#[async_trait]
pub trait TriggerBackend: Send + Sync {
    /// Creates or replaces the trigger of `schedule`; `active` is false when the schedule is
    /// disabled or its project archived (the trigger then exists but does not fire).
    async fn put_trigger(&self, schedule: &Schedule, active: bool) -> Result<(), PortError>;
    /// Removes the trigger; removing a missing trigger succeeds.
    async fn delete_trigger(&self, schedule: &Schedule) -> Result<(), PortError>;
}

/// What travels from dispatch to the executor: enough to find the run, nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunMessage {
    pub workspace_id: String,
    pub project_id: String,
    pub run_id: String,
    pub schedule_id: Option<String>,
}

#[async_trait]
pub trait RunQueue: Send + Sync {
    async fn enqueue(&self, message: &RunMessage) -> Result<(), PortError>;
}
