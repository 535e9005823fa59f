//! Handlers of the workspace-admin endpoints.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Authenticated, PageQuery};
use super::views::{
    AutoArchiveRequest, ConnectionList, ConnectionResponse, IntegrationsResponse, ScheduleList,
    ScheduleResponse, SigningSecretResponse, SlackIntegrationRequest, WorkspaceResponse,
};
use crate::domain::model::ConnectionConfig;
use crate::ports::ScheduleFilter;

type Result<T> = std::result::Result<T, ApiError>;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminScheduleQuery {
    pub project_id: Option<String>,
    pub created_by: Option<String>,
    pub enabled: Option<bool>,
    /// 1 to 100; 25 when absent.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/schedules", tag = "admin", params(AdminScheduleQuery),
    responses((status = 200, body = ScheduleList), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_schedules(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<AdminScheduleQuery>,
) -> Result<Json<ScheduleList>> {
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    let filter = ScheduleFilter {
        project_id: query.project_id,
        created_by: query.created_by,
        enabled: query.enabled,
    };
    let page = state.schedules.admin_list(&caller, &filter, &page).await?;
    Ok(Json(ScheduleList {
        schedules: page
            .items
            .into_iter()
            .map(|v| ScheduleResponse::new(v, &state.public_url))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(put, path = "/api/v1/admin/auto-archive", tag = "admin",
    request_body = AutoArchiveRequest,
    responses((status = 200, body = WorkspaceResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_auto_archive(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<AutoArchiveRequest>,
) -> Result<Json<WorkspaceResponse>> {
    let workspace = state
        .workspaces
        .set_auto_archive(&caller, body.after_days)
        .await?;
    Ok(Json(workspace.into()))
}

#[utoipa::path(put, path = "/api/v1/admin/connections/{name}", tag = "admin",
    params(("name" = String, Path)), request_body = ConnectionConfig,
    responses((status = 200, body = ConnectionResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_connection(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(name): ApiPath<String>,
    ApiJson(config): ApiJson<ConnectionConfig>,
) -> Result<Json<ConnectionResponse>> {
    let connection = state.connections.put(&caller, &name, &config).await?;
    Ok(Json(connection.into()))
}

#[utoipa::path(get, path = "/api/v1/admin/connections", tag = "admin",
    responses((status = 200, body = ConnectionList), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_connections(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<ConnectionList>> {
    let connections = state.connections.list(&caller).await?;
    Ok(Json(ConnectionList {
        connections: connections.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/admin/integrations", tag = "admin",
    responses((status = 200, body = IntegrationsResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_integrations(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<IntegrationsResponse>> {
    Ok(Json(state.integrations.get(&caller).await?.into()))
}

#[utoipa::path(put, path = "/api/v1/admin/integrations/slack", tag = "admin",
    request_body = SlackIntegrationRequest,
    responses((status = 200, body = IntegrationsResponse, description = "the channels; never their URLs"),
        (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_slack(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<SlackIntegrationRequest>,
) -> Result<Json<IntegrationsResponse>> {
    Ok(Json(
        state
            .integrations
            .put_slack(&caller, &body.channels)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/admin/integrations/webhooks/rotate-secret", tag = "admin",
    responses((status = 200, body = SigningSecretResponse, description = "the new secret, shown only this once"),
        (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<SigningSecretResponse>> {
    let signing_secret = state.integrations.rotate_webhook_secret(&caller).await?;
    Ok(Json(SigningSecretResponse { signing_secret }))
}
