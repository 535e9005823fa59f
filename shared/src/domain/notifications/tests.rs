use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::domain::model::{CellStatus, Condition};

fn body() -> VersionBody {
    serde_json::from_value(json!({
        "cells": [
            {"id": "orders", "type": "SQL", "connection": "w", "sql": "select 1"},
            {"id": "hidden", "type": "SQL", "connection": "w", "sql": "select 1"}
        ],
        "app": {"cells": ["orders"]}
    }))
    .expect("version body")
}

fn ctx<'a>(version: &'a VersionBody, channels: &'a [String]) -> ValidationContext<'a> {
    ValidationContext {
        plan: Plan::Team,
        version: Some(version),
        only_self: None,
        slack_channels: channels,
        has_signing_secret: true,
        url_policy: UrlPolicy::default(),
    }
}

fn settings(v: serde_json::Value) -> NotificationSettings {
    serde_json::from_value(v).expect("settings JSON")
}

fn check(v: serde_json::Value, ctx: &ValidationContext<'_>) -> Result<(), NotificationError> {
    validate_settings(&settings(v), "notifications", ctx)
}

fn rule(
    measure: &str,
    column: Option<&str>,
    op: &str,
    value: Option<Value>,
) -> ConditionalNotification {
    let mut condition = json!({"measure": measure, "op": op});
    if let Some(c) = column {
        condition["column"] = json!(c);
    }
    if let Some(v) = value {
        condition["value"] = v;
    }
    serde_json::from_value(json!({
        "name": "n", "cellId": "orders", "condition": condition,
        "recipients": {"emails": ["a@example.com"]}
    }))
    .expect("rule JSON")
}

fn cell(columns: &[&str], rows: Vec<Vec<Value>>, row_count: u64) -> CellResult {
    CellResult {
        cell_id: "orders".into(),
        status: CellStatus::Completed,
        columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        rows: rows.into(),
        row_count,
        duration_ms: 1,
        cache_hit: false,
        error: None,
    }
}

fn met(e: &Evaluation) -> bool {
    matches!(e, Evaluation::Met(_))
}

// --- validation -----------------------------------------------------------------------------

#[test]
fn valid_settings_pass() {
    let v = body();
    let channels = vec!["C1".to_owned()];
    let ok = check(
        json!({
            "subscriptions": [
                {"on": "SUCCESS", "recipients": {"userIds": ["u1"], "emails": ["ops@example.com"]}},
                {"on": "FAILURE", "includeSkipped": true, "recipients": {"slackChannelIds": ["C1"],
                    "webhookUrls": ["https://hooks.example.com/x"]}}
            ],
            "conditional": [{"name": "big", "cellId": "orders",
                "condition": {"measure": "ROW_COUNT", "op": "GT", "value": 10},
                "recipients": {"emails": ["ops@example.com"]}}]
        }),
        &ctx(&v, &channels),
    );
    assert_eq!(ok, Ok(()));
}

#[test]
fn unknown_and_hidden_cells_are_refused() {
    let v = body();
    let c = ctx(&v, &[]);
    for cell in ["nope", "hidden"] {
        let e = check(
            json!({"conditional": [{"name": "x", "cellId": cell,
                "condition": {"measure": "ROW_COUNT", "op": "IS_EMPTY"},
                "recipients": {"emails": ["a@example.com"]}}]}),
            &c,
        )
        .expect_err(cell);
        assert_eq!(e.problem, Problem::UnknownCell, "{cell}");
        assert_eq!(e.field, "notifications.conditional[0].cellId");
    }
    let no_version = ValidationContext { version: None, ..c };
    let e = validate_settings(
        &NotificationSettings {
            subscriptions: vec![],
            conditional: vec![rule("ROW_COUNT", None, "IS_EMPTY", None)],
        },
        "notifications",
        &no_version,
    )
    .expect_err("no version");
    assert_eq!(e.problem, Problem::UnknownCell);
}

