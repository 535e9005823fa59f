//! The notification rules of the API (SPEC §3 Slack row, §5, §7): what schedules and API
//! runs may ask for, who may ask for what, and the admin endpoints of the integrations
//! (Slack webhooks and the webhook signing secret, which are never returned).

use http::StatusCode;
use scheduled_runs::domain::model::{Plan, WorkspaceRole};
use scheduled_runs_tests::harness::{TestApp, TestResponse};
use serde_json::{Value, json};

struct World {
    app: TestApp,
    owner: String,
    admin: String,
    project: String,
}

async fn world(plan: Plan) -> World {
    world_with(TestApp::new(), plan).await
}

async fn world_with(app: TestApp, plan: Plan) -> World {
    app.workspace("w", plan).await;
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
    fn schedules(&self) -> String {
        format!("/api/v1/projects/{}/schedules", self.project)
    }

    async fn schedule(&self, token: &str, notifications: Value) -> TestResponse {
        self.app
            .post(
                &self.schedules(),
                token,
                json!({"cadence": {"kind": "DAILY", "hour": 7}, "notifications": notifications}),
            )
            .await
    }

    async fn run(&self, token: &str, body: Value) -> TestResponse {
        self.app
            .post(
                &format!("/api/v1/projects/{}/runs", self.project),
                token,
                body,
            )
            .await
    }

    async fn slack(&self, channels: Value) -> TestResponse {
        self.app
            .put(
                "/api/v1/admin/integrations/slack",
                &self.admin,
                json!({"channels": channels}),
            )
            .await
    }

    async fn rotate(&self, token: &str) -> TestResponse {
        self.app
            .post(
                "/api/v1/admin/integrations/webhooks/rotate-secret",
                token,
                json!({}),
            )
            .await
    }
}

fn to(recipients: Value) -> Value {
    json!({"subscriptions": [{"on": "ALL", "recipients": recipients}]})
}

fn expect(r: &TestResponse, status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.code(), code, "{}", r.body);
    if let Some(field) = field {
        assert_eq!(r.body["error"]["field"], field, "{}", r.body);
    }
}

