//! Dispatch: turns one fire of a schedule into exactly one run. The trigger backends
//! deliver at least once, so the run's id is derived from `(scheduleId, scheduledFor)` and
//! created with a conditional write; every duplicate delivery finds the same run. The same
//! service serves the local timer and the dispatch Lambda.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::domain::model::{
    Caller, OverlapPolicy, ProjectRole, Run, RunStatus, RunTrigger, Schedule, SkipReason,
    StateEvent, WorkspaceRole,
};
use crate::domain::policy::{self, RunAuthority};
use crate::ports::{
    Clock, DispatchPath, EventPublisher, FireContext, FireRequest, PortError, ProjectStore,
    RunCreated, RunMessage, RunQueue, RunStore, ScheduleStore,
};

use super::{ProjectAccess, ServiceError};

/// What a dispatch did.
#[derive(Clone, Debug, PartialEq)]
pub enum DispatchOutcome {
    /// A new run was created and queued for execution.
    Queued(Box<Run>),
    /// A new run was recorded as skipped.
    Skipped(Box<Run>),
    /// The fire was seen before; the run it created is returned unchanged.
    Duplicate(Box<Run>),
    /// The schedule no longer exists (deleted after the trigger fired); nothing to do.
    ScheduleGone,
}

/// One fire of a schedule: which schedule (with what the trigger knows of it) and its
/// nominal fire time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledFire {
    pub request: FireRequest,
    pub scheduled_for: DateTime<Utc>,
}

pub struct DispatchService {
    /// The reads of a fire, batched where the store can.
    pub path: Arc<dyn DispatchPath>,
    pub projects: Arc<dyn ProjectStore>,
    pub schedules: Arc<dyn ScheduleStore>,
    pub runs: Arc<dyn RunStore>,
    pub queue: Arc<dyn RunQueue>,
    /// Skipped runs are finished runs: they are announced too.
    pub events: Arc<dyn EventPublisher>,
    pub clock: Arc<dyn Clock>,
    pub settings: DispatchSettings,
}

#[derive(Clone, Copy, Debug)]
pub struct DispatchSettings {
    /// How long run records are kept.
    pub retention: Duration,
    /// A duplicate delivery that finds its run still `PENDING` this long after creation
    /// queues it again: the first delivery may have died between the write and the enqueue.
    /// The executor's conditional start makes the extra message harmless.
    pub requeue_after: Duration,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings {
            retention: Duration::days(90),
            requeue_after: Duration::seconds(60),
        }
    }
}

impl DispatchService {
    /// Handles one (possibly duplicated) fire of a schedule.
    pub async fn dispatch_scheduled(
        &self,
        workspace_id: &str,
        schedule_id: &str,
        scheduled_for: DateTime<Utc>,
    ) -> Result<DispatchOutcome, ServiceError> {
        let request = FireRequest {
            workspace_id: workspace_id.to_owned(),
            schedule_id: schedule_id.to_owned(),
            ..FireRequest::default()
        };
        self.dispatch_fire(&request, scheduled_for).await
    }

    /// Handles one (possibly duplicated) fire, with what the trigger knows of the
    /// schedule: a batch of one (`dispatch_fires`).
    pub async fn dispatch_fire(
        &self,
        request: &FireRequest,
        scheduled_for: DateTime<Utc>,
    ) -> Result<DispatchOutcome, ServiceError> {
        let fire = ScheduledFire {
            request: request.clone(),
            scheduled_for,
        };
        // One outcome per fire, by construction.
        self.dispatch_fires(std::slice::from_ref(&fire))
            .await
            .pop()
            .unwrap_or_else(|| Err(PortError::fatal("dispatch answered no outcome").into()))
    }

