//! Bad and hostile input against the embedded deployment (RELIABILITY.md, requirement 6):
//! SQL injection through templates and through the values the state store queries by,
//! oversized and deeply nested bodies at every JSON endpoint, header injection into e-mail
//! and Slack messages, and a canary test proving that secrets (connection URLs, Slack
//! webhook URLs, the webhook signing secret, SMTP credentials, bearer tokens) never appear
//! in logs, errors or API responses. The SSRF classes of webhook targets (private,
//! link-local, loopback, IPv6-mapped, names resolving to them, redirects) are proven in
//! `notify_channels.rs` and `api_notifications.rs`; inputs spliced as SQL text in
//! `runs_e2e.rs` (`sql_injection_through_inputs_is_harmless`).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration as StdDuration;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use scheduled_runs::domain::model::{Plan, WorkspaceRole};
use scheduled_runs::ports::Secret;
use scheduled_runs_tests::harness::{TestApp, TestResponse, sample_version};
use scheduled_runs_tests::peers::{HttpPeer, SmtpPeer};
use serde_json::{Value, json};

struct World {
    app: TestApp,
    owner: String,
    admin: String,
    project: String,
}

async fn world_with(app: TestApp) -> World {
    app.workspace("w", Plan::Team).await;
    let owner = app.token("owner", "w", WorkspaceRole::Member);
    let admin = app.token("boss", "w", WorkspaceRole::Admin);
    let project = app.published_project(&owner).await;
    World {
        app,
        owner,
        admin,
        project,
    }
}

impl World {
    async fn publish(&self, version: Value) -> TestResponse {
        let p = &self.project;
        let r = self
            .app
            .put(&format!("/api/v1/projects/{p}/draft"), &self.owner, version)
            .await;
        if r.status != StatusCode::OK {
            return r;
        }
        self.app
            .post(
                &format!("/api/v1/projects/{p}/publish"),
                &self.owner,
                json!({}),
            )
            .await
    }

    async fn run(&self, body: Value) -> Value {
        let p = &self.project;
        let r = self
            .app
            .post(&format!("/api/v1/projects/{p}/runs"), &self.owner, body)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let run = r.body["runId"].as_str().unwrap_or_default().to_owned();
        self.app.wait_for_run(&self.owner, p, &run).await
    }
}

// ------------------------------------------------------------------------------ SQL

