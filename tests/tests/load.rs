//! The local server under sustained concurrent API load while its schedules fire
//! (RELIABILITY.md, requirement 8). The real router is served on a loopback port; client
//! tasks keep one HTTP/1.1 connection each and loop over reads, writes and API runs, as
//! fast as the server answers, for a bounded time; meanwhile a simulated clock moves five
//! minutes every 50 ms, so hourly schedules fire every 0.6 s, and the timer, executor
//! pool and sweeper work beside the API. Asserted: no request fails (every answer is the
//! documented success), no fire is lost or doubled, every run ends, and resident memory
//! stays flat once warm. The figures are printed.
//!
//! `LOAD_SECONDS` and `LOAD_CLIENTS` make it longer or wider:
//! `LOAD_SECONDS=300 LOAD_CLIENTS=32 cargo test -p scheduled-runs-tests --test load -- --nocapture`.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use axum::body::Body;
use chrono::{DateTime, Duration, Utc};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use scheduled_runs::domain::model::{Plan, RunTrigger, WorkspaceRole};
use scheduled_runs::ports::{Clock, PageRequest, RunStore, ScheduleStore};
use scheduled_runs::services::runs::RunRateLimits;
use scheduled_runs_tests::harness::TestApp;
use serde_json::{Value, json};
use tokio::net::TcpStream;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One keep-alive HTTP/1.1 connection to the server.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Body>,
    token: String,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr, token: String) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        Client { sender, token }
    }

    async fn call(&mut self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {}", self.token));
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.sender.ready().await.expect("connection ready");
        let response = self
            .sender
            .send_request(req.body(body).expect("request"))
            .await
            .expect("response");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    failures: AtomicU64,
    runs_started: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sustained_api_load_while_schedules_fire() {
    let seconds = env_u64("LOAD_SECONDS", 20);
    let clients = env_u64("LOAD_CLIENTS", 16);
    let app = TestApp::with_config(|c| {
        // The load is the API, not the per-user run limits (their 429s are tested apart).
        c.rate_limits = RunRateLimits {
            per_minute: u32::MAX,
            per_hour: u32::MAX,
        }
    });
    app.workspace("w", Plan::Enterprise).await;
    let owner = app.token("owner", "w", WorkspaceRole::Member);
    let mut projects = Vec::new();
    let mut schedules = Vec::new();
    for p in 0..3 {
        let project = app.published_project(&owner).await;
        for (i, cadence) in [
            json!({"kind": "HOURLY", "minute": 10 * p + 5}),
            json!({"kind": "HOURLY", "minute": 10 * p + 35}),
            json!({"kind": "DAILY", "hour": p * 6, "minute": 20}),
        ]
        .into_iter()
        .enumerate()
        {
            let r = app
                .post(
                    &format!("/api/v1/projects/{project}/schedules"),
                    &owner,
                    json!({"cadence": cadence, "overlapPolicy": if i == 0 { "ALLOW" } else { "SKIP" }}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            schedules.push((
                project.clone(),
                r.body["scheduleId"].as_str().expect("id").to_owned(),
            ));
        }
        projects.push(project);
    }
    let start: DateTime<Utc> = app.clock.now();
    let timer = app.embedded.start_timer().await.expect("timer");
    app.embedded.start_workers();
    app.embedded.start_notifier();
    let maintenance = app.embedded.start_maintenance();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(axum::serve(listener, app.embedded.router()).into_future());

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    // Simulated time: five minutes every 50 ms.
    let clock_task = {
        let (clock, stop) = (app.clock.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(StdDuration::from_millis(50)).await;
                clock.advance(Duration::minutes(5));
            }
        })
    };
    let mut tasks = Vec::new();
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    for c in 0..clients {
        let (stop, stats, latencies) = (stop.clone(), stats.clone(), latencies.clone());
        let token = app.token(&format!("user{c}"), "w", WorkspaceRole::Member);
        let (project, schedule) = schedules[c as usize % schedules.len()].clone();
        // Each client is a member who may run the app and read everything.
        app.add_member(&owner, &project, &format!("user{c}"), "CAN_EDIT")
            .await;
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr, token).await;
            let mut mine = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Reads mostly; an API run every 32nd request, the draft every 8th: the
                // run rate stays within what four executors finish (~45 runs/s here), so
                // the backlog, and with it memory, must stay flat.
                let kind = if n % 32 == 4 {
                    4
                } else if n % 8 == 4 {
                    0
                } else {
                    n % 8
                };
                let (method, path, body, want): (Method, String, Option<Value>, u16) = match kind {
                    0 => (Method::GET, "/api/v1/projects".into(), None, 200),
                    1 => (
                        Method::GET,
                        format!("/api/v1/projects/{project}"),
                        None,
                        200,
                    ),
                    2 => (
                        Method::GET,
                        format!("/api/v1/projects/{project}/schedules"),
                        None,
                        200,
                    ),
                    3 => (
                        Method::GET,
                        format!("/api/v1/projects/{project}/schedules/{schedule}/runs?limit=5"),
                        None,
                        200,
                    ),
                    4 => (
                        Method::POST,
                        format!("/api/v1/projects/{project}/runs"),
                        Some(json!({})),
                        201,
                    ),
                    5 => match mine.last() {
                        Some(run) => (
                            Method::GET,
                            format!("/api/v1/projects/{project}/runs/{run}"),
                            None,
                            200,
                        ),
                        None => (Method::GET, "/api/v1/health".into(), None, 200),
                    },
                    6 => (
                        Method::GET,
                        format!("/api/v1/projects/{project}/runs?limit=10&runTriggerFilter=ALL"),
                        None,
                        200,
                    ),
                    _ => (
                        Method::PUT,
                        format!("/api/v1/projects/{project}/draft"),
                        Some(scheduled_runs_tests::harness::sample_version()),
                        200,
                    ),
                };
                let t = Instant::now();
                let (status, value) = client.call(method.clone(), &path, body).await;
                let micros = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
                latencies.lock().expect("latencies").push(micros);
                stats.requests.fetch_add(1, Ordering::Relaxed);
                if status != want {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!("load: {method} {path} answered {status}: {value}");
                }
                if status == 201 {
                    stats.runs_started.fetch_add(1, Ordering::Relaxed);
                    mine.push(value["runId"].as_str().unwrap_or_default().to_owned());
                }
            }
            mine
        }));
    }

    // Memory: sampled once a second; "warm" is the sample a quarter of the way in.
    let began = Instant::now();
    let mut samples = Vec::new();
    while began.elapsed() < StdDuration::from_secs(seconds) {
        tokio::time::sleep(StdDuration::from_secs(1)).await;
        samples.push(rss_kib());
    }
    stop.store(true, Ordering::Relaxed);
    let mut api_runs = Vec::new();
    for task in tasks {
        api_runs.extend(task.await.expect("client"));
    }
    clock_task.await.expect("clock");
    let elapsed = began.elapsed();
    let end = app.clock.now();
    // Let every run end: time moves on (no fire is due before the next step) while the
    // executors and sweeper finish.
    let mut unfinished = usize::MAX;
    for _ in 0..2_400 {
        tokio::time::sleep(StdDuration::from_millis(25)).await;
        let active = app
            .embedded
            .store
            .list_active_runs(&PageRequest::first(1_000))
            .await
            .expect("active");
        unfinished = active.items.len();
        if unfinished == 0 {
            break;
        }
    }
    timer.abort();
    maintenance.abort();
    server.abort();

    // Fires: the scheduled runs recorded against the fires due in (start, end].
    let mut lost_or_doubled = Vec::new();
    let mut scheduled = 0;
    for (_, schedule) in &schedules {
        let page = app
            .embedded
            .store
            .list_schedule_runs("w", schedule, end, &PageRequest::first(1_000))
            .await
            .expect("run log");
        let fires: Vec<DateTime<Utc>> = page
            .items
            .iter()
            .filter(|r| r.run_trigger == RunTrigger::Scheduled)
            .filter_map(|r| r.scheduled_for)
            .collect();
        let stored = app
            .embedded
            .store
            .list_all_schedules(&PageRequest::first(1_000))
            .await
            .expect("schedules")
            .items
            .into_iter()
            .find(|(s, _)| &s.schedule_id == schedule)
            .expect("schedule");
        let spec = stored.0.cadence.compile().expect("cadence");
        let expected = spec.upcoming(&scheduled_runs::domain::zone::Zone::utc(), start, 10_000);
        let expected: Vec<DateTime<Utc>> = expected.into_iter().filter(|t| *t <= end).collect();
        let mut got = fires.clone();
        got.sort();
        // The last step's fires may still be in flight when the clock stopped.
        let settled: Vec<DateTime<Utc>> = expected
            .iter()
            .copied()
            .filter(|t| *t <= end - Duration::minutes(5))
            .collect();
        let got_settled: Vec<DateTime<Utc>> = got
            .iter()
            .copied()
            .filter(|t| *t <= end - Duration::minutes(5))
            .collect();
        if got_settled != settled || got.iter().any(|t| !expected.contains(t)) {
            lost_or_doubled.push(format!(
                "{schedule}: expected {settled:?}, got {got_settled:?}"
            ));
        }
        scheduled += fires.len();
    }
    let mut latencies = latencies.lock().expect("latencies").clone();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let requests = stats.requests.load(Ordering::Relaxed);
    let warm = samples.get(samples.len() / 4).copied().unwrap_or(0);
    let peak = samples.iter().copied().max().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    println!(
        "load: {clients} clients for {:.1?} on loopback: {requests} requests ({:.0}/s), \
         {} failed; latency p50 {} µs, p99 {} µs, max {} µs",
        elapsed,
        requests as f64 / elapsed.as_secs_f64(),
        stats.failures.load(Ordering::Relaxed),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or(0),
    );
    println!(
        "load: simulated {} hours; {} schedules fired {scheduled} runs; {} API runs started; \
         {unfinished} runs unfinished at the end",
        (end - start).num_hours(),
        schedules.len(),
        api_runs.len()
    );
    println!(
        "load: resident memory {} MiB warm, {} MiB at the end, {} MiB peak (samples {:?} MiB)",
        warm / 1024,
        last / 1024,
        peak / 1024,
        samples.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );
    assert!(requests > 0);
    assert_eq!(
        stats.failures.load(Ordering::Relaxed),
        0,
        "every request succeeded"
    );
    assert!(lost_or_doubled.is_empty(), "{lost_or_doubled:#?}");
    assert!(scheduled > 0, "schedules fired during the load");
    assert_eq!(unfinished, 0, "every run ended");
    for run in api_runs.iter().take(200) {
        let r = app
            .embedded
            .store
            .get_run("w", run)
            .await
            .expect("get")
            .expect("stored");
        assert!(r.status.is_terminal(), "{run}: {:?}", r.status);
    }
    // Flat once warm: the end is within 64 MiB or 50% of the warm figure.
    assert!(
        last <= warm + (warm / 2).max(64 * 1024),
        "memory grew from {warm} KiB to {last} KiB"
    );
}
