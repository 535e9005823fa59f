//! Requirement 5: the local scheduler with 100,000 enabled schedules.
//!
//! `cargo bench -p scheduled-runs-benches --bench scheduler`
//! (`SCHEDULER_BENCH_SCHEDULES` changes the 100,000; `SCHEDULER_BENCH_MINUTES` how many of
//! the hour's minutes scenario (a) runs, 60 by default; `SCHEDULER_BENCH_BURSTS` how many
//! times (b) runs, each on a fresh store, 1 by default; `SCHEDULER_BENCH_ONLY_BURST` runs
//! (b) alone, to compare two builds on it; `SCHEDULER_BENCH_CONCURRENCY`,
//! `SCHEDULER_BENCH_BATCH` and `SCHEDULER_BENCH_FIRST_BATCH` override the timer's
//! `TimerSettings` of the same names, to try other settings without a rebuild.)
//!
//! The real embedded deployment (`Embedded::open`: SQLite store in a temporary directory,
//! `LocalTimer`, `DispatchService`, in-process run queue) on a clock that runs at wall-clock
//! pace but skips the idle stretch before each fire (`SkippingClock`): everything between
//! the fire's instant and the run being recorded happens in real time. Two latenesses are
//! taken for every fire:
//!
//! * **fired**: when the timer hands the fire to dispatch (the timer's `FireDispatch`
//!   seam, wrapped here to note the time before passing the fires on);
//! * **recorded**: when the run's message arrives on the run queue, which dispatch sends
//!   only after the run record was committed.
//!
//! Runs are not executed (the executor pool is not started), so the figures are the
//! scheduler's and dispatch's alone. The clock skips the idle stretch before a minute, but
//! what the process does in the background in such a stretch (the store checkpointing the
//! writes before it: of the schedules, or of the previous minute's runs) is let finish
//! first (`settle`), as it would in the real stretch, instead of running beside the fires.
//!
//! (a) schedules spread over an hour: `HOURLY` at minute `i % 60`, so about 1,667 fire on
//!     every minute; (b) all due in the same minute; (c) resident memory per schedule and
//!     (d) restart time, measured in a fresh process (this binary re-executed) that opens the
//!     store of (a) and loads every schedule into the timer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use chrono::{Duration, DurationRound, Timelike};
use scheduled_runs::adapters::local::timer::FireDispatch;
use scheduled_runs::demo;
use scheduled_runs::domain::cadence::Cadence;
use scheduled_runs::domain::model::{OverlapPolicy, ProjectRole, Schedule};
use scheduled_runs::embedded::{Embedded, EmbeddedConfig};
use scheduled_runs::ports::{Clock, ScheduleLimits, ScheduleStore};
use scheduled_runs::services::ServiceError;
use scheduled_runs::services::dispatch::{DispatchOutcome, DispatchService, ScheduledFire};
use scheduled_runs_benches::{
    SkippingClock, cpu_time, env_usize, machine, ms, percentile, rss_bytes, settle,
};

fn config(dir: &Path) -> EmbeddedConfig {
    let mut config = EmbeddedConfig::new(
        dir.to_path_buf(),
        "http://localhost:8080".into(),
        b"bench-secret".to_vec(),
    );
    let timer = &mut config.timer;
    timer.concurrency = env_usize("SCHEDULER_BENCH_CONCURRENCY", timer.concurrency);
    timer.batch = env_usize("SCHEDULER_BENCH_BATCH", timer.batch);
    timer.first_batch = env_usize("SCHEDULER_BENCH_FIRST_BATCH", timer.first_batch);
    config
}

/// Schedules per project. The store checks plan limits by counting a project's schedules
/// when one is created, so one project with 100,000 schedules would measure that count
/// rather than the scheduler; real projects have a handful.
const SCHEDULES_PER_PROJECT: usize = 100;

