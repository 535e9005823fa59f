//! The notify service's reliability rules against the real SQLite store, with scripted
//! channels standing in for the peers (the channels themselves are tested against real
//! peers in `notify_channels.rs`): one message per (run, channel, recipient) however often
//! the event comes, retries with backoff up to a bound, records on the run, channels that
//! do not wait for each other, takeover of a dead deliverer, and a run that never changes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use scheduled_runs::adapters::local::clock::ManualClock;
use scheduled_runs::adapters::local::secret_box::LocalSecretBox;
use scheduled_runs::adapters::local::sqlite::SqliteStore;
use scheduled_runs::domain::model::{
    CellResult, CellStatus, DeliveryChannel, DeliveryRecord, DeliveryStatus, NotificationSettings,
    Plan, Project, Run, RunError, RunStatus, RunTrigger, SlackIntegration, User,
    WebhookSigningSecret, Workspace, WorkspaceRole,
};
use scheduled_runs::domain::notifications::{self, NotificationMessage};
use scheduled_runs::ports::{
    Deliverer, DeliveryClaim, DeliveryError, DeliveryStore, DeliveryTarget, EventPublisher,
    IntegrationStore, PortError, ProjectStore, RunEvent, RunStore, SecretBox, WorkspaceStore,
};
use scheduled_runs::services::events::{EventOutbox, OutboxPublisher};
use scheduled_runs::services::notify::{Deliverers, NotifyService, NotifySettings};
use serde_json::json;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0)
        .single()
        .expect("valid instant")
}

// --- scripted channels ----------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Call {
    target: String,
    delivery_id: String,
    at: Instant,
    message: NotificationMessage,
}

type Script = VecDeque<Result<(), DeliveryError>>;

#[derive(Clone, Default)]
struct Scripted {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Results per target, in order; afterwards `Ok`.
    script: Arc<Mutex<HashMap<String, Script>>>,
    /// How long every attempt takes.
    delay: StdDuration,
}

impl Scripted {
    fn slow(delay: StdDuration) -> Scripted {
        Scripted {
            delay,
            ..Scripted::default()
        }
    }

    fn answer(&self, target: &str, results: Vec<Result<(), DeliveryError>>) {
        self.script
            .lock()
            .expect("script")
            .insert(target.to_owned(), results.into());
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    fn calls_to(&self, target: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.target == target)
            .collect()
    }
}

#[async_trait]
impl Deliverer for Scripted {
    async fn deliver(
        &self,
        target: &DeliveryTarget,
        message: &NotificationMessage,
    ) -> Result<(), DeliveryError> {
        let target = match target {
            DeliveryTarget::Email { address } => address.clone(),
            DeliveryTarget::Slack { channel_id, .. } => channel_id.clone(),
            DeliveryTarget::Webhook { url, .. } => url.expose().to_owned(),
        };
        self.calls.lock().expect("calls").push(Call {
            target: target.clone(),
            delivery_id: message.delivery_id.clone(),
            at: Instant::now(),
            message: message.clone(),
        });
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.script
            .lock()
            .expect("script")
            .get_mut(&target)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Ok(()))
    }
}

// --- the world ------------------------------------------------------------------------------

const SLACK_URL: &str = "https://hooks.slack.test/services/T000/B000/XXXXsecretWXYZ";
const HOOK: &str = "https://hooks.example.com/receive?token=s3cr3tt0k3n";

struct World {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    clock: Arc<ManualClock>,
    secrets: Arc<LocalSecretBox>,
    workspace: String,
    project: Project,
}