#[test]
fn condition_shapes_are_checked() {
    let v = body();
    let c = ctx(&v, &[]);
    let bad = [
        ("ROW_COUNT", Some("total"), "GT", Some(json!(1)), "column"),
        ("VALUE", None, "GT", Some(json!(1)), "column"),
        ("VALUE", Some(" "), "GT", Some(json!(1)), "column"),
        ("ROW_COUNT", None, "GT", None, "value"),
        ("ROW_COUNT", None, "GT", Some(json!("ten")), "value"),
        ("ROW_COUNT", None, "IS_EMPTY", Some(json!(1)), "value"),
        ("VALUE", Some("total"), "EQ", Some(json!([1])), "value"),
        ("VALUE", Some("total"), "EQ", Some(json!(null)), "value"),
        (
            "VALUE",
            Some("total"),
            "IS_NOT_EMPTY",
            Some(json!("x")),
            "value",
        ),
    ];
    for (measure, column, op, value, field) in bad {
        let s = NotificationSettings {
            subscriptions: vec![],
            conditional: vec![rule(measure, column, op, value.clone())],
        };
        let e = validate_settings(&s, "notifications", &c).expect_err(op);
        assert_eq!(e.problem, Problem::Invalid, "{measure} {op} {value:?}");
        assert_eq!(
            e.field,
            format!("notifications.conditional[0].condition.{field}")
        );
    }
    let mut unnamed = rule("ROW_COUNT", None, "IS_EMPTY", None);
    unnamed.name = "  ".into();
    let s = NotificationSettings {
        subscriptions: vec![],
        conditional: vec![unnamed],
    };
    assert_eq!(
        validate_settings(&s, "notifications", &c).map_err(|e| e.field),
        Err("notifications.conditional[0].name".into())
    );
}

#[test]
fn recipients_must_be_present_well_formed_and_bounded() {
    let v = body();
    let c = ctx(&v, &[]);
    let e = check(
        json!({"subscriptions": [{"on": "ALL", "recipients": {}}]}),
        &c,
    )
    .expect_err("empty");
    assert_eq!(
        (e.problem, e.field.as_str()),
        (
            Problem::Invalid,
            "notifications.subscriptions[0].recipients"
        )
    );
    for bad in [
        "nope",
        "a@b",
        "a b@example.com",
        "@example.com",
        "a@.example.com",
        "a@example..com",
        "Ada <a@example.com>",
    ] {
        let e = check(
            json!({"subscriptions": [{"on": "ALL", "recipients": {"emails": [bad]}}]}),
            &c,
        )
        .expect_err(bad);
        assert_eq!(
            e.field, "notifications.subscriptions[0].recipients.emails[0]",
            "{bad}"
        );
    }
    let many: Vec<String> = (0..=MAX_RECIPIENTS_PER_RULE)
        .map(|i| format!("u{i}@example.com"))
        .collect();
    let e = check(
        json!({"subscriptions": [{"on": "ALL", "recipients": {"emails": many}}]}),
        &c,
    )
    .expect_err("many");
    assert_eq!(e.problem, Problem::Invalid);
    let subs: Vec<_> = (0..=MAX_SUBSCRIPTIONS)
        .map(|_| json!({"on": "ALL", "recipients": {"userIds": ["u"]}}))
        .collect();
    assert!(check(json!({"subscriptions": subs}), &c).is_err());
    let e = check(
        json!({"subscriptions": [{"on": "SUCCESS", "includeSkipped": true, "recipients": {"userIds": ["u"]}}]}),
        &c,
    )
    .expect_err("skipped with success");
    assert_eq!(e.field, "notifications.subscriptions[0].includeSkipped");
}