    /// Handles fires (the local timer hands over those due at one instant), each possibly
    /// duplicated, with the outcome each would have had dispatched one after another: one
    /// per fire, in order. The store reads every record the decisions need at once and
    /// creates the runs together; each decision is the same `decide` as for a single fire.
    /// A duplicate is found by the conditional create, which hands back the stored run.
    ///
    /// A schedule's fires are decided in rounds, one per round in the order given, so a
    /// later fire sees the run an earlier one created (overlap). Queueing and announcing
    /// happen after the runs were written, as for a single fire.
    pub async fn dispatch_fires(
        &self,
        fires: &[ScheduledFire],
    ) -> Vec<Result<DispatchOutcome, ServiceError>> {
        let mut outcomes = Vec::with_capacity(fires.len());
        for round in rounds(fires) {
            outcomes.extend(self.dispatch_round(&round).await);
        }
        outcomes.sort_by_key(|(position, _)| *position);
        outcomes.into_iter().map(|(_, outcome)| outcome).collect()
    }

    /// Dispatches fires of distinct schedules (with their positions in the batch).
    async fn dispatch_round(
        &self,
        fires: &[(usize, &ScheduledFire)],
    ) -> Vec<(usize, Result<DispatchOutcome, ServiceError>)> {
        let failed = |e: &PortError| {
            fires
                .iter()
                .map(|(position, _)| (*position, Err(e.clone().into())))
                .collect()
        };
        let now = self.clock.now();
        let requests: Vec<&FireRequest> = fires.iter().map(|(_, f)| &f.request).collect();
        let contexts = match self.path.load_fires(&requests, now).await {
            Ok(contexts) if contexts.len() == fires.len() => contexts,
            Ok(contexts) => {
                return failed(&PortError::fatal(format!(
                    "the store answered {} fire contexts for {} fires",
                    contexts.len(),
                    fires.len()
                )));
            }
            Err(e) => return failed(&e),
        };
        let mut outcomes = Vec::with_capacity(fires.len());
        // The runs to create, and what each needs once it is created.
        let mut runs = Vec::with_capacity(fires.len());
        let mut pending = Vec::with_capacity(fires.len());
        for (&(position, fire), context) in fires.iter().zip(contexts) {
            let scheduled_for = fire.scheduled_for;
            let Some(mut context) = context else {
                tracing::info!(schedule_id = %fire.request.schedule_id, %scheduled_for,
                    "fire of a deleted schedule ignored");
                outcomes.push((position, Ok(DispatchOutcome::ScheduleGone)));
                continue;
            };
            pending.push((position, context.published_connections.take()));
            runs.push(self.scheduled_run(context, scheduled_for, now));
        }
        let created = self.runs.create_runs_if_absent(&runs).await;
        if created.len() != runs.len() {
            let e = PortError::fatal(format!(
                "the store answered {} creations for {} runs",
                created.len(),
                runs.len()
            ));
            outcomes.extend(
                pending
                    .into_iter()
                    .map(|(position, _)| (position, Err(e.clone().into()))),
            );
            return outcomes;
        }
        for ((run, (position, connections)), created) in runs.into_iter().zip(pending).zip(created)
        {
            let outcome = match created {
                Ok(created) => self.created(run, created, connections).await,
                Err(e) => Err(e.into()),
            };
            outcomes.push((position, outcome));
        }
        outcomes
    }

