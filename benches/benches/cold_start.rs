//! Requirement 1: cold start of every function binary, side by side with a hello-world
//! `lambda_runtime` binary built with the same (release) profile.
//!
//! ```text
//! cargo build --release -p scheduled-runs-api -p scheduled-runs-dispatch -p scheduled-runs-execute -p scheduled-runs-notify
//! cargo build --release -p scheduled-runs-benches --example hello_lambda
//! cargo bench -p scheduled-runs-benches --bench cold_start
//! ```
//!
//! Cold start = from `exec` (just before `spawn`) to the binary's first
//! `GET /2018-06-01/runtime/invocation/next` on a loopback Runtime API. The same loopback
//! server answers Secrets Manager's `GetSecretValue`, which the `api`, `execute` and
//! `notify` functions call once while they prepare (the sealing key, read beside the first
//! poll: `shared/src/deferred.rs`); every other AWS endpoint points at it too. The binaries are
//! run interleaved, `ROUNDS` times each; the size is the file's (release strips symbols).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use scheduled_runs_benches::{machine, percentile};

/// The function binaries; add a name here when a function is added.
const FUNCTIONS: &[&str] = &["api", "dispatch", "execute", "notify"];
const BASELINE: &str = "examples/hello_lambda";
/// Runs of each binary (`COLD_START_ROUNDS`); on a shared machine more rounds steady the median.
const ROUNDS: usize = 200;

fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

/// Reads one HTTP/1.1 request; returns its request line and body.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((line.trim_end().to_owned(), body))
}

/// Serves one connection: Secrets Manager answers, and the first `/next` poll is reported.
fn serve(stream: TcpStream, polls: mpsc::Sender<Instant>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some((line, _body)) = read_request(&mut reader) {
        if line.starts_with("GET /2018-06-01/runtime/invocation/next") {
            let _ = polls.send(Instant::now());
            // Never answer: the process is killed once its first poll arrived.
            return;
        }
        let body = r#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:sealing","Name":"sealing","SecretString":"0123456789abcdef0123456789abcdef0123456789abcdef","VersionId":"v1"}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn main() {
    let dir = release_dir();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, tx));
        }
    });
    let endpoint = format!("http://{addr}");
    let mut names: Vec<&str> = vec![BASELINE];
    names.extend_from_slice(FUNCTIONS);
    let rounds = std::env::var("COLD_START_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for round in 0..=rounds {
        for (i, name) in names.iter().enumerate() {
            let path = dir.join(name);
            let mut command = Command::new(&path);
            command
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
                .env("AWS_LAMBDA_FUNCTION_NAME", name)
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
                .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", "bench")
                .env("AWS_SECRET_ACCESS_KEY", "bench")
                .env("AWS_ENDPOINT_URL", &endpoint)
                .env("SCHEDULED_RUNS_TABLE", "bench")
                .env(
                    "SCHEDULED_RUNS_RUN_QUEUE_URL",
                    format!("{endpoint}/123456789012/runs"),
                )
                .env(
                    "SCHEDULED_RUNS_RUN_EVENTS_TOPIC_ARN",
                    "arn:aws:sns:us-east-1:123456789012:run-events",
                )
                .env(
                    "SCHEDULED_RUNS_SEALING_KEY_SECRET_ARN",
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:sealing",
                )
                .env("SCHEDULED_RUNS_SCHEDULE_GROUP_PREFIX", "bench")
                .env(
                    "SCHEDULED_RUNS_DISPATCH_FUNCTION_ARN",
                    "arn:aws:lambda:us-east-1:123456789012:function:dispatch",
                )
                .env(
                    "SCHEDULED_RUNS_SCHEDULER_ROLE_ARN",
                    "arn:aws:iam::123456789012:role/scheduler",
                )
                .env(
                    "SCHEDULED_RUNS_SCHEDULER_DLQ_ARN",
                    "arn:aws:sqs:us-east-1:123456789012:scheduler-dlq",
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let started = Instant::now();
            let mut child = command.spawn().unwrap_or_else(|e| {
                panic!("{}: {e} (build it first, see the header)", path.display())
            });
            let polled = rx.recv_timeout(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            let polled = polled.unwrap_or_else(|_| panic!("{name} never polled /next"));
            // Round 0 warms the page cache and is not counted.
            if round > 0 {
                samples[i].push(polled - started);
            }
        }
    }
    println!("machine: {}", machine());
    println!("exec → first /next, {rounds} runs each, interleaved; release profile");
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>9} {:>11}",
        "binary", "p10", "p50", "p90", "min", "× hello", "size"
    );
    let mut baseline = Duration::ZERO;
    for (i, name) in names.iter().enumerate() {
        let mut s = samples[i].clone();
        s.sort();
        let p50 = percentile(&s, 50.0);
        if i == 0 {
            baseline = p50;
        }
        let size = std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        println!(
            "{:<24} {:>7.2} ms {:>7.2} ms {:>7.2} ms {:>7.2} ms {:>8.2}× {:>7.2} MiB",
            name.trim_start_matches("examples/"),
            percentile(&s, 10.0).as_secs_f64() * 1e3,
            p50.as_secs_f64() * 1e3,
            percentile(&s, 90.0).as_secs_f64() * 1e3,
            s[0].as_secs_f64() * 1e3,
            p50.as_secs_f64() / baseline.as_secs_f64(),
            size as f64 / 1048576.0,
        );
    }
}
