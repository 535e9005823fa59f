//! Notifications, the pure part (SPEC §7): what a schedule's or an API run's notification
//! settings may say, who hears about a finished run and why, the message each channel
//! sends, how targets are masked in records, and how webhook deliveries are signed.
//!
//! Rules, in short (docs/notifications.md has the reasoning):
//! - a subscription fires on `SUCCESS` (`COMPLETED`), `FAILURE` (`ERRORED`, `KILLED`) or
//!   `ALL`; a `SKIPPED` run reaches `FAILURE`/`ALL` subscriptions only with
//!   `includeSkipped`;
//! - conditional notifications are evaluated on `COMPLETED` runs only, on the named cell's
//!   result: `ROW_COUNT` (all rows the query returned) or the `VALUE` of a column in the
//!   first row. A NULL or missing value (no rows) never satisfies a comparison and counts
//!   as empty; a condition that cannot be evaluated (the cell or column is missing, the
//!   types do not compare) does not fire and says why;
//! - one delivery per (run, channel, recipient): a recipient named by several rules gets
//!   one message listing every reason.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::model::{
    CellResult, ConditionOp, ConditionalNotification, DeliveryChannel, Measure,
    NotificationSettings, NotifyOn, Plan, Recipients, Run, RunError, RunNotification, RunStatus,
    RunTrigger, SkipReason, Subscription, VersionBody,
};
use super::ssrf::{self, UrlPolicy};

/// Limits that keep one schedule from becoming a mailing list.
pub const MAX_SUBSCRIPTIONS: usize = 20;
pub const MAX_CONDITIONAL: usize = 20;
pub const MAX_RECIPIENTS_PER_RULE: usize = 50;
const MAX_NAME_LEN: usize = 100;
const MAX_EMAIL_LEN: usize = 254;
const MAX_ID_LEN: usize = 256;

/// The header that carries a webhook delivery's signature.
pub const SIGNATURE_HEADER: &str = "X-Scheduled-Runs-Signature";
/// Receivers should refuse signatures whose timestamp is further than this from their
/// clock (replay protection).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// What is wrong with notification settings; each maps to one status and code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// 422 `INVALID_NOTIFICATION`: malformed or over a limit.
    Invalid,
    /// 422 `UNKNOWN_CELL`: the cell does not exist or the app does not show it.
    UnknownCell,
    /// 422 `UNKNOWN_USER`: not a known user of the workspace with access to the project.
    UnknownUser,
    /// 422 `UNKNOWN_SLACK_CHANNEL`: not a channel of the workspace's Slack integration.
    UnknownSlackChannel,
    /// 422 `INVALID_WEBHOOK_URL`: refused by the SSRF guard.
    InvalidWebhookUrl,
    /// 422 `WEBHOOK_SECRET_MISSING`: webhooks need the workspace's signing secret first.
    WebhookSecretMissing,
    /// 403 `PLAN_LIMIT`: Slack on `PROFESSIONAL`.
    SlackNotOnPlan,
    /// 403 `FORBIDDEN`: below `CAN_EDIT`, only oneself may be notified.
    OnlySelf,
}