/// Template constructs that turn a value into text (filters, blocks, macros, captured
/// output, concatenation, loops): however the author combines them, an input's text must
/// never become SQL. A value spliced into the query would make `region = 'x' OR 1=1` match
/// every order.
#[tokio::test]
async fn no_template_construct_splices_an_input_into_the_sql() {
    // Two runs per construct: more than the per-user limit allows in a minute.
    let w = world_with(TestApp::with_config(|c| {
        c.rate_limits = scheduled_runs::services::runs::RunRateLimits {
            per_minute: 1_000,
            per_hour: 1_000,
        }
    }))
    .await;
    w.app.embedded.start_workers();
    let hostile = "'x' OR 1=1";
    let shapes = [
        ("plain", "{{ region }}"),
        ("safe", "{{ region | safe }}"),
        ("string", "{{ region | string }}"),
        ("concat", "{{ '' ~ region ~ '' }}"),
        ("replace", "{{ region | replace('x', 'x') }}"),
        ("join", "{{ [region] | join('') }}"),
        (
            "filter_block",
            "{% filter safe %}{{ region }}{% endfilter %}",
        ),
        ("set_block", "{% set q %}{{ region }}{% endset %}{{ q }}"),
        (
            "set_block_raw",
            "{% set q %}{{ region }}{% endset %}{% autoescape false %}{{ q }}{% endautoescape %}",
        ),
        (
            "macro",
            "{% macro m(v) %}{{ v }}{% endmacro %}{{ m(region) }}",
        ),
        ("loop", "{% for c in [region] %}{{ c }}{% endfor %}"),
        ("format", "{{ '%s' | format(region) }}"),
    ];
    // One version per construct: a construct the renderer does not offer is refused when
    // the version is published (safe); one it offers must bind the value.
    let (mut bound, mut captured, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for (id, expr) in shapes {
        let r = w
            .publish(json!({
                "inputs": [{"name": "region", "type": "TEXT", "default": "EMEA"}],
                "cells": [{"id": id, "type": "SQL", "connection": "warehouse",
                    "sql": format!("SELECT COUNT(*) AS n FROM orders WHERE region = {expr}")}],
                "app": {"cells": [id]}
            }))
            .await;
        if r.status == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(r.code(), "INVALID_VERSION", "{id}: {}", r.body);
            refused.push(id);
            continue;
        }
        assert_eq!(r.status, StatusCode::OK, "{id}: {}", r.body);
        let status = w.run(json!({"inputParams": {"region": hostile}})).await;
        assert_eq!(status["status"], "COMPLETED", "{id} ({expr}): {status}");
        assert_eq!(
            status["cells"][0]["rows"][0][0],
            json!(0),
            "{id} ({expr}) matched rows: the input became SQL: {status}"
        );
        // With an honest value the construct binds it (the orders are found); finding
        // nothing would mean it bound some other text, e.g. a captured placeholder.
        let status = w.run(json!({"inputParams": {"region": "EMEA"}})).await;
        match status["cells"][0]["rows"][0][0].as_i64() {
            Some(n) if n > 0 => bound.push(id),
            Some(0) => captured.push(id),
            _ => panic!("{id} ({expr}): {status}"),
        }
    }
    println!(
        "template constructs: value bound {bound:?}; captured placeholder bound {captured:?}; \
         refused at publish {refused:?}"
    );
    // The constructs authors use every day bind the value; those that capture rendered SQL
    // text (blocks, macros) are refused when the version is published, so none binds a
    // placeholder's text instead of the value.
    assert_eq!(
        bound,
        [
            "plain", "safe", "string", "concat", "replace", "join", "loop", "format"
        ],
        "{captured:?} {refused:?}"
    );
    assert_eq!(
        refused,
        ["filter_block", "set_block", "set_block_raw", "macro"],
        "{bound:?} {captured:?}"
    );
    assert!(captured.is_empty(), "{captured:?}");
}

