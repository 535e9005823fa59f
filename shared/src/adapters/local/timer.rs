//! The in-process scheduler of the embedded deployment, standing in for EventBridge
//! Scheduler: it is the local `TriggerBackend`, keeps every active schedule's next fire time
//! in a heap, and hands each due fire to the dispatch service with the same semantics as
//! `nextRuns` (the domain's `FireSpec::next_after`).
//!
//! Fires are sequential per schedule: the next fire time is computed only once the current
//! one was dispatched, and a failed dispatch is retried with backoff instead of being
//! dropped. On start it resumes from the last fire recorded in the store, so a restart
//! neither fires anything twice (dispatch is idempotent anyway) nor silently loses a fire
//! that fell due while the process was down (within the catch-up window).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::{Notify, Semaphore};

use crate::domain::cadence::parse_timezone;
use crate::domain::fire_times::FireSpec;
use crate::domain::model::Schedule;
use crate::ports::{
    Clock, FireRequest, Page, PageRequest, PortError, RunStore, ScheduleStore, TriggerBackend,
    TriggerState,
};
use crate::services::ServiceError;
use crate::services::dispatch::{DispatchOutcome, DispatchService, ScheduledFire};

#[derive(Clone, Copy, Debug)]
pub struct TimerSettings {
    /// Fires missed while the process was down are still dispatched if at most this old.
    pub catch_up: Duration,
    /// Dispatches running at once.
    pub concurrency: usize,
    /// First retry delay of a failed dispatch; doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for TimerSettings {
    fn default() -> Self {
        TimerSettings {
            catch_up: Duration::hours(1),
            concurrency: 64,
            backoff: Duration::seconds(1),
            max_backoff: Duration::minutes(1),
        }
    }
}

struct Entry {
    workspace_id: String,
    spec: FireSpec,
    tz: chrono_tz::Tz,
    /// The next fire time not yet dispatched.
    next: DateTime<Utc>,
    /// Bumped whenever the trigger is replaced, so stale heap items and stale dispatch
    /// completions are ignored.
    generation: u64,
    in_flight: bool,
    failures: u32,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// (wake-up time, generation, schedule id), earliest first.
    heap: BinaryHeap<Reverse<(DateTime<Utc>, u64, String)>>,
    generation: u64,
    /// Every trigger as last put, firing or not, by schedule id (what `list_triggers`
    /// reports; `entries` holds only those that still have a fire ahead).
    triggers: BTreeMap<String, TriggerState>,
}

struct Due {
    schedule_id: String,
    workspace_id: String,
    fire_at: DateTime<Utc>,
    generation: u64,
}

impl Due {
    fn fire(&self) -> ScheduledFire {
        ScheduledFire {
            request: FireRequest {
                workspace_id: self.workspace_id.clone(),
                schedule_id: self.schedule_id.clone(),
                ..FireRequest::default()
            },
            scheduled_for: self.fire_at,
        }
    }
}

/// Where the timer hands due fires: the dispatch service. The seam lets the benchmark see
/// the moment each fire is handed over (fire lateness) and tests fake dispatch failures.
#[async_trait]
pub trait FireDispatch: Send + Sync {
    /// Dispatches `fires`, returning one result per fire in the same order; a fire whose
    /// result is an error (or missing) is retried with backoff.
    async fn dispatch(&self, fires: &[ScheduledFire])
    -> Vec<Result<DispatchOutcome, ServiceError>>;
}

#[async_trait]
impl FireDispatch for DispatchService {
    async fn dispatch(
        &self,
        fires: &[ScheduledFire],
    ) -> Vec<Result<DispatchOutcome, ServiceError>> {
        let mut outcomes = Vec::with_capacity(fires.len());
        for fire in fires {
            outcomes.push(self.dispatch_fire(&fire.request, fire.scheduled_for).await);
        }
        outcomes
    }
}

/// The local scheduler. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct LocalTimer {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    wake: Notify,
    clock: Arc<dyn Clock>,
    settings: TimerSettings,
}