    /// The run a fire makes: `PENDING` with the version published now and the creator's
    /// current authority, or `SKIPPED` with the reason `decide` gives. Its trace id is its
    /// run id's hex: as unique as the run, and derived rather than drawn, since drawing
    /// one meant a system call for every run of a burst (BENCHMARKS.md §5).
    fn scheduled_run(
        &self,
        fire: FireContext,
        scheduled_for: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Run {
        let decision = decide(&fire);
        let id = Run::scheduled_run_uuid(&fire.schedule.schedule_id, scheduled_for);
        let mut text = uuid::Uuid::encode_buffer();
        let ids = (
            id.hyphenated().encode_lower(&mut text).to_owned(),
            id.simple().encode_lower(&mut text).to_owned(),
        );
        let mut run = self.new_run(fire.schedule, ids, RunTrigger::Scheduled, now);
        run.scheduled_for = Some(scheduled_for);
        match decision {
            Decision::Skip(reason) => {
                run.status = RunStatus::Skipped;
                run.skip_reason = Some(reason);
                run.end_time = Some(now);
                run.event_pending = true;
                run.state_events
                    .push(StateEvent::new("STATUS", RunStatus::Skipped.as_str(), now));
                run.state_events
                    .push(StateEvent::new("SKIP_REASON", reason.as_str(), now));
            }
            Decision::Run { version, authority } => {
                run.project_version = Some(version);
                if let RunAuthority::Run {
                    update_published_results,
                    use_cached_sql_results,
                } = authority
                {
                    run.update_published_results = update_published_results;
                    run.use_cached_sql_results = use_cached_sql_results;
                }
            }
        }
        run
    }

    /// What follows the conditional create of a scheduled run: a new run is announced
    /// (skipped) or queued; an existing one is a duplicate delivery.
    async fn created(
        &self,
        run: Run,
        created: RunCreated,
        published_connections: Option<Vec<String>>,
    ) -> Result<DispatchOutcome, ServiceError> {
        let schedule_id = run.schedule_id.as_deref().unwrap_or_default();
        match created {
            RunCreated::Existing(existing) => self.duplicate(*existing).await,
            RunCreated::Created if run.status == RunStatus::Skipped => {
                tracing::info!(run_id = %run.run_id, schedule_id, reason = ?run.skip_reason, "scheduled run skipped");
                super::events::announce(self.events.as_ref(), &run).await;
                Ok(DispatchOutcome::Skipped(Box::new(run)))
            }
            RunCreated::Created => {
                let mut message = RunMessage::for_run(&run);
                message.connections = published_connections.unwrap_or_default();
                self.queue.enqueue(message).await?;
                tracing::info!(run_id = %run.run_id, schedule_id, scheduled_for = ?run.scheduled_for, "scheduled run queued");
                Ok(DispatchOutcome::Queued(Box::new(run)))
            }
        }
    }

    /// Runs a schedule now, on request ("run now"): a `MANUAL` run with its own id.
    pub async fn trigger_now(
        &self,
        caller: &Caller,
        project_id: &str,
        schedule_id: &str,
    ) -> Result<Run, ServiceError> {
        let access = ProjectAccess::load(
            self.projects.as_ref(),
            caller,
            project_id,
            ProjectRole::CanView,
        )
        .await?;
        let schedule = self
            .schedules
            .get_schedule(&caller.workspace_id, schedule_id)
            .await?
            .filter(|s| s.project_id == project_id)
            .ok_or(ServiceError::NotFound {
                code: "SCHEDULE_NOT_FOUND",
                what: "schedule",
            })?;
        policy::can_trigger_schedule(access.role, &caller.user_id, &schedule)?;
        policy::check_project_schedulable(
            policy::ProjectState {
                archived: access.project.archived,
                published: access.project.published_version.is_some(),
            },
            true,
        )?;
        let Some(version) = access.project.published_version else {
            return Err(policy::Denied::ProjectNotPublished.into());
        };
        let now = self.clock.now();
        let authority = policy::run_authority(Some(access.role), &schedule);
        let ids = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().simple().to_string(),
        );
        let mut run = self.new_run(schedule, ids, RunTrigger::Manual, now);
        run.created_by = caller.user_id.clone();
        run.project_version = Some(version);
        if let RunAuthority::Run {
            update_published_results,
            use_cached_sql_results,
        } = authority
        {
            run.update_published_results = update_published_results;
            run.use_cached_sql_results = use_cached_sql_results;
        }
        self.runs.create_run_if_absent(&run).await?;
        self.enqueue(&run).await?;
        tracing::info!(run_id = %run.run_id, schedule_id, "manual run queued");
        Ok(run)
    }

