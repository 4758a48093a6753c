//! `GET /metrics` and the timing of every routed request.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// The metrics in Prometheus's text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid API key", body = super::error::ErrorBody),
        (status = 403, description = "Not an admin key", body = super::error::ErrorBody),
    ))]
pub(crate) async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics.render(&state.engine);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// Times a routed request from its arrival to its answer, by route; counts the state
/// failures that answered 503 outside an evaluation.
pub(crate) async fn timed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    let response = next.run(req).await;
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE && route != "/readyz" {
        state.metrics.state_error();
    }
    state.metrics.request(&route, status, started.elapsed());
    response
}
