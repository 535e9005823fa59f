//! The OpenAPI 3 document, generated from the handlers' annotations and the request and
//! response types, served at `/api/v1/openapi.json`.
//!
//! The document is generated once, by a test, into `openapi.json` beside this file, and
//! served from there: the binaries carry the finished text instead of the code that builds
//! it (a few hundred KiB of every API binary, and work on every request), and the document
//! is a file a reviewer sees change. The test fails when the file and the annotations
//! disagree; `UPDATE_OPENAPI=1 cargo test -p scheduled-runs-shared --lib openapi` rewrites it.

use axum::http::header;
use axum::response::IntoResponse;
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

/// The generated document as checked in: indented, for reviewers.
const SOURCE: &str = include_str!("openapi.json");

/// The document as served: `SOURCE` without the whitespace between tokens, which is half
/// of its bytes. Done at compile time, so the binaries carry only this copy.
pub const DOCUMENT: &str = {
    // Used once, here, at compile time: only `DOCUMENT` (a `&'static str`) reaches the binary.
    #[allow(clippy::large_const_arrays)]
    const BYTES: [u8; compact_len(SOURCE.as_bytes())] = compact(SOURCE.as_bytes());
    match std::str::from_utf8(&BYTES) {
        Ok(document) => document,
        Err(_) => panic!("removing ASCII whitespace keeps UTF-8 valid"),
    }
};

/// Walks JSON text, calling `keep` on each byte that is inside a string or not whitespace.
/// (A macro rather than a closure: closures cannot be called in `const fn`.)
macro_rules! each_kept_byte {
    ($json:expr, |$b:ident| $keep:expr) => {{
        let json = $json;
        let (mut i, mut in_string, mut escaped) = (0, false, false);
        while i < json.len() {
            let $b = json[i];
            if in_string {
                if escaped {
                    escaped = false;
                } else if $b == b'\\' {
                    escaped = true;
                } else if $b == b'"' {
                    in_string = false;
                }
                $keep;
            } else if !matches!($b, b' ' | b'\n' | b'\r' | b'\t') {
                in_string = $b == b'"';
                $keep;
            }
            i += 1;
        }
    }};
}

const fn compact_len(json: &[u8]) -> usize {
    let mut len = 0;
    each_kept_byte!(json, |_b| len += 1);
    len
}

const fn compact<const N: usize>(json: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut len = 0;
    each_kept_byte!(json, |b| {
        out[len] = b;
        len += 1
    });
    out
}

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_openapi_document_is_the_generated_one() {
        let generated = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the document serialises")
            + "\n";
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/openapi.json");
            std::fs::write(path, &generated).expect("write openapi.json");
            return;
        }
        assert!(
            SOURCE == generated,
            "shared/src/http/openapi.json is out of date with the annotations: \
             UPDATE_OPENAPI=1 cargo test -p scheduled-runs-shared --lib openapi"
        );
    }

    #[test]
    fn the_served_document_is_the_source_without_whitespace() {
        let served: serde_json::Value =
            serde_json::from_str(DOCUMENT).expect("the served document is JSON");
        let source: serde_json::Value =
            serde_json::from_str(SOURCE).expect("the source document is JSON");
        assert_eq!(served, source);
        assert!(DOCUMENT.len() < SOURCE.len() * 2 / 3);
    }
}