/// Ids, filters and cursors reach the state store's queries: quotes and SQL in them find
/// nothing and break nothing (never a 500, never someone else's rows).
#[tokio::test]
async fn sql_in_ids_filters_and_cursors_finds_nothing() {
    let w = world_with(TestApp::new()).await;
    let p = w.project.clone();
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{p}/schedules"),
            &w.owner,
            json!({"cadence": {"kind": "DAILY", "hour": 9}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let injections = [
        "' OR '1'='1",
        "x' OR 1=1 --",
        "\" OR \"\"=\"",
        "1; DROP TABLE runs; --",
        "%' OR '%'='",
    ];
    let mut checked = 0;
    for inj in injections {
        let e = urlencode(inj);
        let cases: Vec<(String, &[u16])> = vec![
            (format!("/api/v1/projects/{e}"), &[404]),
            (format!("/api/v1/projects/{e}/schedules"), &[404]),
            (format!("/api/v1/projects/{p}/schedules/{e}"), &[404]),
            (format!("/api/v1/projects/{p}/schedules/{e}/runs"), &[404]),
            (format!("/api/v1/projects/{p}/runs/{e}"), &[404]),
            (
                format!("/api/v1/projects/{p}/runs?statusFilter={e}"),
                &[400],
            ),
            (
                format!("/api/v1/projects/{p}/runs?runTriggerFilter={e}"),
                &[400],
            ),
            (format!("/api/v1/projects/{p}/runs?offset={e}"), &[400]),
            (format!("/api/v1/projects/{p}/schedules?cursor={e}"), &[400]),
            (format!("/api/v1/admin/schedules?cursor={e}"), &[400]),
            (format!("/api/v1/admin/schedules?projectId={e}"), &[200]),
            (format!("/api/v1/admin/schedules?createdBy={e}"), &[200]),
        ];
        for (path, allowed) in cases {
            let r = w.app.get(&path, &w.admin).await;
            checked += 1;
            assert!(
                allowed.contains(&r.status.as_u16()),
                "{path}: {} {}",
                r.status,
                r.body
            );
            if r.status == StatusCode::OK {
                assert_eq!(
                    r.body["schedules"].as_array().map(Vec::len),
                    Some(0),
                    "{path}: a filter value was read as SQL: {}",
                    r.body
                );
            }
        }
    }
    // The state is intact: the schedule is still listed.
    let r = w.app.get("/api/v1/admin/schedules", &w.admin).await;
    assert_eq!(r.body["schedules"].as_array().map(Vec::len), Some(1));
    assert_eq!(checked, injections.len() * 12);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ------------------------------------------------------------------------------ bodies

/// Every endpoint that decodes a JSON body: 413 above 256 KiB, 400 for nesting deeper
/// than the decoder's limit, for truncated JSON and for a JSON scalar; never 5xx.
#[tokio::test]
async fn oversized_deep_and_broken_bodies_at_every_json_endpoint() {
    let w = world_with(TestApp::new()).await;
    let p = w.project.clone();
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{p}/schedules"),
            &w.owner,
            json!({"cadence": {"kind": "DAILY", "hour": 9}}),
        )
        .await;
    let s = r.body["scheduleId"].as_str().unwrap_or_default().to_owned();
    let endpoints = [
        (Method::POST, "/api/v1/projects".to_owned()),
        (Method::PUT, format!("/api/v1/projects/{p}/draft")),
        (Method::PUT, format!("/api/v1/projects/{p}/members/someone")),
        (Method::POST, format!("/api/v1/projects/{p}/schedules")),
        (Method::PATCH, format!("/api/v1/projects/{p}/schedules/{s}")),
        (Method::POST, format!("/api/v1/projects/{p}/runs")),
        (Method::POST, format!("/api/v1/project/{p}/run")),
        (Method::PUT, "/api/v1/admin/auto-archive".to_owned()),
        (Method::PUT, "/api/v1/admin/connections/c".to_owned()),
        (Method::PUT, "/api/v1/admin/integrations/slack".to_owned()),
    ];
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!(
        "{{\"inputParams\":{{\"region\":{}1{}}}}}",
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    let mut big = b"{\"title\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 257 * 1024));
    big.extend(b"\"}");
    let bodies: [(&str, Vec<u8>, u16); 5] = [
        ("deep array", deep_array.into_bytes(), 400),
        ("deep object", deep_object.into_bytes(), 400),
        ("over 256 KiB", big, 413),
        ("truncated", b"{\"title\": \"x".to_vec(), 400),
        ("scalar", b"42".to_vec(), 400),
    ];
    let mut checked = 0;
    for (method, path) in &endpoints {
        for (what, body, want) in &bodies {
            let req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(
                    "authorization",
                    format!("Bearer {}", w.admin_or_owner(path)),
                )
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .expect("request");
            let r = w.app.request(req).await;
            checked += 1;
            assert_eq!(
                r.status.as_u16(),
                *want,
                "{method} {path} {what}: {}",
                r.body
            );
            assert!(
                r.body["error"]["code"].is_string(),
                "{method} {path} {what}"
            );
        }
    }
    assert_eq!(checked, endpoints.len() * bodies.len());
}

impl World {
    fn admin_or_owner(&self, path: &str) -> &str {
        if path.contains("/admin/") {
            &self.admin
        } else {
            &self.owner
        }
    }
}

// ------------------------------------------------------------------------------ headers

const INJECTED_TITLE: &str =
    "Sales <!channel>\r\nX-Injected: yes\r\nBcc: victim@example.net\r\n\r\nforged body";

/// A project title (free text any editor sets) carrying CR/LF, header lines and Slack
/// markup ends up in the e-mail subject and the Slack message: it must stay inside them, as
/// text.
#[tokio::test]
async fn titles_cannot_inject_headers_into_email_or_markup_into_slack() {
    let Some(smtp) =
        SmtpPeer::from_env("titles_cannot_inject_headers_into_email_or_markup_into_slack")
    else {
        return;
    };
    let smtp_url = smtp.url.clone();
    let app = TestApp::with_config(|c| {
        c.smtp_url = Some(Secret::new(smtp_url));
        c.allow_loopback_webhooks = true;
    });
    app.workspace("w", Plan::Team).await;
    let owner = app.token("owner", "w", WorkspaceRole::Member);
    let admin = app.token("boss", "w", WorkspaceRole::Admin);
    let r = app
        .post("/api/v1/projects", &owner, json!({"title": INJECTED_TITLE}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let project = r.body["projectId"].as_str().unwrap_or_default().to_owned();
    let r = app
        .put(
            &format!("/api/v1/projects/{project}/draft"),
            &owner,
            sample_version(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .post(
            &format!("/api/v1/projects/{project}/publish"),
            &owner,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let slack = HttpPeer::start().await;
    let r = app
        .put(
            "/api/v1/admin/integrations/slack",
            &admin,
            json!({"channels": {"C1": slack.url("/services/T/B/X")}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.embedded.start_workers();
    app.embedded.start_notifier();
    let to = format!("inj-{}@example.com", uuid::Uuid::new_v4().simple());
    let r = app
        .post(
            &format!("/api/v1/projects/{project}/runs"),
            &owner,
            json!({"notifications": [{"type": "ALL", "emails": [to], "slackChannelIds": ["C1"]}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mails = smtp.wait_for(&to, 1, StdDuration::from_secs(20)).await;
    assert_eq!(mails.len(), 1, "one message");
    let mail = &mails[0];
    assert!(mail.header("X-Injected").is_none(), "{:?}", mail.headers);
    assert!(mail.header("Bcc").is_none(), "{:?}", mail.headers);
    assert!(!mail.body.starts_with("forged body"), "{}", mail.body);
    assert!(
        mail.subject().contains("Sales") && mail.subject().contains("X-Injected"),
        "the title is kept, as text inside the subject: {:?}",
        mail.subject()
    );
    // Nothing was sent to the address in the injected Bcc line.
    assert!(smtp.mail_to("victim@example.net").is_empty());

    let posts = slack.wait_for(1, StdDuration::from_secs(20)).await;
    assert_eq!(posts.len(), 1);
    let payload = posts[0].json();
    let text = payload["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("X-Injected"), "{payload}");
    // Slack markup in the title is shown, not interpreted: no channel-wide ping.
    assert!(!text.contains("<!channel>"), "{payload}");
    assert!(!payload.to_string().contains("<!channel>"), "{payload}");
}

// ------------------------------------------------------------------------------ canary

/// Everything the deployment logs while the canary test runs (every level of every
/// crate: stricter than production, which logs `info`).
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Secrets with recognisable canaries go in through every door a secret has (a PostgreSQL
/// connection URL with a password, a Slack incoming-webhook URL, the webhook signing
/// secret, SMTP credentials, the bearer tokens); then runs fail on them, notifications are
/// delivered and fail, and every read endpoint is called. No canary may appear in any
/// response (but the one that shows the signing secret once) or in any log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_errors_or_responses() {
    let logs = captured_logs();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let pg_password = format!("PGCANARY{tag}");
    let slack_token = format!("SLACKCANARY{tag}");
    let smtp_password = format!("SMTPCANARY{tag}");
    // Port 9 (discard) on loopback: nothing listens, so e-mail fails after the URL was used.
    let smtp_url = format!("smtp://mailer:{smtp_password}@127.0.0.1:9");
    let app = TestApp::with_config(|c| {
        c.smtp_url = Some(Secret::new(smtp_url));
        c.allow_loopback_webhooks = true;
    });
    let w = world_with(app).await;
    let p = w.project.clone();
    let mut responses: Vec<(String, Value)> = Vec::new();

    // A connection whose URL carries a password; nothing listens on the port.
    let r = w
        .app
        .put(
            "/api/v1/admin/connections/pg",
            &w.admin,
            json!({"kind": "POSTGRES",
                   "url": format!("postgres://reader:{pg_password}@127.0.0.1:9/warehouse?sslmode=disable")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    responses.push(("put connection".into(), r.body));
    // A refused URL must not be echoed either.
    let r = w
        .app
        .put(
            "/api/v1/admin/connections/bad",
            &w.admin,
            json!({"kind": "POSTGRES", "url": format!("mysql://reader:{pg_password}@db/x")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    responses.push(("refused connection".into(), r.body));

    let slack = HttpPeer::scripted(vec![
        scheduled_runs_tests::peers::Answer::status(500),
        scheduled_runs_tests::peers::Answer::status(404),
    ])
    .await;
    let r = w
        .app
        .put(
            "/api/v1/admin/integrations/slack",
            &w.admin,
            json!({"channels": {"C1": slack.url(&format!("/services/T0/B0/{slack_token}tail"))}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    responses.push(("put slack".into(), r.body));
    let r = w
        .app
        .post(
            "/api/v1/admin/integrations/webhooks/rotate-secret",
            &w.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let signing_secret = r.body["signingSecret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(signing_secret.starts_with("whsec_"), "{}", r.body);
    let hook = HttpPeer::scripted(vec![scheduled_runs_tests::peers::Answer::status(400)]).await;

    let r = w
        .publish(json!({
            "cells": [{"id": "q", "type": "SQL", "connection": "pg", "sql": "SELECT 1"}],
            "app": {"cells": ["q"]}
        }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    w.app.embedded.start_workers();
    w.app.embedded.start_notifier();
    let r = w
        .app
        .post(
            &format!("/api/v1/projects/{p}/runs"),
            &w.owner,
            json!({"notifications": [{"type": "ALL", "emails": ["ops@example.com"],
                "slackChannelIds": ["C1"], "webhookUrls": [hook.url("/hook")]}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let run = r.body["runId"].as_str().unwrap_or_default().to_owned();
    responses.push(("start run".into(), r.body));
    let status = w.app.wait_for_run(&w.owner, &p, &run).await;
    assert_eq!(status["status"], "ERRORED", "{status}");
    // Wait (bounded) until the three deliveries have a final outcome.
    let path = format!("/api/v1/projects/{p}/runs/{run}");
    let mut last = Value::Null;
    for _ in 0..500 {
        last = w.app.get(&path, &w.owner).await.body;
        let done = last["notifications"]
            .as_array()
            .is_some_and(|n| n.len() == 3 && n.iter().all(|d| d["status"] != "PENDING"));
        if done {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(
        last["notifications"].as_array().map(Vec::len),
        Some(3),
        "{last}"
    );
    assert!(
        last["notifications"]
            .as_array()
            .is_some_and(|n| n.iter().all(|d| d["status"] == "FAILED")),
        "every channel failed, with an error that is recorded: {last}"
    );
    for read in [
        path.clone(),
        format!("/api/v1/projects/{p}/runs"),
        format!("/api/v1/project/{p}/run/{run}"),
        "/api/v1/admin/connections".to_owned(),
        "/api/v1/admin/integrations".to_owned(),
        format!("/api/v1/projects/{p}"),
        format!("/api/v1/projects/{p}/draft"),
    ] {
        let token = if read.contains("/admin/") {
            &w.admin
        } else {
            &w.owner
        };
        let r = w.app.get(&read, token).await;
        assert_eq!(r.status, StatusCode::OK, "{read}: {}", r.body);
        responses.push((read, r.body));
    }
    let logs =
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        logs.contains(&run),
        "the capture works: the run's own log lines are there"
    );
    let canaries = [
        ("PostgreSQL password", pg_password.as_str()),
        ("Slack webhook token", slack_token.as_str()),
        ("SMTP password", smtp_password.as_str()),
        ("webhook signing secret", signing_secret.as_str()),
        ("owner's token", w.owner.as_str()),
        ("admin's token", w.admin.as_str()),
        ("JWT signing secret", "test-secret"),
    ];
    for (what, canary) in canaries {
        assert!(!logs.contains(canary), "the {what} is in the logs");
        for (from, body) in &responses {
            assert!(
                !body.to_string().contains(canary),
                "the {what} is in the response to {from}: {body}"
            );
        }
    }
}
