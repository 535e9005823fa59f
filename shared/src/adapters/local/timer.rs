//! The in-process scheduler of the embedded deployment, standing in for EventBridge
//! Scheduler: it is the local `TriggerBackend`, keeps every active schedule's next fire time
//! in a queue, and hands each due fire to the dispatch service with the same semantics as
//! `nextRuns` (the domain's `FireSpec::next_after`).
//!
//! Fire times are whole minutes, so many schedules fall due at the same instant: the timer
//! hands them to dispatch in batches (up to `TimerSettings::batch` fires each), which lets
//! dispatch record a batch with a few store requests instead of several per fire.
//!
//! Fires are sequential per schedule: the next fire time is computed only once the current
//! one was dispatched, and a failed dispatch is retried with backoff instead of being
//! dropped (each fire of a batch on its own: the others of the batch go ahead). On start it
//! resumes from the last fire recorded in the store, so a restart neither fires anything
//! twice (dispatch is idempotent anyway) nor silently loses a fire that fell due while the
//! process was down (within the catch-up window).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::{Notify, Semaphore};

use crate::domain::cadence::{Cadence, parse_timezone};
use crate::domain::fire_times::FireSpec;
use crate::domain::model::Schedule;
use crate::domain::zone::Zone;
use crate::ports::{
    Clock, FireRequest, Page, PageRequest, PortError, RunStore, ScheduleStore, TriggerBackend,
    TriggerListing, TriggerState,
};
use crate::services::ServiceError;
use crate::services::dispatch::{DispatchOutcome, DispatchService, ScheduledFire};

#[derive(Clone, Copy, Debug)]
pub struct TimerSettings {
    /// Fires missed while the process was down are still dispatched if at most this old.
    pub catch_up: Duration,
    /// Batches being dispatched at once.
    pub concurrency: usize,
    /// Fires handed to dispatch together, at most.
    pub batch: usize,
    /// At most this many in the first batch of an instant that has more than `batch` fires
    /// (see `run`).
    pub first_batch: usize,
    /// How long before an instant the timer takes its fires off the queue and builds them,
    /// to hand them over at the instant itself: thousands of schedules share a whole
    /// minute, and building their fires after the instant would make every one of them
    /// that much late. After an idle stretch, with the timer's memory out of the CPU's
    /// caches, taking off 1,667 fires took 5–36 ms (BENCHMARKS.md §5), so this is well
    /// above that. A change to a schedule this close to its fire applies from its next
    /// fire, as if it had arrived just after the instant.
    pub lead: Duration,
    /// How long before an instant the timer stops sleeping and waits for it awake (at
    /// most `lead`): a thread woken from a sleep can take milliseconds to run again, and
    /// this is the CPU time of one core spent per instant.
    pub awake: Duration,
    /// First retry delay of a failed dispatch; doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for TimerSettings {
    fn default() -> Self {
        TimerSettings {
            catch_up: Duration::hours(1),
            concurrency: 4,
            batch: 10_000,
            first_batch: 1_000,
            lead: Duration::milliseconds(250),
            awake: Duration::milliseconds(25),
            backoff: Duration::seconds(1),
            max_backoff: Duration::minutes(1),
        }
    }
}

struct Entry {
    workspace_id: String,
    spec: FireSpec,
    tz: Zone,
    /// The next fire time not yet dispatched.
    next: DateTime<Utc>,
    /// Bumped whenever the trigger is replaced, so stale queue items and stale dispatch
    /// completions are ignored.
    generation: u64,
    in_flight: bool,
    failures: u32,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Wake-up times, earliest first, each with the (generation, schedule id) of what is due
    /// then. Fire times are whole minutes, so thousands of schedules share an instant: they
    /// are taken off together, without reordering a heap of every schedule for each one.
    /// An item of a replaced entry (older generation) is dropped when met.
    queue: BTreeMap<DateTime<Utc>, Vec<(u64, String)>>,
    generation: u64,
    /// Every trigger as last put, firing or not, by schedule id (what `list_triggers`
    /// reports; `entries` holds only those that still have a fire ahead).
    triggers: BTreeMap<String, Registered>,
}

impl State {
    fn enqueue(&mut self, at: DateTime<Utc>, generation: u64, schedule_id: String) {
        self.queue
            .entry(at)
            .or_default()
            .push((generation, schedule_id));
    }

