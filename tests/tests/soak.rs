//! Simulated-time soak of the embedded deployment (RELIABILITY.md, requirement 1).
//!
//! 1,000 schedules of every cadence kind in twelve timezones (four of them cross a DST
//! transition in the window, two by 30 or 45 minutes) run for 60 simulated days on a
//! `ManualClock`, through the real timer, dispatch, queue, executor and sweeper over a real
//! SQLite file, while faults are injected:
//!
//! * **store write errors** — a run store wrapper fails some run writes (a single run, or
//!   the batch of runs of the fires due together) before they happen and, worse, some
//!   *after* they happened (the caller sees an error for a write that landed);
//! * **executor crashes** — some deliveries are aborted part-way (before the start, in the
//!   middle of the cells, or before the final write);
//! * **queue redelivery** — some messages are executed twice at once;
//! * **process restarts** — the deployment is dropped mid-flight (dispatches and runs in
//!   progress, queued messages lost) and opened again on the same data.
//!
//! The set of runs created must equal, exactly, the fire times an independent reference
//! computes (a minute-by-minute scan of local wall-clock time, sharing no code with the
//! product's `FireSpec`), and every run must end in a terminal state. The test prints the
//! counts.
//!
//! `SOAK_DAYS` and `SOAK_SCHEDULES` make it longer or larger:
//! `SOAK_DAYS=365 cargo test -p scheduled-runs-tests --test soak -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use http::StatusCode;
use scheduled_runs::adapters::local::queue::LocalRunReceiver;
use scheduled_runs::domain::model::{Plan, Run, RunGuard, RunTrigger, WorkspaceRole};
use scheduled_runs::ports::{
    Clock, ComposedRunPath, Page, PageRequest, PortError, RunCreated, RunFilter, RunMessage,
    RunStore,
};
use scheduled_runs::services::dispatch::DispatchService;
use scheduled_runs::services::executor::ExecutorService;
use scheduled_runs_tests::harness::TestApp;
use serde_json::{Value, json};
use tokio::task::JoinSet;

// ------------------------------------------------------------------------------ schedules

const TIMEZONES: [&str; 12] = [
    "UTC",
    "Europe/Berlin",       // spring forward 2026-03-29 02:00 → 03:00
    "America/New_York",    // spring forward 2026-03-08 02:00 → 03:00
    "Australia/Sydney",    // fall back 2026-04-05 03:00 → 02:00
    "Australia/Lord_Howe", // fall back by 30 minutes, 2026-04-05 02:00 → 01:30
    "Pacific/Chatham",     // fall back 2026-04-05 03:45 → 02:45
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/Sao_Paulo",
    "Europe/London", // spring forward 2026-03-29 01:00 → 02:00
    "America/Los_Angeles",
    "Pacific/Auckland", // fall back 2026-04-05 03:00 → 02:00
];

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("MON", Weekday::Mon),
    ("TUE", Weekday::Tue),
    ("WED", Weekday::Wed),
    ("THU", Weekday::Thu),
    ("FRI", Weekday::Fri),
    ("SAT", Weekday::Sat),
    ("SUN", Weekday::Sun),
];

/// A cadence as the reference understands it: which local wall-clock minutes fire.
#[derive(Clone, Debug)]
enum Rule {
    Hourly {
        minute: u32,
    },
    Daily {
        hour: u32,
        minute: u32,
    },
    Weekly {
        days: Vec<Weekday>,
        hour: u32,
        minute: u32,
    },
    /// `None`: the last day of the month.
    Monthly {
        day: Option<u32>,
        hour: u32,
        minute: u32,
    },
    /// `minute hour * * MON-FRI`
    Weekdays {
        hour: u32,
        minute: u32,
    },
    /// `minute h1-h2 * * *`
    HourRange {
        from: u32,
        to: u32,
        minute: u32,
    },
    /// `minute hour L * *`
    LastDay {
        hour: u32,
        minute: u32,
    },
    /// `minute hour * * DAY#n`
    NthWeekday {
        day: Weekday,
        n: u32,
        hour: u32,
        minute: u32,
    },
    /// `minute */step * * *`
    EveryHours {
        step: u32,
        minute: u32,
    },
}

fn is_last_day(t: NaiveDateTime) -> bool {
    (t.date() + Duration::days(1)).month() != t.month()
}

