//! The HTTP front door (axum): the risk API, user and policy administration, probes.

pub(crate) mod auth;
pub(crate) mod error;
mod handlers;
mod metrics;
pub(crate) mod openapi;
pub(crate) mod server;
mod simulate;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::config::ApiKeys;
use crate::decision_log::DecisionLog;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::policy::reload::Reloader;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The decision engine.
    pub engine: Arc<Engine>,
    /// API keys and roles; empty means loopback clients only.
    pub api_keys: Arc<ApiKeys>,
    /// Reloads the policies directory, and knows how the last reloads went.
    pub reloader: Arc<Reloader>,
    /// Where evaluations and events are logged, if enabled.
    pub decision_log: Option<DecisionLog>,
    /// How far back an evaluation's or event's timestamp may be.
    pub max_event_age: chrono::Duration,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
}

/// All routes.
pub(crate) fn router(state: AppState) -> Router {
    let client = Router::new()
        .route("/v1/evaluate", post(handlers::evaluate))
        .route("/v1/events", post(handlers::event))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::client));
    let admin = Router::new()
        .route(
            "/v1/users/{id}",
            get(handlers::user_profile).delete(handlers::forget_user),
        )
        .route("/v1/users/{id}/unlock", post(handlers::unlock_user))
        .route("/v1/policies", get(handlers::list_policies))
        .route("/v1/policies/reload", post(handlers::reload_policies))
        .route(
            "/v1/simulate",
            post(simulate::simulate).layer(DefaultBodyLimit::max(error::MAX_SIMULATION_BODY_BYTES)),
        )
        .route("/metrics", get(metrics::scrape))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::admin));
    Router::new()
        .merge(client)
        .merge(admin)
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/openapi.json", get(openapi::served))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::timed,
        ))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(error::MAX_BODY_BYTES))
        .with_state(state)
}

/// `GET /metrics` alone and open, for a scraper on an address of its own.
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::scrape))
        .fallback(handlers::not_found)
        .with_state(state)
}

/// Serves the API on `listener` within `limits` until `shutdown` completes, then drains
/// open requests until the limits' deadline.
pub(crate) async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: server::ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    server::serve(listener, router(state), limits, shutdown).await;
}