    /// Whether a queue item is still the schedule's current one and not being dispatched.
    fn is_current(&self, generation: u64, schedule_id: &str) -> bool {
        self.entries
            .get(schedule_id)
            .is_some_and(|e| e.generation == generation && !e.in_flight)
    }

    /// Makes the schedule fire next after `after`, replacing what the timer held for it
    /// (or drops it when it never fires again).
    fn place(
        &mut self,
        workspace_id: String,
        schedule_id: String,
        spec: FireSpec,
        tz: Zone,
        after: DateTime<Utc>,
    ) {
        self.generation += 1;
        let generation = self.generation;
        match spec.next_after(&tz, after) {
            Some(next) => {
                self.enqueue(next, generation, schedule_id.clone());
                self.entries.insert(
                    schedule_id,
                    Entry {
                        workspace_id,
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
                self.entries.remove(&schedule_id);
            }
        }
    }
}

/// A trigger as last put. Its EventBridge expression is rendered only when it is listed.
struct Registered {
    workspace_id: String,
    spec: FireSpec,
    timezone: String,
    active: bool,
}

/// A fire taken off the queue, with the generation of the entry it was taken from.
struct Due {
    fire: ScheduledFire,
    generation: u64,
    /// When the fire is handed over: its instant, or a retry's.
    at: DateTime<Utc>,
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
        self.dispatch_fires(fires).await
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
        // A panic while holding the lock cannot leave the queue half-updated in a way that
        // matters more than stopping the scheduler would, so keep going with the data.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Loads every schedule from the store (one lean listing, and the last fire times),
    /// resuming each active one from its last recorded fire (or its last change), at most
    /// `catch_up` in the past. Returns how many are active.
    pub async fn load(
        &self,
        schedules: &dyn ScheduleStore,
        runs: &dyn RunStore,
    ) -> Result<usize, PortError> {
        let (last_fires, listed) =
            tokio::try_join!(runs.last_fire_times(), schedules.list_schedule_triggers())?;
        let last_fires: HashMap<String, DateTime<Utc>> = last_fires.into_iter().collect();
        let floor = self.inner.clock.now() - self.inner.settings.catch_up;
        // Compiled before the state is locked; it then takes them all at once.
        let mut registered = Vec::with_capacity(listed.len());
        let mut firing = Vec::with_capacity(listed.len());
        for t in listed {
            if !t.active {
                match compile(&t.cadence) {
                    Ok(spec) => registered.push((
                        t.schedule_id,
                        Registered {
                            workspace_id: t.workspace_id,
                            spec,
                            timezone: t.timezone,
                            active: false,
                        },
                    )),
                    Err(e) => tracing::warn!(schedule_id = %t.schedule_id,
                        error = %e, "disabled schedule not registered; reconcile reports it"),
                }
                continue;
            }
            let spec = compile(&t.cadence)?;
            let tz = timezone(&t.timezone)?;
            let resume = last_fires
                .get(&t.schedule_id)
                .map_or(t.updated_at, |at| (*at).max(t.updated_at))
                .max(floor);
            firing.push((
                t.workspace_id.clone(),
                t.schedule_id.clone(),
                spec.clone(),
                tz,
                resume,
            ));
            registered.push((
                t.schedule_id,
                Registered {
                    workspace_id: t.workspace_id,
                    spec,
                    timezone: t.timezone,
                    active: true,
                },
            ));
        }
        let loaded = firing.len();
        let mut state = self.state();
        state.entries.reserve(loaded);
        state.triggers.extend(registered);
        for (workspace_id, schedule_id, spec, tz, resume) in firing {
            state.place(workspace_id, schedule_id, spec, tz, resume);
        }
        drop(state);
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

    fn remove(&self, schedule_id: &str) {
        self.state().entries.remove(schedule_id);
    }

    fn register(&self, schedule_id: String, trigger: Registered) {
        self.state().triggers.insert(schedule_id, trigger);
    }

    /// Pops every fire due by `until`, in the order they fall due; returns them and the
    /// next wake-up time.
    fn take_due(&self, until: DateTime<Utc>) -> (Vec<Due>, Option<DateTime<Utc>>) {
        let mut guard = self.state();
        let state = &mut *guard;
        let mut due = Vec::new();
        while let Some((&at, items)) = state.queue.first_key_value() {
            if at > until {
                // Wake up then, unless everything queued for then went stale meanwhile.
                if items.iter().any(|(g, id)| state.is_current(*g, id)) {
                    return (due, Some(at));
                }
                state.queue.pop_first();
                continue;
            }
            let Some((_, items)) = state.queue.pop_first() else {
                break;
            };
            for (generation, schedule_id) in items {
                let Some(entry) = state
                    .entries
                    .get_mut(&schedule_id)
                    .filter(|e| e.generation == generation && !e.in_flight)
                else {
                    continue;
                };
                entry.in_flight = true;
                let request = FireRequest {
                    workspace_id: entry.workspace_id.clone(),
                    schedule_id,
                    ..FireRequest::default()
                };
                let fire = ScheduledFire {
                    request,
                    scheduled_for: entry.next,
                };
                due.push(Due {
                    fire,
                    generation,
                    at,
                });
            }
        }
        (due, None)
    }

    /// Records the outcomes of a batch's dispatch: each fire advances to its schedule's
    /// next fire, or is retried. A fire without an outcome counts as failed. Takes the
    /// fires, so each schedule id goes back into the queue without a copy.
    fn completed(
        &self,
        fires: Vec<ScheduledFire>,
        generations: &[u64],
        outcomes: &[Result<DispatchOutcome, ServiceError>],
    ) {
        let now = self.inner.clock.now();
        let settings = self.inner.settings;
        let mut state = self.state();
        for (i, (fire, &generation)) in fires.into_iter().zip(generations).enumerate() {
            let schedule_id = fire.request.schedule_id;
            let ok = match outcomes.get(i) {
                Some(Ok(_)) => true,
                Some(Err(e)) => {
                    tracing::warn!(%schedule_id, scheduled_for = %fire.scheduled_for,
                        error = %e, "dispatch failed; will retry");
                    false
                }
                None => false,
            };
            let Some(entry) = state.entries.get_mut(&schedule_id) else {
                continue;
            };
            if entry.generation != generation {
                continue;
            }
            entry.in_flight = false;
            let wake = if ok {
                entry.failures = 0;
                match entry.spec.next_after(&entry.tz, fire.scheduled_for) {
                    Some(next) => {
                        entry.next = next;
                        next
                    }
                    None => {
                        state.entries.remove(&schedule_id);
                        continue;
                    }
                }
            } else {
                entry.failures = entry.failures.saturating_add(1);
                let factor = 1i32 << entry.failures.min(16).saturating_sub(1);
                now + (settings.backoff * factor).min(settings.max_backoff)
            };
            state.enqueue(wake, generation, schedule_id);
        }
        drop(state);
        self.inner.wake.notify_one();
    }

    /// Fires schedules until the task is dropped or aborted.
    pub async fn run(self, dispatch: Arc<dyn FireDispatch>) {
        let batch_size = self.inner.settings.batch.max(1);
        let first_batch_size = self.inner.settings.first_batch.clamp(1, batch_size);
        let lead = self.inner.settings.lead.max(Duration::zero());
        let awake = self.inner.settings.awake.clamp(Duration::zero(), lead);
        let permits = Arc::new(Semaphore::new(self.inner.settings.concurrency.max(1)));
        let clock = self.inner.clock.clone();
        loop {
            let (due, next_wake) = self.take_due(clock.now() + lead);
            if due.is_empty() {
                match next_wake {
                    Some(at) => {
                        tokio::select! {
                            () = clock.sleep_until(at - lead) => {}
                            () = self.inner.wake.notified() => {}
                        }
                    }
                    None => self.inner.wake.notified().await,
                }
                continue;
            }
            let mut at_instant: HashMap<DateTime<Utc>, usize> = HashMap::new();
            for d in &due {
                *at_instant.entry(d.at).or_default() += 1;
            }
            let mut due = due.into_iter().peekable();
            // The batches are built before the instant, so handing one over at the instant
            // is a spawn: built after it, from memory the idle stretch left cold, they
            // made the instant's first fires that much late.
            let mut batches = Vec::new();
            let mut previous = None;
            while let Some(at) = due.peek().map(|d| d.at) {
                // When an instant has more than one batch of fires, its first batch is
                // small: its runs reach the store's single writer while the full batches
                // are still being read and built, instead of the writer waiting for a whole
                // batch to be prepared first. An instant of one batch stays one batch.
                let many = at_instant.get(&at).is_some_and(|&n| n > batch_size);
                let size = if many && previous != Some(at) {
                    first_batch_size
                } else {
                    batch_size
                };
                previous = Some(at);
                let mut fires = Vec::new();
                let mut generations = Vec::new();
                while fires.len() < size
                    && let Some(d) = due.next_if(|d| d.at == at)
                {
                    fires.push(d.fire);
                    generations.push(d.generation);
                }
                batches.push((at, fires, generations));
            }
            for (at, fires, generations) in batches {
                // Taken off up to `lead` early; handed over at the instant, the last
                // `awake` of it waited for awake (yielding to every other task) rather than
                // asleep: a thread woken from a sleep can take several milliseconds to run
                // again (on a virtual machine idle since the previous minute, single
                // minutes were 8–25 ms late; BENCHMARKS.md §5), while staying awake costs
                // at most `awake` of one core per instant.
                if at - awake > clock.now() {
                    clock.sleep_until(at - awake).await;
                }
                while at > clock.now() {
                    tokio::task::yield_now().await;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let timer = self.clone();
                let dispatch = dispatch.clone();
                tokio::spawn(async move {
                    let outcomes = dispatch.dispatch(&fires).await;
                    timer.completed(fires, &generations, &outcomes);
                    drop(permit);
                });
            }
        }
    }
}

#[async_trait]
impl TriggerBackend for LocalTimer {
    async fn put_trigger(&self, schedule: &Schedule, active: bool) -> Result<(), PortError> {
        let spec = compile(&schedule.cadence)?;
        if active {
            let tz = timezone(&schedule.timezone)?;
            let now = self.inner.clock.now();
            self.state().place(
                schedule.workspace_id.clone(),
                schedule.schedule_id.clone(),
                spec.clone(),
                tz,
                now,
            );
        } else {
            self.remove(&schedule.schedule_id);
        }
        self.register(
            schedule.schedule_id.clone(),
            Registered {
                workspace_id: schedule.workspace_id.clone(),
                spec,
                timezone: schedule.timezone.clone(),
                active,
            },
        );
        self.inner.wake.notify_one();
        Ok(())
    }

    async fn delete_trigger(&self, schedule: &Schedule) -> Result<(), PortError> {
        let mut state = self.state();
        state.entries.remove(&schedule.schedule_id);
        state.triggers.remove(&schedule.schedule_id);
        Ok(())
    }
}

#[async_trait]
impl TriggerListing for LocalTimer {
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
        // In the terms EventBridge Scheduler would hold them.
        let items: Vec<TriggerState> = rest
            .by_ref()
            .take(limit)
            .map(|(schedule_id, t)| TriggerState {
                workspace_id: t.workspace_id.clone(),
                schedule_id: schedule_id.clone(),
                active: t.active,
                expression: t.spec.eventbridge_expression(),
                timezone: t.timezone.clone(),
            })
            .collect();
        let next_cursor = match rest.next() {
            Some(_) => items.last().map(|t| t.schedule_id.clone()),
            None => None,
        };
        Ok(Page { items, next_cursor })
    }
}

fn compile(cadence: &Cadence) -> Result<FireSpec, PortError> {
    cadence
        .compile()
        .map_err(|e| PortError::fatal(format!("stored cadence no longer compiles: {e}")))
}

fn timezone(name: &str) -> Result<Zone, PortError> {
    parse_timezone(name).map_err(|e| PortError::fatal(format!("stored timezone is invalid: {e}")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration as StdDuration;

    use chrono::TimeZone;

    use super::*;
    use crate::adapters::local::clock::ManualClock;
    use crate::domain::model::{OverlapPolicy, ProjectRole};
    use crate::ports::PortError;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, h, m, s)
            .single()
            .expect("valid instant")
    }

    fn hourly(schedule_id: &str, minute: i64) -> Schedule {
        Schedule {
            schedule_id: schedule_id.into(),
            project_id: "p".into(),
            workspace_id: "w".into(),
            created_by: "u".into(),
            creator_role: ProjectRole::FullAccess,
            cadence: Cadence::Hourly { minute },
            timezone: "UTC".into(),
            enabled: true,
            update_published_results: true,
            use_cached_sql_results: false,
            overlap_policy: OverlapPolicy::Skip,
            hourly: true,
            created_at: at(0, 0, 0),
            updated_at: at(0, 0, 0),
            version: 1,
            notifications: Default::default(),
        }
    }

    /// A fire as the fake sees it: the schedule and the nominal time.
    type Handed = (String, DateTime<Utc>);

    /// Dispatch that records every batch it is handed, fails the fires of the schedules in
    /// `fail_once` once, and answers one outcome short for a batch ending in a schedule of
    /// `drop_last_outcome_once`.
    #[derive(Default)]
    struct FakeDispatch {
        batches: Mutex<Vec<Vec<Handed>>>,
        fail_once: Mutex<BTreeSet<String>>,
        drop_last_outcome_once: Mutex<BTreeSet<String>>,
    }

    impl FakeDispatch {
        fn handed(&self) -> Vec<Vec<Handed>> {
            self.batches.lock().expect("lock").clone()
        }
    }

    #[async_trait]
    impl FireDispatch for FakeDispatch {
        async fn dispatch(
            &self,
            fires: &[ScheduledFire],
        ) -> Vec<Result<DispatchOutcome, ServiceError>> {
            self.batches.lock().expect("lock").push(
                fires
                    .iter()
                    .map(|f| (f.request.schedule_id.clone(), f.scheduled_for))
                    .collect(),
            );
            let mut outcomes: Vec<Result<DispatchOutcome, ServiceError>> = fires
                .iter()
                .map(|f| {
                    if self
                        .fail_once
                        .lock()
                        .expect("lock")
                        .remove(&f.request.schedule_id)
                    {
                        Err(PortError::unavailable("injected").into())
                    } else {
                        Ok(DispatchOutcome::ScheduleGone)
                    }
                })
                .collect();
            let last = fires.last().map(|f| f.request.schedule_id.clone());
            if let Some(last) = last
                && self
                    .drop_last_outcome_once
                    .lock()
                    .expect("lock")
                    .remove(&last)
            {
                outcomes.pop();
            }
            outcomes
        }
    }

    /// Waits (bounded) until `done` holds; the timer works on spawned tasks.
    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn fires_due_together_go_in_batches_and_a_failed_fire_is_retried_alone() {
        let clock = Arc::new(ManualClock::new(at(0, 0, 30)));
        let settings = TimerSettings {
            batch: 2,
            first_batch: 2,
            concurrency: 1,
            ..TimerSettings::default()
        };
        let timer = LocalTimer::new(clock.clone(), settings);
        let ids = ["s0", "s1", "s2", "s3", "s4"];
        for id in ids {
            timer
                .put_trigger(&hourly(id, 1), true)
                .await
                .expect("trigger");
        }
        let dispatch = Arc::new(FakeDispatch::default());
        dispatch.fail_once.lock().expect("lock").insert("s1".into());
        // The batch ending in s3 comes back one outcome short: s3 counts as failed.
        dispatch
            .drop_last_outcome_once
            .lock()
            .expect("lock")
            .insert("s3".into());
        let task = tokio::spawn(timer.clone().run(dispatch.clone()));

        clock.set(at(0, 1, 0));
        until(|| dispatch.handed().concat().len() >= ids.len()).await;
        let handed = dispatch.handed();
        assert_eq!(
            handed.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1],
            "five fires due at once, in batches of at most two: {handed:?}"
        );
        assert!(handed.concat().iter().all(|(_, t)| *t == at(0, 1, 0)));
        until(|| timer.next_fire("s4") == Some(at(1, 1, 0))).await;
        for id in ["s0", "s2", "s4"] {
            assert_eq!(timer.next_fire(id), Some(at(1, 1, 0)), "{id} advanced");
        }
        for id in ["s1", "s3"] {
            assert_eq!(timer.next_fire(id), Some(at(0, 1, 0)), "{id} still due");
        }

        // After the backoff, only the two failed fires are handed over again.
        clock.set(at(0, 1, 1));
        until(|| timer.next_fire("s1") == Some(at(1, 1, 0))).await;
        until(|| timer.next_fire("s3") == Some(at(1, 1, 0))).await;
        let retried: Vec<Handed> = dispatch.handed().concat().split_off(ids.len());
        assert_eq!(
            retried,
            vec![("s1".into(), at(0, 1, 0)), ("s3".into(), at(0, 1, 0))]
        );
        task.abort();
    }

    #[tokio::test]
    async fn the_first_batch_of_a_crowded_instant_is_the_small_one() {
        let clock = Arc::new(ManualClock::new(at(0, 0, 30)));
        let settings = TimerSettings {
            batch: 3,
            first_batch: 1,
            concurrency: 1,
            ..TimerSettings::default()
        };
        let timer = LocalTimer::new(clock.clone(), settings);
        for id in ["s0", "s1", "s2", "s3", "s4", "s5"] {
            timer
                .put_trigger(&hourly(id, 1), true)
                .await
                .expect("trigger");
        }
        for id in ["t0", "t1"] {
            timer
                .put_trigger(&hourly(id, 2), true)
                .await
                .expect("trigger");
        }
        let dispatch = Arc::new(FakeDispatch::default());
        let task = tokio::spawn(timer.clone().run(dispatch.clone()));
        clock.set(at(0, 2, 0));
        until(|| dispatch.handed().concat().len() >= 8).await;
        let sizes: Vec<(usize, DateTime<Utc>)> = dispatch
            .handed()
            .iter()
            .map(|batch| (batch.len(), batch[0].1))
            .collect();
        assert_eq!(
            sizes,
            vec![
                (1, at(0, 1, 0)),
                (3, at(0, 1, 0)),
                (2, at(0, 1, 0)),
                (2, at(0, 2, 0)),
            ],
            "one fire first at an instant of more than one batch, then full batches; an \
             instant of one batch in one"
        );
        task.abort();
    }

    #[tokio::test]
    async fn fires_are_taken_off_early_but_handed_over_at_their_instant() {
        let clock = Arc::new(ManualClock::new(at(0, 0, 30)));
        let settings = TimerSettings {
            lead: Duration::seconds(2),
            ..TimerSettings::default()
        };
        let timer = LocalTimer::new(clock.clone(), settings);
        timer
            .put_trigger(&hourly("a", 1), true)
            .await
            .expect("trigger");
        timer
            .put_trigger(&hourly("b", 1), true)
            .await
            .expect("trigger");
        let dispatch = Arc::new(FakeDispatch::default());
        let task = tokio::spawn(timer.clone().run(dispatch.clone()));

        // Within the lead of the instant: taken off the queue, not handed over yet.
        clock.set(at(0, 0, 59));
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        assert!(dispatch.handed().is_empty(), "{:?}", dispatch.handed());

        clock.set(at(0, 1, 0));
        until(|| !dispatch.handed().is_empty()).await;
        let handed = dispatch.handed();
        assert_eq!(handed.len(), 1, "one batch for the instant: {handed:?}");
        let mut ids: Vec<_> = handed.concat().into_iter().collect();
        ids.sort();
        assert_eq!(
            ids,
            vec![("a".into(), at(0, 1, 0)), ("b".into(), at(0, 1, 0))]
        );
        until(|| timer.next_fire("b") == Some(at(1, 1, 0))).await;
        assert_eq!(timer.next_fire("a"), Some(at(1, 1, 0)));
        task.abort();
    }

    #[tokio::test]
    async fn a_replaced_or_deleted_trigger_leaves_nothing_due_behind() {
        let clock = Arc::new(ManualClock::new(at(0, 0, 30)));
        let timer = LocalTimer::new(clock.clone(), TimerSettings::default());
        let moved = hourly("moved", 5);
        timer.put_trigger(&moved, true).await.expect("trigger");
        timer
            .put_trigger(&hourly("moved", 10), true)
            .await
            .expect("replace");
        let deleted = hourly("deleted", 5);
        timer.put_trigger(&deleted, true).await.expect("trigger");
        timer.delete_trigger(&deleted).await.expect("delete");
        let dispatch = Arc::new(FakeDispatch::default());
        let task = tokio::spawn(timer.clone().run(dispatch.clone()));

        clock.set(at(0, 5, 0));
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        assert!(dispatch.handed().is_empty(), "{:?}", dispatch.handed());
        clock.set(at(0, 10, 0));
        until(|| !dispatch.handed().is_empty()).await;
        assert_eq!(
            dispatch.handed(),
            vec![vec![("moved".into(), at(0, 10, 0))]]
        );
        until(|| timer.next_fire("moved") == Some(at(1, 10, 0))).await;
        assert_eq!(timer.next_fire("deleted"), None);
        task.abort();
    }
}
