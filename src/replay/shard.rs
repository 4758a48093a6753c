//! One shard of users: an engine with its own state scoring their events in time order, and
//! resolving step-ups as the log allows.

use chrono::{DateTime, Utc};

use super::router::Routed;
use super::{EventKind, Login, ReplayError, ScoredLogin, UnlabelledMfa};
use crate::engine::Engine;
use crate::model::{Assessment, Decision, Outcome, OutcomeKind};
use crate::state::bounded::BoundedMap;
use crate::state::{finish, key};

/// Logged request ids remembered for the events that follow them.
const REQUEST_IDS_KEPT: usize = 1_000_000;

/// What became of one routed event.
pub(super) enum Scored {
    /// A login, scored.
    Login(Box<ScoredLogin>),
    /// An outcome event, recorded.
    Event,
}

/// Scores the events of one shard of users.
pub(super) struct Shard {
    engine: Engine,
    unlabelled_mfa: UnlabelledMfa,
    /// Logged request id → replayed request id, for decision-log events; bounded like the
    /// engine's own attempts awaiting an outcome.
    request_ids: BoundedMap<String>,
}

impl Shard {
    /// A shard scoring with `engine` (which holds this shard's state).
    pub(super) fn new(engine: Engine, unlabelled_mfa: UnlabelledMfa) -> Self {
        Self {
            engine,
            unlabelled_mfa,
            request_ids: BoundedMap::new(REQUEST_IDS_KEPT, super::PLACEMENT),
        }
    }

    /// Scores or records one event.
    pub(super) fn process(&mut self, routed: Routed) -> Result<Scored, ReplayError> {
        let Routed {
            event,
            network,
            prior,
        } = routed;
        let now = DateTime::from_timestamp_millis(event.at).unwrap_or_default();
        match event.kind {
            EventKind::Outcome(mut outcome) => {
                if let Some(id) = &mut outcome.request_id {
                    // An id the replay never saw stays unknown to the engine too (ignored).
                    if let Some(replayed) = self.request_ids.get(key(id), |r| r.clone()) {
                        *id = replayed;
                    }
                }
                finish(self.engine.record(&outcome, now))?;
                Ok(Scored::Event)
            }
            EventKind::Login(mut login) => {
                let attempt = &login.attempt;
                let enrichment = login.enrichment.take().unwrap_or_else(|| {
                    self.engine.enrichment(
                        attempt.ip,
                        attempt.user_agent.as_deref(),
                        login.geo.take(),
                    )
                });
                let answer = finish(
                    self.engine
                        .evaluate_enriched(attempt, now, enrichment, network, prior),
                )?;
                self.resolve(&login, &answer, now)?;
                // Only what the summary needs leaves the shard: the rest is freed here.
                let changed = answer
                    .shadow
                    .as_ref()
                    .is_some_and(|s| s.decision != answer.verdict.decision);
                Ok(Scored::Login(Box::new(ScoredLogin {
                    row: event.row,
                    user_id: login.attempt.user_id,
                    at: event.at,
                    password_ok: login.attempt.password_ok,
                    label: login.label,
                    logged: login.logged,
                    verdict: answer.verdict,
                    shadow: answer.shadow,
                    signals: changed.then_some(answer.signals),
                })))
            }
        }
    }

    /// Ties a logged attempt to its replayed request id, or answers a step-up as the log says.
    fn resolve(
        &mut self,
        login: &Login,
        answer: &Assessment,
        now: DateTime<Utc>,
    ) -> Result<(), ReplayError> {
        if let Some(logged_id) = &login.request_id {
            // Decision-log input: its own events resolve the attempt.
            let replayed = answer.request_id.clone();
            self.request_ids
                .update(key(logged_id), |slot| *slot = replayed);
            return Ok(());
        }
        if answer.verdict.decision != Decision::Mfa || login.attempt.password_ok != Some(true) {
            return Ok(());
        }
        let passed = match login.label {
            Some(label) => !label.attack,
            None => self.unlabelled_mfa == UnlabelledMfa::Pass,
        };
        let outcome = Outcome {
            kind: if passed {
                OutcomeKind::MfaPassed
            } else {
                OutcomeKind::MfaFailed
            },
            user_id: login.attempt.user_id.clone(),
            ip: Some(login.attempt.ip),
            device_id: None,
            user_agent: None,
            request_id: Some(answer.request_id.clone()),
            timestamp: Some(now),
        };
        finish(self.engine.record(&outcome, now))?;
        Ok(())
    }
}