#[test]
fn slack_needs_a_plan_and_a_known_channel() {
    let v = body();
    let channels = vec!["C1".to_owned()];
    let team = ctx(&v, &channels);
    let pro = ValidationContext {
        plan: Plan::Professional,
        ..team
    };
    let slack = |id: &str| json!({"subscriptions": [{"on": "ALL", "recipients": {"slackChannelIds": [id]}}]});
    assert_eq!(check(slack("C1"), &team), Ok(()));
    assert_eq!(
        check(slack("C1"), &pro).map_err(|e| e.problem),
        Err(Problem::SlackNotOnPlan)
    );
    assert_eq!(
        check(slack("C2"), &team).map_err(|e| e.problem),
        Err(Problem::UnknownSlackChannel)
    );
    assert_eq!(
        check(slack("C 2"), &team).map_err(|e| e.problem),
        Err(Problem::Invalid)
    );
    assert_eq!(Problem::SlackNotOnPlan.code(), "PLAN_LIMIT");
}

#[test]
fn webhooks_need_https_public_targets_and_a_signing_secret() {
    let v = body();
    let c = ctx(&v, &[]);
    let hook =
        |url: &str| json!({"subscriptions": [{"on": "ALL", "recipients": {"webhookUrls": [url]}}]});
    assert_eq!(check(hook("https://hooks.example.com/x"), &c), Ok(()));
    for bad in [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://10.0.0.8/x",
    ] {
        let e = check(hook(bad), &c).expect_err(bad);
        assert_eq!(e.problem, Problem::InvalidWebhookUrl, "{bad}");
        assert!(
            !e.message.contains(bad),
            "the message never repeats the URL"
        );
    }
    let dev = ValidationContext {
        url_policy: UrlPolicy {
            allow_loopback: true,
        },
        ..c
    };
    assert_eq!(check(hook("http://127.0.0.1:9/x"), &dev), Ok(()));
    let no_secret = ValidationContext {
        has_signing_secret: false,
        ..c
    };
    assert_eq!(
        check(hook("https://hooks.example.com/x"), &no_secret).map_err(|e| e.problem),
        Err(Problem::WebhookSecretMissing)
    );
}

#[test]
fn below_can_edit_only_oneself_may_be_notified() {
    let v = body();
    let channels = vec!["C1".to_owned()];
    let me = ValidationContext {
        only_self: Some(OnlySelf {
            user_id: "ada",
            email: Some("Ada@Example.com"),
        }),
        ..ctx(&v, &channels)
    };
    let sub = |r: serde_json::Value| json!({"subscriptions": [{"on": "ALL", "recipients": r}]});
    assert_eq!(
        check(
            sub(json!({"userIds": ["ada"], "emails": ["ada@example.com"]})),
            &me
        ),
        Ok(())
    );
    for (r, field) in [
        (json!({"userIds": ["bob"]}), "userIds[0]"),
        (
            json!({"userIds": ["ada"], "emails": ["bob@example.com"]}),
            "emails[0]",
        ),
        (json!({"slackChannelIds": ["C1"]}), "slackChannelIds"),
        (
            json!({"webhookUrls": ["https://hooks.example.com/x"]}),
            "webhookUrls",
        ),
    ] {
        let e = check(sub(r), &me).expect_err(field);
        assert_eq!(e.problem, Problem::OnlySelf);
        assert_eq!(
            e.field,
            format!("notifications.subscriptions[0].recipients.{field}")
        );
    }
    let no_email = ValidationContext {
        only_self: Some(OnlySelf {
            user_id: "ada",
            email: None,
        }),
        ..me
    };
    assert!(check(sub(json!({"emails": ["ada@example.com"]})), &no_email).is_err());
}

