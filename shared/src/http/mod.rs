//! The HTTP API of SPEC §5 as one axum router, served by the local binary and by the API
//! Lambda alike. Handlers only parse, call one service and map; errors become responses in
//! `error` alone.

mod admin;
pub mod auth;
pub mod error;
pub mod extract;
pub mod jwt;
mod openapi;
mod projects;
mod runs;
mod schedules;
pub mod views;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};

use crate::services::connections::ConnectionService;
use crate::services::dispatch::DispatchService;
use crate::services::integrations::IntegrationService;
use crate::services::projects::ProjectService;
use crate::services::runs::RunService;
use crate::services::schedules::ScheduleService;
use crate::services::workspaces::WorkspaceService;
use auth::IdentityResolver;
use error::ApiError;
pub use openapi::ApiDoc;

/// Everything the handlers need, shared by all requests.
#[derive(Clone)]
pub struct AppState {
    pub projects: Arc<ProjectService>,
    pub schedules: Arc<ScheduleService>,
    pub dispatch: Arc<DispatchService>,
    pub runs: Arc<RunService>,
    pub connections: Arc<ConnectionService>,
    pub workspaces: Arc<WorkspaceService>,
    pub integrations: Arc<IntegrationService>,
    pub identity: Arc<dyn IdentityResolver>,
    /// Base of the links to runs (`{publicUrl}/projects/{projectId}/runs/{runId}`).
    pub public_url: String,
}

/// The whole API under `/api/v1`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::document))
        .route("/projects", post(projects::create).get(projects::list))
        .route("/projects/{projectId}", get(projects::get))
        .route(
            "/projects/{projectId}/draft",
            put(projects::put_draft).get(projects::get_draft),
        )
        .route("/projects/{projectId}/publish", post(projects::publish))
        .route(
            "/projects/{projectId}/members/{userId}",
            put(projects::put_member).delete(projects::remove_member),
        )
        .route("/projects/{projectId}/archive", post(projects::archive))
        .route("/projects/{projectId}/unarchive", post(projects::unarchive))
        .route(
            "/projects/{projectId}/schedules",
            post(schedules::create).get(schedules::list),
        )
        .route(
            "/projects/{projectId}/schedules/{scheduleId}",
            get(schedules::get)
                .patch(schedules::update)
                .delete(schedules::delete),
        )
        .route(
            "/projects/{projectId}/schedules/{scheduleId}/trigger",
            post(schedules::trigger),
        )
        .route(
            "/projects/{projectId}/schedules/{scheduleId}/runs",
            get(schedules::runs),
        )
        .route(
            "/projects/{projectId}/runs",
            post(runs::start).get(runs::list),
        )
        .route(
            "/projects/{projectId}/runs/{runId}",
            get(runs::status).delete(runs::cancel),
        )
        .route("/projects/{projectId}/results", get(runs::results))
        // The singular paths of the older RunProject API.
        .route("/project/{projectId}/run", post(runs::start))
        .route("/project/{projectId}/runs", get(runs::list))
        .route(
            "/project/{projectId}/run/{runId}",
            get(runs::status).delete(runs::cancel),
        )
        .route("/admin/schedules", get(admin::list_schedules))
        .route("/admin/connections", get(admin::list_connections))
        .route("/admin/connections/{name}", put(admin::put_connection))
        .route("/admin/auto-archive", put(admin::put_auto_archive))
        .route("/admin/integrations", get(admin::get_integrations))
        .route("/admin/integrations/slack", put(admin::put_slack))
        .route(
            "/admin/integrations/webhooks/rotate-secret",
            post(admin::rotate_webhook_secret),
        )
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .with_state(state)
}

#[utoipa::path(get, path = "/api/v1/health", tag = "meta",
    responses((status = 200, body = views::Health)))]
async fn health() -> Json<views::Health> {
    Json(views::Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

async fn not_found() -> impl IntoResponse {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this endpoint does not support the method",
    )
}
