//! Each notification channel against a real protocol peer: SMTP against aiosmtpd
//! (`infra/local/smtp.sh`), Slack incoming webhooks and signed webhooks against a loopback
//! HTTP server, Amazon SES against moto. And the SSRF guard of the HTTP channels: every
//! refused class of address, names that resolve to them, no redirects, timeouts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use scheduled_runs::adapters::aws::ses::{SesDeliverer, sdk as ses_sdk};
use scheduled_runs::adapters::notify::EmailNotConfigured;
use scheduled_runs::adapters::notify::http::{GuardedHttp, Resolver};
use scheduled_runs::adapters::notify::slack::SlackDeliverer;
use scheduled_runs::adapters::notify::smtp::SmtpDeliverer;
use scheduled_runs::adapters::notify::webhook::{DELIVERY_HEADER, WebhookDeliverer};
use scheduled_runs::domain::model::{NotifyOn, RunError, RunStatus, RunTrigger};
use scheduled_runs::domain::notifications::{
    self, NotificationMessage, Reason, SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECS, SignatureError,
};
use scheduled_runs::domain::ssrf::UrlPolicy;
use scheduled_runs::ports::{Deliverer, DeliveryError, DeliveryTarget, Secret, SystemClock};
use scheduled_runs_tests::peers::{Answer, HttpPeer, SmtpPeer, http_get, moto_endpoint, redirect};
use serde_json::Value;

const DEV: UrlPolicy = UrlPolicy {
    allow_loopback: true,
};
const STRICT: UrlPolicy = UrlPolicy {
    allow_loopback: false,
};

fn message(status: RunStatus) -> NotificationMessage {
    let at = Utc
        .with_ymd_and_hms(2026, 6, 1, 9, 0, 0)
        .single()
        .expect("valid instant");
    let id = uuid::Uuid::new_v4().simple().to_string();
    NotificationMessage {
        delivery_id: id.clone(),
        workspace_id: "ws".into(),
        project_id: "proj".into(),
        project_title: "Sales".into(),
        schedule_id: Some("sched".into()),
        run_id: format!("run-{id}"),
        status,
        trigger: RunTrigger::Scheduled,
        scheduled_for: Some(at),
        ended_at: Some(at),
        run_url: format!("https://runs.example.com/projects/proj/runs/run-{id}"),
        skip_reason: None,
        error: (status == RunStatus::Errored).then(|| RunError {
            code: "CELL_FAILED".into(),
            message: "cell orders: no such table: orderz".into(),
            cell_id: Some("orders".into()),
        }),
        reasons: vec![
            Reason::Subscription(NotifyOn::All),
            Reason::Condition {
                name: "big orders".into(),
                cell_id: "orders".into(),
                summary: "ROW_COUNT of orders is 12 (GT 10)".into(),
            },
        ],
    }
}

fn http(policy: UrlPolicy) -> GuardedHttp {
    GuardedHttp::new(policy).with_timeouts(Duration::from_secs(2), Duration::from_secs(3))
}

fn webhook(url: &str, secret: &str) -> DeliveryTarget {
    DeliveryTarget::Webhook {
        url: Secret::new(url),
        signing_secret: Secret::new(secret),
    }
}

fn slack(url: &str) -> DeliveryTarget {
    DeliveryTarget::Slack {
        channel_id: "C1".into(),
        webhook_url: Secret::new(url),
    }
}

// --- e-mail over SMTP ------------------------------------------------------------------------

#[tokio::test]
async fn smtp_delivers_a_readable_message_to_a_real_server() {
    let Some(peer) = SmtpPeer::from_env("smtp_delivers_a_readable_message_to_a_real_server") else {
        return;
    };
    let smtp = SmtpDeliverer::new(&peer.url, "Scheduled runs <runs@example.com>").expect("sender");
    let to = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let m = message(RunStatus::Errored);
    smtp.deliver(
        &DeliveryTarget::Email {
            address: to.clone(),
        },
        &m,
    )
    .await
    .expect("delivered");
    let mail = peer.wait_for(&to, 1, Duration::from_secs(10)).await;
    assert_eq!(mail.len(), 1, "one message to {to}");
    let mail = &mail[0];
    assert_eq!(mail.subject(), "[Sales] Condition met: big orders");
    assert!(
        mail.header("From")
            .is_some_and(|f| f.contains("runs@example.com"))
    );
    assert!(
        mail.header("Message-ID")
            .is_some_and(|id| id.contains(&m.delivery_id)),
        "{:?}",
        mail.headers
    );
    for needle in [
        m.run_url.as_str(),
        "Status: ERRORED",
        "Schedule: sched",
        "CELL_FAILED: cell orders: no such table: orderz (cell orders)",
        "big orders: ROW_COUNT of orders is 12 (GT 10)",
    ] {
        assert!(mail.body.contains(needle), "{needle:?} in {}", mail.body);
    }
}

