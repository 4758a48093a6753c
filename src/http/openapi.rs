//! The API contract as an OpenAPI 3.1 document, generated from the handlers and the types
//! they take and answer, served at `GET /openapi.json` and checked into the repository as
//! `openapi.json` (a test keeps the two equal).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{handlers, metrics, simulate};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "riskgate",
        description = "Adaptive risk-based authentication decisions: allow, mfa or lock, with the score, the reasons and every signal."
    ),
    paths(
        handlers::evaluate,
        handlers::event,
        handlers::user_profile,
        handlers::forget_user,
        handlers::unlock_user,
        handlers::list_policies,
        handlers::reload_policies,
        simulate::simulate,
        handlers::healthz,
        handlers::readyz,
        metrics::scrape,
        served,
    ),
    modifiers(&ApiKeyScheme)
)]
struct ApiDoc;

/// Adds the `api_key` scheme the operations name: `Authorization: Bearer <key>`.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An API key from RISKGATE_API_KEYS (client role for /v1/evaluate and \
                 /v1/events, admin for the rest, /v1/simulate included); without configured \
                 keys, loopback clients need none.",
            ))
            .build();
        components.add_security_scheme("api_key", SecurityScheme::Http(bearer));
    }
}

/// The document.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as the pretty-printed JSON checked into the repository.
pub fn document_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .expect("an OpenAPI document always serialises");
    text.push('\n');
    text
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
pub(super) async fn served() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_document_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == document_json(),
            "openapi.json is stale: regenerate it with `cargo run -- openapi > openapi.json`"
        );
    }

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for route in [
            "/v1/evaluate",
            "/v1/events",
            "/v1/users/{id}",
            "/v1/users/{id}/unlock",
            "/v1/policies",
            "/v1/policies/reload",
            "/v1/simulate",
            "/healthz",
            "/readyz",
            "/openapi.json",
        ] {
            assert!(paths.contains(&route), "{route} is missing from {paths:?}");
        }
        assert!(doc.components.unwrap().schemas.contains_key("Assessment"));
    }
}
