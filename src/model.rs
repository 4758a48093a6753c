//! What crosses the engine's boundary: login attempts, reported outcomes and decisions.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rhai::ImmutableString;
use serde::{Deserialize, Serialize};

use crate::signals::{EventTime, Signals};
pub use crate::state::profile::{Feature, FeatureValue, Known, LoginPlace, UserProfile};

/// Where an IP is, as far as GeoIP (or a log) says: shared by what an attempt is scored
/// with (`ctx.geo`) and what a profile keeps of each successful login.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Location {
    /// ISO 3166 alpha-2 country code.
    #[schema(value_type = Option<String>)]
    pub country: Option<ImmutableString>,
    /// City name (English).
    #[schema(value_type = Option<String>)]
    pub city: Option<ImmutableString>,
    /// Latitude in degrees.
    pub lat: Option<f64>,
    /// Longitude in degrees.
    pub lon: Option<f64>,
    /// Radius of uncertainty around the location, in km.
    pub accuracy_km: Option<f64>,
}

/// Longest accepted `user_id`, in bytes.
pub const MAX_USER_ID_LEN: usize = 256;
/// Longest accepted `user_agent`, `device_id`, `app` or `request_id`, in bytes.
pub const MAX_FIELD_LEN: usize = 1024;
/// Largest accepted `attributes`, in bytes of keys and values (a policy reads a few flags;
/// a large map costs every evaluation and every decision-log line).
pub const MAX_ATTRIBUTES_BYTES: usize = 4096;
/// Deepest accepted nesting of `attributes` (an object in `attributes` is level 1).
pub const MAX_ATTRIBUTES_DEPTH: usize = 4;

/// One login attempt, as the identity provider reports it to `POST /v1/evaluate`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    /// The account being logged into (at most 256 bytes, not blank).
    #[schema(min_length = 1, max_length = 256, pattern = r"\S")]
    pub user_id: String,
    /// The client's IP address.
    #[schema(value_type = String, example = "203.0.113.7")]
    pub ip: IpAddr,
    /// The client's `User-Agent` header.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub user_agent: Option<String>,
    /// A stable device identifier (cookie, app install id), when the IdP has one.
    #[serde(default, deserialize_with = "blank_as_none")]
    #[schema(max_length = 1024)]
    pub device_id: Option<String>,
    /// The application being logged into; selects the policy.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub app: Option<String>,
    /// Event time; the server's clock when absent.
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
    /// Whether the password was right; absent for a pre-auth check.
    #[serde(default)]
    pub password_ok: Option<bool>,
    /// Free-form attributes passed through to the policy as `ctx.request.attributes`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A field that failed validation, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct FieldError {
    /// The JSON field name.
    pub field: &'static str,
    /// What is wrong, in lowercase prose.
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

fn check_len(field: &'static str, value: Option<&str>, max: usize) -> Result<(), FieldError> {
    match value {
        Some(v) if v.len() > max => Err(FieldError::new(
            field,
            format!("longer than {max} bytes ({} bytes)", v.len()),
        )),
        _ => Ok(()),
    }
}

/// Bounds `attributes` in size and depth.
fn check_attributes(
    attributes: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), FieldError> {
    use serde_json::Value;
    // Walks values without recursion: (value, depth) pairs still to visit.
    let mut bytes = 0usize;
    let mut pending: Vec<(&Value, usize)> = attributes.values().map(|v| (v, 1)).collect();
    bytes += attributes.keys().map(String::len).sum::<usize>();
    while let Some((value, depth)) = pending.pop() {
        if depth > MAX_ATTRIBUTES_DEPTH {
            return Err(FieldError::new(
                "attributes",
                format!("nested deeper than {MAX_ATTRIBUTES_DEPTH} levels"),
            ));
        }
        bytes += match value {
            Value::String(text) => text.len(),
            Value::Array(items) => {
                pending.extend(items.iter().map(|v| (v, depth + 1)));
                1
            }
            Value::Object(map) => {
                pending.extend(map.values().map(|v| (v, depth + 1)));
                map.keys().map(String::len).sum::<usize>() + 1
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        };
        if bytes > MAX_ATTRIBUTES_BYTES {
            return Err(FieldError::new(
                "attributes",
                format!("larger than {MAX_ATTRIBUTES_BYTES} bytes of keys and values"),
            ));
        }
    }
    Ok(())
}

/// A blank string reads as absent: `"device_id": ""` is no id, not one id that every
/// client sending it shares.
fn blank_as_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.filter(|s| !s.trim().is_empty()))
}

fn check_user_id(user_id: &str) -> Result<(), FieldError> {
    if user_id.trim().is_empty() {
        return Err(FieldError::new("user_id", "must not be empty"));
    }
    check_len("user_id", Some(user_id), MAX_USER_ID_LEN)
}

