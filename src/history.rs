//! Histories: login attempts, outcome events and account operations with timestamps, played
//! through an [`Engine`] in event time, each step's own timestamp passed as the clock.
//!
//! Policy test cases (`policies/tests/`, [`crate::policy::testing`]) and the behaviour
//! stories of `tests/scenarios/` are written as histories. A step does exactly one thing:
//! - `evaluate`: a `POST /v1/evaluate` body with a `timestamp`; optionally `geo`, the
//!   country, city and ASN the attempt comes from, over what the GeoIP databases say;
//! - `event`: a `POST /v1/events` body with a `timestamp`; `"request_id": "@name"` stands
//!   for the `request_id` of the earlier evaluate step named `name`;
//! - `unlock`, `forget`: a user id; `export`: a user id and `at`, the clock to read it by.
//!
//! `repeat: N` with `every_seconds: S` runs an evaluate or event step N times, the
//! timestamp advancing by S each time, with `{i}` in every string of the body replaced by the
//! repetition's index (`"user_id": "victim{i}"`).

use std::collections::HashMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::enrich::GeoInfo;
use crate::model::{Assessment, Attempt, Outcome, Recorded, UserExport};
use crate::{Engine, EngineError};

/// The most runs of one step: a history is a short story, and a reload may run it.
pub const MAX_REPEAT: u32 = 10_000;

/// One step of a history.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Shown in failures; events refer to an evaluate step's answer by it.
    pub name: Option<String>,
    /// Why the step is there, for the reader.
    pub note: Option<String>,
    /// A `POST /v1/evaluate` body.
    pub evaluate: Option<Value>,
    /// A `POST /v1/events` body.
    pub event: Option<Value>,
    /// A user whose lock to lift.
    pub unlock: Option<String>,
    /// A user to erase.
    pub forget: Option<String>,
    /// A user whose profile to export.
    pub export: Option<String>,
    /// The clock of an `export` step.
    pub at: Option<DateTime<Utc>>,
    /// Where an evaluate step's attempt comes from, over the GeoIP lookup.
    pub geo: Option<Place>,
    /// How many times to run an evaluate or event step.
    pub repeat: Option<u32>,
    /// Seconds between repetitions.
    pub every_seconds: Option<i64>,
}

/// Where an attempt comes from, as a step states it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    /// ISO 3166 alpha-2 country code.
    pub country: Option<String>,
    /// City name.
    pub city: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
}