#[test]
fn api_run_notifications_become_subscriptions() {
    let v = body();
    let c = ctx(&v, &[]);
    let list: Vec<RunNotification> = serde_json::from_value(json!([
        {"type": "FAILURE", "emails": ["ops@example.com"]},
        {"type": "ALL", "userIds": ["u1"]}
    ]))
    .expect("RunProject shape");
    let s = validate_run_notifications(&list, &c).expect("valid");
    assert_eq!(s.subscriptions.len(), 2);
    assert_eq!(s.subscriptions[0].on, NotifyOn::Failure);
    assert_eq!(
        s.subscriptions[1].recipients.user_ids,
        vec!["u1".to_owned()]
    );
    let bad: Vec<RunNotification> =
        serde_json::from_value(json!([{"type": "ALL", "emails": ["x"]}])).expect("shape");
    assert_eq!(
        validate_run_notifications(&bad, &c).map_err(|e| e.field),
        Err("notifications[0].emails[0]".into())
    );
    assert!(
        serde_json::from_value::<RunNotification>(json!({"type": "ALL", "phone": "1"})).is_err()
    );
}

// --- evaluation -----------------------------------------------------------------------------

#[test]
fn subscriptions_fire_by_outcome() {
    use RunStatus::*;
    let sub = |on, include_skipped| Subscription {
        on,
        recipients: Recipients::default(),
        include_skipped,
    };
    let table = [
        (NotifyOn::Success, false, [true, false, false, false]),
        (NotifyOn::Failure, false, [false, true, true, false]),
        (NotifyOn::All, false, [true, true, true, false]),
        (NotifyOn::Failure, true, [false, true, true, true]),
        (NotifyOn::All, true, [true, true, true, true]),
        (NotifyOn::Success, true, [true, false, false, false]),
    ];
    for (on, skipped, expected) in table {
        let got =
            [Completed, Errored, Killed, Skipped].map(|s| subscription_fires(&sub(on, skipped), s));
        assert_eq!(got, expected, "{on:?} includeSkipped={skipped}");
        assert!(!subscription_fires(&sub(on, skipped), Pending));
        assert!(!subscription_fires(&sub(on, skipped), Running));
    }
}

#[test]
fn row_count_supports_every_operator() {
    let c = [cell(&["id"], vec![vec![json!(1)]], 12)];
    let cases = [
        ("GT", 11, true),
        ("GT", 12, false),
        ("GTE", 12, true),
        ("GTE", 13, false),
        ("LT", 13, true),
        ("LT", 12, false),
        ("LTE", 12, true),
        ("LTE", 11, false),
        ("EQ", 12, true),
        ("EQ", 11, false),
        ("NEQ", 11, true),
        ("NEQ", 12, false),
    ];
    for (op, value, expected) in cases {
        let e = evaluate(&rule("ROW_COUNT", None, op, Some(json!(value))), &c);
        assert_eq!(met(&e), expected, "{op} {value}: {e:?}");
    }
    assert!(!met(&evaluate(
        &rule("ROW_COUNT", None, "IS_EMPTY", None),
        &c
    )));
    assert!(met(&evaluate(
        &rule("ROW_COUNT", None, "IS_NOT_EMPTY", None),
        &c
    )));
    let empty = [cell(&["id"], vec![], 0)];
    assert!(met(&evaluate(
        &rule("ROW_COUNT", None, "IS_EMPTY", None),
        &empty
    )));
    assert!(met(&evaluate(
        &rule("ROW_COUNT", None, "GT", Some(json!(11.5))),
        &c
    )));
    assert_eq!(
        evaluate(&rule("ROW_COUNT", None, "GT", Some(json!(10))), &c),
        Evaluation::Met("ROW_COUNT of orders is 12 (GT 10)".into())
    );
}

#[test]
fn row_count_uses_the_full_count_not_the_kept_rows() {
    let c = [cell(&["id"], vec![vec![json!(1)]; 1000], 250_000)];
    assert!(met(&evaluate(
        &rule("ROW_COUNT", None, "GTE", Some(json!(250_000))),
        &c
    )));
}

