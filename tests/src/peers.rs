//! The protocol peers the notification tests deliver to: a loopback HTTP endpoint that
//! records what it receives (Slack incoming webhooks, signed webhooks), the SMTP server of
//! `infra/local/smtp.sh` (aiosmtpd writing a Maildir) and moto's server for SES.
//!
//! A peer that an environment variable names is used; a missing one skips the test with a
//! loud notice, unless `SCHEDULED_RUNS_REQUIRE_PEERS=1` (the test command), which turns the
//! skip into a failure.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine;

const REQUIRE_VAR: &str = "SCHEDULED_RUNS_REQUIRE_PEERS";

/// The value of `var`, or `None` after a loud skip notice (a panic when peers are
/// required). `how` says how to start the peer.
pub fn peer_env(var: &str, test: &str, how: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
        _ => {
            assert!(
                std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
                "{var} is not set but {REQUIRE_VAR}=1: {how}"
            );
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: {var} is not set, so this peer was NOT tested. \
                 {how} (or set {REQUIRE_VAR}=1 to make this fail).\n"
            );
            None
        }
    }
}

/// The peers of the AWS deployment's tests: DynamoDB Local, moto's server and PostgreSQL.
pub struct AwsPeers {
    pub dynamodb: String,
    pub moto: String,
    pub postgres: String,
}

/// All three AWS peers, or `None` after a loud skip notice for each one missing (a panic
/// when peers are required).
pub fn aws_peers(test: &str) -> Option<AwsPeers> {
    const HOW: &str = "start it with infra/local/<dynamodb|moto|postgres>.sh start and source \
                       .test-env/<peer>.env";
    let dynamodb = peer_env("SCHEDULED_RUNS_TEST_DYNAMODB_ENDPOINT", test, HOW);
    let moto = peer_env("SCHEDULED_RUNS_TEST_MOTO_ENDPOINT", test, HOW);
    let postgres = peer_env("SCHEDULED_RUNS_TEST_POSTGRES_URL", test, HOW);
    Some(AwsPeers {
        dynamodb: dynamodb?,
        moto: moto?,
        postgres: postgres?,
    })
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// One request an `HttpPeer` received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the peer answers, in order; after the script runs out, `200 ok`.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: &'static str,
    pub delay: Duration,
    pub location: Option<&'static str>,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            body: "",
            delay: Duration::ZERO,
            location: None,
        }
    }

    pub fn with_body(mut self, body: &'static str) -> Answer {
        self.body = body;
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct PeerState {
    received: Vec<Received>,
    script: VecDeque<Answer>,
}

/// An HTTP/1.1 endpoint on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct HttpPeer {
    pub addr: SocketAddr,
    state: Arc<Mutex<PeerState>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

async fn record(
    State(state): State<Arc<Mutex<PeerState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let answer = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.received.push(Received {
            method,
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
            headers,
            body,
        });
        s.script.pop_front()
    };
    let answer = answer.unwrap_or_else(|| Answer::status(200).with_body("ok"));
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, answer.body).into_response();
    if let Some(location) = answer.location
        && let Ok(v) = axum::http::HeaderValue::from_str(location)
    {
        response.headers_mut().insert("location", v);
    }
    response
}

impl HttpPeer {
    pub async fn start() -> HttpPeer {
        Self::scripted(Vec::new()).await
    }

    /// Answers with `script` first, then `200 ok`.
    pub async fn scripted(script: Vec<Answer>) -> HttpPeer {
        let state = Arc::new(Mutex::new(PeerState {
            received: Vec::new(),
            script: script.into(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let app = Router::new().fallback(record).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpPeer {
            addr,
            state,
            task: Arc::new(task),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .received
            .clone()
    }

    /// Waits (bounded) until at least `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Answers a redirect to `location`.
pub fn redirect(location: &'static str) -> Answer {
    Answer {
        status: 302,
        body: "",
        delay: Duration::ZERO,
        location: Some(location),
    }
}

// ---------------------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------------------

/// The SMTP server of `infra/local/smtp.sh` and the Maildir it writes.
#[derive(Clone, Debug)]
pub struct SmtpPeer {
    pub url: String,
    pub maildir: PathBuf,
}

/// A message the SMTP peer stored.
#[derive(Clone, Debug)]
pub struct Mail {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Mail {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> String {
        self.header("Subject").map(decode_words).unwrap_or_default()
    }
}

impl SmtpPeer {
    pub fn from_env(test: &str) -> Option<SmtpPeer> {
        let how = "run `infra/local/smtp.sh start` and `source .test-env/smtp.env` first";
        let url = peer_env("SCHEDULED_RUNS_TEST_SMTP_URL", test, how)?;
        let maildir = peer_env("SCHEDULED_RUNS_TEST_SMTP_MAILDIR", test, how)?;
        Some(SmtpPeer {
            url,
            maildir: PathBuf::from(maildir),
        })
    }

    /// Every stored message addressed to `to` (tests use addresses of their own).
    pub fn mail_to(&self, to: &str) -> Vec<Mail> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                if let Some(mail) = read_mail(&entry.path())
                    && mail
                        .header("To")
                        .is_some_and(|h| h.to_ascii_lowercase().contains(&to.to_ascii_lowercase()))
                {
                    out.push(mail);
                }
            }
        }
        out
    }

    /// Waits (bounded) until `n` messages to `to` arrived; returns them all.
    pub async fn wait_for(&self, to: &str, n: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.mail_to(to);
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn read_mail(path: &Path) -> Option<Mail> {
    let raw = std::fs::read_to_string(path).ok()?;
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let encoding = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Transfer-Encoding"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let body = match encoding.as_str() {
        "quoted-printable" => decode_qp(body),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(body.split_whitespace().collect::<String>())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default(),
        _ => body.to_owned(),
    };
    Some(Mail { headers, body })
}

fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(b) = joined
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=` and `=?utf-8?q?...?=`).
fn decode_words(s: &str) -> String {
    let mut out = String::new();
    for word in s.split_whitespace() {
        let decoded = word
            .strip_prefix("=?")
            .and_then(|w| w.strip_suffix("?="))
            .and_then(|w| {
                let mut parts = w.splitn(3, '?');
                let (_charset, enc, text) = (parts.next()?, parts.next()?, parts.next()?);
                match enc.to_ascii_lowercase().as_str() {
                    "b" => base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok()),
                    "q" => Some(decode_qp(&text.replace('_', " "))),
                    _ => None,
                }
            });
        match decoded {
            Some(d) => out.push_str(&d),
            None => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(word);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// moto
// ---------------------------------------------------------------------------------------

/// moto's endpoint (`infra/local/moto.sh start`).
pub fn moto_endpoint(test: &str) -> Option<String> {
    peer_env(
        "SCHEDULED_RUNS_TEST_MOTO_ENDPOINT",
        test,
        "run `infra/local/moto.sh start` and `source .test-env/moto.env` first",
    )
}

/// A plain HTTP GET on loopback (moto's management API), returning the body.
pub async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect to the peer");
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read the answer");
    let text = String::from_utf8_lossy(&response).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}
