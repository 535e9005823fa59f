//! The JSON `body` of a `runs` row holds what no column of the row does. A burst of fires
//! writes one row per run on the store's single writer, and a body that repeated the ids,
//! status, trigger and times beside their columns (and wrote every absent field as `null`)
//! was 681 bytes where 270 carry information (BENCHMARKS.md §5).
//!
//! Times live in their integer-nanosecond columns; an instant those cannot hold (before
//! 1677 or after 2262) is kept in the body as well, so every run reads back exactly as it
//! was written. Bodies written before this layout repeat the column fields; reading them
//! ignores the repeats, except times, which are exact either way.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::from_nanos;
use crate::domain::model::{
    CellResult, DeliveryRecord, NotificationSettings, Run, RunError, RunStatus, RunTrigger,
    SkipReason, StateEvent,
};
use crate::ports::PortError;

/// An instant for the body only when its column cannot hold it exactly.
fn beyond_nanos(t: &DateTime<Utc>) -> Option<&DateTime<Utc>> {
    t.timestamp_nanos_opt().is_none().then_some(t)
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a run's body is written from, borrowed from the run.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BodyOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    project_version: Option<u32>,
    created_by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_reason: Option<SkipReason>,
    #[serde(skip_serializing_if = "is_false")]
    update_published_results: bool,
    #[serde(skip_serializing_if = "is_false")]
    use_cached_sql_results: bool,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    input_params: &'a serde_json::Map<String, serde_json::Value>,
    trace_id: &'a str,
    state_events: &'a [StateEvent],
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    cells: &'a [CellResult],
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RunError>,
    #[serde(skip_serializing_if = "NotificationSettings::is_empty")]
    notification_settings: &'a NotificationSettings,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    notifications: &'a [DeliveryRecord],
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_for: Option<&'a DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<&'a DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<&'a DateTime<Utc>>,
}

impl<'a> BodyOut<'a> {
    /// The body of `run`, with `cells` in place of the run's own (results stored apart
    /// are left out of it).
    pub(super) fn of(run: &'a Run, cells: &'a [CellResult]) -> BodyOut<'a> {
        BodyOut {
            project_version: run.project_version,
            created_by: &run.created_by,
            start_time: run.start_time,
            end_time: run.end_time,
            skip_reason: run.skip_reason,
            update_published_results: run.update_published_results,
            use_cached_sql_results: run.use_cached_sql_results,
            input_params: &run.input_params,
            trace_id: &run.trace_id,
            state_events: &run.state_events,
            lease_until: run.lease_until,
            cells,
            error: run.error.as_ref(),
            notification_settings: &run.notification_settings,
            notifications: &run.notifications,
            scheduled_for: run.scheduled_for.as_ref().and_then(beyond_nanos),
            created_at: beyond_nanos(&run.created_at),
            expires_at: beyond_nanos(&run.expires_at),
        }
    }
}

/// A body read back; absent fields take their defaults.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BodyIn {
    #[serde(default)]
    project_version: Option<u32>,
    created_by: String,
    #[serde(default)]
    start_time: Option<DateTime<Utc>>,
    #[serde(default)]
    end_time: Option<DateTime<Utc>>,
    #[serde(default)]
    skip_reason: Option<SkipReason>,
    #[serde(default)]
    update_published_results: bool,
    #[serde(default)]
    use_cached_sql_results: bool,
    #[serde(default)]
    input_params: serde_json::Map<String, serde_json::Value>,
    trace_id: String,
    #[serde(default)]
    state_events: Vec<StateEvent>,
    #[serde(default)]
    lease_until: Option<DateTime<Utc>>,
    #[serde(default)]
    cells: Vec<CellResult>,
    #[serde(default)]
    error: Option<RunError>,
    #[serde(default)]
    notification_settings: NotificationSettings,
    #[serde(default)]
    notifications: Vec<DeliveryRecord>,
    #[serde(default)]
    scheduled_for: Option<DateTime<Utc>>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// The columns of a row that the body does not repeat.
pub(super) struct RunColumns {
    pub run_id: String,
    pub workspace_id: String,
    pub project_id: String,
    pub schedule_id: Option<String>,
    pub run_trigger: String,
    pub status: String,
    pub scheduled_for: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    pub attempt: u32,
    pub event_pending: bool,
}