impl LocalTimer {
    pub fn new(clock: Arc<dyn Clock>, settings: TimerSettings) -> Self {
        LocalTimer {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                clock,
                settings,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the heap half-updated in a way that
        // matters more than stopping the scheduler would, so keep going with the data.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loads every active schedule from the store, resuming each from its last recorded
    /// fire (or its last change), at most `catch_up` in the past.
    pub async fn load(
        &self,
        schedules: &dyn ScheduleStore,
        runs: &dyn RunStore,
    ) -> Result<usize, PortError> {
        let last_fires: HashMap<String, DateTime<Utc>> =
            runs.last_fire_times().await?.into_iter().collect();
        let floor = self.inner.clock.now() - self.inner.settings.catch_up;
        let mut page = PageRequest::first(1_000);
        let mut loaded = 0;
        loop {
            let batch = schedules.list_all_schedules(&page).await?;
            for (schedule, active) in &batch.items {
                if !active {
                    match trigger_state(schedule, false) {
                        Ok(trigger) => self.register(trigger),
                        Err(e) => tracing::warn!(schedule_id = %schedule.schedule_id,
                            error = %e, "disabled schedule not registered; reconcile reports it"),
                    }
                    continue;
                }
                self.register(trigger_state(schedule, true)?);
                let resume = last_fires
                    .get(&schedule.schedule_id)
                    .map_or(schedule.updated_at, |t| (*t).max(schedule.updated_at))
                    .max(floor);
                self.insert(schedule, resume)?;
                loaded += 1;
            }
            match batch.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        self.inner.wake.notify_one();
        Ok(loaded)
    }

    /// Number of schedules the timer currently fires.
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next fire time of a schedule, if the timer holds it.
    pub fn next_fire(&self, schedule_id: &str) -> Option<DateTime<Utc>> {
        self.state().entries.get(schedule_id).map(|e| e.next)
    }

    fn insert(&self, schedule: &Schedule, after: DateTime<Utc>) -> Result<(), PortError> {
        let spec = schedule
            .cadence
            .compile()
            .map_err(|e| PortError::fatal(format!("stored cadence no longer compiles: {e}")))?;
        let tz = parse_timezone(&schedule.timezone)
            .map_err(|e| PortError::fatal(format!("stored timezone is invalid: {e}")))?;
        let mut state = self.state();
        state.generation += 1;
        let generation = state.generation;
        match spec.next_after(tz, after) {
            Some(next) => {
                state
                    .heap
                    .push(Reverse((next, generation, schedule.schedule_id.clone())));
                state.entries.insert(
                    schedule.schedule_id.clone(),
                    Entry {
                        workspace_id: schedule.workspace_id.clone(),
                        spec,
                        tz,
                        next,
                        generation,
                        in_flight: false,
                        failures: 0,
                    },
                );
            }
            None => {
                state.entries.remove(&schedule.schedule_id);
            }
        }
        Ok(())
    }

    fn remove(&self, schedule_id: &str) {
        self.state().entries.remove(schedule_id);
    }

    fn register(&self, trigger: TriggerState) {
        self.state()
            .triggers
            .insert(trigger.schedule_id.clone(), trigger);
    }

    /// Pops every fire due at `now`; returns them and the next wake-up time.
    fn take_due(&self, now: DateTime<Utc>) -> (Vec<Due>, Option<DateTime<Utc>>) {
        let mut state = self.state();
        let mut due = Vec::new();
        while let Some(Reverse((at, generation, id))) = state.heap.peek().cloned() {
            let current = state
                .entries
                .get(&id)
                .is_some_and(|e| e.generation == generation && !e.in_flight);
            if !current {
                state.heap.pop();
                continue;
            }
            if at > now {
                return (due, Some(at));
            }
            state.heap.pop();
            if let Some(entry) = state.entries.get_mut(&id) {
                entry.in_flight = true;
                due.push(Due {
                    schedule_id: id,
                    workspace_id: entry.workspace_id.clone(),
                    fire_at: entry.next,
                    generation,
                });
            }
        }
        (due, None)
    }

    /// Records the outcome of a dispatch: advance to the next fire, or retry this one.
    fn completed(&self, due: &Due, ok: bool) {
        let now = self.inner.clock.now();
        let settings = self.inner.settings;
        let mut state = self.state();
        let Some(entry) = state.entries.get_mut(&due.schedule_id) else {
            return;
        };
        if entry.generation != due.generation {
            return;
        }
        entry.in_flight = false;
        let wake = if ok {
            entry.failures = 0;
            match entry.spec.next_after(entry.tz, due.fire_at) {
                Some(next) => {
                    entry.next = next;
                    next
                }
                None => {
                    state.entries.remove(&due.schedule_id);
                    return;
                }
            }
        } else {
            entry.failures = entry.failures.saturating_add(1);
            let factor = 1i32 << entry.failures.min(16).saturating_sub(1);
            now + (settings.backoff * factor).min(settings.max_backoff)
        };
        state
            .heap
            .push(Reverse((wake, due.generation, due.schedule_id.clone())));
        drop(state);
        self.inner.wake.notify_one();
    }

    /// Fires schedules until the task is dropped or aborted.
    pub async fn run(self, dispatch: Arc<dyn FireDispatch>) {
        let permits = Arc::new(Semaphore::new(self.inner.settings.concurrency.max(1)));
        loop {
            let now = self.inner.clock.now();
            let (due, next_wake) = self.take_due(now);
            if due.is_empty() {
                let clock = self.inner.clock.clone();
                match next_wake {
                    Some(at) => {
                        tokio::select! {
                            () = clock.sleep_until(at) => {}
                            () = self.inner.wake.notified() => {}
                        }
                    }
                    None => self.inner.wake.notified().await,
                }
                continue;
            }
            for fire in due {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let timer = self.clone();
                let dispatch = dispatch.clone();
                tokio::spawn(async move {
                    let outcomes = dispatch.dispatch(&[fire.fire()]).await;
                    let ok = match outcomes.first() {
                        Some(Ok(_)) => true,
                        Some(Err(e)) => {
                            tracing::warn!(schedule_id = %fire.schedule_id, scheduled_for = %fire.fire_at,
                                error = %e, "dispatch failed; will retry");
                            false
                        }
                        None => false,
                    };
                    timer.completed(&fire, ok);
                    drop(permit);
                });
            }
        }
    }
}

#[async_trait]
impl TriggerBackend for LocalTimer {
    async fn put_trigger(&self, schedule: &Schedule, active: bool) -> Result<(), PortError> {
        let trigger = trigger_state(schedule, active)?;
        if active {
            self.insert(schedule, self.inner.clock.now())?;
        } else {
            self.remove(&schedule.schedule_id);
        }
        self.register(trigger);
        self.inner.wake.notify_one();
        Ok(())
    }

    async fn delete_trigger(&self, schedule: &Schedule) -> Result<(), PortError> {
        let mut state = self.state();
        state.entries.remove(&schedule.schedule_id);
        state.triggers.remove(&schedule.schedule_id);
        Ok(())
    }

    /// Ordered by schedule id; the cursor is the last id of the previous page.
    async fn list_triggers(&self, page: &PageRequest) -> Result<Page<TriggerState>, PortError> {
        use std::ops::Bound;
        let limit = page.limit.max(1) as usize;
        let state = self.state();
        let after = match &page.cursor {
            Some(id) => Bound::Excluded(id.clone()),
            None => Bound::Unbounded,
        };
        let mut rest = state.triggers.range((after, Bound::Unbounded));
        let items: Vec<TriggerState> = rest.by_ref().take(limit).map(|(_, t)| t.clone()).collect();
        let next_cursor = match rest.next() {
            Some(_) => items.last().map(|t| t.schedule_id.clone()),
            None => None,
        };
        Ok(Page { items, next_cursor })
    }
}

/// The trigger `put_trigger(schedule, active)` leaves behind, in the terms EventBridge
/// Scheduler would hold it.
fn trigger_state(schedule: &Schedule, active: bool) -> Result<TriggerState, PortError> {
    let spec = schedule
        .cadence
        .compile()
        .map_err(|e| PortError::fatal(format!("stored cadence no longer compiles: {e}")))?;
    Ok(TriggerState {
        workspace_id: schedule.workspace_id.clone(),
        schedule_id: schedule.schedule_id.clone(),
        active,
        expression: spec.eventbridge_expression(),
        timezone: schedule.timezone.clone(),
    })
}
