//! Handlers of the project endpoints: parse, call the project service, map.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Authenticated, PageQuery};
use super::views::{
    CreateProjectRequest, MemberResponse, ProjectList, ProjectResponse, PublishResponse,
    PutMemberRequest,
};
use crate::domain::model::VersionBody;

type Result<T> = std::result::Result<T, ApiError>;

#[utoipa::path(post, path = "/api/v1/projects", tag = "projects",
    request_body = CreateProjectRequest,
    responses((status = 201, body = ProjectResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<CreateProjectRequest>,
) -> Result<(StatusCode, Json<ProjectResponse>)> {
    let view = state
        .projects
        .create(&caller, &body.title, body.description)
        .await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", params(PageQuery),
    responses((status = 200, body = ProjectList), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<ProjectList>> {
    let page = state.projects.list(&caller, &query.page()?).await?;
    Ok(Json(ProjectList {
        projects: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/projects/{projectId}", tag = "projects",
    params(("projectId" = String, Path)),
    responses((status = 200, body = ProjectResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
) -> Result<Json<ProjectResponse>> {
    Ok(Json(state.projects.get(&caller, &project_id).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/projects/{projectId}/draft", tag = "projects",
    params(("projectId" = String, Path)),
    responses((status = 200, body = VersionBody), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_draft(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
) -> Result<Json<VersionBody>> {
    Ok(Json(state.projects.get_draft(&caller, &project_id).await?))
}

#[utoipa::path(put, path = "/api/v1/projects/{projectId}/draft", tag = "projects",
    params(("projectId" = String, Path)), request_body = VersionBody,
    responses((status = 200, body = VersionBody), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_draft(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
    ApiJson(body): ApiJson<VersionBody>,
) -> Result<Json<VersionBody>> {
    state
        .projects
        .put_draft(&caller, &project_id, &body)
        .await?;
    Ok(Json(body))
}

#[utoipa::path(post, path = "/api/v1/projects/{projectId}/publish", tag = "projects",
    params(("projectId" = String, Path)),
    responses((status = 200, body = PublishResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn publish(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
) -> Result<Json<PublishResponse>> {
    Ok(Json(
        state.projects.publish(&caller, &project_id).await?.into(),
    ))
}

#[utoipa::path(put, path = "/api/v1/projects/{projectId}/members/{userId}", tag = "projects",
    params(("projectId" = String, Path), ("userId" = String, Path)),
    request_body = PutMemberRequest,
    responses((status = 200, body = MemberResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((project_id, user_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PutMemberRequest>,
) -> Result<Json<MemberResponse>> {
    let m = state
        .projects
        .put_member(&caller, &project_id, &user_id, body.role)
        .await?;
    Ok(Json(MemberResponse {
        project_id: m.project_id,
        user_id: m.user_id,
        role: m.role,
    }))
}

#[utoipa::path(delete, path = "/api/v1/projects/{projectId}/members/{userId}", tag = "projects",
    params(("projectId" = String, Path), ("userId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath((project_id, user_id)): ApiPath<(String, String)>,
) -> Result<StatusCode> {
    state
        .projects
        .remove_member(&caller, &project_id, &user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/projects/{projectId}/archive", tag = "projects",
    params(("projectId" = String, Path)),
    responses((status = 200, body = ProjectResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn archive(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
) -> Result<Json<ProjectResponse>> {
    Ok(Json(
        state
            .projects
            .set_archived(&caller, &project_id, true)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/projects/{projectId}/unarchive", tag = "projects",
    params(("projectId" = String, Path)),
    responses((status = 200, body = ProjectResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn unarchive(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(project_id): ApiPath<String>,
) -> Result<Json<ProjectResponse>> {
    Ok(Json(
        state
            .projects
            .set_archived(&caller, &project_id, false)
            .await?
            .into(),
    ))
}