#[tokio::test]
async fn schedules_keep_their_notifications() {
    let w = world(Plan::Team).await;
    let settings = json!({
        "subscriptions": [
            {"on": "SUCCESS", "recipients": {"userIds": ["owner"], "emails": ["sales@example.com"]}},
            {"on": "FAILURE", "includeSkipped": true, "recipients": {"emails": ["ops@example.com"]}}
        ],
        "conditional": [
            {"name": "anything", "cellId": "summary",
             "condition": {"measure": "VALUE", "column": "n", "op": "GTE", "value": 1},
             "recipients": {"emails": ["sales@example.com"]}}
        ]
    });
    let r = w.schedule(&w.owner, settings.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["notifications"], settings);
    let path = format!(
        "{}/{}",
        w.schedules(),
        r.body["scheduleId"].as_str().unwrap_or_default()
    );
    assert_eq!(
        w.app.get(&path, &w.owner).await.body["notifications"],
        settings
    );

    // A change of something else keeps them; a change of them replaces them as a whole.
    let r = w
        .app
        .patch(&path, &w.owner, json!({"enabled": false}))
        .await;
    assert_eq!(r.body["notifications"], settings, "{}", r.body);
    let fewer = to(json!({"emails": ["ops@example.com"]}));
    let r = w
        .app
        .patch(&path, &w.owner, json!({"notifications": fewer}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["notifications"],
        json!({"subscriptions": fewer["subscriptions"], "conditional": []})
    );
    let r = w
        .app
        .patch(
            &path,
            &w.owner,
            json!({"notifications": {"subscriptions": [], "conditional": []}}),
        )
        .await;
    assert_eq!(
        r.body["notifications"],
        json!({"subscriptions": [], "conditional": []})
    );
    // Unknown fields are malformed requests.
    let r = w
        .schedule(
            &w.owner,
            json!({"subscriptions": [{"on": "ALL", "recipients": {"phone": "1"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = w
        .schedule(
            &w.owner,
            json!({"subscriptions": [{"on": "SOMETIMES", "recipients": {}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[tokio::test]
async fn conditions_name_cells_the_app_shows() {
    let w = world(Plan::Team).await;
    let cond = |cell: &str| {
        json!({"conditional": [{"name": "c", "cellId": cell,
            "condition": {"measure": "ROW_COUNT", "op": "IS_NOT_EMPTY"},
            "recipients": {"emails": ["a@example.com"]}}]})
    };
    for cell in ["nope", "orders"] {
        // `orders` exists but the app shows only `summary`.
        let r = w.schedule(&w.owner, cond(cell)).await;
        expect(
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "UNKNOWN_CELL",
            Some("notifications.conditional[0].cellId"),
        );
    }
    assert_eq!(
        w.schedule(&w.owner, cond("summary")).await.status,
        StatusCode::CREATED
    );
    let r = w
        .schedule(
            &w.owner,
            json!({"conditional": [{"name": "c", "cellId": "summary",
                "condition": {"measure": "VALUE", "op": "GT", "value": 1},
                "recipients": {"emails": ["a@example.com"]}}]}),
        )
        .await;
    expect(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_NOTIFICATION",
        Some("notifications.conditional[0].condition.column"),
    );
}

#[tokio::test]
async fn slack_is_not_on_the_professional_plan() {
    let w = world(Plan::Professional).await;
    let r = w
        .schedule(&w.owner, to(json!({"slackChannelIds": ["C1"]})))
        .await;
    expect(&r, StatusCode::FORBIDDEN, "PLAN_LIMIT", None);
    let r = w
        .run(
            &w.owner,
            json!({"notifications": [{"type": "ALL", "slackChannelIds": ["C1"]}]}),
        )
        .await;
    expect(&r, StatusCode::FORBIDDEN, "PLAN_LIMIT", None);
    let r = w
        .slack(json!({"C1": "https://hooks.slack.com/services/T/B/x"}))
        .await;
    expect(&r, StatusCode::FORBIDDEN, "PLAN_LIMIT", None);
    // E-mail is fine on every plan.
    assert_eq!(
        w.schedule(&w.owner, to(json!({"emails": ["a@example.com"]})))
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn slack_channels_come_from_the_workspace_integration() {
    let w = world(Plan::Team).await;
    let r = w
        .schedule(&w.owner, to(json!({"slackChannelIds": ["C1"]})))
        .await;
    expect(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "UNKNOWN_SLACK_CHANNEL",
        Some("notifications.subscriptions[0].recipients.slackChannelIds[0]"),
    );
    let url = "https://hooks.slack.com/services/T000/B000/VerySecretToken";
    let r = w.slack(json!({"C1": url, "C2": url})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["slackChannelIds"], json!(["C1", "C2"]));
    assert!(
        !r.body.to_string().contains("VerySecretToken"),
        "never returned: {}",
        r.body
    );
    let r = w.app.get("/api/v1/admin/integrations", &w.admin).await;
    assert_eq!(r.body["slackChannelIds"], json!(["C1", "C2"]));
    assert!(
        !r.body.to_string().contains("hooks.slack.com"),
        "{}",
        r.body
    );
    assert_eq!(
        w.schedule(&w.owner, to(json!({"slackChannelIds": ["C2"]})))
            .await
            .status,
        StatusCode::CREATED
    );
    // Replacing the channels drops the old ones.
    assert_eq!(w.slack(json!({"C3": url})).await.status, StatusCode::OK);
    let r = w
        .schedule(&w.owner, to(json!({"slackChannelIds": ["C1"]})))
        .await;
    expect(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "UNKNOWN_SLACK_CHANNEL",
        None,
    );
    // Slack URLs pass the SSRF guard too.
    for bad in [
        "http://hooks.slack.com/services/x",
        "https://169.254.169.254/",
        "https://localhost/x",
    ] {
        let r = w.slack(json!({"C9": bad})).await;
        expect(
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_WEBHOOK_URL",
            Some("channels.C9"),
        );
    }
    let r = w.slack(json!({"bad id": url})).await;
    expect(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_NOTIFICATION",
        None,
    );
    let r = w
        .app
        .put(
            "/api/v1/admin/integrations/slack",
            &w.admin,
            json!({"channels": {}, "extra": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn below_can_edit_only_yourself() {
    let w = world(Plan::Team).await;
    w.app
        .add_member(&w.owner, &w.project, "ex", "CAN_EXPLORE")
        .await;
    w.app
        .add_member(&w.owner, &w.project, "viewer", "CAN_VIEW")
        .await;
    let explorer = w.app.token("ex", "w", WorkspaceRole::Member);
    let viewer = w.app.token("viewer", "w", WorkspaceRole::Member);
    w.rotate(&w.admin).await;
    for (recipients, field) in [
        (json!({"emails": ["owner@example.com"]}), "notifications"),
        (json!({"userIds": ["owner"]}), "notifications"),
        (
            json!({"webhookUrls": ["https://hooks.example.com/x"]}),
            "notifications",
        ),
    ] {
        let r = w.schedule(&explorer, to(recipients)).await;
        expect(&r, StatusCode::FORBIDDEN, "FORBIDDEN", Some(field));
    }
    // The token's address of the explorer (tokens here carry <user>@example.com).
    let r = w
        .schedule(
            &explorer,
            to(json!({"userIds": ["ex"], "emails": ["EX@example.com"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let path = format!(
        "{}/{}",
        w.schedules(),
        r.body["scheduleId"].as_str().unwrap_or_default()
    );

    // An editor changing the explorer's schedule keeps the explorer's rules: only the
    // explorer may be notified there.
    let r = w
        .app
        .patch(
            &path,
            &w.owner,
            json!({"notifications": to(json!({"emails": ["sales@example.com"]}))}),
        )
        .await;
    expect(&r, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let r = w
        .app
        .patch(
            &path,
            &w.owner,
            json!({"notifications": to(json!({"userIds": ["ex"]}))}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Viewers may start API runs and be notified themselves, nobody else.
    let r = w
        .run(
            &viewer,
            json!({"notifications": [{"type": "ALL", "emails": ["owner@example.com"]}]}),
        )
        .await;
    expect(&r, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let r = w
        .run(&viewer, json!({"notifications": [{"type": "FAILURE", "userIds": ["viewer"], "emails": ["viewer@example.com"]}]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn user_ids_name_known_users_who_may_see_the_project() {
    let w = world(Plan::Team).await;
    let r = w
        .schedule(&w.owner, to(json!({"userIds": ["ghost"]})))
        .await;
    expect(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "UNKNOWN_USER",
        Some("notifications.subscriptions[0].recipients.userIds[0]"),
    );
    // A user of the workspace without a role on the project.
    let stranger = w.app.token("stranger", "w", WorkspaceRole::Member);
    let other = w.app.project(&stranger).await;
    assert!(!other.is_empty());
    let r = w
        .schedule(&w.owner, to(json!({"userIds": ["stranger"]})))
        .await;
    expect(&r, StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_USER", None);
    w.app
        .add_member(&w.owner, &w.project, "stranger", "CAN_VIEW")
        .await;
    assert_eq!(
        w.schedule(&w.owner, to(json!({"userIds": ["stranger"]})))
            .await
            .status,
        StatusCode::CREATED
    );
    // Workspace admins see every project (the admin is known once they created something).
    w.app.project(&w.admin).await;
    assert_eq!(
        w.schedule(&w.owner, to(json!({"userIds": ["boss"]})))
            .await
            .status,
        StatusCode::CREATED
    );
    let r = w
        .run(
            &w.owner,
            json!({"notifications": [{"type": "ALL", "userIds": ["ghost"]}]}),
        )
        .await;
    expect(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "UNKNOWN_USER",
        Some("notifications[0].userIds[0]"),
    );
}

#[tokio::test]
async fn webhooks_need_https_public_targets_and_a_signing_secret() {
    let w = world(Plan::Team).await;
    let hook = |url: &str| to(json!({"webhookUrls": [url]}));
    let r = w
        .schedule(&w.owner, hook("https://hooks.example.com/runs"))
        .await;
    expect(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "WEBHOOK_SECRET_MISSING",
        None,
    );
    let r = w.rotate(&w.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        w.schedule(&w.owner, hook("https://hooks.example.com/runs"))
            .await
            .status,
        StatusCode::CREATED
    );
    for bad in [
        "http://hooks.example.com/runs",
        "https://127.0.0.1/runs",
        "https://10.0.0.5/runs",
        "https://[::1]/runs",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost:8443/runs",
        "https://user:pass@hooks.example.com/runs",
        "http://127.0.0.1:9000/runs",
    ] {
        let r = w.schedule(&w.owner, hook(bad)).await;
        expect(
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_WEBHOOK_URL",
            Some("notifications.subscriptions[0].recipients.webhookUrls[0]"),
        );
        assert!(
            !r.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(bad)
        );
    }
    let r = w
        .run(
            &w.owner,
            json!({"notifications": [{"type": "ALL", "webhookUrls": ["http://127.0.0.1:9000/x"]}]}),
        )
        .await;
    expect(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_WEBHOOK_URL",
        Some("notifications[0].webhookUrls[0]"),
    );
}

#[tokio::test]
async fn the_development_flag_admits_loopback_webhooks_only() {
    let app = TestApp::with_config(|c| c.allow_loopback_webhooks = true);
    let w = world_with(app, Plan::Team).await;
    w.rotate(&w.admin).await;
    let hook = |url: &str| to(json!({"webhookUrls": [url]}));
    assert_eq!(
        w.schedule(&w.owner, hook("http://127.0.0.1:9000/runs"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        w.schedule(&w.owner, hook("http://localhost:9000/runs"))
            .await
            .status,
        StatusCode::CREATED
    );
    for bad in [
        "http://10.0.0.5/runs",
        "http://hooks.example.com/runs",
        "https://169.254.169.254/",
    ] {
        let r = w.schedule(&w.owner, hook(bad)).await;
        expect(
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_WEBHOOK_URL",
            None,
        );
    }
    assert_eq!(
        w.slack(json!({"C1": "http://127.0.0.1:9001/slack"}))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_signing_secret_is_shown_once_and_only_to_admins() {
    let w = world(Plan::Team).await;
    let r = w.rotate(&w.owner).await;
    expect(&r, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let r = w
        .app
        .put(
            "/api/v1/admin/integrations/slack",
            &w.owner,
            json!({"channels": {}}),
        )
        .await;
    expect(&r, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let r = w.app.get("/api/v1/admin/integrations", &w.owner).await;
    expect(&r, StatusCode::FORBIDDEN, "FORBIDDEN", None);

    let r = w.app.get("/api/v1/admin/integrations", &w.admin).await;
    assert_eq!(r.body, json!({"slackChannelIds": []}));
    let first = w.rotate(&w.admin).await.body["signingSecret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        first.starts_with("whsec_") && first.len() == 6 + 64,
        "{first}"
    );
    let second = w.rotate(&w.admin).await.body["signingSecret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(first, second, "every rotation makes a new secret");
    let r = w.app.get("/api/v1/admin/integrations", &w.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["webhookSecretRotatedAt"].is_string(), "{}", r.body);
    assert!(!r.body.to_string().contains(&second), "never shown again");
    for file in [
        scheduled_runs::embedded::DB_FILE.to_owned(),
        format!("{}-wal", scheduled_runs::embedded::DB_FILE),
    ] {
        let stored = std::fs::read(w.app.dir.path().join(&file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&stored).contains(&second),
            "stored sealed ({file})"
        );
    }
}

#[tokio::test]
async fn api_runs_take_the_runproject_notifications() {
    let w = world(Plan::Team).await;
    let notifications = json!([
        {"type": "FAILURE", "emails": ["ops@example.com"]},
        {"type": "ALL", "userIds": ["owner"]}
    ]);
    let r = w
        .run(&w.owner, json!({"notifications": notifications}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["notifications"], notifications);
    // The caller names no notifications: an empty list, as before.
    assert_eq!(
        w.run(&w.owner, json!({})).await.body["notifications"],
        json!([])
    );
    // A dry run checks them too, and creates nothing.
    let r = w
        .run(
            &w.owner,
            json!({"dryRun": true, "notifications": [{"type": "ALL", "emails": ["nope"]}]}),
        )
        .await;
    expect(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_NOTIFICATION",
        Some("notifications[0].emails[0]"),
    );
    let r = w
        .run(
            &w.owner,
            json!({"notifications": [{"type": "ALL", "sms": ["1"]}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = w
        .run(&w.owner, json!({"notifications": [{"type": "ALL"}]}))
        .await;
    expect(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_NOTIFICATION",
        Some("notifications[0]"),
    );
}

#[tokio::test]
async fn the_openapi_document_describes_notifications() {
    let w = world(Plan::Team).await;
    let doc = w.app.get("/api/v1/openapi.json", &w.owner).await.body;
    for path in [
        "/api/v1/admin/integrations",
        "/api/v1/admin/integrations/slack",
        "/api/v1/admin/integrations/webhooks/rotate-secret",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    let schemas = &doc["components"]["schemas"];
    for schema in [
        "NotificationSettings",
        "Subscription",
        "ConditionalNotification",
        "RunNotification",
        "DeliveryView",
    ] {
        assert!(schemas[schema].is_object(), "{schema}");
    }
}