impl Problem {
    pub fn code(self) -> &'static str {
        match self {
            Problem::Invalid => "INVALID_NOTIFICATION",
            Problem::UnknownCell => "UNKNOWN_CELL",
            Problem::UnknownUser => "UNKNOWN_USER",
            Problem::UnknownSlackChannel => "UNKNOWN_SLACK_CHANNEL",
            Problem::InvalidWebhookUrl => "INVALID_WEBHOOK_URL",
            Problem::WebhookSecretMissing => "WEBHOOK_SECRET_MISSING",
            Problem::SlackNotOnPlan => "PLAN_LIMIT",
            Problem::OnlySelf => "FORBIDDEN",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct NotificationError {
    pub problem: Problem,
    /// The request field at fault, e.g. `notifications.subscriptions[0].recipients.emails[1]`.
    pub field: String,
    pub message: String,
}

fn problem(
    problem: Problem,
    field: impl Into<String>,
    message: impl Into<String>,
) -> NotificationError {
    NotificationError {
        problem,
        field: field.into(),
        message: message.into(),
    }
}

/// The one recipient a caller below `CAN_EDIT` may name: themselves.
#[derive(Clone, Copy, Debug)]
pub struct OnlySelf<'a> {
    pub user_id: &'a str,
    pub email: Option<&'a str>,
}

/// The facts validation needs, gathered by the service.
#[derive(Clone, Copy, Debug)]
pub struct ValidationContext<'a> {
    pub plan: Plan,
    /// The published version conditional notifications refer to.
    pub version: Option<&'a VersionBody>,
    /// Set when the rules' role is below `CAN_EDIT`.
    pub only_self: Option<OnlySelf<'a>>,
    /// The channel ids of the workspace's Slack integration.
    pub slack_channels: &'a [String],
    pub has_signing_secret: bool,
    pub url_policy: UrlPolicy,
}

/// Validates a schedule's settings; `prefix` names them in errors (`notifications`).
pub fn validate_settings(
    settings: &NotificationSettings,
    prefix: &str,
    ctx: &ValidationContext<'_>,
) -> Result<(), NotificationError> {
    if settings.subscriptions.len() > MAX_SUBSCRIPTIONS {
        return Err(problem(
            Problem::Invalid,
            format!("{prefix}.subscriptions"),
            format!("at most {MAX_SUBSCRIPTIONS} subscriptions"),
        ));
    }
    if settings.conditional.len() > MAX_CONDITIONAL {
        return Err(problem(
            Problem::Invalid,
            format!("{prefix}.conditional"),
            format!("at most {MAX_CONDITIONAL} conditional notifications"),
        ));
    }
    for (i, sub) in settings.subscriptions.iter().enumerate() {
        let at = format!("{prefix}.subscriptions[{i}]");
        if sub.include_skipped && sub.on == NotifyOn::Success {
            return Err(problem(
                Problem::Invalid,
                format!("{at}.includeSkipped"),
                "includeSkipped goes with FAILURE or ALL subscriptions",
            ));
        }
        validate_recipients(&sub.recipients, &format!("{at}.recipients"), ctx)?;
    }
    for (i, rule) in settings.conditional.iter().enumerate() {
        let at = format!("{prefix}.conditional[{i}]");
        validate_condition(rule, &at, ctx)?;
        validate_recipients(&rule.recipients, &format!("{at}.recipients"), ctx)?;
    }
    Ok(())
}

/// Validates an API run's `notifications` (the RunProject shape).
pub fn validate_run_notifications(
    list: &[RunNotification],
    ctx: &ValidationContext<'_>,
) -> Result<NotificationSettings, NotificationError> {
    if list.len() > MAX_SUBSCRIPTIONS {
        return Err(problem(
            Problem::Invalid,
            "notifications",
            format!("at most {MAX_SUBSCRIPTIONS} notifications"),
        ));
    }
    let mut settings = NotificationSettings::default();
    for (i, entry) in list.iter().enumerate() {
        let sub = entry.to_subscription();
        validate_recipients(&sub.recipients, &format!("notifications[{i}]"), ctx)?;
        settings.subscriptions.push(sub);
    }
    Ok(settings)
}

