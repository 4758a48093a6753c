//! The one place HTTP statuses are chosen, and the JSON body extractor that reports bad input
//! in the same `{"error", "message"}` shape.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AppState;
use super::server::BodyTimeout;
use crate::engine::EngineError;
use crate::model::{Attempt, FieldError, Outcome};

/// Largest accepted request body.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted `/v1/simulate` body: room for an inline policy of
/// [`MAX_POLICY_BYTES`](super::simulate::MAX_POLICY_BYTES) even with every character escaped
/// in the JSON (up to 12 bytes for one), beside the attempt.
pub(crate) const MAX_SIMULATION_BODY_BYTES: usize = 512 * 1024;

/// Every error the API answers with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400: the body is not valid JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 400: a field is missing or invalid.
    #[error("{message}")]
    InvalidField {
        /// The field, when known.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// 422: a policy reload was refused; the active policies stay.
    #[error("reload refused, the active policies stay: {0}")]
    PolicyRejected(String),
    /// 401: no or unknown API key.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the caller may not use this route.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 408: the body did not arrive within the body timeout.
    #[error("the request body did not arrive within {0} seconds")]
    BodyTimeout(u64),
    /// 413: the body is over the limit.
    #[error(
        "request body is larger than {MAX_BODY_BYTES} bytes ({MAX_SIMULATION_BODY_BYTES} on /v1/simulate)"
    )]
    TooLarge,
    /// 415: the body is not `application/json`.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// 500: a bug (a task panicked); logged, never detailed to the client.
    #[error("internal error")]
    Internal(String),
    /// 503: the state backend failed; logged, never detailed to the client.
    #[error("the state backend is unavailable")]
    Unavailable(#[source] EngineError),
}

/// Every error's body.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// A stable code: `malformed_json`, `invalid_field`, `unauthorized`, `not_found`...
    error: &'a str,
    /// What is wrong, for people.
    message: String,
    /// The offending field, for `invalid_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
            ApiError::PolicyRejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "policy_rejected"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::InvalidField {
            message: e.to_string(),
            field: Some(e.field.to_owned()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::Unavailable(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Unavailable(source) => tracing::error!(error = %source, "request failed"),
            ApiError::Internal(what) => tracing::error!(error = %what, "request failed"),
            _ => {}
        }
        let (status, code) = self.status_and_code();
        let field = match &self {
            ApiError::InvalidField { field, .. } => field.as_deref(),
            _ => None,
        };
        let body = ErrorBody {
            error: code,
            message: self.to_string(),
            field,
        };
        (status, Json(body)).into_response()
    }
}

/// Request bodies that check themselves after parsing.
pub(crate) trait Validate {
    /// Checks what serde cannot.
    fn validate(&self) -> Result<(), FieldError>;
}

impl Validate for Attempt {
    fn validate(&self) -> Result<(), FieldError> {
        Attempt::validate(self)
    }
}

impl Validate for Outcome {
    fn validate(&self) -> Result<(), FieldError> {
        Outcome::validate(self)
    }
}

/// A JSON body, parsed and validated, with every failure reported as an [`ApiError`].
pub(crate) struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_body(req, state).await?;
        let value: T = parse(&bytes)?;
        value.validate()?;
        Ok(ValidJson(value))
    }
}

/// A request's JSON body: refused unless `application/json`, within the body timeout and
/// under [`MAX_BODY_BYTES`].
pub(super) async fn json_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false);
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    // A timer only when the body is not there at once: `timeout` polls the read first.
    let limit = req
        .extensions()
        .get::<BodyTimeout>()
        .map_or(BodyTimeout::default().0, |timeout| timeout.0);
    let read = tokio::time::timeout(limit, Bytes::from_request(req, state))
        .await
        .map_err(|_| ApiError::BodyTimeout(limit.as_secs()))?;
    read.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::MalformedJson(rejection.body_text())
        }
    })
}

/// The `{id}` of a `/v1/users/{id}` route in the form state is kept under, with a malformed
/// one (not UTF-8) reported as an [`ApiError`].
pub(crate) struct UserId(pub String);

impl FromRequestParts<AppState> for UserId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Path(mut id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::InvalidField {
                field: Some("user_id".into()),
                message: rejection.body_text(),
            })?;
        state.engine.canonical_user_id(&mut id);
        Ok(Self(id))
    }
}

/// Parses JSON, naming the offending field in errors.
pub(super) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = (path != ".").then_some(path);
                let message = match &field {
                    Some(f) => format!("`{f}`: {}", strip_position(&inner.to_string())),
                    None => strip_position(&inner.to_string()),
                };
                ApiError::InvalidField {
                    field: field.or_else(|| missing_field(&message)),
                    message,
                }
            }
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// serde_json appends " at line L column C"; for data errors the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The field of a "missing field `x`" message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str) -> ApiError {
        parse::<Attempt>(body.as_bytes())
            .and_then(|a| a.validate().map_err(ApiError::from))
            .expect_err("should fail")
    }

    fn field_of(e: &ApiError) -> Option<&str> {
        match e {
            ApiError::InvalidField { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(matches!(
            error("{\"user_id\": "),
            ApiError::MalformedJson(_)
        ));
        let e = error(r#"{"ip": "1.2.3.4"}"#);
        assert_eq!(field_of(&e), Some("user_id"), "{e}");
        let e = error(r#"{"user_id": "a", "ip": "1.2.3.400"}"#);
        assert_eq!(field_of(&e), Some("ip"), "{e}");
        let e = error(r#"{"user_id": "a", "ip": "1.2.3.4", "timestamp": "yesterday"}"#);
        assert_eq!(field_of(&e), Some("timestamp"), "{e}");
        let e = error(r#"{"user_id": "  ", "ip": "1.2.3.4"}"#);
        assert_eq!(field_of(&e), Some("user_id"), "{e}");
        let long = "x".repeat(300);
        let e = error(&format!(r#"{{"user_id": "{long}", "ip": "1.2.3.4"}}"#));
        assert!(e.to_string().contains("longer than"), "{e}");
        assert!(parse::<Attempt>(br#"{"user_id": "a", "ip": "::1"} x"#).is_err());
    }
}
