//! A test harness around the embedded deployment: a real SQLite file in a temporary
//! directory, a simulated clock, tokens signed like the CLI signs them, and requests sent
//! through the real router (no listener needed, nothing mocked).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use chrono::{DateTime, TimeZone, Utc};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use scheduled_runs::adapters::local::clock::ManualClock;
use scheduled_runs::demo;
use scheduled_runs::domain::model::{Caller, ConnectionConfig, Plan, WorkspaceRole};
use scheduled_runs::embedded::{Embedded, EmbeddedConfig};
use scheduled_runs::http::jwt;
use scheduled_runs::ports::Clock;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const SECRET: &[u8] = b"test-secret";

/// 2026-06-01T00:00:00Z, a Monday, away from any DST transition.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .expect("valid instant")
}

pub struct TestApp {
    pub embedded: Embedded,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
    router: Router,
}

/// A response with its body decoded as JSON (`Value::Null` when empty).
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
}

impl TestResponse {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Default for TestApp {
    fn default() -> Self {
        Self::new()
    }
}

impl TestApp {
    pub fn new() -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::open(dir, epoch())
    }

    /// A deployment whose configuration `configure` adjusts (e.g. the notification flags
    /// of `serve`: an SMTP sender, loopback webhooks).
    pub fn with_config(configure: impl FnOnce(&mut EmbeddedConfig)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::open_with(dir, epoch(), configure)
    }

    /// Opens (or re-opens) the deployment whose state lives in `dir`.
    pub fn open(dir: tempfile::TempDir, now: DateTime<Utc>) -> TestApp {
        Self::open_with(dir, now, |_| {})
    }

    fn open_with(
        dir: tempfile::TempDir,
        now: DateTime<Utc>,
        configure: impl FnOnce(&mut EmbeddedConfig),
    ) -> TestApp {
        let clock = Arc::new(ManualClock::new(now));
        let mut config = EmbeddedConfig::new(
            dir.path().to_owned(),
            "http://localhost:3000".into(),
            SECRET.to_vec(),
        );
        // Notice cancels quickly; the simulated clock never moves on its own.
        config.executor.watch_interval = std::time::Duration::from_millis(20);
        // Notification retries in milliseconds rather than seconds.
        config.notify.first_backoff = std::time::Duration::from_millis(20);
        config.notify.max_backoff = std::time::Duration::from_millis(100);
        configure(&mut config);
        let embedded = Embedded::open(&config, clock.clone()).expect("open embedded deployment");
        let router = embedded.router();
        TestApp {
            embedded,
            clock,
            dir,
            router,
        }
    }

    /// Stops this instance and opens a new one on the same data, as a process restart would.
    pub fn restart(self) -> TestApp {
        let now = self.clock.now();
        let dir = self.dir;
        drop(self.embedded);
        Self::open(dir, now)
    }

    /// Creates a workspace with a `warehouse` connection to the demo warehouse.
    pub async fn workspace(&self, id: &str, plan: Plan) {
        self.embedded
            .state
            .workspaces
            .create(id, plan)
            .await
            .expect("create workspace");
        let warehouse = self
            .dir
            .path()
            .join("warehouses")
            .join(demo::DEMO_WAREHOUSE);
        if !warehouse.exists() {
            demo::write_warehouse(&warehouse).expect("demo warehouse");
        }
        let admin = Caller {
            user_id: "operator".into(),
            workspace_id: id.into(),
            workspace_role: WorkspaceRole::Admin,
            email: None,
        };
        self.embedded
            .state
            .connections
            .put(
                &admin,
                "warehouse",
                &ConnectionConfig::Sqlite {
                    path: demo::DEMO_WAREHOUSE.into(),
                },
            )
            .await
            .expect("warehouse connection");
    }

    /// Polls a run's status until it is terminal (bounded); returns the last status body.
    pub async fn wait_for_run(&self, token: &str, project: &str, run_id: &str) -> Value {
        let path = format!("/api/v1/projects/{project}/runs/{run_id}");
        let mut last = Value::Null;
        for _ in 0..1_000 {
            let r = self.get(&path, token).await;
            last = r.body;
            let status = last["status"].as_str().unwrap_or_default();
            if ["COMPLETED", "ERRORED", "KILLED", "SKIPPED"].contains(&status) {
                return last;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("run {run_id} did not finish: {last}")
    }

    pub fn token(&self, user: &str, workspace: &str, role: WorkspaceRole) -> String {
        token_at(user, workspace, role, self.clock.now(), 400 * 86_400)
    }

    pub async fn request(&self, req: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("read body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{status}: body is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        TestResponse {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                builder = builder.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.request(builder.body(body).expect("request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> TestResponse {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a project owned by `owner_token`, gives it the demo-like version and
    /// publishes it. Returns the project id.
    pub async fn published_project(&self, owner_token: &str) -> String {
        let id = self.project(owner_token).await;
        let r = self
            .put(
                &format!("/api/v1/projects/{id}/draft"),
                owner_token,
                sample_version(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let r = self
            .post(
                &format!("/api/v1/projects/{id}/publish"),
                owner_token,
                json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        id
    }

    /// Creates an unpublished project.
    pub async fn project(&self, owner_token: &str) -> String {
        let r = self
            .post("/api/v1/projects", owner_token, json!({"title": "Sales"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["projectId"].as_str().expect("projectId").to_owned()
    }

    pub async fn add_member(&self, owner_token: &str, project: &str, user: &str, role: &str) {
        let r = self
            .put(
                &format!("/api/v1/projects/{project}/members/{user}"),
                owner_token,
                json!({ "role": role }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
}

/// A token like `scheduled-runs token` prints, valid `ttl_secs` from `now`.
pub fn token_at(
    user: &str,
    workspace: &str,
    role: WorkspaceRole,
    now: DateTime<Utc>,
    ttl_secs: i64,
) -> String {
    let mut extra = serde_json::Map::new();
    extra.insert("workspace_id".into(), workspace.into());
    extra.insert("workspace_role".into(), role.as_str().into());
    extra.insert("email".into(), format!("{user}@example.com").into());
    jwt::sign(
        &jwt::Claims {
            sub: user.to_owned(),
            exp: now.timestamp() + ttl_secs,
            iat: Some(now.timestamp()),
            nbf: None,
            extra,
        },
        SECRET,
    )
}

/// A version with one input and three dependent SQL cells.
pub fn sample_version() -> Value {
    json!({
        "inputs": [{"name": "region", "type": "SELECT", "default": "EMEA", "options": ["EMEA", "AMER"]}],
        "cells": [
            {"id": "orders", "type": "SQL", "connection": "warehouse", "sql": "SELECT * FROM orders WHERE region = {{ region }}"},
            {"id": "daily", "type": "SQL", "connection": "warehouse", "sql": "SELECT {{ cells.orders.rowCount }} AS n"},
            {"id": "summary", "type": "SQL", "connection": "warehouse", "sql": "SELECT {{ cells.daily.value }} AS n"}
        ],
        "app": {"cells": ["summary"]}
    })
}
