//! Gathers scored rows, in routing order, into the summary, the `--out` lines and progress.

use std::io::Write;

use serde::Serialize;

use super::shard::Scored;
use super::{Label, ReplayError, ScoredLogin, Summary};
use crate::model::Decision;
use crate::signals::rfc3339;

/// One line of `--out`: what riskgate decided for one input row.
#[derive(Serialize)]
struct OutLine<'a> {
    row: u64,
    user_id: &'a str,
    timestamp: &'a str,
    decision: Decision,
    score: f64,
    reasons: &'a [String],
    policy_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<Label>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logged_decision: Option<Decision>,
}

/// Rows between two progress reports.
const PROGRESS_EVERY: u64 = 8192;

/// Gathers results in routing order into the summary and `--out`.
pub(super) struct Collector<'o, 'p> {
    pub(super) summary: Summary,
    out: Option<&'o mut dyn Write>,
    progress: &'p (dyn Fn(u64) + Sync),
    scored: u64,
}

impl<'o, 'p> Collector<'o, 'p> {
    /// Collects into a summary keeping `samples` A/B changes.
    pub(super) fn new(
        samples: usize,
        out: Option<&'o mut dyn Write>,
        progress: &'p (dyn Fn(u64) + Sync),
    ) -> Self {
        Self {
            summary: Summary::new(samples),
            out,
            progress,
            scored: 0,
        }
    }

    /// Flushes `--out` and hands over the summary.
    pub(super) fn finish(self) -> Result<Summary, ReplayError> {
        if let Some(out) = self.out {
            out.flush()?;
        }
        Ok(self.summary)
    }

    /// Adds one result.
    pub(super) fn add(&mut self, scored: Scored) -> Result<(), ReplayError> {
        match scored {
            Scored::Event => self.summary.metrics.events += 1,
            Scored::Login(login) => {
                self.summary.add(&login);
                if let Some(out) = &mut self.out {
                    write_line(&mut **out, &login)?;
                }
            }
        }
        self.scored += 1;
        if self.scored.is_multiple_of(PROGRESS_EVERY) {
            (self.progress)(self.scored);
        }
        Ok(())
    }
}

fn write_line(out: &mut dyn Write, login: &ScoredLogin) -> std::io::Result<()> {
    let line = OutLine {
        row: login.row,
        user_id: &login.user_id,
        timestamp: &rfc3339(login.at),
        decision: login.verdict.decision,
        score: login.verdict.score,
        reasons: &login.verdict.reasons,
        policy_version: &login.verdict.policy.version,
        compare_decision: login.shadow.as_ref().map(|s| s.decision),
        compare_score: login.shadow.as_ref().map(|s| s.score),
        label: login.label,
        logged_decision: login.logged,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}