impl Rule {
    fn fires(&self, t: NaiveDateTime) -> bool {
        let (h, m) = (t.hour(), t.minute());
        match self {
            Rule::Hourly { minute } => m == *minute,
            Rule::Daily { hour, minute } => (h, m) == (*hour, *minute),
            Rule::Weekly { days, hour, minute } => {
                (h, m) == (*hour, *minute) && days.contains(&t.weekday())
            }
            Rule::Monthly { day, hour, minute } => {
                (h, m) == (*hour, *minute)
                    && match day {
                        Some(d) => t.day() == *d,
                        None => is_last_day(t),
                    }
            }
            Rule::Weekdays { hour, minute } => {
                (h, m) == (*hour, *minute) && t.weekday().num_days_from_monday() < 5
            }
            Rule::HourRange { from, to, minute } => m == *minute && (*from..=*to).contains(&h),
            Rule::LastDay { hour, minute } => (h, m) == (*hour, *minute) && is_last_day(t),
            Rule::NthWeekday {
                day,
                n,
                hour,
                minute,
            } => (h, m) == (*hour, *minute) && t.weekday() == *day && (t.day() - 1) / 7 + 1 == *n,
            Rule::EveryHours { step, minute } => m == *minute && h % step == 0,
        }
    }

    /// The schedule's cadence in the API's terms.
    fn cadence(&self) -> Value {
        match self {
            Rule::Hourly { minute } => json!({"kind": "HOURLY", "minute": minute}),
            Rule::Daily { hour, minute } => {
                json!({"kind": "DAILY", "hour": hour, "minute": minute})
            }
            Rule::Weekly { days, hour, minute } => {
                let names: Vec<&str> = days
                    .iter()
                    .map(|d| {
                        WEEKDAYS
                            .iter()
                            .find(|(_, w)| w == d)
                            .map_or("?", |(n, _)| n)
                    })
                    .collect();
                json!({"kind": "WEEKLY", "weekdays": names, "hour": hour, "minute": minute})
            }
            Rule::Monthly { day, hour, minute } => json!({"kind": "MONTHLY",
                "dayOfMonth": day.map_or(json!("LAST"), |d| json!(d)), "hour": hour, "minute": minute}),
            Rule::Weekdays { hour, minute } => {
                json!({"kind": "CRON", "expression": format!("{minute} {hour} * * MON-FRI")})
            }
            Rule::HourRange { from, to, minute } => {
                json!({"kind": "CRON", "expression": format!("{minute} {from}-{to} * * *")})
            }
            Rule::LastDay { hour, minute } => {
                json!({"kind": "CRON", "expression": format!("{minute} {hour} L * *")})
            }
            Rule::NthWeekday {
                day,
                n,
                hour,
                minute,
            } => {
                let name = WEEKDAYS
                    .iter()
                    .find(|(_, w)| w == day)
                    .map_or("?", |(n, _)| n);
                json!({"kind": "CRON", "expression": format!("{minute} {hour} * * {name}#{n}")})
            }
            Rule::EveryHours { step, minute } => {
                json!({"kind": "CRON", "expression": format!("{minute} */{step} * * *")})
            }
        }
    }

    /// Fires more than once on some day (the plan's twelve-per-project limit).
    fn hourly(&self) -> bool {
        matches!(
            self,
            Rule::Hourly { .. } | Rule::HourRange { .. } | Rule::EveryHours { .. }
        )
    }
}

/// A deterministic mix of every cadence kind, weighted so that the run count stays
/// proportionate (mostly weekly and monthly; per 500 schedules one hourly, two every few
/// hours, four in the 01:00–03:59 range), hours and minutes chosen to land in DST gaps and
/// repeated hours often.
fn rule(i: usize) -> Rule {
    let minutes = [0, 15, 30, 45, 5, 59];
    let minute = minutes[i % minutes.len()];
    let hour = [2, 1, 3, 9, 0, 23, 12, 2][(i / 3) % 8];
    let day = WEEKDAYS[(i / 5) % 7].1;
    match i % 500 {
        0 => Rule::Hourly { minute },
        1..=2 => Rule::EveryHours {
            step: [6, 8][i % 2],
            minute,
        },
        3..=6 => Rule::HourRange {
            from: 1,
            to: 3,
            minute,
        },
        7..=18 => Rule::Daily { hour, minute },
        19..=30 => Rule::Weekdays { hour, minute },
        31..=370 => Rule::Weekly {
            days: if i.is_multiple_of(10) {
                vec![day, WEEKDAYS[(i / 5 + 3) % 7].1]
            } else {
                vec![day]
            },
            hour,
            minute,
        },
        371..=470 => Rule::Monthly {
            day: match i % 7 {
                0 => None,
                1 => Some(31),
                2 => Some(29),
                _ => Some(1 + (i as u32 * 7) % 28),
            },
            hour,
            minute,
        },
        471..=485 => Rule::LastDay { hour, minute },
        _ => Rule::NthWeekday {
            day,
            n: 1 + (i as u32 / 3) % 4,
            hour,
            minute,
        },
    }
}

