//! Route handlers: thin translations between HTTP and the engine.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, UserId, ValidJson};
use crate::model::{Assessment, Attempt, FieldError, Outcome, PolicyRef, Recorded, UserExport};
use crate::policy::PolicySet;
use crate::policy::reload::ReloadStatus;

/// The answer to `POST /v1/events`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventRecorded {
    /// What the event changed.
    recorded: Recorded,
}

/// The answer to `POST /v1/users/{id}/unlock`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Unlocked {
    /// The account.
    user_id: String,
    /// Whether there was a lock to lift.
    unlocked: bool,
}

/// The loaded policies (`GET /v1/policies`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PolicyListing {
    /// The policy answering when no app mapping applies.
    active: Arc<PolicyRef>,
    /// The report-only policy run beside it, if any.
    shadow: Option<Arc<PolicyRef>>,
    /// Every loaded policy.
    policies: Vec<Arc<PolicyRef>>,
    /// The loaded `lists/`, by name.
    lists: Vec<String>,
    /// When they were loaded, and the last reload refused.
    #[serde(flatten)]
    status: ReloadStatus,
}

/// `GET /healthz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// `GET /readyz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Readiness {
    /// `ready`, `degraded` (answering with weaker signals) or `state_unavailable`.
    status: &'static str,
    /// `ok`, or `unavailable` while state cannot be kept.
    state: &'static str,
    /// The active policy.
    policy: Arc<PolicyRef>,
    /// Whether every GeoIP database is loaded.
    geoip: bool,
    /// What is missing: `geoip_city`, `geoip_asn`.
    degraded: Vec<&'static str>,
    /// Decision-log lines dropped so far; absent when the log is off.
    decision_log_dropped: Option<u64>,
}

/// Client clocks may run this far ahead of ours.
const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// Refuses a timestamp from the future (beyond clock skew) or further back than `max_age`:
/// a backdated failure would count in no window, and a backdated attempt would be judged
/// against a past that state no longer holds.
pub(super) fn check_timestamp(
    timestamp: Option<chrono::DateTime<Utc>>,
    now: chrono::DateTime<Utc>,
    max_age: Duration,
) -> Result<(), FieldError> {
    let refuse = |message: String| {
        Err(FieldError {
            field: "timestamp",
            message,
        })
    };
    match timestamp {
        Some(t) if t > now + MAX_CLOCK_SKEW => refuse(format!(
            "is more than {} minutes in the future",
            MAX_CLOCK_SKEW.num_minutes()
        )),
        Some(t) if t < now - max_age => refuse(format!(
            "is more than {} seconds in the past (RISKGATE_MAX_EVENT_AGE_SECONDS)",
            max_age.num_seconds()
        )),
        _ => Ok(()),
    }
}

/// Scores one login attempt and records it.
#[utoipa::path(post, path = "/v1/evaluate", tag = "risk", request_body = Attempt,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The decision, its reasons and every signal", body = Assessment),
        (status = 400, description = "Malformed JSON or an invalid field", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 503, description = "State unavailable", body = ErrorBody),
    ))]
pub(super) async fn evaluate(
    State(state): State<AppState>,
    ValidJson(mut attempt): ValidJson<Attempt>,
) -> Result<Json<Assessment>, ApiError> {
    let now = Utc::now();
    state.engine.canonical_user_id(&mut attempt.user_id);
    check_timestamp(attempt.timestamp, now, state.max_event_age)?;
    let started = std::time::Instant::now();
    let answer = state.engine.evaluate_committed(&attempt, now).await?;
    let took = started.elapsed();
    state.metrics.evaluated(&answer, took);
    if let Some(log) = &state.decision_log {
        log.evaluation(now, &attempt, &answer, took.as_micros() as u64);
    }
    Ok(Json(answer))
}

/// Reports what happened after a decision.
#[utoipa::path(post, path = "/v1/events", tag = "risk", request_body = Outcome,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "What the event changed", body = EventRecorded),
        (status = 400, description = "Malformed JSON or an invalid field", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 503, description = "State unavailable", body = ErrorBody),
    ))]
pub(super) async fn event(
    State(state): State<AppState>,
    ValidJson(mut outcome): ValidJson<Outcome>,
) -> Result<Json<EventRecorded>, ApiError> {
    let now = Utc::now();
    state.engine.canonical_user_id(&mut outcome.user_id);
    check_timestamp(outcome.timestamp, now, state.max_event_age)?;
    let recorded = state.engine.record(&outcome, now).await?;
    state.engine.committed().await?;
    if let Some(log) = &state.decision_log {
        log.event(now, &outcome, recorded);
    }
    Ok(Json(EventRecorded { recorded }))
}