/// What a step does.
enum Action<'a> {
    Evaluate(&'a Value),
    Event(&'a Value),
    Unlock(&'a str),
    Forget(&'a str),
    Export(&'a str, DateTime<Utc>),
}

impl Step {
    /// Checks that exactly one action and only its options are set.
    pub fn check(&self) -> Result<(), String> {
        self.action().map(|_| ())
    }

    /// True for an evaluate step.
    pub fn evaluates(&self) -> bool {
        self.evaluate.is_some()
    }

    /// `step <index>`, with the step's name when it has one.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("step {index} ({name})"),
            None => format!("step {index}"),
        }
    }

    fn action(&self) -> Result<Action<'_>, String> {
        let mut actions = Vec::new();
        if let Some(body) = &self.evaluate {
            actions.push(Action::Evaluate(body));
        }
        if let Some(body) = &self.event {
            actions.push(Action::Event(body));
        }
        if let Some(user) = &self.unlock {
            actions.push(Action::Unlock(user));
        }
        if let Some(user) = &self.forget {
            actions.push(Action::Forget(user));
        }
        if let Some(user) = &self.export {
            let at = self
                .at
                .ok_or("`export` needs `at` (the clock to read the lock by)")?;
            actions.push(Action::Export(user, at));
        }
        let [action] = <[Action<'_>; 1]>::try_from(actions)
            .map_err(|_| "a step needs exactly one of evaluate, event, unlock, forget, export")?;
        let timed = matches!(action, Action::Evaluate(_) | Action::Event(_));
        if !timed && self.repeat.is_some() {
            return Err("`repeat` is for evaluate and event steps".into());
        }
        if self.at.is_some() && !matches!(action, Action::Export(..)) {
            return Err("`at` is for export steps (others carry a `timestamp`)".into());
        }
        if self.geo.is_some() && !matches!(action, Action::Evaluate(_)) {
            return Err("`geo` is for evaluate steps".into());
        }
        if self.repeat.is_some() != self.every_seconds.is_some() {
            return Err("`repeat` and `every_seconds` go together".into());
        }
        if self.repeat.is_some_and(|r| !(1..=MAX_REPEAT).contains(&r)) {
            return Err(format!("`repeat` must be from 1 to {MAX_REPEAT}"));
        }
        Ok(action)
    }
}

/// What the engine answered to one run of a step.
#[derive(Debug, Clone)]
pub enum Answer {
    /// An evaluate step's answer.
    Assessment(Box<Assessment>),
    /// What an event changed.
    Recorded(Recorded),
    /// Whether an unlock or forget found something to do.
    Done(bool),
    /// An export, `None` when nothing is kept about the user.
    Export(Option<Box<UserExport>>),
}

impl Answer {
    /// The answer as the HTTP API would send it (an event's as `{"recorded": ...}`).
    pub fn to_json(&self) -> Value {
        let value = match self {
            Answer::Assessment(assessment) => serde_json::to_value(assessment),
            Answer::Recorded(recorded) => Ok(json!({ "recorded": recorded })),
            Answer::Done(done) => Ok(json!(done)),
            Answer::Export(export) => serde_json::to_value(export),
        };
        value.unwrap_or_else(|e| json!({ "error": e.to_string() }))
    }
}

/// Plays the steps of one history through an engine, in order.
#[derive(Debug)]
pub struct Player<'e> {
    engine: &'e Engine,
    /// The `request_id` of each named evaluate step (of its last repetition).
    request_ids: HashMap<String, String>,
}

impl<'e> Player<'e> {
    /// A player of a new history on `engine`.
    pub fn new(engine: &'e Engine) -> Self {
        Self {
            engine,
            request_ids: HashMap::new(),
        }
    }

    /// Runs a step (each repetition) and returns the answers, once their state changes are
    /// committed; an error when the step is malformed or the engine fails.
    pub async fn play(&mut self, step: &Step) -> Result<Vec<Answer>, String> {
        let body = match step.action()? {
            Action::Evaluate(body) | Action::Event(body) => body,
            Action::Unlock(user) => {
                let done = self.committed(self.engine.unlock(user)).await?;
                return Ok(vec![Answer::Done(done)]);
            }
            Action::Forget(user) => {
                let done = self.committed(self.engine.forget(user)).await?;
                return Ok(vec![Answer::Done(done)]);
            }
            Action::Export(user, at) => {
                let export = self.committed(self.engine.export_user(user, at)).await?;
                return Ok(vec![Answer::Export(export.map(Box::new))]);
            }
        };
        let start: DateTime<Utc> = body
            .get("timestamp")
            .and_then(Value::as_str)
            .ok_or("the body needs a `timestamp`: histories run on event time")?
            .parse()
            .map_err(|e| format!("`timestamp`: {e}"))?;
        let every = step.every_seconds.unwrap_or(0);
        let mut answers = Vec::new();
        for i in 0..step.repeat.unwrap_or(1) {
            let now = Duration::try_seconds(every.saturating_mul(i64::from(i)))
                .and_then(|offset| start.checked_add_signed(offset))
                .ok_or("`every_seconds` takes the timestamp out of range")?;
            let mut body = body.clone();
            substitute(&mut body, i);
            if let Some(fields) = body.as_object_mut() {
                let timestamp = now.to_rfc3339_opts(SecondsFormat::AutoSi, true);
                fields.insert("timestamp".into(), json!(timestamp));
            }
            let answer = if step.evaluates() {
                self.evaluate(body, now, step).await?
            } else {
                self.event(body, now).await?
            };
            answers.push(answer);
        }
        Ok(answers)
    }

    /// Waits for an engine call and for its state to be committed.
    async fn committed<T>(
        &self,
        call: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<T, String> {
        let result = call.await.map_err(|e| e.to_string())?;
        self.engine.committed().await.map_err(|e| e.to_string())?;
        Ok(result)
    }

    async fn evaluate(
        &mut self,
        body: Value,
        now: DateTime<Utc>,
        step: &Step,
    ) -> Result<Answer, String> {
        let attempt: Attempt =
            serde_json::from_value(body).map_err(|e| format!("evaluate: {e}"))?;
        attempt.validate().map_err(|e| format!("evaluate: {e}"))?;
        let geo = step
            .geo
            .as_ref()
            .and_then(|p| GeoInfo::known(p.country.as_deref(), p.city.as_deref(), p.asn));
        let call = self.engine.evaluate_committed_placed(&attempt, now, geo);
        let assessment = self.committed(call).await?;
        if let Some(name) = &step.name {
            self.request_ids
                .insert(name.clone(), assessment.request_id.clone());
        }
        Ok(Answer::Assessment(Box::new(assessment)))
    }

    async fn event(&mut self, mut body: Value, now: DateTime<Utc>) -> Result<Answer, String> {
        if let Some(request_id) = body.get_mut("request_id")
            && let Some(name) = request_id.as_str().and_then(|r| r.strip_prefix('@'))
        {
            let id = self
                .request_ids
                .get(name)
                .ok_or_else(|| format!("`@{name}`: no earlier evaluate step has that name"))?;
            *request_id = json!(id);
        }
        let outcome: Outcome = serde_json::from_value(body).map_err(|e| format!("event: {e}"))?;
        outcome.validate().map_err(|e| format!("event: {e}"))?;
        let recorded = self.committed(self.engine.record(&outcome, now)).await?;
        Ok(Answer::Recorded(recorded))
    }
}

/// Replaces `{i}` in every string of `value`.
fn substitute(value: &mut Value, i: u32) {
    match value {
        Value::String(s) if s.contains("{i}") => *s = s.replace("{i}", &i.to_string()),
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, i)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, i)),
        _ => {}
    }
}
