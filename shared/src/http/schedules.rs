//! Handlers of the schedule endpoints: parse, call the schedule (or dispatch) service, map.
//! Single-schedule responses carry an `ETag` with the schedule's version for `If-Match`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Authenticated, IfMatch, PageQuery};
use super::views::{RunList, RunSummary, ScheduleList, ScheduleResponse};
use crate::services::schedules::{CreateSchedule, PatchSchedule, ScheduleView};

type Result<T> = std::result::Result<T, ApiError>;

fn with_etag(state: &AppState, view: ScheduleView) -> (HeaderMap, Json<ScheduleResponse>) {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", view.schedule.version)) {
        headers.insert(header::ETAG, v);
    }
    (
        headers,
        Json(ScheduleResponse::new(view, &state.public_url)),
    )
}

#[utoipa::path(post, path = "/api/v1/projects/{projectId}/schedules", tag = "schedules",
    params(("projectId" = String, Path)), request_body = CreateSchedule,
    responses((status = 201, body = ScheduleResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateSchedule>,
) -> Result<(StatusCode, HeaderMap, Json<ScheduleResponse>)> {
    let view = state.schedules.create(&caller, &project_id, body).await?;
    let (headers, json) = with_etag(&state, view);
    Ok((StatusCode::CREATED, headers, json))
}

#[utoipa::path(get, path = "/api/v1/projects/{projectId}/schedules", tag = "schedules",
    params(("projectId" = String, Path), PageQuery),
    responses((status = 200, body = ScheduleList), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<ScheduleList>> {
    let page = state
        .schedules
        .list(&caller, &project_id, &query.page()?)
        .await?;
    Ok(Json(ScheduleList {
        schedules: page
            .items
            .into_iter()
            .map(|v| ScheduleResponse::new(v, &state.public_url))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/projects/{projectId}/schedules/{scheduleId}", tag = "schedules",
    params(("projectId" = String, Path), ("scheduleId" = String, Path)),
    responses((status = 200, body = ScheduleResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((project_id, schedule_id)): ApiPath<(String, String)>,
) -> Result<(HeaderMap, Json<ScheduleResponse>)> {
    let view = state
        .schedules
        .get(&caller, &project_id, &schedule_id)
        .await?;
    Ok(with_etag(&state, view))
}

#[utoipa::path(patch, path = "/api/v1/projects/{projectId}/schedules/{scheduleId}", tag = "schedules",
    params(("projectId" = String, Path), ("scheduleId" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The schedule's ETag; 412 when it changed")),
    request_body = PatchSchedule,
    responses((status = 200, body = ScheduleResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((project_id, schedule_id)): ApiPath<(String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(body): ApiJson<PatchSchedule>,
) -> Result<(HeaderMap, Json<ScheduleResponse>)> {
    let view = state
        .schedules
        .update(&caller, &project_id, &schedule_id, body, if_match)
        .await?;
    Ok(with_etag(&state, view))
}

#[utoipa::path(delete, path = "/api/v1/projects/{projectId}/schedules/{scheduleId}", tag = "schedules",
    params(("projectId" = String, Path), ("scheduleId" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The schedule's ETag; 412 when it changed")),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((project_id, schedule_id)): ApiPath<(String, String)>,
    IfMatch(if_match): IfMatch,
) -> Result<StatusCode> {
    state
        .schedules
        .delete(&caller, &project_id, &schedule_id, if_match)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/projects/{projectId}/schedules/{scheduleId}/trigger", tag = "schedules",
    params(("projectId" = String, Path), ("scheduleId" = String, Path)),
    responses((status = 202, body = RunSummary), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn trigger(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((project_id, schedule_id)): ApiPath<(String, String)>,
) -> Result<(StatusCode, Json<RunSummary>)> {
    let run = state
        .dispatch
        .trigger_now(&caller, &project_id, &schedule_id)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunSummary::new(run, &state.public_url)),
    ))
}

#[utoipa::path(get, path = "/api/v1/projects/{projectId}/schedules/{scheduleId}/runs", tag = "schedules",
    params(("projectId" = String, Path), ("scheduleId" = String, Path), PageQuery),
    responses((status = 200, body = RunList), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn runs(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((project_id, schedule_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<RunList>> {
    let page = state
        .schedules
        .runs(&caller, &project_id, &schedule_id, &query.page()?)
        .await?;
    Ok(Json(RunList {
        runs: page
            .items
            .into_iter()
            .map(|r| RunSummary::new(r, &state.public_url))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}
