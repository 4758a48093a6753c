//! What a case expects, what the policy answered, and where the two differ.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

use crate::engine::POLICY_ERROR_REASON;
use crate::model::{Decision, Verdict};

/// How far a score may stray from the expected range's ends (float arithmetic).
const SCORE_TOLERANCE: f64 = 1e-9;

/// The answer a case expects.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The decision.
    pub decision: Decision,
    /// Reasons the answer must include (all of them, in any order).
    pub reasons: Option<Vec<String>>,
    /// With `reasons`: the answer has exactly those reasons, in any order.
    #[serde(default)]
    pub reasons_exact: bool,
    /// The score: a number, or an inclusive `[min, max]` range.
    pub score: Option<ScoreRange>,
    /// The lock duration (answers carry one only with `lock`).
    pub lock_seconds: Option<u64>,
}

impl Expect {
    /// Checks what serde cannot: an expectation that could check nothing.
    pub(super) fn validate(&self) -> Result<(), String> {
        match &self.reasons {
            None if self.reasons_exact => Err("`reasons_exact` needs `reasons`".into()),
            Some(reasons) if reasons.is_empty() && !self.reasons_exact => Err(
                "`reasons = []` checks nothing; add `reasons_exact = true` to expect no reasons"
                    .into(),
            ),
            _ => match self.score {
                Some(ScoreRange { min, max }) if min > max => {
                    Err(format!("`score = [{min}, {max}]` is an empty range"))
                }
                _ => Ok(()),
            },
        }
    }

    /// The parts of `got` that do not match.
    pub(super) fn differences(&self, got: &Got) -> Vec<Aspect> {
        let mut differs = Vec::new();
        if got.decision != self.decision {
            differs.push(Aspect::Decision);
        }
        if let Some(reasons) = &self.reasons {
            let wanted: BTreeSet<&String> = reasons.iter().collect();
            let have: BTreeSet<&String> = got.reasons.iter().collect();
            let ok = if self.reasons_exact {
                wanted == have
            } else {
                wanted.is_subset(&have)
            };
            if !ok {
                differs.push(Aspect::Reasons);
            }
        }
        if let Some(ScoreRange { min, max }) = self.score
            && !(min - SCORE_TOLERANCE..=max + SCORE_TOLERANCE).contains(&got.score)
        {
            differs.push(Aspect::Score);
        }
        if self.lock_seconds.is_some() && self.lock_seconds != got.lock_seconds {
            differs.push(Aspect::LockSeconds);
        }
        // A failing policy answers with the fail-safe, which may well be the decision a case
        // expects: only a case about the fail-safe may pass that way.
        let expects_failure = self
            .reasons
            .iter()
            .flatten()
            .any(|r| r == POLICY_ERROR_REASON);
        if got.error.is_some() && !expects_failure {
            differs.push(Aspect::PolicyFailed);
        }
        differs
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "decision {}", self.decision.as_str())?;
        match &self.reasons {
            Some(reasons) if self.reasons_exact => write!(f, ", reasons exactly {reasons:?}")?,
            Some(reasons) => write!(f, ", reasons include {reasons:?}")?,
            None => {}
        }
        match self.score {
            Some(ScoreRange { min, max }) if min == max => write!(f, ", score {min:?}")?,
            Some(ScoreRange { min, max }) => write!(f, ", score in [{min:?}, {max:?}]")?,
            None => {}
        }
        if let Some(seconds) = self.lock_seconds {
            write!(f, ", lock_seconds {seconds}")?;
        }
        Ok(())
    }
}