async fn world(plan: Plan) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("state.db")).expect("open store");
    let secrets = Arc::new(LocalSecretBox::new(&[7u8; 32]).expect("secret box"));
    let workspace = "ws".to_owned();
    store
        .create_workspace(&Workspace {
            workspace_id: workspace.clone(),
            plan,
            auto_archive_after_days: None,
            created_at: t0(),
        })
        .await
        .expect("workspace");
    for (user, email) in [
        ("ada", Some("ada@example.com")),
        ("bob", Some("bob@example.com")),
        ("cyd", None),
    ] {
        store
            .upsert_user(&User {
                user_id: user.into(),
                workspace_id: workspace.clone(),
                email: email.map(str::to_owned),
                workspace_role: WorkspaceRole::Member,
            })
            .await
            .expect("user");
    }
    let project = Project {
        project_id: "proj".into(),
        workspace_id: workspace.clone(),
        title: "Sales".into(),
        description: None,
        created_by: "ada".into(),
        created_at: t0(),
        updated_at: t0(),
        archived: false,
        published_version: Some(1),
        last_activity_at: t0(),
    };
    store.create_project(&project).await.expect("project");
    let urls = serde_json::to_vec(&json!({"C1": SLACK_URL})).expect("urls");
    store
        .put_slack_integration(
            &workspace,
            &SlackIntegration {
                channel_ids: vec!["C1".into()],
                sealed_webhook_urls: secrets.seal(&urls).expect("seal"),
                updated_by: "ada".into(),
                updated_at: t0(),
            },
        )
        .await
        .expect("slack");
    store
        .put_webhook_secret(
            &workspace,
            &WebhookSigningSecret {
                sealed_secret: secrets.seal(b"whsec_test").expect("seal"),
                rotated_by: "ada".into(),
                rotated_at: t0(),
            },
        )
        .await
        .expect("secret");
    World {
        _dir: dir,
        store,
        clock: Arc::new(ManualClock::new(t0())),
        secrets,
        workspace,
        project,
    }
}

struct Channels {
    email: Scripted,
    slack: Scripted,
    webhook: Scripted,
}

impl Channels {
    fn new() -> Channels {
        Channels {
            email: Scripted::default(),
            slack: Scripted::default(),
            webhook: Scripted::default(),
        }
    }

    fn total(&self) -> usize {
        self.email.calls().len() + self.slack.calls().len() + self.webhook.calls().len()
    }
}

fn settings() -> NotifySettings {
    NotifySettings {
        first_backoff: StdDuration::from_millis(20),
        max_backoff: StdDuration::from_millis(200),
        ..NotifySettings::new("https://runs.example.com/")
    }
}

fn service(w: &World, channels: &Channels, settings: NotifySettings) -> NotifyService {
    let store = Arc::new(w.store.clone());
    NotifyService {
        workspaces: store.clone(),
        projects: store.clone(),
        runs: store.clone(),
        deliveries: store.clone(),
        integrations: store,
        secrets: w.secrets.clone(),
        deliverers: Deliverers {
            email: Arc::new(channels.email.clone()),
            slack: Arc::new(channels.slack.clone()),
            webhook: Arc::new(channels.webhook.clone()),
        },
        clock: w.clock.clone(),
        settings,
    }
}

fn all_channels() -> NotificationSettings {
    serde_json::from_value(json!({
        "subscriptions": [{"on": "ALL", "recipients": {
            "userIds": ["ada"], "emails": ["ops@example.com", "ADA@example.com"],
            "slackChannelIds": ["C1"], "webhookUrls": [HOOK]
        }}]
    }))
    .expect("settings")
}

async fn finished_run(w: &World, status: RunStatus, notifications: NotificationSettings) -> Run {
    let run = Run {
        run_id: uuid::Uuid::new_v4().to_string(),
        project_id: w.project.project_id.clone(),
        workspace_id: w.workspace.clone(),
        schedule_id: Some("sched".into()),
        run_trigger: RunTrigger::Scheduled,
        status,
        scheduled_for: Some(t0()),
        project_version: Some(1),
        created_by: "ada".into(),
        created_at: t0(),
        start_time: Some(t0()),
        end_time: Some(t0() + Duration::seconds(3)),
        skip_reason: None,
        update_published_results: false,
        use_cached_sql_results: true,
        input_params: serde_json::Map::new(),
        trace_id: "trace".into(),
        state_events: vec![],
        expires_at: t0() + Duration::days(90),
        attempt: 1,
        lease_until: None,
        cells: vec![CellResult {
            cell_id: "orders".into(),
            status: CellStatus::Completed,
            columns: vec!["id".into()],
            rows: vec![vec![json!(1)]].into(),
            row_count: 12,
            duration_ms: 3,
            cache_hit: false,
            error: None,
        }],
        error: (status == RunStatus::Errored).then(|| RunError {
            code: "CELL_FAILED".into(),
            message: "cell orders: no such table".into(),
            cell_id: Some("orders".into()),
        }),
        notification_settings: notifications,
        event_pending: true,
        notifications: vec![],
    };
    w.store.create_run_if_absent(&run).await.expect("run");
    run
}

async fn records(w: &World, run: &Run) -> Vec<DeliveryRecord> {
    w.store
        .list_deliveries(&w.workspace, &run.run_id)
        .await
        .expect("deliveries")
}