impl BodyIn {
    /// The run of a row: its columns and this body.
    pub(super) fn into_run(self, c: RunColumns) -> Result<Run, PortError> {
        let run_trigger = RunTrigger::parse(&c.run_trigger).ok_or_else(|| {
            PortError::fatal(format!("sqlite: corrupt run trigger {:?}", c.run_trigger))
        })?;
        let status = RunStatus::parse(&c.status).ok_or_else(|| {
            PortError::fatal(format!("sqlite: corrupt run status {:?}", c.status))
        })?;
        Ok(Run {
            run_id: c.run_id,
            project_id: c.project_id,
            workspace_id: c.workspace_id,
            schedule_id: c.schedule_id,
            run_trigger,
            status,
            scheduled_for: self.scheduled_for.or(c.scheduled_for.map(from_nanos)),
            project_version: self.project_version,
            created_by: self.created_by,
            created_at: self.created_at.unwrap_or_else(|| from_nanos(c.created_at)),
            start_time: self.start_time,
            end_time: self.end_time,
            skip_reason: self.skip_reason,
            update_published_results: self.update_published_results,
            use_cached_sql_results: self.use_cached_sql_results,
            input_params: self.input_params,
            trace_id: self.trace_id,
            state_events: self.state_events,
            expires_at: self.expires_at.unwrap_or_else(|| from_nanos(c.expires_at)),
            attempt: c.attempt,
            lease_until: self.lease_until,
            cells: self.cells,
            error: self.error,
            notification_settings: self.notification_settings,
            event_pending: c.event_pending,
            notifications: self.notifications,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::nanos;
    use super::*;

    /// A run with every field set, as the domain spells it.
    fn full_run() -> Run {
        serde_json::from_value(serde_json::json!({
            "runId": "r", "projectId": "p", "workspaceId": "w", "scheduleId": "s",
            "runTrigger": "SCHEDULED", "status": "ERRORED",
            "scheduledFor": "2026-03-08T07:30:00Z", "projectVersion": 3,
            "createdBy": "u", "createdAt": "2026-03-08T07:30:00.000000123Z",
            "startTime": "2026-03-08T07:30:01Z", "endTime": "2026-03-08T07:30:02Z",
            "skipReason": null, "updatePublishedResults": true, "useCachedSqlResults": true,
            "inputParams": {"region": "emea"}, "traceId": "t",
            "stateEvents": [{"type": "STATUS", "value": "PENDING",
                             "timestamp": "2026-03-08T07:30:00Z"}],
            "expiresAt": "2026-06-06T07:30:00Z", "attempt": 2,
            "leaseUntil": "2026-03-08T07:35:00Z",
            "cells": [{"cellId": "c", "status": "ERRORED", "columns": ["n"], "rows": [[1]],
                       "rowCount": 1, "durationMs": 4, "cacheHit": false,
                       "error": "boom"}],
            "error": {"code": "CELL_FAILED", "message": "boom", "cellId": "c"},
            "eventPending": true
        }))
        .expect("a run")
    }

    fn columns_of(run: &Run) -> RunColumns {
        RunColumns {
            run_id: run.run_id.clone(),
            workspace_id: run.workspace_id.clone(),
            project_id: run.project_id.clone(),
            schedule_id: run.schedule_id.clone(),
            run_trigger: run.run_trigger.as_str().into(),
            status: run.status.as_str().into(),
            scheduled_for: run.scheduled_for.as_ref().map(nanos),
            created_at: nanos(&run.created_at),
            expires_at: nanos(&run.expires_at),
            attempt: run.attempt,
            event_pending: run.event_pending,
        }
    }

    fn round_trip(run: &Run) -> (String, Run) {
        let body = serde_json::to_string(&BodyOut::of(run, &run.cells)).expect("encodes");
        let read: BodyIn = serde_json::from_str(&body).expect("decodes");
        (body, read.into_run(columns_of(run)).expect("a run"))
    }

    #[test]
    fn a_run_reads_back_whole_from_its_columns_and_body() {
        let run = full_run();
        let (body, read) = round_trip(&run);
        assert_eq!(read, run);
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&body).expect("an object");
        for repeated in [
            "runId",
            "projectId",
            "workspaceId",
            "scheduleId",
            "runTrigger",
            "status",
            "scheduledFor",
            "createdAt",
            "expiresAt",
            "attempt",
            "eventPending",
        ] {
            assert!(!fields.contains_key(repeated), "{repeated} in {body}");
        }
    }

    #[test]
    fn a_sparse_run_has_a_small_body_and_reads_back_whole() {
        let mut run = full_run();
        run.status = RunStatus::Pending;
        run.project_version = None;
        (run.start_time, run.end_time, run.lease_until, run.error) = (None, None, None, None);
        (run.update_published_results, run.use_cached_sql_results) = (false, false);
        (run.input_params, run.cells) = (Default::default(), Vec::new());
        run.event_pending = false;
        let (body, read) = round_trip(&run);
        assert_eq!(read, run);
        assert_eq!(
            body,
            r#"{"createdBy":"u","traceId":"t","stateEvents":[{"type":"STATUS","value":"PENDING","timestamp":"2026-03-08T07:30:00Z"}]}"#
        );
    }

    #[test]
    fn instants_beyond_the_columns_range_are_kept_in_the_body() {
        let mut run = full_run();
        run.expires_at = "3000-01-01T00:00:00.5Z".parse().expect("instant");
        let (body, read) = round_trip(&run);
        assert!(
            body.contains("\"expiresAt\":\"3000-01-01T00:00:00.500Z\""),
            "{body}"
        );
        assert_eq!(read.expires_at, run.expires_at);
        assert_eq!(read, run);
    }

    #[test]
    fn a_body_of_the_earlier_layout_reads_back_whole() {
        // Written before bodies left out the columns: every field, nulls included.
        let run = full_run();
        let body = serde_json::to_string(&run).expect("encodes");
        let read: BodyIn = serde_json::from_str(&body).expect("decodes");
        assert_eq!(read.into_run(columns_of(&run)).expect("a run"), run);
    }

    #[test]
    fn a_corrupt_status_or_trigger_is_an_error_not_a_panic() {
        let run = full_run();
        for (status, trigger) in [("NOPE", "API"), ("PENDING", "NOPE")] {
            let mut columns = columns_of(&run);
            (columns.status, columns.run_trigger) = (status.into(), trigger.into());
            let read: BodyIn =
                serde_json::from_str(r#"{"createdBy":"u","traceId":"t"}"#).expect("decodes");
            assert!(read.into_run(columns).is_err(), "{status} {trigger}");
        }
    }
}