/// An inclusive range of scores, written as one number or as `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(from = "ScoreSpec")]
pub struct ScoreRange {
    /// The lowest score expected.
    pub min: f64,
    /// The highest score expected.
    pub max: f64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScoreSpec {
    Exactly(f64),
    Range([f64; 2]),
}

impl From<ScoreSpec> for ScoreRange {
    fn from(spec: ScoreSpec) -> Self {
        let [min, max] = match spec {
            ScoreSpec::Exactly(score) => [score, score],
            ScoreSpec::Range(range) => range,
        };
        Self { min, max }
    }
}

/// The answer a case got: the verdict riskgate would give.
#[derive(Debug, Clone, PartialEq)]
pub struct Got {
    /// The decision.
    pub decision: Decision,
    /// The score.
    pub score: f64,
    /// The reasons, in the policy's order.
    pub reasons: Vec<String>,
    /// The lock duration, with `lock`.
    pub lock_seconds: Option<u64>,
    /// Why the policy failed, when it did: the rest is then the fail-safe answer.
    pub error: Option<String>,
}

impl Got {
    /// What `verdict` answers; `error` when the policy failed.
    pub(super) fn new(verdict: Verdict, error: Option<String>) -> Self {
        Self {
            decision: verdict.decision,
            score: verdict.score,
            reasons: verdict.reasons,
            lock_seconds: verdict.lock_seconds,
            error,
        }
    }
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "decision {}, score {:?}, reasons {:?}",
            self.decision.as_str(),
            self.score,
            self.reasons
        )?;
        if let Some(seconds) = self.lock_seconds {
            write!(f, ", lock_seconds {seconds}")?;
        }
        Ok(())
    }
}

/// A part of an answer a case checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aspect {
    /// `decision`.
    Decision,
    /// `reasons`.
    Reasons,
    /// `score`.
    Score,
    /// `lock_seconds`.
    LockSeconds,
    /// The policy failed (and the case does not expect `policy_error`).
    PolicyFailed,
}

impl fmt::Display for Aspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Aspect::Decision => "decision",
            Aspect::Reasons => "reasons",
            Aspect::Score => "score",
            Aspect::LockSeconds => "lock_seconds",
            Aspect::PolicyFailed => "the policy failed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(toml: &str) -> Expect {
        let expect: Expect = toml::from_str(toml).unwrap();
        expect.validate().unwrap();
        expect
    }

    fn got(decision: Decision, score: f64, reasons: &[&str]) -> Got {
        Got {
            decision,
            score,
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
            lock_seconds: (decision == Decision::Lock).then_some(900),
            error: None,
        }
    }

    #[test]
    fn reasons_are_included_or_exact_scores_within_an_inclusive_range() {
        let answer = got(Decision::Mfa, 0.8, &["new_device", "new_asn"]);
        for (toml, differs) in [
            ("decision = \"mfa\"", vec![]),
            ("decision = \"allow\"", vec![Aspect::Decision]),
            ("decision = \"mfa\"\nreasons = [\"new_asn\"]", vec![]),
            (
                "decision = \"mfa\"\nreasons = [\"new_asn\"]\nreasons_exact = true",
                vec![Aspect::Reasons],
            ),
            (
                "decision = \"mfa\"\nreasons = [\"new_asn\", \"new_device\"]\nreasons_exact = true",
                vec![],
            ),
            ("decision = \"mfa\"\nscore = [0.6, 0.8]", vec![]),
            ("decision = \"mfa\"\nscore = 0.8000000000001", vec![]),
            ("decision = \"mfa\"\nscore = [0.81, 1]", vec![Aspect::Score]),
            (
                "decision = \"lock\"\nlock_seconds = 900",
                vec![Aspect::Decision, Aspect::LockSeconds],
            ),
        ] {
            assert_eq!(expect(toml).differences(&answer), differs, "{toml}");
        }
    }

    #[test]
    fn a_failed_policy_passes_only_a_case_expecting_policy_error() {
        let fail_safe = Got {
            error: Some("boom".into()),
            ..got(Decision::Mfa, 1.0, &["policy_error"])
        };
        assert_eq!(
            expect("decision = \"mfa\"").differences(&fail_safe),
            [Aspect::PolicyFailed]
        );
        let about_it = expect("decision = \"mfa\"\nreasons = [\"policy_error\"]");
        assert!(about_it.differences(&fail_safe).is_empty());
    }

    #[test]
    fn expectations_that_check_nothing_are_refused() {
        for toml in [
            "decision = \"mfa\"\nreasons = []",
            "decision = \"mfa\"\nreasons_exact = true",
            "decision = \"mfa\"\nscore = [1, 0]",
        ] {
            let expect: Expect = toml::from_str(toml).unwrap();
            assert!(expect.validate().is_err(), "{toml}");
        }
        assert!(toml::from_str::<Expect>("decision = \"maybe\"").is_err());
        assert!(toml::from_str::<Expect>("decision = \"mfa\"\nreason = [\"x\"]").is_err());
    }
}
