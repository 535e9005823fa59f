//! The OpenAPI 3 document, generated from the handlers' annotations and the request and
//! response types, served at `/api/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, projects, runs, schedules};

#[derive(OpenApi)]
#[openapi(
    info(title = "scheduled-runs", description = "Schedules, runs and notifications of published data apps."),
    paths(
        super::health,
        projects::create, projects::list, projects::get, projects::get_draft, projects::put_draft,
        projects::publish, projects::put_member, projects::remove_member, projects::archive, projects::unarchive,
        schedules::create, schedules::list, schedules::get, schedules::update, schedules::delete,
        schedules::trigger, schedules::runs,
        runs::start, runs::status, runs::list, runs::cancel, runs::results,
        admin::list_schedules, admin::put_auto_archive, admin::put_connection, admin::list_connections,
        admin::get_integrations, admin::put_slack, admin::rotate_webhook_secret,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "projects", description = "Projects, drafts, publishing, members"),
        (name = "schedules", description = "Schedules and their run logs"),
        (name = "runs", description = "The RunProject API and published results"),
        (name = "admin", description = "Workspace administration: schedules, connections, auto-archive, notification integrations"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
