//! Running one case: its policy on its ctx, or its history through a fresh engine.

use std::sync::Arc;

use super::cases::{Case, Input};
use super::{CaseOutcome, CaseReport, Failure, Got};
use crate::Engine;
use crate::engine::EngineSettings;
use crate::enrich::{DeviceParser, GeoIp};
use crate::history::{Answer, Player, Step};
use crate::model::Assessment;
use crate::policy::{CtxValues, Limits, Policy, PolicySet, Read, Recorder, Runtime};
use crate::state::bounded::Placement;
use crate::state::memory::{Capacity, MemoryStore};

/// User agents a history's engine keeps parsed.
const HISTORY_UA_CACHE: u64 = 64;

/// Runs cases against one set of policies.
pub(super) struct Runner<'p> {
    policies: &'p PolicySet,
    limits: Limits,
    settings: EngineSettings,
    recorder: Recorder,
    /// Plays histories: the engine is async.
    tokio: tokio::runtime::Runtime,
}

impl<'p> Runner<'p> {
    /// A runner of cases against `policies`.
    pub(super) fn new(
        policies: &'p PolicySet,
        limits: Limits,
        settings: EngineSettings,
    ) -> std::io::Result<Self> {
        Ok(Self {
            policies,
            limits,
            settings,
            recorder: Recorder::new(limits),
            tokio: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// Runs a case and compares its answer with the one expected.
    pub(super) fn run(&self, case: &Case) -> CaseReport {
        let report = |outcome| CaseReport {
            name: case.name.clone(),
            line: case.line,
            policy: case.policy.clone(),
            outcome,
        };
        let Some(policy) = self.policies.get(&case.policy) else {
            return report(CaseOutcome::Broken(format!(
                "no policy `{}` in the set",
                case.policy
            )));
        };
        let answered = match &case.input {
            Input::Ctx(values) => Ok(self.judge(policy, Arc::clone(values))),
            Input::History(steps) => self.play(&case.policy, steps).map(|assessment| {
                // The engine answered; a recorded run on the same signals shows what the
                // policy read (and why it failed, if it did).
                let values = CtxValues::of(&assessment.signals);
                let (result, reads) = self.recorder.run(policy, Arc::new(values));
                let error = result.err().map(|e| e.to_string());
                (Got::new(assessment.verdict, error), reads)
            }),
        };
        let (got, reads) = match answered {
            Ok(answer) => answer,
            Err(message) => return report(CaseOutcome::Broken(message)),
        };
        let differs = case.expect.differences(&got);
        if differs.is_empty() {
            return report(CaseOutcome::Passed);
        }
        report(CaseOutcome::Failed(Box::new(Failure {
            expected: case.expect.clone(),
            got,
            differs,
            reads,
        })))
    }

    /// What riskgate answers when `policy` sees `values`, and what it read.
    fn judge(&self, policy: &Policy, values: Arc<CtxValues>) -> (Got, Vec<Read>) {
        let (result, reads) = self.recorder.run(policy, values);
        let error = result.as_ref().err().map(ToString::to_string);
        (
            Got::new(self.settings.verdict(policy, result), error),
            reads,
        )
    }

    /// Plays a history on a fresh engine whose only policy is `policy`, without GeoIP
    /// databases (steps state their place), and returns the last step's answer.
    fn play(&self, policy: &str, steps: &[(usize, Step)]) -> Result<Assessment, String> {
        let store = Arc::new(MemoryStore::new(Capacity::default(), Placement::random()));
        let engine = Engine::new(
            GeoIp::default(),
            DeviceParser::new(HISTORY_UA_CACHE),
            store,
            Runtime::new(self.limits),
            self.policies.only(policy).map_err(|e| e.to_string())?,
            self.settings,
        );
        self.tokio.block_on(async {
            let mut player = Player::new(&engine);
            let mut last = None;
            for (index, (line, step)) in steps.iter().enumerate() {
                let mut answers = player
                    .play(step)
                    .await
                    .map_err(|e| format!("line {line}: history {}: {e}", step.label(index)))?;
                last = answers.pop();
            }
            match last {
                Some(Answer::Assessment(assessment)) => Ok(*assessment),
                _ => Err("the history does not end with an evaluate step".into()),
            }
        })
    }
}