#[tokio::test]
async fn smtp_failures_are_classified_and_configuration_is_checked() {
    // Nothing listens on port 1: worth another attempt later.
    let smtp = SmtpDeliverer::new("smtp://127.0.0.1:1", "runs@example.com").expect("sender");
    let to = DeliveryTarget::Email {
        address: "ops@example.com".into(),
    };
    let e = smtp.deliver(&to, &message(RunStatus::Completed)).await;
    assert!(matches!(e, Err(DeliveryError::Retryable(_))), "{e:?}");
    // A recipient that is not an address is refused for good.
    let bad = DeliveryTarget::Email {
        address: "not an address".into(),
    };
    let e = smtp.deliver(&bad, &message(RunStatus::Completed)).await;
    assert!(matches!(e, Err(DeliveryError::Permanent(_))), "{e:?}");
    // Bad configuration is reported without repeating the URL (it may hold a password).
    let e = SmtpDeliverer::new("ftp://user:hunter2@mail.example.com", "runs@example.com")
        .expect_err("refused");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(SmtpDeliverer::new("smtp://127.0.0.1:25", "not an address").is_err());
    // Without a sender configured, e-mail fails with the reason.
    let e = EmailNotConfigured
        .deliver(&to, &message(RunStatus::Completed))
        .await;
    assert!(
        matches!(&e, Err(DeliveryError::Permanent(m)) if m.contains("--smtp-url")),
        "{e:?}"
    );
}

// --- Slack -----------------------------------------------------------------------------------

