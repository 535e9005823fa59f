//! Background upkeep, the same in both deployments (a timer locally, scheduled Lambda
//! invocations in AWS):
//! - the **sweeper** ends runs past their timeout, retries runs whose executor died (an
//!   expired lease), and queues again runs left `PENDING` (a lost queue message);
//! - **retention** deletes expired runs where the store has no expiry of its own;
//! - **auto-archive** archives projects without human activity for the workspace's period
//!   and stops their schedules.

use std::sync::Arc;

use chrono::Duration;

use crate::domain::model::{Run, RunError, RunStatus, StateEvent};
use crate::ports::{
    Clock, EventPublisher, PageRequest, PortError, ProjectStore, RunMessage, RunQueue, RunStore,
    ScheduleStore, TriggerBackend, WorkspaceStore,
};

use super::ServiceError;
use super::projects::sync_project_triggers;

#[derive(Clone, Copy, Debug)]
pub struct MaintenanceSettings {
    /// A run running longer than this is ended `ERRORED` (`TIMEOUT`).
    pub run_timeout: Duration,
    /// Starts allowed per run before a crashed run is given up (`EXECUTOR_CRASHED`).
    pub max_attempts: u32,
    /// A run still `PENDING` this long after creation is queued again.
    pub requeue_after: Duration,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        MaintenanceSettings {
            run_timeout: Duration::minutes(15),
            max_attempts: 3,
            requeue_after: Duration::minutes(2),
        }
    }
}

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub timed_out: u32,
    pub requeued: u32,
    pub given_up: u32,
}

pub struct MaintenanceService {
    pub workspaces: Arc<dyn WorkspaceStore>,
    pub projects: Arc<dyn ProjectStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    pub runs: Arc<dyn RunStore>,
    pub queue: Arc<dyn RunQueue>,
    pub triggers: Arc<dyn TriggerBackend>,
    pub events: Arc<dyn EventPublisher>,
    pub clock: Arc<dyn Clock>,
    pub settings: MaintenanceSettings,
}

impl MaintenanceService {
    pub async fn sweep(&self) -> Result<SweepReport, ServiceError> {
        let mut report = SweepReport::default();
        let mut page = PageRequest::first(200);
        loop {
            let batch = self.runs.list_active_runs(&page).await?;
            for run in batch.items {
                self.sweep_run(run, &mut report).await?;
            }
            match batch.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        if report != SweepReport::default() {
            tracing::info!(?report, "sweep");
        }
        Ok(report)
    }

    async fn sweep_run(&self, run: Run, report: &mut SweepReport) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let timed_out = run.status == RunStatus::Running
            && run
                .start_time
                .is_some_and(|s| now >= s + self.settings.run_timeout);
        let crashed = run.status == RunStatus::Running && run.lease_until.is_none_or(|l| l <= now);
        if timed_out || (crashed && run.attempt >= self.settings.max_attempts) {
            let (code, message) = if timed_out {
                (
                    "TIMEOUT",
                    format!(
                        "the run did not finish within {} minutes",
                        self.settings.run_timeout.num_minutes()
                    ),
                )
            } else {
                (
                    "EXECUTOR_CRASHED",
                    format!(
                        "the run was started {} times without finishing",
                        run.attempt
                    ),
                )
            };
            let guard = run.guard();
            let mut ended = run;
            ended.status = RunStatus::Errored;
            ended.end_time = Some(now);
            ended.lease_until = None;
            ended.event_pending = true;
            ended.error = Some(RunError {
                code: code.into(),
                message,
                cell_id: None,
            });
            ended
                .state_events
                .push(StateEvent::new("STATUS", "ERRORED", now));
            match self.runs.update_run(&ended, guard).await {
                Ok(()) => {
                    tracing::warn!(run_id = %ended.run_id, schedule_id = ?ended.schedule_id, code, "run ended by the sweeper");
                    super::events::announce(self.events.as_ref(), &ended).await;
                    if timed_out {
                        report.timed_out += 1;
                    } else {
                        report.given_up += 1;
                    }
                }
                Err(PortError::VersionMismatch) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
        let stale_pending =
            run.status == RunStatus::Pending && now - run.created_at >= self.settings.requeue_after;
        if crashed || stale_pending {
            self.queue.enqueue(RunMessage::for_run(&run)).await?;
            tracing::info!(run_id = %run.run_id, schedule_id = ?run.schedule_id, crashed, "run queued again by the sweeper");
            report.requeued += 1;
        }
        Ok(())
    }

    /// Deletes expired runs in batches; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, ServiceError> {
        let now = self.clock.now();
        let mut total = 0;
        loop {
            let n = self.runs.purge_expired_runs(now, 500).await?;
            total += n;
            if n < 500 {
                return Ok(total);
            }
        }
    }

    /// Applies every workspace's auto-archive rule; returns the archived project ids.
    pub async fn auto_archive(&self) -> Result<Vec<String>, ServiceError> {
        let now = self.clock.now();
        let mut archived = Vec::new();
        let mut page = PageRequest::first(100);
        loop {
            let batch = self.workspaces.list_workspaces(&page).await?;
            for workspace in batch.items {
                let Some(days) = workspace.auto_archive_after_days else {
                    continue;
                };
                let before = now - Duration::days(i64::from(days));
                let mut projects = PageRequest::first(100);
                loop {
                    let stale = self
                        .projects
                        .list_inactive_projects(&workspace.workspace_id, before, &projects)
                        .await?;
                    for project in stale.items {
                        let project = self
                            .projects
                            .set_archived(&workspace.workspace_id, &project.project_id, true, now)
                            .await?;
                        sync_project_triggers(
                            self.schedules.as_ref(),
                            self.triggers.as_ref(),
                            &project,
                        )
                        .await?;
                        tracing::info!(project_id = %project.project_id, workspace_id = %workspace.workspace_id,
                            after_days = days, "project auto-archived");
                        archived.push(project.project_id);
                    }
                    match stale.next_cursor {
                        Some(c) => projects.cursor = Some(c),
                        None => break,
                    }
                }
            }
            match batch.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return Ok(archived),
            }
        }
    }
}