    async fn duplicate(&self, existing: Run) -> Result<DispatchOutcome, ServiceError> {
        if existing.status.is_terminal() && existing.event_pending {
            // The first delivery may have died before announcing the run it skipped.
            super::events::announce(self.events.as_ref(), &existing).await;
        }
        let stale = self.clock.now() - existing.created_at >= self.settings.requeue_after;
        if existing.status == RunStatus::Pending && stale {
            tracing::warn!(run_id = %existing.run_id, schedule_id = ?existing.schedule_id,
                "duplicate fire found its run still pending; queueing it again");
            self.enqueue(&existing).await?;
        }
        Ok(DispatchOutcome::Duplicate(Box::new(existing)))
    }

    async fn enqueue(&self, run: &Run) -> Result<(), ServiceError> {
        self.queue.enqueue(RunMessage::for_run(run)).await?;
        Ok(())
    }

    /// A new `PENDING` run of `schedule`, which it takes its ids and notifications from;
    /// `(run_id, trace_id)` are the caller's.
    fn new_run(
        &self,
        schedule: Schedule,
        (run_id, trace_id): (String, String),
        trigger: RunTrigger,
        now: DateTime<Utc>,
    ) -> Run {
        Run {
            run_id,
            project_id: schedule.project_id,
            workspace_id: schedule.workspace_id,
            schedule_id: Some(schedule.schedule_id),
            run_trigger: trigger,
            status: RunStatus::Pending,
            scheduled_for: None,
            project_version: None,
            created_by: schedule.created_by,
            created_at: now,
            start_time: None,
            end_time: None,
            skip_reason: None,
            update_published_results: false,
            use_cached_sql_results: true,
            input_params: serde_json::Map::new(),
            trace_id,
            state_events: vec![StateEvent::new("STATUS", RunStatus::Pending.as_str(), now)],
            expires_at: now + self.settings.retention,
            attempt: 0,
            lease_until: None,
            cells: Vec::new(),
            error: None,
            // The schedule's notifications as they are when the run is created.
            notification_settings: schedule.notifications,
            event_pending: false,
            notifications: Vec::new(),
        }
    }
}

/// Applies SPEC §3 at fire time: archived project, disabled schedule, the creator's
/// current role, the version published now, and the overlap policy.
fn decide(fire: &FireContext) -> Decision {
    let schedule = &fire.schedule;
    let Some(project) = &fire.project else {
        return Decision::Skip(SkipReason::ProjectArchived);
    };
    if project.archived {
        return Decision::Skip(SkipReason::ProjectArchived);
    }
    if !schedule.enabled {
        return Decision::Skip(SkipReason::ScheduleDisabled);
    }
    let Some(version) = project.published_version else {
        return Decision::Skip(SkipReason::NotPublished);
    };
    let is_admin = fire
        .creator
        .as_ref()
        .is_some_and(|u| u.workspace_role == WorkspaceRole::Admin);
    let creator_role = if is_admin {
        Some(ProjectRole::FullAccess)
    } else {
        fire.creator_role
    };
    let authority = policy::run_authority(creator_role, schedule);
    if authority == RunAuthority::NoAccess {
        return Decision::Skip(SkipReason::CreatorNoAccess);
    }
    if schedule.overlap_policy == OverlapPolicy::Skip && fire.previous_run_active {
        return Decision::Skip(SkipReason::Overlap);
    }
    Decision::Run { version, authority }
}

/// Splits a batch into rounds in which each schedule appears once, keeping the order:
/// a schedule's second fire in the batch goes in the second round, and so on.
fn rounds(fires: &[ScheduledFire]) -> Vec<Vec<(usize, &ScheduledFire)>> {
    let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(fires.len());
    let mut rounds: Vec<Vec<(usize, &ScheduledFire)>> = Vec::new();
    for (position, fire) in fires.iter().enumerate() {
        let request = &fire.request;
        let round = seen
            .entry((&request.workspace_id, &request.schedule_id))
            .or_insert(0);
        if *round == rounds.len() {
            rounds.push(Vec::new());
        }
        rounds[*round].push((position, fire));
        *round += 1;
    }
    rounds
}

enum Decision {
    Skip(SkipReason),
    Run {
        version: u32,
        authority: RunAuthority,
    },
}