#[tokio::test]
async fn slack_posts_a_readable_message_to_the_incoming_webhook() {
    let peer = HttpPeer::start().await;
    let slack_channel = SlackDeliverer::new(http(DEV));
    let m = message(RunStatus::Errored);
    slack_channel
        .deliver(&slack(&peer.url("/services/T000/B000/XXXX")), &m)
        .await
        .expect("delivered");
    let got = peer.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/services/T000/B000/XXXX");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["text"], "[Sales] Condition met: big orders");
    let text = body["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default();
    for needle in [
        "*Sales*",
        "failed (CELL_FAILED)",
        "*Schedule:* sched",
        "Condition met: *big orders*: ROW_COUNT of orders is 12 (GT 10)",
        "CELL_FAILED: cell orders: no such table: orderz (cell orders)",
        &format!("<{}|Open the run>", m.run_url),
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}

#[tokio::test]
async fn slack_answers_decide_between_retry_and_failure() {
    let peer = HttpPeer::scripted(vec![
        Answer::status(404).with_body("channel_not_found"),
        Answer::status(429).with_body("rate_limited"),
        Answer::status(500),
        Answer::status(400).with_body("invalid_payload"),
    ])
    .await;
    let slack_channel = SlackDeliverer::new(http(DEV));
    let target = slack(&peer.url("/hook"));
    let m = message(RunStatus::Completed);
    let results = [
        slack_channel.deliver(&target, &m).await,
        slack_channel.deliver(&target, &m).await,
        slack_channel.deliver(&target, &m).await,
        slack_channel.deliver(&target, &m).await,
        slack_channel.deliver(&target, &m).await,
    ];
    assert_eq!(
        results[0],
        Err(DeliveryError::Permanent(
            "the endpoint answered 404: channel_not_found".into()
        ))
    );
    assert!(matches!(results[1], Err(DeliveryError::Retryable(_))));
    assert!(matches!(results[2], Err(DeliveryError::Retryable(_))));
    assert!(matches!(results[3], Err(DeliveryError::Permanent(_))));
    assert_eq!(results[4], Ok(()));
}

// --- signed webhooks --------------------------------------------------------------------------

#[tokio::test]
async fn webhooks_are_signed_and_the_receiver_verifies_them() {
    let peer = HttpPeer::start().await;
    let hooks = WebhookDeliverer::new(http(DEV), Arc::new(SystemClock));
    let secret = "whsec_0123456789abcdef";
    let m = message(RunStatus::Completed);
    let before = Utc::now().timestamp();
    hooks
        .deliver(&webhook(&peer.url("/receive?team=ops"), secret), &m)
        .await
        .expect("delivered");
    let got = peer.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/receive?team=ops");
    assert_eq!(r.header(DELIVERY_HEADER), Some(m.delivery_id.as_str()));
    let signature = r.header(SIGNATURE_HEADER).expect("signed");
    let now = Utc::now().timestamp();
    // What a receiver does: verify against the raw body, within five minutes.
    assert_eq!(
        notifications::verify_signature(
            secret.as_bytes(),
            signature,
            &r.body,
            now,
            SIGNATURE_TOLERANCE_SECS
        ),
        Ok(())
    );
    let t: i64 = signature
        .strip_prefix("t=")
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .expect("a timestamp");
    assert!((before..=now).contains(&t), "signed now: {t}");
    assert_eq!(
        notifications::verify_signature(
            b"another secret",
            signature,
            &r.body,
            now,
            SIGNATURE_TOLERANCE_SECS
        ),
        Err(SignatureError::Mismatch)
    );
    let mut tampered = r.body.to_vec();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        notifications::verify_signature(
            secret.as_bytes(),
            signature,
            &tampered,
            now,
            SIGNATURE_TOLERANCE_SECS
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        notifications::verify_signature(
            secret.as_bytes(),
            signature,
            &r.body,
            now + 301,
            SIGNATURE_TOLERANCE_SECS
        ),
        Err(SignatureError::Stale),
        "a replay after five minutes is refused"
    );
    let body: Value = r.json();
    assert_eq!(body["event"], "run.finished");
    assert_eq!(body["deliveryId"], m.delivery_id.as_str());
    assert_eq!(body["runId"], m.run_id.as_str());
    assert_eq!(body["runUrl"], m.run_url.as_str());
    assert_eq!(body["status"], "COMPLETED");
    assert_eq!(
        body["reasons"],
        serde_json::json!(["ALL", "CONDITION:big orders"])
    );
}

/// The Python verifier of docs/notifications.md, run against a real delivery: the example
/// users copy is proven to accept what the service sends.
#[tokio::test]
async fn the_documented_python_verifier_accepts_a_delivery() {
    let Some(python) = ["python3", "python"].into_iter().find(|p| {
        std::process::Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("SKIPPED the_documented_python_verifier_accepts_a_delivery: no python3");
        return;
    };
    let docs = include_str!("../../docs/notifications.md");
    let code = docs
        .split("```python")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/notifications.md has a ```python block");
    let peer = HttpPeer::start().await;
    let hooks = WebhookDeliverer::new(http(DEV), Arc::new(SystemClock));
    let secret = "whsec_docs_example";
    hooks
        .deliver(
            &webhook(&peer.url("/hook"), secret),
            &message(RunStatus::Completed),
        )
        .await
        .expect("delivered");
    let r = &peer.received()[0];
    let dir = tempfile::tempdir().expect("temp dir");
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, &r.body).expect("body");
    let script = format!(
        "{code}\nimport sys\nraw = open(sys.argv[3], 'rb').read()\nprint(verify(sys.argv[1], sys.argv[2], raw))\n"
    );
    let check = |header: &str, secret: &str| {
        let out = std::process::Command::new(python)
            .args(["-c", &script, secret, header])
            .arg(&body_file)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let header = r.header(SIGNATURE_HEADER).expect("signed");
    assert_eq!(check(header, secret), "True");
    assert_eq!(check(header, "whsec_wrong"), "False");
    let old =
        notifications::signature_header(secret.as_bytes(), Utc::now().timestamp() - 600, &r.body);
    assert_eq!(check(&old, secret), "False", "older than five minutes");
}

// --- the SSRF guard ---------------------------------------------------------------------------

/// Answers every name with fixed addresses and counts the lookups.
struct FixedResolver {
    answer: Vec<IpAddr>,
    lookups: AtomicUsize,
}

#[async_trait::async_trait]
impl Resolver for FixedResolver {
    async fn resolve(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .answer
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect())
    }
}

fn resolving_to(ips: &[&str]) -> Arc<FixedResolver> {
    Arc::new(FixedResolver {
        answer: ips.iter().map(|s| s.parse().expect("address")).collect(),
        lookups: AtomicUsize::new(0),
    })
}

fn refused(result: &Result<(), DeliveryError>) -> bool {
    matches!(result, Err(DeliveryError::Permanent(m)) if m.starts_with("refused by the SSRF guard"))
}

#[tokio::test]
async fn every_refused_address_class_is_refused_before_connecting() {
    let hooks = WebhookDeliverer::new(http(STRICT), Arc::new(SystemClock));
    let m = message(RunStatus::Completed);
    for url in [
        "https://127.0.0.1/h",
        "https://127.8.9.10/h",
        "https://[::1]/h",
        "https://10.1.2.3/h",
        "https://172.20.0.1/h",
        "https://192.168.0.10/h",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/h",
        "https://100.64.1.2/h",
        "https://224.0.0.251/h",
        "https://[ff02::1]/h",
        "https://0.0.0.0/h",
        "https://[::]/h",
        "https://255.255.255.255/h",
        "https://[fd00::1]/h",
        "https://[::ffff:127.0.0.1]/h",
        "https://[::ffff:10.0.0.1]/h",
        "https://[64:ff9b::a9fe:a9fe]/h",
        "https://[2002:a00:1::]/h",
        "https://0x7f000001/h",
        "https://localhost/h",
        "https://LocalHost./h",
        "http://example.com/h",
        "ftp://example.com/h",
    ] {
        let started = Instant::now();
        let result = hooks.deliver(&webhook(url, "s"), &m).await;
        assert!(refused(&result), "{url}: {result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{url} was refused up front"
        );
        assert!(
            result
                .as_ref()
                .err()
                .is_some_and(|e| !e.to_string().contains(url)),
            "the error does not repeat the URL"
        );
    }
}

#[tokio::test]
async fn names_are_vetted_by_every_address_they_resolve_to() {
    let peer = HttpPeer::start().await;
    let m = message(RunStatus::Completed);
    let target = webhook(
        &format!("https://hooks.example.test:{}/h", peer.addr.port()),
        "s",
    );
    for answer in [
        &["127.0.0.1"][..],
        &["10.0.0.7"],
        &["169.254.169.254"],
        &["100.100.100.200"],
        &["::1"],
        &["fd12::1"],
        &["::ffff:192.168.1.1"],
        // One bad address spoils the answer: a client may try any of them.
        &["93.184.216.34", "10.0.0.7"],
    ] {
        let resolver = resolving_to(answer);
        let hooks = WebhookDeliverer::new(
            http(STRICT).with_resolver(resolver.clone()),
            Arc::new(SystemClock),
        );
        let result = hooks.deliver(&target, &m).await;
        assert!(refused(&result), "{answer:?}: {result:?}");
        assert_eq!(resolver.lookups.load(Ordering::SeqCst), 1);
    }
    assert!(
        peer.received().is_empty(),
        "nothing reached the loopback peer"
    );

    // With the development flag, a name that resolves to loopback is allowed, and the
    // connection goes to the address that was vetted (one lookup, no second resolution).
    let resolver = resolving_to(&["127.0.0.1"]);
    let hooks = WebhookDeliverer::new(
        http(DEV).with_resolver(resolver.clone()),
        Arc::new(SystemClock),
    );
    let plain = webhook(
        &format!("http://hooks.example.test:{}/h", peer.addr.port()),
        "s",
    );
    let result = hooks.deliver(&plain, &m).await;
    assert!(
        refused(&result),
        "plain http to a name that is not loopback by name: {result:?}"
    );
    let by_name = webhook(&format!("http://localhost:{}/h", peer.addr.port()), "s");
    let hooks = WebhookDeliverer::new(http(DEV), Arc::new(SystemClock));
    hooks
        .deliver(&by_name, &m)
        .await
        .expect("localhost under the flag");
    assert_eq!(peer.received().len(), 1);
    // ... but even then, a private address stays refused.
    let private = WebhookDeliverer::new(
        http(DEV).with_resolver(resolving_to(&["10.0.0.7"])),
        Arc::new(SystemClock),
    );
    assert!(refused(&private.deliver(&target, &m).await));
    assert!(refused(
        &hooks.deliver(&webhook("http://10.0.0.7/h", "s"), &m).await
    ));
}

#[tokio::test]
async fn redirects_are_not_followed_and_slow_endpoints_time_out() {
    let elsewhere = HttpPeer::start().await;
    let location: &'static str = Box::leak(elsewhere.url("/stolen").into_boxed_str());
    let peer = HttpPeer::scripted(vec![
        redirect(location),
        Answer::status(200).delayed(Duration::from_secs(5)),
    ])
    .await;
    let hooks = WebhookDeliverer::new(
        GuardedHttp::new(DEV).with_timeouts(Duration::from_secs(1), Duration::from_millis(500)),
        Arc::new(SystemClock),
    );
    let m = message(RunStatus::Completed);
    let target = webhook(&peer.url("/h"), "s");
    let result = hooks.deliver(&target, &m).await;
    assert_eq!(
        result,
        Err(DeliveryError::Permanent(
            "the endpoint answered 302 (redirects are not followed)".into()
        ))
    );
    assert!(elsewhere.received().is_empty(), "the redirect went nowhere");
    let started = Instant::now();
    let result = hooks.deliver(&target, &m).await;
    assert!(
        matches!(&result, Err(DeliveryError::Retryable(e)) if e.contains("no answer")),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Nobody listening: worth another attempt.
    let closed = webhook("http://127.0.0.1:1/h", "s");
    assert!(matches!(
        hooks.deliver(&closed, &m).await,
        Err(DeliveryError::Retryable(_))
    ));
}

#[tokio::test]
async fn long_answers_are_cut_short() {
    let huge: &'static str = Box::leak("x".repeat(2 * 1024 * 1024).into_boxed_str());
    let peer = HttpPeer::scripted(vec![Answer::status(500).with_body(huge)]).await;
    let hooks = WebhookDeliverer::new(http(DEV), Arc::new(SystemClock));
    let result = hooks
        .deliver(
            &webhook(&peer.url("/h"), "s"),
            &message(RunStatus::Completed),
        )
        .await;
    let Err(DeliveryError::Retryable(e)) = result else {
        panic!("a 500 is retried: {result:?}");
    };
    assert!(
        e.len() < 260,
        "the recorded error stays short: {} bytes",
        e.len()
    );
}

// --- Amazon SES --------------------------------------------------------------------------------

fn ses_client(endpoint: &str) -> ses_sdk::Client {
    use ses_sdk::config::{BehaviorVersion, Credentials, Region};
    let config = ses_sdk::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(scheduled_runs::aws_deployment::https_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(endpoint)
        .build();
    ses_sdk::Client::from_conf(config)
}

#[tokio::test]
async fn ses_sends_from_a_verified_identity_through_moto() {
    let Some(endpoint) = moto_endpoint("ses_sends_from_a_verified_identity_through_moto") else {
        return;
    };
    let client = ses_client(&endpoint);
    let domain = format!("{}.example.com", uuid::Uuid::new_v4().simple());
    let from = format!("runs@{domain}");
    client
        .create_email_identity()
        .email_identity(&from)
        .send()
        .await
        .expect("verify the sender on moto");
    let ses = SesDeliverer::new(client.clone(), &from);
    let to = format!("ops-{}@example.com", uuid::Uuid::new_v4().simple());
    let m = message(RunStatus::Errored);
    ses.deliver(
        &DeliveryTarget::Email {
            address: to.clone(),
        },
        &m,
    )
    .await
    .expect("sent");
    let data: Value =
        serde_json::from_str(&http_get(&format!("{endpoint}/moto-api/data.json")).await)
            .expect("moto's data");
    let sent: Vec<&Value> = data["ses"]["Message"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|msg| msg["destinations"]["ToAddresses"] == serde_json::json!([to.clone()]))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(sent.len(), 1, "one message to {to}");
    assert_eq!(sent[0]["source"], from.as_str());
    assert_eq!(sent[0]["subject"], m.subject().as_str());
    let body = sent[0]["body"].as_str().unwrap_or_default();
    assert!(body.contains(&m.run_url), "{body}");
    assert!(body.contains("CELL_FAILED"), "{body}");

    // An unverified sender is refused for good, and the error names no address.
    let unverified = SesDeliverer::new(client, format!("nobody@{domain}.invalid"));
    let result = unverified
        .deliver(
            &DeliveryTarget::Email {
                address: to.clone(),
            },
            &m,
        )
        .await;
    let Err(DeliveryError::Permanent(e)) = result else {
        panic!("refused for good: {result:?}");
    };
    assert!(!e.contains(&to) && !e.contains("nobody"), "{e}");
}