#[test]
fn value_compares_numbers_strings_and_booleans() {
    let c = [cell(
        &["total", "region", "ok", "amount"],
        vec![
            vec![json!(1520.5), json!("EMEA"), json!(true), json!("12.50")],
            vec![json!(1), json!("X"), json!(false), json!("0")],
        ],
        2,
    )];
    let cases = [
        ("total", "GT", json!(1000), true),
        ("total", "LTE", json!(1520.5), true),
        ("total", "LT", json!(1520.5), false),
        ("total", "EQ", json!("1520.5"), true),
        ("region", "EQ", json!("EMEA"), true),
        ("region", "NEQ", json!("EMEA"), false),
        ("region", "GT", json!("AMER"), true),
        ("ok", "EQ", json!(true), true),
        ("ok", "NEQ", json!(true), false),
        // A numeric string (NUMERIC from PostgreSQL) compares as a number.
        ("amount", "GT", json!(9), true),
        ("amount", "EQ", json!(12.5), true),
    ];
    for (column, op, value, expected) in cases {
        let e = evaluate(&rule("VALUE", Some(column), op, Some(value.clone())), &c);
        assert_eq!(met(&e), expected, "{column} {op} {value}: {e:?}");
        assert!(!matches!(e, Evaluation::Unevaluable(_)), "{e:?}");
    }
    // Only the first row counts.
    assert!(!met(&evaluate(
        &rule("VALUE", Some("total"), "EQ", Some(json!(1))),
        &c
    )));
    // Case-insensitive column match when unambiguous.
    assert!(met(&evaluate(
        &rule("VALUE", Some("TOTAL"), "GT", Some(json!(1))),
        &c
    )));
}

#[test]
fn nulls_and_missing_rows_satisfy_no_comparison_and_count_as_empty() {
    let null = [cell(&["total"], vec![vec![json!(null)]], 1)];
    let none = [cell(&["total"], vec![], 0)];
    let blank = [cell(&["total"], vec![vec![json!("")]], 1)];
    for c in [&null, &none] {
        for op in ["GT", "GTE", "LT", "LTE", "EQ", "NEQ"] {
            let e = evaluate(&rule("VALUE", Some("total"), op, Some(json!(0))), c);
            assert!(matches!(e, Evaluation::NotMet(_)), "{op}: {e:?}");
        }
        assert!(met(&evaluate(
            &rule("VALUE", Some("total"), "IS_EMPTY", None),
            c
        )));
        assert!(!met(&evaluate(
            &rule("VALUE", Some("total"), "IS_NOT_EMPTY", None),
            c
        )));
    }
    assert!(met(&evaluate(
        &rule("VALUE", Some("total"), "IS_EMPTY", None),
        &blank
    )));
    let zero = [cell(&["total"], vec![vec![json!(0)]], 1)];
    assert!(met(&evaluate(
        &rule("VALUE", Some("total"), "IS_NOT_EMPTY", None),
        &zero
    )));
}

#[test]
fn type_mismatches_and_missing_cells_or_columns_are_unevaluable() {
    let c = [cell(
        &["total", "ok", "tags"],
        vec![vec![json!(5), json!(true), json!(["a"])]],
        1,
    )];
    let unevaluable = [
        rule("VALUE", Some("total"), "EQ", Some(json!(true))),
        rule("VALUE", Some("total"), "GT", Some(json!("many"))),
        rule("VALUE", Some("ok"), "GT", Some(json!(false))),
        rule("VALUE", Some("ok"), "EQ", Some(json!(1))),
        rule("VALUE", Some("tags"), "EQ", Some(json!("a"))),
        rule("VALUE", Some("missing"), "EQ", Some(json!(1))),
        rule("ROW_COUNT", None, "GT", Some(json!("x"))),
    ];
    for r in &unevaluable {
        let e = evaluate(r, &c);
        assert!(matches!(e, Evaluation::Unevaluable(_)), "{r:?}: {e:?}");
    }
    let mut other = rule("ROW_COUNT", None, "IS_EMPTY", None);
    other.cell_id = "elsewhere".into();
    assert_eq!(
        evaluate(&other, &c),
        Evaluation::Unevaluable("cell elsewhere has no result in this run".into())
    );
    let ambiguous = [cell(&["a", "A"], vec![vec![json!(1), json!(2)]], 1)];
    assert!(matches!(
        evaluate(&rule("VALUE", Some("a"), "EQ", Some(json!(1))), &ambiguous),
        Evaluation::Met(_)
    ));
    assert!(matches!(
        evaluate(
            &rule(
                "VALUE",
                Some("a".to_uppercase().as_str()),
                "EQ",
                Some(json!(2))
            ),
            &ambiguous
        ),
        Evaluation::Met(_)
    ));
}