fn record(records: &[DeliveryRecord], channel: DeliveryChannel) -> &DeliveryRecord {
    records
        .iter()
        .find(|r| r.channel == channel)
        .unwrap_or_else(|| panic!("a {channel:?} record in {records:?}"))
}

// --- behaviour -------------------------------------------------------------------------------

#[tokio::test]
async fn one_delivery_per_channel_and_recipient_with_masked_records() {
    let w = world(Plan::Team).await;
    let channels = Channels::new();
    let notify = service(&w, &channels, settings());
    let run = finished_run(&w, RunStatus::Completed, all_channels()).await;
    let report = notify.handle(&RunEvent::of(&run)).await.expect("handled");
    assert_eq!(report.delivered, 4, "{report:?}");
    // ada by id and by address (in another case) is one recipient.
    let mut emails: Vec<String> = channels
        .email
        .calls()
        .into_iter()
        .map(|c| c.target)
        .collect();
    emails.sort();
    assert_eq!(emails, ["ada@example.com", "ops@example.com"]);
    assert_eq!(channels.slack.calls_to("C1").len(), 1);
    assert_eq!(channels.webhook.calls_to(HOOK).len(), 1);

    let recs = records(&w, &run).await;
    let targets: Vec<&str> = recs.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "a***@example.com",
            "o***@example.com",
            "C1 (hooks.slack.test/…/WXYZ)",
            "hooks.example.com/…/0k3n"
        ]
    );
    for r in &recs {
        assert_eq!(
            (r.status, r.attempts, r.error.as_deref()),
            (DeliveryStatus::Delivered, 1, None),
            "{r:?}"
        );
        assert_eq!(r.reasons, ["ALL"]);
        assert!(
            !r.target.contains("secret") && !r.target.contains("s3cr3t"),
            "{r:?}"
        );
    }
    // Every message links to the run under the configured base URL.
    let message = &channels.webhook.calls()[0].message;
    assert_eq!(
        message.run_url,
        format!("https://runs.example.com/projects/proj/runs/{}", run.run_id)
    );
    assert_eq!(message.project_title, "Sales");
}

#[tokio::test]
async fn a_repeated_event_sends_nothing_twice() {
    let w = world(Plan::Team).await;
    let channels = Channels::new();
    let notify = Arc::new(service(&w, &channels, settings()));
    let run = finished_run(&w, RunStatus::Errored, all_channels()).await;
    let event = RunEvent::of(&run);
    notify.handle(&event).await.expect("first");
    let again = notify.handle(&event).await.expect("second");
    assert_eq!((again.delivered, again.already_done), (0, 4), "{again:?}");
    assert_eq!(channels.total(), 4);

    // Redeliveries racing each other: still one message per recipient.
    let other = finished_run(&w, RunStatus::Errored, all_channels()).await;
    let event = RunEvent::of(&other);
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let (notify, event) = (notify.clone(), event.clone());
            tokio::spawn(async move { notify.handle(&event).await.expect("handled") })
        })
        .collect();
    for r in racers {
        r.await.expect("task");
    }
    assert_eq!(channels.total(), 8, "four more, once each");
    let ids: std::collections::HashSet<String> = channels
        .webhook
        .calls()
        .into_iter()
        .map(|c| c.delivery_id)
        .collect();
    assert_eq!(ids.len(), 2, "a delivery id per run");
}

