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
        // Answers promise a score in 0..1; a policy's arithmetic may stray past either end.
        let score = score.clamp(0.0, 1.0);
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

#[cfg(test)]
mod tests {
    mod props {
        use proptest::prelude::*;
        use rhai::{Dynamic, Map};

        use super::super::*;

        /// The keys a policy's answer is read by.
        const KEYS: [&str; 4] = ["decision", "score", "reasons", "lock_seconds"];

        fn map(fields: impl IntoIterator<Item = (String, Dynamic)>) -> Dynamic {
            Dynamic::from_map(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.into(), v))
                    .collect::<Map>(),
            )
        }

        /// A policy's answer as a policy returns it, and the output it stands for: the score a
        /// float, an integer or left out, `lock_seconds` left out or `()`, other keys ignored.
        fn answer() -> impl Strategy<Value = (Dynamic, PolicyOutput)> {
            let decision =
                prop::sample::select(vec![Decision::Allow, Decision::Mfa, Decision::Lock]);
            let score = prop_oneof![
                Just((None, 0.0)),
                any::<f64>()
                    .prop_filter("finite", |s| s.is_finite())
                    .prop_map(|s| (Some(Dynamic::from(s)), s.clamp(0.0, 1.0))),
                any::<i64>().prop_map(|i| (Some(Dynamic::from(i)), (i as f64).clamp(0.0, 1.0))),
            ];
            let reasons = prop::option::of(prop::collection::vec(any::<String>(), 0..4));
            let lock = prop_oneof![
                Just((None, None)),
                Just((Some(Dynamic::UNIT), None)),
                (0..=MAX_LOCK_SECONDS).prop_map(|s| (Some(Dynamic::from(s as i64)), Some(s))),
            ];
            let others = prop::collection::vec(("note_[a-z]{0,8}", any::<i64>()), 0..3);
            (decision, score, reasons, lock, others).prop_map(
                |(decision, (score_value, score), reasons, (lock_value, lock_seconds), others)| {
                    let mut fields: Map = others
                        .into_iter()
                        .map(|(k, v)| (k.into(), v.into()))
                        .collect();
                    fields.insert("decision".into(), decision.as_str().into());
                    if let Some(score) = score_value {
                        fields.insert("score".into(), score);
                    }
                    if let Some(reasons) = &reasons {
                        let reasons = reasons.iter().cloned().map(Dynamic::from).collect();
                        fields.insert("reasons".into(), Dynamic::from_array(reasons));
                    }
                    if let Some(lock) = lock_value {
                        fields.insert("lock_seconds".into(), lock);
                    }
                    let output = PolicyOutput {
                        decision,
                        score,
                        reasons: reasons.unwrap_or_default(),
                        lock_seconds,
                    };
                    (Dynamic::from_map(fields), output)
                },
            )
        }

        /// Any value a policy could return, with map keys often the ones that are read.
        fn any_dynamic() -> impl Strategy<Value = Dynamic> {
            let text = prop_oneof![
                any::<String>(),
                prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
                prop::sample::select(vec!["allow", "mfa", "lock"]).prop_map(str::to_owned),
            ];
            let leaf = prop_oneof![
                Just(Dynamic::UNIT),
                any::<bool>().prop_map(Dynamic::from),
                any::<i64>().prop_map(Dynamic::from),
                any::<f64>().prop_map(Dynamic::from),
                any::<char>().prop_map(Dynamic::from),
                text.clone().prop_map(Dynamic::from),
            ];
            leaf.prop_recursive(3, 24, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Dynamic::from_array),
                    prop::collection::vec((text.clone(), inner), 0..6).prop_map(map),
                ]
            })
        }

        /// `answer` with `key` set to `value`, or removed.
        fn with(answer: Dynamic, key: &str, value: Option<Dynamic>) -> Dynamic {
            let mut fields: Map = answer.cast();
            match value {
                Some(value) => fields.insert(key.into(), value),
                None => fields.remove(key),
            };
            Dynamic::from_map(fields)
        }

        /// A value `key` cannot hold (`None`: a `decision` left out).
        fn invalid(key: &'static str) -> BoxedStrategy<Option<Dynamic>> {
            let value = match key {
                "decision" => prop_oneof![
                    any::<String>()
                        .prop_filter("a decision", |d| Decision::parse(d).is_none())
                        .prop_map(Dynamic::from),
                    any::<i64>().prop_map(Dynamic::from),
                    Just(Dynamic::UNIT),
                ]
                .boxed(),
                "score" => prop_oneof![
                    prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY])
                        .prop_map(Dynamic::from),
                    any::<String>().prop_map(Dynamic::from),
                    any::<bool>().prop_map(Dynamic::from),
                ]
                .boxed(),
                "reasons" => prop_oneof![
                    any::<String>().prop_map(Dynamic::from),
                    (any::<String>(), any::<i64>()).prop_map(|(reason, odd)| {
                        Dynamic::from_array(vec![reason.into(), odd.into()])
                    }),
                ]
                .boxed(),
                _ => prop_oneof![
                    (i64::MIN..0).prop_map(Dynamic::from),
                    (MAX_LOCK_SECONDS as i64 + 1..).prop_map(Dynamic::from),
                    any::<f64>().prop_map(Dynamic::from),
                    any::<String>().prop_map(Dynamic::from),
                ]
                .boxed(),
            };
            if key == "decision" {
                prop::option::of(value).boxed()
            } else {
                value.prop_map(Some).boxed()
            }
        }

        proptest! {
            /// Anything at all, or a good answer with one field set to anything or left out.
            #[test]
            fn any_value_is_read_or_refused_without_panicking(
                value in prop_oneof![
                    any_dynamic(),
                    (answer(), prop::sample::select(KEYS.to_vec()), prop::option::of(any_dynamic()))
                        .prop_map(|((answer, _), key, value)| with(answer, key, value)),
                ],
            ) {
                if let Ok(output) = PolicyOutput::from_dynamic(value) {
                    prop_assert!((0.0..=1.0).contains(&output.score));
                    prop_assert!(output.lock_seconds.is_none_or(|s| s <= MAX_LOCK_SECONDS));
                }
            }

            #[test]
            fn an_answer_built_from_generated_fields_reads_back_the_same(
                (value, output) in answer(),
            ) {
                prop_assert_eq!(PolicyOutput::from_dynamic(value), Ok(output));
            }

            #[test]
            fn a_bad_field_is_refused_with_an_error_naming_it(
                (key, value) in prop::sample::select(KEYS.to_vec())
                    .prop_flat_map(|key| (Just(key), invalid(key))),
                (answer, _) in answer(),
            ) {
                let refused = PolicyOutput::from_dynamic(with(answer, key, value));
                let named = refused.as_ref().is_err_and(|e| e.contains(&format!("`{key}`")));
                prop_assert!(named, "{:?}", refused);
            }
        }
    }
}
