//! Route handlers: thin translations between HTTP and the engine.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, UserId, ValidJson};
use crate::model::{Assessment, Attempt, FieldError, Outcome, UserExport};
use crate::policy::PolicySet;

/// Client clocks may run this far ahead of ours.
const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// Refuses a timestamp from the future (beyond clock skew) or further back than `max_age`:
/// a backdated failure would count in no window, and a backdated attempt would be judged
/// against a past that state no longer holds.
fn check_timestamp(
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

/// `POST /v1/evaluate`
pub(super) async fn evaluate(
    State(state): State<AppState>,
    ValidJson(mut attempt): ValidJson<Attempt>,
) -> Result<Json<Assessment>, ApiError> {
    let now = Utc::now();
    state.engine.canonical_user_id(&mut attempt.user_id);
    check_timestamp(attempt.timestamp, now, state.max_event_age)?;
    let started = std::time::Instant::now();
    let answer = state.engine.evaluate_committed(&attempt, now).await?;
    if let Some(log) = &state.decision_log {
        let latency_us = started.elapsed().as_micros() as u64;
        log.evaluation(now, &attempt, &answer, latency_us);
    }
    Ok(Json(answer))
}

/// `POST /v1/events`
pub(super) async fn event(
    State(state): State<AppState>,
    ValidJson(mut outcome): ValidJson<Outcome>,
) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    state.engine.canonical_user_id(&mut outcome.user_id);
    check_timestamp(outcome.timestamp, now, state.max_event_age)?;
    let recorded = state.engine.record(&outcome, now).await?;
    state.engine.committed().await?;
    if let Some(log) = &state.decision_log {
        log.event(now, &outcome, recorded);
    }
    Ok(Json(json!({ "recorded": recorded })))
}

/// `GET /v1/users/{id}`: everything kept about a user.
pub(super) async fn user_profile(
    State(state): State<AppState>,
    UserId(id): UserId,
) -> Result<Json<UserExport>, ApiError> {
    match state.engine.export_user(&id, Utc::now()).await? {
        Some(export) => Ok(Json(export)),
        None => Err(no_state_for(&id)),
    }
}

/// `DELETE /v1/users/{id}`: erasure.
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

/// `POST /v1/users/{id}/unlock`
pub(super) async fn unlock_user(
    State(state): State<AppState>,
    UserId(id): UserId,
) -> Result<Json<Value>, ApiError> {
    let unlocked = state.engine.unlock(&id).await?;
    state.engine.committed().await?;
    Ok(Json(json!({ "user_id": id, "unlocked": unlocked })))
}

fn no_state_for(user_id: &str) -> ApiError {
    ApiError::NotFound(format!("no state kept for user `{user_id}`"))
}

fn describe(set: &PolicySet) -> Value {
    let policies: Vec<Value> = set
        .policies()
        .map(|p| serde_json::to_value(p.reference()).unwrap_or(Value::Null))
        .collect();
    json!({
        "active": set.active(None).reference(),
        "shadow": set.shadow().map(|p| p.reference()),
        "policies": policies,
        "lists": set.lists().names(),
    })
}

/// `GET /v1/policies`
pub(super) async fn list_policies(State(state): State<AppState>) -> Json<Value> {
    Json(describe(&state.engine.policies()))
}

/// `POST /v1/policies/reload`: activates the directory's policies only if all compile.
pub(super) async fn reload_policies(
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    // Reading files and compiling scripts blocks for milliseconds: off the runtime's workers.
    let AppState {
        engine,
        policies_dir,
        selection,
        reloading,
        ..
    } = state;
    let _one_at_a_time = reloading.lock().await;
    let compiler = Arc::clone(&engine);
    let loaded = tokio::task::spawn_blocking(move || {
        PolicySet::load(compiler.runtime(), &policies_dir, selection)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the policy reload task failed: {e}")))?
    .map_err(|e| ApiError::PolicyRejected(e.to_string()))?;
    let description = describe(&loaded);
    engine.set_policies(loaded);
    tracing::info!("policies reloaded");
    Ok(Json(description))
}

/// `GET /healthz`: the process is up.
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: ready to take traffic, with what is loaded; 503 while state cannot be
/// kept (answers are then the fail-safe decision).
pub(super) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
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
    let body = json!({
        "status": status_text,
        "state": if state_ok { "ok" } else { "unavailable" },
        "policy": policies.active(None).reference(),
        "geoip": missing.is_empty(),
        "degraded": missing,
        "decision_log_dropped": state.decision_log.as_ref().map(|log| log.dropped()),
    });
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