fn run(status: RunStatus, settings: NotificationSettings, cells: Vec<CellResult>) -> Run {
    let at = Utc
        .with_ymd_and_hms(2026, 6, 1, 9, 0, 0)
        .single()
        .expect("instant");
    Run {
        run_id: "r1".into(),
        project_id: "p1".into(),
        workspace_id: "w1".into(),
        schedule_id: Some("s1".into()),
        run_trigger: RunTrigger::Scheduled,
        status,
        scheduled_for: Some(at),
        project_version: Some(1),
        created_by: "ada".into(),
        created_at: at,
        start_time: Some(at),
        end_time: Some(at),
        skip_reason: None,
        update_published_results: false,
        use_cached_sql_results: true,
        input_params: serde_json::Map::new(),
        trace_id: "t".into(),
        state_events: vec![],
        expires_at: at,
        attempt: 1,
        lease_until: None,
        cells,
        error: None,
        notification_settings: settings,
        event_pending: true,
        notifications: vec![],
    }
}

#[test]
fn the_audience_merges_reasons_per_recipient_and_evaluates_conditions_on_completed_runs_only() {
    let s = settings(json!({
        "subscriptions": [
            {"on": "ALL", "recipients": {"emails": ["ops@example.com"], "userIds": ["ada"]}},
            {"on": "FAILURE", "recipients": {"emails": ["ops@example.com"], "slackChannelIds": ["C1"]}}
        ],
        "conditional": [
            {"name": "big", "cellId": "orders", "condition": {"measure": "ROW_COUNT", "op": "GT", "value": 1},
             "recipients": {"emails": ["ops@example.com", "sales@example.com"]}},
            {"name": "small", "cellId": "orders", "condition": {"measure": "ROW_COUNT", "op": "LT", "value": 1},
             "recipients": {"emails": ["nobody@example.com"]}},
            {"name": "broken", "cellId": "gone", "condition": {"measure": "ROW_COUNT", "op": "IS_EMPTY"},
             "recipients": {"emails": ["nobody@example.com"]}}
        ]
    }));
    let completed = audience(&run(
        RunStatus::Completed,
        s.clone(),
        vec![cell(&["id"], vec![], 5)],
    ));
    let names: Vec<(RecipientRef, Vec<String>)> = completed
        .recipients
        .iter()
        .map(|(r, reasons)| (r.clone(), reasons.iter().map(Reason::label).collect()))
        .collect();
    assert_eq!(
        names,
        vec![
            (RecipientRef::User("ada".into()), vec!["ALL".to_owned()]),
            (
                RecipientRef::Email("ops@example.com".into()),
                vec!["ALL".to_owned(), "CONDITION:big".to_owned()]
            ),
            (
                RecipientRef::Email("sales@example.com".into()),
                vec!["CONDITION:big".to_owned()]
            ),
        ]
    );
    assert_eq!(completed.unevaluable.len(), 1);
    assert_eq!(completed.unevaluable[0].0, "broken");

    let errored = audience(&run(
        RunStatus::Errored,
        s.clone(),
        vec![cell(&["id"], vec![], 5)],
    ));
    let labels: Vec<_> = errored.recipients.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(
        labels,
        vec![
            RecipientRef::User("ada".into()),
            RecipientRef::Email("ops@example.com".into()),
            RecipientRef::Slack("C1".into()),
        ],
        "no conditions on a failed run"
    );
    assert!(errored.unevaluable.is_empty());
    assert!(
        audience(&run(RunStatus::Skipped, s.clone(), vec![]))
            .recipients
            .is_empty()
    );
    assert!(
        audience(&run(RunStatus::Running, s, vec![]))
            .recipients
            .is_empty()
    );
}