#[tokio::test]
async fn retries_back_off_and_stop_at_the_bound() {
    let w = world(Plan::Team).await;
    let channels = Channels::new();
    let retry = || Err(DeliveryError::Retryable("the endpoint answered 503".into()));
    channels
        .webhook
        .answer(HOOK, vec![retry(), retry(), retry(), retry(), retry()]);
    channels
        .email
        .answer("ops@example.com", vec![retry(), Ok(())]);
    let notify = service(&w, &channels, settings());
    let only = |r: serde_json::Value| -> NotificationSettings {
        serde_json::from_value(json!({"subscriptions": [{"on": "ALL", "recipients": r}]}))
            .expect("settings")
    };
    let run = finished_run(
        &w,
        RunStatus::Completed,
        only(json!({"webhookUrls": [HOOK], "emails": ["ops@example.com"]})),
    )
    .await;
    let report = notify.handle(&RunEvent::of(&run)).await.expect("handled");
    assert_eq!((report.delivered, report.failed), (1, 1), "{report:?}");

    let recs = records(&w, &run).await;
    let hook = record(&recs, DeliveryChannel::Webhook);
    assert_eq!(hook.status, DeliveryStatus::Failed);
    assert_eq!(hook.attempts, 4, "bounded by max_attempts");
    assert_eq!(hook.error.as_deref(), Some("the endpoint answered 503"));
    let email = record(&recs, DeliveryChannel::Email);
    assert_eq!(
        (email.status, email.attempts, email.error.as_deref()),
        (DeliveryStatus::Delivered, 2, None)
    );

    // 20 ms, 40 ms, 80 ms between the four attempts.
    let at: Vec<Instant> = channels.webhook.calls().iter().map(|c| c.at).collect();
    let gaps: Vec<StdDuration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps.len(), 3);
    for (gap, min) in gaps.iter().zip([20, 40, 80]) {
        assert!(*gap >= StdDuration::from_millis(min), "gaps {gaps:?}");
    }
    assert!(gaps[2] > gaps[0], "the backoff grows: {gaps:?}");

    // A failed delivery is over: the next redelivery of the event leaves it alone.
    notify.handle(&RunEvent::of(&run)).await.expect("again");
    assert_eq!(channels.webhook.calls().len(), 4);
}

#[tokio::test]
async fn permanent_failures_are_recorded_without_retry() {
    let w = world(Plan::Team).await;
    let channels = Channels::new();
    channels.slack.answer(
        "C1",
        vec![Err(DeliveryError::Permanent(
            "the endpoint answered 404: channel_not_found".into(),
        ))],
    );
    let notify = service(&w, &channels, settings());
    let run = finished_run(&w, RunStatus::Completed, all_channels()).await;
    notify.handle(&RunEvent::of(&run)).await.expect("handled");
    let recs = records(&w, &run).await;
    let slack = record(&recs, DeliveryChannel::Slack);
    assert_eq!(
        (slack.status, slack.attempts, slack.error.as_deref()),
        (
            DeliveryStatus::Failed,
            1,
            Some("the endpoint answered 404: channel_not_found")
        )
    );
    assert_eq!(channels.slack.calls().len(), 1);
}

#[tokio::test]
async fn a_channel_that_is_down_does_not_delay_the_others() {
    let w = world(Plan::Team).await;
    let channels = Channels {
        email: Scripted::default(),
        slack: Scripted::default(),
        // Every attempt hangs for a second, then fails.
        webhook: Scripted::slow(StdDuration::from_secs(1)),
    };
    let retry = || Err(DeliveryError::Retryable("no answer within 10 s".into()));
    channels
        .webhook
        .answer(HOOK, vec![retry(), retry(), retry(), retry()]);
    let notify = service(&w, &channels, settings());
    let run = finished_run(&w, RunStatus::Completed, all_channels()).await;
    let started = Instant::now();
    let report = notify.handle(&RunEvent::of(&run)).await.expect("handled");
    assert!(
        started.elapsed() >= StdDuration::from_secs(4),
        "the webhook's four attempts"
    );
    assert_eq!((report.delivered, report.failed), (3, 1), "{report:?}");
    for call in channels
        .email
        .calls()
        .iter()
        .chain(channels.slack.calls().iter())
    {
        assert!(
            call.at - started < StdDuration::from_millis(500),
            "{} waited {:?} for the webhook",
            call.target,
            call.at - started
        );
    }
}

#[tokio::test]
async fn a_dead_deliverer_is_taken_over_once_its_lease_runs_out() {
    let w = world(Plan::Team).await;
    let channels = Channels::new();
    let notify = service(&w, &channels, settings());
    let only_ops: NotificationSettings = serde_json::from_value(json!({
        "subscriptions": [{"on": "SUCCESS", "recipients": {"emails": ["ops@example.com"]}}]
    }))
    .expect("settings");
    let run = finished_run(&w, RunStatus::Completed, only_ops).await;
    // Another handler claimed the delivery, made one attempt and died.
    let id = notifications::delivery_id(&run.run_id, DeliveryChannel::Email, "ops@example.com");
    let dead = DeliveryRecord {
        delivery_id: id.clone(),
        channel: DeliveryChannel::Email,
        target: "o***@example.com".into(),
        status: DeliveryStatus::Pending,
        attempts: 1,
        error: Some("SMTP: connection refused".into()),
        reasons: vec!["SUCCESS".into()],
        created_at: t0(),
        updated_at: t0(),
        claim_token: Some("dead".into()),
        lease_until: Some(t0() + Duration::minutes(5)),
    };
    let claim = w
        .store
        .claim_delivery(&w.workspace, &run.run_id, &dead, t0())
        .await
        .expect("claim");
    assert!(matches!(claim, DeliveryClaim::Claimed(_)));

    let busy = notify.handle(&RunEvent::of(&run)).await.expect("handled");
    assert_eq!(busy.in_progress, 1, "its lease still holds: {busy:?}");
    assert!(channels.email.calls().is_empty());

    w.clock.advance(Duration::minutes(6));
    let taken = notify.handle(&RunEvent::of(&run)).await.expect("handled");
    assert_eq!(taken.delivered, 1, "{taken:?}");
    let recs = records(&w, &run).await;
    assert_eq!(
        (recs[0].status, recs[0].attempts),
        (DeliveryStatus::Delivered, 2),
        "the attempts of the dead handler count"
    );
}