impl Attempt {
    /// Checks what serde cannot: non-empty and bounded strings.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_user_id(&self.user_id)?;
        check_len("user_agent", self.user_agent.as_deref(), MAX_FIELD_LEN)?;
        check_len("device_id", self.device_id.as_deref(), MAX_FIELD_LEN)?;
        check_len("app", self.app.as_deref(), MAX_FIELD_LEN)?;
        check_attributes(&self.attributes)
    }

    /// A minimal attempt, for tests and examples.
    pub fn new(user_id: impl Into<String>, ip: IpAddr) -> Self {
        Self {
            user_id: user_id.into(),
            ip,
            user_agent: None,
            device_id: None,
            app: None,
            timestamp: None,
            password_ok: None,
            attributes: serde_json::Map::new(),
        }
    }
}

/// What the IdP reports after a decision (`POST /v1/events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The password was wrong.
    LoginFailed,
    /// The password was right (and, where asked, MFA passed).
    LoginSucceeded,
    /// The user passed the step-up.
    MfaPassed,
    /// The user failed the step-up.
    MfaFailed,
    /// The user chose to trust this device.
    DeviceTrusted,
}

/// An outcome event, tied to an earlier attempt by `request_id` or standing on its own.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Outcome {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: OutcomeKind,
    /// The account (at most 256 bytes, not blank).
    #[schema(min_length = 1, max_length = 256, pattern = r"\S")]
    pub user_id: String,
    /// The client's IP; required when the event has no `request_id`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "203.0.113.7")]
    pub ip: Option<IpAddr>,
    /// The device: `device_trusted` needs it (or `user_agent`).
    #[serde(default, deserialize_with = "blank_as_none")]
    #[schema(max_length = 1024)]
    pub device_id: Option<String>,
    /// The user agent, identifying the device when there is no `device_id`.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub user_agent: Option<String>,
    /// The `request_id` of the attempt this outcome belongs to.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub request_id: Option<String>,
    /// Event time; the server's clock when absent.
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
}

impl Outcome {
    /// Checks what serde cannot: non-empty and bounded strings.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_user_id(&self.user_id)?;
        check_len("user_agent", self.user_agent.as_deref(), MAX_FIELD_LEN)?;
        check_len("device_id", self.device_id.as_deref(), MAX_FIELD_LEN)?;
        check_len("request_id", self.request_id.as_deref(), MAX_FIELD_LEN)?;
        if self.kind == OutcomeKind::DeviceTrusted {
            if self.device_id.is_none() && self.user_agent.is_none() {
                return Err(FieldError::new(
                    "device_id",
                    "`device_trusted` needs `device_id` or `user_agent`",
                ));
            }
        } else if self.request_id.is_none() && self.ip.is_none() {
            return Err(FieldError::new(
                "ip",
                "an event without `request_id` needs `ip`",
            ));
        }
        Ok(())
    }
}

/// The three answers riskgate gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Let the login through.
    Allow,
    /// Ask for a second factor.
    Mfa,
    /// Refuse the login.
    Lock,
}

impl Decision {
    /// The lowercase name used in JSON and in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Mfa => "mfa",
            Decision::Lock => "lock",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Decision::Allow),
            "mfa" => Some(Decision::Mfa),
            "lock" => Some(Decision::Lock),
            _ => None,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which policy produced a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyRef {
    /// The policy's name (its file stem).
    pub name: String,
    /// `sha256:<hex>` of the policy source.
    pub version: String,
}

/// One policy's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verdict {
    /// allow, mfa or lock.
    pub decision: Decision,
    /// The policy's risk score.
    pub score: f64,
    /// Why, as short snake_case codes.
    pub reasons: Vec<String>,
    /// How long the account stays locked; only with `lock` (0: this attempt is refused and the
    /// account is not locked, as with a `lock` fail-safe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_seconds: Option<u64>,
    /// The policy that answered.
    pub policy: Arc<PolicyRef>,
    /// True when the policy failed and the fail-safe decision was returned.
    pub fallback: bool,
}

/// The engine's full answer to one attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Assessment {
    /// Ties later outcome events to this attempt.
    pub request_id: String,
    /// The active policy's verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Everything the policy saw.
    pub signals: Arc<Signals>,
    /// The shadow policy's verdict (report only), when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Verdict>,
}

/// What recording an outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    /// The user's profile learned from a fully successful login.
    Learned,
    /// A failure was counted.
    FailureCounted,
    /// The attempt now waits for its MFA result.
    AwaitingMfa,
    /// The step-up passed; the attempt now waits for its password result.
    AwaitingPassword,
    /// A device was marked trusted.
    DeviceTrusted,
    /// Nothing changed: the attempt's outcome was already counted, or is unknown.
    Ignored,
}

/// Everything kept about one user (`GET /v1/users/{id}`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserExport {
    /// The account.
    pub user_id: String,
    /// What their fully successful logins taught, if anything.
    pub profile: Option<Arc<UserProfile>>,
    /// Failed logins in the last 24 hours.
    pub failures_24h: i64,
    /// The account is locked now.
    pub locked: bool,
    /// When the lock ends (or ended).
    pub locked_until: Option<EventTime>,
}