/// Everything kept about a user.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The user id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Profile, failures and lock", body = UserExport),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 404, description = "Nothing kept about the user", body = ErrorBody),
        (status = 503, description = "State unavailable", body = ErrorBody),
    ))]
pub(super) async fn user_profile(
    State(state): State<AppState>,
    UserId(id): UserId,
) -> Result<Json<UserExport>, ApiError> {
    match state.engine.export_user(&id, Utc::now()).await? {
        Some(export) => Ok(Json(export)),
        None => Err(no_state_for(&id)),
    }
}

/// Erases a user: profile, failures, lock, attempts awaiting their outcome, their place in
/// IP and device counters.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The user id")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Erased"),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 404, description = "Nothing kept about the user", body = ErrorBody),
        (status = 503, description = "State unavailable", body = ErrorBody),
    ))]
pub(super) async fn forget_user(
    State(state): State<AppState>,
    UserId(id): UserId,
) -> Result<StatusCode, ApiError> {
    let forgotten = state.engine.forget(&id).await?;
    state.engine.committed().await?;
    if forgotten {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_state_for(&id))
    }
}

/// Lifts a user's lock.
#[utoipa::path(post, path = "/v1/users/{id}/unlock", tag = "users",
    params(("id" = String, Path, description = "The user id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Whether there was a lock", body = Unlocked),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 503, description = "State unavailable", body = ErrorBody),
    ))]
pub(super) async fn unlock_user(
    State(state): State<AppState>,
    UserId(id): UserId,
) -> Result<Json<Unlocked>, ApiError> {
    let unlocked = state.engine.unlock(&id).await?;
    state.engine.committed().await?;
    Ok(Json(Unlocked {
        user_id: id,
        unlocked,
    }))
}

fn no_state_for(user_id: &str) -> ApiError {
    ApiError::NotFound(format!("no state kept for user `{user_id}`"))
}

fn describe(set: &PolicySet, status: ReloadStatus) -> PolicyListing {
    PolicyListing {
        active: set.active(None).reference(),
        shadow: set.shadow().map(|p| p.reference()),
        policies: set.policies().map(|p| p.reference()).collect(),
        lists: set.lists().names().into_iter().map(str::to_owned).collect(),
        status,
    }
}

/// The loaded policies and lists.
#[utoipa::path(get, path = "/v1/policies", tag = "policies",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Active, shadow and loaded policies", body = PolicyListing),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
    ))]
pub(super) async fn list_policies(State(state): State<AppState>) -> Json<PolicyListing> {
    Json(describe(&state.engine.policies(), state.reloader.status()))
}

/// Reloads the policies directory, activating it only if every script and list compiles and
/// every case in its `tests/` passes.
#[utoipa::path(post, path = "/v1/policies/reload", tag = "policies",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The policies now active", body = PolicyListing),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 422, description = "A script, list or case was rejected; the policies in force keep answering", body = ErrorBody),
    ))]
pub(super) async fn reload_policies(
    State(state): State<AppState>,
) -> Result<Json<PolicyListing>, ApiError> {
    let loaded = state
        .reloader
        .reload()
        .await
        .map_err(|rejected| ApiError::PolicyRejected(rejected.error))?;
    Ok(Json(describe(&loaded, state.reloader.status())))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "Up", body = Health)))]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Ready to take traffic, with what is loaded; 503 while state cannot be kept (answers are
/// then the fail-safe decision).
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "Ready (possibly degraded)", body = Readiness),
        (status = 503, description = "State unavailable", body = Readiness),
    ))]
pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let policies = state.engine.policies();
    let state_ok = state.engine.state_healthy();
    let status = if state_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Without GeoIP the service answers, with weaker signals: ready, but degraded.
    let missing = state.engine.geoip_missing();
    let status_text = match (state_ok, missing.is_empty()) {
        (false, _) => "state_unavailable",
        (true, true) => "ready",
        (true, false) => "degraded",
    };
    let body = Readiness {
        status: status_text,
        state: if state_ok { "ok" } else { "unavailable" },
        policy: policies.active(None).reference(),
        geoip: missing.is_empty(),
        degraded: missing,
        decision_log_dropped: state.decision_log.as_ref().map(|log| log.dropped()),
    };
    (status, Json(body))
}

/// Unknown routes get the JSON error shape too.
pub(super) async fn not_found() -> impl IntoResponse {
    ApiError::NotFound("no such route".into())
}

/// Known routes called with the wrong method.
pub(super) async fn method_not_allowed() -> impl IntoResponse {
    ApiError::MethodNotAllowed
}