#[tokio::test]
async fn notifications_never_change_the_run() {
    let w = world(Plan::Team).await;
    let channels = Channels::new();
    channels.email.answer(
        "ops@example.com",
        vec![Err(DeliveryError::Permanent("refused".into()))],
    );
    let notify = service(&w, &channels, settings());
    let run = finished_run(&w, RunStatus::Completed, all_channels()).await;
    notify.handle(&RunEvent::of(&run)).await.expect("handled");
    let stored = w
        .store
        .get_run(&w.workspace, &run.run_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored, run, "status, body, even the outbox flag: untouched");
}

#[tokio::test]
async fn slack_after_a_downgrade_is_skipped_and_recorded() {
    let w = world(Plan::Team).await;
    w.store
        .set_plan(&w.workspace, Plan::Professional)
        .await
        .expect("downgrade");
    let channels = Channels::new();
    let notify = service(&w, &channels, settings());
    let run = finished_run(&w, RunStatus::Completed, all_channels()).await;
    let report = notify.handle(&RunEvent::of(&run)).await.expect("handled");
    assert_eq!((report.delivered, report.skipped), (3, 1), "{report:?}");
    assert!(channels.slack.calls().is_empty());
    let recs = records(&w, &run).await;
    let slack = record(&recs, DeliveryChannel::Slack);
    assert_eq!(slack.status, DeliveryStatus::Skipped);
    assert!(
        slack
            .error
            .as_deref()
            .unwrap_or_default()
            .starts_with("PLAN_LIMIT"),
        "{slack:?}"
    );
}

#[tokio::test]
async fn unknown_users_users_without_an_address_or_access_are_recorded_not_sent() {
    let w = world(Plan::Team).await;
    let channels = Channels::new();
    let notify = service(&w, &channels, settings());
    let users: NotificationSettings = serde_json::from_value(json!({
        "subscriptions": [{"on": "ALL", "recipients": {"userIds": ["ada", "bob", "cyd", "zed"]}}]
    }))
    .expect("settings");
    let run = finished_run(&w, RunStatus::Completed, users).await;
    let report = notify.handle(&RunEvent::of(&run)).await.expect("handled");
    assert_eq!(
        (report.delivered, report.skipped, report.failed),
        (1, 1, 2),
        "{report:?}"
    );
    assert_eq!(
        channels
            .email
            .calls()
            .into_iter()
            .map(|c| c.target)
            .collect::<Vec<_>>(),
        ["ada@example.com"],
        "only ada: bob has no role on the project"
    );
    let errors: Vec<(DeliveryStatus, String)> = records(&w, &run)
        .await
        .into_iter()
        .filter(|r| r.status != DeliveryStatus::Delivered)
        .map(|r| (r.status, r.error.unwrap_or_default()))
        .collect();
    assert!(
        errors.contains(&(
            DeliveryStatus::Skipped,
            "user bob no longer has access to the project".into()
        )),
        "{errors:?}"
    );
    assert!(
        errors.contains(&(
            DeliveryStatus::Failed,
            "user cyd has no e-mail address".into()
        )),
        "{errors:?}"
    );
    assert!(
        errors.contains(&(
            DeliveryStatus::Failed,
            "user zed is not known in the workspace".into()
        )),
        "{errors:?}"
    );
}

