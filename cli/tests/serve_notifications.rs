//! `serve`'s notification flags as scripts use them: `--public-url` (the base of run links),
//! `--allow-loopback-webhooks` (webhooks to a receiver on 127.0.0.1) and `--smtp-url`
//! (e-mail to the SMTP server of `infra/local/smtp.sh`, when the test command started it),
//! through the real binary and plain HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use scheduled_runs::domain::notifications::{SIGNATURE_TOLERANCE_SECS, verify_signature};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scheduled-runs"));
    c.env_remove("SCHEDULED_RUNS_JWT_SECRET")
        .env_remove("SCHEDULED_RUNS_DATA_DIR")
        .env_remove("SCHEDULED_RUNS_SMTP_URL")
        .env("RUST_LOG", "warn");
    c
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

/// One HTTP/1.1 request over a fresh loopback connection.
fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
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
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A request the webhook receiver got: its headers (lower-case names) and raw body.
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A minimal webhook receiver on 127.0.0.1: answers `200 ok` and hands each request over.
fn receiver() -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let length = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut stream = reader.into_inner();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            if tx.send(Received { headers, body }).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn serve_delivers_signed_webhooks_and_mail_with_links_under_the_public_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let smtp = std::env::var("SCHEDULED_RUNS_TEST_SMTP_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let maildir = std::env::var("SCHEDULED_RUNS_TEST_SMTP_MAILDIR").ok();
    if smtp.is_none() {
        assert!(
            std::env::var("SCHEDULED_RUNS_REQUIRE_PEERS").as_deref() != Ok("1"),
            "SCHEDULED_RUNS_TEST_SMTP_URL is not set: run `infra/local/smtp.sh start` first"
        );
        eprintln!("note: no SMTP peer; serve's --smtp-url is not exercised");
    }
    let mut command = bin();
    command
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--public-url",
            "https://runs.example.test/",
            "--allow-loopback-webhooks",
            "--email-from",
            "Runs <runs@example.test>",
            "--data-dir",
        ])
        .arg(dir.path());
    if let Some(url) = &smtp {
        command.args(["--smtp-url", url]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let out = child.stdout.take().expect("stdout");
    let _server = Server(child);
    let mut lines = BufReader::new(out).lines();
    let (mut token, mut listening) = (None, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !listening {
        let Some(Ok(line)) = lines.next() else { break };
        if line.starts_with("eyJ") {
            token = Some(line.trim().to_owned());
        }
        listening |= line.starts_with("listening on");
    }
    assert!(listening, "serve announced its address");
    let token = token.expect("a dev token");

    let (status, secret) = http(
        port,
        "POST",
        "/api/v1/admin/integrations/webhooks/rotate-secret",
        &token,
        "{}",
    );
    assert_eq!(status, 200, "{secret}");
    let secret = secret["signingSecret"]
        .as_str()
        .expect("signingSecret")
        .to_owned();
    let (_, projects) = http(port, "GET", "/api/v1/projects", &token, "");
    let project = projects["projects"][0]["projectId"]
        .as_str()
        .expect("demo project")
        .to_owned();

    let (hook_port, received) = receiver();
    let to = format!("cli-{}@example.com", uuid_like());
    let body = serde_json::json!({"notifications": [{"type": "ALL",
        "webhookUrls": [format!("http://127.0.0.1:{hook_port}/hook")], "emails": [to]}]});
    let (status, created) = http(
        port,
        "POST",
        &format!("/api/v1/projects/{project}/runs"),
        &token,
        &body.to_string(),
    );
    assert_eq!(status, 201, "{created}");
    let run = created["runId"].as_str().expect("runId").to_owned();
    let run_url = format!("https://runs.example.test/projects/{project}/runs/{run}");
    assert_eq!(
        created["runUrl"],
        run_url.as_str(),
        "--public-url is the base of links"
    );

    let got = received
        .recv_timeout(Duration::from_secs(30))
        .expect("the webhook arrived");
    let signature = got
        .headers
        .iter()
        .find(|(k, _)| k == "x-scheduled-runs-signature")
        .map(|(_, v)| v.clone())
        .expect("signed");
    assert_eq!(
        verify_signature(
            secret.as_bytes(),
            &signature,
            &got.body,
            chrono::Utc::now().timestamp(),
            SIGNATURE_TOLERANCE_SECS
        ),
        Ok(())
    );
    let payload: serde_json::Value = serde_json::from_slice(&got.body).expect("JSON");
    assert_eq!(payload["runUrl"], run_url.as_str());

    // The run shows its deliveries: the webhook, and the e-mail (sent, or failed for want
    // of an SMTP server).
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let (_, status) = http(
            port,
            "GET",
            &format!("/api/v1/projects/{project}/runs/{run}"),
            &token,
            "",
        );
        let records = status["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let done = records.len() == 2 && records.iter().all(|r| r["status"] != "PENDING");
        if done || Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let email = records
        .iter()
        .find(|r| r["channel"] == "EMAIL")
        .expect("e-mail record");
    if smtp.is_some() {
        assert_eq!(email["status"], "DELIVERED", "{email}");
        let maildir = std::path::PathBuf::from(maildir.expect("the maildir"));
        let found = std::fs::read_dir(maildir.join("new"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            // Long lines arrive quoted-printable: undo its soft line breaks.
            .map(|m| m.replace("=\r\n", "").replace("=\n", ""))
            .any(|m| m.contains(&to) && m.contains(&run_url) && m.contains("runs@example.test"));
        assert!(found, "the e-mail to {to} with the run link arrived");
    } else {
        assert_eq!(email["status"], "FAILED");
        assert!(
            email["error"]
                .as_str()
                .unwrap_or_default()
                .contains("--smtp-url")
        );
    }
}

#[test]
fn bad_notification_flags_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (flag, value, secret) in [
        (
            "--smtp-url",
            "ftp://user:hunter2@mail.example.com",
            Some("hunter2"),
        ),
        ("--public-url", "runs.example.test", None),
    ] {
        let out = bin()
            .args([
                "serve",
                "--no-demo",
                "--addr",
                "127.0.0.1:0",
                flag,
                value,
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .expect("run serve");
        assert!(!out.status.success(), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{stderr}");
        if let Some(secret) = secret {
            assert!(
                !stderr.contains(secret),
                "the credentials are not echoed: {stderr}"
            );
        }
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{}", std::process::id())
}
