//! A policy's answer, checked: what `fn evaluate(ctx)` returned, as a typed value.

use rhai::{Dynamic, Map};

use crate::model::Decision;

/// The longest lock a policy may ask for: a year.
pub const MAX_LOCK_SECONDS: u64 = 365 * 24 * 3600;

/// What a policy returned, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyOutput {
    /// The decision.
    pub decision: Decision,
    /// The score.
    pub score: f64,
    /// The reasons.
    pub reasons: Vec<String>,
    /// Lock duration, for `lock`.
    pub lock_seconds: Option<u64>,
}

impl PolicyOutput {
    pub(super) fn from_dynamic(value: Dynamic) -> Result<Self, String> {
        let type_name = value.type_name();
        let mut map: Map = value
            .try_cast()
            .ok_or_else(|| format!("expected a map, got {type_name}"))?;
        let decision_value = map
            .remove("decision")
            .ok_or("missing `decision`")?
            .into_immutable_string()
            .map_err(|t| format!("`decision` must be a string, got {t}"))?;
        let decision = Decision::parse(&decision_value).ok_or_else(|| {
            format!("`decision` must be allow, mfa or lock, got `{decision_value}`")
        })?;
        let score = match map.get("score") {
            None => 0.0,
            Some(s) => s
                .as_float()
                .or_else(|_| s.as_int().map(|i| i as f64))
                .map_err(|t| format!("`score` must be a number, got {t}"))?,
        };
        if !score.is_finite() {
            return Err("`score` must be finite".into());
        }
        let reasons = match map.remove("reasons") {
            None => Vec::new(),
            Some(r) => r
                .into_typed_array::<rhai::ImmutableString>()
                .map_err(|t| format!("`reasons` must be an array of strings, got {t}"))?
                .into_iter()
                .map(Into::into)
                .collect(),
        };
        let lock_seconds = match map.get("lock_seconds") {
            Some(v) if !v.is_unit() => Some(
                v.as_int()
                    .ok()
                    .and_then(|i| u64::try_from(i).ok())
                    .filter(|&s| s <= MAX_LOCK_SECONDS)
                    .ok_or_else(|| {
                        format!("`lock_seconds` must be an integer from 0 to {MAX_LOCK_SECONDS} (a year)")
                    })?,
            ),
            _ => None,
        };
        Ok(Self {
            decision,
            score,
            reasons,
            lock_seconds,
        })
    }
}
