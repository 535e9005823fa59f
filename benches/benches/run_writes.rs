//! The writer's side of requirement 5(b): what recording a burst of scheduled runs costs
//! the embedded store alone, without the timer, the reads and the queue around it.
//!
//! `cargo bench -p scheduled-runs-benches --bench run_writes`
//! (`RUN_WRITES_RUNS` runs, 100,000 by default, in batches of `RUN_WRITES_BATCH`, 10,000,
//! as the local timer hands them over; `RUN_WRITES_ROUNDS` fresh stores, 5;
//! `RUN_WRITES_DROP_INDEXES=runs_active,…` drops those indexes of `runs` first, to see
//! what each costs a burst.)
//!
//! Each round opens a fresh embedded store, creates 1,000 projects, builds the runs a burst
//! of fires makes (ids derived from schedule and fire time, as dispatch derives them, on
//! 100 schedules per project) and times `RunStore::create_runs_if_absent` batch after
//! batch, one at a time, as dispatch's single writer takes them. The single writer is the
//! longest path of the burst in (b), so this is the figure an insert-side change moves;
//! unlike (b), nothing else competes for the two cores, so two builds compare within a few
//! per cent.

use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, DurationRound, Utc};
use scheduled_runs::domain::model::{Run, RunStatus, RunTrigger, StateEvent};
use scheduled_runs::embedded::{Embedded, EmbeddedConfig};
use scheduled_runs::ports::{RunCreated, RunStore, SystemClock};
use scheduled_runs_benches::{cpu_time, env_usize, machine, percentile};

const SCHEDULES_PER_PROJECT: usize = 100;

/// One round on a fresh store: wall time and CPU time of writing every batch.
async fn round(runs: usize, batch: usize) -> (StdDuration, StdDuration) {
    let dir = tempfile::tempdir().unwrap();
    let config = EmbeddedConfig::new(
        dir.path().to_path_buf(),
        "http://localhost:8080".into(),
        b"bench-secret".to_vec(),
    );
    let embedded = Embedded::open(&config, std::sync::Arc::new(SystemClock)).unwrap();
    let seed = embedded.seed_demo().await.unwrap();
    if let Ok(indexes) = std::env::var("RUN_WRITES_DROP_INDEXES") {
        // A second connection changes the schema; the store's connections see the change
        // and prepare their statements again.
        let conn = rusqlite::Connection::open(dir.path().join("scheduled-runs.db")).unwrap();
        for index in indexes.split(',').filter(|i| !i.is_empty()) {
            conn.execute_batch(&format!("DROP INDEX {index}")).unwrap();
        }
    }
    let mut projects = Vec::new();
    for p in 0..runs.div_ceil(SCHEDULES_PER_PROJECT) {
        let project = embedded
            .state
            .projects
            .create(&seed.admin, &format!("project {p}"), None)
            .await
            .unwrap();
        projects.push(project.project.project_id);
    }
    let now = Utc::now();
    let fire = now.duration_trunc(Duration::minutes(1)).unwrap();
    let all: Vec<Run> = (0..runs)
        .map(|i| {
            let schedule_id = format!("s{i:07}");
            Run {
                run_id: Run::scheduled_run_id(&schedule_id, fire),
                project_id: projects[i / SCHEDULES_PER_PROJECT].clone(),
                workspace_id: seed.admin.workspace_id.clone(),
                schedule_id: Some(schedule_id),
                run_trigger: RunTrigger::Scheduled,
                status: RunStatus::Pending,
                scheduled_for: Some(fire),
                project_version: Some(1),
                created_by: seed.admin.user_id.clone(),
                created_at: now,
                start_time: None,
                end_time: None,
                skip_reason: None,
                update_published_results: true,
                use_cached_sql_results: false,
                input_params: serde_json::Map::new(),
                trace_id: uuid::Uuid::new_v4().simple().to_string(),
                state_events: vec![StateEvent::new("STATUS", RunStatus::Pending.as_str(), now)],
                expires_at: now + Duration::days(90),
                attempt: 0,
                lease_until: None,
                cells: Vec::new(),
                error: None,
                notification_settings: Default::default(),
                event_pending: false,
                notifications: Vec::new(),
            }
        })
        .collect();
    let cpu_before = cpu_time();
    let started = Instant::now();
    for chunk in all.chunks(batch) {
        let created = embedded.store.create_runs_if_absent(chunk).await;
        assert!(
            created.iter().all(|c| matches!(c, Ok(RunCreated::Created))),
            "every run is created"
        );
    }
    (started.elapsed(), cpu_time().saturating_sub(cpu_before))
}

#[tokio::main]
async fn main() {
    let runs = env_usize("RUN_WRITES_RUNS", 100_000);
    let batch = env_usize("RUN_WRITES_BATCH", 10_000).max(1);
    let rounds = env_usize("RUN_WRITES_ROUNDS", 5).max(1);
    println!("machine: {}", machine());
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for r in 0..rounds {
        let (wall, cpu) = round(runs, batch).await;
        let per_run = |d: StdDuration| d.as_secs_f64() * 1e6 / runs as f64;
        println!(
            "round {}: {runs} runs in batches of {batch}: {:.0} ms ({:.2} µs a run), CPU {:.2} µs a run",
            r + 1,
            wall.as_secs_f64() * 1e3,
            per_run(wall),
            per_run(cpu),
        );
        walls.push(wall);
        cpus.push(cpu);
    }
    walls.sort();
    cpus.sort();
    let per_run = |d: StdDuration| d.as_secs_f64() * 1e6 / runs as f64;
    println!(
        "run writes: median of {rounds} rounds {:.0} ms for {runs} runs ({:.2} µs a run, min {:.2}, max {:.2}); CPU {:.2} µs a run",
        percentile(&walls, 50.0).as_secs_f64() * 1e3,
        per_run(percentile(&walls, 50.0)),
        per_run(walls[0]),
        per_run(walls[walls.len() - 1]),
        per_run(percentile(&cpus, 50.0)),
    );
}
