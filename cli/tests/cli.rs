//! The `scheduled-runs` binary as operators and scripts use it: exit codes, stderr, the
//! token the local server accepts, and `serve` answering on loopback with its demo data.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scheduled-runs"));
    c.env_remove("SCHEDULED_RUNS_JWT_SECRET")
        .env_remove("SCHEDULED_RUNS_DATA_DIR")
        .env("RUST_LOG", "warn");
    c
}

fn run(args: &[&str], data_dir: &std::path::Path) -> Output {
    bin()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run scheduled-runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["workspace", "--help"],
        vec!["workspace", "create", "--help"],
        vec!["workspace", "set-plan", "--help"],
        vec!["token", "--help"],
        vec!["reconcile", "--help"],
    ] {
        let o = bin().args(&args).output().expect("run");
        assert!(o.status.success(), "{args:?}");
        assert!(stdout(&o).contains("Usage"), "{args:?}: {}", stdout(&o));
    }
}

#[test]
fn workspace_commands_and_their_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(
        &["workspace", "create", "acme", "--plan", "PROFESSIONAL"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("acme"));

    let again = run(
        &["workspace", "create", "acme", "--plan", "TEAM"],
        dir.path(),
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert!(stdout(&again).is_empty());

    let o = run(&["workspace", "set-plan", "acme", "ENTERPRISE"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("ENTERPRISE"));

    let missing = run(&["workspace", "set-plan", "nope", "TEAM"], dir.path());
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );

    let bad_plan = run(&["workspace", "create", "x", "--plan", "GOLD"], dir.path());
    assert!(!bad_plan.status.success());
    assert!(stderr(&bad_plan).contains("GOLD"));

    let bad_id = run(
        &["workspace", "create", "a b", "--plan", "TEAM"],
        dir.path(),
    );
    assert!(!bad_id.status.success());
}

#[test]
fn token_uses_the_data_dir_secret_or_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "token",
        "--user",
        "alice",
        "--workspace",
        "acme",
        "--role",
        "ADMIN",
        "--email",
        "a@example.com",
        "--ttl",
        "2h",
    ];
    let a = run(&args, dir.path());
    assert!(a.status.success(), "{}", stderr(&a));
    let token = stdout(&a).trim().to_owned();
    assert_eq!(token.split('.').count(), 3);
    let secret = std::fs::read_to_string(dir.path().join("jwt-secret")).expect("secret written");
    assert!(secret.len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("jwt-secret"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the secret is private to its owner");
    }
    let claims = scheduled_runs::http::jwt::verify(
        &token,
        secret.trim().as_bytes(),
        chrono::Utc::now().timestamp(),
        0,
    )
    .expect("the token verifies with the data dir's secret");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.extra["workspace_id"], "acme");
    assert_eq!(claims.extra["workspace_role"], "ADMIN");
    assert_eq!(claims.extra["email"], "a@example.com");
    let ttl = claims.exp - chrono::Utc::now().timestamp();
    assert!((7_100..=7_200).contains(&ttl), "{ttl}");

    let env = bin()
        .args([
            "token",
            "--user",
            "bob",
            "--workspace",
            "acme",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("SCHEDULED_RUNS_JWT_SECRET", "from-env")
        .output()
        .expect("run");
    let token = stdout(&env).trim().to_owned();
    assert!(
        scheduled_runs::http::jwt::verify(&token, b"from-env", chrono::Utc::now().timestamp(), 0)
            .is_ok()
    );

    for bad in [["--ttl", "soon"], ["--role", "OWNER"]] {
        let o = run(
            &["token", "--user", "u", "--workspace", "w", bad[0], bad[1]],
            dir.path(),
        );
        assert!(!o.status.success(), "{bad:?}");
        assert!(!stderr(&o).is_empty());
    }
}

#[test]
fn reconcile_names_what_it_needs() {
    let o = bin()
        .args(["reconcile", "--store", "sqlite"])
        .output()
        .expect("run");
    assert!(o.status.success());
    let o = bin()
        .args(["reconcile", "--store", "dynamodb"])
        .env_remove("SCHEDULED_RUNS_TABLE")
        .env_remove("SCHEDULED_RUNS_SCHEDULE_GROUP_PREFIX")
        .output()
        .expect("run");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("SCHEDULED_RUNS_"), "{}", stderr(&o));
    let o = bin()
        .args(["reconcile", "--store", "oracle"])
        .output()
        .expect("run");
    assert!(!o.status.success());
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

fn http_get(port: u16, path: &str, token: &str) -> (u16, String) {
    http(port, "GET", path, token, "")
}

/// One HTTP/1.1 request over a fresh loopback connection, as a plain client would send it.
fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[test]
fn serve_starts_with_demo_data_and_prints_a_working_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = bin()
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let out = child.stdout.take().expect("stdout");
    let server = Server(child);
    let mut lines = BufReader::new(out).lines();
    let mut token = None;
    let mut listening = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !listening {
        let Some(Ok(line)) = lines.next() else { break };
        if line.starts_with("eyJ") {
            token = Some(line.trim().to_owned());
        }
        listening |= line.starts_with("listening on");
    }
    assert!(listening, "serve announced its address");
    let token = token.expect("serve printed a dev token");
    let (status, body) = http_get(port, "/api/v1/projects", &token);
    assert_eq!(status, 200, "{body}");
    let projects: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(projects["projects"][0]["publishedVersion"], 1);
    let (status, _) = http_get(port, "/api/v1/projects", "bogus");
    assert_eq!(status, 401);

    // A client of the public RunProject API: run, then poll the status URL it was given.
    let project = projects["projects"][0]["projectId"]
        .as_str()
        .expect("project id");
    let (status, body) = http(
        port,
        "POST",
        &format!("/api/v1/project/{project}/run"),
        &token,
        r#"{"inputParams": {"region": "AMER"}}"#,
    );
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).expect("json");
    let status_url = created["runStatusUrl"].as_str().expect("runStatusUrl");
    let prefix = format!("http://127.0.0.1:{port}");
    let status_path = status_url
        .strip_prefix(&prefix)
        .expect("status URL on this server");
    let deadline = Instant::now() + Duration::from_secs(30);
    let final_status = loop {
        let (code, body) = http_get(port, status_path, &token);
        assert_eq!(code, 200, "{body}");
        let run: serde_json::Value = serde_json::from_str(&body).expect("json");
        let state = run["status"].as_str().unwrap_or_default().to_owned();
        if ["COMPLETED", "ERRORED", "KILLED"].contains(&state.as_str()) || Instant::now() > deadline
        {
            break run;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(final_status["status"], "COMPLETED", "{final_status}");
    assert!(
        final_status["cells"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
    drop(server);

    // The demo is created once: a second start on the same data keeps it as it is.
    let port = free_port();
    let child = bin()
        .args([
            "serve",
            "--no-demo",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http_get(port, "/api/v1/projects", &token);
    assert_eq!(status, 200, "{body}");
    let projects: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(projects["projects"].as_array().map(Vec::len), Some(1));
}