#[tokio::test]
async fn webhooks_without_a_signing_secret_fail_with_the_reason() {
    let w = world(Plan::Team).await;
    // A fresh workspace that never rotated a secret, on the same store.
    let store = &w.store;
    store
        .create_workspace(&Workspace {
            workspace_id: "bare".into(),
            plan: Plan::Team,
            auto_archive_after_days: None,
            created_at: t0(),
        })
        .await
        .expect("workspace");
    let project = Project {
        workspace_id: "bare".into(),
        ..w.project.clone()
    };
    store.create_project(&project).await.expect("project");
    let mut run = finished_run(&w, RunStatus::Completed, all_channels()).await;
    run.run_id = uuid::Uuid::new_v4().to_string();
    run.workspace_id = "bare".into();
    store.create_run_if_absent(&run).await.expect("run");
    let channels = Channels::new();
    let notify = service(&w, &channels, settings());
    notify.handle(&RunEvent::of(&run)).await.expect("handled");
    let recs = store
        .list_deliveries("bare", &run.run_id)
        .await
        .expect("records");
    let hook = record(&recs, DeliveryChannel::Webhook);
    assert_eq!(
        (hook.status, hook.error.as_deref()),
        (
            DeliveryStatus::Failed,
            Some("the workspace has no webhook signing secret")
        )
    );
    assert!(channels.webhook.calls().is_empty(), "never sent unsigned");
}

#[tokio::test]
async fn events_of_runs_that_are_gone_or_still_going_do_nothing() {
    let w = world(Plan::Team).await;
    let channels = Channels::new();
    let notify = service(&w, &channels, settings());
    let run = finished_run(&w, RunStatus::Completed, all_channels()).await;
    let mut ghost = RunEvent::of(&run);
    ghost.run_id = "no-such-run".into();
    assert_eq!(notify.handle(&ghost).await.expect("handled").delivered, 0);
    let mut going = Run {
        run_id: uuid::Uuid::new_v4().to_string(),
        status: RunStatus::Running,
        ..run.clone()
    };
    going.event_pending = false;
    w.store.create_run_if_absent(&going).await.expect("run");
    assert_eq!(
        notify
            .handle(&RunEvent::of(&going))
            .await
            .expect("handled")
            .delivered,
        0
    );
    assert_eq!(channels.total(), 0);
}

/// A publisher that is down for its first `failures` calls.
#[derive(Default)]
struct Flaky {
    failures: Mutex<u32>,
    published: Mutex<Vec<RunEvent>>,
}

#[async_trait]
impl EventPublisher for Flaky {
    async fn publish(&self, event: &RunEvent) -> Result<(), PortError> {
        let mut left = self.failures.lock().expect("failures");
        if *left > 0 {
            *left -= 1;
            return Err(PortError::unavailable("SNS: ServiceUnavailable"));
        }
        self.published
            .lock()
            .expect("published")
            .push(event.clone());
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_publish_leaves_the_event_for_the_sweeper() {
    let w = world(Plan::Team).await;
    let store = Arc::new(w.store.clone());
    let flaky = Arc::new(Flaky {
        failures: Mutex::new(2),
        ..Flaky::default()
    });
    // SNS-like: accepted means durable, so the flag is cleared once published.
    let publisher = Arc::new(OutboxPublisher {
        inner: flaky.clone(),
        outbox: store.clone(),
    });
    let sweeper = EventOutbox {
        outbox: store,
        publisher: publisher.clone(),
        clock: w.clock.clone(),
        republish_after: Duration::minutes(2),
    };
    let run = finished_run(&w, RunStatus::Completed, all_channels()).await;
    let pending = |id: String| {
        let store = w.store.clone();
        async move {
            store
                .get_run("ws", &id)
                .await
                .expect("get")
                .expect("stored")
                .event_pending
        }
    };
    let failed = publisher.publish(&RunEvent::of(&run)).await;
    assert!(failed.is_err());
    assert!(
        pending(run.run_id.clone()).await,
        "the publish failed: still pending"
    );
    // Too soon after the run ended: its publisher may still be at work.
    assert_eq!(sweeper.republish_pending().await.expect("sweep"), 0);
    // Later, the first sweep finds the publisher still down, the next one publishes.
    w.clock.advance(Duration::minutes(3));
    assert_eq!(sweeper.republish_pending().await.expect("sweep"), 0);
    assert!(pending(run.run_id.clone()).await);
    assert_eq!(sweeper.republish_pending().await.expect("sweep"), 1);
    assert!(!pending(run.run_id.clone()).await, "published: cleared");
    assert_eq!(sweeper.republish_pending().await.expect("sweep"), 0);
    let published = flaky.published.lock().expect("published").clone();
    assert_eq!(published, vec![RunEvent::of(&run)]);
}
