//! Handlers of the RunProject API: start, status, list, cancel, and published results.
//! The singular paths of the older API (`/project/{projectId}/run…`) route here too.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJsonOrDefault, ApiPath, ApiQuery, Authenticated};
use super::views::{
    DryRunResponse, ResultsResponse, RunCreatedResponse, RunListResponse, RunStatusResponse,
    RunSummary,
};
use crate::domain::model::{RunStatus, RunTrigger};
use crate::ports::RunFilter;
use crate::services::runs::{RunRequest, Started};

type Result<T> = std::result::Result<T, ApiError>;

#[utoipa::path(post, path = "/api/v1/projects/{projectId}/runs", tag = "runs",
    params(("projectId" = String, Path)), request_body = RunRequest,
    responses((status = 201, body = RunCreatedResponse), (status = 200, body = DryRunResponse, description = "dry run"),
        (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
    ApiJsonOrDefault(request): ApiJsonOrDefault<RunRequest>,
) -> Result<Response> {
    match state.runs.start(&caller, &project_id, request).await? {
        Started::Queued(run) => Ok((
            StatusCode::CREATED,
            Json(RunCreatedResponse::new(&run, &state.public_url)),
        )
            .into_response()),
        Started::DryRun {
            project_version,
            trace_id,
        } => Ok(Json(DryRunResponse {
            project_id,
            project_version,
            trace_id,
            dry_run: true,
        })
        .into_response()),
    }
}

#[utoipa::path(get, path = "/api/v1/projects/{projectId}/runs/{runId}", tag = "runs",
    params(("projectId" = String, Path), ("runId" = String, Path)),
    responses((status = 200, body = RunStatusResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn status(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((project_id, run_id)): ApiPath<(String, String)>,
) -> Result<Json<RunStatusResponse>> {
    let run = state.runs.get(&caller, &project_id, &run_id).await?;
    Ok(Json(RunStatusResponse::new(run, &state.public_url)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunListQuery {
    /// 1 to 100; 25 when absent.
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    /// PENDING, RUNNING, COMPLETED, ERRORED, KILLED or SKIPPED.
    pub status_filter: Option<String>,
    /// API, SCHEDULED, MANUAL or ALL (the default).
    pub run_trigger_filter: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/projects/{projectId}/runs", tag = "runs",
    params(("projectId" = String, Path), RunListQuery),
    responses((status = 200, body = RunListResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<RunListQuery>,
) -> Result<Json<RunListResponse>> {
    let limit = query.limit.unwrap_or(25);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 100").with_field("limit"));
    }
    let offset = query.offset.unwrap_or(0);
    let status = match query.status_filter.as_deref() {
        None | Some("") => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("unknown statusFilter {s:?}")).with_field("statusFilter")
        })?),
    };
    let trigger = match query.run_trigger_filter.as_deref() {
        None | Some("" | "ALL") => None,
        Some(t) => Some(RunTrigger::parse(t).ok_or_else(|| {
            ApiError::bad_request(format!("unknown runTriggerFilter {t:?}"))
                .with_field("runTriggerFilter")
        })?),
    };
    // One more than asked tells whether a next page exists.
    let mut runs = state
        .runs
        .list(
            &caller,
            &project_id,
            &RunFilter { status, trigger },
            offset,
            limit + 1,
        )
        .await?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let next_page = more.then(|| {
        let mut q = format!("limit={limit}&offset={}", offset + limit);
        if let Some(s) = &query.status_filter {
            q.push_str(&format!("&statusFilter={s}"));
        }
        if let Some(t) = &query.run_trigger_filter {
            q.push_str(&format!("&runTriggerFilter={t}"));
        }
        format!("/api/v1/projects/{project_id}/runs?{q}")
    });
    Ok(Json(RunListResponse {
        runs: runs
            .into_iter()
            .map(|r| RunSummary::new(r, &state.public_url))
            .collect(),
        next_page,
    }))
}

#[utoipa::path(delete, path = "/api/v1/projects/{projectId}/runs/{runId}", tag = "runs",
    params(("projectId" = String, Path), ("runId" = String, Path)),
    responses((status = 204, description = "the run is KILLED"), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((project_id, run_id)): ApiPath<(String, String)>,
) -> Result<StatusCode> {
    state.runs.cancel(&caller, &project_id, &run_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/projects/{projectId}/results", tag = "runs",
    params(("projectId" = String, Path)),
    responses((status = 200, body = ResultsResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn results(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
) -> Result<Json<ResultsResponse>> {
    Ok(Json(
        state
            .runs
            .published_results(&caller, &project_id)
            .await?
            .into(),
    ))
}
