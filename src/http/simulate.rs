//! `POST /v1/simulate`: what `/v1/evaluate` would answer right now, under the policy in force
//! or another one, with nothing recorded anywhere.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, json_body, parse};
use super::handlers::check_timestamp;
use crate::engine::Engine;
use crate::model::{Assessment, Attempt, FieldError};
use crate::policy::Policy;

/// Longest accepted inline policy (`policy`), in bytes.
pub(crate) const MAX_POLICY_BYTES: usize = 32 * 1024;

/// The name an inline policy answers under, and its origin in error messages.
const INLINE_POLICY: &str = "<inline>";

/// `POST /v1/simulate`'s body: an evaluate body, and at most one of `policy` and
/// `policy_name`; with neither, the policy `/v1/evaluate` would run answers, shadow included.
#[derive(Debug, ToSchema)]
pub(crate) struct Simulation {
    /// The attempt, as `/v1/evaluate` takes it.
    #[serde(flatten)]
    attempt: Attempt,
    /// The policy to run instead of the one in force, if any.
    #[serde(flatten)]
    choice: PolicyChoice,
}

/// A policy to run instead of the one in force (then without the shadow).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct PolicyChoice {
    /// Rhai source defining `fn evaluate(ctx)` (at most 32 KiB), compiled in the same sandbox
    /// as loaded policies; it answers as `<inline>`.
    #[serde(default)]
    #[schema(
        max_length = 32768,
        example = r#"fn evaluate(ctx) { #{decision: "mfa", score: 0.5, reasons: ["what_if"]} }"#
    )]
    policy: Option<String>,
    /// The name of a loaded policy (as `GET /v1/policies` lists them).
    #[serde(default)]
    #[schema(max_length = 1024)]
    policy_name: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for Simulation {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_body(req, state).await?;
        // Two parses of one body rather than one with `flatten`, which loses the path of a
        // bad field: errors name the attempt's fields as `/v1/evaluate`'s do.
        let attempt: Attempt = parse(&bytes)?;
        attempt.validate()?;
        let choice: PolicyChoice = parse(&bytes)?;
        Ok(Self { attempt, choice })
    }
}

impl PolicyChoice {
    /// The policy asked for: `None` for the one in force, else the inline one compiled or
    /// the loaded one found.
    async fn resolve(self, engine: &Arc<Engine>) -> Result<Option<Arc<Policy>>, ApiError> {
        match (self.policy, self.policy_name) {
            (None, None) => Ok(None),
            (Some(source), None) => compile(engine, source).await.map(Some),
            (None, Some(name)) => match engine.policies().get(&name) {
                Some(policy) => Ok(Some(Arc::clone(policy))),
                None => Err(invalid(
                    "policy_name",
                    format!("no loaded policy is named `{name}`"),
                )),
            },
            (Some(_), Some(_)) => Err(invalid(
                "policy",
                "give `policy` or `policy_name`, not both".into(),
            )),
        }
    }
}

/// Compiles an inline policy in the engine's sandbox; a syntax error names its line and
/// column.
async fn compile(engine: &Arc<Engine>, source: String) -> Result<Arc<Policy>, ApiError> {
    if source.len() > MAX_POLICY_BYTES {
        let message = format!(
            "longer than {MAX_POLICY_BYTES} bytes ({} bytes)",
            source.len()
        );
        return Err(invalid("policy", message));
    }
    // Compiling runs the script's top-level statements: off the runtime's workers, as a
    // reload does.
    let engine = Arc::clone(engine);
    let compiled = tokio::task::spawn_blocking(move || {
        engine
            .runtime()
            .compile(INLINE_POLICY, INLINE_POLICY, &source)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the policy compile task failed: {e}")))?;
    compiled
        .map(Arc::new)
        .map_err(|e| invalid("policy", e.to_string()))
}

fn invalid(field: &'static str, message: String) -> ApiError {
    FieldError { field, message }.into()
}

/// `POST /v1/simulate`'s answer: `/v1/evaluate`'s, marked as a simulation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Simulated {
    /// What `/v1/evaluate` would have answered (its `request_id` refers to nothing: no
    /// attempt awaits an outcome).
    #[serde(flatten)]
    assessment: Assessment,
    /// Always true: nothing was counted, learned, locked or logged.
    simulated: bool,
}

/// Scores an attempt as `/v1/evaluate` would right now, under the policy in force or the one
/// given, and changes nothing: no counter, profile, lock, pending step-up, decision-log line
/// or evaluation metric. The attempt counts in its own signals (a `password_ok: false` in the
/// failures), as it would in evaluate's.
#[utoipa::path(post, path = "/v1/simulate", tag = "policies", request_body = Simulation,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The decision, its reasons and every signal; nothing recorded", body = Simulated),
        (status = 400, description = "Malformed JSON, an invalid field, a policy that does not compile, or an unknown `policy_name`", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 413, description = "Body over 512 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 503, description = "State unavailable", body = ErrorBody),
    ))]
pub(super) async fn simulate(
    State(state): State<AppState>,
    Simulation {
        mut attempt,
        choice,
    }: Simulation,
) -> Result<Json<Simulated>, ApiError> {
    let now = Utc::now();
    state.engine.canonical_user_id(&mut attempt.user_id);
    check_timestamp(attempt.timestamp, now, state.max_event_age)?;
    let policy = choice.resolve(&state.engine).await?;
    let assessment = state.engine.simulate(&attempt, now, policy).await?;
    Ok(Json(Simulated {
        assessment,
        simulated: true,
    }))
}