// --- ids, masks, messages, signatures --------------------------------------------------------

#[test]
fn delivery_ids_are_stable_and_distinct() {
    let a = delivery_id(
        "r1",
        DeliveryChannel::Email,
        &target_key(DeliveryChannel::Email, "Ada@Example.com"),
    );
    assert_eq!(
        a,
        delivery_id("r1", DeliveryChannel::Email, "ada@example.com")
    );
    assert_eq!(a.len(), 32);
    assert_ne!(
        a,
        delivery_id("r2", DeliveryChannel::Email, "ada@example.com")
    );
    assert_ne!(
        a,
        delivery_id("r1", DeliveryChannel::Webhook, "ada@example.com")
    );
}

#[test]
fn targets_are_masked() {
    assert_eq!(mask_email("ada@example.com"), "a***@example.com");
    assert_eq!(
        mask_url("https://hooks.slack.com/services/T0/B0/XXXXsecret"),
        "hooks.slack.com/…/cret"
    );
    assert_eq!(
        mask_url("http://127.0.0.1:9/h?token=abcd"),
        "127.0.0.1/…/abcd"
    );
    assert!(!mask_url("https://hooks.example.com/t/SECRETTOKEN").contains("SECRET"));
}

fn message(status: RunStatus, reasons: Vec<Reason>) -> NotificationMessage {
    let at = Utc
        .with_ymd_and_hms(2026, 6, 1, 9, 0, 0)
        .single()
        .expect("instant");
    NotificationMessage {
        delivery_id: "d1".into(),
        workspace_id: "w1".into(),
        project_id: "p1".into(),
        project_title: "Sales <EMEA>\r\nBcc: x@evil.example".into(),
        schedule_id: Some("s1".into()),
        run_id: "r1".into(),
        status,
        trigger: RunTrigger::Scheduled,
        scheduled_for: Some(at),
        ended_at: Some(at),
        run_url: "https://runs.example.com/projects/p1/runs/r1".into(),
        skip_reason: None,
        error: (status == RunStatus::Errored).then(|| RunError {
            code: "CELL_FAILED".into(),
            message: "cell orders: no such table".into(),
            cell_id: Some("orders".into()),
        }),
        reasons,
    }
}

