//! A loopback implementation of the Lambda Runtime API, so tests (and benchmarks) can run
//! the real function binaries — their real `lambda_runtime` loop — without Docker: start
//! the stub, start a binary with `AWS_LAMBDA_RUNTIME_API` pointing at it, and `invoke`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

#[derive(Default)]
struct Inner {
    pending: VecDeque<(String, Value)>,
    waiting: HashMap<String, oneshot::Sender<Outcome>>,
    next_polls: u64,
    init_errors: Vec<Value>,
}

#[derive(Clone, Default)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
    polled: Arc<Notify>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct RuntimeStub {
    pub addr: SocketAddr,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeStub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Shared>) -> impl IntoResponse {
    {
        shared.lock().next_polls += 1;
    }
    shared.polled.notify_waiters();
    loop {
        let notified = shared.arrived.notified();
        if let Some((id, event)) = shared.lock().pending.pop_front() {
            let mut headers = HeaderMap::new();
            let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
            for (name, value) in [
                ("lambda-runtime-aws-request-id", id.clone()),
                ("lambda-runtime-deadline-ms", deadline.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:test".to_owned(),
                ),
                ("lambda-runtime-trace-id", format!("Root=1-{id}")),
            ] {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            }
            return (StatusCode::OK, headers, event.to_string());
        }
        notified.await;
    }
}

fn body_json(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

async fn respond(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    if let Some(tx) = shared.lock().waiting.remove(&id) {
        let _ = tx.send(Outcome::Response(body_json(&body)));
    }
    StatusCode::ACCEPTED
}

async fn fail(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    if let Some(tx) = shared.lock().waiting.remove(&id) {
        let _ = tx.send(Outcome::Error(body_json(&body)));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Shared>, body: Bytes) -> StatusCode {
    shared.lock().init_errors.push(body_json(&body));
    StatusCode::ACCEPTED
}

impl RuntimeStub {
    pub async fn start() -> std::io::Result<RuntimeStub> {
        let shared = Shared::default();
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeStub {
            addr,
            shared,
            server,
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> String {
        self.addr.to_string()
    }

    /// Queues `event` and waits (bounded) for the function's answer.
    pub async fn invoke(&self, event: Value) -> Outcome {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.shared.lock();
            inner.waiting.insert(id.clone(), tx);
            inner.pending.push_back((id, event));
        }
        self.shared.arrived.notify_waiters();
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => Outcome::Error(Value::String("no answer within 60 s".into())),
        }
    }

    /// How many `/next` polls arrived so far (the first one marks the end of init).
    pub fn polls(&self) -> u64 {
        self.shared.lock().next_polls
    }

    /// Waits (bounded) until `n` polls arrived.
    pub async fn wait_for_polls(&self, n: u64) -> bool {
        for _ in 0..600 {
            let notified = self.shared.polled.notified();
            if self.polls() >= n {
                return true;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
        false
    }

    /// Errors the function reported while initialising.
    pub fn init_errors(&self) -> Vec<Value> {
        self.shared.lock().init_errors.clone()
    }
}