fn validate_condition(
    rule: &ConditionalNotification,
    at: &str,
    ctx: &ValidationContext<'_>,
) -> Result<(), NotificationError> {
    let name = rule.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(problem(
            Problem::Invalid,
            format!("{at}.name"),
            format!("a name of 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    let Some(version) = ctx.version else {
        return Err(problem(
            Problem::UnknownCell,
            format!("{at}.cellId"),
            "the project has no published version",
        ));
    };
    if !version.cells.iter().any(|c| c.id == rule.cell_id) {
        return Err(problem(
            Problem::UnknownCell,
            format!("{at}.cellId"),
            format!("the published version has no cell {:?}", rule.cell_id),
        ));
    }
    if !version.app.cells.contains(&rule.cell_id) {
        return Err(problem(
            Problem::UnknownCell,
            format!("{at}.cellId"),
            format!("the published app does not show cell {:?}", rule.cell_id),
        ));
    }
    let c = &rule.condition;
    let field = |f: &str| format!("{at}.condition.{f}");
    match (c.measure, &c.column) {
        (Measure::RowCount, Some(_)) => {
            return Err(problem(
                Problem::Invalid,
                field("column"),
                "column goes with the VALUE measure only",
            ));
        }
        (Measure::Value, None) => {
            return Err(problem(
                Problem::Invalid,
                field("column"),
                "the VALUE measure needs the column to read",
            ));
        }
        (Measure::Value, Some(col)) if col.trim().is_empty() || col.len() > MAX_ID_LEN => {
            return Err(problem(Problem::Invalid, field("column"), "a column name"));
        }
        _ => {}
    }
    match (c.op.compares(), &c.value) {
        (false, Some(_)) => Err(problem(
            Problem::Invalid,
            field("value"),
            format!("{} takes no value", c.op.as_str()),
        )),
        (true, None) => Err(problem(
            Problem::Invalid,
            field("value"),
            format!("{} needs a value to compare with", c.op.as_str()),
        )),
        (true, Some(v)) => match (c.measure, v) {
            (Measure::RowCount, Value::Number(_)) => Ok(()),
            (Measure::RowCount, _) => Err(problem(
                Problem::Invalid,
                field("value"),
                "a row count compares with a number",
            )),
            (Measure::Value, Value::Number(_) | Value::String(_) | Value::Bool(_)) => Ok(()),
            (Measure::Value, _) => Err(problem(
                Problem::Invalid,
                field("value"),
                "the value is a number, a string or a boolean",
            )),
        },
        (false, None) => Ok(()),
    }
}

fn validate_recipients(
    r: &Recipients,
    at: &str,
    ctx: &ValidationContext<'_>,
) -> Result<(), NotificationError> {
    if r.is_empty() {
        return Err(problem(Problem::Invalid, at, "name at least one recipient"));
    }
    if r.count() > MAX_RECIPIENTS_PER_RULE {
        return Err(problem(
            Problem::Invalid,
            at,
            format!("at most {MAX_RECIPIENTS_PER_RULE} recipients"),
        ));
    }
    for (i, id) in r.user_ids.iter().enumerate() {
        if id.trim().is_empty() || id.len() > MAX_ID_LEN {
            return Err(problem(
                Problem::Invalid,
                format!("{at}.userIds[{i}]"),
                "a user id",
            ));
        }
    }
    for (i, email) in r.emails.iter().enumerate() {
        if !is_plausible_email(email) {
            return Err(problem(
                Problem::Invalid,
                format!("{at}.emails[{i}]"),
                "not an e-mail address",
            ));
        }
    }
    for (i, id) in r.slack_channel_ids.iter().enumerate() {
        if !is_channel_id(id) {
            return Err(problem(
                Problem::Invalid,
                format!("{at}.slackChannelIds[{i}]"),
                "a Slack channel id (letters, digits, '-', '_', at most 80)",
            ));
        }
    }
    // Permissions: below CAN_EDIT only oneself, by user id or by one's own address.
    if let Some(me) = ctx.only_self {
        let others = r
            .user_ids
            .iter()
            .position(|u| u != me.user_id)
            .map(|i| format!("{at}.userIds[{i}]"))
            .or_else(|| {
                r.emails
                    .iter()
                    .position(|e| {
                        !me.email
                            .is_some_and(|mine| mine.eq_ignore_ascii_case(e.trim()))
                    })
                    .map(|i| format!("{at}.emails[{i}]"))
            })
            .or_else(|| (!r.slack_channel_ids.is_empty()).then(|| format!("{at}.slackChannelIds")))
            .or_else(|| (!r.webhook_urls.is_empty()).then(|| format!("{at}.webhookUrls")));
        if let Some(field) = others {
            return Err(problem(
                Problem::OnlySelf,
                field,
                "below CAN_EDIT a notification may only go to yourself (your user id or e-mail)",
            ));
        }
    }
    if !r.slack_channel_ids.is_empty() && ctx.plan == Plan::Professional {
        return Err(problem(
            Problem::SlackNotOnPlan,
            format!("{at}.slackChannelIds"),
            "Slack notifications need the TEAM or ENTERPRISE plan",
        ));
    }
    for (i, id) in r.slack_channel_ids.iter().enumerate() {
        if !ctx.slack_channels.contains(id) {
            return Err(problem(
                Problem::UnknownSlackChannel,
                format!("{at}.slackChannelIds[{i}]"),
                format!("the workspace's Slack integration has no channel {id:?}"),
            ));
        }
    }
    for (i, url) in r.webhook_urls.iter().enumerate() {
        if let Err(e) = ssrf::check_url(url, ctx.url_policy) {
            return Err(problem(
                Problem::InvalidWebhookUrl,
                format!("{at}.webhookUrls[{i}]"),
                e.0,
            ));
        }
    }
    if !r.webhook_urls.is_empty() && !ctx.has_signing_secret {
        return Err(problem(
            Problem::WebhookSecretMissing,
            format!("{at}.webhookUrls"),
            "the workspace has no webhook signing secret yet; an admin creates one with \
             POST /api/v1/admin/integrations/webhooks/rotate-secret",
        ));
    }
    Ok(())
}

/// A syntactic check only (one `@`, a dotted domain, no spaces or control characters);
/// the mail server has the last word.
pub fn is_plausible_email(s: &str) -> bool {
    if s.len() > MAX_EMAIL_LEN || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !local.contains(['<', '>', ',', ';', '"', '(', ')'])
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
}

/// Slack channel ids as the admin names them in the integration.
pub fn is_channel_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// Whether a subscription hears about a run that ended `status`.
pub fn subscription_fires(sub: &Subscription, status: RunStatus) -> bool {
    match status {
        RunStatus::Pending | RunStatus::Running => false,
        RunStatus::Completed => matches!(sub.on, NotifyOn::Success | NotifyOn::All),
        RunStatus::Errored | RunStatus::Killed => {
            matches!(sub.on, NotifyOn::Failure | NotifyOn::All)
        }
        RunStatus::Skipped => {
            sub.include_skipped && matches!(sub.on, NotifyOn::Failure | NotifyOn::All)
        }
    }
}

/// The outcome of one condition on one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evaluation {
    /// It holds; the summary says what was seen (`ROW_COUNT of orders is 12 (GT 10)`).
    Met(String),
    NotMet(String),
    /// It could not be evaluated (missing cell or column, types that do not compare); it
    /// does not fire.
    Unevaluable(String),
}

/// Evaluates a conditional notification on a run's cell results.
pub fn evaluate(rule: &ConditionalNotification, cells: &[CellResult]) -> Evaluation {
    let c = &rule.condition;
    let Some(cell) = cells.iter().find(|r| r.cell_id == rule.cell_id) else {
        return Evaluation::Unevaluable(format!("cell {} has no result in this run", rule.cell_id));
    };
    let op = c.op.as_str();
    match c.measure {
        Measure::RowCount => {
            let n = cell.row_count;
            let seen = format!("ROW_COUNT of {} is {n}", rule.cell_id);
            let holds = match (c.op, &c.value) {
                (ConditionOp::IsEmpty, _) => n == 0,
                (ConditionOp::IsNotEmpty, _) => n > 0,
                (_, Some(Value::Number(expected))) => {
                    let Some(expected) = expected.as_f64() else {
                        return Evaluation::Unevaluable(format!(
                            "{seen}; the condition's number is out of range"
                        ));
                    };
                    // Row counts stay far below 2^53, so f64 compares them exactly.
                    let n = n as f64;
                    ordering_holds(c.op, n.partial_cmp(&expected))
                }
                _ => {
                    return Evaluation::Unevaluable(format!(
                        "{seen}; a row count compares with a number"
                    ));
                }
            };
            let summary = match &c.value {
                Some(v) => format!("{seen} ({op} {v})"),
                None => format!("{seen} ({op})"),
            };
            if holds {
                Evaluation::Met(summary)
            } else {
                Evaluation::NotMet(summary)
            }
        }
        Measure::Value => {
            let Some(column) = c.column.as_deref() else {
                return Evaluation::Unevaluable("the VALUE measure names no column".into());
            };
            let Some(index) = column_index(&cell.columns, column) else {
                return Evaluation::Unevaluable(format!(
                    "column {column} is not in the result of cell {}",
                    rule.cell_id
                ));
            };
            let value = cell
                .rows
                .first()
                .map(|row| row.get(index).unwrap_or(&Value::Null));
            let shown = match value {
                None => "missing (no rows)".to_owned(),
                Some(v) => v.to_string(),
            };
            let seen = format!("VALUE of {}.{column} is {shown}", rule.cell_id);
            let summary = match &c.value {
                Some(v) => format!("{seen} ({op} {v})"),
                None => format!("{seen} ({op})"),
            };
            let empty = match value {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            let holds = match c.op {
                ConditionOp::IsEmpty => empty,
                ConditionOp::IsNotEmpty => !empty,
                // NULL and "no rows" satisfy no comparison, as in SQL.
                _ if matches!(value, None | Some(Value::Null)) => false,
                _ => {
                    let (Some(actual), Some(expected)) = (value, &c.value) else {
                        return Evaluation::Unevaluable(format!("{seen}; nothing to compare with"));
                    };
                    match compare(actual, expected, c.op) {
                        Ok(holds) => holds,
                        Err(why) => return Evaluation::Unevaluable(format!("{seen}; {why}")),
                    }
                }
            };
            if holds {
                Evaluation::Met(summary)
            } else {
                Evaluation::NotMet(summary)
            }
        }
    }
}

/// The column by exact name, else by a unique case-insensitive match (PostgreSQL folds
/// unquoted names to lower case).
fn column_index(columns: &[String], name: &str) -> Option<usize> {
    if let Some(i) = columns.iter().position(|c| c == name) {
        return Some(i);
    }
    let mut matches = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.eq_ignore_ascii_case(name));
    match (matches.next(), matches.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// `None` from the ordering means "not comparable" (NaN): nothing holds but `NEQ`.
fn ordering_holds(op: ConditionOp, ordering: Option<Ordering>) -> bool {
    match (op, ordering) {
        (ConditionOp::Neq, None) => true,
        (_, None) => false,
        (ConditionOp::Gt, Some(o)) => o == Ordering::Greater,
        (ConditionOp::Gte, Some(o)) => o != Ordering::Less,
        (ConditionOp::Lt, Some(o)) => o == Ordering::Less,
        (ConditionOp::Lte, Some(o)) => o != Ordering::Greater,
        (ConditionOp::Eq, Some(o)) => o == Ordering::Equal,
        (ConditionOp::Neq, Some(o)) => o != Ordering::Equal,
        (ConditionOp::IsEmpty | ConditionOp::IsNotEmpty, _) => false,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        // Drivers return NUMERIC/DECIMAL as text; a numeric string compares as a number.
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// Compares a cell value with the condition's value: numbers (and numeric strings)
/// numerically, strings by code point, booleans for equality only.
fn compare(actual: &Value, expected: &Value, op: ConditionOp) -> Result<bool, String> {
    let mismatch = || {
        format!(
            "the value is {}, the condition compares with {}",
            type_name(actual),
            type_name(expected)
        )
    };
    match (actual, expected) {
        (Value::String(a), Value::String(b)) => Ok(ordering_holds(op, Some(a.cmp(b)))),
        (Value::Bool(a), Value::Bool(b)) => match op {
            ConditionOp::Eq => Ok(a == b),
            ConditionOp::Neq => Ok(a != b),
            _ => Err(format!(
                "booleans compare with EQ and NEQ only, not {}",
                op.as_str()
            )),
        },
        (Value::Number(_) | Value::String(_), Value::Number(_) | Value::String(_)) => {
            match (as_number(actual), as_number(expected)) {
                (Some(a), Some(b)) => Ok(ordering_holds(op, a.partial_cmp(&b))),
                _ => Err(mismatch()),
            }
        }
        _ => Err(mismatch()),
    }
}

/// Why a recipient hears about a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A subscription (`SUCCESS`, `FAILURE`, `ALL`).
    Subscription(NotifyOn),
    /// A conditional notification whose condition held.
    Condition {
        name: String,
        cell_id: String,
        summary: String,
    },
}

impl Reason {
    /// `SUCCESS`, `FAILURE`, `ALL` or `CONDITION:<name>`, as delivery records show it.
    pub fn label(&self) -> String {
        match self {
            Reason::Subscription(on) => on.as_str().to_owned(),
            Reason::Condition { name, .. } => format!("CONDITION:{name}"),
        }
    }
}

/// A recipient as a rule names it, before user ids are resolved to addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecipientRef {
    User(String),
    Email(String),
    Slack(String),
    Webhook(String),
}

/// Who hears about a finished run and why: every recipient once, with every reason, in
/// the order the rules name them; and the conditions that could not be evaluated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audience {
    pub recipients: Vec<(RecipientRef, Vec<Reason>)>,
    /// `(condition name, why)`.
    pub unevaluable: Vec<(String, String)>,
}

pub fn audience(run: &Run) -> Audience {
    let mut out = Audience::default();
    if !run.status.is_terminal() {
        return out;
    }
    let settings = &run.notification_settings;
    for sub in &settings.subscriptions {
        if subscription_fires(sub, run.status) {
            add(&mut out, &sub.recipients, &Reason::Subscription(sub.on));
        }
    }
    if run.status == RunStatus::Completed {
        for rule in &settings.conditional {
            match evaluate(rule, &run.cells) {
                Evaluation::Met(summary) => {
                    let reason = Reason::Condition {
                        name: rule.name.clone(),
                        cell_id: rule.cell_id.clone(),
                        summary,
                    };
                    add(&mut out, &rule.recipients, &reason);
                }
                Evaluation::NotMet(_) => {}
                Evaluation::Unevaluable(why) => out.unevaluable.push((rule.name.clone(), why)),
            }
        }
    }
    out
}

fn add(out: &mut Audience, r: &Recipients, reason: &Reason) {
    let refs = r
        .user_ids
        .iter()
        .map(|u| RecipientRef::User(u.trim().to_owned()))
        .chain(
            r.emails
                .iter()
                .map(|e| RecipientRef::Email(e.trim().to_owned())),
        )
        .chain(
            r.slack_channel_ids
                .iter()
                .map(|c| RecipientRef::Slack(c.clone())),
        )
        .chain(
            r.webhook_urls
                .iter()
                .map(|u| RecipientRef::Webhook(u.trim().to_owned())),
        );
    for recipient in refs {
        match out.recipients.iter_mut().find(|(r, _)| *r == recipient) {
            Some((_, reasons)) => {
                if !reasons.contains(reason) {
                    reasons.push(reason.clone());
                }
            }
            None => out.recipients.push((recipient, vec![reason.clone()])),
        }
    }
}

/// The id of the delivery of a run's notifications to one recipient on one channel:
/// stable across redeliveries of the run's event, and free of the target itself (a
/// webhook URL may carry a token).
pub fn delivery_id(run_id: &str, channel: DeliveryChannel, target_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(run_id.as_bytes());
    h.update([0]);
    h.update(channel.as_str().as_bytes());
    h.update([0]);
    h.update(target_key.as_bytes());
    hex(&h.finalize()[..16])
}

/// How a target is compared for deduplication: addresses case-insensitively.
pub fn target_key(channel: DeliveryChannel, target: &str) -> String {
    match channel {
        DeliveryChannel::Email => target.trim().to_ascii_lowercase(),
        DeliveryChannel::Slack | DeliveryChannel::Webhook => target.trim().to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Masking
// ---------------------------------------------------------------------------------------

/// `ada@example.com` → `a***@example.com`.
pub fn mask_email(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// `https://hooks.slack.com/services/T0/B0/XXXXsecret` → `hooks.slack.com/…/cret`: the
/// host and the last four characters, enough to tell targets apart.
pub fn mask_url(url: &str) -> String {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    let tail: Vec<char> = url.trim().chars().rev().take(4).collect();
    let tail: String = tail.into_iter().rev().collect();
    format!("{host}/…/{tail}")
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// What one delivery says, channel-neutral. Each channel renders it (`subject` and `text`
/// for e-mail, `slack_payload`, `webhook_body`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationMessage {
    pub delivery_id: String,
    pub workspace_id: String,
    pub project_id: String,
    pub project_title: String,
    pub schedule_id: Option<String>,
    pub run_id: String,
    pub status: RunStatus,
    pub trigger: RunTrigger,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `{baseUrl}/projects/{projectId}/runs/{runId}`.
    pub run_url: String,
    pub skip_reason: Option<SkipReason>,
    pub error: Option<RunError>,
    pub reasons: Vec<Reason>,
}

impl NotificationMessage {
    fn conditions(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.reasons.iter().filter_map(|r| match r {
            Reason::Condition {
                name,
                cell_id,
                summary,
            } => Some((name.as_str(), cell_id.as_str(), summary.as_str())),
            Reason::Subscription(_) => None,
        })
    }

    fn kind(&self) -> &'static str {
        match self.trigger {
            RunTrigger::Scheduled => "Scheduled run",
            RunTrigger::Manual => "Manual run",
            RunTrigger::Api => "API run",
        }
    }

    fn outcome(&self) -> String {
        match self.status {
            RunStatus::Completed => "completed".into(),
            RunStatus::Errored => match &self.error {
                Some(e) => format!("failed ({})", e.code),
                None => "failed".into(),
            },
            RunStatus::Killed => "was cancelled".into(),
            RunStatus::Skipped => match self.skip_reason {
                Some(r) => format!("was skipped ({})", r.as_str()),
                None => "was skipped".into(),
            },
            RunStatus::Pending | RunStatus::Running => "is still going".into(),
        }
    }

    /// `[Sales] Condition met: big orders` or `[Sales] Scheduled run failed (CELL_FAILED)`.
    pub fn subject(&self) -> String {
        let names: Vec<&str> = self.conditions().map(|(name, _, _)| name).collect();
        let subject = if names.is_empty() {
            format!(
                "[{}] {} {}",
                self.project_title,
                self.kind(),
                self.outcome()
            )
        } else {
            format!(
                "[{}] Condition met: {}",
                self.project_title,
                names.join(", ")
            )
        };
        // One line: a title or name with a line break must not forge headers.
        subject.replace(['\r', '\n'], " ")
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![
            (
                "Project",
                format!("{} ({})", self.project_title, self.project_id),
            ),
            (
                "Schedule",
                self.schedule_id
                    .clone()
                    .unwrap_or_else(|| "none (API run)".into()),
            ),
            ("Run", self.run_id.clone()),
            ("Status", self.status.as_str().to_owned()),
        ];
        if let Some(t) = self.scheduled_for {
            facts.push(("Scheduled for", rfc3339(t)));
        }
        if let Some(t) = self.ended_at {
            facts.push(("Ended", rfc3339(t)));
        }
        if let Some(r) = self.skip_reason {
            facts.push(("Skip reason", r.as_str().to_owned()));
        }
        if let Some(e) = &self.error {
            let cell = e
                .cell_id
                .as_deref()
                .map(|c| format!(" (cell {c})"))
                .unwrap_or_default();
            facts.push(("Error", format!("{}: {}{cell}", e.code, e.message)));
        }
        facts
    }

    /// The plain-text body of the e-mail.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} of \"{}\" {}.\n\n",
            self.kind(),
            self.project_title,
            self.outcome()
        );
        for (label, value) in self.facts() {
            out.push_str(&format!("{label}: {value}\n"));
        }
        let conditions: Vec<_> = self.conditions().collect();
        if !conditions.is_empty() {
            out.push_str("\nConditions met:\n");
            for (name, _, summary) in conditions {
                out.push_str(&format!("  - {name}: {summary}\n"));
            }
        }
        out.push_str(&format!("\nOpen the run: {}\n", self.run_url));
        out.push_str(&format!(
            "\nYou receive this because of: {}.\n",
            self.reasons
                .iter()
                .map(Reason::label)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out
    }

    /// The incoming-webhook body: a `text` fallback and one `mrkdwn` section.
    pub fn slack_payload(&self) -> Value {
        let icon = match self.status {
            RunStatus::Completed => ":white_check_mark:",
            RunStatus::Errored => ":x:",
            RunStatus::Killed => ":no_entry_sign:",
            _ => ":fast_forward:",
        };
        let mut lines = vec![format!(
            "{icon} *{}* of *{}* {}",
            self.kind(),
            slack_escape(&self.project_title),
            slack_escape(&self.outcome())
        )];
        for (name, _, summary) in self.conditions() {
            lines.push(format!(
                ":bell: Condition met: *{}*: {}",
                slack_escape(name),
                slack_escape(summary)
            ));
        }
        for (label, value) in self.facts() {
            if label != "Project" && label != "Status" {
                lines.push(format!("*{label}:* {}", slack_escape(&value)));
            }
        }
        lines.push(format!("<{}|Open the run>", self.run_url));
        let text = lines.join("\n");
        serde_json::json!({
            // Slack reads `text` as markup too (it is what notifications show): a title
            // with `<!channel>` in it must not ping the channel from here either.
            "text": slack_escape(&self.subject()),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        })
    }

    /// The JSON body of a webhook delivery (docs/notifications.md documents it). The same
    /// bytes go out on every attempt; only the signature's timestamp changes.
    pub fn webhook_body(&self) -> Vec<u8> {
        let payload = WebhookPayload {
            event: "run.finished",
            delivery_id: &self.delivery_id,
            workspace_id: &self.workspace_id,
            project_id: &self.project_id,
            project_title: &self.project_title,
            schedule_id: self.schedule_id.as_deref(),
            run_id: &self.run_id,
            status: self.status,
            run_trigger: self.trigger,
            scheduled_for: self.scheduled_for,
            ended_at: self.ended_at,
            run_url: &self.run_url,
            skip_reason: self.skip_reason,
            error: self.error.as_ref(),
            reasons: self.reasons.iter().map(Reason::label).collect(),
            conditions: self
                .conditions()
                .map(|(name, cell_id, summary)| WebhookCondition {
                    name,
                    cell_id,
                    summary,
                })
                .collect(),
        };
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_vec(&payload).unwrap_or_default()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookPayload<'a> {
    event: &'static str,
    delivery_id: &'a str,
    workspace_id: &'a str,
    project_id: &'a str,
    project_title: &'a str,
    schedule_id: Option<&'a str>,
    run_id: &'a str,
    status: RunStatus,
    run_trigger: RunTrigger,
    scheduled_for: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    run_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_reason: Option<SkipReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RunError>,
    reasons: Vec<String>,
    conditions: Vec<WebhookCondition<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookCondition<'a> {
    name: &'a str,
    cell_id: &'a str,
    summary: &'a str,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Slack's three control characters in message text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// ---------------------------------------------------------------------------------------
// Webhook signatures
// ---------------------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
pub fn signature_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex(&mac(secret, t, body).finalize().into_bytes())
    )
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// What a receiver does with a delivery: parse the header, refuse timestamps further than
/// `tolerance_secs` from `now`, and compare the HMAC in constant time (any `v1` may match,
/// so a receiver can accept two secrets while rotating).
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => candidates.push(unhex(v).ok_or(SignatureError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - t).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, t, body);
    if candidates
        .iter()
        .any(|c| expected.clone().verify_slice(c).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests;