#[test]
fn messages_name_the_project_status_link_and_error_or_condition() {
    let failed = message(
        RunStatus::Errored,
        vec![Reason::Subscription(NotifyOn::Failure)],
    );
    let subject = failed.subject();
    assert!(
        subject.contains("Scheduled run failed (CELL_FAILED)"),
        "{subject}"
    );
    assert!(
        !subject.contains('\n') && !subject.contains('\r'),
        "{subject}"
    );
    let text = failed.text();
    for needle in [
        "Schedule: s1",
        "Status: ERRORED",
        "CELL_FAILED: cell orders: no such table (cell orders)",
        "Open the run: https://runs.example.com/projects/p1/runs/r1",
        "because of: FAILURE",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    let slack = failed.slack_payload();
    let section = slack["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        section.contains("<https://runs.example.com/projects/p1/runs/r1|Open the run>"),
        "{section}"
    );
    assert!(section.contains("Sales &lt;EMEA&gt;"), "escaped: {section}");
    let fallback = slack["text"].as_str().unwrap_or_default();
    assert!(
        fallback.contains("Sales &lt;EMEA&gt;"),
        "escaped: {fallback}"
    );
    assert!(!fallback.contains('<'), "{fallback}");
    assert!(section.contains("CELL_FAILED"), "{section}");

    let condition = message(
        RunStatus::Completed,
        vec![Reason::Condition {
            name: "big orders".into(),
            cell_id: "orders".into(),
            summary: "ROW_COUNT of orders is 12 (GT 10)".into(),
        }],
    );
    assert!(condition.subject().contains("Condition met: big orders"));
    assert!(
        condition
            .text()
            .contains("big orders: ROW_COUNT of orders is 12 (GT 10)")
    );
    let body: Value = serde_json::from_slice(&condition.webhook_body()).expect("JSON body");
    assert_eq!(body["event"], "run.finished");
    assert_eq!(body["deliveryId"], "d1");
    assert_eq!(body["status"], "COMPLETED");
    assert_eq!(body["runTrigger"], "SCHEDULED");
    assert_eq!(
        body["runUrl"],
        "https://runs.example.com/projects/p1/runs/r1"
    );
    assert_eq!(body["reasons"], json!(["CONDITION:big orders"]));
    assert_eq!(body["conditions"][0]["cellId"], "orders");
    assert!(body.get("error").is_none());
}

#[test]
fn signatures_verify_and_refuse_tampering_staleness_and_garbage() {
    let secret = b"whsec_test";
    let body = br#"{"event":"run.finished"}"#;
    let header = signature_header(secret, 1_780_000_000, body);
    assert!(header.starts_with("t=1780000000,v1="));
    assert_eq!(header.len(), "t=1780000000,v1=".len() + 64);
    let now = 1_780_000_100;
    assert_eq!(
        verify_signature(secret, &header, body, now, SIGNATURE_TOLERANCE_SECS),
        Ok(())
    );
    assert_eq!(
        verify_signature(secret, &header, b"{}", now, SIGNATURE_TOLERANCE_SECS),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(b"other", &header, body, now, SIGNATURE_TOLERANCE_SECS),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(
            secret,
            &header,
            body,
            1_780_000_301,
            SIGNATURE_TOLERANCE_SECS
        ),
        Err(SignatureError::Stale)
    );
    for garbage in [
        "",
        "t=abc,v1=00",
        "v1=00",
        "t=1780000000",
        "t=1780000000,v1=zz",
    ] {
        assert_eq!(
            verify_signature(secret, garbage, body, now, SIGNATURE_TOLERANCE_SECS),
            Err(SignatureError::Malformed),
            "{garbage}"
        );
    }
    // A receiver rotating secrets may list two signatures; either may match.
    let other = signature_header(b"old", 1_780_000_000, body);
    let v1_old = other.split(",v1=").nth(1).unwrap_or_default();
    let both = format!("{header},v1={v1_old}");
    assert_eq!(
        verify_signature(b"old", &both, body, now, SIGNATURE_TOLERANCE_SECS),
        Ok(())
    );
    // The documented example: HMAC-SHA256("secret", "1700000000.{}").
    assert_eq!(
        signature_header(b"secret", 1_700_000_000, b"{}"),
        format!(
            "t=1700000000,v1={}",
            hex(&{
                let mut m = <HmacSha256 as KeyInit>::new_from_slice(b"secret").expect("key");
                m.update(b"1700000000.{}");
                m.finalize().into_bytes()
            })
        )
    );
}

#[test]
fn condition_json_round_trips() {
    let c: Condition = serde_json::from_value(
        json!({"measure": "VALUE", "column": "total", "op": "GTE", "value": 3}),
    )
    .expect("condition");
    assert_eq!(
        serde_json::to_value(&c).expect("serialises"),
        json!({"measure": "VALUE", "column": "total", "op": "GTE", "value": 3})
    );
    assert!(serde_json::from_value::<Condition>(json!({"measure": "MEAN", "op": "GT"})).is_err());
    assert!(
        serde_json::from_value::<Condition>(json!({"measure": "VALUE", "op": "GT", "extra": 1}))
            .is_err()
    );
}