/// The reference: every local minute of the window in the schedule's timezone, in UTC
/// order; a local time seen before (the repeated hour when clocks go back) does not fire
/// again, and a local time that never occurs (the gap when they go forward) is never seen.
/// Independent of the product's fire-time code by construction.
fn reference_fires(
    rules: &[(Rule, Tz)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<BTreeSet<DateTime<Utc>>> {
    let mut by_tz: HashMap<Tz, Vec<(DateTime<Utc>, NaiveDateTime)>> = HashMap::new();
    for (_, tz) in rules {
        by_tz.entry(*tz).or_insert_with(|| {
            let mut seen = HashSet::new();
            let mut minutes = Vec::new();
            // Fires are on whole minutes strictly after `from`.
            let mut t = Utc
                .timestamp_opt(from.timestamp() - from.timestamp().rem_euclid(60) + 60, 0)
                .single()
                .expect("minute");
            while t <= to {
                let local = t.with_timezone(tz).naive_local();
                if seen.insert(local) {
                    minutes.push((t, local));
                }
                t += Duration::minutes(1);
            }
            minutes
        });
    }
    rules
        .iter()
        .map(|(rule, tz)| {
            by_tz[tz]
                .iter()
                .filter(|(_, local)| rule.fires(*local))
                .map(|(utc, _)| *utc)
                .collect()
        })
        .collect()
}

// ------------------------------------------------------------------------------ faults

#[derive(Default)]
struct FaultCounts {
    write_failed_before: AtomicU64,
    write_failed_after: AtomicU64,
    crashes: AtomicU64,
    redeliveries: AtomicU64,
    restarts: AtomicU64,
}

/// A deterministic "random" decision: true for `per_mille` of the calls.
fn roll(counter: &AtomicU64, salt: u64, per_mille: u64) -> bool {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x % 1000 < per_mille
}

/// The run store with injected write errors: a few writes fail before they reach the
/// store, a few fail after they landed (a timeout the caller cannot tell from a failure).
struct FaultyRuns {
    inner: Arc<dyn RunStore>,
    calls: AtomicU64,
    faults: Arc<FaultCounts>,
}

const WRITE_FAILS_BEFORE_PER_MILLE: u64 = 20;
const WRITE_FAILS_AFTER_PER_MILLE: u64 = 10;

impl FaultyRuns {
    fn before(&self) -> Result<(), PortError> {
        if roll(&self.calls, 1, WRITE_FAILS_BEFORE_PER_MILLE) {
            self.faults
                .write_failed_before
                .fetch_add(1, Ordering::Relaxed);
            return Err(PortError::unavailable("injected: write refused"));
        }
        Ok(())
    }

    fn after<T>(&self, result: Result<T, PortError>) -> Result<T, PortError> {
        if result.is_ok() && roll(&self.calls, 2, WRITE_FAILS_AFTER_PER_MILLE) {
            self.faults
                .write_failed_after
                .fetch_add(1, Ordering::Relaxed);
            return Err(PortError::unavailable(
                "injected: write landed, answer lost",
            ));
        }
        result
    }
}

#[async_trait]
impl RunStore for FaultyRuns {
    async fn create_run_if_absent(&self, run: &Run) -> Result<RunCreated, PortError> {
        self.before()?;
        let result = self.inner.create_run_if_absent(run).await;
        self.after(result)
    }
    /// The store's own batch write (one SQLite transaction), refused or answered as a
    /// whole, as one write is.
    async fn create_runs_if_absent(&self, runs: &[Run]) -> Vec<Result<RunCreated, PortError>> {
        if let Err(e) = self.before() {
            return vec![Err(e); runs.len()];
        }
        let created = self.inner.create_runs_if_absent(runs).await;
        match self.after(Ok(())) {
            Ok(()) => created,
            Err(e) => vec![Err(e); runs.len()],
        }
    }
    async fn get_run(&self, workspace_id: &str, run_id: &str) -> Result<Option<Run>, PortError> {
        self.inner.get_run(workspace_id, run_id).await
    }
    async fn list_schedule_runs(
        &self,
        workspace_id: &str,
        schedule_id: &str,
        as_of: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Run>, PortError> {
        self.inner
            .list_schedule_runs(workspace_id, schedule_id, as_of, page)
            .await
    }
    async fn last_fire_times(&self) -> Result<Vec<(String, DateTime<Utc>)>, PortError> {
        self.inner.last_fire_times().await
    }
    async fn update_run(&self, run: &Run, expected: RunGuard) -> Result<(), PortError> {
        self.before()?;
        let result = self.inner.update_run(run, expected).await;
        self.after(result)
    }
    async fn list_project_runs(
        &self,
        workspace_id: &str,
        project_id: &str,
        filter: &RunFilter,
        as_of: DateTime<Utc>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Run>, PortError> {
        self.inner
            .list_project_runs(workspace_id, project_id, filter, as_of, offset, limit)
            .await
    }
    async fn list_active_runs(&self, page: &PageRequest) -> Result<Page<Run>, PortError> {
        self.inner.list_active_runs(page).await
    }
    async fn purge_expired_runs(&self, as_of: DateTime<Utc>, limit: u32) -> Result<u64, PortError> {
        self.inner.purge_expired_runs(as_of, limit).await
    }
}

const CRASH_PER_MILLE: u64 = 30;
const REDELIVER_PER_MILLE: u64 = 50;

/// The embedded deployment with its timer, dispatch and executor running over the faulty
/// run store, and an executor pool that crashes and redelivers.
struct Deployment {
    app: TestApp,
    timer: tokio::task::JoinHandle<()>,
    executor: Arc<ExecutorService>,
    receiver: LocalRunReceiver,
    executing: JoinSet<()>,
    in_flight: Arc<AtomicUsize>,
    decisions: AtomicU64,
    faults: Arc<FaultCounts>,
}

/// Decrements the in-flight count however the execution ends (also when aborted).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Deployment {
    async fn start(app: TestApp, faults: Arc<FaultCounts>) -> Deployment {
        let e = &app.embedded;
        let runs: Arc<dyn RunStore> = Arc::new(FaultyRuns {
            inner: Arc::new(e.store.clone()),
            calls: AtomicU64::new(0),
            faults: faults.clone(),
        });
        let d = &e.state.dispatch;
        // The executor's run path composed over the faulty run store, so the start and the
        // end of every run meet the injected write errors too. Dispatch reads through the
        // store's own batched `load_fires` and writes through the faulty run store.
        let store = Arc::new(e.store.clone());
        let path = Arc::new(ComposedRunPath {
            workspaces: store.clone(),
            projects: store.clone(),
            schedules: store.clone(),
            runs: runs.clone(),
            connections: store.clone(),
            results: store.clone(),
            cache: store.clone(),
        });
        let dispatch = Arc::new(DispatchService {
            path: store,
            projects: d.projects.clone(),
            schedules: d.schedules.clone(),
            runs: runs.clone(),
            queue: d.queue.clone(),
            events: d.events.clone(),
            clock: d.clock.clone(),
            settings: d.settings,
        });
        let x = &e.executor;
        let executor = Arc::new(ExecutorService {
            path,
            runs,
            cache: x.cache.clone(),
            connectors: x.connectors.clone(),
            secrets: x.secrets.clone(),
            events: x.events.clone(),
            clock: x.clock.clone(),
            settings: x.settings.clone(),
            plans: Default::default(),
        });
        e.timer.load(&e.store, &e.store).await.expect("timer load");
        let timer = tokio::spawn(e.timer.clone().run(dispatch));
        let receiver = e.take_run_receiver().expect("receiver");
        Deployment {
            app,
            timer,
            executor,
            receiver,
            executing: JoinSet::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            decisions: AtomicU64::new(0),
            faults,
        }
    }

    /// Hands every queued message to the executor: some twice at once (redelivery), some
    /// to an executor that dies part-way (crash).
    fn pump(&mut self) {
        while let Some(message) = self.receiver.try_recv() {
            let redeliver = roll(&self.decisions, 3, REDELIVER_PER_MILLE);
            let crash = roll(&self.decisions, 4, CRASH_PER_MILLE);
            if redeliver {
                self.faults.redeliveries.fetch_add(1, Ordering::Relaxed);
                self.execute(message.clone(), None);
            }
            let crash_after = crash.then(|| {
                self.faults.crashes.fetch_add(1, Ordering::Relaxed);
                // Anywhere from before the start to the end of the cells.
                StdDuration::from_micros(self.decisions.fetch_add(1, Ordering::Relaxed) % 4_000)
            });
            self.execute(message, crash_after);
        }
        while self.executing.try_join_next().is_some() {}
    }

    fn execute(&mut self, message: RunMessage, crash_after: Option<StdDuration>) {
        let executor = self.executor.clone();
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        self.executing.spawn(async move {
            let _guard = guard;
            let run = executor.execute(&message);
            match crash_after {
                // The executor dies: the future is dropped wherever it is.
                Some(after) => {
                    let _ = tokio::time::timeout(after, run).await;
                }
                None => {
                    // An error leaves the run to the sweeper, as in `run_workers`.
                    let _ = run.await;
                }
            }
        });
    }

    fn timer_quiet(&self, ids: &[String]) -> bool {
        let now = self.app.clock.now();
        ids.iter().all(|id| {
            self.app
                .embedded
                .timer
                .next_fire(id)
                .is_none_or(|t| t > now)
        })
    }

    /// Lets everything due at the current instant happen: dispatches (with their backoff
    /// retries, a simulated second at a time), executions, and nothing left queued.
    async fn settle(&mut self, ids: &[String], limit: DateTime<Utc>) {
        let mut quiet = 0;
        for round in 0..200_000u32 {
            self.pump();
            let idle = self.in_flight.load(Ordering::SeqCst) == 0 && self.timer_quiet(ids);
            if idle {
                quiet += 1;
                if quiet >= 3 {
                    return;
                }
            } else {
                quiet = 0;
            }
            // Spin briefly first: most instants settle within a few polls.
            if round < 50 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(StdDuration::from_millis(1)).await;
            }
            // A failed dispatch waits for its backoff in simulated time.
            if round >= 50 && round % 20 == 0 && self.app.clock.now() + Duration::seconds(1) < limit
            {
                self.app.clock.advance(Duration::seconds(1));
            }
        }
        panic!("the deployment did not settle at {}", self.app.clock.now());
    }

    /// Faults injected so far (a change means the sweeper may have work).
    fn fault_total(&self) -> u64 {
        let f = &self.faults;
        f.write_failed_before.load(Ordering::Relaxed)
            + f.write_failed_after.load(Ordering::Relaxed)
            + f.crashes.load(Ordering::Relaxed)
            + f.redeliveries.load(Ordering::Relaxed)
            + f.restarts.load(Ordering::Relaxed)
    }

    async fn has_active_runs(&self) -> bool {
        !self
            .app
            .embedded
            .store
            .list_active_runs(&PageRequest::first(1))
            .await
            .expect("active runs")
            .items
            .is_empty()
    }

    async fn sweep(&self) {
        // The sweeper is the product's; it reads and writes the real store.
        let _ = self.app.embedded.maintenance.sweep().await;
    }

    /// Kills everything in flight and opens the deployment again on the same data.
    async fn restart(mut self) -> Deployment {
        self.faults.restarts.fetch_add(1, Ordering::Relaxed);
        self.timer.abort();
        self.executing.abort_all();
        while self.executing.join_next().await.is_some() {}
        let _ = (&mut self.timer).await;
        let faults = self.faults.clone();
        let app = self.app.restart();
        Deployment::start(app, faults).await
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_days_of_a_thousand_schedules_under_faults_fire_exactly_once() {
    let started = Instant::now();
    let days = env_usize("SOAK_DAYS", 60) as i64;
    let n_schedules = env_usize("SOAK_SCHEDULES", 1_000);
    // Just past a whole minute, so no fire coincides with the creation of the schedules;
    // the window holds the March and April transitions of both hemispheres.
    let from = Utc
        .with_ymd_and_hms(2026, 2, 20, 0, 0, 30)
        .single()
        .expect("start");
    let to = from + Duration::days(days);
    let dir = tempfile::tempdir().expect("tempdir");
    let app = TestApp::open(dir, from);
    app.workspace("w", Plan::Enterprise).await;
    let owner = app.token("owner", "w", WorkspaceRole::Member);
    // One cheap cell: the soak is about scheduling and recovery, not SQL.
    let version = json!({"cells": [{"id": "one", "type": "SQL", "connection": "warehouse",
        "sql": "SELECT 1 AS n"}], "app": {"cells": ["one"]}});

    // Schedules, at most twelve hourly ones per project.
    let mut rules = Vec::new();
    let mut ids = Vec::new();
    let mut project = String::new();
    let mut hourly_in_project = 12;
    let mut in_project = 50;
    for i in 0..n_schedules {
        let rule = rule(i);
        let tz: Tz = TIMEZONES[(i * 7 + i / 12) % TIMEZONES.len()]
            .parse()
            .expect("timezone");
        if in_project == 50 || (rule.hourly() && hourly_in_project == 12) {
            project = app.project(&owner).await;
            let p = &project;
            let r = app
                .put(
                    &format!("/api/v1/projects/{p}/draft"),
                    &owner,
                    version.clone(),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            let r = app
                .post(&format!("/api/v1/projects/{p}/publish"), &owner, json!({}))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            (in_project, hourly_in_project) = (0, 0);
        }
        let r = app
            .post(
                &format!("/api/v1/projects/{project}/schedules"),
                &owner,
                json!({"cadence": rule.cadence(), "timezone": tz.name(),
                       "overlapPolicy": if i % 3 == 0 { "SKIP" } else { "ALLOW" },
                       "updatePublishedResults": i % 5 == 0}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{rule:?} {tz}: {}", r.body);
        ids.push(r.body["scheduleId"].as_str().expect("id").to_owned());
        rules.push((rule.clone(), tz));
        in_project += 1;
        hourly_in_project += usize::from(rule.hourly());
    }
    let created = started.elapsed();

    let expected = reference_fires(&rules, from, to);
    let total_expected: usize = expected.iter().map(BTreeSet::len).sum();
    // Every fire instant; recovery instants are added as the run goes (below).
    let mut ticks: BTreeSet<DateTime<Utc>> = expected.iter().flatten().copied().collect();
    ticks.insert(to);
    // Restarts at five instants spread over the window, each right after the clock moved
    // onto a fire instant, before anything due was settled.
    let fire_instants: Vec<DateTime<Utc>> = expected
        .iter()
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let restart_at: BTreeSet<DateTime<Utc>> = (1..=5)
        .map(|k| fire_instants[fire_instants.len() * k / 6])
        .collect();

    let faults = Arc::new(FaultCounts::default());
    let mut d = Deployment::start(app, faults.clone()).await;
    let mut steps = 0;
    // Instants at which the sweeper runs: two minutes after any fault, and again while
    // runs stay active (what its 30-second loop would find by then).
    let mut recovery: BTreeSet<DateTime<Utc>> = BTreeSet::new();
    while let Some(t) = ticks.pop_first() {
        steps += 1;
        let limit = ticks.first().copied().unwrap_or(to + Duration::hours(1));
        d.app.clock.set(t);
        let faults_before = d.fault_total();
        if restart_at.contains(&t) {
            // Let the timer pick the fires up and the executors start, then pull the plug.
            tokio::time::sleep(StdDuration::from_millis(3)).await;
            d.pump();
            tokio::time::sleep(StdDuration::from_millis(2)).await;
            d = d.restart().await;
        }
        let sweeping = recovery.remove(&t);
        if sweeping {
            d.sweep().await;
        }
        d.settle(&ids, limit).await;
        if (sweeping || d.fault_total() != faults_before) && d.has_active_runs().await {
            let again = t + Duration::minutes(2);
            if again < to {
                ticks.insert(again);
                recovery.insert(again);
            }
        }
    }
    // The window is over: stop firing, and let the sweeper finish what the faults left
    // (a lease to run out, a lost message to go stale) for half an hour, minute by minute.
    d.timer.abort();
    for _ in 0..30 {
        d.app.clock.advance(Duration::minutes(1));
        d.sweep().await;
        let limit = d.app.clock.now() + Duration::minutes(1);
        d.settle(&[], limit).await;
    }

    // What the store holds.
    let store = &d.app.embedded.store;
    let now = d.app.clock.now();
    let mut got: Vec<BTreeSet<DateTime<Utc>>> = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut not_terminal = Vec::new();
    let mut retried = 0;
    for id in &ids {
        let mut fires = BTreeSet::new();
        let mut page = PageRequest::first(1_000);
        loop {
            let batch = store
                .list_schedule_runs("w", id, now, &page)
                .await
                .expect("run log");
            for run in batch.items {
                assert_eq!(run.run_trigger, RunTrigger::Scheduled);
                let at = run.scheduled_for.expect("scheduledFor");
                assert!(fires.insert(at), "two runs for {id} at {at}");
                let key = match run.skip_reason {
                    Some(reason) => format!("SKIPPED {}", reason.as_str()),
                    None => match &run.error {
                        Some(e) => format!("{} {}", run.status.as_str(), e.code),
                        None => run.status.as_str().to_owned(),
                    },
                };
                *by_status.entry(key).or_default() += 1;
                if !run.status.is_terminal() {
                    not_terminal.push(format!("{} {:?} {at}", run.run_id, run.status));
                }
                if run.attempt > 1 {
                    retried += 1;
                }
            }
            match batch.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        got.push(fires);
    }
    let total_got: usize = got.iter().map(BTreeSet::len).sum();
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    for (i, (want, have)) in expected.iter().zip(&got).enumerate() {
        for t in want.difference(have) {
            missing.push(format!("{:?} {} at {t}", rules[i].0, rules[i].1));
        }
        for t in have.difference(want) {
            extra.push(format!("{:?} {} at {t}", rules[i].0, rules[i].1));
        }
    }
    let f = &faults;
    println!(
        "soak: {n_schedules} schedules in {} timezones, {days} simulated days ({} to {}), \
         {steps} clock steps; schedules created in {:.1?}, total {:.1?}",
        TIMEZONES.len(),
        from,
        to,
        created,
        started.elapsed()
    );
    println!(
        "soak: reference fires {total_expected}, runs created {total_got}, missing {}, \
         extra {}, not terminal {}, runs started more than once {retried}",
        missing.len(),
        extra.len(),
        not_terminal.len()
    );
    println!("soak: runs by outcome {by_status:?}");
    println!(
        "soak: faults injected: {} writes refused, {} writes landed but reported failed, \
         {} executor crashes, {} duplicate deliveries, {} process restarts",
        f.write_failed_before.load(Ordering::Relaxed),
        f.write_failed_after.load(Ordering::Relaxed),
        f.crashes.load(Ordering::Relaxed),
        f.redeliveries.load(Ordering::Relaxed),
        f.restarts.load(Ordering::Relaxed),
    );
    assert!(
        missing.is_empty() && extra.is_empty(),
        "runs differ from the reference: missing {:?}…, extra {:?}…",
        &missing[..missing.len().min(20)],
        &extra[..extra.len().min(20)]
    );
    assert!(not_terminal.is_empty(), "{not_terminal:?}");
    // Crashed runs are retried within minutes, never left to time out (each run takes
    // milliseconds; a dropped execution must not keep its lease alive).
    assert!(
        !by_status.keys().any(|k| k.contains("TIMEOUT")),
        "{by_status:?}"
    );
    assert!(retried > 0, "crashed runs were started again");
    assert_eq!(total_got, total_expected);
    // The faults really happened (the figures above are not zeros).
    assert!(f.write_failed_before.load(Ordering::Relaxed) > 0);
    assert!(f.write_failed_after.load(Ordering::Relaxed) > 0);
    assert!(f.crashes.load(Ordering::Relaxed) > 0);
    assert!(f.redeliveries.load(Ordering::Relaxed) > 0);
    assert_eq!(f.restarts.load(Ordering::Relaxed), 5);
    assert!(n_schedules >= 1_000 || std::env::var("SOAK_SCHEDULES").is_ok());
    assert!(days >= 60 || std::env::var("SOAK_DAYS").is_ok());
}