/// Opens a deployment in `dir` with the demo workspace, `n / SCHEDULES_PER_PROJECT`
/// published projects (the demo app) and `n` schedules on them, schedule `i` firing hourly
/// at minute `minute_of(i)`. The schedules are stamped as changed at the next whole hour,
/// and the clock is then moved there, so that nothing falls due while they are stored and
/// loaded (the timer resumes a schedule from its last change): the first fire is a minute
/// after the clock's time when this returns.
async fn populate(
    dir: &Path,
    n: usize,
    minute_of: impl Fn(usize) -> i64,
) -> (Embedded, Arc<SkippingClock>, HashMap<i64, usize>) {
    let clock = Arc::new(SkippingClock::default());
    let embedded = Embedded::open(&config(dir), clock.clone()).unwrap();
    let seed = embedded.seed_demo().await.unwrap();
    let started = Instant::now();
    let mut projects = Vec::new();
    for p in 0..n.div_ceil(SCHEDULES_PER_PROJECT) {
        let projects_service = &embedded.state.projects;
        let project = projects_service
            .create(&seed.admin, &format!("project {p}"), None)
            .await
            .unwrap();
        let id = project.project.project_id;
        projects_service
            .put_draft(&seed.admin, &id, &demo::version())
            .await
            .unwrap();
        projects_service.publish(&seed.admin, &id).await.unwrap();
        projects.push(id);
    }
    let now = clock.now().duration_trunc(Duration::hours(1)).unwrap() + Duration::hours(1);
    let mut per_minute: HashMap<i64, usize> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let minute = minute_of(i);
        *per_minute.entry(minute).or_default() += 1;
        let schedule = Schedule {
            schedule_id: format!("s{i:07}"),
            project_id: projects[i / SCHEDULES_PER_PROJECT].clone(),
            workspace_id: seed.admin.workspace_id.clone(),
            created_by: seed.admin.user_id.clone(),
            creator_role: ProjectRole::FullAccess,
            cadence: Cadence::Hourly { minute },
            timezone: "UTC".into(),
            enabled: true,
            update_published_results: true,
            use_cached_sql_results: false,
            overlap_policy: OverlapPolicy::Skip,
            hourly: true,
            created_at: now,
            updated_at: now,
            version: 1,
            notifications: Default::default(),
        };
        let store = embedded.store.clone();
        tasks.spawn(async move {
            store
                .insert_schedule(&schedule, &ScheduleLimits::default())
                .await
        });
        if tasks.len() >= 256 {
            tasks.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    eprintln!(
        "  {} projects and {n} schedules stored in {:.1} s",
        projects.len(),
        started.elapsed().as_secs_f64()
    );
    clock.skip_to(now);
    (embedded, clock, per_minute)
}

/// The dispatch service, noting how late each fire is when the timer hands it over.
struct ObservedDispatch {
    inner: Arc<DispatchService>,
    clock: Arc<SkippingClock>,
    fired: Mutex<Vec<StdDuration>>,
}

#[async_trait]
impl FireDispatch for ObservedDispatch {
    async fn dispatch(
        &self,
        fires: &[ScheduledFire],
    ) -> Vec<Result<DispatchOutcome, ServiceError>> {
        let now = self.clock.now();
        self.fired.lock().unwrap().extend(
            fires
                .iter()
                .map(|f| (now - f.scheduled_for).to_std().unwrap_or_default()),
        );
        self.inner.dispatch(fires).await
    }
}

/// Both latenesses of every fire, sorted, and the CPU time the process spent from each
/// skip to the minute's last message (not while settling between minutes).
struct Lateness {
    fired: Vec<StdDuration>,
    recorded: Vec<StdDuration>,
    cpu: StdDuration,
}

/// Skips to just before each of the next `minutes` minute boundaries and measures, for every
/// fire at that boundary, how late it was handed to dispatch and how late its run's message
/// arrived.
async fn fire_minutes(
    embedded: &Embedded,
    clock: &Arc<SkippingClock>,
    per_minute: &HashMap<i64, usize>,
    minutes: usize,
) -> Lateness {
    let mut receiver = embedded.take_run_receiver().unwrap();
    let load_started = Instant::now();
    // What `Embedded::start_timer` does, with the observed dispatch.
    embedded
        .timer
        .load(&embedded.store, &embedded.store)
        .await
        .unwrap();
    let observed = Arc::new(ObservedDispatch {
        inner: embedded.state.dispatch.clone(),
        clock: clock.clone(),
        fired: Mutex::default(),
    });
    let timer = tokio::spawn(embedded.timer.clone().run(observed.clone()));
    eprintln!(
        "  timer loaded in {:.2} s",
        load_started.elapsed().as_secs_f64()
    );
    let mut lateness = Vec::new();
    let mut cpu = StdDuration::ZERO;
    let mut boundary = clock.now().duration_trunc(Duration::minutes(1)).unwrap();
    let mut done = 0;
    while done < minutes {
        boundary += Duration::minutes(1);
        let expected = per_minute
            .get(&i64::from(boundary.minute()))
            .copied()
            .unwrap_or(0);
        if expected == 0 {
            continue;
        }
        settle(StdDuration::from_secs(30)).await;
        let cpu_before = cpu_time();
        clock.skip_to(boundary - Duration::milliseconds(100));
        for _ in 0..expected {
            let message = tokio::time::timeout(StdDuration::from_secs(600), receiver.recv())
                .await
                .expect("every fire of the minute is dispatched within 10 minutes")
                .unwrap();
            let late = clock.now() - boundary;
            assert!(message.schedule_id.is_some());
            lateness.push(late.to_std().unwrap_or_default());
        }
        cpu += cpu_time().saturating_sub(cpu_before);
        done += 1;
    }
    timer.abort();
    let mut fired = std::mem::take(&mut *observed.fired.lock().unwrap());
    fired.sort();
    lateness.sort();
    Lateness {
        fired,
        recorded: lateness,
        cpu,
    }
}

fn report(name: &str, lateness: &Lateness) {
    for (what, figures) in [
        ("handed to dispatch", &lateness.fired),
        ("recorded", &lateness.recorded),
    ] {
        println!(
            "{name}: {} fires {what}; lateness p50 {}, p99 {}, max {}",
            figures.len(),
            ms(percentile(figures, 50.0)),
            ms(percentile(figures, 99.0)),
            ms(*figures.last().unwrap()),
        );
    }
    // Both cores' time (the process's user + system time): what recording costs, apart
    // from how it overlaps.
    let fires = lateness.recorded.len().max(1) as f64;
    println!(
        "{name}: CPU time while firing {} ({:.1} µs per fire)",
        ms(lateness.cpu),
        lateness.cpu.as_secs_f64() * 1e6 / fires,
    );
}

/// (c) and (d), in a fresh process: open the store of (a) and load every schedule.
async fn restart(dir: PathBuf) {
    let process_start = Instant::now();
    let rss_before = rss_bytes();
    let clock: Arc<dyn Clock> = Arc::new(SkippingClock::default());
    let opened = Instant::now();
    let embedded = Embedded::open(&config(&dir), clock).unwrap();
    let open_time = opened.elapsed();
    let rss_open = rss_bytes();
    let loaded = Instant::now();
    let _timer = embedded.start_timer().await.unwrap();
    let load_time = loaded.elapsed();
    let ready = process_start.elapsed();
    let cpu = cpu_time();
    let rss_loaded = rss_bytes();
    let n = embedded.timer.len();
    println!(
        "(d) restart: {n} schedules ready to fire {} after main() (open {}, load {}; CPU time of the process so far {})",
        ms(ready),
        ms(open_time),
        ms(load_time),
        ms(cpu),
    );
    println!(
        "(c) memory: RSS {:.1} MiB at start, {:.1} MiB with the store open, {:.1} MiB with {n} schedules loaded: {:.0} bytes per schedule",
        rss_before as f64 / 1048576.0,
        rss_open as f64 / 1048576.0,
        rss_loaded as f64 / 1048576.0,
        (rss_loaded.saturating_sub(rss_open)) as f64 / n.max(1) as f64,
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let [mode, dir] = args.as_slice()
        && mode == "restart"
    {
        restart(PathBuf::from(dir)).await;
        return;
    }
    let n = env_usize("SCHEDULER_BENCH_SCHEDULES", 100_000);
    let minutes = env_usize("SCHEDULER_BENCH_MINUTES", 60).min(60);
    let burst_runs = env_usize("SCHEDULER_BENCH_BURSTS", 1);
    println!("machine: {}", machine());
    if std::env::var_os("SCHEDULER_BENCH_ONLY_BURST").is_some() {
        for _ in 0..burst_runs {
            same_minute(n).await;
        }
        return;
    }

    let spread_dir = tempfile::tempdir().unwrap();
    eprintln!("(a) {n} schedules spread over the hour");
    let (embedded, clock, per_minute) = populate(spread_dir.path(), n, |i| (i % 60) as i64).await;
    let lateness = fire_minutes(&embedded, &clock, &per_minute, minutes).await;
    report(
        &format!("(a) spread over an hour ({minutes} minutes of it)"),
        &lateness,
    );
    drop(embedded);

    // A fresh process measures restart time and memory.
    let spawned = Instant::now();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("restart")
        .arg(spread_dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    println!(
        "(d) restart child process: exec to exit {}",
        ms(spawned.elapsed())
    );

    for _ in 0..burst_runs {
        same_minute(n).await;
    }
}

/// Scenario (b) on a fresh store: every schedule due at the next whole hour.
async fn same_minute(n: usize) {
    let same_dir = tempfile::tempdir().unwrap();
    eprintln!("(b) {n} schedules due in the same minute");
    let (embedded, clock, _) = populate(same_dir.path(), n, |_| 0).await;
    let lateness = fire_minutes(&embedded, &clock, &HashMap::from([(0, n)]), 1).await;
    report("(b) all due in the same minute", &lateness);
}
